package replay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/nationalrules"
	"github.com/vigie-sante/vigie/ledger/event"
)

// The pattern ledger is a ledger of document reads decided under
// hide-document patterns, recorded by the engine of Vigie before its
// matcher moved from ladon's backtracking engine (dlclark/regexp2) to Go's
// regexp (RE2): testdata/patterns-ledger.txt holds one event body per
// line, leaf index = line number, and testdata/patterns-rules.json the
// national rules it names. It was written once, by
//
//	go test ./consent/replay -run TestPatternLedger -record-pattern-ledger
//
// on the commit before the change, and must never be rewritten: its
// point is that decisions recorded by the old engine replay the same.
var recordPatternLedger = flag.Bool("record-pattern-ledger", false, "rewrite testdata/patterns-ledger.txt with the current engine (only before a matcher change)")

const (
	patternLedgerFile = "testdata/patterns-ledger.txt"
	patternRulesFile  = "testdata/patterns-rules.json"
)

// patternConsents are the consents of the pattern ledger: every construct
// of the portable subset of patterns (docs/consent.md), including those on
// which the two engines differ for other inputs than document IDs: \d, \w
// and \s (Unicode), $ (before a final newline), (?i) (Unicode folding).
var patternConsents = [][]string{
	{`stay-<\d+>`, `<\w+>-note`, `<[A-Z]{3}>-<\d{4}>`, `psy<.*>`},
	{`<(?i)psy[a-z0-9_.:-]*>`, `<.*:\d+$>`, `<^lab\..+>`, `<(?:a|b)+[^0-9]?>`},
	{`<\W*x\S+>`, `<(a+)+b>`, `<[^\d\s]{2}>`, `<(?i:abc)-\D+>`},
	{`<a{2,}?b*>`, `<[-a-c]+>`, `<x|y|>`, `<[0-9a-f]{1,3}[.:_-]?\w*$>`},
	{`note-<[1-3]>`, `<lab\.\d>`, `<\d+|\w+\.>`, `<[^a-z]+>`},
	{`<.?:.*>`, `<(?i)LAB\.\d+>`, `<\w{1,2}>`, `<[x\-]+>`},
}

var patternDocIDs = []string{
	"stay-2024", "stay-17", "stay-", "ABC-1234", "abc-1234", "ABCD-123", "psy-note", "PSY.note",
	"lab.x:12", "x:99", "x:99a", "aab", "ab", "b", "note-1", "note-4", "a_b-note", "-x-", "x", "xy",
	"a:b:c", "lab.1", "LAB.2", "lab-1", "2024", "12.", "f:", "0ff", "abc-X", "ABC-y9", "-", "x-x", "y",
}

// patternActor is a reader of the pattern ledger: readers from whom the
// patterns hide documents (the author and the treating physician read
// them whatever the patterns say; the precedence table tests of
// consent/ladonpolicy cover them).
type patternActor struct {
	name       string
	rpps       string
	profession string
	purpose    consent.Purpose
	careTeam   bool
}

var patternActors = []patternActor{
	{name: "care team", rpps: drX, profession: "10", purpose: consent.PurposeTreatment, careTeam: true},
	{name: "break-glass nurse", rpps: "10000000035", profession: "60", purpose: consent.PurposeBreakGlass},
}

