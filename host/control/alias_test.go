package control

import "testing"

// TestAliasesNameTheVersion: a version's aliases name it wherever a digest is looked up, so an
// agent that asked for the artifact's manifest digest sees the version the host already runs.
func TestAliasesNameTheVersion(t *testing.T) {
	file, manifest, other := "sha256:"+hex64('a'), "sha256:"+hex64('b'), "sha256:"+hex64('c')
	st := &Status{Current: file, Canary: other, Versions: []VersionStatus{
		{Digest: file, FileDigest: file, Aliases: []string{manifest}, State: StateCurrent},
		{Digest: other, FileDigest: "sha256:" + hex64('d'), State: StateCanary},
		{Digest: "sha256:" + hex64('e'), FileDigest: "sha256:" + hex64('f'), State: StateFailed},
	}}
	if v := st.Version(manifest); v == nil || v.Digest != file {
		t.Errorf("Version(alias) = %+v; want the version loaded as %s", v, file)
	}
	if !st.IsCurrent(manifest) || !st.IsCurrent(file) || st.IsCurrent(other) || st.IsCurrent("") {
		t.Errorf("IsCurrent: alias %t, digest %t, other %t", st.IsCurrent(manifest), st.IsCurrent(file), st.IsCurrent(other))
	}
	if !st.IsCanary(other) || st.IsCanary(manifest) {
		t.Errorf("IsCanary: canary %t, current's alias %t", st.IsCanary(other), st.IsCanary(manifest))
	}
	if v := st.SameBuild(file); v == nil || v.Digest != file {
		t.Errorf("SameBuild(file digest) = %+v; want the loaded version", v)
	}
	if v := st.SameBuild("sha256:" + hex64('f')); v != nil {
		t.Errorf("SameBuild of a failed version's file = %+v; want nil (it serves nothing)", v)
	}
}

func hex64(c byte) string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return string(b)
}
