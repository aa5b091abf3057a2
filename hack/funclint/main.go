// Command funclint fails when a function is longer or more branched than the project allows, so
// that a function which grows past what a reader can hold at once is split into named steps when
// it grows, not years later.
//
//	go run ./hack/funclint [-lines N] [-complexity N] [-top N] [DIR...]   (default DIR: .)
//
// Every function and method declared in the .go files under DIR is measured:
//
//   - length: the lines the declaration spans, from the line of `func` to the line of its closing
//     brace (the doc comment is not counted); the function literals inside it count as its lines;
//   - cyclomatic complexity, counted as github.com/fzipp/gocyclo counts it (so the two tools agree
//     on a number): 1, plus one for each if, for, range, non-default case of a switch or select,
//     && and ||, the function literals inside it included.
//
// Each function over either bound is listed with file:line, its numbers and the bound, and the
// command exits 1. -top N prints the N longest and the N most complex functions instead, to see
// the distribution when a bound is discussed.
//
// Not measured, and why:
//
//   - _test.go files: a table test is long by nature (its table is data, not control flow), and a
//     test that reads top to bottom as one scenario is clearer whole than split;
//   - generated files (zz_generated*, and any file with the "Code generated ... DO NOT EDIT."
//     header): nobody edits them, controller-gen writes them;
//   - the demos and benchmarks cmd/splice-demo, cmd/splice-local, cmd/splice-bench and
//     cmd/splice-fleetbench: they are scripts of a show (bring this up, roll that out, print a
//     line a second) that no other code calls and no image ships, where the narrative order on
//     the page is the point; what they exercise (manager, agent, host, builder) is measured;
//   - testdata, vendor, bin and hidden directories: not the project's source.
//
// There is no per-function exemption list: a function over a bound is split.
package main

