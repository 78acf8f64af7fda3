package server

import (
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/ledger/event"
)

// EventKind returns the API's name of an event kind, as SearchEvents
// reads it (eventKinds), for a client building a search: the empty kind
// is EVENT_KIND_UNSPECIFIED (every kind). It returns false for a kind the
// API does not name, which a client must not send as UNSPECIFIED: that
// would widen its search to every kind.
func EventKind(k event.Kind) (vigiev1.EventKind, bool) {
	if k == "" {
		return vigiev1.EventKind_EVENT_KIND_UNSPECIFIED, true
	}
	for name, kind := range eventKinds {
		if kind == k {
			return name, true
		}
	}
	return vigiev1.EventKind_EVENT_KIND_UNSPECIFIED, false
}