// writePatternLedger records the pattern ledger with the current engine.
func writePatternLedger(t *testing.T) {
	l := newLedger(t)
	prev := map[event.Hash]event.Hash{}
	var out bytes.Buffer
	emit := func(e event.Logged) {
		e.Body.Prev = prev[e.Body.Patient]
		prev[e.Body.Patient] = e.Commitment
		b, err := e.Body.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		out.Write(b)
		out.WriteByte('\n')
	}
	emit(l.events[0])
	org, _ := ident.ParseFINESS("750712184")
	docTypes := []string{"lab-report", "discharge-summary", "consultation-note"}
	for pi, pats := range patternConsents {
		p := patient(100 + pi)
		n := uint64(3_000_000_000_000) + uint64(pi)
		ins, err := ident.ParseINS(fmt.Sprintf("%013d%02d", n, 97-n%97))
		if err != nil {
			t.Fatal(err)
		}
		ds := []consent.Directive{{ID: "tp", Kind: consent.TreatingPhysician, Professional: mustRPPS(t, drY)}}
		for i, pat := range pats {
			ds = append(ds, consent.Directive{ID: fmt.Sprint("h", i), Kind: consent.HideDocument, Document: pat})
		}
		c := consent.Consent{Version: 1, Directives: ds}
		if err := l.engine.CheckConsent(&c, l.rules); err != nil {
			t.Fatalf("consent %d: %v", pi, err)
		}
		l.setConsent(p, ds...)
		emit(l.events[len(l.events)-1])
		for di, doc := range patternDocIDs {
			for _, a := range patternActors {
				req := consent.Request{ID: fmt.Sprint("r", len(l.events)), Service: "his", Patient: ins,
					Actor:    consent.Actor{RPPS: mustRPPS(t, a.rpps), Profession: a.profession, Sector: "care", Organization: org, CareTeam: a.careTeam},
					Action:   consent.ActionRead,
					Resource: consent.Resource{Kind: consent.ResourceDocument, DocumentID: doc, DocumentType: docTypes[di%len(docTypes)]},
					Purpose:  a.purpose, Time: t0.Add(time.Duration(len(l.events)) * time.Minute)}
				if a.purpose == consent.PurposeBreakGlass {
					req.Justification = "unconscious patient"
				}
				snap := l.consent[p]
				d, err := l.engine.Decide(&req, &snap, l.rules)
				if err != nil {
					t.Fatalf("consent %d, %s, document %d: %v", pi, a.name, di, err)
				}
				b, err := consent.FormatAccessRecord(&req, &d)
				if err != nil {
					t.Fatal(err)
				}
				emit(l.add(p, event.KindAccess, b))
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(patternLedgerFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(patternLedgerFile, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(patternRulesFile, nationalrules.IllustrativeBytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// readPatternLedger reads the pattern ledger.
func readPatternLedger(t *testing.T) []event.Logged {
	t.Helper()
	f, err := os.Open(patternLedgerFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []event.Logged
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), event.MaxBodySize+1)
	for sc.Scan() {
		b, err := event.Parse(sc.Bytes())
		if err != nil {
			t.Fatalf("line %d: %v", len(evs)+1, err)
		}
		i := uint64(len(evs))
		evs = append(evs, event.Logged{Ref: event.Ref{Index: i, Commitment: sha256.Sum256([]byte(fmt.Sprint(i)))}, Body: b})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestPatternLedger replays the pattern ledger, recorded by the
// backtracking matcher, with today's engine: every decision agrees, with
// the same effect, grounds and obligations.
func TestPatternLedger(t *testing.T) {
	if *recordPatternLedger {
		writePatternLedger(t)
	}
	evs := readPatternLedger(t)
	rules, err := os.ReadFile(patternRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	src := func(_ context.Context, v int64) ([]byte, error) {
		if v != 1 {
			return nil, ErrNoRules
		}
		return rules, nil
	}
	r, err := Replay(context.Background(), Config{Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}), Rules: src, Complete: true}, evs)
	if err != nil {
		t.Fatal(err)
	}
	want := len(patternConsents) * len(patternDocIDs) * len(patternActors)
	if len(r.Findings) != 0 || r.Accesses != want || r.Replayed != want || r.Agreed != want {
		t.Fatalf("findings %v (first %+v); accesses %d, replayed %d, agreed %d of %d; not replayable %v",
			findingKinds(r.Findings), first(r.Findings), r.Accesses, r.Replayed, r.Agreed, want, r.NotReplayable)
	}
	// The ledger exercises both answers for readers the patterns hide
	// from, or it proves nothing about the patterns.
	effects := map[consent.Effect]int{}
	for _, e := range evs {
		if e.Body.Kind != event.KindAccess {
			continue
		}
		_, rec, err := consent.ParseAccessRecord(e.Body.Payload)
		if err != nil {
			t.Fatal(err)
		}
		effects[rec.Effect]++
	}
	if effects[consent.Allow] < want/4 || effects[consent.Deny] < want/8 {
		t.Errorf("effects %v: the ledger does not exercise both answers", effects)
	}
}

func first(fs []Finding) Finding {
	if len(fs) == 0 {
		return Finding{}
	}
	return fs[0]
}
