package portal

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"testing"

	"github.com/vigie-sante/vigie/consent"
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
