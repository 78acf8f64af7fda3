//go:build js && wasm

// Command verify-wasm is Vigie's verifier for browsers: package
// ledger/verify/report (and so ledger/verify) built for GOOS=js
// GOARCH=wasm. It defines one global object, vigieVerify, whose functions
// take and return JSON strings:
//
//	vigieVerify.history(json)  report.HistoryInput -> report.HistoryReport
//	vigieVerify.events(json)   report.EventsInput  -> report.HistoryReport
//	vigieVerify.series(json)   report.SeriesInput  -> report.SeriesReport
//
// then sets vigieVerify.ready = true and waits forever. The patient
// portal (api/gateway/portal) embeds the build; `go generate
// ./api/gateway/portal` rebuilds it, and a test there checks that the
// embedded build is this code's.
package main

import (
	"encoding/json"
	"syscall/js"

	"github.com/vigie-sante/vigie/ledger/verify/report"
)

func main() {
	api := js.Global().Get("Object").New()
	api.Set("history", js.FuncOf(func(_ js.Value, args []js.Value) any {
		var in report.HistoryInput
		return run(args, &in, func() any { return report.VerifyHistory(in) })
	}))
	api.Set("events", js.FuncOf(func(_ js.Value, args []js.Value) any {
		var in report.EventsInput
		return run(args, &in, func() any { return report.VerifyEvents(in) })
	}))
	api.Set("series", js.FuncOf(func(_ js.Value, args []js.Value) any {
		var in report.SeriesInput
		return run(args, &in, func() any { return report.VerifySeries(in) })
	}))
	api.Set("ready", true)
	js.Global().Set("vigieVerify", api)
	select {}
}

// run decodes the JSON string argument into in, calls verify, and returns
// its report as a JSON string; a bad input is a report with one problem.
func run(args []js.Value, in any, verify func() any) any {
	if len(args) != 1 || args[0].Type() != js.TypeString {
		return errorReport("want one argument: a JSON string")
	}
	if err := json.Unmarshal([]byte(args[0].String()), in); err != nil {
		return errorReport("input: " + err.Error())
	}
	out, err := json.Marshal(verify())
	if err != nil {
		return errorReport("output: " + err.Error())
	}
	return string(out)
}

func errorReport(problem string) string {
	b, _ := json.Marshal(map[string]any{"ok": false, "problems": []string{problem}})
	return string(b)
}
