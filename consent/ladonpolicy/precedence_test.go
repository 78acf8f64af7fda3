package ladonpolicy_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/nationalrules"
)

var (
	drExpress = ident.MustParseRPPS("10000000055") // named by allow-professional
	drFormer  = ident.MustParseRPPS("10000000066") // extended rights that ended yesterday
)

// A hideWay is one way a document ends up hidden.
type hideWay struct {
	name   string
	dirs   []consent.Directive
	edit   func(*consent.Request) // makes the request read the hidden document
	ground string                 // the deny a hidden read records
	// names: the hide names one document (row P10 applies to others).
	names bool
	// unevaluable: the consent was stored by an earlier version, and this
	// one refuses its pattern (CheckConsent fails; Decide must not).
	unevaluable bool
}

// hideWays: the document read is doc-1 unless edit says otherwise.
var hideWays = []hideWay{
	{name: "own flag", edit: hidden, ground: "rule:hidden-document", names: true},
	{name: "hide-document", dirs: dirs(hideDoc("h1", "doc-1")), ground: "directive:h1", names: true},
	{name: "pattern", dirs: dirs(hideDoc("h1", `doc-<\d+>`)), ground: "directive:h1", names: true},
	{name: "catastrophic pattern", dirs: dirs(hideDoc("h1", "<(a+)+b>")), edit: docID(strings.Repeat("a", 100) + "b"), ground: "directive:h1", names: true},
	{name: "hide-document-type", dirs: dirs(consent.Directive{ID: "ht", Kind: consent.HideDocumentType, DocumentType: "consultation-note"}), ground: "directive:ht", names: true},
	{name: "P9 hide-everything", dirs: dirs(dir("he", consent.HideEverything)), ground: "directive:he"},
	{name: "P12 unevaluable: POSIX class", dirs: dirs(hideDoc("h1", "doc-<[[:digit:]]+>")), ground: "directive:h1", unevaluable: true},
	{name: "P12 unevaluable: class subtraction", dirs: dirs(hideDoc("h1", "<[a-z-[aeiou]]+>-1")), ground: "directive:h1", unevaluable: true},
	{name: "P12 unevaluable: program size", dirs: dirs(hideDoc("h1", `<(?:\w{1,99}){1,9}(?:\w{1,99}){1,9}>`)), ground: "directive:h1", unevaluable: true},
}

// A precedenceRow is a row of the precedence table of hidden documents in
// docs/consent.md.
type precedenceRow struct {
	name  string
	edits []func(*consent.Request)
	// hiddenRead: the decision when the document read is hidden.
	effect      consent.Effect
	grounds     []string // nil: the hide's ground
	obligations []consent.Obligation
}

var precedenceRows = []precedenceRow{
	{name: "P1 its author, for treatment", edits: fns(as(drAuthor, "10", true)), effect: consent.Allow, grounds: []string{"rule:care-team"}},
	{name: "P2 its author, in an emergency", edits: fns(as(drAuthor, "10", false), emergency), effect: consent.Allow, grounds: []string{"rule:break-glass"}, obligations: emergObl},
	{name: "P3 the treating physician, for treatment", edits: fns(as(drTreat, "10", false)), effect: consent.Allow, grounds: []string{"directive:t1"}},
	{name: "P4 extended rights, for treatment", edits: fns(as(nurse, "60", false)), effect: consent.Allow, grounds: []string{"directive:x1"}},
	{name: "P5 the treating physician, in an emergency", edits: fns(as(drTreat, "10", false), emergency), effect: consent.Allow, grounds: []string{"rule:break-glass"}, obligations: emergObl},
	{name: "P5 extended rights, in an emergency", edits: fns(as(nurse, "60", false), emergency), effect: consent.Allow, grounds: []string{"rule:break-glass"}, obligations: emergObl},
	{name: "P6 the care team", effect: consent.Deny},
	{name: "P6 express consent", edits: fns(as(drExpress, "10", false)), effect: consent.Deny},
	{name: "P7 break-glass", edits: fns(as(drOther, "10", false), emergency), effect: consent.Deny},
	{name: "P7 the SAMU regulator", edits: fns(as(drOther, "10", false), sector("samu"), emergency), effect: consent.Deny},
	{name: "P8 extended rights that ended", edits: fns(as(drFormer, "10", true)), effect: consent.Deny},
}

