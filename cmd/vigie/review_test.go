package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/nationalrules"
	"github.com/vigie-sante/vigie/consent/replay"
	"github.com/vigie-sante/vigie/consent/scrutiny"
	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/event"
)

// TestReviewRowsSayTheFinalVerdict: in a patient's history, every review
// is shown, and those that do not decide the access (consent.FinalReview)
// say so: a DPO's review overruled by the regulator's, and a DPO's review
// recorded after the regulator's.
func TestReviewRowsSayTheFinalVerdict(t *testing.T) {
	access := event.Hash(sha256.Sum256([]byte("access")))
	var events []audit.HistoryEvent
	add := func(reviewer, verdict string) {
		i := uint64(len(events) + 1)
		p, err := consent.FormatReviewRecord(consent.ReviewRecord{Event: access.String(), LeafIndex: 0, Verdict: verdict, Reviewer: reviewer})
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, audit.HistoryEvent{Seq: i + 1, Logged: event.Logged{
			Ref:  event.Ref{Index: i, Commitment: sha256.Sum256([]byte(fmt.Sprint(i)))},
			Body: &event.Body{V: 1, Kind: event.KindBreakGlassReview, Time: time.Unix(int64(i), 0), Payload: p},
		}})
	}
	add("dpo:a", consent.VerdictJustified)
	add("regulator:cnil", consent.VerdictUnjustified)
	add("dpo:b", consent.VerdictJustified)
	finals := finalReviews(events)
	for i, wantNotFinal := range []bool{true, false, true} {
		row := describe(context.Background(), en, nil, &events[i], map[event.Hash]uint64{access: 1}, finals)
		if got := slices.Contains(row.Flags, "not-final"); got != wantNotFinal {
			t.Errorf("review %d (%s): flags %v, outcome %q; want not-final %v", i, row.Who, row.Flags, row.Outcome, wantNotFinal)
		}
	}
}

