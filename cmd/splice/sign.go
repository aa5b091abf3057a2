package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/internal/trust"
)

// The environment variables the signing key's password is read from, in this order.
const (
	envSigningPassword = "SPLICE_SIGNING_PASSWORD"
	envCosignPassword  = "COSIGN_PASSWORD"
)

// Key file names, as cosign names them.
const (
	privateKeyFile = "cosign.key"
	publicKeyFile  = "cosign.pub"
)

// signingPassword is the password from the environment, and whether one was set.
func signingPassword() ([]byte, bool) {
	for _, env := range []string{envSigningPassword, envCosignPassword} {
		if v, ok := os.LookupEnv(env); ok {
			return []byte(v), true
		}
	}
	return []byte{}, false
}

func newKeygenCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen --out DIR",
		Short: "Generate a signing key pair (cosign.key, cosign.pub) for splice sign",
		Long: `Generate an ECDSA P-256 key pair in DIR (created if missing): cosign.key,
the private key encrypted as cosign encrypts it (mode 0600), and cosign.pub,
the public key a trust policy lists. cosign reads both (cosign sign --key,
cosign verify --key), and splice sign and verify read cosign's.

The password comes from SPLICE_SIGNING_PASSWORD, else COSIGN_PASSWORD; with
neither set the key is encrypted with the empty password. Existing key files
are never overwritten.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageError{errors.New("--out DIR is required")}
			}
			password, set := signingPassword()
			if !set {
				fmt.Fprintf(cmd.ErrOrStderr(), "splice keygen: neither %s nor %s is set: the key is encrypted with the empty password\n", envSigningPassword, envCosignPassword)
			}
			return keygen(cmd.OutOrStdout(), out, password)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to write cosign.key and cosign.pub into")
	return cmd
}

func keygen(w io.Writer, dir string, password []byte) error {
	priv, pub := filepath.Join(dir, privateKeyFile), filepath.Join(dir, publicKeyFile)
	for _, p := range []string{priv, pub} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s exists: it is never overwritten; remove it, or give another --out", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	privPEM, pubPEM, err := trust.GenerateKeyPair(password)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := writeNew(priv, privPEM, 0o600); err != nil {
		return err
	}
	if err := writeNew(pub, pubPEM, 0o644); err != nil {
		return err
	}
	fp, err := trust.KeyFingerprint(pubPEM)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "wrote %s (private, encrypted) and %s (public, key %s)\n", priv, pub, fp)
	return err
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("create %s (never overwritten): %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

func newSignCommand() *cobra.Command {
	var (
		key         string
		annotations []string
		insecure    bool
	)
	cmd := &cobra.Command{
		Use:   "sign --key cosign.key [-a KEY=VALUE ...] [--insecure] REF",
		Short: "Sign a pushed artifact (cosign's format) for a trust policy",
		Long: `Sign REF, an artifact pinned by digest (registry/repo@sha256:..., what
splice push prints), with the private key file --key (splice keygen's or
cosign's; its password from SPLICE_SIGNING_PASSWORD, else COSIGN_PASSWORD),
and store the signature as cosign does: a layer of the manifest tagged
sha256-<hex>.sig in the same repository. Signatures already there are kept;
signing again with the same key and annotations changes nothing.

Each -a KEY=VALUE is signed with the artifact; a trust policy or splice verify
-a can require it. Registry access is splice push's (Docker config
credentials, --insecure).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			anns, err := parseAnnotations(annotations)
			if err != nil {
				return err
			}
			if key == "" {
				return usageError{errors.New("--key cosign.key is required")}
			}
			pemBytes, err := os.ReadFile(key)
			if err != nil {
				return fmt.Errorf("read the signing key: %w", err)
			}
			password, _ := signingPassword()
			s, err := trust.LoadSigner(pemBytes, password)
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			if err := trust.Sign(context.Background(), args[0], s, anns, artifact.WithInsecure(insecure)); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "signed %s with key %s%s\n", args[0], s.Fingerprint(), formatAnnotations(anns))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&key, "key", "", "private key file (cosign.key)")
	f.StringArrayVarP(&annotations, "annotation", "a", nil, "KEY=VALUE to sign with the artifact (repeatable)")
	f.BoolVar(&insecure, "insecure", false, "use plain HTTP for any registry (without it, every registry gets TLS)")
	return cmd
}

func newVerifyCommand() *cobra.Command {
	var (
		keys, registries, annotations []string
		insecure                      bool
	)
	cmd := &cobra.Command{
		Use:   "verify --key cosign.pub [--registry PREFIX ...] [-a KEY=VALUE ...] [--insecure] REF",
		Short: "Check an artifact's signature as a trust policy would",
		Long: `Check REF, an artifact pinned by digest, as a trust policy with these keys
and registries would: its repository is under one of the --registry prefixes
(any, without one), and it has a signature by one of the --key public keys
over a payload naming exactly this repository and digest, with every
-a KEY=VALUE. cosign's signatures count (cosign sign --key).

Exit status 0 prints the key that signed it; 1 prints the refusal's reason
(RegistryNotAllowed, SignatureMissing, SignatureUntrusted, SignatureInvalid)
and what to fix; 2 is an error (the registry could not be read, a bad key).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, want, err := verifyPolicy(keys, registries, annotations)
			if err != nil {
				return err
			}
			v, err := p.Verify(context.Background(), args[0], want, artifact.WithInsecure(insecure))
			var r *trust.Refusal
			if errors.As(err, &r) {
				fmt.Fprintf(cmd.OutOrStdout(), "refused: %s\n  %s: %s\n", args[0], r.Reason, r.Message)
				return errRefused
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "verified: %s is signed by key %s%s\n", v.Ref, v.KeyFingerprint, formatAnnotations(v.Annotations))
			return err
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&keys, "key", nil, "public key file (cosign.pub) to trust (repeatable)")
	f.StringArrayVar(&registries, "registry", nil, "allowed repository prefix, e.g. registry.example.com/team-a/ (repeatable; default any)")
	f.StringArrayVarP(&annotations, "annotation", "a", nil, "KEY=VALUE the signature must carry (repeatable)")
	f.BoolVar(&insecure, "insecure", false, "use plain HTTP for any registry (without it, every registry gets TLS)")
	return cmd
}

// verifyPolicy is the trust policy splice verify's flags describe.
func verifyPolicy(keys, registries, annotations []string) (*trust.Policy, map[string]string, error) {
	if len(keys) == 0 {
		return nil, nil, usageError{errors.New("--key cosign.pub is required (repeatable)")}
	}
	want, err := parseAnnotations(annotations)
	if err != nil {
		return nil, nil, err
	}
	p := &trust.Policy{Name: "command-line", Namespaces: []string{trust.AllNamespaces}, Registries: registries}
	for _, k := range keys {
		b, err := os.ReadFile(k)
		if err != nil {
			return nil, nil, fmt.Errorf("read public key: %w", err)
		}
		p.Keys = append(p.Keys, string(b))
	}
	if err := p.Validate(); err != nil {
		return nil, nil, usageError{fmt.Errorf("--key or --registry: %w", err)}
	}
	return p, want, nil
}

// parseAnnotations reads -a KEY=VALUE flags.
func parseAnnotations(flags []string) (map[string]string, error) {
	out := map[string]string{}
	for _, a := range flags {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, usageError{fmt.Errorf("-a %q: want KEY=VALUE", a)}
		}
		if prev, dup := out[k]; dup && prev != v {
			return nil, usageError{fmt.Errorf("-a %s given twice with different values", k)}
		}
		out[k] = v
	}
	return out, nil
}

func formatAnnotations(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
