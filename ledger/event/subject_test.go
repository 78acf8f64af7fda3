package event

import (
	"errors"
	"testing"
)

func TestAPIName(t *testing.T) {
	for _, tc := range []struct {
		kind Kind
		name string
	}{
		{"", "EVENT_KIND_UNSPECIFIED"},
		{KindAccess, "EVENT_KIND_ACCESS"},
		{KindConsentChange, "EVENT_KIND_CONSENT_CHANGE"},
		{KindBreakGlassReview, "EVENT_KIND_BREAK_GLASS_REVIEW"},
		{"enrolment", "EVENT_KIND_ENROLMENT"},
	} {
		if got := tc.kind.APIName(); got != tc.name {
			t.Errorf("Kind(%q).APIName() = %q, want %q", tc.kind, got, tc.name)
		}
		if got, ok := KindOfAPIName(tc.name); !ok || got != tc.kind {
			t.Errorf("KindOfAPIName(%q) = %q, %v, want %q, true", tc.name, got, ok, tc.kind)
		}
	}
	for _, bad := range []string{"ACCESS", "access", "EVENT_KIND_", "EVENT_KIND_access", "EVENT_KIND_A1", "7"} {
		if got, ok := KindOfAPIName(bad); ok {
			t.Errorf("KindOfAPIName(%q) = %q, true, want false", bad, got)
		}
	}
}

func TestReadSubject(t *testing.T) {
	for _, tc := range []struct {
		name    string
		kind    Kind
		payload string
		want    Subject
		err     error
	}{
		{"access", KindAccess, `{"format":"vigie.access.v1","request":{"actor":{"rpps":"10000000003","organization":"750712184","care_team":true}}}`,
			Subject{Actor: "10000000003", Organization: "750712184"}, nil},
		{"access without actor", KindAccess, `{"n":1}`, Subject{}, ErrNoSubject},
		{"access with a number", KindAccess, `{"request":{"actor":{"rpps":1,"organization":"750712184"}}}`, Subject{}, ErrNoSubject},
		{"review by a DPO", KindBreakGlassReview, `{"format":"vigie.break-glass-review.v2","organization":"750712184","reviewer":"dpo:a"}`,
			Subject{Organization: "750712184"}, nil},
		{"review by a regulator", KindBreakGlassReview, `{"format":"vigie.break-glass-review.v2","reviewer":"regulator:cnil"}`,
			Subject{OrganizationOpen: true}, nil},
		{"ledger read", KindLedgerRead, `{"organizations":["750712184"]}`, Subject{}, nil},
		{"consent change", KindConsentChange, `{}`, Subject{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadSubject(&Body{Kind: tc.kind, Payload: []byte(tc.payload)})
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Errorf("ReadSubject = %+v, %v, want %+v, %v", got, err, tc.want, tc.err)
			}
		})
	}
}
