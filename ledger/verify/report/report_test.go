package report

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/audit/audittest"
)

// handlerFetch fetches from h, as the page's fetch does from the API.
func handlerFetch(c *audittest.Case) Fetch {
	h := c.Handler()
	return func(_ context.Context, path string) (int, []byte, error) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w.Code, w.Body.Bytes(), nil
	}
}

func stateOfCase(c *audittest.Case) *State {
	if c.State == nil {
		return nil
	}
	return &State{Note: c.State.Checkpoint, Chains: c.State.Chains}
}

// TestCorpus runs the golden corpus through the JSON face, as the
// WebAssembly build does (with the page's fetch replaced by the case's
// API): the same verdicts as the Go verifier's.
func TestCorpus(t *testing.T) {
	cases, err := audittest.LoadCorpus()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			in := HistoryInput{Keys: Keys{Pinned: &c.Keys}, State: stateOfCase(&c), Now: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)}
			// Through JSON, as the page gives it.
			b, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			var decoded HistoryInput
			if err := json.Unmarshal(b, &decoded); err != nil {
				t.Fatal(err)
			}
			rep := VerifyHistory(context.Background(), decoded, handlerFetch(&c))
			if rep.Error != "" {
				t.Fatalf("error: %s", rep.Error)
			}
			if got := audittest.Kinds(rep.Findings); !slices.Equal(got, c.Want) {
				t.Errorf("findings %v, want kinds %v", rep.Findings, c.Want)
			}
			// The verdicts the page shows follow the findings.
			growth := rep.Log != nil && !rep.Log.OK
			if ok := len(c.Want) == 0 || (growth && len(rep.Findings) == 1); rep.OK != ok {
				t.Errorf("ok %v, want %v (findings %v)", rep.OK, ok, c.Want)
			}
			if (rep.State != nil) != (len(c.Want) == 0) {
				t.Errorf("state to keep %v, want one only when nothing was found", rep.State != nil)
			}
			if len(c.Want) == 0 {
				for _, e := range rep.Events {
					if e.Verdict != Verified {
						t.Errorf("event %d: verdict %s", e.Sequence, e.Verdict)
					}
				}
			}
		})
	}
}

// TestVerifyHistoryGrowth: a rollback and a fork are reported as the
// log's growth, apart from the events' verdict.
func TestVerifyHistoryGrowth(t *testing.T) {
	cases, err := audittest.LoadCorpus()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"rollback": "rollback", "fork": "fork", "valid-saved": ""}
	for _, c := range cases {
		why, ok := want[c.Name]
		if !ok {
			continue
		}
		rep := VerifyHistory(context.Background(), HistoryInput{Keys: Keys{Pinned: &c.Keys}, State: stateOfCase(&c)}, handlerFetch(&c))
		if rep.Log == nil || rep.Log.Rollback != why || rep.Log.OK != (why == "") || !rep.OK {
			t.Errorf("%s: log %+v, ok %v; want rollback %q and the events verified", c.Name, rep.Log, rep.OK, why)
		}
	}
}

// TestPinFirstUse: with no key pinned, the server's keys are trusted and
// handed back to pin, once the verification succeeded.
func TestPinFirstUse(t *testing.T) {
	cases, err := audittest.LoadCorpus()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if c.Name != "valid" && c.Name != "altered-body" {
			continue
		}
		rep := VerifyHistory(context.Background(), HistoryInput{}, handlerFetch(&c))
		if rep.Keys == nil || !rep.Keys.FirstUse || (rep.Keys.Pin != nil) != (c.Name == "valid") {
			t.Errorf("%s: keys %+v", c.Name, rep.Keys)
		}
	}
}

func TestAPIError(t *testing.T) {
	err := apiError(500, []byte(`{"code":15,"message":"gone","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"EVENT_UNREADABLE","metadata":{"seq":"4","leaf_index":"17"}}]}`))
	var ue *audit.UnreadableError
	if !errors.As(err, &ue) || ue.Seq != 4 || ue.Index == nil || *ue.Index != 17 {
		t.Errorf("unreadable: %v", err)
	}
	err = apiError(400, []byte(`{"code":3,"message":"not signed yet","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"BEYOND_CHECKPOINT"}]}`))
	if !errors.Is(err, audit.ErrBeyondCheckpoint) {
		t.Errorf("beyond: %v", err)
	}
	var ae *APIError
	if err := apiError(503, []byte("not json")); !errors.As(err, &ae) || ae.Status != 503 {
		t.Errorf("plain: %v", err)
	}
}

