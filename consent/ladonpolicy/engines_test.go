package ladonpolicy_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ory/ladon/compiler"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
)

// The differential tests below compare Vigie's matcher (Go's regexp) with
// the engine it replaced, ladon's compiler on dlclark/regexp2, on the
// patterns a consent may hold (consent.CheckPattern, the portable subset)
// and the document IDs a request may name: every answer the old engine
// gives, the new one gives.

const docIDChars = "abcxyzABCXYZ0129._:-"

// portableGen generates expressions from the constructs of the portable
// subset, and some outside it, for CheckPattern to sort.
type portableGen struct{ r *rand.Rand }

func (g portableGen) pick(s ...string) string { return s[g.r.IntN(len(s))] }

func (g portableGen) alt(depth int) string {
	s := g.seq(depth)
	for g.r.IntN(4) == 0 {
		s += "|" + g.seq(depth)
	}
	return s
}

func (g portableGen) seq(depth int) string {
	var b strings.Builder
	for n := g.r.IntN(4); n >= 0; n-- {
		b.WriteString(g.atom(depth))
		if g.r.IntN(3) == 0 {
			b.WriteString(g.pick("*", "+", "?", "{2}", "{1,}", "{0,2}", "{1,3}", "*?", "+?", "??", "{1,2}?"))
		}
	}
	return b.String()
}

func (g portableGen) atom(depth int) string {
	k := g.r.IntN(14)
	if depth > 2 && k >= 9 {
		k = g.r.IntN(9)
	}
	switch k {
	case 0, 1, 2:
		return string(docIDChars[g.r.IntN(len(docIDChars))])
	case 3:
		return "."
	case 4:
		return g.pick(`\d`, `\D`, `\w`, `\W`, `\s`, `\S`, `\.`, `\-`, `\:`, `\$`)
	case 5:
		return g.pick("^", "$")
	case 6, 7:
		return g.class()
	case 8:
		return g.pick("(?i)", "")
	case 9, 10:
		return "(" + g.alt(depth+1) + ")"
	case 11:
		return "(?:" + g.alt(depth+1) + ")"
	case 12:
		return "(?i:" + g.alt(depth+1) + ")"
	}
	return g.pick("[[:alpha:]]", "[a-z-[aeiou]]", `\b`, "(?s).", "(?m)$", `\x41`, `\101`, "é", "[^[:digit:]]")
}

func (g portableGen) class() string {
	var b strings.Builder
	b.WriteByte('[')
	if g.r.IntN(3) == 0 {
		b.WriteByte('^')
	}
	if g.r.IntN(6) == 0 {
		b.WriteByte('-')
	}
	for n := g.r.IntN(3); n >= 0; n-- {
		b.WriteString(g.pick("a", "Z", "0", "_", ":", ".", "a-c", "x-z", "A-C", "0-5", `\d`, `\D`, `\w`, `\W`, `\s`, `\S`, `\.`, `\-`, `\]`, `\^`))
	}
	if g.r.IntN(6) == 0 {
		b.WriteByte('-')
	}
	b.WriteByte(']')
	return b.String()
}

// sameOnDocuments reports the first document ID on which the two engines
// disagree for the hide-document pattern doc, if any. ok is false if the
// old engine could not compile the pattern (then no decision was ever
// recorded under it).
func sameOnDocuments(t *testing.T, doc string, ids []string) (differs string, ok bool) {
	t.Helper()
	tpl := "document/<.*>/" + doc
	old, err := compiler.CompileRegex(tpl, '<', '>')
	if err != nil {
		return "", false
	}
	p, err := ladonpolicy.CompilePattern(tpl)
	if err != nil {
		t.Fatalf("CompilePattern(%q) = %v after CheckPattern accepted it", doc, err)
	}
	for _, id := range ids {
		for _, typ := range []string{"lab-report", "x"} {
			s := "document/" + typ + "/" + id
			want, err := old.MatchString(s)
			if err != nil {
				continue // the old engine gave up: an error, never a decision
			}
			if got, err := p.Match(s); err != nil || got != want {
				return id, true
			}
		}
	}
	return "", true
}

func randomDocIDs(r *rand.Rand, n int, extra string) []string {
	ids := make([]string, n)
	for i := range ids {
		var b strings.Builder
		for k := 1 + r.IntN(10); k > 0; k-- {
			if extra != "" && r.IntN(2) == 0 {
				b.WriteByte(extra[r.IntN(len(extra))])
			} else {
				b.WriteByte(docIDChars[r.IntN(len(docIDChars))])
			}
		}
		ids[i] = b.String()
	}
	return ids
}

