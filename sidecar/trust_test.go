package sidecar_test

import (
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/internal/trust"
	"github.com/splice-dev/splice/sidecar"
)

var _ = Describe("The agent's trust policy", func() {
	It("pulls nothing the policy's keys did not sign, and swaps what they did", func(ctx SpecContext) {
		h := startHost(ctx)
		plain := artifact.WithInsecureRegistries(regHost)
		priv, pub, err := trust.GenerateKeyPair(nil)
		Expect(err).NotTo(HaveOccurred())
		signer, err := trust.LoadSigner(priv, nil)
		Expect(err).NotTo(HaveOccurred())
		otherPriv, _, err := trust.GenerateKeyPair(nil)
		Expect(err).NotTo(HaveOccurred())
		other, err := trust.LoadSigner(otherPriv, nil)
		Expect(err).NotTo(HaveOccurred())
		// The policy travels to the agent in its encoded form, as the webhook passes it.
		enc, err := (&trust.Policy{Name: "team", Namespaces: []string{"*"}, Keys: []string{string(pub)}}).Encode()
		Expect(err).NotTo(HaveOccurred())
		policy, err := trust.DecodePolicy(enc)
		Expect(err).NotTo(HaveOccurred())
		sw, err := sidecar.NewSwapper(sidecar.SwapperOptions{SharedDir: h.shared, Host: h.client, AllowMinor: true,
			Pull: []artifact.Option{plain}, Trust: policy})
		Expect(err).NotTo(HaveOccurred())
		v2 := arts["v2-flaky"]
		onDisk := filepath.Join(h.shared, strings.TrimPrefix(v2.digest, "sha256:")+".so")

		out := sw.Swap(ctx, v2.ref)
		Expect(out.State).To(Equal(splicev1.SwapFailed))
		Expect(out.Reason).To(Equal(trust.ReasonSignatureMissing), "%v", out.Err)
		Expect(onDisk).NotTo(BeAnExistingFile(), "an unsigned artifact reached the shared volume")
		Expect(h.greet("ada", "").Version).To(Equal("v1"))

		Expect(trust.Sign(ctx, v2.ref, other, nil, plain)).To(Succeed())
		out = sw.Swap(ctx, v2.ref)
		Expect(out.Reason).To(Equal(trust.ReasonSignatureUntrusted), "%v", out.Err)
		_, statErr := os.Stat(onDisk)
		Expect(os.IsNotExist(statErr)).To(BeTrue())

		Expect(trust.Sign(ctx, v2.ref, signer, nil, plain)).To(Succeed())
		out = sw.Swap(ctx, v2.ref)
		Expect(out.Err).NotTo(HaveOccurred())
		Expect(out.State).To(Equal(splicev1.SwapReady))
		Expect(onDisk).To(BeAnExistingFile())
	})
})
