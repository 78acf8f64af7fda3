// Package ladonpolicy decides consent requests with [ory/ladon]: a
// patient's directives and the national rules compile to ladon policies
// (allow or deny, with subjects, actions, resources and conditions), and
// ladon's combining rule decides — deny overrides, default deny. It is
// the only package of Vigie that imports ladon. The semantics, with the
// table of cases, are in docs/consent.md.
//
// [Engine] implements consent.Engine. It compiles each patient's consent
// once per version into a compact, pointer-free [Compiled] form, cached by
// version, whose ladon policies are views built on demand without
// allocation; it evaluates them with ladon's Policy, Matcher and Condition
// types in its own combining loop, which has ladon's semantics (tests
// compare it with stock ladon.Ladon on the same policies).
//
// Ladon v1.3.0 has known traps; each is handled here and tested:
//
//   - Manager.FindRequestCandidates may return a superset, and the stock
//     memory manager returns every policy: [Manager] returns the
//     patient's policies and the national rules' from indexes.
//   - The default matcher compiles patterns per request in a 512-entry
//     cache, for a backtracking engine (dlclark/regexp2) that takes
//     exponential time on expressions such as (a+)+b and gives up with
//     an error after 250 ms: [Matcher] never compiles, and matches with
//     Go's regexp in linear time; patterns are compiled when their policy
//     is written ([Pattern]).
//   - Ladon.metric() writes the Metric field lazily, a data race:
//     [NewLadon] sets Metric, AuditLogger and Matcher.
//   - DoPoliciesAllow starts a goroutine per deny and no-match, and
//     passes the deciding policies only to the audit logger: the engine
//     and [Warden] use their own loop.
//   - A conditional deny whose context key is missing silently does not
//     apply: the conditions here are fail-safe (see [StringIn]); the
//     exceptions to a deny ([SubjectIsNot], [UnlessExcepted]) hold only
//     when proven.
//
// [ory/ladon]: https://github.com/ory/ladon
package ladonpolicy
