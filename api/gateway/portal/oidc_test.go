package portal

import (
	"bytes"
	"context"
	"errors"
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
		OIDC: &OIDCConfig{Issuer: p.Issuer, ClientID: p.ClientID, ClientSecret: secret,
			RedirectURL: redirect, CookieKey: bytes.Repeat([]byte{1}, 32)},
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
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", Prefix+"oidc/login?t="+testTab, nil))
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
	_, h, _ := oidcPortal(t, false)
	plain, _ := newTestPortal(t)
	for _, tc := range []struct {
		name string
		h    http.Handler
		want string
	}{{"with OIDC", h, `{"oidc":true}`}, {"without", plain, `{"oidc":false}`}} {
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
