package server

import (
	"context"
	"testing"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/event"
)

// TestLedgerEventFields: the events of a patient's history and of a DPO's
// search carry their kind, the professional's RPPS and the
// establishment's FINESS from the ledger's index (issue 19), and the one
// verifier finds them in agreement with the bodies.
func TestLedgerEventFields(t *testing.T) {
	l := newLive(t, liveOptions{})
	resp, err := vigiev1.NewAccessServiceClient(l.conn).Check(l.as(auth.RoleService, "his", ourOrg), checkRequest())
	if err != nil {
		t.Fatal(err)
	}
	auditc := vigiev1.NewAuditServiceClient(l.conn)
	for _, r := range []struct {
		ctx context.Context
		id  string
	}{{l.as(auth.RoleDPO, "dpo-a", ourOrg), "rv-1"}, {l.as(auth.RoleRegulator, "cnil"), "rv-2"}} {
		if _, err := auditc.ReviewBreakGlass(r.ctx, &vigiev1.ReviewBreakGlassRequest{RequestId: r.id, EventCommitment: resp.Event.Commitment,
			Verdict: vigiev1.BreakGlassVerdict_BREAK_GLASS_VERDICT_JUSTIFIED}); err != nil {
			t.Fatal(err)
		}
	}
	type fields struct {
		kind       vigiev1.EventKind
		actor, org string
	}
	access := fields{vigiev1.EventKind_EVENT_KIND_ACCESS, "10001234567", ourOrg}
	review := fields{vigiev1.EventKind_EVENT_KIND_BREAK_GLASS_REVIEW, "", ourOrg}
	read := fields{vigiev1.EventKind_EVENT_KIND_LEDGER_READ, "", ""}
	check := func(name string, events []*vigiev1.LedgerEvent, want []fields) {
		t.Helper()
		if len(events) != len(want) {
			t.Fatalf("%s: %d events, want %d", name, len(events), len(want))
		}
		for i, e := range events {
			if got := (fields{e.Kind, e.ActorRpps, e.Organization}); got != want[i] {
				t.Errorf("%s: event %d has %+v, want %+v", name, i, got, want[i])
			}
			b, err := event.Parse(e.Body)
			if err != nil {
				t.Fatal(err)
			}
			env := audit.Envelope{Seq: e.Sequence, Index: e.LeafIndex, Commitment: e.Commitment, Body: e.Body, Salt: e.Salt,
				Kind: e.Kind.String(), Actor: e.ActorRpps, Organization: e.Organization}
			if f := audit.CheckFields(&env, b); f != nil {
				t.Errorf("%s: event %d: %v", name, i, f)
			}
		}
	}
	found, err := auditc.SearchEvents(l.as(auth.RoleDPO, "dpo-a", ourOrg), &vigiev1.SearchEventsRequest{Organization: ourOrg})
	if err != nil {
		t.Fatal(err)
	}
	check("SearchEvents", found.Events, []fields{access, review, review})
	h, err := vigiev1.NewHistoryServiceClient(l.conn).ListAccesses(l.as(auth.RolePatient, testINS), &vigiev1.ListAccessesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	check("ListAccesses", h.Events, []fields{access, review, review, read})
}
