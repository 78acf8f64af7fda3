package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/vigie-sante/vigie/ledger/verify"
	"golang.org/x/mod/sumdb/note"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/ledger/event"
)

// fakeSearch serves an auditor's searches over a fakeLog's events, pages
// of two, with a hook to tamper with each page.
type fakeSearch struct {
	*fakeLog
	queries []EventQuery
	hook    func(q EventQuery, p *EventPage)
	err     error
}

func (s *fakeSearch) SearchEvents(_ context.Context, q EventQuery, token string) (*EventPage, error) {
	if s.err != nil {
		return nil, s.err
	}
	if token == "" {
		s.queries = append(s.queries, q)
	}
	var match []Envelope
	for _, te := range s.events {
		e := te.env
		switch {
		case q.Erased != e.Erased:
		case e.Erased:
			match = append(match, Envelope{Index: e.Index, Commitment: e.Commitment, Erased: true})
		case te.body.Kind == q.Kind && (q.From.IsZero() || !te.body.Time.Before(q.From)) && (q.To.IsZero() || te.body.Time.Before(q.To)):
			match = append(match, e)
		}
	}
	from := 0
	fmt.Sscan(token, &from)
	to := min(from+2, len(match))
	p := &EventPage{Events: slices.Clone(match[from:to])}
	if to < len(match) {
		p.Next = fmt.Sprint(to)
	}
	if s.hook != nil {
		s.hook(q, p)
	}
	return p, nil
}

// wholeLog records a log whose every leaf is an event of one patient's
// chain: two accesses, an erasure of them, a break-glass review, a ledger
// read and two more accesses, the first two erased.
func wholeLog(t *testing.T) *fakeSearch {
	l := newFakeLog(t, "whole")
	l.record(testPatient, event.KindAccess, `{"n":0}`)
	l.record(testPatient, event.KindAccess, `{"n":1}`)
	l.record(testPatient, event.KindErasure, `{"format":"vigie.erasure.v1","state":"done","erased":2}`)
	l.record(testPatient, event.KindBreakGlassReview, `{"n":3}`)
	l.record(testPatient, event.KindLedgerRead, `{"n":4}`)
	l.record(testPatient, event.KindAccess, `{"n":5}`)
	l.record(testPatient, event.KindAccess, `{"n":6}`)
	l.erase(2)
	l.sign()
	return &fakeSearch{fakeLog: l}
}

func auditLog(t *testing.T, s *fakeSearch, opts LogAuditOptions) *LogAuditReport {
	t.Helper()
	opts.Follow.Keys = s.keys
	r, err := AuditLog(context.Background(), s, opts)
	if err != nil {
		t.Fatalf("AuditLog: %v", err)
	}
	return r
}

func indices(ls []event.Logged) []uint64 {
	var out []uint64
	for _, l := range ls {
		out = append(out, l.Index)
	}
	return out
}

// TestAuditLogAccountsForEveryLeaf: a regulator's audit of the whole log
// reads every event, compares each with its leaf and accounts for every
// leaf; a DPO's or a windowed audit reads less and claims nothing.
func TestAuditLogAccountsForEveryLeaf(t *testing.T) {
	s := wholeLog(t)
	r := auditLog(t, s, LogAuditOptions{Reader: Regulator})
	if len(r.Findings) != 0 || !r.Verified() {
		t.Fatalf("findings %v", r.Findings)
	}
	want := EventsRead{Read: 5, ByKind: map[event.Kind]int{event.KindAccess: 2, event.KindErasure: 1, event.KindBreakGlassReview: 1, event.KindLedgerRead: 1},
		Erased: 2, Compared: 7, Complete: true}
	if got := *r.Events; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events %+v, want %+v", got, want)
	}
	// The ledger read is compared, not replayed.
	if got := indices(r.Logged); !slices.Equal(got, []uint64{5, 6, 3, 2}) {
		t.Errorf("logged %v, want the accesses, the review and the erasure", got)
	}
	if r.Follow.State == nil || !r.Follow.Seen[0].RootChecked {
		t.Errorf("the log was not followed: %+v", r.Follow)
	}

	for name, opts := range map[string]LogAuditOptions{
		"a DPO":                 {Reader: DPO, Organization: "750712184"},
		"a regulator, a window": {Reader: Regulator, From: t0.Add(6 * time.Minute)},
	} {
		t.Run(name, func(t *testing.T) {
			s.queries = nil
			s.hook = func(q EventQuery, p *EventPage) { p.Events = nil; p.Next = "" } // nothing served: not claimed withheld
			defer func() { s.hook = nil }()
			r := auditLog(t, s, opts)
			if len(r.Findings) != 0 || r.Events.Complete {
				t.Errorf("findings %v, complete %t", r.Findings, r.Events.Complete)
			}
			for _, q := range s.queries {
				if q.Erased || q.Kind == event.KindLedgerRead || q.Organization != opts.Organization || (q.Kind != event.KindAccess && !q.From.IsZero()) {
					t.Errorf("query %+v", q)
				}
			}
		})
	}
	if _, err := AuditLog(context.Background(), s, LogAuditOptions{Reader: DPO, Follow: FollowOptions{Keys: s.keys}}); err == nil {
		t.Error("a DPO's audit without an organization: no error")
	}
	s.queries = nil
	r = auditLog(t, s, LogAuditOptions{})
	if r.Events != nil || len(r.Findings) != 0 || len(s.queries) != 0 || r.Follow.Fetched != 7 {
		t.Errorf("log only: events %+v, findings %v", r.Events, r.Findings)
	}
}

