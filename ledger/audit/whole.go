package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// A Reader is whose audit of the whole log [AuditLog] runs: it decides
// which events are read, and what the audit can account for.
type Reader int

const (
	// LogOnly reads no event: the log alone is checked ([Follow]).
	LogOnly Reader = iota
	// DPO reads the accesses and break-glass reviews of one organization.
	DPO
	// Regulator reads the accesses and break-glass reviews, and every
	// consent change, rules change and erasure; over the whole log (no
	// organization, no time window), the ledger reads and the erased
	// placeholders too: every leaf.
	Regulator
)

// An EventQuery is one search of an auditor (the API's
// AuditService.SearchEvents): the events of one kind, or the erased
// placeholders.
type EventQuery struct {
	// Kind is the kind of the events; empty with Erased.
	Kind event.Kind
	// Organization restricts the search to one organization's events
	// (a DPO's); empty for all.
	Organization string
	// From and To restrict the search to the events of [From, To); zero
	// for no bound.
	From, To time.Time
	// Erased asks for the erased placeholders (no other field is set).
	Erased bool
}

// An EventPage is a page of a search, as served.
type EventPage struct {
	// Events are in log order; an erased placeholder has Erased set, its
	// index and its commitment, nothing else.
	Events []Envelope
	// Next is the token of the next page; empty on the last.
	Next string
}

// An EventSource serves an auditor's searches and the public log.
type EventSource interface {
	LogSource
	// SearchEvents returns a page of the events q matches: the first for
	// an empty token, then the page of each Next. When the server answers
	// that it cannot read one of its own events, the error wraps an
	// [*UnreadableError].
	SearchEvents(ctx context.Context, q EventQuery, token string) (*EventPage, error)
}

// Unreadable returns the finding of err if it wraps an [*UnreadableError]:
// a server that cannot read its own events is what a verification is for,
// not a failure to verify.
func Unreadable(err error) (Finding, bool) {
	var u *UnreadableError
	if !errors.As(err, &u) {
		return Finding{}, false
	}
	return u.Finding(), true
}

// LogAuditOptions configure [AuditLog].
type LogAuditOptions struct {
	// Reader is whose audit it is. Default LogOnly.
	Reader Reader
	// Organization is the organization whose events a DPO reads (required
	// for a DPO); for a regulator, it narrows the search.
	Organization string
	// From and To bound the accesses read (zero: no bound).
	From, To time.Time
	// PreviousKey, if set, is the key of the closed log this log
	// succeeds, as the auditor pinned it: a succession event naming
	// another key is a finding.
	PreviousKey note.Verifier
	// Follow are the options of the log's check. Keys are required;
	// Before, Expect and MinSize are set from the events read, and
	// FromZero when there are any.
	Follow FollowOptions
}

// EventsRead accounts for the events an audit read.
type EventsRead struct {
	// Read counts the events read whose body verifies, ByKind by kind.
	Read   int
	ByKind map[event.Kind]int
	// Erased counts the erased placeholders served.
	Erased int
	// Compared counts the events (and placeholders) compared with the
	// leaf at their index; NotYetInLog those no checkpoint covered yet
	// (left to the next audit).
	Compared    int
	NotYetInLog int
	// Complete: every leaf of the checkpoint served before the search was
	// accounted for (a regulator's audit of the whole log, on a log that
	// holds together); the leaves that were not are a finding.
	Complete bool
}

// A LogAuditReport is what [AuditLog] found.
type LogAuditReport struct {
	Reader Reader
	// Follow is the check of the log.
	Follow *FollowReport
	// Events accounts for the events read; nil for LogOnly.
	Events *EventsRead
	// Findings are those of the events, then the log's, then the leaves
	// withheld.
	Findings []Finding
	// Logged are the events read whose bodies verify and that a
	// checkpoint covers, ledger reads aside: those to replay and to look
	// for misuse in (package consent/scrutiny).
	Logged []event.Logged
	// From and To are the window of the accesses read.
	From, To time.Time
	// Succession is what the log's first event says when it succeeds a
	// closed log (a regulator's audit), checked: nil otherwise.
	Succession *verify.VerifiedSuccession
}

