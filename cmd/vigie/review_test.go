package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
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
