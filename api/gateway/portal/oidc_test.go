package portal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/api/gateway/portal/oidctest"
	"github.com/vigie-sante/vigie/consent/enrolment"
)

func TestStateCookie(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	now := time.Unix(1_700_000_000, 0)
	st := oidcState{State: "s", Nonce: "n", Verifier: "v", Tab: testTab, Expires: now.Add(oidcStateTTL).Unix()}
	good := sealState(key, st)
	if got, err := openState(key, good, now); err != nil || got != st {
		t.Fatalf("openState(sealState(st)) = %+v, %v; want %+v", got, err, st)
	}
	payload, mac, _ := strings.Cut(good, ".")
	other := sealState(key, oidcState{State: "s2", Nonce: "n", Verifier: "v", Tab: testTab, Expires: st.Expires})
	otherPayload, _, _ := strings.Cut(other, ".")
	for _, tc := range []struct {
		name  string
		value string
		key   []byte
		now   time.Time
	}{
		{"expired", good, key, now.Add(oidcStateTTL)},
		{"another key", good, bytes.Repeat([]byte{8}, 32), now},
		{"payload swapped", otherPayload + "." + mac, key, now},
		{"MAC flipped", payload + "." + strings.ToUpper(mac[:1]) + mac[1:] + "A", key, now},
		{"no MAC", payload, key, now},
		{"empty", "", key, now},
		{"too long", strings.Repeat("a", maxCookieValue+1), key, now},
		{"empty fields", sealState(key, oidcState{Expires: st.Expires}), key, now},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := openState(tc.key, tc.value, tc.now); !errors.Is(err, errBadCookie) {
				t.Errorf("openState = %v, want errBadCookie", err)
			}
		})
	}
}

const testINS = "279035121518989"

// oidcPortal is a portal whose sign-in goes through a fake provider, and
// whose Authenticate verifies the provider's tokens as the API does.
func oidcPortal(t *testing.T, secure bool) (*oidctest.Provider, http.Handler, *bytes.Buffer) {
	t.Helper()
	p := oidctest.New(t, "vigie-portal", testINS, map[string]any{"role": "patient"})
	h, logs := oidcPortalFor(t, p, secure, "")
	return p, h, logs
}