// Verified reports whether the audit found nothing wrong: the log holds
// together and every event read is the one it logged. (Alerts and replay
// findings are package consent/scrutiny's.)
func (r *LogAuditReport) Verified() bool { return len(r.Findings) == 0 }

// AuditLog audits the whole log as reader: it reads the events the reader
// may (below the checkpoint served first, which a log growing faster than
// the audit reads cannot push out of reach), checks each against its
// commitment, then follows the log ([Follow]) from that checkpoint on,
// comparing every event read with the leaf at its index. A regulator's
// audit of the whole log also accounts for every leaf of that checkpoint:
// each is an event served or an erased placeholder, or the audit reports
// it withheld. An error means the audit could not be done.
func AuditLog(ctx context.Context, src EventSource, opts LogAuditOptions) (*LogAuditReport, error) {
	fo := opts.Follow
	if fo.Keys.Checkpoint == nil {
		return nil, errors.New("audit log: no checkpoint key")
	}
	if opts.Reader == DPO && opts.Organization == "" {
		return nil, errors.New("audit log: a DPO's audit needs its organization")
	}
	r := &LogAuditReport{Reader: opts.Reader, From: opts.From, To: opts.To}
	var a *accounting
	if opts.Reader != LogOnly {
		before, err := src.Checkpoint(ctx)
		if err != nil {
			return nil, fmt.Errorf("checkpoint before the search: %w", err)
		}
		fo.Before = before
		// A checkpoint that does not open is Follow's finding; nothing is
		// read below it.
		var bound uint64
		if cp, err := fo.Keys.openSigned(before); err == nil {
			bound = cp.Size
		}
		complete := opts.Reader == Regulator && opts.From.IsZero() && opts.To.IsZero() && opts.Organization == ""
		a = newAccounting(complete)
		a.origin, a.previousKey = fo.Keys.Checkpoint.Name(), opts.PreviousKey
		err = a.search(ctx, src, queries(opts, complete), bound)
		if f, ok := Unreadable(err); ok {
			// Nothing to compare, replay or count: the finding says it.
			a = newAccounting(false)
			a.findings, err = []Finding{f}, nil
		}
		if err != nil {
			return nil, err
		}
		fo.Expect = a.expect
		fo.FromZero = fo.FromZero || len(a.expect) > 0
		for i := range a.expect {
			fo.MinSize = max(fo.MinSize, i+1)
		}
		r.Events = &a.read
		r.Succession = a.succession
		r.Findings = append(r.Findings, a.findings...)
	}
	fr, err := Follow(ctx, src, fo)
	if err != nil {
		return nil, err
	}
	r.Follow = fr
	r.Findings = append(r.Findings, fr.Findings...)
	if a == nil {
		return r, nil
	}
	if a.complete && len(fr.Findings) == 0 {
		// Only if the checkpoint the search was bounded by is one Follow
		// checked (signed, consistent, its root rebuilt).
		for _, s := range fr.Seen {
			if bytes.Equal(s.Note, fo.Before) {
				if f := a.withheld(s.Size); f != nil {
					r.Findings = append(r.Findings, *f)
				}
				a.read.Complete = true
				break
			}
		}
	}
	a.read.Compared = fr.Expected
	a.read.NotYetInLog = len(fr.Beyond)
	// The events no checkpoint covers yet (the reads this audit caused,
	// mostly) are left to the next audit.
	beyond := make(map[uint64]bool, len(fr.Beyond))
	for _, i := range fr.Beyond {
		beyond[i] = true
	}
	r.Logged = slices.DeleteFunc(a.logged, func(e event.Logged) bool { return beyond[e.Index] })
	return r, nil
}

