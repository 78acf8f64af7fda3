package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/audit/audittest"
	"github.com/vigie-sante/vigie/ledger/event"
)

// TestCorpusThreeFaces runs the golden corpus (ledger/audit/audittest)
// through the three faces of the verifier, the Go API, the command
// `vigie verify` and the WebAssembly build in Chromium, and checks that
// each reaches the verdict the corpus wants (the kinds of its findings),
// the same for all three.
func TestCorpusThreeFaces(t *testing.T) {
	cases, err := audittest.LoadCorpus()
	if err != nil {
		t.Fatal(err)
	}
	// One server for every case: the API of case c under /case/c, the
	// portal's static files (the verifier's build) under /static/.
	mux := http.NewServeMux()
	for i := range cases {
		prefix := "/case/" + cases[i].Name
		mux.Handle(prefix+"/", http.StripPrefix(prefix, cases[i].Handler()))
	}
	mux.Handle("/static/", http.StripPrefix("/static/", http.FileServer(http.Dir(filepath.Join("..", "..", "api", "gateway", "portal", "static")))))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html lang="en"><title>corpus</title><script src="/static/wasm_exec.js"></script><main></main></html>`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	verdicts := map[string]map[string][]audit.Kind{"go": {}, "cli": {}, "wasm": {}}
	now := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	for _, c := range cases {
		// The Go API.
		p, err := audit.PinKeys(c.Keys, audit.PublicKeys{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.FollowTransitions(c.Transitions); err != nil {
			t.Fatal(err)
		}
		opts := c.Saved().Options(p)
		opts.Now = func() time.Time { return now }
		r, err := audit.VerifyHistory(context.Background(), c.Source(), opts)
		if err != nil {
			t.Fatalf("%s: VerifyHistory: %v", c.Name, err)
		}
		verdicts["go"][c.Name] = audittest.Kinds(r.Findings)

		// The command line, against the case's API over HTTP.
		verdicts["cli"][c.Name] = runVerifyCorpus(t, srv.URL+"/case/"+c.Name, &c)
	}

	t.Run("wasm", func(t *testing.T) {
		b := newBrowser(t)
		b.run("open the test page", chromedp.Navigate(srv.URL+"/"))
		type jsCase struct {
			Name  string           `json:"name"`
			Keys  audit.PublicKeys `json:"keys"`
			State any              `json:"state"`
		}
		var in []jsCase
		for _, c := range cases {
			var state any
			if c.State != nil {
				state = map[string]any{"note": c.State.Checkpoint, "chains": c.State.Chains}
			}
			in = append(in, jsCase{Name: c.Name, Keys: c.Keys, State: state})
		}
		input, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		// The page's part: load the verifier, give it a fetch of the
		// case's API; the verifier does the rest.
		script := `(async () => {
  const go = new Go();
  const res = await WebAssembly.instantiateStreaming(fetch('/static/verify.wasm'), go.importObject);
  go.run(res.instance);
  for (let i = 0; i < 500 && !(globalThis.vigieVerify && vigieVerify.ready); i++) await new Promise(r => setTimeout(r, 10));
  const out = {};
  for (const c of ` + string(input) + `) {
    const fetchCase = async path => { const r = await fetch('/case/' + c.name + path, { cache: 'no-store' }); return { status: r.status, text: await r.text() }; };
    out[c.name] = JSON.parse(await vigieVerify.history(JSON.stringify({ keys: { pinned: c.keys }, state: c.state, now: '` + now.Format(time.RFC3339) + `' }), fetchCase));
  }
  return JSON.stringify(out);
})()`
		raw := get(b, "verify the corpus", chromedp.Evaluate[string](script, chromedp.EvalAwaitPromise))
		var reports map[string]struct {
			Error    string          `json:"error"`
			Findings []audit.Finding `json:"findings"`
		}
		if err := json.Unmarshal([]byte(raw), &reports); err != nil {
			t.Fatalf("the page's answer: %v", err)
		}
		for _, c := range cases {
			rep, ok := reports[c.Name]
			if !ok || rep.Error != "" {
				t.Errorf("%s: no verdict from the browser (%s)", c.Name, rep.Error)
				continue
			}
			verdicts["wasm"][c.Name] = audittest.Kinds(rep.Findings)
		}
	})

	for _, c := range cases {
		for _, face := range []string{"go", "cli", "wasm"} {
			got, ok := verdicts[face][c.Name]
			if !ok {
				continue // the browser's run skipped or failed (reported)
			}
			if !slices.Equal(got, c.Want) {
				t.Errorf("%s through %s: findings %v, want %v", c.Name, face, got, c.Want)
			}
			if !slices.Equal(got, verdicts["go"][c.Name]) {
				t.Errorf("%s: %s says %v, the Go API %v", c.Name, face, got, verdicts["go"][c.Name])
			}
		}
	}
}

// runVerifyCorpus runs vigie verify against a case's API, with the keys
// pinned and the state saved that the case says, and returns the kinds of
// its findings.
func runVerifyCorpus(t *testing.T, server string, c *audittest.Case) []audit.Kind {
	t.Helper()
	dir := t.TempDir()
	if c.State != nil {
		cfg := &remoteConfig{server: server, stateDir: dir}
		cl, err := cfg.client()
		if err != nil {
			t.Fatal(err)
		}
		st, err := loadState(dir, cl.BaseURL())
		if err != nil {
			t.Fatal(err)
		}
		st.CheckpointKey, st.ReceiptKey, st.PinnedAt = c.Keys.CheckpointKey, c.Keys.ReceiptKey, time.Now()
		st.Verify = &verifyState{Checkpoint: string(c.State.Checkpoint), Chains: map[event.Hash]audit.ChainHead{}}
		for p, h := range c.State.Chains {
			ps, err := event.ParseHash(p)
			if err != nil {
				t.Fatal(err)
			}
			st.Verify.Chains[ps] = h
		}
		if err := st.save(); err != nil {
			t.Fatal(err)
		}
	}
	var stdout, stderr bytes.Buffer
	args := []string{"--server", server, "--token", "corpus-patient-token", "--log-key", c.Keys.CheckpointKey, "--receipt-key", c.Keys.ReceiptKey,
		"--state-dir", dir, "--evidence", filepath.Join(dir, "evidence.json"), "--json", "--lang", "en"}
	if c.Keys.WitnessPolicy != "" {
		policy := filepath.Join(dir, "witnesses.txt")
		if err := os.WriteFile(policy, []byte(c.Keys.WitnessPolicy), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--witness-policy", policy)
	}
	code := runVerify(context.Background(), args, &stdout, &stderr)
	if code != exitOK && code != exitFailure {
		t.Fatalf("%s: vigie verify exit %d: %s", c.Name, code, stderr.String())
	}
	var rep struct {
		Verdict  string          `json:"verdict"`
		Findings []audit.Finding `json:"findings"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("%s: vigie verify --json: %v\n%s", c.Name, err, stdout.String())
	}
	if want := map[bool]string{true: "verified", false: "failed"}[len(c.Want) == 0]; rep.Verdict != want || (code == exitOK) != (want == "verified") {
		t.Errorf("%s: vigie verify says %s (exit %d), want %s: %s", c.Name, rep.Verdict, code, want, strings.TrimSpace(stderr.String()))
	}
	return audittest.Kinds(rep.Findings)
}
