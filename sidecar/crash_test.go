package sidecar

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/host/control"
)

var (
	inst1 = strings.Repeat("1", 32)
	inst2 = strings.Repeat("2", 32)
)

func crashSwapper(t *testing.T, dir string, c *clocktesting.FakeClock) *Swapper {
	t.Helper()
	s, err := NewSwapper(SwapperOptions{SharedDir: dir, Host: &control.Client{}, Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCrashDetection: a marker written before a version is brought in, and a host instance that
// differs from the marker's without the version loaded, is a crash of that version — recorded
// once, kept in the shared directory, and never mistaken for a re-exec.
func TestCrashDetection(t *testing.T) {
	dir := t.TempDir()
	fc := clocktesting.NewFakeClock(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))
	s := crashSwapper(t, dir, fc)
	before := &control.Status{Instance: inst1, Current: dB, Versions: []control.VersionStatus{loaded(dB, control.StateCurrent)}}
	if err := s.markAttempt(before, dA, "load"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{AgentStateDir: 0o700 | os.ModeDir, filepath.Join(AgentStateDir, attemptFile): 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode() != want {
			t.Fatalf("%s: %v, mode %v; want %v", name, err, fi.Mode(), want)
		}
	}
	serving := &control.Status{Instance: inst1, Current: dA, Versions: []control.VersionStatus{loaded(dB, control.StateRetired), loaded(dA, control.StateCurrent)}}
	reexeced := &control.Status{Instance: inst1, Current: dA, Versions: []control.VersionStatus{loaded(dA, control.StateCurrent)}}
	for _, st := range []*control.Status{serving, reexeced} {
		if c, err := s.Observe(st); c != nil || err != nil {
			t.Fatalf("the same instance (serving, or re-executed) is no crash: %+v %v", c, err)
		}
	}
	if s.CrashOf(dA) != nil {
		t.Fatal("no crash yet")
	}

	restarted := &control.Status{Instance: inst2, Current: dB, Versions: []control.VersionStatus{loaded(dB, control.StateCurrent)}}
	c, err := s.Observe(restarted)
	if err != nil || c == nil || c.Digest != dA || c.Instance != inst1 || c.NewInstance != inst2 || c.Op != "load" || !c.DetectedAt.Equal(fc.Now()) {
		t.Fatalf("a restarted host without %s: %+v %v; want its crash", dA, c, err)
	}
	if again, err := s.Observe(restarted); again != nil || err != nil {
		t.Fatalf("a crash is recorded once: %+v %v", again, err)
	}
	if _, err := os.Stat(filepath.Join(dir, AgentStateDir, attemptFile)); !os.IsNotExist(err) {
		t.Fatalf("the attempt marker outlived its crash: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, AgentStateDir, crashedFile))
	if err != nil || fi.Mode() != 0o600 {
		t.Fatalf("crashed list: %v %v", err, fi)
	}
	// Another agent (a restarted container) reads the record from the shared directory.
	if got := crashSwapper(t, dir, fc).CrashOf(dA); got == nil || got.Digest != dA || got.NewInstance != inst2 {
		t.Fatalf("a new Swapper on the same directory: %+v", got)
	}
	if s.CrashOf(dB) != nil {
		t.Fatal("the stable version is never blamed")
	}
}

func TestCrashDetectionNotACrash(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))
	before := &control.Status{Instance: inst1, Current: dB}
	tests := []struct {
		name  string
		step  time.Duration
		after []*control.Status
	}{
		{"a new instance that has the version loaded (its image starts it)", 0,
			[]*control.Status{{Instance: inst2, Current: dA, Versions: []control.VersionStatus{loaded(dA, control.StateCurrent)}}}},
		{"a host that predates instance names", 0, []*control.Status{{Current: dB}}},
		{"a restart after the version has served past the crash window", DefaultCrashWindow,
			[]*control.Status{{Instance: inst1, Current: dA, Versions: []control.VersionStatus{loaded(dA, control.StateCurrent)}}, {Instance: inst2, Current: dB}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := crashSwapper(t, t.TempDir(), fc)
			if err := s.markAttempt(before, dA, "swap"); err != nil {
				t.Fatal(err)
			}
			fc.Step(tt.step)
			for _, st := range tt.after {
				if c, err := s.Observe(st); c != nil || err != nil {
					t.Fatalf("observe %+v: %+v %v; want no crash", st, c, err)
				}
			}
			if s.CrashOf(dA) != nil {
				t.Fatal("blamed")
			}
		})
	}
	// A host that predates instance names gets no marker at all.
	s := crashSwapper(t, t.TempDir(), fc)
	if err := s.markAttempt(&control.Status{Current: dB}, dA, "load"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.opts.SharedDir, AgentStateDir, attemptFile)); !os.IsNotExist(err) {
		t.Fatalf("marker written for a host without an instance name: %v", err)
	}
}

// TestCrashedListIsBounded: the list keeps the newest maxCrashed digests.
func TestCrashedListIsBounded(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))
	s := crashSwapper(t, t.TempDir(), fc)
	digest := func(i int) string { return fmt.Sprintf("sha256:%064x", i) }
	for i := range maxCrashed + 6 {
		inst := fmt.Sprintf("%032x", i)
		if err := s.markAttempt(&control.Status{Instance: inst}, digest(i), "load"); err != nil {
			t.Fatal(err)
		}
		if c, err := s.Observe(&control.Status{Instance: fmt.Sprintf("%032x", i+1)}); c == nil || err != nil {
			t.Fatalf("crash %d: %v %v", i, c, err)
		}
	}
	fresh := crashSwapper(t, s.opts.SharedDir, fc)
	if fresh.CrashOf(digest(0)) != nil || fresh.CrashOf(digest(5)) != nil || fresh.CrashOf(digest(6)) == nil || fresh.CrashOf(digest(maxCrashed+5)) == nil {
		t.Fatalf("want the newest %d crashes kept: %+v", maxCrashed, fresh.crashes())
	}
	if n := len(fresh.crashes()); n != maxCrashed {
		t.Fatalf("%d crashes kept; want %d", n, maxCrashed)
	}
}

