package v1alpha1_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/host/control"
)

// TestSnapshotMatchesAPI pins control.Snapshot to api/v1alpha1.RuntimeSnapshot field by field
// (JSON name, omitempty, Go kind): the agent converts one into the other, and the host module
// cannot import the API package itself. Only this test links the API package.
func TestSnapshotMatchesAPI(t *testing.T) {
	host, api := jsonFields(reflect.TypeFor[control.Snapshot]()), jsonFields(reflect.TypeFor[v1alpha1.RuntimeSnapshot]())
	if !reflect.DeepEqual(host, api) {
		t.Fatalf("control.Snapshot and v1alpha1.RuntimeSnapshot differ:\nhost %v\napi  %v", host, api)
	}
}

func jsonFields(t reflect.Type) map[string]string {
	m := map[string]string{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		m[name] = opts + " " + f.Type.Kind().String()
	}
	return m
}
