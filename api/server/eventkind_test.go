package server

import (
	"testing"

	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/ledger/event"
)

// TestEventKind: every kind of event has its name in the API, which
// SearchEvents reads back as that kind; a kind the API does not name is
// refused, never sent as UNSPECIFIED (every kind).
func TestEventKind(t *testing.T) {
	for _, k := range []event.Kind{event.KindAccess, event.KindConsentChange, event.KindRulesChange,
		event.KindLedgerRead, event.KindBreakGlassReview, event.KindErasure, event.KindEnrolment, event.KindLogSuccession} {
		name, ok := EventKind(k)
		if !ok || name == vigiev1.EventKind_EVENT_KIND_UNSPECIFIED || eventKinds[name] != k {
			t.Errorf("EventKind(%q) = %v, %v; SearchEvents reads it as %q", k, name, ok, eventKinds[name])
		}
	}
	if name, ok := EventKind(""); !ok || name != vigiev1.EventKind_EVENT_KIND_UNSPECIFIED {
		t.Errorf(`EventKind("") = %v, %v, want UNSPECIFIED, true`, name, ok)
	}
	if name, ok := EventKind("bogus"); ok {
		t.Errorf(`EventKind("bogus") = %v, true, want false`, name)
	}
	if len(eventKinds) != 8 {
		t.Errorf("SearchEvents names %d kinds, the test knows 8", len(eventKinds))
	}
}
