package consent

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vigie-sante/vigie/consent/ident"
)

// The formats of what the consent layer writes into ledger events (the
// "payload" of an event body, see ledger/event). Each is one compact JSON
// object whose "format" field names it and its version. They hold no INS:
// the event names the patient by pseudonym. Everything a decision depended
// on is in its access record, so that an auditor replays it with the
// consent in force (folded from the consent records) and the national
// rules it names.
const (
	AccessRecordFormat        = "vigie.access.v1"
	ConsentChangeRecordFormat = "vigie.consent-change.v1"
	RulesChangeRecordFormat   = "vigie.rules-change.v1"
	ReadRecordFormat          = "vigie.ledger-read.v2"
	ReviewRecordFormat        = "vigie.break-glass-review.v2"
	// ReadRecordFormatV1 and ReviewRecordFormatV1 are the first versions,
	// without the organisations the reader acted for: still read (and
	// formatted again as they were, for the canonical check), never
	// written.
	ReadRecordFormatV1   = "vigie.ledger-read.v1"
	ReviewRecordFormatV1 = "vigie.break-glass-review.v1"
)

// maxRecordSize bounds a record; the ledger's body limit is larger.
const maxRecordSize = 48 << 10

// AccessRecord is the payload of an access event: the validated request
// (without the INS) and the whole decision.
type AccessRecord struct {
	Format   string         `json:"format"`
	Request  accessRequest  `json:"request"`
	Decision accessDecision `json:"decision"`
}

type accessRequest struct {
	ID                string       `json:"id"`
	Service           string       `json:"service"`
	Actor             accessActor  `json:"actor"`
	Action            Action       `json:"action"`
	Resource          accessTarget `json:"resource"`
	Purpose           Purpose      `json:"purpose"`
	Justification     string       `json:"justification,omitempty"`
	Time              time.Time    `json:"time"`
	MinConsentVersion int64        `json:"min_consent_version,omitempty"`
}

type accessActor struct {
	RPPS         string `json:"rpps"`
	Profession   string `json:"profession"`
	Specialty    string `json:"specialty,omitempty"`
	Sector       string `json:"sector"`
	Organization string `json:"organization"`
	CareTeam     bool   `json:"care_team"`
}

type accessTarget struct {
	Kind         ResourceKind `json:"kind"`
	DocumentID   string       `json:"document_id,omitempty"`
	DocumentType string       `json:"document_type,omitempty"`
	Author       string       `json:"author,omitempty"`
	Hidden       bool         `json:"hidden,omitempty"`
}

type accessDecision struct {
	Effect         Effect         `json:"effect"`
	Reason         Reason         `json:"reason"`
	Grounds        []accessGround `json:"grounds"`
	Obligations    []Obligation   `json:"obligations"`
	ConsentVersion int64          `json:"consent_version"`
	RulesVersion   int64          `json:"rules_version"`
	RulesHash      string         `json:"rules_hash"`
	Time           time.Time      `json:"time"`
}

type accessGround struct {
	Source GroundSource `json:"source"`
	ID     string       `json:"id"`
	Kind   string       `json:"kind"`
	Effect Effect       `json:"effect"`
}

// recordRequest is the request as an access record holds it: everything
// but the INS.
func recordRequest(req *Request) accessRequest {
	return accessRequest{
		ID:      req.ID,
		Service: req.Service,
		Actor: accessActor{
			RPPS:         req.Actor.RPPS.String(),
			Profession:   req.Actor.Profession,
			Specialty:    req.Actor.Specialty,
			Sector:       req.Actor.Sector,
			Organization: req.Actor.Organization.String(),
			CareTeam:     req.Actor.CareTeam,
		},
		Action: req.Action,
		Resource: accessTarget{
			Kind:         req.Resource.Kind,
			DocumentID:   req.Resource.DocumentID,
			DocumentType: req.Resource.DocumentType,
			Author:       req.Resource.Author.String(),
			Hidden:       req.Resource.Hidden,
		},
		Purpose:           req.Purpose,
		Justification:     req.Justification,
		Time:              req.Time.UTC(),
		MinConsentVersion: req.MinConsentVersion,
	}
}

// SameRequest reports whether a and b are one access request, as an access
// record holds it, but for the decision time and the consent version the
// caller saw: a retry under one request id. A request id used again for
// another actor, action, document or purpose is not a retry.
func SameRequest(a, b *Request) bool {
	ra, rb := recordRequest(a), recordRequest(b)
	ra.Time, rb.Time = time.Time{}, time.Time{}
	ra.MinConsentVersion, rb.MinConsentVersion = 0, 0
	return ra == rb
}

