package consent

import (
	"errors"
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
