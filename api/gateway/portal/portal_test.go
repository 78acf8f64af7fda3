package portal

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"io/fs"
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

func newTestPortal(t *testing.T) (http.Handler, *auth.Issuer) {
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
	h, _ := newTestPortal(t)
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

// TestNoSideDoor: the misuse alerts are an API method
// (AuditService.ListAlerts, GET /v1/audit/alerts), under the API's
// authorization matrix and rate limits; the portal serves no route of its
// own for them.
func TestNoSideDoor(t *testing.T) {
	h, iss := newTestPortal(t)
	tok, err := iss.Mint(auth.TokenRequest{Role: auth.RoleRegulator, Subject: "cnil", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", Prefix+"api/alerts", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusNotFound {
		t.Errorf("GET %sapi/alerts = %d %s, want 404", Prefix, w.Code, w.Body)
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

// TestFormsNeverSubmit: no page's form is ever submitted by the browser
// itself. Before, form-action 'self' let a form submitted before its
// script ran (a click while the page loads) send its named fields in a
// GET URL: the sign-in's bearer token (index.html?token=...), an
// auditor's search for an INS (audit.html?patient_ins=...), into the
// server's and the browser's history.
func TestFormsNeverSubmit(t *testing.T) {
	directives := map[string]string{}
	for _, d := range strings.Split(CSP, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		directives[name] = value
	}
	if got := directives["form-action"]; got != "'none'" {
		t.Errorf("CSP form-action %q, want 'none'", got)
	}
	pages, err := fs.Glob(staticFS, "static/*.html")
	if err != nil {
		t.Fatal(err)
	}
	forms := 0
	for _, p := range pages {
		b, err := fs.ReadFile(staticFS, p)
		if err != nil {
			t.Fatal(err)
		}
		forms += strings.Count(string(b), "<form ")
	}
	if forms < 5 {
		t.Errorf("found %d forms in %d pages: wrong directory?", forms, len(pages))
	}
}

// TestIdentity: api/identity says who a token is as the API sees it
// (role and organisations), and refuses a bad token without quoting it.
func TestIdentity(t *testing.T) {
	h, iss := newTestPortal(t)
	dpo, err := iss.Mint(auth.TokenRequest{Role: auth.RoleDPO, Subject: "alice", Organizations: []string{"750712184"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, authorization string
		code                int
		body                string
	}{
		{"a DPO", "Bearer " + dpo, http.StatusOK, `{"organizations":["750712184"],"role":"dpo"}`},
		{"no token", "", http.StatusUnauthorized, `"invalid credentials: no credentials"`},
		{"a broken token", "Bearer " + dpo[:len(dpo)-4] + "AAAA", http.StatusUnauthorized, `invalid signature`},
	} {
		r := httptest.NewRequest(http.MethodGet, Prefix+"api/identity", nil)
		if tc.authorization != "" {
			r.Header.Set("Authorization", tc.authorization)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		body := w.Body.String()
		if w.Code != tc.code || !strings.Contains(body, tc.body) || w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d %s, want %d with %s", tc.name, w.Code, body, tc.code, tc.body)
		}
		if strings.Contains(body, dpo[len(dpo)-20:]) {
			t.Errorf("%s: the answer quotes the token", tc.name)
		}
	}
}
