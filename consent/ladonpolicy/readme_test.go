package ladonpolicy_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ory/ladon"
	"github.com/ory/ladon/manager/memory"

	"github.com/vigie-sante/vigie/consent/ladonpolicy"
)

// The policies and requests of ladon's README and ladon_test.go, with one
// request per condition type the README documents.
var readmePolicies = []ladon.Policy{
	&ladon.DefaultPolicy{
		ID:          "readme",
		Description: "One policy to rule them all.",
		Subjects:    []string{"users:<peter|ken>", "users:maria", "groups:admins"},
		Actions:     []string{"delete", "<create|update>"},
		Effect:      ladon.AllowAccess,
		Resources:   []string{"resources:articles:<.*>", "resources:printer"},
		Conditions:  ladon.Conditions{"remoteIP": &ladon.CIDRCondition{CIDR: "192.168.0.1/16"}},
	},
	&ladon.DefaultPolicy{
		ID:        "0",
		Subjects:  []string{"max", "peter", "<zac|ken>"},
		Resources: []string{"myrn:some.domain.com:resource:123", "myrn:some.domain.com:resource:345", "myrn:something:foo:<.+>"},
		Actions:   []string{"<create|delete>", "get"},
		Effect:    ladon.AllowAccess,
		Conditions: ladon.Conditions{
			"owner":    &ladon.EqualsSubjectCondition{},
			"clientIP": &ladon.CIDRCondition{CIDR: "127.0.0.1/32"},
		},
	},
	&ladon.DefaultPolicy{ID: "1", Subjects: []string{"max"}, Actions: []string{"update"}, Resources: []string{"<.*>"}, Effect: ladon.AllowAccess},
	&ladon.DefaultPolicy{ID: "3", Subjects: []string{"max"}, Actions: []string{"broadcast"}, Resources: []string{"<.*>"}, Effect: ladon.DenyAccess},
	&ladon.DefaultPolicy{ID: "2", Subjects: []string{"max"}, Actions: []string{"random"}, Resources: []string{"<.*>"}, Effect: ladon.DenyAccess},
	&ladon.DefaultPolicy{ID: "4", Subjects: []string{"swen"}, Actions: []string{"update"}, Resources: []string{"myrn:some.domain.com:resource:<(protected)?[0-9]+>"}, Effect: ladon.AllowAccess},
	&ladon.DefaultPolicy{ID: "5", Subjects: []string{"richard"}, Actions: []string{"update"}, Resources: []string{"myrn:some.domain.com:resource:<[[:digit:]]+>"}, Effect: ladon.AllowAccess},
	// Deny overrides: max may read reports, except the secret one.
	&ladon.DefaultPolicy{ID: "6", Subjects: []string{"max"}, Actions: []string{"read"}, Resources: []string{"reports:<.*>"}, Effect: ladon.AllowAccess},
	&ladon.DefaultPolicy{ID: "7", Subjects: []string{"<.*>"}, Actions: []string{"read"}, Resources: []string{"reports:secret"}, Effect: ladon.DenyAccess},
	// The README's conditions.
	&ladon.DefaultPolicy{ID: "c-equal", Subjects: []string{"carl"}, Actions: []string{"equal"}, Resources: []string{"r"}, Effect: ladon.AllowAccess,
		Conditions: ladon.Conditions{"some-arbitrary-key": &ladon.StringEqualCondition{Equals: "the-value-should-be-this"}}},
	&ladon.DefaultPolicy{ID: "c-bool", Subjects: []string{"carl"}, Actions: []string{"bool"}, Resources: []string{"r"}, Effect: ladon.AllowAccess,
		Conditions: ladon.Conditions{"some-arbitrary-key": &ladon.BooleanCondition{BooleanValue: true}}},
	&ladon.DefaultPolicy{ID: "c-match", Subjects: []string{"carl"}, Actions: []string{"match"}, Resources: []string{"r"}, Effect: ladon.AllowAccess,
		Conditions: ladon.Conditions{"some-arbitrary-key": &ladon.StringMatchCondition{Matches: "regex-pattern-here.+"}}},
	&ladon.DefaultPolicy{ID: "c-subject", Subjects: []string{"peter"}, Actions: []string{"subject"}, Resources: []string{"r"}, Effect: ladon.AllowAccess,
		Conditions: ladon.Conditions{"some-arbitrary-key": &ladon.EqualsSubjectCondition{}}},
	&ladon.DefaultPolicy{ID: "c-pairs", Subjects: []string{"carl"}, Actions: []string{"pairs"}, Resources: []string{"r"}, Effect: ladon.AllowAccess,
		Conditions: ladon.Conditions{"some-arbitrary-key": &ladon.StringPairsEqualCondition{}}},
	&ladon.DefaultPolicy{ID: "c-contains", Subjects: []string{"carl"}, Actions: []string{"contains"}, Resources: []string{"rn:city:laholm:part:north"}, Effect: ladon.AllowAccess,
		Conditions: ladon.Conditions{"some-arbitrary-key": &ladon.ResourceContainsCondition{}}},
}

