// Package docs_test keeps the pages in docs/ honest about the code and about the repository.
//
//   - TestTroubleshootingCoversEveryReason collects every reason code the code can report —
//     read from the Go source of the packages that declare them, never copied by hand — and
//     fails for each code without a `### <Code>` heading in docs/troubleshooting.md, and for
//     each such heading that is no code any more.
//   - TestLinksStayInsideTheRepository fails for every link or file reference in README.md and
//     docs/ that leaves the repository or names a file (or a heading) that does not exist.
//
// It reads files only; it builds and runs nothing.
package docs_test

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// modulePath is the root module; the host module (github.com/splice-dev/splice/host) lives in
// the host/ directory under the same prefix, so an import path maps to a directory by prefix.
const modulePath = "github.com/splice-dev/splice"

// source is one package that declares reason codes, and the rule that picks them out of its
// package-level constants.
type source struct {
	dir  string // package directory, relative to the repository root
	what string // what the codes are, for failure messages
	pick func(c *constDecl) bool
}

// sources are the packages whose reason codes reach a user: in a preflight verdict, a control
// socket answer, a pod report (splice.dev/report), a condition of the pod or of the
// CompilerVersion, or a build's result. Add a package here when it starts declaring codes.
var sources = []source{
	{"host/preflight", "preflight reasons (preflight.Problem.Reason)", preflightReason},
	{"host", "host library reasons (host.Reason, control ErrorBody.Reason)", named("Reason")},
	{"host/control", "control socket error codes (control.Code)", typed("Code")},
	{"sidecar", "agent report reasons (PodReport.Reason)", named("Reason")},
	{"internal/trust", "trust policy refusals (trust.Refusal.Reason)", named("Reason")},
	{"api/v1alpha1", "CompilerVersion condition and pod report reasons", named("Reason")},
	{"builder", "build failure reasons (builder.Failure.Reason)", named("Reason")},
	{"controllers", "Built condition reasons", named("Reason")},
}

// named picks exported constants whose name starts with prefix (ReasonInitPanic, ...).
func named(prefix string) func(*constDecl) bool {
	return func(c *constDecl) bool { return strings.HasPrefix(c.name, prefix) && len(c.name) > len(prefix) }
}

// typed picks constants declared with the named type (control.Code).
func typed(typ string) func(*constDecl) bool {
	return func(c *constDecl) bool { return c.typ == typ }
}

// preflightReason picks the preflight's reasons: every exported constant of a const block
// whose comment starts with "Reasons", and every constant the package puts into a Problem's
// Reason field (Problem{Reason: X}), wherever it is declared.
func preflightReason(c *constDecl) bool {
	return ast.IsExported(c.name) && (strings.HasPrefix(c.blockDoc, "Reasons") || c.usedAsReason)
}

// constDecl is one package-level constant.
type constDecl struct {
	name, typ    string
	value        ast.Expr
	blockDoc     string // the comment of its const block (or of a single const declaration)
	usedAsReason bool   // appears as the value of a Reason: key in a composite literal
	file         *ast.File
	pos          token.Position
}

// pkg is one parsed package (non-test files only).
type pkg struct {
	dir    string
	consts map[string]*constDecl
}

// loader parses packages of the repository on demand.
type loader struct {
	root string
	fset *token.FileSet
	pkgs map[string]*pkg
}

func (l *loader) load(dir string) (*pkg, error) {
	if p, ok := l.pkgs[dir]; ok {
		return p, nil
	}
	entries, err := os.ReadDir(filepath.Join(l.root, dir))
	if err != nil {
		return nil, fmt.Errorf("read package %s: %w", dir, err)
	}
	p := &pkg{dir: dir, consts: map[string]*constDecl{}}
	var files []*ast.File
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(l.fset, filepath.Join(l.root, dir, n), nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			doc := strings.TrimSpace(gd.Doc.Text())
			var lastType string
			var lastValues []ast.Expr
			for _, s := range gd.Specs {
				vs := s.(*ast.ValueSpec)
				if vs.Type != nil || len(vs.Values) > 0 {
					// Go repeats the previous spec's type and values only for a spec with neither.
					lastType, lastValues = typeName(vs.Type), vs.Values
				}
				for i, id := range vs.Names {
					c := &constDecl{name: id.Name, typ: lastType, blockDoc: doc, file: f, pos: l.fset.Position(id.Pos())}
					if i < len(lastValues) {
						c.value = lastValues[i]
					}
					p.consts[id.Name] = c
				}
			}
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("package %s has no Go files", dir)
	}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			kv, ok := n.(*ast.KeyValueExpr)
			if !ok {
				return true
			}
			if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Reason" {
				if v, ok := kv.Value.(*ast.Ident); ok && p.consts[v.Name] != nil {
					p.consts[v.Name].usedAsReason = true
				}
			}
			return true
		})
	}
	l.pkgs[dir] = p
	return p, nil
}

