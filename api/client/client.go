// Package client is a small Go client of Vigie's public HTTP API: the JSON
// mapping of api/vigie/v1 served by the gateway (docs/api.md), with a
// bearer token. It is what `vigie verify` and `vigie audit` use to work
// against a remote server.
//
// It transports and decodes; it trusts nothing it receives. Checkpoints,
// proofs, leaves and event bodies are returned as they came, for
// ledger/verify and ledger/audit to check.
//
// HTTP rather than gRPC: the JSON gateway is itself a gRPC client of the
// server, so every call goes through the same authentication,
// authorization, limits and logging, and HTTP with a bearer token crosses
// the proxies and firewalls between a patient's or an auditor's machine and
// the service, as a browser's calls do.
//
// A client may be given several endpoints of one service (nodes serving
// one log on one database): a call that finds one down moves on to the
// next, and later calls start from the one that answered last.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// MaxResponseSize is the largest response body the client reads, in
// bytes: a page of 500 events of at most 64 KiB each, in base64, fits.
const MaxResponseSize = 128 << 20

// Config configures a [Client]. BaseURL or BaseURLs is required.
type Config struct {
	// BaseURL is the server's HTTP API, e.g. "https://vigie.example" (a
	// path prefix is kept).
	BaseURL string
	// BaseURLs are further endpoints of the same service, after BaseURL
	// if it is set (nodes serving one log: any of them answers any call).
	// A call moves on to the next endpoint when one fails on the way
	// (connection refused or reset, timeout) or answers 502, 503 or 504
	// (UNAVAILABLE); never on another 4xx. A call that is not idempotent
	// (POST) moves on only when its request was certainly not handled: its
	// connection was refused, or the server answered 429 or 503.
	BaseURLs []string
	// Token is the bearer token sent with every call; empty calls
	// anonymously (the log's methods are public).
	Token string
	// HTTPClient makes the calls. Default: a client with a 60-second
	// timeout per call.
	HTTPClient *http.Client
	// MaxRetries is how many times a call refused for the caller's rate
	// limit (429) or by an unavailable server (502, 503, 504) is retried,
	// with exponential backoff from 200 ms to 5 s, plus one try of each
	// further endpoint. Default 6; negative means none (each endpoint is
	// still tried once). A GET that fails on the way (connection refused
	// or reset, timeout) is retried at most twice, plus once per further
	// endpoint. Moving on waits only after every endpoint was tried.
	MaxRetries int
	// UserAgent is sent with every call. Default "vigie-client".
	UserAgent string
	// AnonymousPublic sends the token only with the methods that need
	// one (a patient's history, an auditor's search), not with the public
	// ones (the log's, the national rules): a patient's tool need not tell
	// the server which entries of the log it checks. An auditor sends it
	// everywhere, for its role's larger rate limit.
	AnonymousPublic bool
}

// Client calls Vigie's HTTP API. It is safe for concurrent use.
type Client struct {
	bases []*url.URL
	// cur is the index in bases of the endpoint that answered last: the
	// next call starts there.
	cur   atomic.Int32
	cfg   Config
	http  *http.Client
	sleep func(ctx context.Context, d time.Duration) error
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	raw := cfg.BaseURLs
	if cfg.BaseURL != "" || len(raw) == 0 {
		raw = append([]string{cfg.BaseURL}, raw...)
	}
	var bases []*url.URL
	for _, r := range raw {
		u, err := parseBaseURL(r)
		if err != nil {
			return nil, err
		}
		bases = append(bases, u)
	}
	if strings.ContainsAny(cfg.Token, " \t\r\n") {
		return nil, errors.New("token: must not contain spaces or line breaks")
	}
	c := &Client{bases: bases, cfg: cfg, http: cfg.HTTPClient, sleep: sleepCtx}
	if c.http == nil {
		c.http = &http.Client{Timeout: 60 * time.Second}
	}
	if c.cfg.MaxRetries == 0 {
		c.cfg.MaxRetries = 6
	}
	if c.cfg.UserAgent == "" {
		c.cfg.UserAgent = "vigie-client"
	}
	return c, nil
}

func parseBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q: want http://host[:port] or https://host[:port]", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("server URL %q: no query, fragment or user info", s)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

// BaseURL returns the server's first URL, normalised (no trailing slash):
// the name of the service, whichever endpoint answers.
func (c *Client) BaseURL() string { return c.bases[0].String() }

// An Error is a call the server answered with an error: its HTTP status
// and, when the body is a google.rpc.Status, its gRPC code and message
// (server messages never contain an INS or health data). Test with
// errors.As.
type Error struct {
	Route      string // e.g. "GET /v1/log/leaves"
	HTTPStatus int
	Code       codes.Code
	Message    string
	// Reason and Metadata are those of the status's google.rpc.ErrorInfo
	// detail, if it has one (DATA_LOSS "EVENT_UNREADABLE", with "seq" and
	// "leaf_index": the server cannot read an event of the history, its
	// stored form was altered).
	Reason   string
	Metadata map[string]string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%s: HTTP %d", e.Route, e.HTTPStatus)
	}
	return fmt.Sprintf("%s: %s (HTTP %d): %s", e.Route, e.Code, e.HTTPStatus, e.Message)
}

