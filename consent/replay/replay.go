// Package replay re-decides the access decisions recorded in a Vigie ledger
// and reports every one whose recorded decision differs from the replay:
// an auditor's proof that each access was justified by the consent in
// force and the national rules, from the ledger alone (every decision
// records what it was decided with, and so can be replayed).
//
// The input is decoded events ([event.Logged]), in any order:
//
//   - consent changes (payload consent.ConsentChangeRecordFormat), folded
//     per patient in chain order to know the consent in force before each
//     event; an erasure ("done") resets it to no directives;
//   - national-rules changes (consent.RulesChangeRecordFormat), against
//     which each rules version is checked: the bytes fetched for a version
//     (GET /v1/rules/{version}) must hash to the rules-change event's hash
//     and to the hash the decision names;
//   - access events (consent.AccessRecordFormat), each re-decided with a
//     [consent.Engine] from the request it embeds, the consent in force
//     and the rules it names, and compared with the decision it records.
//
// The gravest finding is [KindAllowDenied]: an access recorded as ALLOW
// that the consent in force and the rules deny.
//
// A regulator sees every event: the consent changes are complete. A DPO
// sees only the events of its organisations, without the patients'
// consent changes: only the decisions made under consent version 0 (a
// patient without directives) can then be replayed, and the others are
// counted as not replayable, never guessed.
package replay

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/ledger/event"
)

// ErrNoRules is returned by a [RulesSource] for a version it does not have.
var ErrNoRules = errors.New("national rules version not found")

// A RulesSource returns the exact bytes of a national rules version (GET
// /v1/rules/{version}), or an error wrapping [ErrNoRules] if there is no
// such version. Any other error stops the replay.
type RulesSource func(ctx context.Context, version int64) ([]byte, error)

// Config configures [Replay]. Engine and Rules are required.
type Config struct {
	// Engine decides, as the service does (consent/ladonpolicy).
	Engine consent.Engine
	// Rules fetches national rules versions.
	Rules RulesSource
	// Complete says the events hold every event of each patient's chain
	// that is not erased, and the rules-change events: a regulator's view.
	// False is a DPO's view (see the package documentation).
	Complete bool
}

// A Kind names a finding of the replay. The values are stable.
type Kind string

const (
	// KindAllowDenied: recorded ALLOW, the replay denies. The gravest.
	KindAllowDenied Kind = "allow-denied-by-replay"
	// KindDenyAllowed: recorded DENY, the replay allows.
	KindDenyAllowed Kind = "deny-allowed-by-replay"
	// KindExplanation: the same answer, for other reasons (grounds,
	// coarse reason, obligations or time differ).
	KindExplanation Kind = "explanation-differs"
	// KindConsentVersion: the decision names another consent version
	// than the one in force at its place in the patient's chain.
	KindConsentVersion Kind = "consent-version"
	// KindConsentChange: a consent change does not follow the previous
	// one (its version is not the next), or does not decode.
	KindConsentChange Kind = "consent-change"
	// KindRules: the national rules a decision names cannot be
	// confirmed: the bytes served do not hash to the decision's hash or
	// to the rules-change event's, no rules-change event records the
	// version, or the version is not served.
	KindRules Kind = "rules"
	// KindUnreadable: an access event whose record does not decode.
	KindUnreadable Kind = "unreadable-record"
)

// Severity orders findings: critical first.
type Severity int

const (
	Medium Severity = iota + 1
	High
	Critical
)