// oidcPortalFor is a portal signing in through p, as a confidential
// client if secret is not empty.
func oidcPortalFor(t *testing.T, p *oidctest.Provider, secure bool, secret string) (http.Handler, *bytes.Buffer) {
	t.Helper()
	keys, err := auth.NewRemoteKeys(auth.RemoteKeysConfig{URL: p.Issuer + "/jwks"})
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: p.Issuer, Audience: p.ClientID, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	redirect := "http://127.0.0.1:8080" + Prefix + "oidc/callback"
	if secure {
		redirect = "https://vigie.example" + Prefix + "oidc/callback"
	}
	var logs bytes.Buffer
	h, err := New(Config{
		Authenticate: func(ctx context.Context, a string) (*auth.Identity, error) {
			return v.Verify(ctx, strings.TrimPrefix(a, "Bearer "))
		},
		OIDC: []OIDCConfig{{Issuer: p.Issuer, ClientID: p.ClientID, ClientSecret: secret,
			RedirectURL: redirect, CookieKey: bytes.Repeat([]byte{1}, 32)}},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, &logs
}

// signInFlow runs the browser's part: login, the provider, the callback.
// It returns the callback's Location.
func signInFlow(t *testing.T, h http.Handler) string {
	t.Helper()
	return signInFlowAt(t, h, "")
}

// signInFlowAt is signInFlow with more of the login's query (&p=1).
func signInFlowAt(t *testing.T, h http.Handler, query string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", Prefix+"oidc/login?t="+testTab+query, nil))
	if rec.Code != http.StatusFound {
		t.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	cookies := rec.Result().Cookies()
	// The provider's authorization endpoint sends the browser back.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(rec.Header().Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || back.Path != Prefix+"oidc/callback" {
		t.Fatalf("the provider sent the browser to %q", resp.Header.Get("Location"))
	}
	req := httptest.NewRequest("GET", back.RequestURI(), nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("callback: %d %s", rec.Code, rec.Body)
	}
	if cs := rec.Result().Cookies(); len(cs) != 1 || cs[0].Name != oidcCookie || cs[0].MaxAge >= 0 {
		t.Errorf("callback cookies %v, want %s deleted", cs, oidcCookie)
	}
	return rec.Header().Get("Location")
}

func TestOIDCSignIn(t *testing.T) {
	p, h, logs := oidcPortal(t, false)

	// The login redirection and its cookie.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", Prefix+"oidc/login?t="+testTab, nil))
	loc, _ := url.Parse(rec.Header().Get("Location"))
	q := loc.Query()
	if !strings.HasPrefix(loc.String(), p.Issuer+"/authorize?") || q.Get("response_type") != "code" || q.Get("client_id") != p.ClientID ||
		q.Get("redirect_uri") != "http://127.0.0.1:8080/portal/oidc/callback" || q.Get("scope") != "openid" ||
		q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 || q.Get("state") == "" || q.Get("nonce") == "" {
		t.Errorf("login redirects to %s", loc)
	}
	cs := rec.Result().Cookies()
	if len(cs) != 1 {
		t.Fatalf("login cookies %v", cs)
	}
	if c := cs[0]; c.Name != oidcCookie || !c.HttpOnly || c.Secure || c.SameSite != http.SameSiteLaxMode || c.Path != "/portal/oidc/" || c.MaxAge != 600 {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Lax, Path=/portal/oidc/, 10 minutes, not Secure over http", c)
	}

	// The whole flow: the ID token (the access token is opaque) is
	// handed over in the fragment.
	loc2 := signInFlow(t, h)
	frag, ok := strings.CutPrefix(loc2, Prefix+"index.html#")
	if !ok {
		t.Fatalf("callback redirects to %q", loc2)
	}
	fq, err := url.ParseQuery(frag)
	tok := fq.Get("oidc_token")
	if err != nil || tok == "" {
		t.Fatalf("callback redirects to %q", loc2)
	}
	issued := p.Issued()
	if !strings.Contains(strings.Join(issued, " "), tok) {
		t.Errorf("the page got %q, not a token the provider issued", tok)
	}
	for _, s := range issued {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the log shows a code or token: %s", logs)
		}
	}

	// Faults.
	for _, tc := range []struct {
		name  string
		hooks oidctest.Hooks
		want  string
	}{
		{"tampered state", oidctest.Hooks{TamperState: true}, "state"},
		{"wrong PKCE verifier", oidctest.Hooks{WrongChallenge: true}, "exchange"},
		{"denied", oidctest.Hooks{Deny: true}, "denied"},
		{"wrong nonce", oidctest.Hooks{WrongNonce: true}, "token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.SetHooks(tc.hooks)
			defer p.SetHooks(oidctest.Hooks{})
			if got, want := signInFlow(t, h), Prefix+"index.html#oidc_error="+tc.want; got != want {
				t.Errorf("callback redirects to %q, want %q", got, want)
			}
		})
	}

	// A callback without the cookie, or replayed.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", Prefix+"oidc/callback?code=x&state=y", nil))
	if got := rec.Header().Get("Location"); got != Prefix+"index.html#oidc_error=state" {
		t.Errorf("callback without cookie redirects to %q", got)
	}
}

func TestOIDCConfidentialClient(t *testing.T) {
	p := oidctest.New(t, "vigie-portal", testINS, map[string]any{"role": "patient"})
	p.ClientSecret = "s3cret"
	for _, tc := range []struct {
		name, secret, want string
	}{
		{"with the secret", "s3cret", Prefix + "index.html#oidc_token="},
		{"with another secret", "other", Prefix + "index.html#oidc_error=exchange"},
		{"as a public client", "", Prefix + "index.html#oidc_error=exchange"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, logs := oidcPortalFor(t, p, false, tc.secret)
			if got := signInFlow(t, h); !strings.HasPrefix(got, tc.want) {
				t.Errorf("callback redirects to %q, want %s...", got, tc.want)
			}
			if strings.Contains(logs.String(), "s3cret") {
				t.Errorf("the log shows the client secret: %s", logs)
			}
		})
	}
}

