package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/vigie-sante/vigie/api/client"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/enrolment"
	"github.com/vigie-sante/vigie/consent/replay"
	"github.com/vigie-sante/vigie/consent/scrutiny"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/event"
)

// envelope converts an event as the API serves it.
func envelope(e *vigiev1.LedgerEvent) audit.Envelope {
	return audit.Envelope{Seq: e.Sequence, Index: e.LeafIndex, Commitment: e.Commitment, Erased: e.Erased,
		Body: e.Body, Salt: e.Salt, Proof: e.InclusionProof, Receipt: e.Receipt,
		Kind: e.Kind.String(), Actor: e.ActorRpps, Organization: e.Organization}
}

// historySource is the patient's history over the API.
type historySource struct{ *client.Client }

func (h historySource) HistoryPage(ctx context.Context, token string) (*audit.HistoryPage, error) {
	resp, err := h.ListAccesses(ctx, 500, token)
	if err != nil {
		return nil, historyError(err)
	}
	p := &audit.HistoryPage{Checkpoint: resp.Checkpoint, Next: resp.NextPageToken}
	for _, e := range resp.Events {
		p.Events = append(p.Events, envelope(e))
	}
	return p, nil
}

// rulesSource fetches national rules versions for the replay.
func rulesSource(cl *client.Client) replay.RulesSource {
	return func(ctx context.Context, v int64) ([]byte, error) {
		b, err := cl.NationalRules(ctx, v)
		if client.IsCode(err, codes.NotFound) {
			return nil, fmt.Errorf("%w: %v", replay.ErrNoRules, err)
		}
		return b, err
	}
}

func profession(l lang, r *consent.Rules, code string) string {
	if r != nil {
		for _, p := range r.Data().Professions {
			if p.Code == code {
				return [2]string{p.FR, p.EN}[l]
			}
		}
	}
	return l.t("cli.profession", "code", code)
}

func documentType(l lang, r *consent.Rules, code string) string {
	if r != nil {
		for _, d := range r.Data().DocumentTypes {
			if d.Code == code {
				return [2]string{d.FR, d.EN}[l]
			}
		}
	}
	return code
}

// eventRow is an event of a report, described for its reader.
type eventRow struct {
	Seq        uint64     `json:"seq"`
	Index      uint64     `json:"leaf_index"`
	Commitment event.Hash `json:"commitment"`
	Kind       string     `json:"kind"`
	Time       *time.Time `json:"time,omitempty"`
	Erased     bool       `json:"erased,omitempty"`
	Proof      string     `json:"proof"`
	Who        string     `json:"who,omitempty"`
	What       string     `json:"what,omitempty"`
	Why        string     `json:"why,omitempty"`
	Outcome    string     `json:"outcome,omitempty"`
	// Flags: "emergency", "denied"; for a review, "not-final" when
	// another review of the access decides (consent.FinalReview).
	Flags  []string      `json:"flags,omitempty"`
	Access *accessDetail `json:"access,omitempty"`
	// ReaderOrganizations are the FINESS numbers of the organisations the
	// reader of a ledger read, or the reviewer of a review, acted for.
	ReaderOrganizations []string `json:"reader_organizations,omitempty"`
	// professionLabel and careTeam (for an access), reader (for a read or
	// a review) make Who again once the names are known (nameRows).
	professionLabel string
	careTeam        bool
	reader          string
}

// accessDetail is an access decision, for machines.
type accessDetail struct {
	ActorRPPS  string `json:"actor_rpps"`
	Profession string `json:"profession"`
	// Actor and OrganizationEntry are the public directories' entries of
	// the numbers, when they hold them (looked up, not part of the
	// verified event).
	Actor             *professionalEntry  `json:"actor,omitempty"`
	Organization      string              `json:"organization"`
	OrganizationEntry *establishmentEntry `json:"organization_entry,omitempty"`
	Sector            string              `json:"sector"`
	CareTeam          bool                `json:"care_team"`
	Action            consent.Action      `json:"action"`
	Resource          string              `json:"resource"`
	DocumentID        string              `json:"document_id,omitempty"`
	DocumentType      string              `json:"document_type,omitempty"`
	Purpose           consent.Purpose     `json:"purpose"`
	Decision          string              `json:"decision"`
	Reason            consent.Reason      `json:"reason"`
	Grounds           []groundDetail      `json:"grounds"`
	ConsentVersion    int64               `json:"consent_version"`
	RulesVersion      int64               `json:"rules_version"`
}