func typeName(e ast.Expr) string {
	switch t := e.(type) {
	case *ast.Ident:
		return t.Name
	case *ast.SelectorExpr:
		return t.Sel.Name
	}
	return ""
}

// value resolves a constant's string value: a string literal, another constant of the same
// package, a constant of another package of this repository (splicev1.ReasonX), or a
// conversion of one of those (Code("X")).
func (l *loader) value(p *pkg, c *constDecl, depth int) (string, error) {
	if depth > 16 {
		return "", fmt.Errorf("%s: constant %s: too many indirections", c.pos, c.name)
	}
	return l.eval(p, c, c.value, depth)
}

func (l *loader) eval(p *pkg, c *constDecl, e ast.Expr, depth int) (string, error) {
	switch x := e.(type) {
	case *ast.BasicLit:
		if x.Kind == token.STRING {
			return strconv.Unquote(x.Value)
		}
	case *ast.ParenExpr:
		return l.eval(p, c, x.X, depth)
	case *ast.CallExpr:
		if len(x.Args) == 1 {
			return l.eval(p, c, x.Args[0], depth)
		}
	case *ast.Ident:
		if o := p.consts[x.Name]; o != nil {
			return l.value(p, o, depth+1)
		}
	case *ast.SelectorExpr:
		if id, ok := x.X.(*ast.Ident); ok {
			dir, ok := importDir(c.file, id.Name)
			if !ok {
				break
			}
			op, err := l.load(dir)
			if err != nil {
				return "", err
			}
			if o := op.consts[x.Sel.Name]; o != nil {
				return l.value(op, o, depth+1)
			}
		}
	}
	return "", fmt.Errorf("%s: cannot read the string value of constant %s (teach docs_test.go's eval)", c.pos, c.name)
}

// importDir maps a file's import name to the repository directory of that package.
func importDir(f *ast.File, name string) (string, bool) {
	for _, im := range f.Imports {
		ip, _ := strconv.Unquote(im.Path.Value)
		local := path.Base(ip)
		if im.Name != nil {
			local = im.Name.Name
		}
		if local != name {
			continue
		}
		if rest, ok := strings.CutPrefix(ip, modulePath+"/"); ok {
			return rest, true
		}
	}
	return "", false
}

// repoRoot is the repository root: the parent of docs/, where this test runs.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !strings.Contains(string(b), "module "+modulePath+"\n") {
		t.Fatalf("%s is not the root of module %s (go.mod: %v)", root, modulePath, err)
	}
	return root
}

// codeOrigin says where a code is declared.
type codeOrigin struct{ what, where string }

// reasonCodes returns every reason code the sources declare, with where each is declared.
func reasonCodes(t *testing.T, root string) map[string][]codeOrigin {
	t.Helper()
	l := &loader{root: root, fset: token.NewFileSet(), pkgs: map[string]*pkg{}}
	codes := map[string][]codeOrigin{}
	for _, s := range sources {
		p, err := l.load(s.dir)
		if err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		n := 0
		for _, name := range slices.Sorted(maps.Keys(p.consts)) {
			c := p.consts[name]
			if !s.pick(c) {
				continue
			}
			v, err := l.value(p, c, 0)
			if err != nil {
				t.Errorf("%s: %v", s.what, err)
				continue
			}
			n++
			rel, _ := filepath.Rel(root, c.pos.Filename)
			codes[v] = append(codes[v], codeOrigin{s.what, fmt.Sprintf("%s.%s (%s:%d)", path.Base(s.dir), c.name, rel, c.pos.Line)})
		}
		if n == 0 {
			t.Errorf("%s: no reason constants found in %s: the rule in docs_test.go's sources no longer matches the code", s.what, s.dir)
		}
	}
	return codes
}

// heading is a Markdown ATX heading outside code fences.
type heading struct {
	level int
	text  string
	line  int
}

var fenceRE = regexp.MustCompile("^\\s*(```|~~~)")

// readMarkdown returns a file's lines with code-fence lines and fenced content blanked (so
// line numbers stay), and its headings.
func readMarkdown(t *testing.T, file string) (prose []string, all []string, hs []heading) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	in := false
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		all = append(all, line)
		if fenceRE.MatchString(line) {
			in = !in
			prose = append(prose, "")
			continue
		}
		if in {
			prose = append(prose, "")
			continue
		}
		prose = append(prose, line)
		if level := len(line) - len(strings.TrimLeft(line, "#")); level > 0 && level <= 6 && strings.HasPrefix(line[level:], " ") {
			hs = append(hs, heading{level, strings.TrimSpace(strings.TrimRight(strings.TrimSpace(line[level:]), "#")), n})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return prose, all, hs
}

