package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc/metadata"

	"github.com/vigie-sante/vigie/api/gateway/portal"
	"github.com/vigie-sante/vigie/api/gateway/portal/oidctest"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// TestPortalOIDCSignIn is the patient's sign-in through an OpenID Connect
// provider (oidctest), in a real browser against vigie serve configured
// for it: the button leads to the provider and back to the history page,
// signed in as the token's subject; the token is in no log; a tampered
// state and a wrong PKCE verifier end on the sign-in page with a message.
func TestPortalOIDCSignIn(t *testing.T) {
	provider := oidctest.New(t, "vigie-portal", e2ePatient, map[string]any{"role": "patient"})
	// The redirect_uri needs the HTTP port before the start.
	port := freePort(t)
	public := "http://127.0.0.1:" + port
	e := startE2E(t, "--http-addr", "127.0.0.1:"+port, "--public-url", public,
		"--oidc-issuer", provider.Issuer, "--oidc-audience", provider.ClientID, "--oidc-client-id", provider.ClientID)
	if base := e.http().base; base != public {
		t.Fatalf("HTTP API at %s, want %s", base, public)
	}
	if !strings.Contains(e.proc.output(), "patients sign in with "+provider.Issuer) {
		t.Errorf("the banner does not name the provider:\n%s", e.proc.output())
	}

	// One access to the patient's record, by a hospital whose token the
	// provider issued (the embedded issuer is not accepted any more).
	serviceToken, err := provider.Token("hospital-his", map[string]any{"role": "service", "orgs": []string{e2eHospital}}, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+serviceToken)
	resp, err := vigiev1.NewAccessServiceClient(e.conn).Check(ctx, checkRequest("oidc-1"))
	if err != nil || resp.Decision != vigiev1.Decision_DECISION_ALLOW {
		t.Fatalf("Check = %v, %v", resp, err)
	}
	e.waitCheckpoint(resp.Event.LeafIndex + 1)

	b := newBrowser(t)
	b.run("open the sign-in page",
		chromedp.Navigate(public+portal.Prefix),
		chromedp.WaitVisible(chromedp.CSS("#oidc-signin")),
	)
	b.screenshot("signin-oidc-fr")
	if txt := b.text("#oidc-signin"); txt != "Se connecter avec mon compte santé" {
		t.Errorf("the button says %q", txt)
	}
	b.run("sign in with the provider",
		chromedp.Click(chromedp.CSS("#oidc-signin")),
		chromedp.WaitVisible(chromedp.CSS(`#verdict[data-state="verified"], #verdict[data-state="failed"], #verdict[data-state="error"]`)),
	)
	if state := b.attr("#verdict", "data-state"); state != "verified" {
		b.screenshot("oidc-history-not-verified")
		t.Fatalf("history verdict %q: %s", state, b.text("#verdict"))
	}
	if n := b.attr("#verdict", "data-events"); n != "1" {
		t.Errorf("verified %s events, want 1", n)
	}
	where := get(b, "read the location", chromedp.Evaluate[string]("location.href"))
	if u, _ := url.Parse(where); u == nil || u.Path != portal.Prefix+"history.html" || u.Fragment != "" || u.RawQuery != "" {
		t.Errorf("signed in at %s, want the history page without fragment or query", where)
	}
	kept := get(b, "read the session", chromedp.Evaluate[string]("sessionStorage.getItem('vigie.token') || ''"))
	issued := provider.Issued()
	if kept == "" || !strings.Contains(strings.Join(issued, " "), kept) {
		t.Errorf("the session keeps %q, not a token of the provider", kept)
	}
	back := get(b, "read the history", chromedp.Evaluate[bool]("history.length > 0 && !location.hash"))
	if !back {
		t.Error("the fragment is still in the location")
	}

	// Faults: each ends on the sign-in page with its message.
	for _, tc := range []struct {
		name  string
		hooks oidctest.Hooks
		code  string
		says  string
	}{
		{"tampered state", oidctest.Hooks{TamperState: true}, "state", "expirée ou altérée"},
		{"wrong PKCE verifier", oidctest.Hooks{WrongChallenge: true}, "exchange", "a refusé de confirmer"},
	} {
		provider.SetHooks(tc.hooks)
		b.run(tc.name,
			eval("sessionStorage.clear()"),
			chromedp.Navigate(public+portal.Prefix),
			chromedp.WaitVisible(chromedp.CSS("#oidc-signin")),
			chromedp.Click(chromedp.CSS("#oidc-signin")),
			chromedp.WaitVisible(chromedp.CSS(`#signin-message[data-oidc-error]`)),
		)
		if got := b.attr("#signin-message", "data-oidc-error"); got != tc.code {
			t.Errorf("%s: error %q, want %q", tc.name, got, tc.code)
		}
		if txt := b.text("#signin-message"); !strings.Contains(txt, tc.says) {
			t.Errorf("%s: the page says %q, want %q", tc.name, txt, tc.says)
		}
		if s := get(b, "read the session", chromedp.Evaluate[string]("sessionStorage.getItem('vigie.token') || ''")); s != "" {
			t.Errorf("%s: signed in anyway", tc.name)
		}
		b.screenshot("signin-oidc-error-" + tc.code)
	}
	provider.SetHooks(oidctest.Hooks{})

	// A link carrying someone's valid token, not from a sign-in this tab
	// started (login CSRF): refused, nobody signed in.
	foreign, err := provider.Token(e2ePatient, map[string]any{"role": "patient"}, "")
	if err != nil {
		t.Fatal(err)
	}
	victim := newBrowser(t)
	victim.run("follow a link with someone's token",
		chromedp.Navigate(public+portal.Prefix+"index.html#oidc_token="+url.QueryEscape(foreign)+"&oidc_tab=dGFiLXZhbHVlLW9mLXRoZS10ZXN0LXBhZ2UtMDEyMw"),
		chromedp.WaitVisible(chromedp.CSS(`#signin-message[data-oidc-error]`)),
	)
	if got := victim.attr("#signin-message", "data-oidc-error"); got != "foreign" {
		t.Errorf("a foreign token in a link: error %q, want foreign", got)
	}
	if s := get(victim, "read the session", chromedp.Evaluate[string]("sessionStorage.getItem('vigie.token') || ''")); s != "" {
		t.Error("a link with someone's token signed the reader in")
	}
	victim.screenshot("signin-oidc-foreign")

	// The provider really checks PKCE: the same request, with a fresh code
	// each time, succeeds with the verifier and fails with another.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		verifier string
		want     int
	}{{"wrong-verifier-wrong-verifier-wrong-verifier", http.StatusBadRequest}, {"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", http.StatusOK}} {
		r, err := client.Get(provider.Issuer + "/authorize?" + url.Values{
			"response_type": {"code"}, "client_id": {provider.ClientID}, "redirect_uri": {public + "/portal/oidc/callback"},
			"scope": {"openid"}, "state": {"s"}, "nonce": {"n"}, "code_challenge_method": {"S256"},
			// RFC 7636, appendix B: the challenge of the second verifier.
			"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"},
		}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		loc, _ := url.Parse(r.Header.Get("Location"))
		r, err = http.PostForm(provider.Issuer+"/token", url.Values{
			"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "client_id": {provider.ClientID},
			"redirect_uri": {public + "/portal/oidc/callback"}, "code_verifier": {tc.verifier},
		})
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != tc.want {
			t.Errorf("token endpoint with verifier %q: %d, want %d", tc.verifier, r.StatusCode, tc.want)
		}
	}

	// Neither the codes nor the tokens reached the server's output.
	if code := e.proc.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("vigie serve exited with %d", code)
	}
	logs := e.proc.output() + "\n" + e.proc.stderr.String()
	for _, s := range provider.Issued() {
		if strings.Contains(logs, s) {
			t.Errorf("the server's output holds a code or token of the provider")
		}
	}
	if !strings.Contains(logs, "OpenID Connect") {
		t.Errorf("the server logged nothing of the failed sign-ins:\n%s", e.proc.stderr)
	}
}
