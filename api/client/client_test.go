package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

func writeProto(t *testing.T, w http.ResponseWriter, m proto.Message) {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		t.Error(err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func newTestClient(t *testing.T, h http.HandlerFunc, token string) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := New(Config{BaseURL: srv.URL + "/", Token: token})
	if err != nil {
		t.Fatal(err)
	}
	c.sleep = func(context.Context, time.Duration) error { return nil }
	return c
}

// TestCalls checks each method's route, query, body and decoding against a
// server that answers as the gateway does.
func TestCalls(t *testing.T) {
	ctx := context.Background()
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("Authorization"); got != "Bearer tok" {
			t.Errorf("%s: Authorization %q", r.URL.Path, got)
		}
		q := r.URL.Query()
		switch r.Method + " " + r.URL.Path {
		case "GET /checkpoint":
			w.Write([]byte("origin\n1\nroot\n\n— sig\n"))
		case "GET /v1/log/key":
			writeProto(t, w, &vigiev1.PublicKeys{Origin: "o", CheckpointKey: "ck", ReceiptKey: "rk"})
		case "GET /v1/log/consistency":
			if q.Get("first") != "3" || q.Get("second") != "9" {
				t.Errorf("consistency query %v", q)
			}
			writeProto(t, w, &vigiev1.ConsistencyProof{First: 3, Second: 9, Hashes: [][]byte{{1}, {2}}})
		case "GET /v1/log/inclusion":
			if q.Get("leaf_index") != "4" || q.Get("tree_size") != "9" {
				t.Errorf("inclusion query %v", q)
			}
			writeProto(t, w, &vigiev1.InclusionProof{LeafIndex: 4, TreeSize: 9, Hashes: [][]byte{{3}}})
		case "GET /v1/log/leaves":
			writeProto(t, w, &vigiev1.GetLeavesResponse{Start: 5, LeafValues: [][]byte{{1}, {2}}})
		case "GET /v1/me/accesses":
			if q.Get("page_size") != "500" || q.Get("page_token") != "next" {
				t.Errorf("accesses query %v", q)
			}
			writeProto(t, w, &vigiev1.ListAccessesResponse{Events: []*vigiev1.LedgerEvent{{Sequence: 1, Body: []byte("{}")}}})
		case "GET /v1/rules/2":
			w.Write([]byte(`{"format":"vigie-national-rules-v1"}`))
		case "POST /v1/audit/events:search":
			b, _ := io.ReadAll(r.Body)
			if r.URL.RawQuery != "" || !strings.Contains(string(b), `"patient_ins":"279035121518989"`) {
				t.Errorf("search: query %q, body %s", r.URL.RawQuery, b)
			}
			writeProto(t, w, &vigiev1.SearchEventsResponse{NextPageToken: "p2"})
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			http.NotFound(w, r)
		}
	}, "tok")
	if b, err := c.Checkpoint(ctx); err != nil || !strings.HasPrefix(string(b), "origin\n") {
		t.Errorf("Checkpoint = %q, %v", b, err)
	}
	if k, err := c.PublicKeys(ctx); err != nil || k.CheckpointKey != "ck" {
		t.Errorf("PublicKeys = %v, %v", k, err)
	}
	if p, err := c.ConsistencyProof(ctx, 3, 9); err != nil || len(p) != 2 {
		t.Errorf("ConsistencyProof = %v, %v", p, err)
	}
	if p, err := c.InclusionProof(ctx, 4, 9); err != nil || len(p) != 1 {
		t.Errorf("InclusionProof = %v, %v", p, err)
	}
	if l, err := c.Leaves(ctx, 5, 100); err != nil || len(l) != 2 {
		t.Errorf("Leaves = %v, %v", l, err)
	}
	if _, err := c.Leaves(ctx, 6, 100); err == nil {
		t.Error("Leaves accepted an answer for another start")
	}
	if _, err := c.Leaves(ctx, 5, 6); err == nil {
		t.Error("Leaves accepted more leaves than asked")
	}
	if p, err := c.ListAccesses(ctx, 500, "next"); err != nil || len(p.Events) != 1 || p.Events[0].Sequence != 1 {
		t.Errorf("ListAccesses = %v, %v", p, err)
	}
	if b, err := c.NationalRules(ctx, 2); err != nil || !strings.Contains(string(b), "national-rules") {
		t.Errorf("NationalRules = %q, %v", b, err)
	}
	if _, err := c.NationalRules(ctx, 0); err == nil {
		t.Error("NationalRules(0) succeeded")
	}
	if r, err := c.SearchEvents(ctx, &vigiev1.SearchEventsRequest{PatientIns: "279035121518989"}); err != nil || r.NextPageToken != "p2" {
		t.Errorf("SearchEvents = %v, %v", r, err)
	}
}

