package portal

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/internal/texts"
)

// TestTextEscapeMatchesGo runs the pages' escaping of text (static/text.js)
// under Node.js and compares it with consent.EscapeText, the rule's home:
// the portal shows a hostile text as vigie verify does. Without node, it
// skips, unless CI=true.
func TestTextEscapeMatchesGo(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node is not installed, and CI=true")
		}
		t.Skip("node is not installed")
	}
	cases := []string{"", "patient inconscient — à 3 h", "مريض فاقد للوعي",
		"fine\x1b[2K\x1b[1G\r\n7  2026-01-01  forged\n\tVERIFIED\a", "\x00\b\v\f\x7f\u0080\u009b",
		"a\u2028b\u2029c", "\u202aa\u202bb\u202cc\u202dd\u202ee", "\u2066a\u2067b\u2068c\u2069", "\u200e\u200f\u061c kept"}
	for r := rune(0); r < 0x3000; r++ {
		cases = append(cases, "x"+string(r)+"y")
	}
	in, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	script := `const T = require('./static/text.js'); let s = ''; process.stdin.on('data', d => s += d);
process.stdin.on('end', () => process.stdout.write(JSON.stringify(JSON.parse(s).map(T.escape))));`
	cmd := exec.Command(node, "-e", script)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	var got []string
	if err := json.Unmarshal(out, &got); err != nil || len(got) != len(cases) {
		t.Fatalf("node's answer %.200s: %v", out, err)
	}
	for i, c := range cases {
		if want := consent.EscapeText(c); got[i] != want {
			t.Errorf("text.js escape(%q) = %q, consent.EscapeText = %q", c, got[i], want)
		}
	}
	// Every page loads it before app.js, which uses it.
	for _, page := range []string{"index.html", "history.html", "consent.html", "audit.html"} {
		b, err := staticFS.ReadFile("static/" + page)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`<script src="text.js" defer></script>\s*(<script src="wasm_exec.js" defer></script>\s*)?<script src="app.js" defer>`).Match(b) {
			t.Errorf("%s does not load text.js before app.js", page)
		}
	}
}

// TestPagesFormatAsGo runs the pages' Vigie.t (static/app.js, over the
// served i18n.js) under Node.js on every entry of the catalogue, in both
// languages, singular and plural, and compares it with texts.Format, what
// the CLI prints: one catalogue, one formatting. Without node, it skips,
// unless CI=true.
func TestPagesFormatAsGo(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node is not installed, and CI=true")
		}
		t.Skip("node is not installed")
	}
	app, err := staticFS.ReadFile("static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	// app.js in a bare context: the language from localStorage, the
	// escaping of text.js, no document.
	script := string(texts.JS()) + `
const VigieText = { escape: s => String(s) };
const out = [], app = require('fs').readFileSync(0, 'utf8');
for (const lang of ['fr', 'en']) {
  globalThis.localStorage = { getItem: () => lang, setItem() {} };
  globalThis.document = { addEventListener() {} };
  const Vigie = new Function('I18N', 'VigieText', app + '; return Vigie;')(I18N, VigieText);
  for (const id of Object.keys(I18N.fr)) for (const n of [0, 1, 2]) {
    const vars = {};
    for (const m of (I18N[lang][id].match(/\{\w+/g) || [])) vars[m.slice(1)] = n;
    out.push({ id, lang, n, text: Vigie.t(id, vars) });
  }
}
process.stdout.write(JSON.stringify(out));`
	cmd := exec.Command(node, "-e", script)
	cmd.Stdin = bytes.NewReader(app)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	var got []struct {
		ID, Lang, Text string
		N              int
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 6*len(texts.IDs()) {
		t.Fatalf("node formatted %d texts, want %d", len(got), 6*len(texts.IDs()))
	}
	for _, g := range got {
		l := texts.FR
		if g.Lang == "en" {
			l = texts.EN
		}
		tx, _ := texts.Lookup(g.ID)
		var args []any
		for _, name := range texts.Placeholders(tx.In(l)) {
			args = append(args, name, g.N)
		}
		if want := texts.Format(l, g.ID, args...); g.Text != want {
			t.Errorf("%s (%s, %d): pages %q, CLI %q", g.ID, g.Lang, g.N, g.Text, want)
		}
	}
}

// TestPagesReadNoEnglishErrors: the pages act on an error's ErrorInfo
// reason and problem kind, never on its English message. No script
// matches, slices or searches a message, or holds the first words of a
// problem the server writes (the Problem of every FieldError that
// consent and api/server build); and every kind of problem has its text.
func TestPagesReadNoEnglishErrors(t *testing.T) {
	phrases := map[string]bool{}
	for _, dir := range []string{"../../../consent", "../../../consent/ladonpolicy", "../../server"} {
		names, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				var lit ast.Expr
				switch n := n.(type) {
				case *ast.KeyValueExpr:
					if k, ok := n.Key.(*ast.Ident); ok && k.Name == "Problem" {
						lit = n.Value
					}
				case *ast.CallExpr:
					if f, ok := n.Fun.(*ast.Ident); ok && (f.Name == "fieldErr" || f.Name == "InvalidField") && len(n.Args) == 2 {
						lit = n.Args[1]
					}
				}
				if b, ok := lit.(*ast.BinaryExpr); ok { // "more than " + n + ...
					lit = b.X
					for {
						if bx, ok := lit.(*ast.BinaryExpr); ok {
							lit = bx.X
							continue
						}
						break
					}
				}
				if b, ok := lit.(*ast.BasicLit); ok && b.Kind == token.STRING {
					s, _ := strconv.Unquote(b.Value)
					if w := strings.Fields(s); len(w) >= 2 {
						phrases[strings.ToLower(w[0]+" "+w[1])] = true
					}
				}
				return true
			})
		}
	}
	if len(phrases) < 20 {
		t.Fatalf("found %d problem phrases in the Go sources: wrong directory?", len(phrases))
	}
	readsMessage := regexp.MustCompile(`\.message\)?\.(match|startsWith|endsWith|includes|indexOf|search|replace|split|slice|substring)\(|\.(test|exec)\([^)]*message`)
	comment := regexp.MustCompile(`(?m)(^|\s)//.*$`)
	scripts, err := fs.Glob(staticFS, "static/*.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range scripts {
		if name == "static/wasm_exec.js" {
			continue
		}
		b, err := staticFS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		code := comment.ReplaceAllString(string(b), "")
		if m := readsMessage.FindString(code); m != "" {
			t.Errorf("%s reads an error's message (%s): act on its ErrorInfo", name, m)
		}
		for p := range phrases {
			if strings.Contains(strings.ToLower(code), p) {
				t.Errorf("%s holds %q, the start of a server's problem: act on the problem's kind", name, p)
			}
		}
	}
	for _, k := range consent.ProblemKinds() {
		if _, ok := texts.Lookup("problem." + string(k)); !ok {
			t.Errorf("problem kind %q has no text problem.%s in internal/texts", k, k)
		}
	}
}
