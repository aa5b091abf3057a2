package builder

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
)

// declaredAPIVersion finds the plugin's `var APIVersion = "x.y.z"` among the package's Go
// files; a const of that name is refused, since a constant is no symbol in a plugin and every
// host's lookup of it would fail. The host library reads that variable at load time to decide whether a
// swap is a patch, minor or major change, so the artifact must record the same value.
// It returns "" when the package declares none.
func declaredAPIVersion(dir string, goFiles []string) (string, error) {
	fset := token.NewFileSet()
	for _, name := range goFiles {
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			return "", fmt.Errorf("parse %s: %w", name, err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || (gd.Tok != token.VAR && gd.Tok != token.CONST) {
				continue
			}
			for _, s := range gd.Specs {
				vs := s.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if id.Name != "APIVersion" {
						continue
					}
					if gd.Tok == token.CONST {
						return "", fmt.Errorf("%s declares APIVersion as a constant, which is no symbol in a plugin: hosts look it up as a string variable; write `var APIVersion = \"1.0.0\"`", name)
					}
					if i >= len(vs.Values) {
						return "", fmt.Errorf("%s declares APIVersion without a value; write `var APIVersion = \"1.0.0\"`", name)
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						return "", fmt.Errorf("%s: APIVersion must be a string literal such as \"1.0.0\" so the builder can read it", name)
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						return "", fmt.Errorf("%s: APIVersion %s: %w", name, lit.Value, err)
					}
					return strings.TrimSpace(v), nil
				}
			}
		}
	}
	return "", nil
}
