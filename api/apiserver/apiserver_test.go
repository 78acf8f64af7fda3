package apiserver

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/consentsql"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/nationalrules"
	"github.com/vigie-sante/vigie/ledger/keys"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
)

// twoIssuers are Pro Santé Connect's and FranceConnect's mappings
// (docs/identity.md).
func twoIssuers() []IssuerConfig {
	return []IssuerConfig{
		{Issuer: "https://psc.example", Audience: "vigie-psc", Role: auth.RoleDPO, Organizations: []string{"750712184"}, RPPSClaim: "SubjectNameID", RPPSPrefix: "8"},
		{Issuer: "https://fc.example", Audience: "vigie-fc", Role: auth.RolePatient, PatientSubject: auth.PatientEnrolled},
	}
}

// TestValidate: without TLS, the service listens on loopback only (the
// HTTP API beyond it behind trusted proxies); profiles on loopback only;
// the URLs of keys and sign-ins are https (http on loopback). Each
// refusal names its field.
func TestValidate(t *testing.T) {
	base := func() Config {
		return Config{GRPCAddr: "127.0.0.1:8081", HTTPAddr: "127.0.0.1:8080", Audience: "vigie"}
	}
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		field  string // "" for valid
	}{
		{"loopback", func(c *Config) {}, ""},
		{"localhost and IPv6 loopback", func(c *Config) { c.GRPCAddr, c.HTTPAddr = "localhost:1", "[::1]:2" }, ""},
		{"no HTTP", func(c *Config) { c.HTTPAddr = "" }, ""},
		{"no gRPC address", func(c *Config) { c.GRPCAddr = "" }, "GRPCAddr"},
		{"every interface without TLS", func(c *Config) { c.GRPCAddr = ":8081" }, "GRPCAddr"},
		{"a LAN address without TLS", func(c *Config) { c.HTTPAddr = "10.0.0.5:8080" }, "HTTPAddr"},
		{"a host name without TLS", func(c *Config) { c.HTTPAddr = "vigie.example:8080" }, "HTTPAddr"},
		{"not host:port", func(c *Config) { c.GRPCAddr = "8081" }, "GRPCAddr"},
		{"every interface with TLS", func(c *Config) { c.GRPCAddr, c.CertFile, c.KeyFile = ":8081", "c", "k" }, ""},
		{"HTTP behind trusted proxies", func(c *Config) { c.HTTPAddr, c.TrustedProxies = "0.0.0.0:8080", proxies }, ""},
		{"gRPC keeps its rule behind proxies", func(c *Config) { c.GRPCAddr, c.TrustedProxies = "0.0.0.0:8081", proxies }, "GRPCAddr"},
		{"a proxy prefix of every address", func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("::/0")} }, "TrustedProxies"},
		{"cert without key", func(c *Config) { c.CertFile = "c" }, "KeyFile"},
		{"client CA without TLS", func(c *Config) { c.ClientCAFile = "ca" }, "ClientCAFile"},
		{"services without client CA", func(c *Config) { c.CertFile, c.KeyFile, c.ServicesFile = "c", "k", "s.json" }, "ServicesFile"},
		{"JWKS without issuer", func(c *Config) { c.JWKSURL = "https://x/jwks" }, "JWKSURL"},
		{"issuer over http", func(c *Config) { c.Issuer = "http://idp.example" }, "Issuer"},
		{"issuer over http on loopback", func(c *Config) { c.Issuer = "http://127.0.0.1:9000" }, ""},
		{"JWKS over http", func(c *Config) { c.Issuer, c.JWKSURL = "https://idp.example", "http://idp.example/jwks" }, "JWKSURL"},
		{"issuer without audience", func(c *Config) { c.Issuer, c.Audience = "https://idp.example", "" }, "Audience"},
		{"portal sign-in", func(c *Config) {
			c.Issuer, c.ClientID, c.PublicURL = "https://idp.example", "vigie", "https://vigie.example"
		}, ""},
		{"client ID without public URL", func(c *Config) { c.Issuer, c.ClientID = "https://idp.example", "vigie" }, "ClientID"},
		{"client ID without HTTP", func(c *Config) {
			c.Issuer, c.ClientID, c.PublicURL, c.HTTPAddr = "https://idp.example", "vigie", "https://vigie.example", ""
		}, "ClientID"},
		{"secret without client ID", func(c *Config) { c.ClientSecretFile = "secret" }, "ClientSecretFile"},
		{"public URL over http beyond loopback", func(c *Config) { c.PublicURL = "http://vigie.example" }, "PublicURL"},
		{"public URL with a path", func(c *Config) { c.PublicURL = "https://vigie.example/vigie" }, "PublicURL"},
		{"public URL on localhost", func(c *Config) { c.PublicURL = "http://localhost:8080" }, ""},
		{"pprof without admin", func(c *Config) { c.Pprof = true }, "Pprof"},
		{"pprof beyond loopback", func(c *Config) { c.AdminAddr, c.Pprof = "0.0.0.0:9090", true }, "AdminAddr"},
		{"pprof on loopback", func(c *Config) { c.AdminAddr, c.Pprof = "127.0.0.1:9090", true }, ""},
		{"admin beyond loopback without pprof", func(c *Config) { c.AdminAddr = "0.0.0.0:9090" }, ""},
		{"admin not host:port", func(c *Config) { c.AdminAddr = "9090" }, "AdminAddr"},
		{"negative erasure delay", func(c *Config) { c.ErasureDelay = -1 }, "ErasureDelay"},
		{"negative alerts cache", func(c *Config) { c.AlertsCache = -1 }, "AlertsWindow"},
		{"two issuers", func(c *Config) { c.Issuers = twoIssuers() }, ""},
		{"issuers and issuer", func(c *Config) { c.Issuers, c.Issuer = twoIssuers(), "https://idp.example" }, "Issuers"},
		{"issuers and JWKS", func(c *Config) { c.Issuers, c.JWKSURL = twoIssuers(), "https://idp.example/jwks" }, "Issuers"},
		{"an issuer without audience", func(c *Config) { c.Issuers = twoIssuers(); c.Issuers[1].Audience = "" }, "Issuers"},
		{"an issuer over http", func(c *Config) { c.Issuers = twoIssuers(); c.Issuers[1].Issuer = "http://fc.example" }, "Issuers"},
		{"an issuer twice", func(c *Config) { c.Issuers = twoIssuers(); c.Issuers[1].Issuer = c.Issuers[0].Issuer }, "Issuers"},
		{"an issuer with an unknown role", func(c *Config) { c.Issuers = twoIssuers(); c.Issuers[1].Role = "doctor" }, "Issuers"},
		{"an issuer's organisation not a FINESS", func(c *Config) { c.Issuers = twoIssuers(); c.Issuers[0].Organizations = []string{"1"} }, "Issuers"},
		{"portal at one issuer", func(c *Config) {
			c.Issuers, c.PublicURL = twoIssuers(), "https://vigie.example"
			c.Issuers[1].ClientID = "vigie"
		}, ""},
		{"portal at two issuers", func(c *Config) {
			c.Issuers, c.PublicURL = twoIssuers(), "https://vigie.example"
			c.Issuers[0].ClientID, c.Issuers[1].ClientID = "a", "b"
		}, ""},
		{"one secret for two clients", func(c *Config) {
			c.Issuers, c.PublicURL, c.ClientSecretFile = twoIssuers(), "https://vigie.example", "/s"
			c.Issuers[0].ClientID, c.Issuers[1].ClientID = "a", "b"
		}, "ClientSecretFile"},
		{"an issuer's secret without its client ID", func(c *Config) {
			c.Issuers, c.PublicURL = twoIssuers(), "https://vigie.example"
			c.Issuers[1].ClientSecretFile = "/s"
		}, "Issuers"},
		{"an issuer's client ID without public URL", func(c *Config) { c.Issuers = twoIssuers(); c.Issuers[1].ClientID = "vigie" }, "Issuers"},
		{"secret with an issuer's client ID", func(c *Config) {
			c.Issuers, c.PublicURL, c.ClientSecretFile = twoIssuers(), "https://vigie.example", "secret"
			c.Issuers[1].ClientID = "vigie"
		}, ""},
	} {
		c := base()
		tc.change(&c)
		err := c.Validate()
		var fe *FieldError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: %v, want valid", tc.name, err)
		case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
			t.Errorf("%s: %v, want a FieldError of %s", tc.name, err, tc.field)
		}
	}
	c := base()
	c.GRPCAddr = "0.0.0.0:1"
	if err := c.Validate(); !errors.Is(err, ErrNeedsTLS) {
		t.Errorf("gRPC beyond loopback without TLS: %v, want ErrNeedsTLS", err)
	}
}

