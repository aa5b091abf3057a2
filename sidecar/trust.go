package sidecar

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/go-logr/logr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/internal/trust"
)

// EnvTrustPolicy carries the namespace's trust policy (trust.Policy.Encode) into the agent;
// the webhook sets it when a policy covers the pod's namespace.
const EnvTrustPolicy = "SPLICE_TRUST_POLICY"

// verifiedRefs remembers the references whose signatures verified, so a resync does not read
// the registry again; a digest names the same bytes forever and the policy is fixed for the
// agent's life. Bounded: past maxVerified it starts over.
type verifiedRefs struct {
	mu   sync.Mutex
	refs map[string]bool
}

const maxVerified = 256

func (v *verifiedRefs) has(ref string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.refs[ref]
}

func (v *verifiedRefs) add(ref string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.refs == nil || len(v.refs) >= maxVerified {
		v.refs = map[string]bool{}
	}
	v.refs[ref] = true
}

// verify checks ref's signature against the trust policy before anything is pulled. A refusal
// fails the swap with the policy's reason (SignatureMissing, SignatureUntrusted,
// SignatureInvalid, RegistryNotAllowed) and never reaches the host; a registry that cannot be
// read is retried like a pull.
func (s *Swapper) verify(ctx context.Context, out *Outcome, ref string) bool {
	p := s.opts.Trust
	if p == nil || s.verified.has(ref) {
		return true
	}
	v, err := p.Verify(ctx, ref, nil, s.opts.Pull...)
	var refusal *trust.Refusal
	switch {
	case errors.As(err, &refusal):
		out.fail(failure{state: splicev1.SwapFailed, reason: refusal.Reason}, fmt.Errorf("trust policy %s refuses %s: %w", p.Name, ref, err))
		return false
	case err != nil:
		out.fail(classifyPull(err), fmt.Errorf("verify the signature of %s: %w", ref, err))
		if !artifact.Temporary(err) {
			out.Reason = ReasonPullFailed
		}
		return false
	}
	s.verified.add(ref)
	logr.FromContextOrDiscard(ctx).Info("signature verified", "ref", ref, "policy", v.Policy, "key", v.KeyFingerprint)
	return true
}
