package controllers

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/credentials"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/builder"
	"github.com/splice-dev/splice/internal/trust"
)

// The annotations the manager writes into its signature of a build's artifact, and asks of it
// on every later read: they bind the digest to this CompilerVersion and build key, so a build
// record rewritten to name another artifact (even one Splice built and signed for someone
// else) fails verification.
const (
	SignatureAnnotationCompilerVersion    = "splice.dev/compilerversion"
	SignatureAnnotationCompilerVersionUID = "splice.dev/compilerversion-uid"
	SignatureAnnotationBuildKey           = "splice.dev/build-key"
)

// ArtifactTrust is what the build controller checks and signs artifacts with; the zero value
// checks and signs nothing.
type ArtifactTrust struct {
	// Policies decide, per namespace, which keys must have signed an artifact and from which
	// registries it may come (the manager's --trust-policy); nil checks nothing.
	Policies *trust.Config
	// Signer signs the artifacts the build Jobs push (--signing-key); nil signs nothing.
	Signer *trust.Signer
}

func buildSignatureAnnotations(cv *splicev1.CompilerVersion, key string) map[string]string {
	return map[string]string{
		SignatureAnnotationCompilerVersion:    cv.Namespace + "/" + cv.Name,
		SignatureAnnotationCompilerVersionUID: string(cv.UID),
		SignatureAnnotationBuildKey:           key,
	}
}

// signBuild signs a finished build's artifact, before its record is written: the record is
// written once, so an artifact is either signed or not yet recorded. It pushes the signature
// with the build's own push credentials (spec.plugin.pushSecretRef, which checkCredentials
// required to be labelled for builds).
func (r *BuildReconciler) signBuild(ctx context.Context, cv *splicev1.CompilerVersion, res *builder.Result, key string) error {
	if r.Trust.Signer == nil {
		return nil
	}
	opts := r.RegistryOptions
	if ps := cv.Spec.Plugin.PushSecretRef; ps != nil {
		kc, err := r.pushKeychain(ctx, cv.Namespace, ps.Name)
		if err != nil {
			return err
		}
		opts = append(append([]artifact.Option{}, opts...), artifact.WithKeychain(kc))
	}
	if err := trust.Sign(ctx, res.Ref, r.Trust.Signer, buildSignatureAnnotations(cv, key), opts...); err != nil {
		return fmt.Errorf("sign %s: %w", res.Ref, err)
	}
	logf.FromContext(ctx).Info("signed the build's artifact", "ref", res.Ref, "key", r.Trust.Signer.Fingerprint())
	return nil
}

// checkTrust holds the artifact of a decision to the namespace's trust policy before it
// reaches status. want are the signature annotations asked for (a build's, see
// buildSignatureAnnotations; none for a prebuilt artifact). A refusal replaces the decision
// (Built=False with the policy's reason, and a Warning Event); a registry that cannot be read
// is returned, retried. Without a policy the Built message says the signature was not checked.
func (r *BuildReconciler) checkTrust(ctx context.Context, s *buildScope, source string, want map[string]string) error {
	d := s.decision
	if d == nil || d.artifact == nil {
		return nil
	}
	var p *trust.Policy
	if r.Trust.Policies != nil {
		p = r.Trust.Policies.For(s.cv.Namespace)
	}
	if p == nil {
		d.built.Message = clipMessage(d.built.Message+"; signature not checked: no trust policy covers namespace "+s.cv.Namespace, maxConditionMessage)
		return nil
	}
	v, err := p.Verify(ctx, d.artifact.Ref, want, r.RegistryOptions...)
	var refusal *trust.Refusal
	switch {
	case errors.As(err, &refusal):
		msg := fmt.Sprintf("artifact %s is refused by trust policy %s: %s", d.artifact.Ref, p.Name, refusal.Message)
		s.decision = decided(nil, metav1.ConditionFalse, refusal.Reason, msg)
		s.onChange = func() {
			buildResults.WithLabelValues(source, "refused", refusal.Reason).Inc()
			r.Recorder.Eventf(s.cv, nil, corev1.EventTypeWarning, refusal.Reason, "VerifySignature", "%s", clipMessage(msg, maxEventNote))
		}
		return nil
	case err != nil:
		s.decision = decided(nil, metav1.ConditionFalse, ReasonArtifactUnavailable,
			fmt.Sprintf("verify the signature of %s: %v; retrying", d.artifact.Ref, err))
		s.onChange = nil
		return fmt.Errorf("verify the signature of %s: %w", d.artifact.Ref, err)
	}
	d.artifact.Signature = &splicev1.SignatureStatus{Policy: v.Policy, Key: v.KeyFingerprint}
	d.built.Message = clipMessage(fmt.Sprintf("%s; signed by %s (trust policy %s)", d.built.Message, v.KeyFingerprint, v.Policy), maxConditionMessage)
	return nil
}

// pushKeychain reads the registry credentials of a dockerconfigjson Secret for signing.
func (r *BuildReconciler) pushKeychain(ctx context.Context, ns, name string) (authn.Keychain, error) {
	var sec corev1.Secret
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &sec); err != nil {
		return nil, fmt.Errorf("read push credentials %s/%s to sign with: %w", ns, name, err)
	}
	if sec.Labels[splicev1.LabelBuildCredentials] != "true" {
		return nil, fmt.Errorf("push credentials %s/%s are no longer labelled %s=true: label the Secret again to let the build's artifact be signed", ns, name, splicev1.LabelBuildCredentials)
	}
	kc, err := dockerConfigKeychain(sec.Data[corev1.DockerConfigJsonKey])
	if err != nil {
		return nil, fmt.Errorf("push credentials %s/%s: %s is not a Docker config: %w", ns, name, corev1.DockerConfigJsonKey, err)
	}
	return kc, nil
}

// dockerConfigKeychain resolves registries from a Docker config's "auths" entries alone, with
// docker/cli's file store (keys may carry a scheme or a path, as `docker login` writes them):
// a credential helper ("credsStore", "credHelpers") named by whoever wrote the Secret is never
// executed in the manager, and the manager's own environment (DOCKER_AUTH_CONFIG) is not read.
func dockerConfigKeychain(data []byte) (authn.Keychain, error) {
	cf := configfile.New("")
	if err := cf.LoadFromReader(bytes.NewReader(data)); err != nil {
		return nil, err
	}
	return fileStoreKeychain{credentials.NewFileStore(cf)}, nil
}

type fileStoreKeychain struct{ store credentials.Store }

func (k fileStoreKeychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	key := res.RegistryStr()
	if key == name.DefaultRegistry {
		key = authn.DefaultAuthKey
	}
	ac, err := k.store.Get(key)
	if err != nil {
		return nil, err
	}
	if ac.Username == "" && ac.Password == "" && ac.IdentityToken == "" && ac.RegistryToken == "" {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{Username: ac.Username, Password: ac.Password,
		IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken}), nil
}