// TestEnginesAgreeOnPortablePatterns generates patterns; on each that
// CheckPattern accepts and the old engine compiled, both engines give the
// same answer for random document IDs made of the pattern's own
// characters and the others.
func TestEnginesAgreeOnPortablePatterns(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	g := portableGen{r}
	accepted, refused := 0, 0
	for range 4000 {
		doc := g.pick("", "doc-", "x") + "<" + g.alt(0) + ">" + g.pick("", "-1", ":x")
		if consent.CheckPattern(doc) != nil {
			refused++
			continue
		}
		accepted++
		if id, ok := sameOnDocuments(t, doc, randomDocIDs(r, 40, doc)); ok && id != "" {
			t.Errorf("pattern %q, document %q: the engines disagree", doc, id)
		}
	}
	if accepted < 1000 || refused < 200 {
		t.Errorf("%d patterns accepted, %d refused: the generator does not exercise both", accepted, refused)
	}
}

// TestPortableSubsetRefusesDivergence lists constructs both engines
// compile but read differently on document IDs: CheckPattern refuses
// each, and each does give different answers (else it need not be
// refused).
func TestPortableSubsetRefusesDivergence(t *testing.T) {
	for _, doc := range []string{
		"<[a-z-[aeiou]]>",                 // .NET: class subtraction; RE2: a class, then "]"
		"<[a-z-[aeiou]]+>",                //
		"<[[:alpha:]]-[[:digit:]]>",       // POSIX classes: RE2 only
		"<[[:^alpha:]]+>",                 //
		"<[\\b]>",                         // .NET: backspace
		"<\\x{41}>",                       // RE2: "A"; .NET: refused
		"<(?i)\\x{212A}>",                 // the Kelvin sign folds to k in RE2
		"<\\pL+>",                         // Unicode classes
		"<\\Qa.b\\E>",                     // RE2 quoting
		"<(?P<n>a)>",                      // RE2 named group
		"<(?U)a+>", "<(?s).>", "<(?m)a$>", // other flags
		"<\\Aa>", "<a\\z>", "<\\_>", // other escapes
		"<x{,2}>", "<[]a]>", "<[_-a]>", "<[a-\\d]>", // unusual repetition and class syntax
		"<a b>", "<é>", "<(?i)ſ>", // other characters than a document ID's
	} {
		if err := consent.CheckPattern(doc); err == nil {
			t.Errorf("CheckPattern(%q) = nil, want it outside the portable subset", doc)
		} else if strings.Contains(err.Error(), strings.Trim(doc, "<>")) {
			t.Errorf("CheckPattern(%q) = %v: quotes the pattern", doc, err)
		}
	}
	// The divergence that makes the subset necessary.
	if id, ok := sameOnDocuments(t, "<[a-z-[aeiou]]>", []string{"b", "a", "b]"}); !ok || id == "" {
		t.Errorf("class subtraction: the engines agree (%q, %v); the test no longer shows why it is refused", id, ok)
	}
}

// FuzzEnginesAgree: for any pattern CheckPattern accepts and any
// document ID, the two engines agree (or the old one gave up).
//
//	go test -run='^$' -fuzz=FuzzEnginesAgree -fuzztime=60s ./consent/ladonpolicy
func FuzzEnginesAgree(f *testing.F) {
	for _, s := range []struct{ doc, id string }{
		{`stay-<\d+>`, "stay-12"}, {`<\w+$>`, "ab_1"}, {`<(?i)AbC>`, "abc"}, {`<[^\s]{2}>`, "a:"},
		{`<[a-c-]+|x>`, "b-"}, {`<(a+)+b>`, "aab"}, {`<.*:\d+$>`, "x:9"}, {`<^[0-9]{1,3}\.>`, "12."},
	} {
		f.Add(s.doc, s.id)
	}
	f.Fuzz(func(t *testing.T, doc, id string) {
		if consent.CheckPattern(doc) != nil || !consent.IsPattern(doc) {
			return
		}
		if len(id) == 0 || len(id) > 32 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-") != "" {
			return
		}
		if got, ok := sameOnDocuments(t, doc, []string{id}); ok && got != "" {
			t.Errorf("pattern %q, document %q: the engines disagree", doc, id)
		}
	})
}
