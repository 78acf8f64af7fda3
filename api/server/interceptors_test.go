package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

const (
	checkMethod = vigiev1.AccessService_Check_FullMethodName
	keyMethod   = vigiev1.LogService_GetPublicKey_FullMethodName
)

func checkRequest() *vigiev1.CheckRequest {
	return &vigiev1.CheckRequest{
		RequestId:               "req-1",
		PatientIns:              testINS,
		Actor:                   &vigiev1.Actor{Rpps: "10001234567", Profession: "10", Organization: ourOrg, Sector: "care"},
		Action:                  vigiev1.Action_ACTION_READ,
		Resource:                &vigiev1.Resource{Kind: &vigiev1.Resource_Record{Record: &vigiev1.WholeRecord{}}},
		PurposeOfUse:            vigiev1.PurposeOfUse_PURPOSE_OF_USE_BTG,
		BreakGlassJustification: "SECRET-JUSTIFICATION unconscious patient",
	}
}

// logLines returns the JSON log lines of the harness whose msg is msg.
func (h *harness) logLines(msg string) []map[string]any {
	h.t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(h.logs.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			h.t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestOneLogLinePerCall checks the call's log line: one per call, with
// the attributes gathered along the way, and never the INS, the body or
// the justification.
func TestOneLogLinePerCall(t *testing.T) {
	h := newHarness(t)
	h.rec.handle[checkMethod] = func(ctx context.Context, req any) (any, error) {
		AddLogAttrs(ctx, slog.String("decision", "ALLOW"), slog.Uint64("leaf_index", 42))
		// A handler that breaks the rule: the INS is redacted anyway.
		AddLogAttrs(ctx, slog.String("oops", "patient "+testINS), slog.Group("g", slog.String("nested", testINS)))
		return &vigiev1.CheckResponse{Decision: vigiev1.Decision_DECISION_ALLOW}, nil
	}
	var resp vigiev1.CheckResponse
	if err := h.conn.Invoke(h.ctxAs(auth.RoleService), checkMethod, checkRequest(), &resp); err != nil {
		t.Fatal(err)
	}
	lines := h.logLines("grpc call")
	if len(lines) != 1 {
		t.Fatalf("%d log lines for one call, want 1:\n%s", len(lines), h.logs)
	}
	l := lines[0]
	caller, _ := l["caller"].(map[string]any)
	if l["method"] != checkMethod || l["code"] != "OK" || l["decision"] != "ALLOW" || l["leaf_index"] != float64(42) ||
		caller["role"] != "service" || caller["principal"] != "service:test-service" || l["request_bytes"] == nil {
		t.Errorf("log line %v lacks an attribute", l)
	}
	for _, secret := range []string{testINS, "SECRET-JUSTIFICATION", "10001234567"} {
		if strings.Contains(h.logs.String(), secret) {
			t.Errorf("the log shows %q:\n%s", secret, h.logs)
		}
	}
}

func TestPanicRecovered(t *testing.T) {
	h := newHarness(t)
	h.rec.handle[checkMethod] = func(ctx context.Context, req any) (any, error) {
		panic("handler bug about patient " + testINS + ` matching "PSYCHIATRY-NOTE-42"`)
	}
	err := h.conn.Invoke(h.ctxAs(auth.RoleService), checkMethod, checkRequest(), &vigiev1.CheckResponse{})
	if status.Code(err) != codes.Internal || strings.Contains(status.Convert(err).Message(), "bug") {
		t.Fatalf("panicking handler = %v, want Internal without detail", err)
	}
	if n := testutil.ToFloat64(h.srv.metrics.panics); n != 1 {
		t.Errorf("vigie_grpc_panics_total = %v, want 1", n)
	}
	if len(h.logLines("panic")) != 1 || len(h.logLines("grpc call")) != 1 {
		t.Errorf("want one panic line and one call line:\n%s", h.logs)
	}
	if strings.Contains(h.logs.String(), testINS) || strings.Contains(h.logs.String(), "PSYCHIATRY") {
		t.Errorf("the panic's INS or what it quotes reached the log:\n%s", h.logs)
	}
	// The server still serves.
	if err := h.conn.Invoke(context.Background(), keyMethod, &vigiev1.GetPublicKeyRequest{}, &vigiev1.PublicKeys{}); err != nil {
		t.Errorf("call after the panic: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	h := newHarness(t)
	for range 3 {
		if err := h.conn.Invoke(context.Background(), keyMethod, &vigiev1.GetPublicKeyRequest{}, &vigiev1.PublicKeys{}); err != nil {
			t.Fatal(err)
		}
	}
	h.conn.Invoke(context.Background(), checkMethod, checkRequest(), &vigiev1.CheckResponse{})
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer not.a.token")
	h.conn.Invoke(ctx, keyMethod, &vigiev1.GetPublicKeyRequest{}, &vigiev1.PublicKeys{})

	for _, c := range []struct {
		method, code string
		want         float64
	}{
		{keyMethod, "OK", 3},
		{checkMethod, "Unauthenticated", 1},
		{keyMethod, "Unauthenticated", 1},
	} {
		if got := testutil.ToFloat64(h.srv.metrics.requests.WithLabelValues(c.method, c.code)); got != c.want {
			t.Errorf("vigie_grpc_requests_total{%s,%s} = %v, want %v", c.method, c.code, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(h.srv.metrics.duration); n != 2 {
		t.Errorf("vigie_grpc_request_duration_seconds has %d series, want 2 (one per method)", n)
	}
	if got := testutil.ToFloat64(h.srv.metrics.authFailed.WithLabelValues("malformed token")); got != 1 {
		t.Errorf(`vigie_auth_failures_total{reason="malformed token"} = %v, want 1`, got)
	}
	// The metrics are registered on the configured registry.
	if n, err := testutil.GatherAndCount(h.reg, "vigie_grpc_requests_total"); err != nil || n != 3 {
		t.Errorf("registry: %d series of vigie_grpc_requests_total, %v; want 3", n, err)
	}
}

func TestRateLimit(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.RateLimits = map[auth.Role]Limit{auth.RolePatient: {PerSecond: 0.001, Burst: 2}, "": {PerSecond: 0.001, Burst: 1}}
	})
	get := vigiev1.ConsentService_GetConsent_FullMethodName
	call := func(ctx context.Context) error {
		return h.conn.Invoke(ctx, get, &vigiev1.GetConsentRequest{}, &vigiev1.Consent{})
	}
	alice := h.ctxAs(auth.RolePatient)
	for i := range 2 {
		if err := call(alice); err != nil {
			t.Fatalf("call %d within the burst: %v", i, err)
		}
	}
	if err := call(alice); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("call beyond the burst = %v, want ResourceExhausted", err)
	}
	// Another patient has a bucket of their own.
	tok, err := h.issuer.Mint(auth.TokenRequest{Role: auth.RolePatient, Subject: otherINS})
	if err != nil {
		t.Fatal(err)
	}
	bob := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	if err := call(bob); err != nil {
		t.Errorf("another patient: %v", err)
	}
	// Anonymous callers are limited by address.
	anon := func() error {
		return h.conn.Invoke(context.Background(), keyMethod, &vigiev1.GetPublicKeyRequest{}, &vigiev1.PublicKeys{})
	}
	if err := anon(); err != nil {
		t.Fatal(err)
	}
	if err := anon(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("anonymous call beyond the burst = %v, want ResourceExhausted", err)
	}
	if got := testutil.ToFloat64(h.srv.metrics.rateLimited.WithLabelValues("patient")); got != 1 {
		t.Errorf(`vigie_grpc_rate_limited_total{role="patient"} = %v, want 1`, got)
	}
}

func TestRequestSizeLimit(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxRequestBytes = 4 << 10 })
	req := checkRequest()
	req.BreakGlassJustification = strings.Repeat("x", 5<<10)
	err := h.conn.Invoke(h.ctxAs(auth.RoleService), checkMethod, req, &vigiev1.CheckResponse{})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "too large") {
		t.Errorf("oversized Check = %v, want InvalidArgument (too large)", err)
	}
	if h.rec.count(checkMethod) != 0 {
		t.Error("the oversized request reached the handler")
	}
	// A method with a limit of its own takes more.
	rules := &vigiev1.LoadNationalRulesRequest{Rules: make([]byte, 512<<10)}
	if err := h.conn.Invoke(h.ctxAs(auth.RoleAdmin), vigiev1.AdminService_LoadNationalRules_FullMethodName, rules, &vigiev1.NationalRulesVersion{}); err != nil {
		t.Errorf("LoadNationalRules of 512 KiB = %v, want OK", err)
	}
	rules.Rules = make([]byte, 1<<20+8<<10)
	if err := h.conn.Invoke(h.ctxAs(auth.RoleAdmin), vigiev1.AdminService_LoadNationalRules_FullMethodName, rules, &vigiev1.NationalRulesVersion{}); status.Code(err) != codes.InvalidArgument && status.Code(err) != codes.ResourceExhausted {
		t.Errorf("LoadNationalRules over 1 MiB = %v, want refused", err)
	}
}

// TestDeadlines checks the deadline a handler gets against the times the
// call started and returned, not against a margin of the machine's speed.
func TestDeadlines(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.DefaultTimeout = 3 * time.Second; c.MaxTimeout = 7 * time.Second })
	var got time.Time
	h.rec.handle[keyMethod] = func(ctx context.Context, req any) (any, error) {
		dl, ok := ctx.Deadline()
		if !ok {
			return nil, errors.New("no deadline")
		}
		got = dl
		return &vigiev1.PublicKeys{}, nil
	}
	// call returns the handler's deadline and the times around the call.
	call := func(ctx context.Context) (dl, before, after time.Time) {
		t.Helper()
		before = time.Now()
		if err := h.conn.Invoke(ctx, keyMethod, &vigiev1.GetPublicKeyRequest{}, &vigiev1.PublicKeys{}); err != nil {
			t.Fatal(err)
		}
		return got, before, time.Now()
	}
	if dl, before, after := call(context.Background()); dl.Before(before.Add(3*time.Second)) || dl.After(after.Add(3*time.Second)) {
		t.Errorf("no client deadline: the handler's deadline is %v after the call started (which lasted %v), want the default 3s", dl.Sub(before), after.Sub(before))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if dl, before, after := call(ctx); dl.Before(before.Add(7*time.Second)) || dl.After(after.Add(7*time.Second)) {
		t.Errorf("client deadline 1h: the handler's deadline is %v after the call started (which lasted %v), want the cap 7s", dl.Sub(before), after.Sub(before))
	}
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// gRPC sends the client's deadline as a duration: the server's may be
	// later than the client's by at most the time the call took.
	clientDL, _ := ctx.Deadline()
	if dl, before, after := call(ctx); dl.After(clientDL.Add(after.Sub(before))) {
		t.Errorf("client deadline 2s: the handler's deadline is %v after the call started, want the client's", dl.Sub(before))
	}
}