import (
	"cmp"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The bounds, chosen from the tree once its functions of over 80 lines had been split into
// named steps (-top shows the distribution). Lines: the longest function left was 66 lines and
// the tenth longest 60, so 80 — about what a reader takes in at once — leaves room to grow and
// stops the next 100-line function. Complexity: the most complex functions left were 16, so 20
// leaves the same room; gocyclo's customary bound is 15, golangci-lint's default 30.
const (
	defaultMaxLines      = 80
	defaultMaxComplexity = 20
)

// exemptDirs are the directories, relative to the module root with forward slashes, whose files
// are not measured (see the doc comment for why).
var exemptDirs = []string{
	"cmd/splice-demo",
	"cmd/splice-local",
	"cmd/splice-bench",
	"cmd/splice-fleetbench",
}

// A measure is one function's numbers.
type measure struct {
	Pos        token.Position
	Name       string
	Lines      int
	Complexity int
}

// bounds are the most lines and the highest complexity a function may have.
type bounds struct {
	Lines, Complexity int
}

func main() {
	maxLines := flag.Int("lines", defaultMaxLines, "the most lines a function may span")
	maxComplexity := flag.Int("complexity", defaultMaxComplexity, "the highest cyclomatic complexity a function may have")
	top := flag.Int("top", 0, "print the N longest and N most complex functions and exit 0")
	flag.Parse()
	roots := flag.Args()
	if len(roots) == 0 {
		roots = []string{"."}
	}
	var all []measure
	for _, root := range roots {
		ms, err := measureTree(root)
		if err != nil {
			fmt.Fprintln(os.Stderr, "funclint:", err)
			os.Exit(2)
		}
		all = append(all, ms...)
	}
	if *top > 0 {
		printTop(os.Stdout, all, *top)
		return
	}
	b := bounds{Lines: *maxLines, Complexity: *maxComplexity}
	bad := offenders(all, b)
	if len(bad) == 0 {
		fmt.Printf("funclint: %d functions, none over %d lines or complexity %d\n", len(all), b.Lines, b.Complexity)
		return
	}
	for _, m := range bad {
		fmt.Println(describe(m, b))
	}
	fmt.Printf("funclint: %d of %d functions over %d lines or complexity %d: split them into named steps\n",
		len(bad), len(all), b.Lines, b.Complexity)
	os.Exit(1)
}

// measureTree measures every function in the non-exempt .go files under root.
func measureTree(root string) ([]measure, error) {
	fset := token.NewFileSet()
	var all []measure
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(path)
		if r, err := filepath.Rel(root, path); err == nil {
			rel = filepath.ToSlash(r)
		}
		if d.IsDir() {
			if rel != "." && skipDir(rel, d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || skipFile(d.Name()) {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		ms, err := measureSource(fset, path, src)
		if err != nil {
			return err
		}
		all = append(all, ms...)
		return nil
	})
	return all, err
}

func skipDir(rel, name string) bool {
	if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") ||
		name == "testdata" || name == "vendor" || rel == "bin" {
		return true
	}
	return slices.Contains(exemptDirs, rel)
}

func skipFile(name string) bool {
	return strings.HasSuffix(name, "_test.go") || strings.HasPrefix(name, "zz_generated")
}

// measureSource measures the functions of one file; a generated file has none to measure.
func measureSource(fset *token.FileSet, filename string, src []byte) ([]measure, error) {
	f, err := parser.ParseFile(fset, filename, src, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	if ast.IsGenerated(f) {
		return nil, nil
	}
	var ms []measure
	for _, decl := range f.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Body == nil {
			continue
		}
		start := fset.Position(fn.Type.Func)
		end := fset.Position(fn.Body.Rbrace)
		ms = append(ms, measure{
			Pos:        start,
			Name:       funcName(fn),
			Lines:      end.Line - start.Line + 1,
			Complexity: complexity(fn.Body),
		})
	}
	return ms, nil
}

// funcName is the name a reader searches for: F, T.M or (*T).M.
func funcName(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return fn.Name.Name
	}
	t := fn.Recv.List[0].Type
	star := false
	if s, ok := t.(*ast.StarExpr); ok {
		star, t = true, s.X
	}
	// A generic receiver T[K, V] is named T.
	switch x := t.(type) {
	case *ast.IndexExpr:
		t = x.X
	case *ast.IndexListExpr:
		t = x.X
	}
	recv := "?"
	if id, ok := t.(*ast.Ident); ok {
		recv = id.Name
	}
	if star {
		return "(*" + recv + ")." + fn.Name.Name
	}
	return recv + "." + fn.Name.Name
}

// complexity is gocyclo's count for a function body.
func complexity(body *ast.BlockStmt) int {
	c := 1
	ast.Inspect(body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.IfStmt, *ast.ForStmt, *ast.RangeStmt:
			c++
		case *ast.CaseClause:
			if n.List != nil {
				c++
			}
		case *ast.CommClause:
			if n.Comm != nil {
				c++
			}
		case *ast.BinaryExpr:
			if n.Op == token.LAND || n.Op == token.LOR {
				c++
			}
		}
		return true
	})
	return c
}

// offenders are the functions over a bound, in file order.
func offenders(ms []measure, b bounds) []measure {
	var bad []measure
	for _, m := range ms {
		if m.Lines > b.Lines || m.Complexity > b.Complexity {
			bad = append(bad, m)
		}
	}
	slices.SortStableFunc(bad, func(x, y measure) int {
		return cmp.Or(cmp.Compare(x.Pos.Filename, y.Pos.Filename), cmp.Compare(x.Pos.Line, y.Pos.Line))
	})
	return bad
}

func describe(m measure, b bounds) string {
	return fmt.Sprintf("%s:%d: %s: %d lines (bound %d), complexity %d (bound %d)",
		m.Pos.Filename, m.Pos.Line, m.Name, m.Lines, b.Lines, m.Complexity, b.Complexity)
}

func printTop(w io.Writer, ms []measure, n int) {
	for _, by := range []struct {
		title string
		key   func(measure) int
	}{
		{"lines", func(m measure) int { return m.Lines }},
		{"complexity", func(m measure) int { return m.Complexity }},
	} {
		sorted := slices.Clone(ms)
		slices.SortStableFunc(sorted, func(x, y measure) int { return cmp.Compare(by.key(y), by.key(x)) })
		fmt.Fprintf(w, "top %d by %s (of %d functions):\n", min(n, len(sorted)), by.title, len(sorted))
		for _, m := range sorted[:min(n, len(sorted))] {
			fmt.Fprintf(w, "  %4d lines  %3d complexity  %s:%d %s\n", m.Lines, m.Complexity, m.Pos.Filename, m.Pos.Line, m.Name)
		}
	}
}