// TestAnonymousPublic checks that with AnonymousPublic the token goes
// only with the methods that need it.
func TestAnonymousPublic(t *testing.T) {
	ctx := context.Background()
	got := map[string]string{}
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		got[r.URL.Path] = r.Header.Get("Authorization")
		switch r.URL.Path {
		case "/v1/me/accesses":
			writeProto(t, w, &vigiev1.ListAccessesResponse{})
		default:
			w.Write([]byte("x"))
		}
	}, "tok")
	c.cfg.AnonymousPublic = true
	c.Checkpoint(ctx)
	c.NationalRules(ctx, 1)
	c.ListAccesses(ctx, 0, "")
	want := map[string]string{"/checkpoint": "", "/v1/rules/1": "", "/v1/me/accesses": "Bearer tok"}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: Authorization %q, want %q", p, got[p], w)
		}
	}
}

// TestErrors checks that an error answer becomes an *Error with the
// server's code and message, that rate limits and unavailability are
// retried and other errors are not.
func TestErrors(t *testing.T) {
	ctx := context.Background()
	var calls atomic.Int32
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		switch r.URL.Path {
		case "/v1/log/leaves":
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"code":3,"message":"invalid start: beyond the latest signed checkpoint","details":[]}`))
		case "/checkpoint":
			if n < 3 {
				w.WriteHeader(http.StatusTooManyRequests)
				w.Write([]byte(`{"code":8,"message":"rate limited"}`))
				return
			}
			w.Write([]byte("ok\n"))
		case "/v1/log/key":
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not json"))
		}
	}, "")
	_, err := c.Leaves(ctx, 10, 20)
	var e *Error
	if !errors.As(err, &e) || e.Code != codes.InvalidArgument || e.HTTPStatus != 400 || !strings.Contains(e.Message, "invalid start") || !IsCode(err, codes.InvalidArgument) {
		t.Errorf("Leaves error = %#v", err)
	}
	if calls.Load() != 1 {
		t.Errorf("a 400 was tried %d times, want once", calls.Load())
	}
	calls.Store(0)
	if b, err := c.Checkpoint(ctx); err != nil || string(b) != "ok\n" {
		t.Errorf("Checkpoint after two 429s = %q, %v", b, err)
	}
	calls.Store(0)
	if _, err := c.PublicKeys(ctx); !errors.As(err, &e) || e.HTTPStatus != 503 || e.Code != codes.Unknown {
		t.Errorf("PublicKeys on a 503 = %v", err)
	}
	if got := calls.Load(); got != 7 {
		t.Errorf("a 503 was tried %d times, want 1 + 6 retries", got)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{BaseURL: ""},
		{BaseURL: "vigie.example"},
		{BaseURL: "ftp://vigie.example"},
		{BaseURL: "https://user:pw@vigie.example"},
		{BaseURL: "https://vigie.example/?q=1"},
		{BaseURL: "https://vigie.example", Token: "two words"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

// TestErrorDetails: the ErrorInfo of a DATA_LOSS answer reaches the
// caller; a detail of an unknown type keeps the code and message.
func TestErrorDetails(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       Error
	}{
		{"error info", `{"code":15,"message":"event 4 (log entry 17) cannot be read: its stored form was altered","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"EVENT_UNREADABLE","domain":"vigie","metadata":{"seq":"4","leaf_index":"17"}}]}`,
			Error{Code: codes.DataLoss, Message: "event 4 (log entry 17) cannot be read: its stored form was altered", Reason: "EVENT_UNREADABLE", Metadata: map[string]string{"seq": "4", "leaf_index": "17"}}},
		{"unknown detail", `{"code":15,"message":"lost","details":[{"@type":"type.example.com/Unknown","x":1}]}`,
			Error{Code: codes.DataLoss, Message: "lost"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e *Error
			if !errors.As(apiError("GET /v1/x", 500, []byte(tc.body)), &e) {
				t.Fatal("not an *Error")
			}
			tc.want.Route, tc.want.HTTPStatus = "GET /v1/x", 500
			if e.Code != tc.want.Code || e.Message != tc.want.Message || e.Reason != tc.want.Reason || fmt.Sprint(e.Metadata) != fmt.Sprint(tc.want.Metadata) {
				t.Errorf("apiError = %+v, want %+v", e, tc.want)
			}
		})
	}
}

// endpoint is a test server that counts its calls and answers with h.
type endpoint struct {
	srv   *httptest.Server
	calls atomic.Int32
}

