// Package trust signs Splice plugin artifacts and verifies them against a trust policy, in
// cosign's format, so that `cosign sign --key` / `cosign verify --key` and Splice read each
// other's signatures.
//
// # Signatures
//
// A signature of the artifact registry/repo@sha256:<hex> lives in the same repository, in an
// OCI image manifest tagged sha256-<hex>.sig (cosign's tag scheme). Each of its layers is one
// signature: a simple-signing JSON payload (media type
// application/vnd.dev.cosign.simplesigning.v1+json) that names the repository
// (critical.identity.docker-reference), the manifest digest (critical.image.docker-manifest-digest)
// and the signer's annotations (optional), with the layer annotation
// dev.cosignproject.cosign/signature holding the base64 ECDSA P-256 / SHA-256 signature over the
// payload's bytes. Sign appends a layer and keeps the others; Splice also records the signing
// key's fingerprint in the layer annotation splice.dev/key-fingerprint, which is a hint for
// messages only (it is not signed, and Verify trusts nothing but the signature).
//
// Keys are cosign's: GenerateKeyPair writes the encrypted private key as cosign does (an
// "ENCRYPTED SIGSTORE PRIVATE KEY" PEM block: scrypt and NaCl secretbox), and LoadSigner reads
// that, the older "ENCRYPTED COSIGN PRIVATE KEY", and unencrypted PKCS#8 "PRIVATE KEY" and SEC 1
// "EC PRIVATE KEY" blocks. Only ECDSA P-256 keys are accepted, for signing and in a policy.
//
// # Trust policy
//
// A Config is a list of Policy, each covering namespaces; the first policy covering a namespace
// decides for it (Config.For). Policy.Verify accepts an artifact pinned by digest whose
// repository the policy allows and which has a signature by one of the policy's keys over a
// payload naming exactly that repository and digest, with every wanted annotation. Anything
// else is a *Refusal with one of the Reason constants and a message saying what to fix; an error
// that is not a Refusal is the registry failing to answer (artifact.Temporary says whether a
// retry may help) or a reference not pinned by digest (artifact.ErrNotPinned).
//
// Everything read from a registry is bounded (MaxSignatureManifestBytes, MaxSignatureLayers,
// MaxPayloadBytes) and payloads are checked against their digests before they are used.
package trust
