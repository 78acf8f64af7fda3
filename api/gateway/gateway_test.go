package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/grpc/metadata"

	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/api/server"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

const (
	testINS   = "137047624348415" // made up, valid key
	otherINS  = "185052A01234579"
	ourOrg    = "750712184"
	theirOrg  = "130000011"
	checkNote = "vigie.test/vigie/1\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— vigie.test/vigie/1 AAAA\n"
	rulesJSON = "{\"format\":\"vigie-national-rules-v1\",\n \"version\": 3}\n"
)

// seen records the callers the fake handlers saw.
type seen struct {
	mu  sync.Mutex
	ids []*auth.Identity
	md  metadata.MD // of the last call
}

func (s *seen) add(ctx context.Context) *auth.Identity {
	id, _ := auth.FromContext(ctx)
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids = append(s.ids, id)
	s.md = md
	return id
}

func (s *seen) metadata() metadata.MD {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.md
}

func (s *seen) last() *auth.Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ids) == 0 {
		return nil
	}
	return s.ids[len(s.ids)-1]
}

// Fake handlers: they answer from what they are given, and record who
// called.

type accessFake struct {
	vigiev1.UnimplementedAccessServiceServer
	seen *seen
}

func (f *accessFake) Check(ctx context.Context, req *vigiev1.CheckRequest) (*vigiev1.CheckResponse, error) {
	f.seen.add(ctx)
	if req.GetRequestId() == "" {
		return nil, server.InvalidField("request_id", "required")
	}
	return &vigiev1.CheckResponse{
		Decision:             vigiev1.Decision_DECISION_ALLOW,
		Reason:               &vigiev1.CoarseReason{Code: vigiev1.ReasonCode_REASON_CODE_ALLOWED, Text: "access allowed"},
		NationalRulesVersion: 3,
		Event:                &vigiev1.RecordedEvent{Commitment: strings.Repeat("ab", 32), LeafIndex: 0, Receipt: []byte("vigie receipt v1\n")},
	}, nil
}

type consentFake struct {
	vigiev1.UnimplementedConsentServiceServer
	seen    *seen
	version int64
}

func (f *consentFake) GetConsent(ctx context.Context, _ *vigiev1.GetConsentRequest) (*vigiev1.Consent, error) {
	f.seen.add(ctx)
	return &vigiev1.Consent{Version: f.version}, nil
}

func (f *consentFake) UpdateConsent(ctx context.Context, req *vigiev1.UpdateConsentRequest) (*vigiev1.UpdateConsentResponse, error) {
	f.seen.add(ctx)
	if req.GetExpectedVersion() != f.version {
		return nil, fmt.Errorf("update consent: %w", server.ErrStale)
	}
	f.version++
	return &vigiev1.UpdateConsentResponse{Version: f.version}, nil
}

type adminFake struct {
	vigiev1.UnimplementedAdminServiceServer
	seen *seen
}

func (f *adminFake) LoadNationalRules(ctx context.Context, req *vigiev1.LoadNationalRulesRequest) (*vigiev1.NationalRulesVersion, error) {
	f.seen.add(ctx)
	return &vigiev1.NationalRulesVersion{Version: 3, Sha256: fmt.Sprintf("%d bytes", len(req.GetRules()))}, nil
}

func (f *adminFake) GetNationalRules(ctx context.Context, req *vigiev1.GetNationalRulesRequest) (*httpbody.HttpBody, error) {
	f.seen.add(ctx)
	if req.GetVersion() != 3 {
		return nil, server.ErrNotFound
	}
	return &httpbody.HttpBody{ContentType: "application/json", Data: []byte(rulesJSON)}, nil
}

type logFake struct {
	vigiev1.UnimplementedLogServiceServer
	seen *seen
}

func (f *logFake) GetCheckpoint(ctx context.Context, _ *vigiev1.GetCheckpointRequest) (*httpbody.HttpBody, error) {
	f.seen.add(ctx)
	return &httpbody.HttpBody{ContentType: "text/plain; charset=utf-8", Data: []byte(checkNote)}, nil
}

