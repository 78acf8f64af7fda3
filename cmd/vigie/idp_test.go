package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/vigie-sante/vigie/api/gateway/portal"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/internal/oidcop"
)

// TestIdentityProviders runs vigie serve --issuers against three real
// OpenID Connect providers (zitadel's op, internal/oidcop) whose users
// carry claims shaped like Pro Santé Connect's (professionals: no role,
// the RPPS in SubjectNameID), FranceConnect's (patients: identity traits
// and a per-service sub, no INS) and a hospital's own provider (patients,
// the INS in a claim the operator trusts; the portal signs in there). It
// calls the API with their ID tokens, signs in through the portal in a
// browser, checks the refusals name what is missing, and that nothing of
// a token reaches the log.
func TestIdentityProviders(t *testing.T) {
	port := freePort(t)
	public := "http://127.0.0.1:" + port
	callback := public + portal.Prefix + "oidc/callback"
	psc := oidcop.New(t, "vigie-psc", callback)
	fc := oidcop.New(t, "vigie-fc", callback)
	hosp := oidcop.New(t, "vigie-patients", callback)
	ops := oidcop.New(t, "vigie-ops", callback)
	reg := oidcop.New(t, "vigie-reg", callback)
	issuers := writeFile(t, fmt.Sprintf(`[
  {"issuer": %q, "audience": "vigie-psc", "role": "dpo", "organizations": [%q],
   "rpps_claim": "SubjectNameID", "rpps_prefix": "8"},
  {"issuer": %q, "audience": "vigie-fc", "client_id": "vigie-fc", "name": "FranceConnect",
   "role": "patient", "patient_subject": "enrolled"},
  {"issuer": %q, "audience": "vigie-patients", "client_id": "vigie-patients", "name": "Hôpital",
   "role": "patient", "patient_subject": "ins_claim", "ins_claim": "ins"},
  {"issuer": %q, "audience": "vigie-ops", "role": "admin"},
  {"issuer": %q, "audience": "vigie-reg", "role": "regulator"}
]`, psc.Issuer, e2eHospital, fc.Issuer, hosp.Issuer, ops.Issuer, reg.Issuer))
	e := startE2E(t, "--http-addr", "127.0.0.1:"+port, "--public-url", public, "--issuers", issuers)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	signIn := func(p *oidcop.Provider, sub string, claims map[string]any) (context.Context, string) {
		t.Helper()
		p.SetUser(sub, claims)
		tok, err := p.SignIn(ctx, callback)
		if err != nil {
			t.Fatalf("sign in at %s: %v", p.ClientID, err)
		}
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), tok
	}
	const (
		pscSub  = "f:550dc1c8-d97b-4b1e-ac8c-8eb4471cf9dd:ANS20220526"
		idNatPS = "810001234567"
		fcSub   = "b6048e95bb134ec5b1d1e1fa69f287172e91722b9354d637a1bcf2ebb0fd2ef5v1"
		fcSub2  = "5d2c0a4e8f3b1d6c7a9e0b2f4c6d8e1a3b5c7d9f0e2a4c6b8d1f3e5a7c9b0d2e"
		surname = "DUBOIS-MARCHAND"
	)
	pivot := map[string]any{"given_name": "Angela Claire", "family_name": surname, "birthdate": "1962-08-24", "gender": "female", "birthplace": "75107", "birthcountry": "99100"}
	with := func(m map[string]any, kv ...any) map[string]any {
		out := map[string]any{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1]
		}
		return out
	}
	var tokens []string

	// A patient of the hospital's provider reads their history (a read
	// that is itself recorded).
	patient, tok := signIn(hosp, "hosp-0001", with(pivot, "ins", e2ePatient))
	tokens = append(tokens, tok)
	if _, err := vigiev1.NewHistoryServiceClient(e.conn).ListAccesses(patient, &vigiev1.ListAccessesRequest{}); err != nil {
		t.Fatalf("ListAccesses as a patient of the hospital's provider: %v", err)
	}

	// A DPO signed in with Pro Santé Connect reads their hospital's events.
	dpo, tok := signIn(psc, pscSub, map[string]any{"SubjectNameID": idNatPS, "SubjectRole": []string{"10^1.2.250.1.213.1.1.5.5"}, "SubjectOrganization": "CH de test", "family_name": surname})
	tokens = append(tokens, tok)
	audit := vigiev1.NewAuditServiceClient(e.conn)
	if _, err := audit.SearchEvents(dpo, &vigiev1.SearchEventsRequest{Organization: e2eHospital}); err != nil {
		t.Fatalf("SearchEvents as a DPO of Pro Santé Connect: %v", err)
	}
	if _, err := audit.SearchEvents(dpo, &vigiev1.SearchEventsRequest{Organization: "130000011"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("SearchEvents of another organisation = %v, want PermissionDenied", err)
	}

	// Refusals, each naming what is missing.
	for _, tc := range []struct {
		name   string
		p      *oidcop.Provider
		sub    string
		claims map[string]any
		call   func(context.Context) error
		says   string
	}{
		{"a professional without a national identifier", psc, pscSub, map[string]any{"SubjectRole": []string{"10^x"}},
			func(ctx context.Context) error {
				_, err := audit.SearchEvents(ctx, &vigiev1.SearchEventsRequest{Organization: e2eHospital})
				return err
			}, "invalid subject"},
		{"a FranceConnect patient without an enrolment", fc, fcSub, pivot,
			func(ctx context.Context) error {
				_, err := vigiev1.NewHistoryServiceClient(e.conn).ListAccesses(ctx, &vigiev1.ListAccessesRequest{})
				return err
			}, "patient not enrolled"},
		{"a patient whose trusted claim is missing", hosp, "hosp-0002", pivot,
			func(ctx context.Context) error {
				_, err := vigiev1.NewHistoryServiceClient(e.conn).ListAccesses(ctx, &vigiev1.ListAccessesRequest{})
				return err
			}, "invalid subject"},
	} {
		ctx, tok := signIn(tc.p, tc.sub, tc.claims)
		tokens = append(tokens, tok)
		err := tc.call(ctx)
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), tc.says) {
			t.Errorf("%s: %v, want Unauthenticated saying %q", tc.name, err, tc.says)
		}
	}

	// Sign-in through the portal, in a browser, at the hospital's provider
	// (the second of the two the page offers).
	hosp.SetUser("hosp-0001", with(pivot, "ins", e2ePatient))
	b := newBrowser(t)
	b.run("sign in with the hospital's provider",
		chromedp.Navigate(public+portal.Prefix),
		chromedp.WaitVisible(chromedp.CSS("#oidc-signin-1")),
		chromedp.Click(chromedp.CSS("#oidc-signin-1")),
		chromedp.WaitVisible(chromedp.CSS(`#verdict[data-state="verified"], #verdict[data-state="failed"], #verdict[data-state="error"], #signin-message[data-oidc-error]`)),
	)
	if code := get(b, "read the sign-in error", chromedp.Evaluate[string](`document.querySelector('#signin-message')?.dataset.oidcError || ''`)); code != "" {
		b.screenshot("idp-signin-error")
		t.Fatalf("sign-in error %q: %s\n%s", code, b.text("#signin-message"), e.proc.output())
	}
	if state := b.attr("#verdict", "data-state"); state != "verified" {
		b.screenshot("idp-history-not-verified")
		t.Fatalf("history verdict %q: %s", state, b.text("#verdict"))
	}
	kept := get(b, "read the session", chromedp.Evaluate[string]("sessionStorage.getItem('vigie.token') || ''"))
	if kept == "" {
		t.Fatal("the portal keeps no token")
	}
	tokens = append(tokens, kept)

	// Enrolment of a FranceConnect patient: the administrator issues a
	// code (vigie enrol issue, through the API), the patient signs in at
	// FranceConnect in the portal, types it, and reads their history.
	_, adminTok := signIn(ops, "ops-1", map[string]any{})
	tokens = append(tokens, adminTok)
	adminFile, insFile := writeFile(t, adminTok), writeFile(t, e2ePatient+"\n")
	var out, errOut strings.Builder
	if code := runEnrol(ctx, []string{"issue", "--server", public, "--token-file", adminFile, "--patient-ins-file", insFile, "--ttl", "1h"}, &out, &errOut); code != exitOK {
		t.Fatalf("vigie enrol issue: exit %d: %s", code, errOut.String())
	}
	m := regexp.MustCompile(`Enrolment code: (\S+)`).FindStringSubmatch(out.String())
	if m == nil || strings.Contains(out.String(), e2ePatient) {
		t.Fatalf("vigie enrol issue printed %q: want a code, never the INS", out.String())
	}
	enrolCode := m[1]
	fc.SetUser(fcSub, pivot)
	b2 := newBrowser(t)
	b2.run("sign in with FranceConnect, a first time",
		chromedp.Navigate(public+portal.Prefix),
		chromedp.WaitVisible(chromedp.CSS("#oidc-signin")),
		chromedp.Click(chromedp.CSS("#oidc-signin")),
		chromedp.WaitVisible(chromedp.CSS("#enrol-code")),
		chromedp.SendKeys(chromedp.CSS("#enrol-code"), strings.ToLower(enrolCode)),
		chromedp.Click(chromedp.CSS(`#enrol-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#verdict[data-state="verified"], #verdict[data-state="failed"], #verdict[data-state="error"], #enrol-error:not([hidden])`)),
	)
	if state := b2.attr("#verdict", "data-state"); state != "verified" {
		b2.screenshot("idp-enrol")
		t.Fatalf("after enrolment, history verdict %q: %s %s", state, b2.text("#enrol-error"), b2.text("#verdict"))
	}
	tokens = append(tokens, get(b2, "read the session", chromedp.Evaluate[string]("sessionStorage.getItem('vigie.token') || ''")))
	// The enrolled patient's tokens of FranceConnect call the API as them.
	enrolled, tok := signIn(fc, fcSub, pivot)
	tokens = append(tokens, tok)
	h, err := vigiev1.NewHistoryServiceClient(e.conn).ListAccesses(enrolled, &vigiev1.ListAccessesRequest{})
	if err != nil {
		t.Fatalf("ListAccesses as the enrolled FranceConnect patient: %v", err)
	}
	if len(h.Events) == 0 {
		t.Error("the enrolled patient's history is empty; want their enrolment and reads")
	}
	// The code works once: another FranceConnect account is refused.
	_, other := signIn(fc, fcSub2, pivot)
	tokens = append(tokens, other)
	req, _ := http.NewRequestWithContext(ctx, "POST", public+portal.Prefix+"api/enrol", strings.NewReader(`{"code":"`+enrolCode+`"}`))
	req.Header.Set("Authorization", "Bearer "+other)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "already used") {
		t.Errorf("a used code: %d %s, want 400 saying it was used", resp.StatusCode, body)
	}
	// The administrator revokes the link: recorded, and a new sign-in is
	// refused.
	out.Reset()
	if code := runEnrol(ctx, []string{"revoke", "--server", public, "--token-file", adminFile, "--patient-ins-file", insFile, "--issuer", fc.Issuer}, &out, &errOut); code != exitOK || !strings.Contains(out.String(), "revoked: 1") {
		t.Fatalf("vigie enrol revoke: exit %d: %s %s", code, out.String(), errOut.String())
	}
	revoked, tok := signIn(fc, fcSub, pivot)
	tokens = append(tokens, tok)
	if _, err := vigiev1.NewHistoryServiceClient(e.conn).ListAccesses(revoked, &vigiev1.ListAccessesRequest{}); status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), "patient not enrolled") {
		t.Errorf("ListAccesses after the revocation = %v, want Unauthenticated saying not enrolled", err)
	}
	hist, err := vigiev1.NewHistoryServiceClient(e.conn).ListAccesses(patient, &vigiev1.ListAccessesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	var covered uint64 // a checkpoint of this size covers the revocation
	for _, ev := range hist.Events {
		covered = max(covered, ev.LeafIndex+1)
		if strings.Contains(string(ev.Body), `"kind":"enrolment"`) {
			kinds = append(kinds, string(ev.Body))
		}
	}
	if len(kinds) != 2 || !strings.Contains(kinds[0], `"action":"link"`) || !strings.Contains(kinds[1], `"action":"unlink"`) {
		t.Errorf("the patient's history holds enrolment events %q, want a link then an unlink", kinds)
	}
	for _, k := range kinds {
		if strings.Contains(k, fcSub) {
			t.Errorf("an enrolment event holds the provider's sub: %s", k)
		}
	}
	// The one verifier accounts for the enrolment events: the patient's
	// vigie verify and a regulator's whole-log vigie audit pass.
	_, regTok := signIn(reg, "cnil-1", map[string]any{})
	tokens = append(tokens, regTok)
	_, patTok := signIn(hosp, "hosp-0001", with(pivot, "ins", e2ePatient))
	tokens = append(tokens, patTok)
	e.waitCheckpoint(covered)
	for _, args := range [][]string{
		{"verify", "--server", public, "--token", patTok, "--state-dir", t.TempDir(), "--lang", "en"},
		{"audit", "--server", public, "--token", regTok, "--state-dir", t.TempDir(), "--lang", "en"},
	} {
		out.Reset()
		errOut.Reset()
		if code := run(ctx, args, &out, &errOut); code != exitOK {
			t.Errorf("vigie %s: exit %d\n%s\n%s", args[0], code, out.String(), errOut.String())
		}
		if args[0] == "verify" && !strings.Contains(out.String(), "FranceConnect") && !strings.Contains(out.String(), "account linked") {
			t.Errorf("vigie verify does not show the enrolment:\n%s", out.String())
		}
	}
	secretCode := strings.ReplaceAll(enrolCode, "-", "")
	if strings.Contains(e.proc.stderr.String(), secretCode) || strings.Contains(e.proc.stderr.String(), enrolCode) {
		t.Error("the log holds the enrolment code")
	}

	// Nothing of a token in the log (stderr) nor in what the service
	// prints: not the tokens, their signatures, subs, national
	// identifiers, INS or identity traits (the start banner's example
	// names the test's made-up INS: stdout is checked for the others).
	logged := e.proc.stderr.String()
	secrets := []string{pscSub, idNatPS, fcSub, fcSub2, surname, "hosp-0001"}
	for _, tok := range tokens {
		parts := strings.Split(tok, ".")
		secrets = append(secrets, tok, parts[1], parts[2])
	}
	for _, s := range secrets {
		if strings.Contains(logged, s) || strings.Contains(e.proc.output(), s) {
			t.Errorf("the log holds %.24q...", s)
		}
	}
	if strings.Contains(logged, e2ePatient) {
		t.Error("the log holds the patient's INS")
	}
	if !strings.Contains(logged, "patient not enrolled") {
		t.Errorf("the log does not say why the FranceConnect patient was refused:\n%s", logged)
	}
}