// TestAuditLogFindings: what a search served wrong is a finding at its
// leaf, and never counted as withheld; what it did not serve is withheld.
func TestAuditLogFindings(t *testing.T) {
	var current *fakeSearch // the fake of the running case
	tests := []struct {
		name string
		hook func(q EventQuery, p *EventPage)
		want []Kind
		at   uint64 // the first finding's leaf index
		// logged are the events left to replay: none found wrong.
		logged []uint64
	}{
		{"an access withheld", func(q EventQuery, p *EventPage) {
			p.Events = slices.DeleteFunc(p.Events, func(e Envelope) bool { return e.Index == 5 })
		}, []Kind{KindWithheld}, 5, []uint64{6, 3, 2}},
		{"an erased placeholder withheld", func(q EventQuery, p *EventPage) {
			p.Events = slices.DeleteFunc(p.Events, func(e Envelope) bool { return e.Index == 1 })
		}, []Kind{KindWithheld}, 1, []uint64{5, 6, 3, 2}},
		{"a body changed", func(q EventQuery, p *EventPage) {
			for i := range p.Events {
				if p.Events[i].Index == 6 {
					p.Events[i].Body = slices.Clone(p.Events[i].Body)
					p.Events[i].Body[len(p.Events[i].Body)-3] ^= 1
				}
			}
		}, []Kind{KindModifiedBody}, 6, []uint64{5, 3, 2}},
		// The CLI took an erased placeholder's commitment alone; CheckEvent
		// (the patient's verification) refuses one with a body: the
		// stricter rule holds for both.
		{"an erased placeholder with a body", func(q EventQuery, p *EventPage) {
			if q.Erased {
				p.Events[0].Body, p.Events[0].Salt = []byte(`{}`), make([]byte, 32)
			}
		}, []Kind{KindMalformed}, 0, []uint64{5, 6, 3, 2}},
		// The CLI kept the last event served for a leaf: the first, a
		// valid body under another commitment, went to the replay unchecked.
		{"two events for one leaf", func(q EventQuery, p *EventPage) {
			if q.Kind == event.KindBreakGlassReview {
				e := p.Events[0]
				e.Index = 5
				p.Events = append(p.Events, e)
			}
		}, []Kind{KindDuplicate}, 5, []uint64{5, 6, 3, 2}},
		{"an event of another kind", func(q EventQuery, p *EventPage) {
			if q.Kind == event.KindLedgerRead {
				p.Events = nil
			}
			if q.Kind == event.KindBreakGlassReview {
				for _, te := range current.events {
					if te.body.Kind == event.KindLedgerRead {
						p.Events = append(p.Events, te.env)
					}
				}
			}
		}, []Kind{KindMalformed}, 4, []uint64{5, 6, 3, 2}},
		{"a placeholder among the events", func(q EventQuery, p *EventPage) {
			if q.Kind == event.KindAccess && len(p.Events) > 0 && p.Events[0].Index == 5 {
				p.Events[0].Erased, p.Events[0].Body, p.Events[0].Salt = true, nil, nil
			}
		}, []Kind{KindMalformed}, 5, []uint64{6, 3, 2}},
		{"pages out of log order", func(q EventQuery, p *EventPage) {
			if q.Kind == event.KindAccess {
				slices.Reverse(p.Events)
			}
		}, []Kind{KindMalformed}, 5, []uint64{6, 3, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := wholeLog(t)
			current = s
			s.hook = tt.hook
			r := auditLog(t, s, LogAuditOptions{Reader: Regulator})
			if got := kinds(r.Findings); !slices.Equal(got, tt.want) || r.Verified() {
				t.Fatalf("findings %v, want %v", r.Findings, tt.want)
			}
			if f := r.Findings[0]; f.Index == nil || *f.Index != tt.at {
				t.Errorf("finding %+v, want it at leaf %d", f, tt.at)
			}
			if got := indices(r.Logged); !slices.Equal(got, tt.logged) {
				t.Errorf("events to replay %v, want %v", got, tt.logged)
			}
		})
	}
}