func TestPortalOIDC(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Issuer: "https://idp.example", ClientID: "vigie", PublicURL: "https://vigie.example/"}
	c, err := portalOIDC(cfg, keys, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != 1 || c[0].RedirectURL != "https://vigie.example/portal/oidc/callback" || c[0].ClientSecret != "" || len(c[0].CookieKey) != 32 {
		t.Errorf("portalOIDC = %+v", c)
	}
	several := Config{Issuers: twoIssuers(), PublicURL: "https://vigie.example/"}
	several.Issuers[1].ClientID = "vigie-fc"
	if c, err := portalOIDC(several, keys, true); err != nil || len(c) != 1 || c[0].Issuer != "https://fc.example" || c[0].ClientID != "vigie-fc" {
		t.Errorf("portalOIDC with several issuers = %+v, %v; want the one with a client ID", c, err)
	}
	// Professionals' and patients' providers at once, each with its
	// secret: one sign-in each, in the file's order, one cookie key.
	secret := filepath.Join(dir, "fc.secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	both := Config{Issuers: twoIssuers(), PublicURL: "https://vigie.example/"}
	both.Issuers[0].ClientID, both.Issuers[0].Name = "vigie-psc", "Pro Santé Connect"
	both.Issuers[1].ClientID, both.Issuers[1].ClientSecretFile = "vigie-fc", secret
	c, err = portalOIDC(both, keys, true)
	if err != nil || len(c) != 2 || c[0].Name != "Pro Santé Connect" || c[0].ClientSecret != "" || c[1].ClientID != "vigie-fc" || c[1].ClientSecret != "s3cret" || !bytes.Equal(c[0].CookieKey, c[1].CookieKey) {
		t.Errorf("portalOIDC with two clients = %+v, %v", c, err)
	}
	if _, err := os.Stat(filepath.Join(keys, "portal-oidc-cookie.key")); err != nil {
		t.Errorf("the cookie key has no file of its own: %v", err)
	}
	// A node of a cluster never makes the cookie key: its own would
	// refuse the cookies another node set.
	other := t.TempDir()
	if _, err := portalOIDC(cfg, other, false); err == nil || !strings.Contains(err.Error(), filepath.Join(other, "portal-oidc-cookie.key")) || !strings.Contains(err.Error(), "vigie init") {
		t.Errorf("portalOIDC without the cookie key, not making keys = %v; want an error naming it and vigie init", err)
	}
	if _, err := os.Stat(filepath.Join(other, "portal-oidc-cookie.key")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("portalOIDC made the cookie key (%v)", err)
	}
	if c, _ := portalOIDC(Config{}, keys, true); c != nil {
		t.Errorf("portalOIDC without ClientID = %+v, want nil", c)
	}
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		want          string // "" for the secret read
	}{
		{"private", " s3cret\n", 0o600, ""},
		{"readable by others", "s3cret", 0o644, "readable by others"},
		{"empty", "\n", 0o600, "empty"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
		if err := os.WriteFile(path, []byte(tc.content), tc.mode); err != nil {
			t.Fatal(err)
		}
		cfg.ClientSecretFile = path
		c, err := portalOIDC(cfg, keys, true)
		var fe *FieldError
		switch {
		case tc.want == "" && (err != nil || len(c) != 1 || c[0].ClientSecret != "s3cret"):
			t.Errorf("%s: %+v, %v; want the secret s3cret", tc.name, c, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &fe) || fe.Field != "ClientSecretFile"):
			t.Errorf("%s: %v, want a FieldError of ClientSecretFile saying %q", tc.name, err, tc.want)
		}
	}
}