// FormatAccessRecord encodes the access record of a decision: compact JSON,
// fields in a fixed order, times in RFC 3339 UTC. The grounds' French and
// English texts are not recorded: they follow from each ground's source
// and kind ([GroundText]).
func FormatAccessRecord(req *Request, d *Decision) ([]byte, error) {
	r := AccessRecord{
		Format:  AccessRecordFormat,
		Request: recordRequest(req),
		Decision: accessDecision{
			Effect:         d.Effect,
			Reason:         d.Reason,
			Grounds:        make([]accessGround, len(d.Grounds)),
			Obligations:    d.Obligations,
			ConsentVersion: d.ConsentVersion,
			RulesVersion:   d.RulesVersion,
			RulesHash:      hex.EncodeToString(d.RulesHash[:]),
			Time:           d.Time.UTC(),
		},
	}
	if r.Decision.Obligations == nil {
		r.Decision.Obligations = []Obligation{}
	}
	for i, g := range d.Grounds {
		r.Decision.Grounds[i] = accessGround{Source: g.Source, ID: g.ID, Kind: g.Kind, Effect: g.Effect}
	}
	return compactJSON(r)
}

// ParseAccessRecord decodes an access record: the request (its Patient
// left zero: the record holds no INS) and the decision (grounds with their
// texts). It accepts exactly what FormatAccessRecord writes.
func ParseAccessRecord(b []byte) (Request, Decision, error) {
	var r AccessRecord
	if err := strictJSON(b, &r, AccessRecordFormat, func() string { return r.Format }); err != nil {
		return Request{}, Decision{}, fmt.Errorf("parse access record: %w", err)
	}
	req := Request{
		ID:      r.Request.ID,
		Service: r.Request.Service,
		Actor: Actor{
			Profession: r.Request.Actor.Profession,
			Specialty:  r.Request.Actor.Specialty,
			Sector:     r.Request.Actor.Sector,
			CareTeam:   r.Request.Actor.CareTeam,
		},
		Action: r.Request.Action,
		Resource: Resource{
			Kind:         r.Request.Resource.Kind,
			DocumentID:   r.Request.Resource.DocumentID,
			DocumentType: r.Request.Resource.DocumentType,
			Hidden:       r.Request.Resource.Hidden,
		},
		Purpose:           r.Request.Purpose,
		Justification:     r.Request.Justification,
		Time:              r.Request.Time,
		MinConsentVersion: r.Request.MinConsentVersion,
	}
	var err error
	if req.Actor.RPPS, err = ident.ParseRPPS(r.Request.Actor.RPPS); err != nil {
		return Request{}, Decision{}, fmt.Errorf("parse access record: actor.rpps: %w", err)
	}
	if req.Actor.Organization, err = ident.ParseFINESS(r.Request.Actor.Organization); err != nil {
		return Request{}, Decision{}, fmt.Errorf("parse access record: actor.organization: %w", err)
	}
	if r.Request.Resource.Author != "" {
		if req.Resource.Author, err = ident.ParseRPPS(r.Request.Resource.Author); err != nil {
			return Request{}, Decision{}, fmt.Errorf("parse access record: resource.author: %w", err)
		}
	}
	d := Decision{
		Effect:         r.Decision.Effect,
		Reason:         r.Decision.Reason,
		Obligations:    r.Decision.Obligations,
		ConsentVersion: r.Decision.ConsentVersion,
		RulesVersion:   r.Decision.RulesVersion,
		Time:           r.Decision.Time,
	}
	if len(d.Obligations) == 0 {
		d.Obligations = nil
	}
	h, err := hex.DecodeString(r.Decision.RulesHash)
	if err != nil || len(h) != len(d.RulesHash) {
		return Request{}, Decision{}, errors.New("parse access record: decision.rules_hash: want 64 hex digits")
	}
	copy(d.RulesHash[:], h)
	for _, g := range r.Decision.Grounds {
		fr, en := GroundText(g.Source, g.Kind)
		d.Grounds = append(d.Grounds, Ground{Source: g.Source, ID: g.ID, Kind: g.Kind, Effect: g.Effect, FR: fr, EN: en})
	}
	canon, err := FormatAccessRecord(&req, &d)
	if err != nil {
		return Request{}, Decision{}, err
	}
	if !bytes.Equal(canon, b) {
		return Request{}, Decision{}, errors.New("parse access record: not in canonical form")
	}
	return req, d, nil
}

// ConsentChangeRecord is the payload of a consent-change event: who made
// the change, the new version, the hash of the consent's canonical form
// and the consent itself (its directives), so that an auditor folds the
// consent in force at any moment from the ledger alone.
type ConsentChangeRecord struct {
	Format      string          `json:"format"`
	Author      string          `json:"author"`
	Version     int64           `json:"version"`
	ConsentHash string          `json:"consent_hash"`
	Consent     json.RawMessage `json:"consent"`
}

