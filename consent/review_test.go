package consent_test

import (
	"testing"

	"github.com/vigie-sante/vigie/consent"
)

func TestOverrules(t *testing.T) {
	for _, tc := range []struct {
		name     string
		s, prev  consent.Standing
		overrule bool
	}{
		{"a DPO first", consent.StandingDPO, consent.StandingNone, true},
		{"a regulator first", consent.StandingRegulator, consent.StandingNone, true},
		{"a regulator after a DPO", consent.StandingRegulator, consent.StandingDPO, true},
		{"a DPO after a DPO", consent.StandingDPO, consent.StandingDPO, false},
		{"a DPO after a regulator", consent.StandingDPO, consent.StandingRegulator, false},
		{"a regulator after a regulator", consent.StandingRegulator, consent.StandingRegulator, false},
		{"no reviewer", consent.StandingNone, consent.StandingNone, false},
	} {
		if got := consent.Overrules(tc.s, tc.prev); got != tc.overrule {
			t.Errorf("%s: Overrules(%d, %d) = %v, want %v", tc.name, tc.s, tc.prev, got, tc.overrule)
		}
	}
}

func TestReviewerStanding(t *testing.T) {
	for reviewer, want := range map[string]consent.Standing{
		"dpo:dpo-a": consent.StandingDPO, "regulator:cnil": consent.StandingRegulator,
		"dpo:": consent.StandingNone, "dpo": consent.StandingNone, "admin:ops": consent.StandingNone, "patient": consent.StandingNone, "": consent.StandingNone,
		"regulatorx:cnil": consent.StandingNone,
	} {
		if got := consent.ReviewerStanding(reviewer); got != want {
			t.Errorf("ReviewerStanding(%q) = %d, want %d", reviewer, got, want)
		}
	}
}

func TestFinalReview(t *testing.T) {
	const ev = "df96f12938282d14a2819b6ef61d678e615f4b956959ffef57a0c72ce6670334"
	rv := func(reviewer, verdict string) consent.ReviewRecord {
		return consent.ReviewRecord{Event: ev, LeafIndex: 1, Verdict: verdict, Reviewer: reviewer}
	}
	dpoOK, dpoKO := rv("dpo:a", consent.VerdictJustified), rv("dpo:b", consent.VerdictUnjustified)
	cnilOK, cnilKO := rv("regulator:cnil", consent.VerdictJustified), rv("regulator:cnil2", consent.VerdictUnjustified)
	for _, tc := range []struct {
		name    string
		reviews []consent.ReviewRecord
		want    *consent.ReviewRecord
	}{
		{"none", nil, nil},
		{"one DPO", []consent.ReviewRecord{dpoOK}, &dpoOK},
		{"the first DPO decides", []consent.ReviewRecord{dpoOK, dpoKO}, &dpoOK},
		{"a regulator overrules", []consent.ReviewRecord{dpoOK, cnilKO}, &cnilKO},
		{"a DPO after a regulator is ignored", []consent.ReviewRecord{cnilOK, dpoKO}, &cnilOK},
		{"the first regulator is final", []consent.ReviewRecord{dpoKO, cnilOK, cnilKO, dpoOK}, &cnilOK},
		{"no reviewer is ignored", []consent.ReviewRecord{rv("admin:ops", consent.VerdictUnjustified)}, nil},
	} {
		got, ok := consent.FinalReview(tc.reviews)
		switch {
		case tc.want == nil && ok:
			t.Errorf("%s: FinalReview = %+v, want none", tc.name, got)
		case tc.want != nil && (!ok || got != *tc.want):
			t.Errorf("%s: FinalReview = %+v, %v; want %+v", tc.name, got, ok, *tc.want)
		}
	}
}