// TestAuditLogBound: the search reads below the checkpoint served first,
// however many events the log serves past it.
func TestAuditLogBound(t *testing.T) {
	s := wholeLog(t)
	s.hook = func(q EventQuery, p *EventPage) {
		if q.Kind == event.KindAccess && p.Next == "" {
			p.Events = append(p.Events, Envelope{Index: 7, Commitment: "not even a commitment"})
		}
	}
	r := auditLog(t, s, LogAuditOptions{Reader: Regulator})
	if len(r.Findings) != 0 || !r.Events.Complete || r.Events.Read != 5 {
		t.Errorf("findings %v, events %+v", r.Findings, r.Events)
	}
}

// TestAuditLogUnreadable: a server that cannot read one of its events is a
// finding; nothing is compared, replayed or counted, the log is followed.
func TestAuditLogUnreadable(t *testing.T) {
	s := wholeLog(t)
	s.err = fmt.Errorf("search: %w", &UnreadableError{Seq: 4, Index: ptr(uint64(3)), Detail: "DataLoss: event unreadable"})
	r := auditLog(t, s, LogAuditOptions{Reader: Regulator})
	if got := kinds(r.Findings); !slices.Equal(got, []Kind{KindUnreadable}) || r.Findings[0].Seq != 4 || *r.Findings[0].Index != 3 {
		t.Fatalf("findings %+v", r.Findings)
	}
	if r.Events.Complete || r.Events.Read != 0 || len(r.Logged) != 0 || r.Follow.Fetched != 7 {
		t.Errorf("events %+v, logged %d, fetched %d", r.Events, len(r.Logged), r.Follow.Fetched)
	}
	s.err = errors.New("connection refused")
	if _, err := AuditLog(context.Background(), s, LogAuditOptions{Reader: Regulator, Follow: FollowOptions{Keys: s.keys}}); err == nil {
		t.Error("a search that fails: no error")
	}
	if _, ok := Unreadable(errors.New("connection refused")); ok {
		t.Error("Unreadable: a network error is a finding")
	}
}

func TestReadReceipt(t *testing.T) {
	n := "vigie receipt v1\naudit.example/vigie/1\n\n— key sig\n"
	tests := []struct {
		name, in, want string
	}{
		{"as is", n, n},
		{"white space around", "\n  " + n[:len(n)-1], n},
		{"blank lines after", n + "\n \r\n", n},
		{"base64", " dmlnaWUgcmVjZWlwdCB2MQphdWRpdC5leGFtcGxlL3ZpZ2llLzEKCuKAlCBrZXkgc2lnCg==\n", n},
		{"a checkpoint", "audit.example/vigie/1\n1\nAAAA\n\n— key sig\n", ""},
		{"base64 of something else", "aGVsbG8=", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadReceipt([]byte(tt.in))
			if tt.want == "" {
				if err == nil {
					t.Errorf("ReadReceipt = %q, want an error", got)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Errorf("ReadReceipt = %q, %v, want %q", got, err, tt.want)
			}
		})
	}
}

// TestAuditLogReadsEnrolments: a regulator's audit of a log holding
// enrolment events reads them, so that every leaf is accounted for (none
// is claimed withheld).
func TestAuditLogReadsEnrolments(t *testing.T) {
	l := newFakeLog(t, "enrolments")
	l.record(testPatient, event.KindEnrolment, `{"format":"vigie.enrolment.v1","action":"link","issuer":"https://fc.example","subject":"`+testPatient.String()+`"}`)
	l.record(testPatient, event.KindAccess, `{"n":1}`)
	l.record(testPatient, event.KindEnrolment, `{"format":"vigie.enrolment.v1","action":"unlink","issuer":"https://fc.example","subject":"`+testPatient.String()+`"}`)
	l.sign()
	r := auditLog(t, &fakeSearch{fakeLog: l}, LogAuditOptions{Reader: Regulator})
	if len(r.Findings) != 0 || !r.Events.Complete || r.Events.ByKind[event.KindEnrolment] != 2 {
		t.Errorf("findings %v, events %+v; want the two enrolments read, every leaf accounted for", r.Findings, r.Events)
	}
}

