//go:build js && wasm

package main

import (
	"encoding/json"
	"syscall/js"

	"github.com/vigie-sante/vigie/consent"
)

// accessesInput is what vigieAccesses takes: verified access and review
// events (their commitment, leaf_index and payload, as the reports of
// vigieVerify give them), and the national rules the pages fetched, by
// version (their bytes, base64).
type accessesInput struct {
	Accesses []consent.LoggedRecord `json:"accesses"`
	Reviews  []consent.LoggedRecord `json:"reviews"`
	Rules    map[int64][]byte       `json:"rules"`
}

// init defines vigieAccesses(json), accessesInput -> consent.AccessVerdicts:
// which accesses were emergency accesses, and which review decides each
// reviewed access, by consent.JudgeAccesses, as vigie verify says it. A
// version of the rules whose SHA-256 is not the one a decision names is
// not used for it.
func init() {
	js.Global().Set("vigieAccesses", js.FuncOf(func(_ js.Value, args []js.Value) any {
		var in accessesInput
		return run(args, &in, func() any {
			parsed := consent.RulesParser{}
			return consent.JudgeAccesses(in.Accesses, in.Reviews, func(d consent.Decision) *consent.Rules {
				b, ok := in.Rules[d.RulesVersion]
				if !ok {
					return nil
				}
				return parsed.Of(b, &d)
			})
		})
	}))
}

// run decodes the one JSON string argument into in and returns verify's
// result as JSON, or an error report naming the problem.
func run(args []js.Value, in any, verify func() any) any {
	if len(args) != 1 || args[0].Type() != js.TypeString {
		return mustJSON(errorReport("want one argument: a JSON string"))
	}
	if err := json.Unmarshal([]byte(args[0].String()), in); err != nil {
		return mustJSON(errorReport("input: " + err.Error()))
	}
	return mustJSON(verify())
}