// professionalEntry is the professionals' directory's entry of a number.
type professionalEntry struct {
	Title      string `json:"title,omitempty"`
	Name       string `json:"name"`
	Profession string `json:"profession"`
	Specialty  string `json:"specialty,omitempty"`
}

// establishmentEntry is the establishments' directory's entry of a
// number.
type establishmentEntry struct {
	Name string `json:"name"`
	Town string `json:"town"`
}

// directoryNames is what the public directories hold for numbers, by
// number: a number they lack is absent.
type directoryNames struct {
	Professionals  map[string]*professionalEntry  `json:"professionals"`
	Establishments map[string]*establishmentEntry `json:"establishments"`
}

// lookupNames looks up, in the public directories, the RPPS and FINESS
// numbers given (empty ones and repeats skipped; one call per 500 of
// each). A number the directories lack, or a failed lookup, leaves the
// number alone: names are a comfort, never part of what is verified. The
// one path by which vigie verify and vigie audit name people.
func lookupNames(ctx context.Context, cl *client.Client, rpps, finess []string) directoryNames {
	uniq := func(in []string) []string {
		var out []string
		seen := map[string]bool{"": true}
		for _, v := range in {
			if !seen[v] {
				seen[v] = true
				out = append(out, v)
			}
		}
		return out
	}
	rpps, finess = uniq(rpps), uniq(finess)
	names := directoryNames{Professionals: map[string]*professionalEntry{}, Establishments: map[string]*establishmentEntry{}}
	for i := 0; i < max(len(rpps), len(finess)); i += 500 {
		resp, err := cl.LookupNames(ctx, rpps[min(i, len(rpps)):min(i+500, len(rpps))], finess[min(i, len(finess)):min(i+500, len(finess))])
		if err != nil {
			return names
		}
		for _, p := range resp.Professionals {
			names.Professionals[p.Rpps] = &professionalEntry{Title: p.Title, Name: p.Name, Profession: p.Profession, Specialty: p.Specialty}
		}
		for _, e := range resp.Establishments {
			names.Establishments[e.Finess] = &establishmentEntry{Name: e.Name, Town: e.Town}
		}
	}
	return names
}

// professionalName says who a professional is: the name, profession and
// specialty the directory gives beside the number, or else the number
// with profession (the number alone when profession is "").
func (n directoryNames) professionalName(l lang, rpps, profession string) string {
	p := n.Professionals[rpps]
	if p == nil {
		if profession == "" {
			return rpps
		}
		return l.t("cli.professional", "rpps", rpps, "profession", profession)
	}
	if p.Profession != "" {
		profession = consent.EscapeText(p.Profession)
	}
	if p.Specialty != "" {
		profession += ", " + consent.EscapeText(p.Specialty)
	}
	return l.t("cli.professionalNamed", "name", consent.EscapeText(p.Name), "rpps", rpps, "profession", profession)
}

// establishmentName says which establishment a FINESS number is: its name
// and town beside the number, or the number alone.
func (n directoryNames) establishmentName(l lang, finess string) string {
	if o := n.Establishments[finess]; o != nil {
		return l.t("cli.organisationNamed", "name", consent.EscapeText(o.Name), "town", consent.EscapeText(o.Town), "org", finess)
	}
	return l.t("cli.organisation", "org", finess)
}

type groundDetail struct {
	Source consent.GroundSource `json:"source"`
	Kind   string               `json:"kind"`
	ID     string               `json:"id"`
	Effect string               `json:"effect"`
	Text   string               `json:"text"`
}

// finalReviews returns, by reviewed access, the commitment of the review
// that decides it among the review events of a history
// (consent.JudgeAccesses, as the portal's verifier does).
func finalReviews(events []audit.HistoryEvent) map[string]string {
	var reviews []consent.LoggedRecord
	for _, e := range events {
		if e.Body != nil && e.Body.Kind == event.KindBreakGlassReview {
			reviews = append(reviews, consent.LoggedRecord{Commitment: e.Commitment.String(), LeafIndex: e.Index, Payload: e.Body.Payload})
		}
	}
	return consent.JudgeAccesses(nil, reviews, nil).Final
}