func newEndpoint(t *testing.T, h http.HandlerFunc) *endpoint {
	t.Helper()
	e := &endpoint{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.calls.Add(1)
		h(w, r)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// downURL returns the URL of a port that refuses connections.
func downURL(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	return u
}

func answerOK(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		w.Write([]byte(`{"next_page_token":"p2"}`))
		return
	}
	w.Write([]byte("ok\n"))
}

func answerStatus(status int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		w.Write([]byte(fmt.Sprintf(`{"code":%d,"message":"m"}`, map[int]int{400: 3, 404: 5, 502: 14, 503: 14, 504: 4}[status])))
	}
}

// answerReset closes the connection without answering.
func answerReset(w http.ResponseWriter, r *http.Request) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

// TestEndpoints checks, with two servers where the first fails, which
// failures move a call on to the second: the unavailable server's, never
// a 4xx, and for a POST only those where the request was certainly not
// handled.
func TestEndpoints(t *testing.T) {
	ctx := context.Background()
	get := func(c *Client) error { _, err := c.Checkpoint(ctx); return err }
	post := func(c *Client) error { _, err := c.SearchEvents(ctx, &vigiev1.SearchEventsRequest{}); return err }
	for _, tc := range []struct {
		name   string
		first  http.HandlerFunc // nil: the first endpoint is down (connection refused)
		call   func(*Client) error
		moveOn bool
	}{
		{"GET refused", nil, get, true},
		{"GET reset", answerReset, get, true},
		{"GET 502", answerStatus(502), get, true},
		{"GET 503", answerStatus(503), get, true},
		{"GET 504", answerStatus(504), get, true},
		{"GET 400", answerStatus(400), get, false},
		{"GET 404", answerStatus(404), get, false},
		{"POST refused", nil, post, true},
		{"POST 503", answerStatus(503), post, true},
		{"POST reset", answerReset, post, false},
		{"POST 502", answerStatus(502), post, false},
		{"POST 504", answerStatus(504), post, false},
		{"POST 400", answerStatus(400), post, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var first *endpoint
			firstURL := downURL(t)
			if tc.first != nil {
				first = newEndpoint(t, tc.first)
				firstURL = first.srv.URL
			}
			second := newEndpoint(t, answerOK)
			c, err := New(Config{BaseURLs: []string{firstURL, second.srv.URL}, MaxRetries: -1})
			if err != nil {
				t.Fatal(err)
			}
			c.sleep = func(context.Context, time.Duration) error { return nil }
			err = tc.call(c)
			if tc.moveOn {
				if err != nil || second.calls.Load() != 1 {
					t.Fatalf("call = %v with %d calls to the second endpoint, want success on it", err, second.calls.Load())
				}
				// The next call starts at the endpoint that answered.
				before := int32(0)
				if first != nil {
					before = first.calls.Load()
				}
				if err := tc.call(c); err != nil {
					t.Fatalf("second call = %v", err)
				}
				if first != nil && first.calls.Load() != before {
					t.Errorf("second call went to the failing endpoint first")
				}
				if second.calls.Load() != 2 {
					t.Errorf("second endpoint: %d calls, want 2", second.calls.Load())
				}
				return
			}
			if err == nil || second.calls.Load() != 0 {
				t.Errorf("call = %v with %d calls to the second endpoint, want the first's error and none", err, second.calls.Load())
			}
			if first != nil && first.calls.Load() != 1 {
				t.Errorf("first endpoint: %d calls, want 1", first.calls.Load())
			}
		})
	}
}

// TestEndpointsAllDown checks that a call gives up after trying each
// endpoint the bounded number of times, waiting only between rounds.
func TestEndpointsAllDown(t *testing.T) {
	a, b := newEndpoint(t, answerStatus(503)), newEndpoint(t, answerStatus(503))
	c, err := New(Config{BaseURL: a.srv.URL, BaseURLs: []string{b.srv.URL}, MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	var sleeps int
	c.sleep = func(context.Context, time.Duration) error { sleeps++; return nil }
	if _, err := c.Checkpoint(context.Background()); !IsCode(err, codes.Unavailable) {
		t.Errorf("Checkpoint = %v, want UNAVAILABLE", err)
	}
	// 1 + MaxRetries + one more endpoint = 5 tries, alternating.
	if a.calls.Load() != 3 || b.calls.Load() != 2 {
		t.Errorf("calls %d and %d, want 3 and 2", a.calls.Load(), b.calls.Load())
	}
	if sleeps != 2 {
		t.Errorf("%d waits, want 2 (one per round of both endpoints)", sleeps)
	}
	if c.BaseURL() != a.srv.URL {
		t.Errorf("BaseURL() = %q, want the first endpoint %q", c.BaseURL(), a.srv.URL)
	}
}

func TestNewRefusesBadEndpoint(t *testing.T) {
	if _, err := New(Config{BaseURLs: []string{"https://a.example", "b.example"}}); err == nil {
		t.Error("New accepted a bad second endpoint")
	}
}