var readmeRequests = []struct {
	name string
	r    ladon.Request
}{
	{"readme peter from the LAN", ladon.Request{Subject: "users:peter", Action: "delete", Resource: "resources:articles:ladon-introduction", Context: ladon.Context{"remoteIP": "192.168.0.5"}}},
	{"readme peter from outside", ladon.Request{Subject: "users:peter", Action: "delete", Resource: "resources:articles:ladon-introduction", Context: ladon.Context{"remoteIP": "10.0.0.5"}}},
	{"readme ken updates the printer", ladon.Request{Subject: "users:ken", Action: "update", Resource: "resources:printer", Context: ladon.Context{"remoteIP": "192.168.1.1"}}},
	{"readme maria reads", ladon.Request{Subject: "users:maria", Action: "read", Resource: "resources:printer", Context: ladon.Context{"remoteIP": "192.168.1.1"}}},
	{"bad client ip", ladon.Request{Subject: "peter", Action: "delete", Resource: "myrn:some.domain.com:resource:123", Context: ladon.Context{"owner": "peter", "clientIP": "0.0.0.0"}}},
	{"wrong owner", ladon.Request{Subject: "peter", Action: "delete", Resource: "myrn:some.domain.com:resource:123", Context: ladon.Context{"owner": "zac", "clientIP": "127.0.0.1"}}},
	{"owner and ip match", ladon.Request{Subject: "peter", Action: "delete", Resource: "myrn:some.domain.com:resource:123", Context: ladon.Context{"owner": "peter", "clientIP": "127.0.0.1"}}},
	{"zac by regex", ladon.Request{Subject: "zac", Action: "create", Resource: "myrn:something:foo:bar", Context: ladon.Context{"owner": "zac", "clientIP": "127.0.0.1"}}},
	{"max updates all", ladon.Request{Subject: "max", Action: "update", Resource: "myrn:some.domain.com:resource:123"}},
	{"max updates empty", ladon.Request{Subject: "max", Action: "update", Resource: ""}},
	{"max broadcasts", ladon.Request{Subject: "max", Action: "broadcast", Resource: "myrn:some.domain.com:resource:123"}},
	{"max broadcasts empty", ladon.Request{Subject: "max", Action: "broadcast"}},
	{"swen updates", ladon.Request{Subject: "swen", Action: "update", Resource: "myrn:some.domain.com:resource:123"}},
	{"swen protected", ladon.Request{Subject: "swen", Action: "update", Resource: "myrn:some.domain.com:resource:protected123"}},
	{"richard alnum", ladon.Request{Subject: "richard", Action: "update", Resource: "myrn:some.domain.com:resource:protected123"}},
	{"richard digits", ladon.Request{Subject: "richard", Action: "update", Resource: "myrn:some.domain.com:resource:25222"}},
	{"max reads a report", ladon.Request{Subject: "max", Action: "read", Resource: "reports:q3"}},
	{"deny overrides on the secret report", ladon.Request{Subject: "max", Action: "read", Resource: "reports:secret"}},
	{"string equal", ladon.Request{Subject: "carl", Action: "equal", Resource: "r", Context: ladon.Context{"some-arbitrary-key": "the-value-should-be-this"}}},
	{"string equal other value", ladon.Request{Subject: "carl", Action: "equal", Resource: "r", Context: ladon.Context{"some-arbitrary-key": "some other value"}}},
	{"string equal other key", ladon.Request{Subject: "carl", Action: "equal", Resource: "r", Context: ladon.Context{"same value but other key": "the-value-should-be-this"}}},
	{"boolean", ladon.Request{Subject: "carl", Action: "bool", Resource: "r", Context: ladon.Context{"some-arbitrary-key": true}}},
	{"boolean false", ladon.Request{Subject: "carl", Action: "bool", Resource: "r", Context: ladon.Context{"some-arbitrary-key": false}}},
	{"string match", ladon.Request{Subject: "carl", Action: "match", Resource: "r", Context: ladon.Context{"some-arbitrary-key": "regex-pattern-here111"}}},
	{"string match fails", ladon.Request{Subject: "carl", Action: "match", Resource: "r", Context: ladon.Context{"some-arbitrary-key": "regex-pattern-here"}}},
	{"subject", ladon.Request{Subject: "peter", Action: "subject", Resource: "r", Context: ladon.Context{"some-arbitrary-key": "peter"}}},
	{"subject other", ladon.Request{Subject: "peter", Action: "subject", Resource: "r", Context: ladon.Context{"some-arbitrary-key": "max"}}},
	{"string pairs", ladon.Request{Subject: "carl", Action: "pairs", Resource: "r", Context: ladon.Context{"some-arbitrary-key": []interface{}{[]interface{}{"a", "a"}, []interface{}{"b", "b"}}}}},
	{"string pairs differ", ladon.Request{Subject: "carl", Action: "pairs", Resource: "r", Context: ladon.Context{"some-arbitrary-key": []interface{}{[]interface{}{"a", "b"}}}}},
	{"resource contains", ladon.Request{Subject: "carl", Action: "contains", Resource: "rn:city:laholm:part:north", Context: ladon.Context{"some-arbitrary-key": map[string]interface{}{"delimiter": ":", "value": "part:north"}}}},
	{"resource contains other part", ladon.Request{Subject: "carl", Action: "contains", Resource: "rn:city:laholm:part:north", Context: ladon.Context{"some-arbitrary-key": map[string]interface{}{"delimiter": ":", "value": "part:west"}}}},
	{"empty request", ladon.Request{}},
}