// TestServerTLS: TLS 1.2 at least; with a client CA, a client
// certificate is verified when given (services), optional (tokens).
func TestServerTLS(t *testing.T) {
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, keyFile := write("cert.pem", "CERTIFICATE", der), write("key.pem", "PRIVATE KEY", keyDER)
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}

	c, err := serverTLS(cert, keyFile, "")
	if err != nil || c.MinVersion != tls.VersionTLS12 || c.ClientAuth != tls.NoClientCert {
		t.Errorf("serverTLS without client CA = %+v, %v; want TLS 1.2 at least, no client certificate", c, err)
	}
	c, err = serverTLS(cert, keyFile, cert)
	if err != nil || c.ClientAuth != tls.VerifyClientCertIfGiven || c.ClientCAs == nil {
		t.Errorf("serverTLS with a client CA = %+v, %v; want client certificates verified if given", c, err)
	}
	for _, tc := range []struct {
		name, cert, key, ca, field string
	}{
		{"no certificate file", filepath.Join(dir, "absent.pem"), keyFile, "", "CertFile"},
		{"a CA file without PEM", cert, keyFile, notPEM, "ClientCAFile"},
		{"no CA file", cert, keyFile, filepath.Join(dir, "absent-ca.pem"), "ClientCAFile"},
	} {
		var fe *FieldError
		if _, err := serverTLS(tc.cert, tc.key, tc.ca); !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("serverTLS with %s: %v, want a FieldError of %s", tc.name, err, tc.field)
		}
	}
}