func TestUint64JSON(t *testing.T) {
	var v struct{ A, B Uint64 }
	if err := json.Unmarshal([]byte(`{"A":"12","B":34}`), &v); err != nil || v.A != 12 || v.B != 34 {
		t.Errorf("Uint64: %v %v", v, err)
	}
	if err := json.Unmarshal([]byte(`{"A":"-1"}`), &v); err == nil {
		t.Error("Uint64 accepted -1")
	}
}

// TestVerifyLog: the auditors' check of the log's series, against the
// checkpoints the page saw before: a rollback is found, a consistent
// growth keeps the latest.
func TestVerifyLog(t *testing.T) {
	cases, err := audittest.LoadCorpus()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*audittest.Case{}
	for i := range cases {
		byName[cases[i].Name] = &cases[i]
	}
	c := byName["valid-saved"]
	seen := []SeenCheckpoint{{Note: c.State.Checkpoint, Time: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)}}
	rep := VerifyLog(context.Background(), LogInput{Keys: Keys{Pinned: &c.Keys}, Seen: seen}, handlerFetch(c))
	if !rep.OK || len(rep.Checkpoints) != 2 || len(rep.Seen) != 2 || rep.Latest == nil || rep.SignedHistory != 1 {
		t.Errorf("a log that grew: %+v", rep)
	}
	r := byName["rollback"]
	rep = VerifyLog(context.Background(), LogInput{Keys: Keys{Pinned: &r.Keys}, Seen: []SeenCheckpoint{{Note: r.State.Checkpoint}}}, handlerFetch(r))
	if rep.OK || rep.Log == nil || rep.Log.Rollback != "rollback" || rep.Seen != nil {
		t.Errorf("a rolled back log: %+v", rep)
	}
	f := byName["fork"]
	rep = VerifyLog(context.Background(), LogInput{Keys: Keys{Pinned: &f.Keys}, Seen: []SeenCheckpoint{{Note: f.State.Checkpoint}}}, handlerFetch(f))
	if rep.OK || rep.Log == nil || rep.Log.Rollback != "fork" {
		t.Errorf("a forked log: %+v", rep)
	}
}

// TestVerifyEvents: search results checked one by one against a
// checkpoint.
func TestVerifyEvents(t *testing.T) {
	cases, err := audittest.LoadCorpus()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if c.Name != "valid" && c.Name != "altered-body" {
			continue
		}
		b, _ := json.Marshal(map[string]any{"keys": c.Keys, "checkpoint": c.Listing.Checkpoint, "events": c.Listing.Events, "now": "2026-11-28T09:00:00Z"})
		var in EventsInput
		if err := json.Unmarshal(b, &in); err != nil {
			t.Fatal(err)
		}
		rep := VerifyEvents(in)
		if got := audittest.Kinds(rep.Findings); !slices.Equal(got, c.Want) || rep.OK != (len(c.Want) == 0) || len(rep.Events) != len(c.Listing.Events) {
			t.Errorf("%s: %+v", c.Name, rep)
		}
	}
}

// TestFieldsReportedNotShown: when the server's kind, RPPS or FINESS of
// an event disagree with its body, the page gets the finding on the
// event and the body's contents to show, never the server's fields.
func TestFieldsReportedNotShown(t *testing.T) {
	cases, err := audittest.LoadCorpus()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(cases, func(c audittest.Case) bool { return c.Name == "fields-disagree" })
	if i < 0 {
		t.Fatal("no case fields-disagree in the corpus")
	}
	c := cases[i]
	served := c.Listing.Events[0]
	rep := VerifyHistory(context.Background(), HistoryInput{Keys: Keys{Pinned: &c.Keys}, Now: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)}, handlerFetch(&c))
	if rep.Error != "" || rep.OK || len(rep.Events) != len(c.Listing.Events) {
		t.Fatalf("report %+v, want a failed report of every event", rep)
	}
	e := rep.Events[0]
	if e.Verdict != Failed || len(e.Problems) != 1 || !strings.Contains(e.Problems[0], "actor_rpps") {
		t.Errorf("the access: verdict %s, problems %q; want failed, the actor_rpps named", e.Verdict, e.Problems)
	}
	out, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if served.ActorRPPS == "" || bytes.Contains(out, []byte(served.ActorRPPS)) || !bytes.Contains(e.Payload, []byte(`"rpps":"10000000003"`)) {
		t.Errorf("the report shows the server's %s or not the body's RPPS: %s", served.ActorRPPS, e.Payload)
	}
	if bytes.Contains(out, []byte(c.Listing.Events[2].Organization)) {
		t.Errorf("the report shows the server's organization %s", c.Listing.Events[2].Organization)
	}
}

