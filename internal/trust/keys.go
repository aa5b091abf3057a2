package trust

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// PEM block types of private keys, as cosign writes them.
const (
	// PEMTypeEncryptedSigstore is cosign's encrypted private key (cosign 2 and later).
	PEMTypeEncryptedSigstore = "ENCRYPTED SIGSTORE PRIVATE KEY"
	// PEMTypeEncryptedCosign is the same format under its older name (cosign 1).
	PEMTypeEncryptedCosign = "ENCRYPTED COSIGN PRIVATE KEY"
)

// Signer signs artifacts with one ECDSA P-256 private key.
type Signer struct {
	sv          signature.SignerVerifier
	pub         *ecdsa.PublicKey
	fingerprint string
}

// LoadSigner reads a private key in PEM: cosign's encrypted format (decrypted with password;
// an empty or nil password is the empty password cosign also allows), or an unencrypted PKCS#8
// "PRIVATE KEY" or SEC 1 "EC PRIVATE KEY" block (password is then ignored). The key must be
// ECDSA P-256.
func LoadSigner(pemBytes, password []byte) (*Signer, error) {
	block, rest := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("load signing key: not a PEM private key: give the cosign.key file that `splice keygen` or `cosign generate-key-pair` wrote")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("load signing key: the file holds more than one PEM block: give a file with the private key alone")
	}
	if password == nil {
		password = []byte{} // nil would make cryptoutils skip the decryption
	}
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(pemBytes, cryptoutils.StaticPasswordFunc(password))
	if err != nil {
		if block.Type == PEMTypeEncryptedSigstore || block.Type == PEMTypeEncryptedCosign {
			return nil, fmt.Errorf("load signing key: cannot decrypt it with the given password (%v): set SPLICE_SIGNING_PASSWORD (or COSIGN_PASSWORD) to the password the key was generated with", err)
		}
		return nil, fmt.Errorf("load signing key: %s block: %w (want an encrypted cosign key, or an unencrypted PKCS#8 PRIVATE KEY or EC PRIVATE KEY)", block.Type, err)
	}
	ec, ok := priv.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("load signing key: it is a %T key; Splice signs with ECDSA P-256 keys only: generate one with `splice keygen`", priv)
	}
	sv, err := signature.LoadSignerVerifier(ec, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("load signing key: %w", err)
	}
	fp, err := fingerprint(&ec.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("load signing key: %w", err)
	}
	return &Signer{sv: sv, pub: &ec.PublicKey, fingerprint: fp}, nil
}

// PublicKeyPEM is the signer's public key as cosign.pub holds it (a PKIX "PUBLIC KEY" block):
// what goes into a trust policy's keys.
func (s *Signer) PublicKeyPEM() ([]byte, error) {
	return cryptoutils.MarshalPublicKeyToPEM(s.pub)
}

// Fingerprint is the signer's public key fingerprint, "sha256:<hex>" of its DER
// SubjectPublicKeyInfo: what Verified.KeyFingerprint reports and KeyFingerprint computes.
func (s *Signer) Fingerprint() string { return s.fingerprint }

// GenerateKeyPair makes a new ECDSA P-256 key pair: the private key encrypted with password in
// cosign's format (an "ENCRYPTED SIGSTORE PRIVATE KEY" block; an empty or nil password is
// allowed and still encrypts, as cosign does), and the public key as a PKIX "PUBLIC KEY" block.
// cosign reads both: `cosign sign --key` and `cosign verify --key` work with them.
func GenerateKeyPair(password []byte) (privatePEM, publicPEM []byte, err error) {
	if password == nil {
		password = []byte{} // nil would make cryptoutils write the key unencrypted
	}
	privatePEM, publicPEM, err = cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), cryptoutils.StaticPasswordFunc(password))
	if err != nil {
		return nil, nil, fmt.Errorf("generate key pair: %w", err)
	}
	return privatePEM, publicPEM, nil
}

// KeyFingerprint is the fingerprint of a PEM public key, "sha256:<hex>" of its DER
// SubjectPublicKeyInfo; the key must be one a Policy accepts.
func KeyFingerprint(publicPEM []byte) (string, error) {
	k, err := parsePublicKey(string(publicPEM))
	if err != nil {
		return "", err
	}
	return k.fingerprint, nil
}

// trustedKey is one public key of a policy, ready to verify with.
type trustedKey struct {
	verifier    signature.Verifier
	fingerprint string
}

// parsePublicKey reads one PEM public key of a policy: exactly one "PUBLIC KEY" block of an
// ECDSA P-256 key.
func parsePublicKey(s string) (*trustedKey, error) {
	block, rest := pem.Decode([]byte(strings.TrimSpace(s)))
	switch {
	case block == nil:
		return nil, errors.New("not a PEM public key: paste the whole cosign.pub, from -----BEGIN PUBLIC KEY----- to -----END PUBLIC KEY-----")
	case len(bytes.TrimSpace(rest)) > 0:
		return nil, errors.New("more than one PEM block in one key: give each key as its own entry")
	case block.Type != string(cryptoutils.PublicKeyPEMType):
		return nil, fmt.Errorf("a %q PEM block, not a PUBLIC KEY: give the public key (cosign.pub), never the private key", block.Type)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(strings.TrimSpace(s)))
	if err != nil {
		return nil, fmt.Errorf("bad public key: %w", err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("a %T key: Splice verifies ECDSA P-256 keys only (what `splice keygen` and `cosign generate-key-pair` make)", pub)
	}
	v, err := signature.LoadVerifier(ec, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("bad public key: %w", err)
	}
	fp, err := fingerprint(ec)
	if err != nil {
		return nil, err
	}
	return &trustedKey{verifier: v, fingerprint: fp}, nil
}

func fingerprint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encode public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}
