package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/misuse"
	"github.com/vigie-sante/vigie/consent/replay"
	"github.com/vigie-sante/vigie/internal/texts"
	"github.com/vigie-sante/vigie/ledger/audit"
)

// portalStatic is where the portal's pages are, from this directory.
const portalStatic = "../../api/gateway/portal/static"

// TestCatalogueUsed: every text id the CLI and the portal's pages use is
// in the one catalogue (internal/texts, which has every entry in French
// and English), every value of the kinds they look up by prefix has its
// entry, and every entry of the catalogue is used by one or the other.
func TestCatalogueUsed(t *testing.T) {
	used := map[string]bool{}     // ids used as they are
	prefixes := map[string]bool{} // ids built from a prefix and a value

	// The CLI: l.t("id", ...) and group[K]("prefix.").
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, _ := strconv.Unquote(lit.Value)
			switch fun := call.Fun.(type) {
			case *ast.SelectorExpr:
				if fun.Sel.Name == "t" {
					used[s] = true
					if _, ok := texts.Lookup(s); !ok {
						t.Errorf("%s: l.t(%q): no such text in internal/texts", fset.Position(lit.Pos()), s)
					}
				}
			case *ast.IndexExpr:
				if id, ok := fun.X.(*ast.Ident); ok && id.Name == "group" {
					prefixes[s] = true
				}
			}
			return true
		})
	}

	// The pages: t('id'), {key: 'id'}, data-i18n and data-title name ids
	// that must exist; any other literal that is an id uses it; 'prefix.' +
	// value uses the ids under prefix.
	must := []*regexp.Regexp{
		regexp.MustCompile(`\bt\('([^']+)'[,)]`),
		regexp.MustCompile(`\bkey: '([^']+)'`),
		regexp.MustCompile(`data-(?:i18n|title)="([^"]*)"`),
		regexp.MustCompile(`showPending\('([^']+)'`),
	}
	literal := regexp.MustCompile(`'([A-Za-z][\w.-]*)'`)
	prefix := regexp.MustCompile(`'([A-Za-z][\w.-]*\.)' *\+`)
	pages, err := filepath.Glob(filepath.Join(portalStatic, "*.*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range pages {
		if ext := filepath.Ext(name); ext != ".js" && ext != ".html" || filepath.Base(name) == "wasm_exec.js" {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, re := range must {
			for _, m := range re.FindAllStringSubmatch(string(b), -1) {
				if _, ok := texts.Lookup(m[1]); !ok {
					t.Errorf("%s: %s: no such text in internal/texts", filepath.Base(name), m[0])
				}
				used[m[1]] = true
			}
		}
		for _, m := range literal.FindAllStringSubmatch(string(b), -1) {
			if _, ok := texts.Lookup(m[1]); ok {
				used[m[1]] = true
			}
		}
		for _, m := range prefix.FindAllStringSubmatch(string(b), -1) {
			prefixes[m[1]] = true
		}
	}
	if len(pages) < 5 || len(used) < 100 {
		t.Fatalf("read %d pages, found %d ids: wrong directory?", len(pages), len(used))
	}

	// Every value of a kind looked up by prefix has its text.
	var kinds []string
	for _, k := range []audit.Kind{audit.KindSignature, audit.KindRollback, audit.KindFork, audit.KindRootMismatch,
		audit.KindProof, audit.KindModifiedBody, audit.KindMalformed, audit.KindMissingEvent, audit.KindWrongLink,
		audit.KindDuplicate, audit.KindUnexplainedErasure, audit.KindRewritten, audit.KindReceipt,
		audit.KindReceiptOverdue, audit.KindNotInLog, audit.KindWithheld, audit.KindUnreadable, audit.KindForeignPatient,
		audit.KindWitnessQuorum, audit.KindCosignature} {
		kinds = append(kinds, string(findingTitles)+string(k))
	}
	for _, k := range []replay.Kind{replay.KindAllowDenied, replay.KindDenyAllowed, replay.KindExplanation,
		replay.KindConsentVersion, replay.KindConsentChange, replay.KindRules, replay.KindUnreadable} {
		kinds = append(kinds, string(replayTitles)+string(k))
	}
	for _, k := range []misuse.Kind{misuse.KindBreakGlassRate, misuse.KindBreakGlassUnreviewed, misuse.KindNoCareRelationship,
		misuse.KindBurst, misuse.KindOddHours, misuse.KindRepeatedDenials, misuse.KindOutsideMatrix} {
		kinds = append(kinds, string(alertTitles)+string(k), "alertText."+string(k))
	}
	for _, p := range []consent.Purpose{consent.PurposeTreatment, consent.PurposeEmergencyTreatment, consent.PurposeBreakGlass,
		consent.PurposePayment, consent.PurposeOperations, consent.PurposeResearch} {
		kinds = append(kinds, string(purposes)+string(p))
	}
	for _, a := range []consent.Action{consent.ActionRead, consent.ActionWrite, consent.ActionHide} {
		kinds = append(kinds, string(actions)+string(a))
	}
	for _, k := range consent.ProblemKinds() {
		kinds = append(kinds, "problem."+string(k))
	}
	for _, id := range kinds {
		if _, ok := texts.Lookup(id); !ok {
			t.Errorf("no text %q in internal/texts", id)
		}
	}

	for _, id := range texts.IDs() {
		if used[id] {
			continue
		}
		found := false
		for p := range prefixes {
			found = found || strings.HasPrefix(id, p)
		}
		if !found {
			t.Errorf("text %q of internal/texts is used neither by the CLI nor by the portal", id)
		}
	}
}
