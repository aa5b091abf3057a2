package argocd

import (
	"strings"
	"testing"
)

// TestRunHealthIsArgoCD checks the runner against what Argo CD does with a script, so that a
// case passing here passes in Argo CD: above all that the argocd-cm libraries really lack the
// string library and most of os (else running every case with them proves nothing), that
// numbers arrive as Lua numbers, and how a bad return value ends.
func TestRunHealthIsArgoCD(t *testing.T) {
	obj := map[string]any{"metadata": map[string]any{"generation": int64(3), "labels": []any{"a", nil}}}
	type outcome struct {
		hs healthStatus
		// err is a part of the error wanted; "" wants none.
		err string
	}
	tests := []struct {
		name   string
		script string
		// want is per library set; a mode without an entry is not run.
		want map[libs]outcome
	}{{
		name:   "the returned table's status and message",
		script: `hs = {}; hs.status = "Degraded"; hs.message = "no"; return hs`,
		want: map[libs]outcome{
			argocdCM: {hs: healthStatus{"Degraded", "no"}},
			openLibs: {hs: healthStatus{"Degraded", "no"}},
		},
	}, {
		name:   "obj is the object, an int64 a number",
		script: `return {status = "Healthy", message = tostring(obj.metadata.generation + 1) .. " " .. obj.metadata.labels[1]}`,
		want: map[libs]outcome{
			argocdCM: {hs: healthStatus{"Healthy", "4 a"}},
			openLibs: {hs: healthStatus{"Healthy", "4 a"}},
		},
	}, {
		name:   "no string library without useOpenLibs",
		script: `return {status = "Healthy", message = string.upper("ok")}`,
		want: map[libs]outcome{
			argocdCM: {err: "string"},
			openLibs: {hs: healthStatus{"Healthy", "OK"}},
		},
	}, {
		name:   "no string methods without useOpenLibs",
		script: `local s = "ok"; return {status = "Healthy", message = s:upper()}`,
		want: map[libs]outcome{
			argocdCM: {err: "upper"},
			openLibs: {hs: healthStatus{"Healthy", "OK"}},
		},
	}, {
		name:   "os has time and date only without useOpenLibs",
		script: `return {status = "Healthy", message = type(os.time()) .. " " .. type(os.date) .. " " .. type(os.getenv) .. " " .. type(require("os").exit)}`,
		want: map[libs]outcome{
			argocdCM: {hs: healthStatus{"Healthy", "number function nil nil"}},
			openLibs: {hs: healthStatus{"Healthy", "number function function function"}},
		},
	}, {
		name:   "a status Argo CD does not know is Unknown",
		script: `return {status = "Fine", message = "all good"}`,
		want: map[libs]outcome{
			argocdCM: {hs: invalidStatus},
			openLibs: {hs: invalidStatus},
		},
	}, {
		name:   "a message that is not a string fails",
		script: `return {status = "Healthy", message = 3}`,
		want:   map[libs]outcome{argocdCM: {err: "not a string"}},
	}, {
		name:   "a return value that is not a table fails",
		script: `return "Healthy"`,
		want:   map[libs]outcome{argocdCM: {err: "not a table"}},
	}, {
		name:   "a script that runs past the deadline fails",
		script: `while true do end`,
		want:   map[libs]outcome{argocdCM: {err: "context deadline exceeded"}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for mode, want := range tc.want {
				got, err := runHealth(tc.script, obj, mode)
				switch {
				case want.err == "" && err != nil:
					t.Errorf("%s: %v", mode, err)
				case want.err != "" && (err == nil || !strings.Contains(err.Error(), want.err)):
					t.Errorf("%s: error %v, want one with %q", mode, err, want.err)
				case want.err == "" && got != want.hs:
					t.Errorf("%s: got %+v, want %+v", mode, got, want.hs)
				}
			}
		})
	}
}
