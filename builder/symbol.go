package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// The constructor check. A host loads a plugin with plugin.Lookup(Symbol) and the type
// assertion sym.(func() T), T the interface of its Slot[T]; a plugin whose constructor has
// another type builds, pushes and rolls out fine, and fails in every pod. So after compiling,
// the builder type-checks the plugin's main package with go/types, against the export data the
// go command just produced for its dependencies (`go list -export`, served from the build
// cache): nothing is loaded or run, and it costs about one compile of the main package. The
// symbol must be a function (plugin.Lookup of a variable yields a pointer), without parameters,
// returning an interface; with Options.Contract, exactly func() Contract.

// exportPackage is the part of `go list -export -json` the check reads.
type exportPackage struct {
	ImportPath string
	Dir        string
	Export     string
	GoFiles    []string
	CgoFiles   []string
	ImportMap  map[string]string
	Error      *struct{ Err string }
}

// checkConstructor type-checks the unique copy's constructor (see above).
func (b *pluginBuild) checkConstructor(ctx context.Context) error {
	contractPath, contractName := splitContract(b.o.Contract)
	pkgs, err := b.listExports(ctx, contractPath)
	if err != nil {
		return err
	}
	main := pkgs[b.pluginPath]
	if main == nil {
		return failf(ReasonInternal, "go list -export did not list the plugin package %s", b.pluginPath)
	}
	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		if p := main.ImportMap[path]; p != "" {
			path = p
		}
		if p := pkgs[path]; p != nil && p.Export != "" {
			return os.Open(p.Export)
		}
		return nil, fmt.Errorf("no export data for %s", path)
	})
	pkg, err := typeCheck(fset, imp, main, b.pluginPath)
	if err != nil {
		return err
	}
	var contract types.Type
	if contractPath != "" {
		if contract, err = b.contractType(imp, pkgs[contractPath], contractPath, contractName); err != nil {
			return err
		}
	}
	return constructorError(b.o.Symbol, pkg.Scope().Lookup(b.o.Symbol), contract, b.o.names())
}

// splitContract splits "import/path.Name".
func splitContract(c string) (path, name string) {
	if i := strings.LastIndex(c, "."); i > 0 {
		return c[:i], c[i+1:]
	}
	return "", ""
}

// listExports lists the plugin package, its dependencies and the contract's package with
// their export data, built with the plugin's flags.
func (b *pluginBuild) listExports(ctx context.Context, contractPath string) (map[string]*exportPackage, error) {
	args := append([]string{"list", "-e", "-export", "-deps", "-json=ImportPath,Dir,Export,GoFiles,CgoFiles,ImportMap,Error"}, buildFlags...)
	if len(b.o.Tags) > 0 {
		args = append(args, "-tags", strings.Join(b.o.Tags, ","))
	}
	args = append(args, ".")
	if contractPath != "" {
		args = append(args, contractPath)
	}
	out, err := b.r.output(ctx, b.unique, "go", args...)
	if err != nil {
		return nil, failf(ReasonInternal, "list the plugin's export data for the constructor check: %v", err)
	}
	pkgs := map[string]*exportPackage{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p exportPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, failf(ReasonInternal, "decode go list -export output: %v", err)
		}
		pkgs[p.ImportPath] = &p
	}
	return pkgs, nil
}

// typeCheck type-checks the plugin's main package from its source.
func typeCheck(fset *token.FileSet, imp types.Importer, main *exportPackage, path string) (*types.Package, error) {
	var files []*ast.File
	for _, name := range append(append([]string{}, main.GoFiles...), main.CgoFiles...) {
		f, err := parser.ParseFile(fset, filepath.Join(main.Dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, failf(ReasonInternal, "parse %s for the constructor check: %v", name, err)
		}
		files = append(files, f)
	}
	var first error
	conf := types.Config{Importer: imp, FakeImportC: true, Error: func(err error) {
		if first == nil {
			first = err
		}
	}}
	pkg, _ := conf.Check(path, fset, files, nil)
	if pkg == nil || first != nil {
		return nil, failf(ReasonInternal, "type-check the plugin package for the constructor check: %v", first)
	}
	return pkg, nil
}

// contractType resolves the contract interface.
func (b *pluginBuild) contractType(imp types.Importer, p *exportPackage, path, name string) (types.Type, error) {
	flag := b.o.names().name(fieldContract)
	if p == nil || p.Error != nil || p.Export == "" {
		why := "the go command cannot build it from the plugin's module"
		if p != nil && p.Error != nil {
			why = p.Error.Err
		}
		return nil, failf(ReasonInvalidInput, "%s %s: package %s: %s", flag, b.o.Contract, path, why)
	}
	cpkg, err := imp.Import(path)
	if err != nil {
		return nil, failf(ReasonInternal, "read the export data of %s: %v", path, err)
	}
	tn, ok := cpkg.Scope().Lookup(name).(*types.TypeName)
	if !ok || !tn.Exported() {
		return nil, failf(ReasonInvalidInput, "%s %s: package %s declares no exported type %s", flag, b.o.Contract, path, name)
	}
	if !types.IsInterface(tn.Type()) {
		return nil, failf(ReasonInvalidInput, "%s %s is %s, not an interface: name the interface the hosts' Slot[T] is instantiated with", flag, b.o.Contract, types.TypeString(tn.Type().Underlying(), nil))
	}
	return tn.Type(), nil
}

// constructorError says what is wrong with obj as the constructor symbol, or nil.
func constructorError(symbol string, obj types.Object, contract types.Type, names FieldNames) error {
	want := "func() T"
	if contract != nil {
		want = "func() " + types.TypeString(contract, nil)
	}
	switch o := obj.(type) {
	case *types.Func:
		sig := o.Type().(*types.Signature)
		got := types.TypeString(sig, nil)
		switch {
		case contract != nil && (sig.Params().Len() != 0 || sig.Results().Len() != 1 || !types.Identical(sig.Results().At(0).Type(), contract)):
			return failf(ReasonSymbolTypeMismatch, "%s has type %s, but the hosts load it as %s: declare `func %s() %s`",
				symbol, got, want, symbol, types.TypeString(contract, nil))
		case sig.Params().Len() != 0 || sig.Results().Len() != 1 || sig.TypeParams().Len() != 0 || !types.IsInterface(sig.Results().At(0).Type()):
			return failf(ReasonSymbolTypeMismatch, "%s has type %s, but a constructor takes no parameters and returns an interface (the hosts assert %s, T their Slot[T]'s interface): declare `func %s() T`; %s to check T exactly",
				symbol, got, want, symbol, names.set(fieldContract))
		}
		return nil
	case *types.Var:
		ret := "T"
		if contract != nil {
			ret = types.TypeString(contract, nil)
		} else if sig, ok := o.Type().Underlying().(*types.Signature); ok && sig.Results().Len() == 1 {
			ret = types.TypeString(sig.Results().At(0).Type(), nil)
		}
		return failf(ReasonSymbolTypeMismatch, "%s is a variable of type %s, but the hosts look it up as a function (%s; plugin.Lookup of a variable yields a pointer): declare `func %s() %s`",
			symbol, types.TypeString(o.Type(), nil), want, symbol, ret)
	case nil:
		return failf(ReasonSymbolNotFound, "the plugin's main package declares no %s", symbol)
	default:
		return failf(ReasonSymbolTypeMismatch, "%s is not a function (%s): declare `func %s() T`", symbol, obj, symbol)
	}
}