func TestAuthorizationValues(t *testing.T) {
	h := newHarness(t)
	tok := "Bearer " + h.token(auth.RoleService)
	tests := []struct {
		name string
		md   metadata.MD
		want codes.Code
	}{
		{"two authorization values", metadata.Pairs("authorization", tok, "authorization", tok), codes.Unauthenticated},
		{"empty authorization", metadata.Pairs("authorization", ""), codes.Unauthenticated},
		{"basic scheme", metadata.Pairs("authorization", "Basic dXNlcjpwdw=="), codes.Unauthenticated},
		{"identity in other metadata is ignored", metadata.Pairs("x-vigie-role", "admin", "x-forwarded-client-cert", "By=spiffe://x;URI=spiffe://chu", ClientAddrMetadata, "10.0.0.1"), codes.Unauthenticated},
		{"one bearer token", metadata.Pairs("authorization", tok), codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := metadata.NewOutgoingContext(context.Background(), tt.md)
			err := h.conn.Invoke(ctx, checkMethod, checkRequest(), &vigiev1.CheckResponse{})
			if status.Code(err) != tt.want {
				t.Errorf("Check = %v, want %v", err, tt.want)
			}
		})
	}
	// A client address passed in metadata by anyone but the in-process
	// gateway is not believed.
	h.conn.Invoke(metadata.AppendToOutgoingContext(context.Background(), ClientAddrMetadata, "203.0.113.9"), keyMethod, &vigiev1.GetPublicKeyRequest{}, &vigiev1.PublicKeys{})
	if strings.Contains(h.logs.String(), "203.0.113.9") {
		t.Errorf("the server believed a client address from metadata")
	}
}