// TestEmbeddedIssuer: the key is created owner-only at first use, the
// same issuer comes back, and a key readable by others is refused.
func TestEmbeddedIssuer(t *testing.T) {
	dir := t.TempDir()
	a, err := EmbeddedIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "token-issuer.key")
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("issuer key: %v, %v; want mode 0600", info, err)
	}
	b, err := EmbeddedIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.Issuer() != EmbeddedIssuerName || a.Audience() != EmbeddedAudience || len(a.Keys().Keys) != 1 || a.Keys().Keys[0].KeyID != b.Keys().Keys[0].KeyID {
		t.Errorf("EmbeddedIssuer again: another issuer or key")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := EmbeddedIssuer(dir); err == nil {
		t.Error("EmbeddedIssuer accepted a key readable by others")
	}
}

// TestStartNoCreateKeys: a node of a cluster (NoCreateKeys) missing the
// page-token key or the embedded issuer's refuses to start, naming the
// file and vigie init, and makes none: its own would differ from the
// other nodes'.
func TestStartNoCreateKeys(t *testing.T) {
	env := ledgertest.New(t, ledgertest.Options{Migrations: consentsql.Migrations, EraseAlso: consentsql.EraseRows})
	consents := consentsql.New(env.DB, env.Ledger)
	svc, err := consent.NewService(context.Background(), consent.Config{
		Store: consents, Recorder: consents, Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}), Rules: nationalrules.Illustrative(),
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Audience: EmbeddedAudience, Logger: slog.New(slog.DiscardHandler)}
	for _, missing := range []string{"page-token.key", "token-issuer.key", ""} {
		dir := t.TempDir()
		if err := keys.CreateShared(dir); err != nil {
			t.Fatal(err)
		}
		if missing != "" {
			if err := os.Remove(filepath.Join(dir, missing)); err != nil {
				t.Fatal(err)
			}
		}
		n := Node{
			Ledger: env.Ledger, Consent: svc, Consents: consents,
			Origin: env.Origin, CheckpointKey: env.CheckpointKey.Name(), ReceiptKey: env.ReceiptKey.Name(),
			KeysDir: dir, NoCreateKeys: true,
		}
		a, err := Start(context.Background(), cfg, n)
		if missing == "" {
			if err != nil {
				t.Errorf("Start with every key: %v", err)
			} else {
				a.Stop(context.Background())
			}
			continue
		}
		if err == nil {
			a.Stop(context.Background())
		}
		if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), filepath.Join(dir, missing)) || !strings.Contains(err.Error(), "vigie init") {
			t.Errorf("Start without %s = %v, want an error naming it and vigie init", missing, err)
		}
		if _, err := os.Stat(filepath.Join(dir, missing)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Start made %s (%v)", missing, err)
		}
	}
}