// TestCrashStateFromAnotherParty: the shared directory is writable by the app container, so a
// file there that is not what the agent wrote is set aside, not trusted.
func TestCrashStateFromAnotherParty(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, AgentStateDir), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{attemptFile, crashedFile} {
		if err := os.WriteFile(filepath.Join(dir, AgentStateDir, f), []byte(`{"digest": 7, "extra": true}`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := crashSwapper(t, dir, fc)
	if c, err := s.Observe(&control.Status{Instance: inst2}); c != nil || err == nil {
		t.Fatalf("a malformed marker: %+v %v; want no crash and an error to log", c, err)
	}
	if s.CrashOf(dA) != nil {
		t.Fatal("a malformed list names no crash")
	}
	// The agent's next marker replaces the malformed one.
	if err := s.markAttempt(&control.Status{Instance: inst1}, dA, "load"); err != nil {
		t.Fatal(err)
	}
	if c, err := s.Observe(&control.Status{Instance: inst2}); c == nil || err != nil {
		t.Fatalf("after a fresh marker: %+v %v", c, err)
	}
}

// TestBlame: the marker names the version being brought in, never one that has served in this
// host instance already (the stable version a rollback returns to).
func TestBlame(t *testing.T) {
	st := &control.Status{Instance: inst1, Current: dB, Versions: []control.VersionStatus{
		loaded(dB, control.StateCurrent), loaded(dC, control.StateRetired), loaded(dA, control.StateLoaded)}}
	for d, want := range map[string]bool{dA: true, dB: false, dC: false, "sha256:" + strings.Repeat("e", 64): true} {
		if got := newInInstance(st, d); got != want {
			t.Errorf("newInInstance(%s) = %v; want %v", d[:12], got, want)
		}
	}
}

// TestCrashError: the report says what happened and, from the pod's status, how the app
// container ended.
func TestCrashError(t *testing.T) {
	c := &Crash{Digest: dA, Instance: inst1, NewInstance: inst2, Op: "swap", DetectedAt: time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}, {Name: "other"}}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
			{Name: "other", RestartCount: 9},
			{Name: "app", RestartCount: 1, LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 2, Reason: "Error", Message: "panic: gopanic: deliberate panic"}}},
		}},
	}
	msg := crashError(c, pod).Error()
	for _, s := range []string{dA, "the host process died", inst1, inst2, "never", `container "app" restarted 1 time`, "exit code 2", "Error", "panic: gopanic"} {
		if !strings.Contains(msg, s) {
			t.Errorf("error %q does not say %q", msg, s)
		}
	}
	if strings.Contains(msg, `"other"`) {
		t.Errorf("error %q names a container that is not the app's", msg)
	}
	pod.Annotations[splicev1.AnnotationAppContainers] = "other, app"
	if msg := crashError(c, pod).Error(); !strings.Contains(msg, `container "other" restarted 9 times`) || !strings.Contains(msg, `container "app"`) {
		t.Errorf("with %s: %q", splicev1.AnnotationAppContainers, msg)
	}
	// The pod's status may not show the restart yet.
	pod.Status.ContainerStatuses = nil
	if msg := crashError(c, pod).Error(); !strings.Contains(msg, "the host process died") || strings.Contains(msg, `container "app"`) {
		t.Errorf("without container statuses: %q", msg)
	}
}
