package artifact

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/host/preflight"
)

// A registry is untrusted input: the manifest and the config blob of a pulled artifact are
// checked against their digests, but whoever can push to the repository chose those bytes.

// realArtifact is the config blob and manifest Push writes for the v1 test plugin.
func realArtifact(tb testing.TB) (config, manifest []byte) {
	tb.Helper()
	p := plugins["v1"].Path
	cfg, config, err := pushConfig(p, Config{APIVersion: "1.2.0-rc.1", BuiltAt: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)})
	if err != nil {
		tb.Fatalf("config of %s: %v", p, err)
	}
	layer, err := newFileLayer(p)
	if err != nil {
		tb.Fatal(err)
	}
	manifest, err = encodeManifest(&cfg, &bytesBlob{data: config, mediaType: ConfigMediaType}, layer, filepath.Base(p),
		map[string]string{AnnotationSource: "https://example.com/greeter", AnnotationRevision: strings.Repeat("ab", 20)})
	if err != nil {
		tb.Fatal(err)
	}
	return config, manifest
}

// FuzzConfigBlob: a config blob decodeConfig accepts is what the package documents it to be:
// a preflight facts file (ReadFacts reads the same bytes as the same facts, so `splice preflight
// HOST config.json` works on it), with a plugin API version the CompilerVersion API can hold
// (spec.plugin.apiVersion's rule and status.artifact.apiVersion's bound), and it survives
// being encoded again.
func FuzzConfigBlob(f *testing.F) {
	config, _ := realArtifact(f)
	f.Add(config)
	var real map[string]any
	if err := json.Unmarshal(config, &real); err != nil {
		f.Fatal(err)
	}
	variant := func(change func(m map[string]any)) {
		m := map[string]any{}
		for k, v := range real {
			m[k] = v
		}
		change(m)
		b, err := json.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	variant(func(m map[string]any) { m["apiVersion"] = "v2.0.0" })
	variant(func(m map[string]any) { m["apiVersion"] = "banana" })
	variant(func(m map[string]any) { m["apiVersion"] = "1.0.0-" + strings.Repeat("a", 64) })
	variant(func(m map[string]any) { m["goVersion"] = "1.26.8" })
	variant(func(m map[string]any) { m["goos"] = "" })
	variant(func(m map[string]any) { m["packages"] = map[string]any{"": "0123456789abcdef"} })
	variant(func(m map[string]any) { m["packages"] = map[string]any{"example.com/p": "XYZ"} })
	variant(func(m map[string]any) { m["packages"] = nil })
	variant(func(m map[string]any) { m["kind"] = preflight.KindHost })
	variant(func(m map[string]any) { m["path"] = "/build/p.so"; m["builtAt"] = "2026-11-01T12:00:00.5+02:00" })
	variant(func(m map[string]any) { m["unknown"] = 1 })
	f.Add(append(bytes.Repeat([]byte(" "), 600), config...))
	f.Add(append(config, '}'))
	// Characters after the object that JSON does not count as whitespace.
	f.Add(append(config, 0))
	f.Add(append(config, "\u00a0"...))
	for _, s := range []string{`{}`, `null`, `[]`, `{"kind":"plugin","goVersion":"go1.26.8","pluginPath":"p","apiVersion":"1.0.0"}`} {
		f.Add([]byte(s))
	}

	file := filepath.Join(f.TempDir(), "config.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeConfig(data)
		if err != nil {
			return
		}
		if c.Kind != preflight.KindPlugin || !control.ValidAPIVersion(c.APIVersion) {
			t.Fatalf("accepted a config of kind %q with apiVersion %q: want a plugin with a semantic version of at most %d bytes", c.Kind, c.APIVersion, control.MaxAPIVersionBytes)
		}
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		facts, err := preflight.ReadFacts(file)
		if err != nil {
			t.Fatalf("accepted config %s is not a facts file: %v", clip(data), err)
		}
		want := c.Facts
		want.Path = file
		if want.Packages == nil {
			want.Packages = map[string]string{}
		}
		if !reflect.DeepEqual(*facts, want) {
			t.Fatalf("ReadFacts reads config %s as\n%+v\nnot\n%+v", clip(data), *facts, want)
		}
		again, err := json.Marshal(&c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := decodeConfig(again)
		if err != nil {
			t.Fatalf("accepted config re-encodes to one it refuses: %v\n%s", err, clip(again))
		}
		if !c2.BuiltAt.Equal(c.BuiltAt) {
			t.Fatalf("builtAt %v came back as %v", c.BuiltAt, c2.BuiltAt)
		}
		c.BuiltAt, c2.BuiltAt = time.Time{}, time.Time{}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, c2)
		}
	})
}

