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
		back, ok2 := kindOf(name)
		if !ok || name == vigiev1.EventKind_EVENT_KIND_UNSPECIFIED || !ok2 || back != k {
			t.Errorf("EventKind(%q) = %v, %v; SearchEvents reads it as %q, %v", k, name, ok, back, ok2)
		}
	}
	// The enrolment kind is another branch's: its name follows the rule.
	if name, ok := EventKind("enrolment"); !ok || name != vigiev1.EventKind_EVENT_KIND_ENROLMENT {
		t.Errorf(`EventKind("enrolment") = %v, %v, want EVENT_KIND_ENROLMENT, true`, name, ok)
	}
	if name, ok := EventKind(""); !ok || name != vigiev1.EventKind_EVENT_KIND_UNSPECIFIED {
		t.Errorf(`EventKind("") = %v, %v, want UNSPECIFIED, true`, name, ok)
	}
	for _, k := range []event.Kind{"bogus", "patient_enrolment", "unspecified"} {
		if name, ok := EventKind(k); ok || name != vigiev1.EventKind_EVENT_KIND_UNSPECIFIED {
			t.Errorf(`EventKind(%q) = %v, %v, want UNSPECIFIED, false`, k, name, ok)
		}
	}
	// Every value of the API's enum but UNSPECIFIED reads as a kind, and
	// that kind's name is the value again.
	for v := range vigiev1.EventKind_name {
		k, ok := kindOf(vigiev1.EventKind(v))
		if v == 0 {
			if ok {
				t.Errorf("kindOf(UNSPECIFIED) = %q, true, want false", k)
			}
			continue
		}
		if back, _ := EventKind(k); !ok || back != vigiev1.EventKind(v) {
			t.Errorf("kindOf(%v) = %q, %v; EventKind of it = %v", vigiev1.EventKind(v), k, ok, back)
		}
	}
	if k, ok := kindOf(99); ok {
		t.Errorf("kindOf(99) = %q, true, want false", k)
	}
}
