package ladonpolicy

import (
	"context"
	"fmt"

	"github.com/ory/ladon"
)

// policyMatcher is ladon's (unexported) matcher interface.
type policyMatcher interface {
	Matches(p ladon.Policy, haystack []string, needle string) (bool, error)
}

// outcome collects the policies that apply to a request.
type outcome struct {
	denies, allows []ladon.Policy
}

func (o *outcome) reset() {
	clear(o.denies)
	clear(o.allows)
	o.denies, o.allows = o.denies[:0], o.allows[:0]
}

// allowed is ladon's combining rule: deny overrides, and without an allow
// the default is deny.
func (o *outcome) allowed() bool { return len(o.denies) == 0 && len(o.allows) > 0 }

// evaluate is ladon's Ladon.DoPoliciesAllow loop, with the same semantics:
// a policy applies when its actions, subjects and resources match (in that
// order) and all its conditions hold; any applying deny denies; otherwise
// any applying allow allows; otherwise the request is denied. It differs
// in what it does not do: it starts no goroutine (ladon starts one for the
// Metric on every deny and no-match), it does not stop at the first deny
// (a decision names every denying ground), and it reads the conditions of
// Vigie's policies in a fixed order without building ladon's map.
//
// A matcher error ends the evaluation with that error; the caller denies.
func evaluate(ctx context.Context, m policyMatcher, r *ladon.Request, policies []ladon.Policy, out *outcome) error {
	for _, p := range policies {
		if ok, err := m.Matches(p, p.GetActions(), r.Action); err != nil {
			return err
		} else if !ok {
			continue
		}
		if ok, err := m.Matches(p, p.GetSubjects(), r.Subject); err != nil {
			return err
		} else if !ok {
			continue
		}
		if ok, err := m.Matches(p, p.GetResources(), r.Resource); err != nil {
			return err
		} else if !ok {
			continue
		}
		if !passesConditions(ctx, p, r) {
			continue
		}
		if p.AllowAccess() {
			out.allows = append(out.allows, p)
		} else {
			out.denies = append(out.denies, p)
		}
	}
	return nil
}

func passesConditions(ctx context.Context, p ladon.Policy, r *ladon.Request) bool {
	if cl, ok := p.(conditionLister); ok {
		for _, kc := range cl.conditionList() {
			if !kc.cond.Fulfills(ctx, r.Context[kc.key], r) {
				return false
			}
		}
		return true
	}
	for key, c := range p.GetConditions() {
		if !c.Fulfills(ctx, r.Context[key], r) {
			return false
		}
	}
	return true
}

// Warden is a ladon.Warden on a [Manager] and a [Matcher], evaluating with
// Vigie's combining loop: ladon's semantics (deny overrides, default deny,
// the same matching and conditions) without its traps — no per-request
// regular expression compilation, no goroutine per denial, and no lazily
// written field shared between goroutines. Safe for concurrent use.
type Warden struct {
	Manager *Manager
}

var _ ladon.Warden = (*Warden)(nil)

// IsAllowed returns nil if r is allowed, and otherwise an error that
// errors.Is ladon.ErrRequestForcefullyDenied (a deny applied) or
// ladon.ErrRequestDenied (nothing allowed), as ladon does; or the error of
// a pattern that could not be matched.
func (w *Warden) IsAllowed(ctx context.Context, r *ladon.Request) error {
	allowed, denies, err := w.Evaluate(ctx, r)
	switch {
	case err != nil:
		return err
	case allowed:
		return nil
	case len(denies) > 0:
		return fmt.Errorf("ladonpolicy: %w", ladon.ErrRequestForcefullyDenied)
	}
	return fmt.Errorf("ladonpolicy: %w", ladon.ErrRequestDenied)
}

// Evaluate decides r and returns the deciding policies: the allowing ones
// if allowed, else the denying ones (none for a default deny).
func (w *Warden) Evaluate(ctx context.Context, r *ladon.Request) (allowed bool, deciders []ladon.Policy, err error) {
	cands := w.Manager.appendCandidates(nil, r, nil)
	var out outcome
	if err := evaluate(ctx, Matcher{}, r, cands, &out); err != nil {
		return false, nil, err
	}
	if out.allowed() {
		return true, out.allows, nil
	}
	return false, out.denies, nil
}

// NewLadon returns a stock ladon.Ladon on m with every hook set: Matcher
// (the [Matcher]: patterns compiled at write time), AuditLogger (al, or
// ladon's no-op logger) and Metric (ladon's no-op). Ladon writes its
// Metric field lazily on first use when it is nil, a data race between
// concurrent IsAllowed calls; setting all three avoids it. Stock
// DoPoliciesAllow still starts a goroutine for every deny and no-match:
// the Engine and the [Warden] use their own loop instead.
func NewLadon(m *Manager, al ladon.AuditLogger) *ladon.Ladon {
	if al == nil {
		al = &ladon.AuditLoggerNoOp{}
	}
	return &ladon.Ladon{Manager: m, Matcher: Matcher{}, AuditLogger: al, Metric: &ladon.MetricNoOp{}}
}