// TestAuditLogScope: a DPO's audit reads the events the server selects
// by its index; an event whose verified body names another establishment
// is a finding, whether the server's fields say so (CheckFields) or
// repeat the DPO's (the index and the fields tampered together).
func TestAuditLogScope(t *testing.T) {
	const ours, theirs = "750712184", "130000001"
	access := func(org string) string {
		return `{"format":"vigie.access.v1","request":{"actor":{"rpps":"10000000003","organization":"` + org + `"}}}`
	}
	for _, tt := range []struct {
		name      string
		org       string // the served field
		bodyOrg   string
		wantFound bool
	}{
		{"ours", ours, ours, false},
		{"no fields, ours", "", ours, false},
		{"fields say ours, body theirs", ours, theirs, true},
		{"fields and body theirs", theirs, theirs, true},
		{"no fields, body theirs", "", theirs, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newFakeLog(t, "scope")
			l.record(testPatient, event.KindAccess, access(ours))
			e := l.record(testPatient, event.KindAccess, access(tt.bodyOrg))
			if tt.org != "" {
				e.env.Kind, e.env.Actor, e.env.Organization = "EVENT_KIND_ACCESS", "10000000003", tt.org
			}
			l.sign()
			r := auditLog(t, &fakeSearch{fakeLog: l}, LogAuditOptions{Reader: DPO, Organization: ours})
			got := kinds(r.Findings)
			if want := []Kind{KindFieldMismatch}; tt.wantFound != slices.Equal(got, want) || !tt.wantFound && len(got) != 0 {
				t.Fatalf("findings %v, want field-mismatch: %v", r.Findings, tt.wantFound)
			}
			if tt.wantFound && (r.Findings[0].Index == nil || *r.Findings[0].Index != e.env.Index) {
				t.Errorf("finding %+v, want it at leaf %d", r.Findings[0], e.env.Index)
			}
		})
	}
}

// TestCheckFields: the server's fields against the verified body; the
// message names the field, never a value.
func TestCheckFields(t *testing.T) {
	l := newFakeLog(t, "fields")
	acc := l.record(testPatient, event.KindAccess, `{"format":"vigie.access.v1","request":{"actor":{"rpps":"10000000003","organization":"750712184"}}}`)
	rv := l.record(testPatient, event.KindBreakGlassReview, `{"format":"vigie.break-glass-review.v2","verdict":"justified","reviewer":"regulator:cnil"}`)
	rd := l.record(testPatient, event.KindLedgerRead, `{"format":"vigie.ledger-read.v2","reader":"dpo:a","organizations":["750712184"]}`)
	odd := l.record(testPatient, event.KindAccess, `{"n":1}`)
	for _, tt := range []struct {
		name             string
		e                *testEvent
		kind, actor, org string
		wantFields       string // "" for no finding
	}{
		{"no fields", acc, "", "", "", ""},
		{"unspecified", acc, "EVENT_KIND_UNSPECIFIED", "", "", ""},
		{"access agrees", acc, "EVENT_KIND_ACCESS", "10000000003", "750712184", ""},
		{"access, other professional", acc, "EVENT_KIND_ACCESS", "10000000004", "750712184", "actor_rpps"},
		{"access, other establishment", acc, "EVENT_KIND_ACCESS", "10000000003", "130000001", "organization"},
		{"access, nothing said", acc, "EVENT_KIND_ACCESS", "", "", "actor_rpps, organization"},
		{"access, fields without a kind", acc, "", "10000000003", "750712184", "kind"},
		{"access as a read", acc, "EVENT_KIND_LEDGER_READ", "", "", "kind"},
		{"unknown kind name", acc, "ACCESS", "10000000003", "750712184", "kind"},
		{"regulator's review, any establishment", rv, "EVENT_KIND_BREAK_GLASS_REVIEW", "", "750712184", ""},
		{"review with a professional", rv, "EVENT_KIND_BREAK_GLASS_REVIEW", "10000000003", "750712184", "actor_rpps"},
		{"read", rd, "EVENT_KIND_LEDGER_READ", "", "", ""},
		{"read with an establishment", rd, "EVENT_KIND_LEDGER_READ", "", "750712184", "organization"},
		{"unreadable access, no subject", odd, "EVENT_KIND_ACCESS", "", "", ""},
		{"unreadable access, a subject", odd, "EVENT_KIND_ACCESS", "10000000003", "", "actor_rpps"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.e.env
			e.Kind, e.Actor, e.Organization = tt.kind, tt.actor, tt.org
			f := CheckFields(&e, tt.e.body)
			switch {
			case tt.wantFields == "" && f != nil:
				t.Fatalf("CheckFields = %v, want none", f)
			case tt.wantFields == "":
			case f == nil || f.Kind != KindFieldMismatch || !strings.Contains(f.Message, "server's "+tt.wantFields+" disagrees"):
				t.Fatalf("CheckFields = %v, want field-mismatch naming %s", f, tt.wantFields)
			case strings.Contains(f.Message, "1000000000") || strings.Contains(f.Message, "0000001"):
				t.Errorf("message %q quotes a value", f.Message)
			}
		})
	}
}

