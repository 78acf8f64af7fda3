package audit

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// An Envelope is an event as the API serves it (vigie.v1.LedgerEvent):
// its place in its chain and in the log, its commitment, and its body and
// salt unless it was erased; with, in a patient's listing, the inclusion
// proof against the listing's checkpoint or the receipt of an event that
// checkpoint does not cover.
type Envelope struct {
	Seq        uint64
	Index      uint64
	Commitment string
	Erased     bool
	Body       []byte
	Salt       []byte
	Proof      [][]byte
	Receipt    []byte
	// Kind, Actor and Organization are what the server's index says of
	// the event (a LedgerEvent's kind, by its API name such as
	// EVENT_KIND_ACCESS, actor_rpps and organization: the columns its
	// searches and a DPO's scope select by), for listing without reading
	// bodies. The body is the record: [CheckFields] holds them to it.
	Kind         string
	Actor        string
	Organization string
}

// CheckEvent checks an event's body and salt against its commitment, and
// its body against its envelope (same place in the chain). It returns the
// logged event (Body nil for an erased event) or the finding that says
// what is wrong. It does not check that the commitment is in the log.
func CheckEvent(e *Envelope) (event.Logged, *Finding) {
	at := func(k Kind, format string, args ...any) *Finding {
		return &Finding{Kind: k, Seq: e.Seq, Index: ptr(e.Index), Message: fmt.Sprintf(format, args...)}
	}
	c, err := event.ParseHash(e.Commitment)
	if err != nil {
		return event.Logged{}, at(KindMalformed, "commitment: %v", err)
	}
	l := event.Logged{Ref: event.Ref{Index: e.Index, Commitment: c}}
	if e.Erased {
		if len(e.Body) != 0 || len(e.Salt) != 0 {
			return l, at(KindMalformed, "an erased event with a body or a salt")
		}
		return l, nil
	}
	if len(e.Salt) != verify.SaltSize {
		return l, at(KindMalformed, "salt of %d bytes, want %d", len(e.Salt), verify.SaltSize)
	}
	b, err := verify.VerifyEvent(e.Body, [verify.SaltSize]byte(e.Salt), c)
	switch {
	case errors.Is(err, verify.ErrCommitmentMismatch):
		f := at(KindModifiedBody, "the body served does not match the event's commitment: it is not the body recorded")
		f.Evidence = &Evidence{Commitment: &c, Body: e.Body, Salt: e.Salt}
		return l, f
	case err != nil:
		return l, at(KindMalformed, "%v", err)
	case b.Seq != e.Seq:
		return l, at(KindMalformed, "the body says seq %d, the listing %d", b.Seq, e.Seq)
	}
	l.Body = b
	return l, nil
}

// CheckFields checks what the server's index says of an event (the
// envelope's Kind, Actor and Organization) against its verified body b
// ([event.ReadSubject]): the body is the record, and any disagreement is
// a finding of kind [KindFieldMismatch] naming the field, by its API
// name. An envelope without a kind (a server that does not serve the
// fields: no kind, actor or organization) is not checked; neither is the
// organization of a review whose body does not name one (a regulator's).
func CheckFields(e *Envelope, b *event.Body) *Finding {
	k, ok := event.KindOfAPIName(e.Kind)
	if ok && k == "" && e.Actor == "" && e.Organization == "" {
		return nil
	}
	var bad []string
	s, err := event.ReadSubject(b)
	switch {
	case !ok || k != b.Kind:
		bad = append(bad, "kind")
	case err != nil:
		// A body that does not say whom it concerns confirms nothing.
		if e.Actor != "" {
			bad = append(bad, "actor_rpps")
		}
		if e.Organization != "" {
			bad = append(bad, "organization")
		}
	default:
		if e.Actor != s.Actor {
			bad = append(bad, "actor_rpps")
		}
		if !s.OrganizationOpen && e.Organization != s.Organization {
			bad = append(bad, "organization")
		}
	}
	if len(bad) == 0 {
		return nil
	}
	c, _ := event.ParseHash(e.Commitment)
	return &Finding{Kind: KindFieldMismatch, Seq: e.Seq, Index: ptr(e.Index),
		Message:  fmt.Sprintf("the server's %s disagrees with the event's verified body, which is the record", strings.Join(bad, ", ")),
		Evidence: &Evidence{Commitment: &c, Body: e.Body, Salt: e.Salt}}
}
