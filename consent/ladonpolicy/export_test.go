package ladonpolicy

import "github.com/ory/ladon"

// CompileCount returns how many consents e has compiled.
func CompileCount(e *Engine) int64 { return e.compiles.Load() }

// Candidates returns the candidate policies of a ladon request built by
// e.LadonRequest.
func Candidates(e *Engine, lr *ladon.Request) []ladon.Policy {
	return e.manager.appendCandidates(nil, lr, nil)
}

// RulePolicyCount returns how many policies the national rules compiled
// to in e.
func RulePolicyCount(e *Engine, lr *ladon.Request) int {
	cr := lr.Context[keyRules].(*compiledRules)
	n := len(cr.always) + len(cr.matrix) + 4
	for _, ps := range cr.bySector {
		n += len(ps)
	}
	return n
}
