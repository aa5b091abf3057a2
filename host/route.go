package host

// RouteBucket maps a request key to a bucket in [0, 100): FNV-1a (32-bit) of the key's bytes,
// modulo 100. With a canary at P percent, keys whose bucket is below P go to the canary. The
// function is part of the contract — tests, the agent and the operator may compute it to
// predict routing — so it never changes: same key, same bucket, in every process and release.
// Raising P only ever moves keys from the stable version to the canary, never back.
func RouteBucket(key string) int {
	// Inlined rather than hash/fnv so the hot path allocates nothing.
	const (
		offset32 = 2166136261
		prime32  = 16777619
	)
	h := uint32(offset32)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= prime32
	}
	return int(h % 100)
}