// describe makes the row of an event: who did what, when, why, with what
// outcome. seqOf maps commitments to sequence numbers, to name the access a
// review is about; finals are the deciding reviews (finalReviews).
func describe(ctx context.Context, l lang, rules *scrutiny.RulesCache, e *audit.HistoryEvent, seqOf map[event.Hash]uint64, finals map[string]string) eventRow {
	row := eventRow{Seq: e.Seq, Index: e.Index, Commitment: e.Commitment, Erased: e.Erased, Proof: e.Proof}
	b := e.Body
	if b == nil {
		row.Kind = "erased"
		row.What = l.t("cli.erased")
		if !e.Erased {
			row.Kind = "unverified"
			row.What = l.t("cli.unverified")
		}
		return row
	}
	t := b.Time
	row.Time = &t
	row.Kind = string(b.Kind)
	switch b.Kind {
	case event.KindAccess:
		req, d, err := consent.ParseAccessRecord(b.Payload)
		if err != nil {
			row.What = l.t("cli.accessUnreadable")
			return row
		}
		r := rules.Of(ctx, &d)
		row.professionLabel, row.careTeam = profession(l, r, req.Actor.Profession), req.Actor.CareTeam
		act := title(l, actions, req.Action)
		if req.Resource.Kind == consent.ResourceDocument {
			row.What = act + " : " + documentType(l, r, req.Resource.DocumentType)
		} else {
			row.What = act + " : " + l.t("event.wholeRecord")
		}
		var why []string
		why = append(why, title(l, purposes, req.Purpose))
		for _, g := range d.Grounds {
			why = append(why, [2]string{g.FR, g.EN}[l])
		}
		row.Why = strings.Join(why, " ; ")
		row.Outcome = l.t("cli.allowed")
		if d.Effect == consent.Deny {
			row.Outcome = l.t("cli.denied")
			row.Flags = append(row.Flags, "denied")
		}
		if consent.EmergencyAccess(r, req.Purpose, d) {
			row.Outcome = l.t("cli.emergency") + " " + row.Outcome
			row.Flags = append(row.Flags, "emergency")
		}
		ad := &accessDetail{ActorRPPS: req.Actor.RPPS.String(), Profession: req.Actor.Profession, Organization: req.Actor.Organization.String(),
			Sector: req.Actor.Sector, CareTeam: req.Actor.CareTeam, Action: req.Action, Resource: string(req.Resource.Kind),
			DocumentID: req.Resource.DocumentID, DocumentType: req.Resource.DocumentType, Purpose: req.Purpose,
			Decision: d.Effect.String(), Reason: d.Reason, ConsentVersion: d.ConsentVersion, RulesVersion: d.RulesVersion}
		for _, g := range d.Grounds {
			ad.Grounds = append(ad.Grounds, groundDetail{Source: g.Source, Kind: g.Kind, ID: g.ID, Effect: g.Effect.String(), Text: [2]string{g.FR, g.EN}[l]})
		}
		row.Access = ad
		row.Who = who(l, &row)
	case event.KindConsentChange:
		c, author, err := consent.ParseConsentChangeRecord(b.Payload)
		if err != nil {
			row.What = l.t("cli.consentUnreadable")
			return row
		}
		row.Who = author
		row.What = l.t("cli.consentChange", "version", c.Version, "n", len(c.Directives))
	case event.KindLedgerRead:
		rd, err := consent.ParseReadRecord(b.Payload)
		if err != nil {
			row.What = l.t("cli.readUnreadable")
			return row
		}
		row.reader, row.ReaderOrganizations = rd.Reader, rd.Organizations
		row.Who = readerWho(l, rd.Reader, rd.Organizations, directoryNames{})
		switch rd.Method {
		case "ListAccesses":
			row.What = l.t("cli.read.ListAccesses", "n", rd.Events)
		case "SearchEvents":
			row.What = l.t("cli.read.SearchEvents", "n", rd.Events)
		case "Alerts":
			row.What = l.t("cli.read.Alerts", "n", rd.Events)
		default:
			row.What = l.t("cli.read", "n", rd.Events)
		}
	case event.KindBreakGlassReview:
		rv, err := consent.ParseReviewRecord(b.Payload)
		if err != nil {
			row.What = l.t("cli.reviewUnreadable")
			return row
		}
		reviewed, _ := event.ParseHash(rv.Event)
		if rv.Organization != "" {
			row.ReaderOrganizations = []string{rv.Organization}
		}
		row.reader = rv.Reviewer
		row.Who = readerWho(l, rv.Reviewer, row.ReaderOrganizations, directoryNames{})
		row.What = l.t("cli.review", "seq", seqOf[reviewed])
		switch rv.Verdict {
		case consent.VerdictJustified:
			row.Outcome = l.t("cli.review.justified")
		case consent.VerdictUnjustified:
			row.Outcome = l.t("cli.review.unjustified")
		}
		row.Why = rv.Comment
		if finals[rv.Event] != e.Commitment.String() {
			row.Outcome += l.t("cli.review.notFinal")
			row.Flags = append(row.Flags, "not-final")
		}
	case event.KindErasure:
		var er ledger.ErasureRecord
		json.Unmarshal(b.Payload, &er)
		row.Who = er.RequestedBy
		if er.State == "done" {
			row.What = l.t("cli.erasure.done", "n", er.Erased)
		} else {
			row.What = l.t("cli.erasure.requested", "due", er.Due.Format(time.DateTime))
		}
	case event.KindEnrolment:
		r, err := enrolment.ParseRecord(b.Payload)
		if err != nil {
			row.What = l.t("cli.enrolmentUnreadable")
			return row
		}
		row.Who = b.Service
		if r.Action == enrolment.ActionUnlink {
			row.What = l.t("cli.enrolment.unlink", "issuer", r.Issuer)
		} else {
			row.What = l.t("cli.enrolment.link", "issuer", r.Issuer)
		}
	default:
		row.What = string(b.Kind)
	}
	return row
}

