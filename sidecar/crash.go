package sidecar

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/host/control"
)

// Crash detection. A panic on a goroutine a plugin started kills the host process (nothing can
// recover it), the kubelet restarts the container, and an agent that loaded the same version
// again would make a crash loop of it. So, before the agent asks the host to load, swap to or
// route calls to a version that has not served in this host process yet, it writes an attempt
// marker into the shared directory: the version's digest and the host's instance name
// (control.Status.Instance: kept across the host's re-execs, new after a container restart).
// When it later sees a host whose instance differs from the marker's and that does not have the
// version, that version crashed the host: it is recorded in a bounded list of crashed digests,
// reported Crashed, and never asked for again. The shared volume is an emptyDir: it outlives
// container restarts (and agent restarts) but not the pod, so "never again" means "in this pod".
//
// Only the version being brought in is ever blamed, never one that served in this host process
// already (the stable version a rollback or a canary returns to): a marker stands until the next
// new version replaces it, or until its version has served CrashWindow in the same host process
// without a crash — a host that dies later than that is not blamed on it (a crash that rare is
// no crash loop, and an unrelated restart, an OOM kill say, must not mark a version that served
// for hours as crashed). A host that predates instance names gets no marker: there is nothing
// to tell a crash from a re-exec by.

const (
	// AgentStateDir is the agent's own directory inside the shared volume (mode 0700): the
	// attempt marker and the crashed list, each written atomically (a temporary file renamed
	// over it, mode 0600).
	AgentStateDir = ".splice-agent"
	attemptFile   = "attempt.json"
	crashedFile   = "crashed.json"
	// maxCrashed bounds the crashed list; the oldest records go first.
	maxCrashed = 64
	// DefaultCrashWindow is how long a version must serve in one host process before a crash of
	// that process is no longer blamed on it.
	DefaultCrashWindow = 10 * time.Minute
	// maxStateBytes bounds what the agent reads back: the app container can write the volume.
	maxStateBytes = 64 << 10
	// maxInstanceBytes bounds an instance name read back (the host's are 32 hex digits).
	maxInstanceBytes = 128
)

// Operations an attempt marker records: what the agent was asking the host for.
const (
	attemptLoad     = "load"
	attemptLoadSwap = "load-and-swap"
	attemptSwap     = "swap"
	attemptRoute    = "route"
)

// attempt is the marker: the agent is bringing Digest into host instance Instance.
type attempt struct {
	Digest   string    `json:"digest"`
	Instance string    `json:"instance"`
	Op       string    `json:"op"`
	At       time.Time `json:"at"`
}

// Crash records a version that crashed the pod's host.
type Crash struct {
	// Digest is the version's digest.
	Digest string `json:"digest"`
	// Instance is the host instance that died; NewInstance the one that came after it.
	Instance    string `json:"instance"`
	NewInstance string `json:"newInstance"`
	// Op is what the agent had asked that host for: load, load-and-swap, swap or route.
	Op string `json:"op"`
	// AttemptedAt is when it asked; DetectedAt when it saw the new instance.
	AttemptedAt time.Time `json:"attemptedAt"`
	DetectedAt  time.Time `json:"detectedAt"`
}

type crashList struct {
	Crashed []Crash `json:"crashed"`
}

func (a *attempt) validate() error {
	if !control.ValidDigest(a.Digest) || a.Instance == "" || len(a.Instance) > maxInstanceBytes {
		return fmt.Errorf("names no digest or host instance")
	}
	return nil
}

func (l *crashList) validate() error {
	for _, c := range l.Crashed {
		if !control.ValidDigest(c.Digest) || len(c.Instance) > maxInstanceBytes || len(c.NewInstance) > maxInstanceBytes {
			return fmt.Errorf("a record names no digest, or an instance name over %d bytes", maxInstanceBytes)
		}
	}
	if len(l.Crashed) > maxCrashed {
		return fmt.Errorf("%d records; at most %d", len(l.Crashed), maxCrashed)
	}
	return nil
}

// newInInstance reports whether the version has not served in the host process st describes:
// it is not there, or loaded and never routed a call. Only such a version is blamed for a
// crash.
func newInInstance(st *control.Status, digest string) bool {
	v := st.Version(digest)
	return v == nil || v.State == control.StateLoaded
}

// markAttempt writes the marker before the agent asks the host (st) to bring digest in.
func (s *Swapper) markAttempt(st *control.Status, digest, op string) error {
	if st.Instance == "" {
		return nil
	}
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	return s.writeState(attemptFile, attempt{Digest: digest, Instance: st.Instance, Op: op, At: s.clock.Now()})
}