// FormatConsentChangeRecord encodes the consent-change record of c, made
// by author.
func FormatConsentChangeRecord(c Consent, author string) ([]byte, error) {
	body, err := FormatConsent(c)
	if err != nil {
		return nil, err
	}
	h, err := ConsentHash(c)
	if err != nil {
		return nil, err
	}
	return compactJSON(ConsentChangeRecord{Format: ConsentChangeRecordFormat, Author: author, Version: c.Version, ConsentHash: hex.EncodeToString(h[:]), Consent: body})
}

// ParseConsentChangeRecord decodes a consent-change record and checks that
// the hash it carries is the consent's.
func ParseConsentChangeRecord(b []byte) (Consent, string, error) {
	var r ConsentChangeRecord
	if err := strictJSON(b, &r, ConsentChangeRecordFormat, func() string { return r.Format }); err != nil {
		return Consent{}, "", fmt.Errorf("parse consent-change record: %w", err)
	}
	c, err := ParseConsent(r.Consent)
	if err != nil {
		return Consent{}, "", err
	}
	if c.Version != r.Version {
		return Consent{}, "", fmt.Errorf("parse consent-change record: version %d, consent version %d", r.Version, c.Version)
	}
	canon, err := FormatConsentChangeRecord(c, r.Author)
	if err != nil {
		return Consent{}, "", err
	}
	if !bytes.Equal(canon, b) {
		return Consent{}, "", errors.New("parse consent-change record: not in canonical form, or the hash is not the consent's")
	}
	return c, r.Author, nil
}

// RulesChangeRecord is the payload of a rules-change event: the version,
// the SHA-256 of its exact bytes (served at GET /v1/rules/{version}), and
// who published it.
type RulesChangeRecord struct {
	Format  string `json:"format"`
	Author  string `json:"author"`
	Version int64  `json:"version"`
	Hash    string `json:"hash"`
}

// FormatRulesChangeRecord encodes the rules-change record of rules.
func FormatRulesChangeRecord(rules *Rules, author string) ([]byte, error) {
	h := rules.Hash()
	return compactJSON(RulesChangeRecord{Format: RulesChangeRecordFormat, Author: author, Version: rules.Version(), Hash: hex.EncodeToString(h[:])})
}

// ParseRulesChangeRecord decodes a rules-change record.
func ParseRulesChangeRecord(b []byte) (RulesChangeRecord, error) {
	var r RulesChangeRecord
	if err := strictJSON(b, &r, RulesChangeRecordFormat, func() string { return r.Format }); err != nil {
		return r, fmt.Errorf("parse rules-change record: %w", err)
	}
	canon, err := compactJSON(r)
	if err != nil {
		return r, err
	}
	if !bytes.Equal(canon, b) {
		return r, errors.New("parse rules-change record: not in canonical form")
	}
	return r, nil
}

// ReadRecord is the payload of a ledger-read event: who read how many of
// the patient's events, by which method, for which organisations. Every
// read of event bodies is one, in the chain of the patient whose events
// were read.
type ReadRecord struct {
	// Format is ReadRecordFormat; ReadRecordFormatV1 for a record of
	// version 1, which has no Organizations.
	Format string `json:"format"`
	// Reader is the principal ("patient", "regulator:cnil", "dpo:...").
	Reader string `json:"reader"`
	// Organizations are the FINESS numbers of the organisations the reader
	// acted for, sorted, without repeats: the one a DPO's search named,
	// a DPO's organisations for its alerts; none for a patient or a
	// regulator, who act for no organisation.
	Organizations []string `json:"organizations,omitempty"`
	// Method is what was read: an API method ("ListAccesses",
	// "SearchEvents", "Alerts" for AuditService.ListAlerts).
	Method string `json:"method"`
	// Events is how many of the patient's events the read returned.
	Events int `json:"events"`
	// CheckpointSize and FromSeq say which page of a history was read.
	CheckpointSize uint64 `json:"checkpoint_size,omitempty"`
	FromSeq        uint64 `json:"from_seq,omitempty"`
}

