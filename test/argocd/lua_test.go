package argocd

import (
	"context"
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// How Argo CD runs a resource health script (util/lua in Argo CD: VM.runLua and
// VM.ExecuteHealthLua), rewritten here against gopher-lua so that the test needs nothing of Argo
// CD but its interpreter.

// libs names the Lua libraries a script is given.
type libs string

const (
	// argocdCM is what Argo CD gives a script from argocd-cm by default (no
	// resource.customizations.useOpenLibs for its kind): the base, package and table libraries
	// and an os with time and date only. No string library, so no string methods either.
	argocdCM libs = "argocd-cm"
	// openLibs is every library: what Argo CD gives its built-in scripts, its own health tests,
	// and an argocd-cm script whose kind has useOpenLibs set.
	openLibs libs = "open-libs"
)

// scriptTimeout is Argo CD's deadline for one run of a script.
const scriptTimeout = time.Second

// healthStatus is what Argo CD reads from the table a health script returns (gitops-engine's
// health.HealthStatus), and the healthStatus of a health_test.yaml case.
type healthStatus struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// validStatuses are the health codes Argo CD accepts from a script.
var validStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Suspended": true, "Degraded": true, "Missing": true, "Unknown": true,
}

// invalidStatus is the health Argo CD reports for a status code outside validStatuses.
var invalidStatus = healthStatus{Status: "Unknown", Message: "Lua returned an invalid health status"}

// newState opens a Lua state with the libraries of mode.
func newState(mode libs) (*lua.LState, error) {
	if mode == openLibs {
		return lua.NewState(), nil
	}
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, lua.OpenOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			l.Close()
			return nil, fmt.Errorf("open %s: %w", lib.name, err)
		}
	}
	// Argo CD's os offers time and date and nothing else (no exit, getenv, remove...). The table
	// is also package.loaded.os, so require("os") gets the same two functions.
	osLib, ok := l.GetGlobal(lua.OsLibName).(*lua.LTable)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("the os library is a %s, not a table", l.GetGlobal(lua.OsLibName).Type())
	}
	var drop []lua.LValue
	osLib.ForEach(func(k, _ lua.LValue) {
		if k.String() != "time" && k.String() != "date" {
			drop = append(drop, k)
		}
	})
	for _, k := range drop {
		osLib.RawSet(k, lua.LNil)
	}
	return l, nil
}

// runHealth runs a health script on obj (an object as the cluster cache holds it: JSON decoded
// into maps, slices, strings, bools, int64 and float64) and returns the health Argo CD would
// show. Where Argo CD would fail the assessment (a script error, a return value that is not a
// table, a status or message that is not a string), it returns an error.
func runHealth(script string, obj map[string]any, mode libs) (healthStatus, error) {
	l, err := newState(mode)
	if err != nil {
		return healthStatus{}, err
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	fn, err := l.LoadString(script)
	if err != nil {
		return healthStatus{}, err
	}
	l.Push(fn)
	if err := l.PCall(0, lua.MultRet, nil); err != nil {
		return healthStatus{}, err
	}
	hs, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return healthStatus{}, fmt.Errorf("the script returned a %s, not a table", l.Get(-1).Type())
	}
	var got healthStatus
	if got.Status, err = stringField(hs, "status"); err != nil {
		return healthStatus{}, err
	}
	if got.Message, err = stringField(hs, "message"); err != nil {
		return healthStatus{}, err
	}
	if !validStatuses[got.Status] {
		return invalidStatus, nil
	}
	return got, nil
}

// stringField reads a field of the returned table that Argo CD decodes into a Go string: a
// missing one is "", anything but a string fails (as Argo CD's JSON round trip does).
func stringField(t *lua.LTable, name string) (string, error) {
	switch v := t.RawGetString(name).(type) {
	case lua.LString:
		return string(v), nil
	case *lua.LNilType:
		return "", nil
	default:
		return "", fmt.Errorf("the returned %s is a %s, not a string", name, v.Type())
	}
}

// toLua converts a decoded JSON value to Lua as Argo CD does: objects and arrays become tables,
// every number a Lua number.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetString(key, toLua(l, item))
		}
		return t
	}
	// Decoded JSON holds nothing else; a new type here is a change of the decoder to look at.
	panic(fmt.Sprintf("toLua: unexpected %T", value))
}