func (f *logFake) GetPublicKey(ctx context.Context, _ *vigiev1.GetPublicKeyRequest) (*vigiev1.PublicKeys, error) {
	f.seen.add(ctx)
	return &vigiev1.PublicKeys{Origin: "vigie.test/log", CheckpointKey: "vigie.test/log+01234567+AQID", ReceiptKey: "vigie.test/log/receipts+89abcdef+AQID"}, nil
}

func (f *logFake) GetInclusionProof(ctx context.Context, req *vigiev1.GetInclusionProofRequest) (*vigiev1.InclusionProof, error) {
	f.seen.add(ctx)
	if req.GetTreeSize() == 0 {
		return nil, server.InvalidField("tree_size", "required")
	}
	return &vigiev1.InclusionProof{LeafIndex: req.GetLeafIndex(), TreeSize: req.GetTreeSize()}, nil
}

// env is a gRPC server with the fakes, and the gateway over HTTP on
// 127.0.0.1.
type env struct {
	t       testing.TB
	http    *httptest.Server
	handler http.Handler
	seen    *seen
	issuer  *auth.Issuer
	reg     *prometheus.Registry
	ready   error
}

func newEnv(t *testing.T, limits map[auth.Role]server.Limit) *env {
	t.Helper()
	return newEnvOver(t, limits, false)
}