// nonRE2Policies are policies of ladon's README whose patterns are not
// RE2: the Manager refuses them (Vigie matches in linear time, with Go's
// regexp), where stock ladon's backtracking engine accepts them.
var nonRE2Policies = []ladon.Policy{
	&ladon.DefaultPolicy{ID: "4", Subjects: []string{"swen"}, Actions: []string{"update"}, Resources: []string{"myrn:some.domain.com:resource:<(?!protected).*>"}, Effect: ladon.AllowAccess},
	&ladon.DefaultPolicy{ID: "backref", Subjects: []string{"swen"}, Actions: []string{"update"}, Resources: []string{"r:<(a)\\1>"}, Effect: ladon.AllowAccess},
}

func TestManagerRefusesNonRE2(t *testing.T) {
	m := ladonpolicy.NewManager()
	for _, p := range nonRE2Policies {
		if err := m.Create(context.Background(), p); err == nil {
			t.Errorf("Manager.Create(%s) = nil, want an error", p.GetID())
		}
	}
}

// errKind classifies a warden's answer as ladon does.
func errKind(err error) string {
	switch {
	case err == nil:
		return "allowed"
	case errors.Is(err, ladon.ErrRequestForcefullyDenied):
		return "forcefully denied"
	case errors.Is(err, ladon.ErrRequestDenied):
		return "denied"
	}
	return "error: " + err.Error()
}

// TestReadmeSemantics checks that ladon's own examples give the same
// answers through Vigie's adapter (Manager, Matcher and combining loop) as
// through stock ladon (memory manager, default matcher).
func TestReadmeSemantics(t *testing.T) {
	ctx := context.Background()
	stock := &ladon.Ladon{Manager: memory.NewMemoryManager(), AuditLogger: &ladon.AuditLoggerNoOp{}, Metric: &ladon.MetricNoOp{}}
	ours := &ladonpolicy.Warden{Manager: ladonpolicy.NewManager()}
	stockOnOurs := ladonpolicy.NewLadon(ours.Manager, nil)
	for _, p := range readmePolicies {
		if err := stock.Manager.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		if err := ours.Manager.Create(ctx, p); err != nil {
			t.Fatalf("Manager.Create(%s) = %v", p.GetID(), err)
		}
	}
	allowed := 0
	for _, tt := range readmeRequests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.r
			want := errKind(stock.IsAllowed(ctx, &r))
			if got := errKind(ours.IsAllowed(ctx, &r)); got != want {
				t.Errorf("Warden.IsAllowed(%s) = %s, want %s (stock ladon)", tt.name, got, want)
			}
			if got := errKind(stockOnOurs.IsAllowed(ctx, &r)); got != want {
				t.Errorf("ladon on Manager (%s) = %s, want %s (stock ladon)", tt.name, got, want)
			}
			if want == "allowed" {
				allowed++
			}
		})
	}
	if allowed < 8 || allowed == len(readmeRequests) {
		t.Errorf("%d of %d examples allowed: the table does not exercise both answers", allowed, len(readmeRequests))
	}
}