// TestPinWitnessPolicy: the witness policy the server serves is enforced
// and pinned on first use, like the keys; once pinned, another one served
// is a finding (the pinned one still enforced, nothing saved or pinned),
// the same one written otherwise is not.
func TestPinWitnessPolicy(t *testing.T) {
	cases, err := audittest.LoadCorpus()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]audittest.Case{}
	for _, c := range cases {
		byName[c.Name] = c
	}
	serving := func(c audittest.Case, policy string) Fetch {
		f := handlerFetch(&c)
		return func(ctx context.Context, path string) (int, []byte, error) {
			if path == "/witness-policy" {
				return 200, []byte(policy), nil
			}
			return f(ctx, path)
		}
	}
	met, notMet := byName["witness-met"], byName["witness-not-met"]
	policy := met.Keys.WitnessPolicy
	keysOnly := met.Keys
	keysOnly.WitnessPolicy = ""

	// First use: the served policy is enforced, and pinned on success.
	rep := VerifyHistory(context.Background(), HistoryInput{Keys: Keys{Pinned: &keysOnly}}, serving(met, "# served\n"+policy))
	if !rep.OK || rep.Keys == nil || !rep.Keys.PolicyFirstUse || rep.Keys.Pin == nil || rep.Keys.Pin.WitnessPolicy != policy {
		t.Fatalf("first use over a met quorum: ok %v, keys %+v, findings %v", rep.OK, rep.Keys, rep.Findings)
	}
	notMetKeys := notMet.Keys
	notMetKeys.WitnessPolicy = ""
	rep = VerifyHistory(context.Background(), HistoryInput{Keys: Keys{Pinned: &notMetKeys}}, serving(notMet, notMet.Keys.WitnessPolicy))
	if rep.OK || !slices.Equal(audittest.Kinds(rep.Findings), []audit.Kind{audit.KindWitnessQuorum}) || rep.Keys.Pin != nil {
		t.Errorf("first use over a quorum not met: ok %v, keys %+v, findings %v; want the quorum enforced, nothing pinned", rep.OK, rep.Keys, rep.Findings)
	}

	// Pinned, served again in another form: no finding.
	rep = VerifyHistory(context.Background(), HistoryInput{Keys: Keys{Pinned: &met.Keys}}, serving(met, "# again\n"+policy))
	if !rep.OK || rep.Keys.PolicyChanged || rep.Keys.PolicyFirstUse || len(rep.Findings) != 0 {
		t.Errorf("the pinned policy served: ok %v, keys %+v, findings %v", rep.OK, rep.Keys, rep.Findings)
	}
	// Pinned, another served (quorum one of three, which w1 alone would
	// meet): a finding, nothing saved, and the pinned quorum still counts.
	other := strings.Replace(policy, "group witnesses 2", "group witnesses 1", 1)
	for _, c := range []audittest.Case{met, notMet} {
		rep = VerifyHistory(context.Background(), HistoryInput{Keys: Keys{Pinned: &c.Keys}}, serving(c, other))
		want := []audit.Kind{audit.KindWitnessPolicyChanged}
		if c.Name == "witness-not-met" {
			want = append(want, audit.KindWitnessQuorum)
		}
		if rep.OK || !rep.Keys.PolicyChanged || rep.Keys.Pin != nil || rep.State != nil || !slices.Equal(audittest.Kinds(rep.Findings), want) || len(rep.Problems) == 0 {
			t.Errorf("%s, another policy served: ok %v, keys %+v, state %v, findings %v; want kinds %v", c.Name, rep.OK, rep.Keys, rep.State != nil, rep.Findings, want)
		}
	}
	lrep := VerifyLog(context.Background(), LogInput{Keys: Keys{Pinned: &met.Keys}}, serving(met, other))
	if lrep.OK || !slices.Contains(audittest.Kinds(lrep.Findings), audit.KindWitnessPolicyChanged) || lrep.Seen != nil {
		t.Errorf("the log's verification, another policy served: ok %v, findings %v", lrep.OK, lrep.Findings)
	}
}