// queries are the searches of an audit: the accesses (in the window) and
// the break-glass reviews; for a regulator, the consent changes, rules
// changes and erasures (to fold consents), the enrolments (links of
// patients to their sign-ins, each accounted for) and the log succession
// (of the whole log, whatever the organization); with complete, the ledger
// reads and the erased placeholders too: every leaf.
func queries(opts LogAuditOptions, complete bool) []EventQuery {
	org := opts.Organization
	qs := []EventQuery{{Kind: event.KindAccess, Organization: org, From: opts.From, To: opts.To},
		{Kind: event.KindBreakGlassReview, Organization: org}}
	if opts.Reader == Regulator {
		qs = append(qs, EventQuery{Kind: event.KindConsentChange, Organization: org}, EventQuery{Kind: event.KindRulesChange, Organization: org},
			EventQuery{Kind: event.KindErasure, Organization: org}, EventQuery{Kind: event.KindEnrolment, Organization: org},
			EventQuery{Kind: event.KindLogSuccession})
	}
	if complete {
		qs = append(qs, EventQuery{Kind: event.KindLedgerRead}, EventQuery{Erased: true})
	}
	return qs
}

// accounting is what the searches of one audit served.
type accounting struct {
	complete bool
	read     EventsRead
	// expect are the commitments served by leaf index, to compare with
	// the leaves; accounted the leaves whose event served is a finding
	// already.
	expect    map[uint64]event.Hash
	accounted map[uint64]bool
	findings  []Finding
	logged    []event.Logged
	// origin is the log's; previousKey the old log's key the auditor
	// pinned, if any; succession what the log's first event says.
	origin      string
	previousKey note.Verifier
	succession  *verify.VerifiedSuccession
}

func newAccounting(complete bool) *accounting {
	return &accounting{complete: complete, read: EventsRead{ByKind: map[event.Kind]int{}},
		expect: map[uint64]event.Hash{}, accounted: map[uint64]bool{}}
}

// search runs the queries below leaf index bound, a page at a time, each
// page folded in as it arrives and dropped. The search of a query stops at
// the first event at or past bound (events come in log order), however
// fast the log grows. A query whose events do not come in log order stops
// with a finding: the pages of a server that repeats them end.
func (a *accounting) search(ctx context.Context, src EventSource, qs []EventQuery, bound uint64) error {
	if bound == 0 {
		return nil
	}
	for _, q := range qs {
		token := ""
		next := uint64(0) // the least index the query may serve next
	pages:
		for page := 1; ; page++ {
			p, err := src.SearchEvents(ctx, q, token)
			if err != nil {
				return fmt.Errorf("search %s page %d: %w", q.name(), page, err)
			}
			for i := range p.Events {
				e := &p.Events[i]
				if e.Index >= bound {
					break pages
				}
				if e.Index < next {
					a.finding(Finding{Kind: KindMalformed, Index: ptr(e.Index),
						Message: fmt.Sprintf("the search of %s served leaf %d after leaf %d: not in log order", q.name(), e.Index, next-1)})
					break pages
				}
				next = e.Index + 1
				a.take(q, e)
			}
			if p.Next == "" {
				break
			}
			if len(p.Events) == 0 {
				return fmt.Errorf("search %s page %d: no events, but a next page", q.name(), page)
			}
			token = p.Next
		}
	}
	return nil
}

func (q EventQuery) name() string {
	if q.Erased {
		return "the erased placeholders"
	}
	return string(q.Kind)
}