func TestOIDCConfig(t *testing.T) {
	good := func() OIDCConfig {
		return OIDCConfig{Issuer: "https://idp.example", ClientID: "c", RedirectURL: "https://v.example/portal/oidc/callback", CookieKey: make([]byte, 32)}
	}
	for _, tc := range []struct {
		name   string
		change func(c *OIDCConfig)
		want   string
	}{
		{"valid", func(c *OIDCConfig) {}, ""},
		{"no issuer", func(c *OIDCConfig) { c.Issuer = "" }, "Issuer"},
		{"no client", func(c *OIDCConfig) { c.ClientID = "" }, "ClientID"},
		{"short key", func(c *OIDCConfig) { c.CookieKey = make([]byte, 16) }, "CookieKey"},
		{"redirect elsewhere", func(c *OIDCConfig) { c.RedirectURL = "https://v.example/cb" }, "RedirectURL"},
		{"relative redirect", func(c *OIDCConfig) { c.RedirectURL = "/portal/oidc/callback" }, "RedirectURL"},
		{"issuer over http", func(c *OIDCConfig) { c.Issuer = "http://idp.example" }, "https"},
		{"issuer over http on loopback", func(c *OIDCConfig) { c.Issuer = "http://127.0.0.1:9999" }, ""},
		// The code and the state cookie come back to the redirect URL:
		// in clear only on this machine, as for the issuer.
		{"redirect over http", func(c *OIDCConfig) { c.RedirectURL = "http://v.example/portal/oidc/callback" }, "RedirectURL"},
		{"redirect over http on loopback", func(c *OIDCConfig) { c.RedirectURL = "http://localhost:8080/portal/oidc/callback" }, ""},
		{"redirect with a query", func(c *OIDCConfig) { c.RedirectURL = "https://v.example/portal/oidc/callback?x=1" }, "RedirectURL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.change(&c)
			err := c.validate()
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestOIDCSecureCookie(t *testing.T) {
	_, h, _ := oidcPortal(t, true)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", Prefix+"oidc/login?t="+testTab, nil))
	if cs := rec.Result().Cookies(); len(cs) != 1 || !cs[0].Secure {
		t.Errorf("cookies %v, want one Secure with an https redirect URL", cs)
	}
}

func TestClientConfig(t *testing.T) {
	p, h, _ := oidcPortal(t, false)
	plain, _ := newTestPortal(t)
	for _, tc := range []struct {
		name string
		h    http.Handler
		want string
	}{{"with OIDC", h, `{"oidc":true,"providers":[{"name":"` + strings.TrimPrefix(p.Issuer, "http://") + `"}]}`}, {"without", plain, `{"oidc":false,"providers":[]}`}} {
		rec := httptest.NewRecorder()
		tc.h.ServeHTTP(rec, httptest.NewRequest("GET", Prefix+"api/config", nil))
		if got := strings.TrimSpace(rec.Body.String()); got != tc.want {
			t.Errorf("%s: api/config = %s, want %s", tc.name, got, tc.want)
		}
	}
	rec := httptest.NewRecorder()
	plain.ServeHTTP(rec, httptest.NewRequest("GET", Prefix+"oidc/login?t="+testTab, nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("oidc/login without OIDC: %d, want 404", rec.Code)
	}
}

// testTab is a sign-in page's tab value.
const testTab = "dGFiLXZhbHVlLW9mLXRoZS10ZXN0LXBhZ2UtMDEyMw"

// TestOIDCTabValue: the login needs the page's tab value, and the
// callback hands it back with the token, for the page to compare.
func TestOIDCTabValue(t *testing.T) {
	_, h, _ := oidcPortal(t, false)
	for _, q := range []string{"", "?t=short", "?t=" + strings.Repeat("a", 129), "?t=" + testTab[:30] + "%2F" + testTab[30:]} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", Prefix+"oidc/login"+q, nil))
		if loc := rec.Header().Get("Location"); rec.Code != http.StatusSeeOther || loc != Prefix+"index.html#oidc_error=state" || len(rec.Result().Cookies()) != 0 {
			t.Errorf("login%s: %d to %q, cookies %v; want the state error and no cookie", q, rec.Code, loc, rec.Result().Cookies())
		}
	}
	loc := signInFlow(t, h)
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	frag, err := url.ParseQuery(u.Fragment)
	if err != nil || frag.Get("oidc_token") == "" || frag.Get("oidc_tab") != testTab {
		t.Errorf("callback to %q: want the token and the tab value %s", loc, testTab)
	}
}

// TestOIDCSeveralProviders: the page offers each provider; oidc/login?p=
// signs in at the one chosen, the callback exchanges the code there and
// accepts that provider's token only.
func TestOIDCSeveralProviders(t *testing.T) {
	pro := oidctest.New(t, "vigie-pro", "rpps:10000000001", map[string]any{"role": "auditor"})
	pat := oidctest.New(t, "vigie-patients", testINS, map[string]any{"role": "patient"})
	var vs []*auth.Verifier
	for _, p := range []*oidctest.Provider{pro, pat} {
		keys, err := auth.NewRemoteKeys(auth.RemoteKeysConfig{URL: p.Issuer + "/jwks"})
		if err != nil {
			t.Fatal(err)
		}
		v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: p.Issuer, Audience: p.ClientID, Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	authn, err := auth.NewAuthenticator(auth.AuthenticatorConfig{Verifiers: vs})
	if err != nil {
		t.Fatal(err)
	}
	redirect := "http://127.0.0.1:8080" + Prefix + "oidc/callback"
	key := bytes.Repeat([]byte{1}, 32)
	h, err := New(Config{
		Authenticate: func(ctx context.Context, a string) (*auth.Identity, error) { return authn.Authenticate(ctx, a, nil) },
		OIDC: []OIDCConfig{
			{Name: "Pro Santé Connect", Issuer: pro.Issuer, ClientID: pro.ClientID, RedirectURL: redirect, CookieKey: key},
			{Issuer: pat.Issuer, ClientID: pat.ClientID, RedirectURL: redirect, CookieKey: key},
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", Prefix+"api/config", nil))
	patHost := strings.TrimPrefix(pat.Issuer, "http://")
	if want := `{"oidc":true,"providers":[{"name":"Pro Santé Connect"},{"name":"` + patHost + `"}]}`; strings.TrimSpace(rec.Body.String()) != want {
		t.Errorf("api/config = %s, want %s", rec.Body, want)
	}
	for i, p := range []*oidctest.Provider{pro, pat} {
		loc := signInFlowAt(t, h, "&p="+string(rune('0'+i)))
		fq, _ := url.ParseQuery(strings.TrimPrefix(loc, Prefix+"index.html#"))
		tok := fq.Get("oidc_token")
		if tok == "" || !strings.Contains(strings.Join(p.Issued(), " "), tok) {
			t.Errorf("provider %d: callback redirects to %q, want a token of %s", i, loc, p.Issuer)
		}
	}
	for _, bad := range []string{"&p=2", "&p=-1", "&p=01", "&p=x"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", Prefix+"oidc/login?t="+testTab+bad, nil))
		if got := rec.Header().Get("Location"); got != Prefix+"index.html#oidc_error=state" {
			t.Errorf("login%s redirects to %q, want the state error", bad, got)
		}
	}
	// A configuration whose providers would set different cookies.
	_, err = New(Config{
		Authenticate: func(ctx context.Context, a string) (*auth.Identity, error) { return nil, auth.ErrNoCredentials },
		OIDC: []OIDCConfig{
			{Issuer: pro.Issuer, ClientID: pro.ClientID, RedirectURL: redirect, CookieKey: key},
			{Issuer: pat.Issuer, ClientID: pat.ClientID, RedirectURL: redirect, CookieKey: bytes.Repeat([]byte{2}, 32)},
		},
	})
	if err == nil {
		t.Error("New accepted providers with different cookie keys")
	}
}

// TestEnrolRoute: POST api/enrol hands the bearer and the code to
// Config.Enrol and says which part is wrong, quoting no code.
func TestEnrolRoute(t *testing.T) {
	var gotAuth, gotCode string
	var result error
	h, err := New(Config{
		Authenticate: func(ctx context.Context, a string) (*auth.Identity, error) {
			return nil, fmt.Errorf("%w: no enrolment", auth.ErrNotEnrolled)
		},
		Enrol: func(ctx context.Context, authorization, code string) error {
			gotAuth, gotCode = authorization, code
			return result
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", Prefix+"api/identity", nil)
	req.Header.Set("Authorization", "Bearer x.y.z")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), `"enrol":true`) {
		t.Errorf("api/identity of an unenrolled patient = %d %s, want 401 offering the enrolment", rec.Code, rec.Body)
	}
	const code = "ABCD-EFGH-JKMN-PQRS"
	for _, tc := range []struct {
		name   string
		body   string
		result error
		status int
	}{
		{"enrolled", `{"code":"` + code + `"}`, nil, 200},
		{"no code", `{}`, nil, 400},
		{"not JSON", `code=` + code, nil, 400},
		{"unknown field", `{"code":"` + code + `","ins":"1"}`, nil, 400},
		{"code used", `{"code":"` + code + `"}`, fmt.Errorf("enrol: %w", enrolment.ErrCodeUsed), 400},
		{"code expired", `{"code":"` + code + `"}`, fmt.Errorf("enrol: %w", enrolment.ErrCodeExpired), 400},
		{"sign-in enrolled already", `{"code":"` + code + `"}`, fmt.Errorf("enrol: %w", enrolment.ErrAlreadyEnrolled), 409},
		{"token expired", `{"code":"` + code + `"}`, auth.ErrExpired, 401},
		{"database down", `{"code":"` + code + `"}`, errors.New("db down"), 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			result, gotCode = tc.result, ""
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("POST", Prefix+"api/enrol", strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer x.y.z")
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Errorf("POST api/enrol = %d %s, want %d", rec.Code, rec.Body, tc.status)
			}
			if strings.Contains(rec.Body.String(), code) {
				t.Errorf("the answer quotes the code: %s", rec.Body)
			}
			if tc.status != 400 || tc.result != nil {
				if gotAuth != "Bearer x.y.z" || gotCode != code {
					t.Errorf("Enrol got %q, %q", gotAuth, gotCode)
				}
			}
		})
	}
}
