package ladonpolicy

import (
	"context"
	"slices"

	"github.com/ory/ladon"
)

// The keys of a request's ladon context, as [Engine] builds it. A key is
// absent when the request has no such value (a whole-record request has no
// document keys).
const (
	KeyTime         = "time"          // int64: decision time, Unix nanoseconds
	KeyPurpose      = "purpose"       // string: HL7 ActReason code
	KeySector       = "sector"        // string: sector code
	KeyProfession   = "profession"    // string: profession code
	KeyOrganization = "organization"  // string: FINESS number
	KeyCareTeam     = "care_team"     // bool: asserted care-team membership
	KeyJustified    = "justified"     // bool: a justification was given
	KeyDocumentType = "document_type" // string: document type code
	KeyHidden       = "hidden"        // bool: the document's own hidden flag
	KeyAuthor       = "author"        // string: the author's subject, "rpps:<digits>"

	// keyRules and keyPatient carry the compiled national rules and the
	// patient's compiled consent to the Manager.
	keyRules   = "vigie.rules"
	keyPatient = "vigie.patient"
)

// Fail-safe conditions
//
// Ladon passes a condition the context value of its key, nil when the key
// is absent, and a policy applies only if all its conditions hold. A deny
// whose condition is not fulfilled for want of a value silently does not
// apply: a caller that leaves out the purpose would escape a deny scoped
// to emergency purposes. Every condition below therefore has an explicit
// result for an absent or ill-typed value, OnMissing: the engine sets it
// to true in deny policies (the deny applies) and to false in allow
// policies (the allow does not). The exceptions to a deny (SubjectIsNot,
// unlessExcepted) hold only when proven, and otherwise leave the deny in
// force.

// StringIn holds when the value is one of Values.
type StringIn struct {
	Values    []string `json:"values"`
	OnMissing bool     `json:"on_missing"`
}

// GetName returns "VigieStringIn".
func (c *StringIn) GetName() string { return "VigieStringIn" }

// Fulfills reports whether value is a string in Values, and OnMissing if
// value is not a string.
func (c *StringIn) Fulfills(_ context.Context, value any, _ *ladon.Request) bool {
	s, ok := value.(string)
	if !ok {
		return c.OnMissing
	}
	return slices.Contains(c.Values, s)
}

// StringNotIn holds when the value is not one of Values.
type StringNotIn struct {
	Values    []string `json:"values"`
	OnMissing bool     `json:"on_missing"`
}

// GetName returns "VigieStringNotIn".
func (c *StringNotIn) GetName() string { return "VigieStringNotIn" }

// Fulfills reports whether value is a string not in Values, and OnMissing
// if value is not a string.
func (c *StringNotIn) Fulfills(_ context.Context, value any, _ *ladon.Request) bool {
	s, ok := value.(string)
	if !ok {
		return c.OnMissing
	}
	return !slices.Contains(c.Values, s)
}

// StringSetNotIn is StringNotIn over a set, for the large code lists of
// the national rules.
type StringSetNotIn struct {
	Values    map[string]bool `json:"values"`
	OnMissing bool            `json:"on_missing"`
}

// GetName returns "VigieStringSetNotIn".
func (c *StringSetNotIn) GetName() string { return "VigieStringSetNotIn" }

// Fulfills reports whether value is a string not in Values, and OnMissing
// if value is not a string.
func (c *StringSetNotIn) Fulfills(_ context.Context, value any, _ *ladon.Request) bool {
	s, ok := value.(string)
	if !ok {
		return c.OnMissing
	}
	return !c.Values[s]
}

// StringEquals holds when the value is Value.
type StringEquals struct {
	Value     string `json:"value"`
	OnMissing bool   `json:"on_missing"`
}

// GetName returns "VigieStringEquals".
func (c *StringEquals) GetName() string { return "VigieStringEquals" }

// Fulfills reports whether value is the string Value, and OnMissing if
// value is not a string.
func (c *StringEquals) Fulfills(_ context.Context, value any, _ *ladon.Request) bool {
	s, ok := value.(string)
	if !ok {
		return c.OnMissing
	}
	return s == c.Value
}

// BoolIs holds when the value is Want.
type BoolIs struct {
	Want      bool `json:"want"`
	OnMissing bool `json:"on_missing"`
}