// take accounts for one event served by the search of q.
func (a *accounting) take(q EventQuery, e *Envelope) {
	at := func(k Kind, format string, args ...any) {
		a.finding(Finding{Kind: k, Seq: e.Seq, Index: ptr(e.Index), Message: fmt.Sprintf(format, args...)})
	}
	if _, ok := a.expect[e.Index]; ok || a.accounted[e.Index] {
		// Kept out of the rest: the first one served is compared with the
		// leaf, the second would be replayed unchecked.
		a.findings = append(a.findings, Finding{Kind: KindDuplicate, Index: ptr(e.Index),
			Message: fmt.Sprintf("the search served two events for leaf %d (the second under %s)", e.Index, q.name())})
		return
	}
	if e.Erased != q.Erased {
		at(KindMalformed, "the search of %s served an event whose erased flag is %t", q.name(), e.Erased)
		return
	}
	// An erased placeholder too: its commitment is compared with the leaf
	// at its index, and it holds no body nor salt.
	l, f := CheckEvent(e)
	switch {
	case f != nil:
		a.finding(*f)
		return
	case e.Erased:
		a.read.Erased++
		a.expect[e.Index] = l.Commitment
		return
	case l.Body.Kind != q.Kind:
		at(KindMalformed, "the search of %s served an event of kind %s", q.name(), l.Body.Kind)
		return
	}
	if f := CheckFields(e, l.Body); f != nil {
		a.finding(*f)
	} else if s, err := event.ReadSubject(l.Body); q.Organization != "" && err == nil && !s.OrganizationOpen && s.Organization != q.Organization {
		// The server selects a DPO's events by its index: one that names
		// another establishment in its body is outside the DPO's scope.
		at(KindFieldMismatch, "the search of %s for one establishment served an event whose verified body names another", q.name())
	}
	a.read.Read++
	a.read.ByKind[l.Body.Kind]++
	a.expect[l.Index] = l.Commitment
	if l.Body.Kind == event.KindLogSuccession {
		a.checkSuccession(l)
		return
	}
	if l.Body.Kind != event.KindLedgerRead {
		// Neither the replay nor the misuse rules read the reads, the
		// bulk of a busy log: their commitments are enough.
		a.logged = append(a.logged, l)
	}
}

// checkSuccession checks a log succession event (its body verified): the
// log's first event, its checkpoint verifies under its key, and that key
// is the one the auditor pinned for the old log, if any.
func (a *accounting) checkSuccession(l event.Logged) {
	at := func(format string, args ...any) {
		// Compared with its leaf all the same: the finding is about what
		// the log holds, not about what the search served.
		a.findings = append(a.findings, Finding{Kind: KindSuccession, Seq: l.Body.Seq, Index: ptr(l.Index), Message: fmt.Sprintf(format, args...)})
	}
	if l.Index != 0 {
		at("a log succession event at leaf %d: a log names the log it succeeds in its first event only", l.Index)
		return
	}
	vs, err := verify.CheckSuccession(l.Body.Payload, a.origin)
	if err != nil {
		at("the log's first event, a log succession, does not hold: %v", err)
		return
	}
	if k := a.previousKey; k != nil && (k.Name() != vs.Verifier.Name() || k.KeyHash() != vs.Verifier.KeyHash()) {
		at("the log succeeds %s under key %s, not the key %s+%08x pinned for the old log", vs.Origin, vs.KeyID, k.Name(), k.KeyHash())
		return
	}
	a.succession = vs
}

// finding records a finding about the leaf it names, which the audit then
// counts as accounted for (reported, not withheld).
func (a *accounting) finding(f Finding) {
	a.findings = append(a.findings, f)
	if f.Index != nil {
		a.accounted[*f.Index] = true
	}
}

// withheld returns the finding of the leaves below size that the searches
// accounted for neither as an event or placeholder compared with its leaf,
// nor as a finding (nil if none): events withheld from the audit.
func (a *accounting) withheld(size uint64) *Finding {
	var missing []uint64
	n := 0
	for i := range size {
		if _, ok := a.expect[i]; !ok && !a.accounted[i] {
			n++
			if len(missing) < 10 {
				missing = append(missing, i)
			}
		}
	}
	if n == 0 {
		return nil
	}
	more := ""
	if n > len(missing) {
		more = ", …"
	}
	return &Finding{Kind: KindWithheld, Index: ptr(missing[0]),
		Message: fmt.Sprintf("%d of the %d leaves of the log were served by the search neither as events nor as erased placeholders (leaves %v%s): events withheld from the audit", n, size, missing, more)}
}