// who says who acted in an access row: the numbers, and beside them the
// names the directories gave (nameRows).
func who(l lang, row *eventRow) string {
	a := row.Access
	names := directoryNames{Professionals: map[string]*professionalEntry{}, Establishments: map[string]*establishmentEntry{}}
	if a.Actor != nil {
		names.Professionals[a.ActorRPPS] = a.Actor
	}
	if a.OrganizationEntry != nil {
		names.Establishments[a.Organization] = a.OrganizationEntry
	}
	s := names.professionalName(l, a.ActorRPPS, row.professionLabel) + ", " + names.establishmentName(l, a.Organization)
	if row.careTeam {
		s += ", " + l.t("event.careTeam")
	}
	return s
}

// nameRows looks up, in the public directories, the professionals and
// establishments of the access rows and shows their names beside the
// numbers (lookupNames).
func nameRows(ctx context.Context, cl *client.Client, l lang, rows []eventRow) {
	var rpps, finess []string
	for _, r := range rows {
		if a := r.Access; a != nil {
			rpps, finess = append(rpps, a.ActorRPPS), append(finess, a.Organization)
		}
	}
	for _, r := range rows {
		finess = append(finess, r.ReaderOrganizations...)
	}
	names := lookupNames(ctx, cl, rpps, finess)
	pros, ests := names.Professionals, names.Establishments
	for i := range rows {
		if a := rows[i].Access; a != nil {
			a.Actor, a.OrganizationEntry = pros[a.ActorRPPS], ests[a.Organization]
			rows[i].Who = who(l, &rows[i])
		}
		if len(rows[i].ReaderOrganizations) > 0 {
			rows[i].Who = readerWho(l, rows[i].reader, rows[i].ReaderOrganizations, names)
		}
	}
}

// readerWho says who read or reviewed: the principal, and the
// organisations it acted for by name beside their numbers.
func readerWho(l lang, reader string, orgs []string, names directoryNames) string {
	if len(orgs) == 0 {
		return reader
	}
	var named []string
	for _, o := range orgs {
		named = append(named, names.establishmentName(l, o))
	}
	return l.t("cli.readerFor", "reader", reader, "orgs", strings.Join(named, "; "))
}
