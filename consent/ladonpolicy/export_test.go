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

// DecodedDirective is a compiled directive's record, decoded.
type DecodedDirective struct {
	From, Until       int64
	ID, Subject, Arg  string
	Kind              string
	HasGeneralPattern bool
}

// Decode decodes every directive of c.
func Decode(c *Compiled) []DecodedDirective {
	var out []DecodedDirective
	for i := range int(c.n) {
		d := c.dir(i)
		out = append(out, DecodedDirective{
			From: d.from, Until: d.until, ID: c.str(d.id), Subject: c.str(d.subj), Arg: c.str(d.arg),
			Kind: string(kindNames[d.kind]), HasGeneralPattern: d.pat != 0,
		})
	}
	return out
}