func (s Severity) String() string {
	switch s {
	case Critical:
		return "critical"
	case High:
		return "high"
	case Medium:
		return "medium"
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// MarshalText returns "critical", "high" or "medium".
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses what MarshalText returns.
func (s *Severity) UnmarshalText(b []byte) error {
	for _, v := range []Severity{Critical, High, Medium} {
		if v.String() == string(b) {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("unknown severity %q", b)
}

var severities = map[Kind]Severity{
	KindAllowDenied: Critical, KindDenyAllowed: High, KindConsentVersion: High, KindConsentChange: High,
	KindRules: High, KindUnreadable: High, KindExplanation: Medium,
}

// A Finding is a decision the replay does not confirm.
type Finding struct {
	Kind     Kind     `json:"kind"`
	Severity Severity `json:"severity"`
	// Event is the event concerned: the access, the consent change, or
	// the rules change.
	Event event.Ref `json:"event"`
	// Patient is the patient's pseudonym (zero for rules).
	Patient event.Hash `json:"patient"`
	// Recorded and Replayed are the decisions' effects, for accesses.
	Recorded string `json:"recorded,omitempty"`
	Replayed string `json:"replayed,omitempty"`
	// Message explains, in English, without identifiers of patients.
	Message string `json:"message"`
}

// A Report is what [Replay] found.
type Report struct {
	// Accesses counts the access events; Replayed those re-decided, of
	// which Agreed gave the recorded decision exactly.
	Accesses, Replayed, Agreed int
	// NotReplayable counts the accesses that could not be re-decided, by
	// reason (for instance "consent not visible").
	NotReplayable map[string]int
	// Rules are the national rules versions the decisions named, with
	// their hash as served.
	Rules    []RulesVersion
	Findings []Finding
}

// RulesVersion is a national rules version used by the replay.
type RulesVersion struct {
	Version int64  `json:"version"`
	Hash    string `json:"sha256"`
	// Event is the rules-change event that records it, if seen.
	Event *event.Ref `json:"event,omitempty"`
}

// Replay re-decides every access event of events (see the package
// documentation). It returns an error for an invalid configuration, a
// cancelled context, or a rules source that fails for another reason
// than ErrNoRules.
func Replay(ctx context.Context, cfg Config, events []event.Logged) (*Report, error) {
	if cfg.Engine == nil || cfg.Rules == nil {
		return nil, errors.New("replay: Engine and Rules are required")
	}
	r := &replayer{cfg: cfg, rep: &Report{NotReplayable: map[string]int{}},
		rulesEvents: map[int64]rulesEvent{}, rules: map[int64]*rulesEntry{}, ins: map[event.Hash]ident.INS{}}
	patients := map[event.Hash][]event.Logged{}
	var order []event.Hash
	for _, e := range events {
		if e.Body == nil {
			continue
		}
		if e.Body.Kind == event.KindRulesChange {
			r.rulesChange(e)
			continue
		}
		p := e.Body.Patient
		if patients[p] == nil {
			order = append(order, p)
		}
		patients[p] = append(patients[p], e)
	}
	for _, p := range order {
		evs := patients[p]
		slices.SortFunc(evs, func(a, b event.Logged) int { return cmp.Compare(a.Body.Seq, b.Body.Seq) })
		if err := r.patient(ctx, p, evs); err != nil {
			return nil, err
		}
	}
	for v, e := range r.rules {
		rv := RulesVersion{Version: v, Hash: e.hash}
		if ev, ok := r.rulesEvents[v]; ok {
			rv.Event = &ev.ref
		}
		r.rep.Rules = append(r.rep.Rules, rv)
	}
	slices.SortFunc(r.rep.Rules, func(a, b RulesVersion) int { return cmp.Compare(a.Version, b.Version) })
	slices.SortStableFunc(r.rep.Findings, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(b.Severity, a.Severity), cmp.Compare(a.Event.Index, b.Event.Index))
	})
	return r.rep, nil
}

type rulesEvent struct {
	ref  event.Ref
	hash string
}

type rulesEntry struct {
	rules *consent.Rules
	hash  string
	bad   string // why the version cannot be used, if it cannot
}

type replayer struct {
	cfg         Config
	rep         *Report
	rulesEvents map[int64]rulesEvent
	rules       map[int64]*rulesEntry
	ins         map[event.Hash]ident.INS
}

func (r *replayer) finding(k Kind, e event.Logged, format string, args ...any) *Finding {
	f := Finding{Kind: k, Severity: severities[k], Event: e.Ref, Message: fmt.Sprintf(format, args...)}
	if e.Body != nil {
		f.Patient = e.Body.Patient
	}
	r.rep.Findings = append(r.rep.Findings, f)
	return &r.rep.Findings[len(r.rep.Findings)-1]
}

func (r *replayer) rulesChange(e event.Logged) {
	rc, err := consent.ParseRulesChangeRecord(e.Body.Payload)
	if err != nil {
		r.finding(KindRules, e, "a rules-change event whose record does not decode: %v", err)
		return
	}
	if prev, ok := r.rulesEvents[rc.Version]; ok && prev.hash != rc.Hash {
		r.finding(KindRules, e, "two rules-change events record version %d with different hashes (%s at leaf %d, %s here)", rc.Version, prev.hash, prev.ref.Index, rc.Hash)
		return
	}
	r.rulesEvents[rc.Version] = rulesEvent{ref: e.Ref, hash: rc.Hash}
}

// rulesFor returns the rules of version v, fetched once and checked
// against the rules-change events; nil with the reason if they cannot be
// used.
func (r *replayer) rulesFor(ctx context.Context, v int64, at event.Logged) (*rulesEntry, error) {
	if e, ok := r.rules[v]; ok {
		return e, nil
	}
	e := &rulesEntry{}
	r.rules[v] = e
	b, err := r.cfg.Rules(ctx, v)
	switch {
	case errors.Is(err, ErrNoRules):
		e.bad = "rules version not served"
		r.finding(KindRules, at, "the national rules version %d this decision names is not served by the log's server", v)
		return e, nil
	case err != nil:
		return nil, fmt.Errorf("national rules version %d: %w", v, err)
	}
	h := sha256.Sum256(b)
	e.hash = hex.EncodeToString(h[:])
	ev, seen := r.rulesEvents[v]
	switch {
	case seen && ev.hash != e.hash:
		e.bad = "rules differ from their rules-change event"
		r.finding(KindRules, at, "the national rules served as version %d hash to %s, but the rules-change event at leaf %d recorded %s", v, e.hash, ev.ref.Index, ev.hash)
		return e, nil
	case !seen && r.cfg.Complete:
		r.finding(KindRules, at, "no rules-change event records the national rules version %d this decision names", v)
	}
	if e.rules, err = consent.ParseRules(b); err != nil {
		e.bad = "rules do not parse"
		r.finding(KindRules, at, "the national rules served as version %d do not parse: %v", v, err)
		return e, nil
	}
	if got := e.rules.Version(); got != v {
		e.bad, e.rules = "rules of another version", nil
		r.finding(KindRules, at, "the national rules served as version %d say they are version %d", v, got)
	}
	return e, nil
}

// inForce is the consent in force at a place in a patient's chain, as far
// as the events show it.
type inForce struct {
	c consent.Consent
	// directives: c.Directives are known; version: c.Version is known
	// (after an erasure, the directives are known to be none, and the
	// version is not).
	directives, version bool
}

// patient replays the events of one patient, in chain order.
func (r *replayer) patient(ctx context.Context, p event.Hash, evs []event.Logged) error {
	st := inForce{directives: r.cfg.Complete, version: r.cfg.Complete}
	for _, e := range evs {
		switch e.Body.Kind {
		case event.KindConsentChange:
			c, _, err := consent.ParseConsentChangeRecord(e.Body.Payload)
			if err != nil {
				r.finding(KindConsentChange, e, "a consent change whose record does not decode: %v", err)
				st = inForce{}
				continue
			}
			if st.version && c.Version != st.c.Version+1 {
				r.finding(KindConsentChange, e, "the consent goes from version %d to %d, not to the next version", st.c.Version, c.Version)
			}
			st = inForce{c: c, directives: true, version: true}
		case event.KindErasure:
			var rec struct {
				State string `json:"state"`
			}
			if json.Unmarshal(e.Body.Payload, &rec) == nil && rec.State == "done" {
				// The erasure deleted the directives and raised the
				// version by one, from a version the events no longer
				// show.
				st = inForce{directives: true}
			}
		case event.KindAccess:
			if err := r.access(ctx, p, e, &st); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *replayer) access(ctx context.Context, p event.Hash, e event.Logged, st *inForce) error {
	r.rep.Accesses++
	req, rec, err := consent.ParseAccessRecord(e.Body.Payload)
	if err != nil {
		r.finding(KindUnreadable, e, "an access event whose record does not decode: %v", err)
		return nil
	}
	snap := consent.Consent{Version: rec.ConsentVersion}
	switch {
	case st.directives && st.version:
		if rec.ConsentVersion != st.c.Version {
			r.finding(KindConsentVersion, e, "the decision names consent version %d, but version %d was in force at its place in the patient's chain", rec.ConsentVersion, st.c.Version)
		}
		snap = st.c.Clone()
	case st.directives: // after an erasure: no directives, at the version the decision names
	case rec.ConsentVersion == 0: // version 0 is, by definition, no directives
	default:
		r.rep.NotReplayable["consent not visible"]++
		return nil
	}
	rules, err := r.rulesFor(ctx, rec.RulesVersion, e)
	if err != nil {
		return err
	}
	if rules.bad != "" {
		r.rep.NotReplayable[rules.bad]++
		return nil
	}
	if rules.hash != hex.EncodeToString(rec.RulesHash[:]) {
		r.finding(KindRules, e, "the decision names national rules version %d with hash %x, but that version hashes to %s", rec.RulesVersion, rec.RulesHash, rules.hash)
		r.rep.NotReplayable["rules differ from the decision's"]++
		return nil
	}
	req.Patient = r.pseudoINS(p)
	req.Justification = recordedText(req.Justification)
	got, err := r.cfg.Engine.Decide(&req, &snap, rules.rules)
	if err != nil {
		r.rep.NotReplayable["engine refused the request"]++
		return nil
	}
	r.rep.Replayed++
	f := compare(&rec, &got)
	if f == "" {
		r.rep.Agreed++
		return nil
	}
	k := KindExplanation
	switch {
	case rec.Effect == consent.Allow && got.Effect == consent.Deny:
		k = KindAllowDenied
	case rec.Effect == consent.Deny && got.Effect == consent.Allow:
		k = KindDenyAllowed
	}
	x := r.finding(k, e, "recorded %s, replayed %s under consent version %d and national rules version %d: %s", rec.Effect, got.Effect, snap.Version, rec.RulesVersion, f)
	x.Recorded, x.Replayed = rec.Effect.String(), got.Effect.String()
	return nil
}

// pseudoINS returns a stand-in INS for a pseudonym, the same for the whole
// replay and different for every patient: the engine keys its cache by
// INS, and the events hold none.
func (r *replayer) pseudoINS(p event.Hash) ident.INS {
	if x, ok := r.ins[p]; ok {
		return x
	}
	n := uint64(1_000_000_000_000) + uint64(len(r.ins)) // 13 digits, starting with 1
	x, err := ident.ParseINS(fmt.Sprintf("%013d%02d", n, 97-n%97))
	if err != nil {
		panic(fmt.Sprintf("replay: stand-in INS: %v", err)) // an internal invariant
	}
	r.ins[p] = x
	return x
}

// compare says how two decisions differ, "" if they do not.
func compare(rec, got *consent.Decision) string {
	var diffs []string
	if rec.Effect != got.Effect {
		diffs = append(diffs, fmt.Sprintf("effect %s, replay %s", rec.Effect, got.Effect))
	}
	if rec.Reason != got.Reason {
		diffs = append(diffs, fmt.Sprintf("reason %q, replay %q", rec.Reason, got.Reason))
	}
	if a, b := groundsText(rec.Grounds), groundsText(got.Grounds); a != b {
		diffs = append(diffs, fmt.Sprintf("grounds [%s], replay [%s]", a, b))
	}
	if !slices.Equal(rec.Obligations, got.Obligations) {
		diffs = append(diffs, fmt.Sprintf("obligations %v, replay %v", rec.Obligations, got.Obligations))
	}
	if !rec.Time.Equal(got.Time) {
		diffs = append(diffs, "decision time differs from the request's")
	}
	return strings.Join(diffs, "; ")
}

func groundsText(gs []consent.Ground) string {
	var b bytes.Buffer
	for i, g := range gs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s %s:%s", g.Effect, g.Source, g.Kind, g.ID)
	}
	return b.String()
}

// recordedText returns a justification recorded before the free-text rule
// ([consent.CheckText]) as the engine now accepts it, with what a decision
// reads of it, whether it is blank, unchanged: each character the rule
// refuses becomes a space if it is one (U+2028, U+2029), '?' otherwise.
func recordedText(s string) string {
	if consent.CheckText(s, consent.MaxJustificationLen) == nil {
		return s
	}
	return strings.Map(func(r rune) rune {
		switch {
		case !consent.UnsafeRune(r):
			return r
		case unicode.IsSpace(r):
			return ' '
		}
		return '?'
	}, strings.ToValidUTF8(s, "?"))
}
