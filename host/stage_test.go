package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/splice-dev/splice/host/control"
)

// controlled serves a control endpoint for s over a unix socket in a fresh shared directory
// and returns the directory and a client.
func controlled(t *testing.T, s ControlTarget) (string, *control.Client) {
	t.Helper()
	shared, err := os.MkdirTemp("", "splice-stage-") // a socket path stays under 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	h, err := NewControlHandler(s, ControlOptions{SharedDir: shared})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(shared, control.SocketName)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return shared, control.NewClient(sock)
}

// TestOverwrittenSharedFileDoesNotReachTheHost: the host loads a private copy, so overwriting
// the shared file in place after the load (which crashed a host that had mapped that very
// file) changes nothing; a file whose bytes are not the fileDigest named is refused.
func TestOverwrittenSharedFileDoesNotReachTheHost(t *testing.T) {
	so := buildRealPlugin(t, "example.test/overwrite", fmt.Sprintf(stringerPlugin, 1))
	data, err := os.ReadFile(so)
	if err != nil {
		t.Fatal(err)
	}
	s := newStringerSlot(t, Options{PrivateDir: filepath.Join(t.TempDir(), "private")})
	shared, client := controlled(t, s)
	if err := os.WriteFile(filepath.Join(shared, "v1.so"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	fileDigest, _ := control.FileDigest(so)
	ctx := context.Background()

	bad := "sha256:" + strings.Repeat("0", 64)
	_, err = client.Load(ctx, control.LoadRequest{Path: "v1.so", Digest: bad, FileDigest: bad, Swap: true})
	var ce *control.Error
	if !errors.As(err, &ce) || ce.Code != control.CodeFileDigestMismatch || len(s.Status().Versions) != 0 {
		t.Fatalf("load naming another fileDigest: %v, %d versions; want FileDigestMismatch and nothing tried", err, len(s.Status().Versions))
	}
	if _, err := client.Load(ctx, control.LoadRequest{Path: "v1.so", Digest: fileDigest, FileDigest: fileDigest, Swap: true}); err != nil {
		t.Fatalf("load: %v", err)
	}
	// In place: same inode, every byte replaced, as a careless or hostile writer would.
	if err := os.WriteFile(filepath.Join(shared, "v1.so"), make([]byte, len(data)), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		var out string
		if err := s.Call("k", func(g fmt.Stringer) error { out = g.String(); return nil }); err != nil || out != "10" {
			t.Fatalf("call after the shared file was overwritten = %q, %v; want 10", out, err)
		}
	}
	st := s.Status()
	if v := st.Version(fileDigest); v == nil || v.Path != filepath.Join(shared, "v1.so") {
		t.Errorf("status names %+v; want the shared path the request named", v)
	}
}

// TestLoadCannotBeRacedOutOfTheSharedDir: a directory of the shared dir flipped between the
// real one and a symlink to a directory outside, while loads of a file under it are requested,
// never makes the host open the file outside (a check of the path, then an open by path,
// loaded the outside file within 0.1 s).
func TestLoadCannotBeRacedOutOfTheSharedDir(t *testing.T) {
	good := buildRealPlugin(t, "example.test/racegood", fmt.Sprintf(stringerPlugin, 1))
	evil := buildRealPlugin(t, "example.test/raceevil", fmt.Sprintf(stringerPlugin, 2))
	s := newStringerSlot(t, Options{PrivateDir: filepath.Join(t.TempDir(), "private")})
	shared, client := controlled(t, s)
	outside := t.TempDir()
	d := filepath.Join(shared, "d")
	for dir, so := range map[string]string{d: good, outside: evil} {
		data, err := os.ReadFile(so)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "p.so"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var stop atomic.Bool
	flipped := make(chan int)
	go func() {
		n := 0
		for !stop.Load() {
			// The real directory moves away and a symlink out of the shared dir takes its
			// name, then the directory comes back.
			os.Rename(d, d+".away")
			os.Symlink(outside, d)
			time.Sleep(50 * time.Microsecond)
			os.Remove(d)
			os.Rename(d+".away", d)
			n++
		}
		flipped <- n
	}()
	evilDigest, _ := control.FileDigest(evil)
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		digest := fmt.Sprintf("sha256:%064x", i+1)
		vs, err := client.Load(context.Background(), control.LoadRequest{Path: "d/p.so", Digest: digest})
		if err == nil && vs.Version.FileDigest == evilDigest {
			stop.Store(true)
			<-flipped
			t.Fatalf("request %d loaded %s from outside the shared directory", i, evil)
		}
	}
	stop.Store(true)
	t.Logf("%d flips of the directory during 3 s of loads", <-flipped)
	for _, v := range s.Status().Versions {
		if v.FileDigest == evilDigest || v.PluginPath == "example.test/raceevil" {
			t.Fatalf("the host opened the file outside: %+v", v)
		}
	}
}
