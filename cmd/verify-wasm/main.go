//go:build js && wasm

// Command verify-wasm is Vigie's verifier for browsers: package
// ledger/verify/report, the JSON face of ledger/audit and ledger/verify,
// built for GOOS=js GOARCH=wasm. It defines one global object,
// vigieVerify, whose functions take JSON strings and return a Promise of
// a JSON string:
//
//	vigieVerify.history(json, fetch)  report.HistoryInput -> report.HistoryReport
//	vigieVerify.log(json, fetch)      report.LogInput     -> report.LogReport
//	vigieVerify.events(json)          report.EventsInput  -> report.HistoryReport
//
// fetch(path) is the page's access to the API: it returns a Promise of
// {status, text}, the HTTP status and body of GET path (report.Fetch).
// The verifier asks what it needs through it; the page parses nothing.
// Then it sets vigieVerify.ready = true and waits forever. The patient
// portal (api/gateway/portal) embeds the build; `go generate
// ./api/gateway/portal` rebuilds it, and a test there checks that the
// embedded build is this code's.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"syscall/js"

	"github.com/vigie-sante/vigie/ledger/verify/report"
)

func main() {
	api := js.Global().Get("Object").New()
	api.Set("history", async(func(ctx context.Context, in []byte, fetch report.Fetch) any {
		var hi report.HistoryInput
		if err := json.Unmarshal(in, &hi); err != nil {
			return errorReport("input: " + err.Error())
		}
		return report.VerifyHistory(ctx, hi, fetch)
	}))
	api.Set("log", async(func(ctx context.Context, in []byte, fetch report.Fetch) any {
		var li report.LogInput
		if err := json.Unmarshal(in, &li); err != nil {
			return errorReport("input: " + err.Error())
		}
		return report.VerifyLog(ctx, li, fetch)
	}))
	api.Set("events", async(func(_ context.Context, in []byte, _ report.Fetch) any {
		var ei report.EventsInput
		if err := json.Unmarshal(in, &ei); err != nil {
			return errorReport("input: " + err.Error())
		}
		return report.VerifyEvents(ei)
	}))
	api.Set("ready", true)
	js.Global().Set("vigieVerify", api)
	select {}
}

// async wraps verify as a JavaScript function of a JSON string and an
// optional fetch function, returning a Promise of the report as a JSON
// string. verify runs on its own goroutine: it may wait for fetch's
// promises.
func async(verify func(ctx context.Context, in []byte, fetch report.Fetch) any) js.Func {
	return js.FuncOf(func(_ js.Value, args []js.Value) any {
		var exec js.Func
		exec = js.FuncOf(func(_ js.Value, pa []js.Value) any {
			resolve := pa[0]
			go func() {
				if len(args) < 1 || args[0].Type() != js.TypeString {
					resolve.Invoke(mustJSON(errorReport("want a JSON string, then a fetch function")))
					return
				}
				var fetch report.Fetch
				if len(args) > 1 && args[1].Type() == js.TypeFunction {
					fetch = fetcher(args[1])
				} else {
					fetch = func(context.Context, string) (int, []byte, error) {
						return 0, nil, errors.New("no fetch function given")
					}
				}
				resolve.Invoke(mustJSON(verify(context.Background(), []byte(args[0].String()), fetch)))
			}()
			return nil
		})
		defer exec.Release() // the Promise calls it at once
		return js.Global().Get("Promise").New(exec)
	})
}

// fetcher calls the page's fetch(path) and waits for its promise of
// {status, text}.
func fetcher(fn js.Value) report.Fetch {
	return func(ctx context.Context, path string) (int, []byte, error) {
		type result struct {
			v   js.Value
			err error
		}
		ch := make(chan result, 1)
		then := js.FuncOf(func(_ js.Value, a []js.Value) any {
			ch <- result{v: a[0]}
			return nil
		})
		defer then.Release()
		catch := js.FuncOf(func(_ js.Value, a []js.Value) any {
			msg := "fetch failed"
			if len(a) > 0 {
				msg = a[0].Call("toString").String()
			}
			ch <- result{err: errors.New(msg)}
			return nil
		})
		defer catch.Release()
		fn.Invoke(path).Call("then", then, catch)
		select {
		case r := <-ch:
			if r.err != nil {
				return 0, nil, r.err
			}
			return r.v.Get("status").Int(), []byte(r.v.Get("text").String()), nil
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		}
	}
}

func mustJSON(v any) string {
	out, err := json.Marshal(v)
	if err != nil {
		return mustJSON(errorReport("output: " + err.Error()))
	}
	return string(out)
}

func errorReport(problem string) map[string]any {
	return map[string]any{"ok": false, "problems": []string{problem}}
}