// TestTroubleshootingCoversEveryReason: every reason code in the code has exactly one
// `### <Code>` heading in docs/troubleshooting.md (with text under it), and every `###`
// heading there is a code.
func TestTroubleshootingCoversEveryReason(t *testing.T) {
	root := repoRoot(t)
	codes := reasonCodes(t, root)
	page := filepath.Join(root, "docs", "troubleshooting.md")
	prose, _, hs := readMarkdown(t, page)

	seen := map[string]int{}
	for i, h := range hs {
		if h.level != 3 {
			continue
		}
		if prev, dup := seen[h.text]; dup {
			t.Errorf("docs/troubleshooting.md:%d: heading %q repeats the one at line %d", h.line, h.text, prev)
		}
		seen[h.text] = h.line
		if _, ok := codes[h.text]; !ok {
			t.Errorf("docs/troubleshooting.md:%d: heading %q is not a reason code the code declares (any more): remove it or fix its spelling", h.line, h.text)
		}
		end := len(prose)
		if i+1 < len(hs) {
			end = hs[i+1].line - 1
		}
		if strings.TrimSpace(strings.Join(prose[h.line:end], "")) == "" {
			t.Errorf("docs/troubleshooting.md:%d: %s has no text: say what it means and how to fix it", h.line, h.text)
		}
	}
	for _, code := range slices.Sorted(maps.Keys(codes)) {
		if _, ok := seen[code]; ok {
			continue
		}
		var from []string
		for _, o := range codes[code] {
			from = append(from, o.where+", "+o.what)
		}
		t.Errorf("reason code %s has no `### %s` heading in docs/troubleshooting.md; declared as %s", code, code, strings.Join(from, "; "))
	}
}