// TestPrecedenceTable checks every row of the precedence table of hidden
// documents (docs/consent.md): rows P1-P8 and P10-P11 for every way a
// document is hidden, P9 (hide-everything) and P12 (a directive that
// cannot be evaluated hides the document read, and is never an error) as
// ways of hiding.
func TestPrecedenceTable(t *testing.T) {
	rules := nationalrules.Illustrative()
	base := dirs(who("t1", consent.TreatingPhysician, drTreat), who("x1", consent.ExtendedRights, nurse),
		who("a1", consent.AllowProfessional, drExpress), until(who("x2", consent.ExtendedRights, drFormer), yesterday))
	decide := func(t *testing.T, e *ladonpolicy.Engine, c *consent.Consent, edits ...func(*consent.Request)) consent.Decision {
		t.Helper()
		req := baseRequest()
		for _, f := range edits {
			if f != nil {
				f(&req)
			}
		}
		d, err := e.Decide(&req, c, rules)
		if err != nil {
			t.Fatalf("Decide() error: %v", err)
		}
		return d
	}
	check := func(t *testing.T, got consent.Decision, effect consent.Effect, grounds []string, obl []consent.Obligation) {
		t.Helper()
		if got.Effect != effect || !slices.Equal(groundIDs(got), grounds) || !slices.Equal(got.Obligations, obl) {
			t.Errorf("Decide() = %s, want %v %v %v", describe(got), effect, grounds, obl)
		}
	}
	for _, w := range hideWays {
		t.Run(strings.ReplaceAll(w.name, " ", "_"), func(t *testing.T) {
			c := consent.Consent{Version: 1, Directives: append(slices.Clone(base), w.dirs...)}
			e := ladonpolicy.NewEngine(ladonpolicy.Options{})
			err := e.CheckConsent(&c, rules)
			var fe *consent.FieldError
			switch {
			case !w.unevaluable && err != nil:
				t.Fatalf("CheckConsent() = %v", err)
			case w.unevaluable && (!errors.As(err, &fe) || fe.Field != "directives[4].document" || strings.Contains(err.Error(), w.dirs[0].Document)):
				t.Fatalf("CheckConsent(pattern this version refuses) = %v, want a field error on directives[4].document not quoting it", err)
			}
			for _, row := range precedenceRows {
				t.Run(strings.ReplaceAll(row.name, " ", "_"), func(t *testing.T) {
					grounds := row.grounds
					if grounds == nil {
						grounds = []string{w.ground}
					}
					check(t, decide(t, e, &c, append(slices.Clone(row.edits), w.edit)...), row.effect, grounds, row.obligations)
				})
			}
			t.Run("P10_another_document", func(t *testing.T) {
				got := decide(t, e, &c, docID("note-7"), docType("lab-report"))
				if w.names {
					check(t, got, consent.Allow, []string{"rule:care-team"}, nil)
				} else {
					check(t, got, consent.Deny, []string{w.ground}, nil)
				}
			})
			t.Run("P11_the_record", func(t *testing.T) {
				check(t, decide(t, e, &c, record), consent.Allow, []string{"rule:care-team"}, nil)
				check(t, decide(t, e, &c, as(drOther, "10", false), emergency, record), consent.Allow, []string{"rule:break-glass"}, emergObl)
			})
		})
	}
}

// catastrophic are patterns on which a backtracking engine takes time
// exponential in the length of the document ID, each with a document ID
// it hides and one that makes a backtracking engine explore every way to
// split it (Vigie answered 503 after a 250 ms timeout, treating physician
// and break-glass included).
var catastrophic = []struct{ pattern, hit, miss string }{
	{"<(a+)+b>", strings.Repeat("a", 60) + "b", strings.Repeat("a", 60)},
	{"<(a|aa)+b>", strings.Repeat("a", 60) + "b", strings.Repeat("a", 60)},
	{"<(a*)*b>", "aab", strings.Repeat("a", 60)},
	{"<(.*a){12}>", strings.Repeat("a", 12), strings.Repeat("a", 60) + "x"},
	{`<(\w+\d*)+:>`, "ab1:", strings.Repeat("a1", 40)},
	{"<([a-z]+)*[.]>", "abc.", strings.Repeat("ab", 60)},
	{"<(x+x+)+y>", "xxy", strings.Repeat("x", 100)},
}

// TestCatastrophicPatterns is the regression test of issue 10 (2): a
// patient's pattern no longer makes a decision fail; every reader gets
// the table's answer for the documents it hides and for the others.
func TestCatastrophicPatterns(t *testing.T) {
	rules := nationalrules.Illustrative()
	for _, cp := range catastrophic {
		t.Run(cp.pattern, func(t *testing.T) {
			c := consent.Consent{Version: 1, Directives: dirs(who("t1", consent.TreatingPhysician, drTreat), hideDoc("h1", cp.pattern))}
			e := ladonpolicy.NewEngine(ladonpolicy.Options{})
			if err := e.CheckConsent(&c, rules); err != nil {
				t.Fatalf("CheckConsent() = %v", err)
			}
			for _, tt := range []struct {
				name     string
				edits    []func(*consent.Request)
				hidden   consent.Effect
				visible  consent.Effect
				allowers []string
			}{
				{"care team", nil, consent.Deny, consent.Allow, []string{"rule:care-team"}},
				{"treating physician", fns(as(drTreat, "10", false)), consent.Allow, consent.Allow, []string{"directive:t1"}},
				{"break-glass", fns(as(drOther, "10", false), emergency), consent.Deny, consent.Allow, []string{"rule:break-glass"}},
				{"author", fns(as(drAuthor, "10", true)), consent.Allow, consent.Allow, []string{"rule:care-team"}},
			} {
				for _, doc := range []struct {
					id   string
					want consent.Effect
				}{{cp.hit, tt.hidden}, {cp.miss, tt.visible}} {
					req := baseRequest()
					for _, f := range tt.edits {
						f(&req)
					}
					req.Resource.DocumentID = doc.id
					got, err := e.Decide(&req, &c, rules)
					if err != nil {
						t.Fatalf("%s reads a document of %d bytes: Decide() error: %v", tt.name, len(doc.id), err)
					}
					want := tt.allowers
					if doc.want == consent.Deny {
						want = []string{"directive:h1"}
					}
					if got.Effect != doc.want || !slices.Equal(groundIDs(got), want) {
						t.Errorf("%s reads a document of %d bytes: Decide() = %s, want %v %v", tt.name, len(doc.id), describe(got), doc.want, want)
					}
				}
			}
		})
	}
}
