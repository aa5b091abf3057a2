// Package testio holds I/O helpers shared by the project's tests. It is imported only from
// _test.go files.
package testio

import (
	"bytes"
	"sync"
)

// SyncBuffer is a bytes.Buffer that a running command (or several of its pipes) may write to
// while a test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
