package host

import (
	"net"
	"syscall"
	"testing"

	"github.com/go-logr/logr"
)

// A re-exec that cannot pass one of its listeners is abandoned; the listeners already switched
// to survive the exec must be close-on-exec again, or any child the host starts later inherits
// a listening socket.
func TestReexecRestoresCloseOnExecWhenAListenerCannotBePassed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File() // a duplicate, close-on-exec as Go makes every fd
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	good := int(f.Fd())
	if !closeOnExec(t, good) {
		t.Fatal("precondition: the duplicate is not close-on-exec")
	}
	r := &reexecRun{log: logr.Discard(), listeners: []*handedListener{{name: "good", fd: good}, {name: "gone", fd: -1}}}
	if err := r.exec(handoffPayload{}); err == nil {
		t.Fatal("exec with an unusable listener succeeded")
	}
	if !closeOnExec(t, good) {
		t.Fatal("listener good kept close-on-exec off after the attempt was abandoned")
	}
}

func closeOnExec(t *testing.T, fd int) bool {
	t.Helper()
	flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
	if errno != 0 {
		t.Fatalf("fcntl(F_GETFD): %v", errno)
	}
	return flags&syscall.FD_CLOEXEC != 0
}
