package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/event"
)

// TestDescribeReadsRecordsAsConsentDoes: the rows of ledger reads and
// break-glass reviews read their payloads with consent's parsers, which
// take the canonical form only (as consent.JudgeAccesses and the misuse
// alerts do); a payload in another form is shown unreadable, never with
// a reader, a count or a verdict read loosely.
func TestDescribeReadsRecordsAsConsentDoes(t *testing.T) {
	access := event.Hash(sha256.Sum256([]byte("access")))
	read, err := consent.FormatReadRecord(consent.ReadRecord{Reader: "regulator:cnil", Method: "SearchEvents", Events: 3})
	if err != nil {
		t.Fatal(err)
	}
	review, err := consent.FormatReviewRecord(consent.ReviewRecord{Event: access.String(), Verdict: consent.VerdictJustified, Reviewer: "dpo:a"})
	if err != nil {
		t.Fatal(err)
	}
	// loose adds a field the format does not have: valid JSON, not the
	// record's form.
	loose := func(b []byte) []byte { return bytes.Replace(b, []byte(`{`), []byte(`{"extra":1,`), 1) }
	row := func(kind event.Kind, payload []byte) eventRow {
		e := &audit.HistoryEvent{Seq: 2, Logged: event.Logged{
			Ref:  event.Ref{Index: 5, Commitment: sha256.Sum256(payload)},
			Body: &event.Body{V: 1, Kind: kind, Time: time.Unix(0, 0), Payload: payload},
		}}
		return describe(context.Background(), en, nil, e, map[event.Hash]uint64{access: 1}, nil)
	}
	for _, c := range []struct {
		name    string
		kind    event.Kind
		payload []byte
		want    eventRow
	}{
		{"read", event.KindLedgerRead, read, eventRow{Who: "regulator:cnil", What: en.t("cli.read.SearchEvents", "n", 3)}},
		{"loose read", event.KindLedgerRead, loose(read), eventRow{What: en.t("cli.readUnreadable")}},
		{"review", event.KindBreakGlassReview, review, eventRow{Who: "dpo:a", What: en.t("cli.review", "seq", 1),
			Outcome: en.t("cli.review.justified") + en.t("cli.review.notFinal")}},
		{"loose review", event.KindBreakGlassReview, loose(review), eventRow{What: en.t("cli.reviewUnreadable")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := row(c.kind, c.payload)
			if got.Who != c.want.Who || got.What != c.want.What || got.Outcome != c.want.Outcome {
				t.Errorf("describe = who %q, what %q, outcome %q; want %q, %q, %q", got.Who, got.What, got.Outcome, c.want.Who, c.want.What, c.want.Outcome)
			}
		})
	}
}