// FuzzManifest: a manifest decodeManifest accepts describes exactly what Pull is about to
// fetch: a config blob of the config media type and one plugin layer, both named by a valid
// sha256 digest with a size above zero, the layer's within the bound; it returns that layer;
// and the manifest encodes to one it reads the same way.
func FuzzManifest(f *testing.F) {
	_, manifest := realArtifact(f)
	f.Add(manifest, int64(DefaultMaxLayerBytes))
	f.Add(manifest, int64(1))
	f.Add(append(manifest, ']'), int64(DefaultMaxLayerBytes))
	f.Add(append(manifest, 0), int64(DefaultMaxLayerBytes))
	f.Add(append(manifest, "\u2028"...), int64(DefaultMaxLayerBytes))
	for _, r := range []struct{ old, new string }{
		{`"schemaVersion":2`, `"schemaVersion":1`},
		{`"mediaType":"` + ManifestMediaType + `",`, ``},
		{`"artifactType":"` + ArtifactType + `",`, `"artifactType":"application/vnd.oci.image.config.v1+json",`},
		{`"layers":[`, `"layers":[{"mediaType":"` + LayerMediaType + `","size":1,"digest":"sha256:` + strings.Repeat("0", 64) + `"},`},
		{`"digest":"sha256:`, `"digest":"sha512:`},
		{`"digest":"sha256:`, `"digest":"sha256:A`},
		{`"size":`, `"size":-`},
		{`"size":`, `"size":0`},
		{`"schemaVersion"`, `"SchemaVersion"`},
	} {
		f.Add([]byte(strings.Replace(string(manifest), r.old, r.new, 1)), int64(DefaultMaxLayerBytes))
	}
	f.Add([]byte(`{"schemaVersion":2,"config":{"mediaType":"`+ConfigMediaType+`","size":1,"digest":"sha256:`+strings.Repeat("a", 64)+`"},"layers":[{"mediaType":"`+LayerMediaType+`","size":9223372036854775807,"digest":"sha256:`+strings.Repeat("b", 64)+`"}]}`), int64(DefaultMaxLayerBytes))
	f.Add([]byte(`null`), int64(0))

	f.Fuzz(func(t *testing.T, data []byte, maxLayer int64) {
		o := makeOptions([]Option{WithMaxLayerBytes(maxLayer)})
		m, layer, err := decodeManifest(data, o)
		if err != nil {
			return
		}
		if len(m.Layers) != 1 || !reflect.DeepEqual(layer, m.Layers[0]) || layer.MediaType != LayerMediaType || m.Config.MediaType != ConfigMediaType {
			t.Fatalf("accepted manifest %s with layers %+v and config %+v, returned layer %+v", clip(data), m.Layers, m.Config, layer)
		}
		for _, d := range []v1.Descriptor{m.Config, layer} {
			if !control.ValidDigest(d.Digest.String()) || d.Size <= 0 {
				t.Fatalf("accepted manifest %s with blob %s of size %d", clip(data), d.Digest, d.Size)
			}
		}
		if layer.Size > maxLayer {
			t.Fatalf("accepted a layer of %d bytes with a bound of %d", layer.Size, maxLayer)
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, layer2, err := decodeManifest(again, o)
		if err != nil {
			t.Fatalf("accepted manifest re-encodes to one it refuses: %v\n%s", err, clip(again))
		}
		// Compared as JSON: an empty map and a missing one are the same manifest.
		l1, _ := json.Marshal(layer)
		l2, _ := json.Marshal(layer2)
		if third, _ := json.Marshal(m2); !bytes.Equal(third, again) || !bytes.Equal(l1, l2) {
			t.Fatalf("round trip changed the manifest:\n%s\n%s", again, third)
		}
	})
}

// clip quotes at most the first and last 100 bytes of a fuzzer's input.
func clip(b []byte) string {
	if len(b) <= 240 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%q ... (%d bytes) ... %q", b[:100], len(b), b[len(b)-100:])
}
