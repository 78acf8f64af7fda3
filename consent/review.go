package consent

import (
	"cmp"
	"encoding/json"
	"errors"
	"slices"
	"strings"
)

// ErrReviewed is returned when a break-glass access is reviewed by a
// reviewer who may not overrule its earlier review (see [Overrules]).
// Nothing was recorded. Callers test for it with errors.Is.
var ErrReviewed = errors.New("break-glass access already reviewed by a reviewer of equal or higher standing")

// Standing orders the reviewers of break-glass accesses: a review counts
// over an earlier one only from a higher standing.
type Standing int

const (
	// StandingNone: not a reviewer (and the standing of "no review yet").
	StandingNone Standing = iota
	// StandingDPO: a data protection officer, for its organisations.
	StandingDPO
	// StandingRegulator: the regulator (the CNIL), whose review is final.
	StandingRegulator
)

// ReviewerStanding returns the standing of a reviewer principal, as a
// [ReviewRecord] names it: "dpo:..." or "regulator:...";
// [StandingNone] for anything else.
func ReviewerStanding(reviewer string) Standing {
	role, sub, ok := strings.Cut(reviewer, ":")
	switch {
	case !ok || sub == "":
		return StandingNone
	case role == "dpo":
		return StandingDPO
	case role == "regulator":
		return StandingRegulator
	}
	return StandingNone
}

// Overrules reports whether a review by a reviewer of standing s counts
// after the reviews already counted for the same access, the highest of
// whose standings is prev ([StandingNone] when there is none). The rule:
// the first review decides; a later one overrules it only from a strictly
// higher standing. So a regulator may overrule a DPO, never the reverse,
// and no reviewer of equal standing (the same DPO, another DPO of the
// organisation, another regulator) reviews again: a regulator's review is
// final. A principal that is no reviewer never counts.
func Overrules(s, prev Standing) bool {
	return s != StandingNone && s > prev
}

// FinalReview returns the review that decides a break-glass access, given
// the reviews of that one access in log order, and false when none counts
// (the access is not reviewed). Every review stays in the ledger; this is
// the one computation of the outcome (the API refuses, with the same
// [Overrules], a review that would not count; the misuse alerts, vigie
// audit and the API's ListAlerts use this). A review [Overrules] does not
// admit (one recorded against the rule) is ignored.
func FinalReview(reviews []ReviewRecord) (ReviewRecord, bool) {
	var final ReviewRecord
	prev := StandingNone
	for _, r := range reviews {
		if s := ReviewerStanding(r.Reviewer); Overrules(s, prev) {
			final, prev = r, s
		}
	}
	return final, prev != StandingNone
}

// FinalReviews returns, by reviewed access ([ReviewRecord].Event), the
// review that decides it ([FinalReview]), given the reviews of any
// accesses in log order.
func FinalReviews(reviews []ReviewRecord) map[string]ReviewRecord {
	byAccess := map[string][]ReviewRecord{}
	for _, r := range reviews {
		byAccess[r.Event] = append(byAccess[r.Event], r)
	}
	out := map[string]ReviewRecord{}
	for access, rs := range byAccess {
		if final, ok := FinalReview(rs); ok {
			out[access] = final
		}
	}
	return out
}

// EmergencyAccess reports whether a recorded access was an emergency
// access: its purpose is an emergency purpose of the national rules it
// was decided under ([Rules.Emergency]); when those rules are not at hand
// (rules nil), whether an emergency rule (break-glass, SAMU regulator) is
// among the grounds of its decision d.
func EmergencyAccess(rules *Rules, purpose Purpose, d Decision) bool {
	if rules != nil {
		return rules.Emergency(purpose)
	}
	for _, g := range d.Grounds {
		if g.Source == SourceRule && (g.Kind == RuleBreakGlass || g.Kind == RuleSAMURegulator) {
			return true
		}
	}
	return false
}

// LoggedRecord is the record of an event of the log, as its reader
// verified it: the event's commitment, its place in the log, and its
// payload (an access record or a review record).
type LoggedRecord struct {
	Commitment string          `json:"commitment"`
	LeafIndex  uint64          `json:"leaf_index,string"`
	Payload    json.RawMessage `json:"payload"`
}

// AccessVerdicts is what [JudgeAccesses] says of accesses and reviews.
type AccessVerdicts struct {
	// Emergency lists the commitments of the emergency accesses
	// ([EmergencyAccess]), in the order given.
	Emergency []string `json:"emergency"`
	// Final maps the commitment of each reviewed access to the
	// commitment of the review that decides it ([FinalReview]).
	Final map[string]string `json:"final"`
}

// JudgeAccesses says which of accesses were emergency accesses, and
// which of reviews decides each reviewed access. rules returns the
// national rules a decision names, or nil when they are not at hand. A
// record that does not parse counts for nothing. rules may be nil. It is the one home of
// these verdicts for vigie verify and, through cmd/verify-wasm, the
// portal.
func JudgeAccesses(accesses, reviews []LoggedRecord, rules func(Decision) *Rules) AccessVerdicts {
	out := AccessVerdicts{Emergency: []string{}, Final: map[string]string{}}
	for _, a := range accesses {
		req, d, err := ParseAccessRecord(a.Payload)
		var r *Rules
		if err == nil && rules != nil {
			r = rules(d)
		}
		if err == nil && EmergencyAccess(r, req.Purpose, d) {
			out.Emergency = append(out.Emergency, a.Commitment)
		}
	}
	sorted := slices.Clone(reviews)
	slices.SortStableFunc(sorted, func(a, b LoggedRecord) int { return cmp.Compare(a.LeafIndex, b.LeafIndex) })
	var rs []ReviewRecord
	commitment := map[ReviewRecord]string{}
	for _, r := range sorted {
		if rec, err := ParseReviewRecord(r.Payload); err == nil {
			rs = append(rs, rec)
			if _, dup := commitment[rec]; !dup {
				commitment[rec] = r.Commitment
			}
		}
	}
	for access, final := range FinalReviews(rs) {
		out.Final[access] = commitment[final]
	}
	return out
}