// IsCode reports whether err is an [*Error] with gRPC code code.
func IsCode(err error, code codes.Code) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// PublicKeys returns the log's origin and verifier keys (GET /v1/log/key).
// A verifier pins them on first use: what a server says about its own
// keys proves nothing.
func (c *Client) PublicKeys(ctx context.Context) (*vigiev1.PublicKeys, error) {
	out := &vigiev1.PublicKeys{}
	return out, c.getJSON(ctx, public, "/v1/log/key", nil, out)
}

// Checkpoint returns the latest signed checkpoint note (GET /checkpoint).
func (c *Client) Checkpoint(ctx context.Context) ([]byte, error) {
	return c.do(ctx, http.MethodGet, public, "/checkpoint", nil, nil)
}

// Transitions returns the log's transition checkpoints, oldest first
// (GET /checkpoint/transitions): unverified, as the server sent them.
func (c *Client) Transitions(ctx context.Context) ([][]byte, error) {
	const path = "/checkpoint/transitions"
	b, err := c.do(ctx, http.MethodGet, public, path, nil, nil)
	if err != nil {
		return nil, err
	}
	var body struct { // gateway.Transitions
		Transitions []string `json:"transitions"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	notes := make([][]byte, len(body.Transitions))
	for i, n := range body.Transitions {
		notes[i] = []byte(n)
	}
	return notes, nil
}

// ConsistencyProof returns the proof that the tree of size first is a
// prefix of the tree of size second (GET /v1/log/consistency).
func (c *Client) ConsistencyProof(ctx context.Context, first, second uint64) ([][]byte, error) {
	out := &vigiev1.ConsistencyProof{}
	q := url.Values{"first": {u64(first)}, "second": {u64(second)}}
	if err := c.getJSON(ctx, public, "/v1/log/consistency", q, out); err != nil {
		return nil, err
	}
	return out.Hashes, nil
}

// InclusionProof returns the proof of the leaf at index in the tree of
// the given size (GET /v1/log/inclusion).
func (c *Client) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	out := &vigiev1.InclusionProof{}
	q := url.Values{"leaf_index": {u64(index)}, "tree_size": {u64(size)}}
	if err := c.getJSON(ctx, public, "/v1/log/inclusion", q, out); err != nil {
		return nil, err
	}
	if out.LeafIndex != index || out.TreeSize != size {
		return nil, fmt.Errorf("GET /v1/log/inclusion: answer for leaf %d in size %d, asked %d in %d", out.LeafIndex, out.TreeSize, index, size)
	}
	return out.Hashes, nil
}

// Leaves returns leaf values from index start on, at most end-start of
// them (GET /v1/log/leaves). The server clips the range to its latest
// checkpoint and to its own maximum: fewer leaves than asked is not an
// error; ask again from start + len.
func (c *Client) Leaves(ctx context.Context, start, end uint64) ([][]byte, error) {
	out := &vigiev1.GetLeavesResponse{}
	q := url.Values{"start": {u64(start)}, "end": {u64(end)}}
	if err := c.getJSON(ctx, public, "/v1/log/leaves", q, out); err != nil {
		return nil, err
	}
	if out.Start != start {
		return nil, fmt.Errorf("GET /v1/log/leaves: answer starts at %d, asked %d", out.Start, start)
	}
	if uint64(len(out.LeafValues)) > end-start {
		return nil, fmt.Errorf("GET /v1/log/leaves: %d leaves, asked at most %d", len(out.LeafValues), end-start)
	}
	return out.LeafValues, nil
}

// ListAccesses returns a page of the calling patient's history (GET
// /v1/me/accesses).
func (c *Client) ListAccesses(ctx context.Context, pageSize int32, pageToken string) (*vigiev1.ListAccessesResponse, error) {
	q := url.Values{}
	if pageSize != 0 {
		q.Set("page_size", strconv.Itoa(int(pageSize)))
	}
	if pageToken != "" {
		q.Set("page_token", pageToken)
	}
	out := &vigiev1.ListAccessesResponse{}
	return out, c.getJSON(ctx, private, "/v1/me/accesses", q, out)
}

// NationalRules returns the exact bytes of a national rules version (GET
// /v1/rules/{version}).
func (c *Client) NationalRules(ctx context.Context, version int64) ([]byte, error) {
	if version < 1 {
		return nil, fmt.Errorf("national rules version %d: must be positive", version)
	}
	return c.do(ctx, http.MethodGet, public, "/v1/rules/"+strconv.FormatInt(version, 10), nil, nil)
}

// SearchEvents returns a page of events matching req (POST
// /v1/audit/events:search), for a DPO or a regulator. The request may
// carry a patient's INS: it goes in the body, never in the URL.
func (c *Client) SearchEvents(ctx context.Context, req *vigiev1.SearchEventsRequest) (*vigiev1.SearchEventsResponse, error) {
	body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("search events: %w", err)
	}
	out := &vigiev1.SearchEventsResponse{}
	b, err := c.do(ctx, http.MethodPost, private, "/v1/audit/events:search", nil, body)
	if err != nil {
		return nil, err
	}
	return out, unmarshal("POST /v1/audit/events:search", b, out)
}

func u64(v uint64) string { return strconv.FormatUint(v, 10) }

// Whether a method needs the caller's token (see Config.AnonymousPublic).
const (
	public  = false
	private = true
)

func (c *Client) getJSON(ctx context.Context, auth bool, path string, q url.Values, out proto.Message) error {
	b, err := c.do(ctx, http.MethodGet, auth, path, q, nil)
	if err != nil {
		return err
	}
	return unmarshal("GET "+path, b, out)
}

func unmarshal(route string, b []byte, out proto.Message) error {
	// Unknown fields are tolerated: a newer server may add some.
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s: malformed answer: %w", route, err)
	}
	return nil
}

// maxTransportRetries bounds the retries of a GET that failed on the way
// (plus one per further endpoint): a server that is down should be said
// so soon.
const maxTransportRetries = 2

// unavailable reports whether an HTTP status says that the server or a
// gateway in front of it is not available right now: worth another
// endpoint.
func unavailable(status int) bool {
	switch status {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// notSent reports whether a transport error happened before the request
// left: the connection was never made, so no server handled it.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// do makes a call, retrying what is retryable and moving on to the next
// endpoint when one is unavailable, and returns the body of a 2xx answer.
func (c *Client) do(ctx context.Context, method string, auth bool, path string, q url.Values, body []byte) ([]byte, error) {
	route := method + " " + path
	token := c.cfg.Token
	if !auth && c.cfg.AnonymousPublic {
		token = ""
	}
	// Only a GET is safe to send twice: a POST may have been handled
	// (an audit search records a read) when its answer was lost.
	idempotent := method == http.MethodGet
	n := len(c.bases)
	start := int(c.cur.Load())
	backoff := 200 * time.Millisecond
	moves, transportFailures := 0, 0
	for attempt := 0; ; attempt++ {
		i := (start + moves) % n
		u := *c.bases[i]
		u.Path += path
		u.RawQuery = q.Encode()
		b, status, err := c.once(ctx, method, u.String(), token, body)
		if err == nil && status/100 == 2 {
			c.cur.Store(int32(i))
			return b, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", route, ctx.Err())
		}
		var again, moveOn bool
		switch {
		case err != nil:
			again = (idempotent || notSent(err)) && transportFailures < maxTransportRetries+n-1
			transportFailures++
			moveOn = true
		case status == http.StatusTooManyRequests:
			again = true // the caller's own limit: the same endpoint, later
		case unavailable(status):
			again = idempotent || status == http.StatusServiceUnavailable
			moveOn = true
		}
		if !again || attempt >= max(c.cfg.MaxRetries, 0)+n-1 {
			if err != nil {
				return nil, fmt.Errorf("%s: %w", route, err)
			}
			return nil, apiError(route, status, b)
		}
		if moveOn {
			moves++
			if moves%n != 0 {
				continue // another endpoint may answer at once
			}
		}
		d := backoff/2 + rand.N(backoff/2+1) // jitter: callers that collided spread out
		if err := c.sleep(ctx, d); err != nil {
			return nil, fmt.Errorf("%s: %w", route, err)
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (c *Client) once(ctx context.Context, method, u, token string, body []byte) ([]byte, int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseSize+1))
	if err != nil {
		return nil, 0, fmt.Errorf("read answer: %w", err)
	}
	if len(b) > MaxResponseSize {
		return nil, 0, fmt.Errorf("answer larger than %d bytes", MaxResponseSize)
	}
	return b, resp.StatusCode, nil
}

// apiError decodes the google.rpc.Status of an error answer, if it is one.
func apiError(route string, status int, b []byte) error {
	e := &Error{Route: route, HTTPStatus: status, Code: codes.Unknown}
	var st spb.Status
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &st); err != nil {
		// A detail of a type this client does not know fails the whole
		// message: keep the code and message.
		var plain struct {
			Code    int32  `json:"code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &plain) == nil {
			e.Code, e.Message = codes.Code(plain.Code), plain.Message
		}
		return e
	}
	e.Code, e.Message = codes.Code(st.Code), st.Message
	for _, d := range st.Details {
		var info errdetails.ErrorInfo
		if d.UnmarshalTo(&info) == nil {
			e.Reason, e.Metadata = info.Reason, info.Metadata
			break
		}
	}
	return e
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