// Observe compares the host's status with the attempt marker: a host instance other than the
// marker's, without the marker's version, is a crash of that version, which Observe records
// (once) and returns. It also retires a marker whose version has served CrashWindow in the same
// instance, and sets aside a marker that is not what the agent wrote (the error says so). The
// agent calls it with every status it reads in its sync loop; Apply calls it too.
func (s *Swapper) Observe(st *control.Status) (*Crash, error) {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	var a attempt
	found, err := s.readState(attemptFile, &a, a.validate)
	switch {
	case err != nil:
		s.removeState(attemptFile)
		return nil, fmt.Errorf("the attempt marker %s is not what the agent writes; set aside: %w", s.statePath(attemptFile), err)
	case !found || st.Instance == "":
		return nil, nil
	case st.Instance == a.Instance:
		if s.clock.Since(a.At) >= s.opts.CrashWindow {
			s.log.V(1).Info("version served past the crash window; no longer blamed for a crash", "digest", a.Digest, "window", s.opts.CrashWindow)
			return nil, s.removeState(attemptFile)
		}
		return nil, nil
	case st.Version(a.Digest) != nil:
		// The new instance has it (its image starts it): not this agent's attempt that died.
		return nil, s.removeState(attemptFile)
	}
	c := Crash{Digest: a.Digest, Instance: a.Instance, NewInstance: st.Instance, Op: a.Op, AttemptedAt: a.At, DetectedAt: s.clock.Now()}
	list := append(s.crashesLocked(), c)
	if len(list) > maxCrashed {
		list = list[len(list)-maxCrashed:]
	}
	s.crashed = list
	if err := s.writeState(crashedFile, crashList{Crashed: list}); err != nil {
		return &c, fmt.Errorf("record the crash of %s: %w (it stays refused while this agent runs)", c.Digest, err)
	}
	s.log.Info("the host died while the agent was bringing a version in; it is never loaded again in this pod",
		"digest", c.Digest, "op", c.Op, "deadInstance", c.Instance, "newInstance", c.NewInstance)
	return &c, s.removeState(attemptFile)
}

// CrashOf returns the record of digest's crash of this pod's host, or nil.
func (s *Swapper) CrashOf(digest string) *Crash {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	for _, c := range s.crashesLocked() {
		if c.Digest == digest {
			return &c
		}
	}
	return nil
}

// crashes is a copy of the crashed list.
func (s *Swapper) crashes() []Crash {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	return append([]Crash(nil), s.crashesLocked()...)
}

// crashesLocked is the crashed list, read from the shared directory the first time. A list
// that is not what the agent writes is logged and read as empty (the next crash replaces it).
func (s *Swapper) crashesLocked() []Crash {
	if s.crashedRead {
		return s.crashed
	}
	var l crashList
	if _, err := s.readState(crashedFile, &l, l.validate); err != nil {
		s.log.Error(err, "ignoring the crashed list: it is not what the agent writes", "path", s.statePath(crashedFile))
		l = crashList{}
	}
	s.crashed, s.crashedRead = l.Crashed, true
	return s.crashed
}

func (s *Swapper) statePath(name string) string {
	return filepath.Join(s.opts.SharedDir, AgentStateDir, name)
}

// readState decodes the state file name into v, strictly, and validates it; found is false
// when there is no such file.
func (s *Swapper) readState(name string, v any, validate func() error) (found bool, err error) {
	f, err := os.Open(s.statePath(name))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStateBytes+1))
	switch {
	case err != nil:
		return false, err
	case len(b) > maxStateBytes:
		return false, fmt.Errorf("over %d bytes", maxStateBytes)
	}
	if err := control.DecodeOne(b, v); err != nil {
		return false, err
	}
	return true, validate()
}

// writeState replaces the state file name with v's JSON: a temporary file in the same
// directory (mode 0600), renamed over it, so that a reader never sees half of it.
func (s *Swapper) writeState(name string, v any) error {
	dir := filepath.Join(s.opts.SharedDir, AgentStateDir)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create the agent's state directory: %w", err)
	}
	// Never follow a symlink out of the shared directory: the app container can write it.
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s must be a directory the agent created (is it a symlink?): %v", dir, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	_, werr := tmp.Write(b)
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), filepath.Join(dir, name))
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", filepath.Join(dir, name), werr)
	}
	return nil
}

func (s *Swapper) removeState(name string) error {
	if err := os.Remove(s.statePath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", s.statePath(name), err)
	}
	return nil
}

// crashError says what happened to the host and, from the pod's status, how its app containers
// ended (splicev1.AnnotationAppContainers, default the first container), when it shows that.
func crashError(c *Crash, pod *corev1.Pod) error {
	what := map[string]string{attemptLoad: "open", attemptLoadSwap: "open and serve", attemptSwap: "serve", attemptRoute: "route calls to"}[c.Op]
	if what == "" {
		what = "bring in"
	}
	msg := fmt.Sprintf("the host process died after the agent asked it to %s %s (host instance %s ended; the restarted host, instance %s, does not have it): "+
		"a panic on a goroutine the plugin started, or any other fatal error in it, kills the process. The agent never asks this pod's host to load it again; roll out another artifact",
		what, c.Digest, c.Instance, c.NewInstance)
	if pod == nil {
		return errors.New(msg)
	}
	for _, name := range appContainers(pod) {
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.Name == name && cs.RestartCount > 0 {
				msg += "; " + restartText(cs)
			}
		}
	}
	return errors.New(msg)
}

// restartText describes an app container's restarts.
func restartText(cs corev1.ContainerStatus) string {
	times := "times"
	if cs.RestartCount == 1 {
		times = "time"
	}
	s := fmt.Sprintf("container %q restarted %d %s", cs.Name, cs.RestartCount, times)
	if t := cs.LastTerminationState.Terminated; t != nil {
		s += fmt.Sprintf(", last termination: exit code %d", t.ExitCode)
		if t.Reason != "" {
			s += " (" + t.Reason + ")"
		}
		if !t.FinishedAt.IsZero() {
			s += " at " + t.FinishedAt.UTC().Format(time.RFC3339)
		}
		if m := strings.TrimSpace(t.Message); m != "" {
			s += ": " + control.Truncate(m, 512)
		}
	}
	return s
}

// appContainers are the containers that link the host library: the annotation's list, else
// the pod's first container.
func appContainers(pod *corev1.Pod) []string {
	var names []string
	for _, n := range strings.Split(pod.Annotations[splicev1.AnnotationAppContainers], ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	if len(names) == 0 && len(pod.Spec.Containers) > 0 {
		names = []string{pod.Spec.Containers[0].Name}
	}
	return names
}