// newEnvOver is newEnv, the gateway calling the server over gRPC's
// transport (DialInProcess) if overGRPC, else directly (InProcess).
func newEnvOver(t testing.TB, limits map[auth.Role]server.Limit, overGRPC bool) *env {
	t.Helper()
	e := &env{t: t, seen: &seen{}, reg: prometheus.NewRegistry()}
	key, err := auth.GenerateIssuerKey()
	if err != nil {
		t.Fatal(err)
	}
	e.issuer, err = auth.NewIssuer(auth.IssuerConfig{Issuer: "https://vigie.test", Audience: "vigie", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: e.issuer.Issuer(), Audience: e.issuer.Audience(), Keys: e.issuer.Keys()})
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.NewAuthenticator(auth.AuthenticatorConfig{Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	if limits == nil {
		limits = map[auth.Role]server.Limit{}
		for _, r := range append(auth.Roles, "") {
			limits[r] = server.Unlimited
		}
	}
	srv, err := server.New(server.Config{
		Authenticator: a,
		Logger:        slog.New(slog.DiscardHandler),
		Registerer:    e.reg,
		RateLimits:    limits,
	}, server.Services{
		Access:  &accessFake{seen: e.seen},
		Consent: &consentFake{seen: e.seen, version: 4},
		Admin:   &adminFake{seen: e.seen},
		Log:     &logFake{seen: e.seen},
	})
	if err != nil {
		t.Fatal(err)
	}
	cc := srv.InProcess()
	if overGRPC {
		conn, err := srv.DialInProcess()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		cc = conn
	}
	e.handler, err = New(context.Background(), Config{
		Conn:     cc,
		Ready:    func(context.Context) error { return e.ready },
		Gatherer: e.reg,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.http = httptest.NewServer(e.handler)
	t.Cleanup(func() {
		e.http.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
	})
	return e
}

func (e *env) token(role auth.Role, orgs ...string) string {
	e.t.Helper()
	r := auth.TokenRequest{Role: role, Subject: "test-" + string(role), Organizations: orgs}
	if role == auth.RolePatient {
		r.Subject = testINS
	}
	if role.BoundToOrganizations() && len(orgs) == 0 {
		r.Organizations = []string{ourOrg}
	}
	tok, err := e.issuer.Mint(r)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// do sends a request; header values are pairs.
func (e *env) do(method, path, body string, header ...string) (*http.Response, []byte) {
	e.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.http.URL+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

const checkBody = `{"request_id":"r1","patient_ins":"` + testINS + `","actor":{"rpps":"10001234567","profession":"10","organization":"` + ourOrg + `","sector":"care"},"action":"ACTION_READ","resource":{"record":{}},"purpose_of_use":"PURPOSE_OF_USE_TREAT"}`

// TestMatrixOverHTTP checks the authorization matrix through the gateway
// for a few methods: the gateway authenticates nothing itself, the gRPC
// server's interceptors do.
func TestMatrixOverHTTP(t *testing.T) {
	e := newEnv(t, nil)
	otherOrgBody := strings.Replace(checkBody, ourOrg, theirOrg, 1)
	tests := []struct {
		name         string
		method, path string
		body         string
		role         auth.Role // "" anonymous
		want         int
	}{
		{"service checks for its organisation", "POST", "/v1/access:check", checkBody, auth.RoleService, 200},
		{"service checks for another organisation", "POST", "/v1/access:check", otherOrgBody, auth.RoleService, 403},
		{"patient cannot check", "POST", "/v1/access:check", checkBody, auth.RolePatient, 403},
		{"admin cannot check", "POST", "/v1/access:check", checkBody, auth.RoleAdmin, 403},
		{"anonymous cannot check", "POST", "/v1/access:check", checkBody, "", 401},
		{"patient reads their consent", "GET", "/v1/me/consent", "", auth.RolePatient, 200},
		{"regulator cannot read a patient's consent", "GET", "/v1/me/consent", "", auth.RoleRegulator, 403},
		{"service cannot read a patient's consent", "GET", "/v1/me/consent", "", auth.RoleService, 403},
		{"anonymous cannot read a consent", "GET", "/v1/me/consent", "", "", 401},
		{"admin loads rules", "POST", "/v1/rules", `{"rules":"e30="}`, auth.RoleAdmin, 200},
		{"dpo cannot load rules", "POST", "/v1/rules", `{"rules":"e30="}`, auth.RoleDPO, 403},
		{"anonymous reads the rules", "GET", "/v1/rules/3", "", "", 200},
		{"anonymous reads the checkpoint", "GET", "/checkpoint", "", "", 200},
		{"a patient reads the checkpoint", "GET", "/checkpoint", "", auth.RolePatient, 200},
		{"anonymous asks for a proof", "GET", "/v1/log/inclusion?leaf_index=0&tree_size=5", "", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h []string
			if tt.role != "" {
				h = bearer(e.token(tt.role))
			}
			resp, body := e.do(tt.method, tt.path, tt.body, h...)
			if resp.StatusCode != tt.want {
				t.Fatalf("%s %s as %q = %d %s, want %d", tt.method, tt.path, tt.role, resp.StatusCode, body, tt.want)
			}
			if tt.want == 200 && tt.role != "" && e.seen.last().Role() != tt.role {
				t.Errorf("the handler saw %v, want role %s", e.seen.last(), tt.role)
			}
		})
	}
}

// TestSpoofedIdentityHeaders sends headers that other systems use to pass
// an identity: none of them is believed.
func TestSpoofedIdentityHeaders(t *testing.T) {
	e := newEnv(t, nil)
	spoofed := []string{
		"X-Vigie-Role", "admin",
		"X-Vigie-Identity", "admin:ops",
		"X-Forwarded-User", "admin",
		"X-Remote-User", "admin",
		"X-Forwarded-Client-Cert", "By=spiffe://vigie;URI=spiffe://chu.example/dpi",
		"X-Client-Cert", "-----BEGIN CERTIFICATE-----",
		"X-Ssl-Client-S-Dn", "CN=chu-dpi",
		"Grpc-Metadata-X-Vigie-Role", "admin",
		"Grpc-Metadata-Vigie-Client-Addr", "10.1.2.3",
		"X-Forwarded-For", "10.1.2.3",
	}
	// Anonymous with every header: still anonymous.
	for _, route := range []struct{ method, path, body string }{
		{"GET", "/v1/me/consent", ""},
		{"POST", "/v1/access:check", checkBody},
		{"POST", "/v1/rules", `{"rules":"e30="}`},
	} {
		resp, body := e.do(route.method, route.path, route.body, spoofed...)
		if resp.StatusCode != 401 {
			t.Errorf("%s %s with spoofed identity headers = %d %s, want 401", route.method, route.path, resp.StatusCode, body)
		}
	}
	// A patient's token with a header naming another patient: the
	// handler sees the token's patient.
	resp, body := e.do("GET", "/v1/me/consent", "", append(bearer(e.token(auth.RolePatient)), "X-Vigie-Patient", otherINS, "Grpc-Metadata-Patient-Ins", otherINS)...)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v1/me/consent = %d %s", resp.StatusCode, body)
	}
	if p, ok := e.seen.last().Patient(); !ok || p.Canonical() != testINS {
		t.Errorf("the handler's patient is not the token's")
	}
	// No request header reached the server as metadata, but the
	// Authorization header and what the gateway sets itself.
	allowed := map[string]bool{"authorization": true, server.ClientAddrMetadata: true, "x-forwarded-for": true, "x-forwarded-host": true,
		":authority": true, "content-type": true, "user-agent": true}
	for k, v := range e.seen.metadata() {
		if !allowed[k] && !strings.HasPrefix(k, "grpc-") {
			t.Errorf("metadata %s=%q reached the server", k, v)
		}
		if k == server.ClientAddrMetadata && (len(v) != 1 || v[0] != "127.0.0.1") {
			t.Errorf("%s = %q, want the address the HTTP server saw", k, v)
		}
	}
	// A service's token with an admin token smuggled in
	// Grpc-Metadata-Authorization: the service's identity only.
	resp, body = e.do("POST", "/v1/rules", `{"rules":"e30="}`, append(bearer(e.token(auth.RoleService)), "Grpc-Metadata-Authorization", "Bearer "+e.token(auth.RoleAdmin))...)
	if resp.StatusCode != 403 {
		t.Errorf("service token + smuggled admin token: POST /v1/rules = %d %s, want 403", resp.StatusCode, body)
	}
}

func TestBodyLimits(t *testing.T) {
	e := newEnv(t, nil)
	tok := bearer(e.token(auth.RoleService))
	big := strings.Replace(checkBody, `"request_id":"r1"`, `"request_id":"r1","break_glass_justification":"`+strings.Repeat("x", 200<<10)+`"`, 1)
	resp, body := e.do("POST", "/v1/access:check", big, tok...)
	if resp.StatusCode != 400 || !bytes.Contains(body, []byte("too large")) {
		t.Errorf("oversized body = %d %s, want 400 too large", resp.StatusCode, body)
	}
	// Without a Content-Length (chunked), the body is cut at the limit.
	req, _ := http.NewRequest("POST", e.http.URL+"/v1/access:check", io.MultiReader(strings.NewReader(big)))
	req.Header.Set("Authorization", tok[1])
	req.ContentLength = -1
	r, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 400 {
		t.Errorf("oversized chunked body = %d, want 400", r.StatusCode)
	}
	// The rules route takes a 1 MiB file (base64 in JSON).
	rules := `{"rules":"` + strings.Repeat("A", 1<<20+1<<18) + `"}`
	resp, body = e.do("POST", "/v1/rules", rules, bearer(e.token(auth.RoleAdmin))...)
	if resp.StatusCode != 200 {
		t.Errorf("POST /v1/rules with a 1 MiB file = %d %.200s, want 200", resp.StatusCode, body)
	}
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t, nil)
	tok := bearer(e.token(auth.RoleService))
	tests := []struct{ name, body string }{
		{"malformed JSON", `{"request_id":`},
		{"unknown field", strings.Replace(checkBody, `"request_id"`, `"requestor":1,"request_id"`, 1)},
		{"unknown enum value", strings.Replace(checkBody, `"PURPOSE_OF_USE_TREAT"`, `"SHOPPING"`, 1)},
		{"wrong type", strings.Replace(checkBody, `"r1"`, `42`, 1)},
		{"missing request_id", strings.Replace(checkBody, `"request_id":"r1",`, ``, 1)},
		{"trailing garbage", checkBody + `garbage`},
		{"a second object", checkBody + `{}`},
		{"a second copy", checkBody + "\n" + checkBody},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.do("POST", "/v1/access:check", tt.body, tok...)
			if resp.StatusCode != 400 {
				t.Errorf("= %d %s, want 400", resp.StatusCode, body)
			}
			var st struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(body, &st); err != nil || st.Code != 3 {
				t.Errorf("body %s is not a google.rpc.Status with code 3 (INVALID_ARGUMENT)", body)
			}
		})
	}
	// A field the server refuses carries its ErrorInfo through the
	// gateway: clients act on the reason, not on the message.
	for _, tc := range []struct{ method, path, body, want string }{
		{"POST", "/v1/access:check", strings.Replace(checkBody, `"request_id":"r1",`, ``, 1), `{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"INVALID_FIELD","domain":"vigie","metadata":{"field":"request_id","problem":"required"}}`},
	} {
		_, body := e.do(tc.method, tc.path, tc.body, tok...)
		var st struct {
			Details []json.RawMessage `json:"details"`
		}
		if err := json.Unmarshal(body, &st); err != nil || len(st.Details) != 1 || compactJSON(t, st.Details[0]) != tc.want {
			t.Errorf("%s %s = %s, want the details [%s]", tc.method, tc.path, body, tc.want)
		}
	}
	resp, body := e.do("GET", "/v1/log/inclusion?leaf_index=-1&tree_size=5", "")
	if resp.StatusCode != 400 {
		t.Errorf("negative leaf_index = %d %s, want 400", resp.StatusCode, body)
	}
	// Unknown query parameters are refused, named when they look like a
	// parameter's name, never quoted otherwise (they may hold an INS).
	for _, tc := range []struct{ query, want string }{
		{"leaf_index=0&tree_size=5&treesize=6", "invalid query parameter treesize: unknown parameter"},
		{"leaf_index=0&tree_size=5&" + testINS + "=1", "invalid query parameter: unknown parameter"},
		{"leaf_index=0&tree_size=5&x" + testINS + "=1", "invalid query parameter: unknown parameter"},
		{"leaf_index=0&tree_size=5&leaf_index.value=1", "invalid query parameter leaf_index.value: unknown parameter"},
	} {
		resp, body := e.do("GET", "/v1/log/inclusion?"+tc.query, "")
		var st struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(body, &st); err != nil || resp.StatusCode != 400 || st.Code != 3 || st.Message != tc.want {
			t.Errorf("GET /v1/log/inclusion?%s = %d %s, want 400 %q", tc.query, resp.StatusCode, body, tc.want)
		}
		if strings.Contains(string(body), testINS) {
			t.Errorf("GET /v1/log/inclusion?%s: the answer quotes the INS: %s", tc.query, body)
		}
	}
	// A route whose body is the whole request, or whose request has no
	// field, takes no query parameter.
	if resp, body := e.do("POST", "/v1/access:check?request_id=r2", checkBody, tok...); resp.StatusCode != 400 || !strings.Contains(string(body), "invalid query parameter request_id") {
		t.Errorf("Check with a query parameter = %d %s, want 400 naming it", resp.StatusCode, body)
	}
	if resp, body := e.do("GET", "/checkpoint?v=2", ""); resp.StatusCode != 400 || !strings.Contains(string(body), "invalid query parameter v") {
		t.Errorf("GET /checkpoint?v=2 = %d %s, want 400 naming v", resp.StatusCode, body)
	}
	// Known parameters, by their .proto or JSON names, are taken.
	for _, q := range []string{"leaf_index=0&tree_size=5", "leafIndex=0&treeSize=5"} {
		if resp, body := e.do("GET", "/v1/log/inclusion?"+q, ""); resp.StatusCode != 200 {
			t.Errorf("GET /v1/log/inclusion?%s = %d %s, want 200", q, resp.StatusCode, body)
		}
	}
}

func TestJSONMapping(t *testing.T) {
	e := newEnv(t, nil)
	resp, body := e.do("POST", "/v1/access:check", checkBody, bearer(e.token(auth.RoleService))...)
	if resp.StatusCode != 200 {
		t.Fatalf("Check = %d %s", resp.StatusCode, body)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	event, _ := got["event"].(map[string]any)
	reason, _ := got["reason"].(map[string]any)
	if got["decision"] != "DECISION_ALLOW" || reason["code"] != "REASON_CODE_ALLOWED" || got["national_rules_version"] != "3" ||
		got["consent_version"] != "0" || event["leaf_index"] != "0" || event["commitment"] != strings.Repeat("ab", 32) {
		t.Errorf("Check response %s: want proto names, enum names, 64-bit integers as strings, zero values shown", body)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Content-Security-Policy") != "default-src 'none'; frame-ancestors 'none'" {
		t.Errorf("headers %v: want no-store, nosniff and a CSP that allows nothing", resp.Header)
	}
	// Stale version: ABORTED, HTTP 409.
	patient := bearer(e.token(auth.RolePatient))
	resp, body = e.do("PUT", "/v1/me/consent", `{"expected_version":"3","directives":[]}`, patient...)
	if resp.StatusCode != 409 {
		t.Errorf("UpdateConsent with a stale version = %d %s, want 409", resp.StatusCode, body)
	}
	resp, body = e.do("PUT", "/v1/me/consent", `{"expected_version":"4","directives":[]}`, patient...)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"version":"5"`)) {
		t.Errorf("UpdateConsent = %d %s, want 200 and version 5", resp.StatusCode, body)
	}
	resp, body = e.do("GET", "/v1/rules/9", "")
	if resp.StatusCode != 404 {
		t.Errorf("GET /v1/rules/9 = %d %s, want 404", resp.StatusCode, body)
	}
}

func TestRawBodies(t *testing.T) {
	e := newEnv(t, nil)
	resp, body := e.do("GET", "/checkpoint", "")
	if resp.StatusCode != 200 || string(body) != checkNote || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("GET /checkpoint = %d %q %q, want the note as text/plain", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, body = e.do("GET", "/v1/rules/3", "")
	if resp.StatusCode != 200 || string(body) != rulesJSON || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("GET /v1/rules/3 = %d %q %q, want the exact bytes", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	e := newEnv(t, nil)
	if resp, body := e.do("GET", "/healthz", ""); resp.StatusCode != 200 {
		t.Errorf("/healthz = %d %s", resp.StatusCode, body)
	}
	if resp, body := e.do("GET", "/readyz", ""); resp.StatusCode != 200 {
		t.Errorf("/readyz = %d %s", resp.StatusCode, body)
	}
	e.ready = errors.New("ledger not started")
	if resp, body := e.do("GET", "/readyz", ""); resp.StatusCode != 503 || bytes.Contains(body, []byte("ledger")) {
		t.Errorf("/readyz when not ready = %d %s, want 503 without detail", resp.StatusCode, body)
	}
	e.do("GET", "/checkpoint", "")
	e.do("GET", "/v1/me/consent", "")
	resp, body := e.do("GET", "/metrics", "")
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics = %d", resp.StatusCode)
	}
	for _, want := range []string{
		`vigie_grpc_requests_total{code="OK",method="/vigie.v1.LogService/GetCheckpoint"} 1`,
		`vigie_grpc_requests_total{code="Unauthenticated",method="/vigie.v1.ConsentService/GetConsent"} 1`,
		`vigie_grpc_request_duration_seconds_bucket`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestRateLimitByClientAddress checks that the gRPC server limits
// anonymous HTTP callers by the address the HTTP server saw, and that
// X-Forwarded-For does not buy a new bucket.
func TestRateLimitByClientAddress(t *testing.T) {
	limits := map[auth.Role]server.Limit{"": {PerSecond: 0.001, Burst: 1}}
	e := newEnv(t, limits)
	get := func(remote, xff string) int {
		req := httptest.NewRequest("GET", "/checkpoint", nil)
		req.RemoteAddr = remote
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		w := httptest.NewRecorder()
		e.handler.ServeHTTP(w, req)
		return w.Code
	}
	if c := get("192.0.2.1:1000", ""); c != 200 {
		t.Fatalf("first call = %d", c)
	}
	if c := get("192.0.2.1:1001", "198.51.100.7"); c != 429 {
		t.Errorf("second call from the same address, another X-Forwarded-For = %d, want 429", c)
	}
	if c := get("192.0.2.2:1000", ""); c != 200 {
		t.Errorf("another address = %d, want 200", c)
	}
}

// TestNoInProcessHandlers checks the package's source: the gateway must
// dial the server, never serve handlers in process (which would skip the
// interceptors).
func TestNoInProcessHandlers(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`Register[A-Za-z]*HandlerServer|RegisterHandlerServer|HandlerFromEndpoint`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := re.Find(b); m != nil {
			t.Errorf("%s uses %s", f, m)
		}
	}
}

// compactJSON is raw without insignificant spaces.
func compactJSON(t *testing.T, raw []byte) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