// TestPortalAndCLIJudgeAccessesAlike: on the same events, the portal's
// verifier (static/verify.wasm's vigieAccesses, run by Node.js as the
// page runs it) and vigie verify's rows (describe) say the same of which
// accesses were emergency accesses and which review decides each access:
// both ask consent.JudgeAccesses. Without node, it skips, unless CI=true.
func TestPortalAndCLIJudgeAccessesAlike(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node is not installed, and CI=true")
		}
		t.Skip("node is not installed")
	}
	rules := nationalrules.Illustrative()
	var events []audit.HistoryEvent
	add := func(kind event.Kind, payload []byte) event.Hash {
		i := uint64(len(events))
		c := event.Hash(sha256.Sum256([]byte(fmt.Sprint("event", i))))
		events = append(events, audit.HistoryEvent{Seq: i + 1, Logged: event.Logged{
			Ref:  event.Ref{Index: 10 + i, Commitment: c},
			Body: &event.Body{V: 1, Kind: kind, Time: time.Unix(int64(i), 0), Payload: payload},
		}})
		return c
	}
	access := func(purpose consent.Purpose, version int64, hash [32]byte, grounds ...string) event.Hash {
		req := &consent.Request{ID: "r", Service: "s", Actor: consent.Actor{RPPS: ident.MustParseRPPS("10002727377"),
			Organization: ident.MustParseFINESS("750712184"), Profession: "10", Sector: "SA01"},
			Action: consent.ActionRead, Resource: consent.Resource{Kind: consent.ResourceRecord}, Purpose: purpose, Time: time.Unix(1, 0).UTC()}
		d := &consent.Decision{Effect: consent.Allow, Reason: consent.ReasonAllowed, RulesVersion: version, RulesHash: hash, Time: time.Unix(1, 0).UTC()}
		for _, g := range grounds {
			d.Grounds = append(d.Grounds, consent.Ground{Source: consent.SourceRule, ID: "r/" + g, Kind: g, Effect: consent.Allow})
		}
		p, err := consent.FormatAccessRecord(req, d)
		if err != nil {
			t.Fatal(err)
		}
		return add(event.KindAccess, p)
	}
	review := func(of event.Hash, reviewer, verdict string) {
		p, err := consent.FormatReviewRecord(consent.ReviewRecord{Event: of.String(), Verdict: verdict, Reviewer: reviewer, Comment: "vu <urgence> & rappel"})
		if err != nil {
			t.Fatal(err)
		}
		add(event.KindBreakGlassReview, p)
	}
	var other [32]byte
	btg := access(consent.PurposeBreakGlass, rules.Version(), rules.Hash(), consent.RuleBreakGlass)  // emergency by the rules
	access(consent.PurposeTreatment, rules.Version(), rules.Hash(), consent.RuleBreakGlass)          // the rules say it was not
	noRules := access(consent.PurposeBreakGlass, 99, other, consent.RuleBreakGlass)                  // by its ground
	access(consent.PurposeTreatment, 99, other, consent.RuleCareTeam)                                // neither
	wrongHash := access(consent.PurposeTreatment, rules.Version(), other, consent.RuleSAMURegulator) // rules not the ones named: by its ground
	review(btg, "dpo:a", consent.VerdictJustified)
	review(btg, "regulator:cnil", consent.VerdictUnjustified)
	review(btg, "dpo:b", consent.VerdictJustified)
	review(noRules, "dpo:a", consent.VerdictUnjustified)
	review(wrongHash, "nobody", consent.VerdictUnjustified)

	// vigie verify.
	lb := scrutiny.NewRulesCache(func(_ context.Context, v int64) ([]byte, error) {
		if v == rules.Version() {
			return rules.Bytes(), nil
		}
		return nil, replay.ErrNoRules
	})
	finals := finalReviews(events)
	cli := map[string][]string{}
	for i := range events {
		row := describe(context.Background(), en, lb, &events[i], nil, finals)
		cli[events[i].Commitment.String()] = row.Flags
	}

	// The portal: its events as the verifier's reports give them.
	type reported struct {
		Commitment string          `json:"commitment"`
		LeafIndex  string          `json:"leaf_index"`
		Kind       event.Kind      `json:"kind"`
		Verdict    string          `json:"verdict"`
		Payload    json.RawMessage `json:"payload"`
	}
	var rep []reported
	for _, e := range events {
		rep = append(rep, reported{e.Commitment.String(), fmt.Sprint(e.Index), e.Body.Kind, "verified", e.Body.Payload})
	}
	in, err := json.Marshal(map[string]any{"events": rep, "rules": map[string][]byte{fmt.Sprint(rules.Version()): rules.Bytes()}})
	if err != nil {
		t.Fatal(err)
	}
	// events.js's judge, with the report re-encoded by the page.
	script := `require('./wasm_exec.js');
const fs = require('fs'), input = JSON.parse(fs.readFileSync(0, 'utf8'));
const go = new Go();
WebAssembly.instantiate(fs.readFileSync('verify.wasm'), go.importObject).then(r => {
  go.run(r.instance);
  const pick = e => ({ commitment: e.commitment, leaf_index: String(e.leaf_index), payload: JSON.parse(JSON.stringify(e.payload)) });
  const rules = {}; for (const [v, b] of Object.entries(input.rules)) rules[v] = b;
  process.stdout.write(globalThis.vigieAccesses(JSON.stringify({
    accesses: input.events.filter(e => e.kind === 'access').map(pick),
    reviews: input.events.filter(e => e.kind === 'break_glass_review' && e.verdict === 'verified').map(pick), rules })));
  process.exit(0);
});`
	cmd := exec.Command(node, "-e", script)
	cmd.Dir = portalStatic
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	var portal consent.AccessVerdicts
	if err := json.Unmarshal(out, &portal); err != nil {
		t.Fatalf("vigieAccesses answered %.300s: %v", out, err)
	}

	emergency := map[string]bool{}
	for _, c := range portal.Emergency {
		emergency[c] = true
	}
	final := map[string]bool{}
	for _, r := range portal.Final {
		final[r] = true
	}
	if len(portal.Emergency) != 3 || len(portal.Final) != 2 {
		t.Errorf("portal: %d emergency accesses, %d reviewed, want 3 and 2: %s", len(portal.Emergency), len(portal.Final), out)
	}
	for _, e := range events {
		c := e.Commitment.String()
		switch e.Body.Kind {
		case event.KindAccess:
			if got := slices.Contains(cli[c], "emergency"); got != emergency[c] {
				t.Errorf("access %d: vigie verify says emergency %v, the portal %v", e.Seq, got, emergency[c])
			}
		case event.KindBreakGlassReview:
			if got := !slices.Contains(cli[c], "not-final"); got != final[c] {
				t.Errorf("review %d: vigie verify says final %v, the portal %v", e.Seq, got, final[c])
			}
		}
	}
}