// successionPayload returns the payload of a succession of the closed log
// old.example/vigie/1 at size 9, its checkpoint signed by signer, and that
// log's verifier.
func successionPayload(t *testing.T, signer note.Signer, v note.Verifier, vkey string) string {
	t.Helper()
	cp, err := verify.SignCheckpoint(verify.Checkpoint{Origin: "old.example/vigie/1", Size: 9, Hash: event.Hash{9}}, signer)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(verify.Succession{Format: verify.SuccessionFormat, Origin: v.Name(), Checkpoint: string(cp), Key: vkey})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAuditLogSuccession(t *testing.T) {
	// Another log's key, pinned by mistake as the old log's.
	_, _, otherKeys := testKeys(t, "old")
	oldVerifier := otherKeys.Checkpoint
	sk, vk, err := note.GenerateKey(seeded("old log key"), "old.example/vigie/1")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(sk)
	verifier, _ := note.NewVerifier(vk)
	otherSK, _, _ := note.GenerateKey(seeded("another key"), "old.example/vigie/1")
	forger, _ := note.NewSigner(otherSK)
	valid := successionPayload(t, signer, verifier, vk)
	forged := successionPayload(t, forger, verifier, vk)

	for _, tc := range []struct {
		name    string
		build   func(l *fakeLog)
		pinned  note.Verifier
		want    []Kind
		succeed bool
	}{
		{"first event", func(l *fakeLog) {
			l.record(event.SystemChain, event.KindLogSuccession, valid)
			l.record(testPatient, event.KindAccess, `{"n":1}`)
		}, nil, nil, true},
		{"first event, the old key pinned", func(l *fakeLog) {
			l.record(event.SystemChain, event.KindLogSuccession, valid)
		}, verifier, nil, true},
		{"another old key pinned", func(l *fakeLog) {
			l.record(event.SystemChain, event.KindLogSuccession, valid)
		}, oldVerifier, []Kind{KindSuccession}, false},
		{"bad signature", func(l *fakeLog) {
			l.record(event.SystemChain, event.KindLogSuccession, forged)
		}, nil, []Kind{KindSuccession}, false},
		{"not first", func(l *fakeLog) {
			l.record(testPatient, event.KindAccess, `{"n":1}`)
			l.record(event.SystemChain, event.KindLogSuccession, valid)
		}, nil, []Kind{KindSuccession}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newFakeLog(t, "succession")
			tc.build(l)
			l.sign()
			r := auditLog(t, &fakeSearch{fakeLog: l}, LogAuditOptions{Reader: Regulator, PreviousKey: tc.pinned})
			if got := kinds(r.Findings); !slices.Equal(got, tc.want) {
				t.Errorf("findings %v, want kinds %v", r.Findings, tc.want)
			}
			if (r.Succession != nil) != tc.succeed {
				t.Fatalf("succession %+v, want one: %t", r.Succession, tc.succeed)
			}
			if tc.succeed && (r.Succession.Origin != "old.example/vigie/1" || r.Succession.Previous.Size != 9) {
				t.Errorf("succession %+v", r.Succession)
			}
			if !r.Events.Complete {
				t.Errorf("not every leaf accounted for: %+v", r.Events)
			}
		})
	}
}
