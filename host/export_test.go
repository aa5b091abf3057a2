package host

// install makes impl a loaded version under digest without plugin.Open. The routing,
// accounting and rollback logic under test is the same whatever produced impl; the tests in
// examples/greeter/e2e cover real plugins in a real host process.
func (s *Slot[T]) install(digest, apiVersion string, impl T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := newVersion(digest, "/installed/"+digest)
	v.apiVersion = apiVersion
	s.versions = append(s.versions, v)
	s.byDigest[digest] = v
	s.entries[digest] = &entry[T]{v: v, impl: impl}
}
