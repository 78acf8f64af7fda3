package server

import (
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/ledger/event"
)

// EventKind returns the API's name of an event kind (event.Kind.APIName,
// the one rule between the two names), as SearchEvents reads it, for a
// client building a search and for the kind of a LedgerEvent: the empty
// kind is EVENT_KIND_UNSPECIFIED (every kind). It returns false for a
// kind the API does not name, which a client must not send as
// UNSPECIFIED: that would widen its search to every kind.
func EventKind(k event.Kind) (vigiev1.EventKind, bool) {
	if k == "" {
		return vigiev1.EventKind_EVENT_KIND_UNSPECIFIED, true
	}
	v, ok := vigiev1.EventKind_value[k.APIName()]
	if !ok || v == 0 {
		return vigiev1.EventKind_EVENT_KIND_UNSPECIFIED, false
	}
	return vigiev1.EventKind(v), true
}

// kindOf returns the event kind an API value names (the inverse of
// EventKind); false for UNSPECIFIED and for a value the API does not
// define.
func kindOf(v vigiev1.EventKind) (event.Kind, bool) {
	if _, ok := vigiev1.EventKind_name[int32(v)]; !ok {
		return "", false
	}
	k, ok := event.KindOfAPIName(v.String())
	return k, ok && k != ""
}

// indexFields sets what the ledger's index says of an event (its kind,
// the professional's RPPS, the establishment's FINESS) on m: the columns
// searches and a DPO's scope select by, served as they are so that a
// verifier holding them to the body sees a tampered index. A kind the API
// does not name stays UNSPECIFIED.
func indexFields(m *vigiev1.LedgerEvent, kind event.Kind, actor, organization string) {
	m.Kind, _ = EventKind(kind)
	m.ActorRpps, m.Organization = actor, organization
}
