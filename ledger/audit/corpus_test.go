package audit_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/audit/audittest"
)

// TestCorpus runs the golden corpus through the Go verifier: the verdict
// on each case is the kinds of findings the corpus wants. The command line
// (cmd/vigie) and the WebAssembly build (in Chromium) run the same corpus
// and must reach the same verdicts.
func TestCorpus(t *testing.T) {
	cases, err := audittest.LoadCorpus()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			p, err := audit.PinKeys(c.Keys, audit.PublicKeys{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.FollowTransitions(c.Transitions); err != nil {
				t.Fatal(err)
			}
			opts := c.Saved().Options(p)
			opts.Now = func() time.Time { return time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC) }
			r, err := audit.VerifyHistory(context.Background(), c.Source(), opts)
			if err != nil {
				t.Fatalf("VerifyHistory: %v", err)
			}
			if got := audittest.Kinds(r.Findings); !slices.Equal(got, c.Want) {
				t.Errorf("findings %v, want kinds %v", r.Findings, c.Want)
			}
		})
	}
}
