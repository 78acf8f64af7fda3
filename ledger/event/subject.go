package event

import (
	"encoding/json"
	"errors"
	"strings"
)

// apiKindPrefix starts the name of every kind in Vigie's API.
const apiKindPrefix = "EVENT_KIND_"

// APIName returns the name of k in Vigie's API (the enum
// vigie.v1.EventKind): EVENT_KIND_ followed by k in capitals
// (KindConsentChange is EVENT_KIND_CONSENT_CHANGE), and
// EVENT_KIND_UNSPECIFIED for the empty kind. It is the one rule between
// the two names; [KindOfAPIName] is its inverse.
func (k Kind) APIName() string {
	if k == "" {
		return apiKindPrefix + "UNSPECIFIED"
	}
	return apiKindPrefix + strings.ToUpper(string(k))
}

// KindOfAPIName returns the kind an API name names ([Kind.APIName]): the
// empty kind for EVENT_KIND_UNSPECIFIED or "". It returns false for a
// name not of that form. The kind returned may be one this version does
// not know ([Kind.Valid]): a newer server's.
func KindOfAPIName(name string) (Kind, bool) {
	if name == "" || name == apiKindPrefix+"UNSPECIFIED" {
		return "", true
	}
	rest, ok := strings.CutPrefix(name, apiKindPrefix)
	if !ok || rest == "" {
		return "", false
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; (c < 'A' || c > 'Z') && c != '_' {
			return "", false
		}
	}
	return Kind(strings.ToLower(rest)), true
}

// A Subject is whom an event concerns, as its body says: what the ledger
// keeps beside the body, in clear, for auditors' searches and a DPO's
// scope (the API serves it as a LedgerEvent's actor_rpps and
// organization). The body is the record: a Subject read from it is what
// those fields must say.
type Subject struct {
	// Actor is the RPPS number of the professional of an access; empty
	// for every other kind.
	Actor string
	// Organization is the FINESS number of the establishment of an
	// access, or of the access a break-glass review is about when the
	// review names it (a DPO's, version 2); empty for the other kinds.
	Organization string
	// OrganizationOpen is true when the body does not say which
	// establishment: a regulator's review, or a review of version 1. The
	// ledger files it under the reviewed access's establishment, which
	// only that access's body says.
	OrganizationOpen bool
}

// ErrNoSubject means an access or review body whose payload does not say
// whom it concerns in the form [ReadSubject] reads.
var ErrNoSubject = errors.New("event payload: no readable actor or organization")

// ReadSubject reads from b the subject of its event: for an access, the
// payload's request.actor.rpps and request.actor.organization; for a
// break-glass review, the payload's organization. It reads those fields
// only (package consent parses the whole payload) and never quotes the
// payload in an error.
func ReadSubject(b *Body) (Subject, error) {
	switch b.Kind {
	case KindAccess:
		var p struct {
			Request struct {
				Actor struct {
					RPPS         *string `json:"rpps"`
					Organization *string `json:"organization"`
				} `json:"actor"`
			} `json:"request"`
		}
		if json.Unmarshal(b.Payload, &p) != nil {
			return Subject{}, ErrNoSubject
		}
		a := p.Request.Actor
		if a.RPPS == nil || a.Organization == nil {
			return Subject{}, ErrNoSubject
		}
		return Subject{Actor: *a.RPPS, Organization: *a.Organization}, nil
	case KindBreakGlassReview:
		var p struct {
			Organization *string `json:"organization"`
		}
		if json.Unmarshal(b.Payload, &p) != nil {
			return Subject{}, ErrNoSubject
		}
		if p.Organization == nil || *p.Organization == "" {
			return Subject{OrganizationOpen: true}, nil
		}
		return Subject{Organization: *p.Organization}, nil
	}
	return Subject{}, nil
}
