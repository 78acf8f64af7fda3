package portal

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/api/auth"
)

// TestWasmUpToDate rebuilds the verifier and checks that the embedded
// build is the one of the code in this tree (with the same Go toolchain:
// builds of other versions differ by nature, and CI uses the recorded
// one). Regenerate with `go generate ./api/gateway/portal`.
func TestWasmUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the verifier for js/wasm")
	}
	recorded, err := os.ReadFile("static/verify.wasm.go-version")
	if err != nil {
		t.Fatal(err)
	}
	if v := strings.TrimSpace(string(recorded)); v != runtime.Version() {
		t.Skipf("static/verify.wasm was built with %s, this is %s: cannot compare", v, runtime.Version())
	}
	out := filepath.Join(t.TempDir(), "verify.wasm")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s", "-o", out, "../../../cmd/verify-wasm")
	build.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	for _, f := range []struct{ built, embedded string }{
		{out, "static/verify.wasm"},
		{filepath.Join(goroot(t), "lib", "wasm", "wasm_exec.js"), "static/wasm_exec.js"},
	} {
		want, err := os.ReadFile(f.built)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f.embedded)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run go generate ./api/gateway/portal", f.embedded)
		}
	}
}

func newTestPortal(t *testing.T, alerts AlertSource) (http.Handler, *auth.Issuer) {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(nil)
	iss, err := auth.NewIssuer(auth.IssuerConfig{Issuer: "test", Audience: "vigie", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: "test", Audience: "vigie", Keys: iss.Keys()})
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.NewAuthenticator(auth.AuthenticatorConfig{Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{
		Authenticate: func(ctx context.Context, h string) (*auth.Identity, error) { return a.Authenticate(ctx, h, nil) },
		Alerts:       alerts,
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, iss
}

// TestEveryFileHasTheCSP serves every embedded file and checks its
// security headers, content type, and that no page has an inline script,
// an inline style, an event handler attribute or a third-party URL.
func TestEveryFileHasTheCSP(t *testing.T) {
	h, _ := newTestPortal(t, nil)
	entries, err := staticFS.ReadDir("static")
	if err != nil {
		t.Fatal(err)
	}
	inline := regexp.MustCompile(`\son[a-z]+=|<style|\sstyle=|https?://`)
	script := regexp.MustCompile(`<script[^>]*>[^<]*`)
	names := []string{""} // the directory: index.html
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go-version") {
			names = append(names, e.Name())
		}
	}
	for _, name := range names {
		r := httptest.NewRequest("GET", Prefix+name, nil)
		r.Header.Set("Accept-Encoding", "gzip")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			t.Errorf("%s: %d", name, w.Code)
			continue
		}
		if got := w.Header().Get("Content-Security-Policy"); got != CSP {
			t.Errorf("%s: CSP %q", name, got)
		}
		for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"} {
			if got := w.Header().Get(k); got != want {
				t.Errorf("%s: %s %q, want %q", name, k, got, want)
			}
		}
		if strings.HasSuffix(name, ".html") {
			b := w.Body.Bytes()
			if w.Header().Get("Content-Encoding") == "gzip" {
				b, _ = staticFS.ReadFile("static/" + name)
			}
			if m := inline.Find(b); m != nil {
				t.Errorf("%s has %q: no inline style or handler, no absolute URL", name, m)
			}
			for _, m := range script.FindAll(b, -1) {
				if !regexp.MustCompile(`^<script src="[a-z0-9_]+\.js" defer>$`).Match(m) {
					t.Errorf("%s has %q: scripts come from files of the portal only", name, m)
				}
			}
		}
	}
	if !strings.Contains(CSP, "script-src 'self' 'wasm-unsafe-eval';") || strings.Contains(CSP, "unsafe-inline") || strings.Contains(CSP, "'unsafe-eval'") {
		t.Errorf("CSP %q: want scripts from self and wasm-unsafe-eval only", CSP)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", Prefix+"verify.wasm", nil))
	if ct := w.Header().Get("Content-Type"); ct != "application/wasm" || !bytes.HasPrefix(w.Body.Bytes(), []byte("\x00asm")) {
		t.Errorf("verify.wasm: %q, %q", ct, w.Body.Bytes()[:4])
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", Prefix+"no-such-file", nil))
	if w.Code != http.StatusNotFound {
		t.Errorf("a missing file: %d", w.Code)
	}
}

func TestDecisionTexts(t *testing.T) {
	texts := decisionTexts()
	if got := texts["rule"]["care-team"].FR; got != "membre de l'équipe de soins" {
		t.Errorf("care-team in French = %q", got)
	}
	for group, m := range texts {
		for k, v := range m {
			if v.FR == "" || v.EN == "" || v.FR == "règle nationale" || v.EN == "patient's directive" {
				t.Errorf("%s %s has no wording of its own: %+v", group, k, v)
			}
		}
	}
}

// fixedAlerts is an AlertSource that returns its alerts within scope.
type fixedAlerts struct{ all []Alert }

func (f fixedAlerts) Alerts(_ context.Context, s Scope) ([]Alert, error) {
	var out []Alert
	for _, a := range f.all {
		if len(s.Organizations) == 0 || strings.Contains(strings.Join(s.Organizations, ","), a.Organization) {
			out = append(out, a)
		}
	}
	return out, nil
}

type failingAlerts struct{}

func (failingAlerts) Alerts(context.Context, Scope) ([]Alert, error) {
	return nil, errors.New("db down")
}

func TestAlertsByRole(t *testing.T) {
	src := fixedAlerts{all: []Alert{
		{Kind: "break-glass-rate", Severity: SeverityWarning, Professional: "10000000002", Organization: "750712184", Time: time.Unix(0, 0)},
		{Kind: "burst", Severity: SeverityCritical, Professional: "10000000005", Organization: "130000011", Time: time.Unix(0, 0)},
	}}
	h, iss := newTestPortal(t, src)
	mint := func(role auth.Role, sub string, orgs ...string) string {
		tok, err := iss.Mint(auth.TokenRequest{Role: role, Subject: sub, Organizations: orgs, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + tok
	}
	for _, tc := range []struct {
		name, authz string
		code        int
		kinds       string
	}{
		{"regulator sees all", mint(auth.RoleRegulator, "cnil"), 200, "break-glass-rate,burst"},
		{"dpo sees its organisation", mint(auth.RoleDPO, "alice", "750712184"), 200, "break-glass-rate"},
		{"auditor reads the log, not alerts", mint(auth.RoleAuditor, "asso"), 403, ""},
		{"patient", mint(auth.RolePatient, "279035121518989"), 403, ""},
		{"no token", "", 401, ""},
		{"bad token", "Bearer x.y.z", 401, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", Prefix+"api/alerts", nil)
			if tc.authz != "" {
				r.Header.Set("Authorization", tc.authz)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.code {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.code, w.Body)
			}
			if tc.code != 200 {
				return
			}
			var resp struct{ Alerts []Alert }
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, a := range resp.Alerts {
				kinds = append(kinds, a.Kind)
			}
			if got := strings.Join(kinds, ","); got != tc.kinds {
				t.Errorf("alerts %s, want %s", got, tc.kinds)
			}
			if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
		})
	}
	for name, src := range map[string]AlertSource{"none configured": nil, "failing": failingAlerts{}} {
		h, iss := newTestPortal(t, src)
		tok, _ := iss.Mint(auth.TokenRequest{Role: auth.RoleRegulator, Subject: "cnil", TTL: time.Hour})
		r := httptest.NewRequest("GET", Prefix+"api/alerts", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if want := map[string]int{"none configured": 404, "failing": 503}[name]; w.Code != want || strings.Contains(w.Body.String(), "db down") {
			t.Errorf("%s: %d %s, want %d without the cause", name, w.Code, w.Body, want)
		}
	}
}

// goroot is the GOROOT of the go command that builds the verifier.
func goroot(t *testing.T) string {
	t.Helper()
	b, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	return strings.TrimSpace(string(b))
}