// docFiles are the Markdown files users read: README.md and everything under docs/.
func docFiles(t *testing.T, root string) []string {
	t.Helper()
	files := []string{filepath.Join(root, "README.md")}
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

var (
	// inlineLinkRE matches [text](target) and ![alt](target), with an optional title.
	inlineLinkRE = regexp.MustCompile(`!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	// refLinkRE matches a reference definition: [label]: target
	refLinkRE = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)`)
	// hrefRE matches HTML href and src attributes.
	hrefRE = regexp.MustCompile(`(?:href|src)\s*=\s*"([^"]+)"`)
	// schemeRE: a URL with a scheme (https:, mailto:, ...).
	schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
	// mdFileRE matches a mention of a Markdown file, in a link or not (docs/x.md, DESIGN.md).
	mdFileRE = regexp.MustCompile(`(?:^|[^A-Za-z0-9_./-])((?:\.{1,2}/)*[A-Za-z0-9_-][A-Za-z0-9_./-]*\.md)\b`)
	// parentRE matches a relative path that climbs (../x), in a link or not.
	parentRE = regexp.MustCompile(`(?:^|[^A-Za-z0-9_.])((?:\./)?(?:\.\./)+[A-Za-z0-9_./-]*)`)
)

// forbidden are mentions of places users do not have: material outside the repository.
var forbidden = []string{"/work/", "../shared", "shared/DESIGN", "seed-article"}

// TestLinksStayInsideTheRepository: every relative link in README.md and docs/ resolves to a
// file or directory inside the repository that exists (and, for a Markdown file with a
// #fragment, to one of its headings); no link is absolute or file:; no text names a Markdown
// file that is not in the repository, a path that climbs out of it, or material outside it.
func TestLinksStayInsideTheRepository(t *testing.T) {
	root := repoRoot(t)
	repoMD := markdownFiles(t, root)
	for _, file := range docFiles(t, root) {
		rel, _ := filepath.Rel(root, file)
		prose, all, _ := readMarkdown(t, file)
		for i, line := range prose {
			var targets []string
			for _, re := range []*regexp.Regexp{inlineLinkRE, refLinkRE, hrefRE} {
				for _, m := range re.FindAllStringSubmatch(line, -1) {
					targets = append(targets, m[1])
				}
			}
			for _, target := range targets {
				if err := checkLink(root, file, target); err != nil {
					t.Errorf("%s:%d: link %q: %v", rel, i+1, target, err)
				}
			}
		}
		// Mentions count in code blocks too: a command that reads ../shared/x fails for users.
		for i, line := range all {
			for _, f := range forbidden {
				if strings.Contains(line, f) {
					t.Errorf("%s:%d: mentions %q, which is outside the repository: users have only the repository", rel, i+1, f)
				}
			}
			named := map[string]bool{}
			for _, m := range mdFileRE.FindAllStringSubmatch(line, -1) {
				if named[m[1]] {
					continue
				}
				named[m[1]] = true
				if !mentionExists(root, file, m[1], repoMD) {
					t.Errorf("%s:%d: names %s, which is not a file of the repository (relative to %s or to the repository root)", rel, i+1, m[1], filepath.Dir(rel))
				}
			}
			for _, m := range parentRE.FindAllStringSubmatch(line, -1) {
				p := strings.TrimRight(m[1], ".")
				if !inside(root, filepath.Join(filepath.Dir(file), p)) {
					t.Errorf("%s:%d: %s climbs out of the repository", rel, i+1, m[1])
				}
			}
		}
	}
}

// checkLink checks one link target of file.
func checkLink(root, file, target string) error {
	if strings.HasPrefix(target, "#") {
		_, err := checkFragment(file, target[1:])
		return err
	}
	if schemeRE.MatchString(target) {
		scheme := strings.ToLower(target[:strings.IndexByte(target, ':')])
		if scheme == "http" || scheme == "https" || scheme == "mailto" {
			return nil
		}
		return fmt.Errorf("scheme %s: link to a file of the repository with a relative path instead", scheme)
	}
	if strings.HasPrefix(target, "/") {
		return fmt.Errorf("absolute path: use a path relative to the file")
	}
	p, frag, _ := strings.Cut(target, "#")
	p, _, _ = strings.Cut(p, "?")
	p, err := unescape(p)
	if err != nil {
		return err
	}
	abs := filepath.Join(filepath.Dir(file), filepath.FromSlash(p))
	if !inside(root, abs) {
		return fmt.Errorf("resolves to %s, outside the repository", abs)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return fmt.Errorf("no such file in the repository: %s", mustRel(root, abs))
	}
	if frag != "" && !st.IsDir() && strings.HasSuffix(abs, ".md") {
		_, err := checkFragment(abs, frag)
		return err
	}
	return nil
}

func unescape(p string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			n, err := strconv.ParseUint(p[i+1:i+3], 16, 8)
			if err != nil {
				return "", fmt.Errorf("bad escape in %q", p)
			}
			b.WriteByte(byte(n))
			i += 2
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String(), nil
}

// checkFragment requires a heading of file whose GitHub anchor is frag.
func checkFragment(file, frag string) (bool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return false, err
	}
	in := false
	counts := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		if fenceRE.MatchString(line) {
			in = !in
			continue
		}
		level := len(line) - len(strings.TrimLeft(line, "#"))
		if in || level == 0 || level > 6 || !strings.HasPrefix(line[level:], " ") {
			continue
		}
		slug := anchor(strings.TrimSpace(line[level:]))
		if n := counts[slug]; n > 0 {
			counts[slug]++
			slug = fmt.Sprintf("%s-%d", slug, n)
		} else {
			counts[slug] = 1
		}
		if slug == strings.ToLower(frag) {
			return true, nil
		}
	}
	return false, fmt.Errorf("%s has no heading with the anchor #%s", filepath.Base(file), frag)
}

// anchor is GitHub's anchor for a heading: lower case, spaces to hyphens, punctuation other
// than hyphens and underscores dropped.
func anchor(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimRight(h, "# ")) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// mentionExists reports whether a mentioned Markdown file exists: relative to the mentioning
// file or to the repository root, or — for a mention without ../ — as the tail of the path of
// a Markdown file of the repository (a table row that says `go-plugins.md` of docs/).
func mentionExists(root, file, mention string, repoMD []string) bool {
	for _, base := range []string{filepath.Dir(file), root} {
		p := filepath.Join(base, filepath.FromSlash(mention))
		if !inside(root, p) {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	if strings.Contains(mention, "../") {
		return false
	}
	tail := strings.TrimPrefix(mention, "./")
	return slices.ContainsFunc(repoMD, func(p string) bool { return p == tail || strings.HasSuffix(p, "/"+tail) })
}

// markdownFiles lists the repository's Markdown files (slash-separated, relative to root),
// skipping hidden and build output directories.
func markdownFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, filepath.ToSlash(mustRel(root, p)))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func inside(root, p string) bool {
	rel, err := filepath.Rel(root, filepath.Clean(p))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func mustRel(root, p string) string {
	if rel, err := filepath.Rel(root, p); err == nil {
		return rel
	}
	return p
}