// TestStart starts the service on a test ledger: the HTTP API answers
// through the gateway, /metrics is on the admin server only, with the
// ledger's metrics and the node's other collectors, and Stop stops it.
func TestStart(t *testing.T) {
	env := ledgertest.New(t, ledgertest.Options{Migrations: consentsql.Migrations, EraseAlso: consentsql.EraseRows})
	consents := consentsql.New(env.DB, env.Ledger)
	svc, err := consent.NewService(context.Background(), consent.Config{
		Store: consents, Recorder: consents, Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}), Rules: nationalrules.Illustrative(),
	})
	if err != nil {
		t.Fatal(err)
	}
	extra := prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigie_test_extra", Help: "A collector of the node's."})
	n := Node{
		Ledger: env.Ledger, Consent: svc, Consents: consents,
		Origin: env.Origin, CheckpointKey: env.CheckpointKey.Name(), ReceiptKey: env.ReceiptKey.Name(),
		KeysDir:    t.TempDir(),
		Collectors: []prometheus.Collector{extra},
	}
	cfg := Config{GRPCAddr: "0.0.0.0:0", HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Audience: EmbeddedAudience, Version: "v9.9.9", Logger: slog.New(slog.DiscardHandler)}
	if _, err := Start(context.Background(), cfg, n); !errors.Is(err, ErrNeedsTLS) {
		t.Fatalf("Start beyond loopback without TLS: %v, want ErrNeedsTLS", err)
	}
	cfg.GRPCAddr = "127.0.0.1:0"
	a, err := Start(context.Background(), cfg, n)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop(context.Background())
	a.MarkReady()
	grpcURL, httpURL := a.URLs()
	if grpcURL != a.GRPCAddr().String() || !strings.HasPrefix(httpURL, "http://127.0.0.1:") || a.SignIn() != "" {
		t.Errorf("URLs() = %s, %s; SignIn() = %q", grpcURL, httpURL, a.SignIn())
	}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(httpURL + "/v1/log/key"); code != 200 || !strings.Contains(body, env.Origin) {
		t.Errorf("GET /v1/log/key = %d %s, want the log's origin", code, body)
	}
	if code, _ := get(httpURL + "/metrics"); code != 404 {
		t.Errorf("the HTTP API's /metrics = %d, want 404 with an admin server", code)
	}
	m := a.MetricsURL()
	if strings.HasPrefix(m, httpURL) {
		t.Errorf("MetricsURL() = %s, want the admin server's", m)
	}
	code, body := get(m)
	for _, want := range []string{`vigie_build_info{go_version=`, `version="v9.9.9"`, "vigie_ledger_", "vigie_tiles_cache_hits_total 0", "vigie_test_extra 0"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("admin /metrics = %d, without %s", code, want)
		}
	}
	a.Stop(context.Background())
	if _, err := http.Get(httpURL + "/healthz"); err == nil {
		t.Error("the HTTP API answers after Stop")
	}
}