// TestMTLS authenticates a service by its client certificate, over real
// TLS on 127.0.0.1.
func TestMTLS(t *testing.T) {
	ca, caKey := newCA(t)
	serverCert := issueCert(t, ca, caKey, "localhost", nil)
	listed := issueCert(t, ca, caKey, "", &url.URL{Scheme: "spiffe", Host: "chu.example", Path: "/dpi"})
	unlisted := issueCert(t, ca, caKey, "", &url.URL{Scheme: "spiffe", Host: "other.example", Path: "/x"})
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	iss := newTestIssuer(t)
	rec := &recorder{reached: map[string][]*auth.Identity{}}
	srv, err := New(Config{
		Authenticator: newTestAuthenticator(t, iss, auth.ServiceCert{Name: "spiffe://chu.example/dpi", Service: "chu-dpi", Organizations: []string{ourOrg}}),
		Logger:        slog.New(slog.DiscardHandler),
		ServerOptions: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{serverCert}, ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS13,
		}))},
	}, Services{})
	if err != nil {
		t.Fatal(err)
	}
	registerGeneric(t, srv.GRPC(), rec)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Stop(context.Background()) })

	dial := func(cert *tls.Certificate) *grpc.ClientConn {
		cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	tests := []struct {
		name string
		cert *tls.Certificate
		org  string
		want codes.Code
	}{
		{"listed certificate, its organisation", &listed, ourOrg, codes.OK},
		{"listed certificate, another organisation", &listed, theirOrg, codes.PermissionDenied},
		{"certificate not on the allow-list", &unlisted, ourOrg, codes.Unauthenticated},
		{"no certificate", nil, ourOrg, codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := checkRequest()
			req.Actor.Organization = tt.org
			err := dial(tt.cert).Invoke(context.Background(), checkMethod, req, &vigiev1.CheckResponse{})
			if status.Code(err) != tt.want {
				t.Fatalf("Check = %v, want %v", err, tt.want)
			}
			if tt.want == codes.OK {
				if id := rec.last(checkMethod); id.Principal() != "service:chu-dpi" || id.Method() != auth.MethodMTLS {
					t.Errorf("the handler saw %v, want service:chu-dpi by mTLS", id)
				}
			}
		})
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return ca, key
}

var serial int64 = 1

func issueCert(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, dns string, uri *url.URL) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "x"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if dns != "" {
		tmpl.DNSNames = []string{dns}
	}
	if uri != nil {
		tmpl.URIs = []*url.URL{uri}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