// GetName returns "VigieBoolIs".
func (c *BoolIs) GetName() string { return "VigieBoolIs" }

// Fulfills reports whether value is the bool Want, and OnMissing if value
// is not a bool.
func (c *BoolIs) Fulfills(_ context.Context, value any, _ *ladon.Request) bool {
	b, ok := value.(bool)
	if !ok {
		return c.OnMissing
	}
	return b == c.Want
}

// During holds when the value, a time in Unix nanoseconds, is in
// [From, Until); a zero bound is open. It carries a directive's validity
// period.
type During struct {
	From      int64 `json:"from"`
	Until     int64 `json:"until"`
	OnMissing bool  `json:"on_missing"`
}

// GetName returns "VigieDuring".
func (c *During) GetName() string { return "VigieDuring" }

// Fulfills reports whether value is an int64 in the period, and OnMissing
// if value is not an int64.
func (c *During) Fulfills(_ context.Context, value any, _ *ladon.Request) bool {
	t, ok := value.(int64)
	if !ok {
		return c.OnMissing
	}
	return within(t, c.From, c.Until)
}

func within(t, from, until int64) bool {
	return (from == 0 || t >= from) && (until == 0 || t < until)
}

// SubjectIsNot is an exception to a deny: it fails (so the deny does not
// apply) only when the value is the request's subject, e.g. the author of
// a hidden document reading it. An absent author is no exception.
type SubjectIsNot struct{}

// GetName returns "VigieSubjectIsNot".
func (c *SubjectIsNot) GetName() string { return "VigieSubjectIsNot" }

// Fulfills reports whether value is not a non-empty string equal to the
// request's subject.
func (c *SubjectIsNot) Fulfills(_ context.Context, value any, r *ladon.Request) bool {
	s, ok := value.(string)
	return !ok || s == "" || s != r.Subject
}

// Exception names a subject excepted from a deny during a period.
type Exception struct {
	Subject string `json:"subject"`
	From    int64  `json:"from"`
	Until   int64  `json:"until"`
}

// UnlessExcepted is an exception to a deny: it fails (so the deny does not
// apply) only when the request's subject is one of Exceptions at the
// request's time (context key "time"), e.g. the treating physician reading
// a hidden document. Without a time there is no exception. Its own key's
// value is not used.
type UnlessExcepted struct {
	Exceptions []Exception `json:"exceptions"`
}

// GetName returns "VigieUnlessExcepted".
func (c *UnlessExcepted) GetName() string { return "VigieUnlessExcepted" }

// Fulfills reports whether the request's subject is not excepted.
func (c *UnlessExcepted) Fulfills(_ context.Context, _ any, r *ladon.Request) bool {
	t, ok := r.Context[KeyTime].(int64)
	if !ok {
		return true
	}
	for _, e := range c.Exceptions {
		if e.Subject == r.Subject && within(t, e.From, e.Until) {
			return false
		}
	}
	return true
}

// unlessTreating is UnlessExcepted over a compiled consent's treating
// physician and extended-rights directives, without copying them.
type unlessTreating struct {
	c *Compiled
}

func (c *unlessTreating) GetName() string { return "VigieUnlessExcepted" }

func (c *unlessTreating) Fulfills(_ context.Context, _ any, r *ladon.Request) bool {
	t, ok := r.Context[KeyTime].(int64)
	if !ok {
		return true
	}
	return !c.c.readsHidden(r.Subject, t)
}

// MarshalJSON writes the condition as the UnlessExcepted it stands for.
func (c *unlessTreating) MarshalJSON() ([]byte, error) {
	return jsonMarshal(&UnlessExcepted{Exceptions: c.c.treatingExceptions()})
}

// keyedCondition is a condition with its context key, in a fixed order.
type keyedCondition struct {
	key  string
	cond ladon.Condition
}

// conditionLister is implemented by Vigie's policies: their conditions in
// a fixed order, without building ladon's map.
type conditionLister interface {
	conditionList() []keyedCondition
}

func conditionMap(cs []keyedCondition) ladon.Conditions {
	m := make(ladon.Conditions, len(cs))
	for _, kc := range cs {
		m[kc.key] = kc.cond
	}
	return m
}