// FormatReadRecord encodes a ledger-read record, in version 2 unless
// r.Format is ReadRecordFormatV1.
func FormatReadRecord(r ReadRecord) ([]byte, error) {
	if r.Format != ReadRecordFormatV1 {
		r.Format = ReadRecordFormat
	}
	if r.Reader == "" || r.Method == "" || r.Events < 0 {
		return nil, errors.New("read record: reader and method are required, events not negative")
	}
	if err := checkOrganizations(r.Format == ReadRecordFormatV1, r.Organizations...); err != nil {
		return nil, fmt.Errorf("read record: %w", err)
	}
	if r.Organizations != nil && len(r.Organizations) == 0 {
		return nil, errors.New("read record: organizations: empty list")
	}
	for i := 1; i < len(r.Organizations); i++ {
		if r.Organizations[i-1] >= r.Organizations[i] {
			return nil, errors.New("read record: organizations: not sorted or repeated")
		}
	}
	return compactJSON(r)
}

// checkOrganizations checks the organisations a record names: FINESS
// numbers, and none in a record of version 1.
func checkOrganizations(v1 bool, orgs ...string) error {
	if v1 && len(orgs) > 0 {
		return errors.New("organizations: not in version 1")
	}
	for _, o := range orgs {
		if _, err := ident.ParseFINESS(o); err != nil {
			return fmt.Errorf("organizations: %w", err)
		}
	}
	return nil
}

// ParseReadRecord decodes a ledger-read record in canonical form, of
// version 2 or 1.
func ParseReadRecord(b []byte) (ReadRecord, error) {
	var r ReadRecord
	if err := strictJSON(b, &r, ReadRecordFormat, func() string { return r.Format }, ReadRecordFormatV1); err != nil {
		return r, fmt.Errorf("parse read record: %w", err)
	}
	canon, err := FormatReadRecord(r)
	if err != nil || !bytes.Equal(canon, b) {
		return r, errors.New("parse read record: not in canonical form")
	}
	return r, nil
}

// The verdicts of a break-glass review.
const (
	VerdictJustified   = "justified"
	VerdictUnjustified = "unjustified"
)

// ReviewRecord is the payload of a break-glass review event, in the chain
// of the patient whose access was reviewed.
type ReviewRecord struct {
	// Format is ReviewRecordFormat; ReviewRecordFormatV1 for a record of
	// version 1, which has no Organization.
	Format string `json:"format"`
	// Event and LeafIndex name the reviewed access event.
	Event     string `json:"event"`
	LeafIndex uint64 `json:"leaf_index"`
	// Verdict is VerdictJustified or VerdictUnjustified.
	Verdict string `json:"verdict"`
	// Comment is the reviewer's, at most 4096 bytes.
	Comment string `json:"comment,omitempty"`
	// Reviewer is the principal ("dpo:...", "regulator:...").
	Reviewer string `json:"reviewer"`
	// Organization is the FINESS number of the organisation a DPO
	// reviewed for (the reviewed access's); empty for a regulator.
	Organization string `json:"organization,omitempty"`
}

// FormatReviewRecord encodes a break-glass review record, in version 2
// unless r.Format is ReviewRecordFormatV1.
func FormatReviewRecord(r ReviewRecord) ([]byte, error) {
	if r.Format != ReviewRecordFormatV1 {
		r.Format = ReviewRecordFormat
	}
	switch {
	case r.Verdict != VerdictJustified && r.Verdict != VerdictUnjustified:
		return nil, fmt.Errorf("review record: verdict %q", r.Verdict)
	case len(r.Event) != 64:
		return nil, errors.New("review record: the event's commitment is required (64 hex digits)")
	case r.Reviewer == "":
		return nil, errors.New("review record: the reviewer is required")
	case len(r.Comment) > 4096:
		return nil, errors.New("review record: comment longer than 4096 bytes")
	}
	if r.Organization != "" {
		if err := checkOrganizations(r.Format == ReviewRecordFormatV1, r.Organization); err != nil {
			return nil, fmt.Errorf("review record: %w", err)
		}
	}
	return compactJSON(r)
}

// ParseReviewRecord decodes a break-glass review record in canonical
// form, of version 2 or 1.
func ParseReviewRecord(b []byte) (ReviewRecord, error) {
	var r ReviewRecord
	if err := strictJSON(b, &r, ReviewRecordFormat, func() string { return r.Format }, ReviewRecordFormatV1); err != nil {
		return r, fmt.Errorf("parse review record: %w", err)
	}
	canon, err := FormatReviewRecord(r)
	if err != nil || !bytes.Equal(canon, b) {
		return r, errors.New("parse review record: not in canonical form")
	}
	return r, nil
}

func compactJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(b) > maxRecordSize {
		return nil, errors.New("record too large")
	}
	return b, nil
}

func strictJSON(b []byte, v any, format string, got func() string, older ...string) error {
	if len(b) > maxRecordSize {
		return errors.New("too large")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON object")
	}
	if got() != format && !slices.Contains(older, got()) {
		return fmt.Errorf("format is not %q", format)
	}
	return nil
}
