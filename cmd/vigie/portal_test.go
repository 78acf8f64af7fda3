package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vigie-sante/vigie/api/apiserver"
	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/api/gateway/portal"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// The portal's tests drive Debian's chromium, headless, against a vigie
// serve process (scripts/test.sh installs chromium). Without chromium they
// skip, unless CI=true. Screenshots go to $VIGIE_TEST_ARTIFACTS, by
// default test-artifacts/portal at the top of the repository.

func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed, and CI=true (scripts/test.sh installs it)")
	}
	t.Skip("chromium is not installed: the portal's browser tests skip (scripts/test.sh installs it)")
	return ""
}

func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("VIGIE_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "test-artifacts")
	}
	dir, err := filepath.Abs(filepath.Join(dir, "portal"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is a headless chromium tab that fails the test on a script
// error or a Content-Security-Policy violation.
type browser struct {
	t         *testing.T
	ctx       context.Context
	artifacts string
	mu        sync.Mutex
	problems  []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		// The browser's own language is English: the pages are French
		// first all the same, dates included.
		chromedp.Flag("lang", "en-US"),
		chromedp.WindowSize(1200, 1000),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	b := &browser{t: t, ctx: ctx, artifacts: artifactsDir(t)}
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				b.mu.Lock()
				b.problems = append(b.problems, m.String())
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, p := range b.problems {
			t.Errorf("in the browser: %s", p)
		}
	})
	return b
}

// run runs actions with a deadline, failing the test with a screenshot
// of the page on error.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fail(what, err)
	}
}

// accessibility fails the test for what a screen reader or a keyboard
// user would miss on the page as it is: a form control without a label, a
// button or link without a name, an image or chart without a text, a page
// without a language or a title. (Contrast is held by the style sheet's
// palette, checked by hand: see docs/portal.md.)
func (b *browser) accessibility(page string) {
	b.t.Helper()
	for _, p := range get(b, "check accessibility of "+page, chromedp.Evaluate[[]string](accessibilityScript)) {
		b.t.Errorf("%s: %s", page, p)
	}
}

// accessibilityScript lists the page's accessibility problems.
const accessibilityScript = `(() => {
  const out = [];
  const text = el => (el ? el.textContent : '').trim();
  const visible = el => !el.closest('[hidden], dialog:not([open])');
  const named = el => (el.getAttribute('aria-label') || '').trim() ||
    (el.getAttribute('aria-labelledby') || '').split(/\s+/).filter(Boolean).map(id => text(document.getElementById(id))).join(' ').trim() ||
    (el.id ? Array.from(document.querySelectorAll('label[for="' + el.id + '"]')).map(text).join(' ').trim() : '') ||
    text(el.closest('label')) || (el.getAttribute('title') || '').trim();
  const what = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.name ? '[name=' + el.name + ']' : '');
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea'))
    if (visible(el) && !named(el)) out.push('a form control without a label: ' + what(el));
  for (const el of document.querySelectorAll('button, a[href]'))
    if (visible(el) && !(text(el) || (el.getAttribute('aria-label') || '').trim())) out.push('a button or link without a name: ' + what(el));
  for (const el of document.querySelectorAll('img:not([alt])')) out.push('an image without alt: ' + what(el));
  for (const el of document.querySelectorAll('dialog[open]'))
    if (!named(el) || !(el.getAttribute('aria-describedby') || '').trim()) out.push('a dialog without a name and a description: ' + what(el));
  // Buttons repeated on the rows of a table say which row they act on.
  const seen = new Map();
  for (const el of document.querySelectorAll('table button')) {
    if (!visible(el)) continue;
    const name = (el.getAttribute('aria-label') || '').trim() || text(el);
    if (seen.has(name)) out.push('two buttons of a table with the same name: ' + name);
    seen.set(name, true);
  }
  for (const el of document.querySelectorAll('svg[role=img]'))
    if (!el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby')) out.push('a chart without a name');
  if (!document.documentElement.lang) out.push('no lang on <html>');
  if (!document.title.trim()) out.push('no title');
  if (!document.querySelector('main, [role=main]')) out.push('no main landmark');
  return out;
})()`

// get runs one action that returns a value.
func get[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.fail(what, err)
	}
	return v
}

func (b *browser) fail(what string, err error) {
	b.t.Helper()
	b.screenshot("failed-" + strings.ReplaceAll(what, " ", "-"))
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	text, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	b.t.Fatalf("%s: %v\npage says:\n%s", what, err, text)
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(b.artifacts, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Errorf("screenshot: %v", err)
	}
}

// signIn opens the portal at base and signs in with token.
func (b *browser) signIn(base, token, then string) {
	b.t.Helper()
	b.run("sign in",
		chromedp.Navigate(base+portal.Prefix),
		chromedp.WaitVisible(chromedp.CSS("#signin-form[data-ready] #token")),
		chromedp.SetValue(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS(`#signin-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(then)),
	)
}

// attr returns the attribute of the element selected.
func (b *browser) attr(sel, name string) string {
	b.t.Helper()
	return get(b, "read "+sel, chromedp.AttributeValue(chromedp.CSS(sel), name)).Value
}

func (b *browser) count(sel string) int {
	b.t.Helper()
	return get(b, "count "+sel, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	return get(b, "text of "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// eval runs a script for its effect.
func eval(script string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[any](script)(ctx, t)
		return err
	})
}

// tamperingProxy forwards to target and changes one byte of the first
// event body of every history listing (GET /v1/me/accesses): a server
// that lies about what was recorded.
func tamperingProxy(t *testing.T, target string) string {
	return changingProxy(t, target, "/v1/me/accesses", func(page map[string]any) error {
		if evs, _ := page["events"].([]any); len(evs) > 0 {
			ev := evs[0].(map[string]any)
			b, err := base64.StdEncoding.DecodeString(ev["body"].(string))
			if err != nil {
				return err
			}
			// The professional was in the care team: say they were not.
			b = bytes.Replace(b, []byte(`"care_team":true`), []byte(`"care_team":false`), 1)
			ev["body"] = base64.StdEncoding.EncodeToString(b)
		}
		return nil
	})
}

// changingProxy forwards to target and lets change rewrite the JSON
// answers of GET path.
func changingProxy(t *testing.T, target, path string, change func(map[string]any) error) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(r *http.Response) error {
		if r.Request.URL.Path != path || r.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		var page map[string]any
		if err := json.Unmarshal(body, &page); err != nil {
			return err
		}
		if err := change(page); err != nil {
			return err
		}
		out, err := json.Marshal(page)
		if err != nil {
			return err
		}
		r.Body = io.NopCloser(bytes.NewReader(out))
		r.ContentLength = int64(len(out))
		r.Header.Set("Content-Length", fmt.Sprint(len(out)))
		return nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: proxy}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String()
}

// portalAccesses records three accesses to the e2e patient's record: an
// allowed one by the care team, a break-glass one, and one the national
// rules deny (a dentist reading advance directives). It returns the last
// leaf index.
func portalAccesses(t *testing.T, e *e2e) uint64 {
	t.Helper()
	access := vigiev1.NewAccessServiceClient(e.conn)
	service := e.as(auth.RoleService, "hospital-his", e2eHospital)
	btg := checkRequest("portal-btg")
	btg.Actor.Rpps, btg.Actor.CareTeam = "10000000002", false
	btg.PurposeOfUse, btg.BreakGlassJustification = vigiev1.PurposeOfUse_PURPOSE_OF_USE_BTG, "patient unconscious in the emergency room"
	dentist := checkRequest("portal-dentist")
	dentist.Actor.Rpps, dentist.Actor.Profession = "10000000003", "40"
	dentist.Resource = &vigiev1.Resource{Kind: &vigiev1.Resource_Document{Document: &vigiev1.Document{Id: "doc-7", Type: "advance-directives"}}}
	want := []vigiev1.Decision{vigiev1.Decision_DECISION_ALLOW, vigiev1.Decision_DECISION_ALLOW, vigiev1.Decision_DECISION_DENY}
	var last uint64
	for i, req := range []*vigiev1.CheckRequest{checkRequest("portal-1"), btg, dentist} {
		resp, err := access.Check(service, req)
		if err != nil || resp.Decision != want[i] {
			t.Fatalf("Check %s = %v, %v; want %v", req.RequestId, resp, err, want[i])
		}
		last = resp.Event.LeafIndex
	}
	return last
}

// TestPortalPatient is the patient's story in a real browser: sign in,
// see the accesses this test made, verified by the page's WebAssembly
// verifier; through a proxy that changes a body, see the page report the
// failure; block a professional, after which a Check is denied; a stale
// consent edit is explained and retried; another patient sees none of it;
// expired and foreign tokens lead back to the sign-in page with a message.
func TestPortalPatient(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	importDirectories(t, dir)
	// The test clicks faster than a person and checks each step with its
	// own calls as the same patient, all in the patient's bucket (the
	// default, 5/s with a burst of 20, is a person's pace): four times it.
	e := startE2EAt(t, dir, "--rate-limit", "patient=20:80")
	base := e.http().base
	e.waitCheckpoint(portalAccesses(t, e) + 1)
	b := newBrowser(t)
	patientToken := e.token(auth.RolePatient, e2ePatient)

	// The history: three accesses, each verified, break-glass and denial
	// standing out.
	b.signIn(base, patientToken, `#verdict[data-state="verified"], #verdict[data-state="failed"], #verdict[data-state="error"]`)
	if state := b.attr("#verdict", "data-state"); state != "verified" {
		b.screenshot("history-not-verified")
		t.Fatalf("history verdict %q: %s", state, b.text("#verdict"))
	}
	if n := b.attr("#verdict", "data-events"); n != "3" {
		t.Errorf("verified %s events, want 3", n)
	}
	if got := b.count(`#events tbody tr[data-verdict="verified"]`); got != 3 {
		t.Errorf("%d verified rows, want 3", got)
	}
	for _, o := range []string{"allow", "btg", "deny"} {
		if got := b.count(fmt.Sprintf(`#events tbody tr[data-outcome=%q]`, o)); got != 1 {
			t.Errorf("%d rows with outcome %s, want 1", got, o)
		}
	}
	if got := b.count(`#chart svg rect`); got < 3 {
		t.Errorf("the chart has %d bars, want at least 3 (one per outcome)", got)
	}
	if txt := b.text("#events"); !strings.Contains(txt, "Médecin") || !strings.Contains(txt, "Directives anticipées") || !strings.Contains(txt, "Urgence") {
		t.Errorf("the table lacks the national rules' French labels:\n%s", txt)
	}
	// Names from the imported directories beside the numbers; a number
	// they lack (the emergency doctor's) alone.
	if txt := b.text("#events"); !strings.Contains(txt, "MARIE ESSAI · Médecin, Cardiologie · RPPS "+e2eDoctor) ||
		!strings.Contains(txt, "HÔPITAL DES ESSAIS (PARIS) · FINESS "+e2eHospital) || !strings.Contains(txt, "RPPS 10000000002") {
		t.Errorf("the table lacks the directories' names beside the numbers:\n%s", txt)
	}
	b.screenshot("history-fr")
	b.accessibility("history")
	b.run("switch to English", chromedp.Click(chromedp.CSS("#lang")), chromedp.WaitVisible(chromedp.CSS(`html[lang="en"]`)))
	if txt := b.text("#verdict"); !strings.Contains(txt, "Verified by your browser") {
		t.Errorf("English verdict: %s", txt)
	}
	b.screenshot("history-en")
	b.run("narrow screen", chromedp.EmulateViewport(380, 800))
	b.screenshot("history-mobile")
	b.run("wide screen", chromedp.EmulateViewport(1200, 1000), chromedp.Click(chromedp.CSS("#lang")), chromedp.WaitVisible(chromedp.CSS(`html[lang="fr"]`)))

	// Block the physician of the first access: the next Check is denied.
	b.run("open the consent page",
		chromedp.Navigate(base+portal.Prefix+"consent.html"),
		chromedp.WaitVisible(chromedp.CSS(`#consent-status[data-state="verified"]`)),
		// The list of who accessed the record fills in once the history
		// is verified and moves the forms below it: a click before that
		// lands where a button was (CI, stop 22).
		chromedp.WaitReady(chromedp.CSS(`#accessed[data-state="loaded"]`)),
	)
	b.accessibility("consent")
	// The check itself finds what it looks for.
	b.run("an unlabelled field", eval("document.querySelector('main').append(Object.assign(document.createElement('input'), {id: 'unlabelled'}))"))
	if got := get(b, "check the check", chromedp.Evaluate[[]string](accessibilityScript)); len(got) != 1 || !strings.Contains(got[0], "input#unlabelled") {
		t.Errorf("the accessibility check on an unlabelled field: %v", got)
	}
	b.run("remove it", eval("document.getElementById('unlabelled').remove()"))
	b.run("block a professional",
		chromedp.SetValue(chromedp.CSS("#block-rpps"), "1234"),
		chromedp.Click(chromedp.CSS(`#block-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#block-rpps-error`)),
	)
	if msg := b.text("#block-rpps-error"); !strings.Contains(msg, "RPPS") {
		t.Errorf("a short RPPS: the error does not name the field: %q", msg)
	}
	b.run("block a professional",
		chromedp.SetValue(chromedp.CSS("#block-rpps"), e2eDoctor),
		chromedp.Click(chromedp.CSS(`#block-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#consent-status[data-version="1"]`)),
	)
	b.screenshot("consent-blocked")
	denied, err := vigiev1.NewAccessServiceClient(e.conn).Check(e.as(auth.RoleService, "hospital-his", e2eHospital), checkRequest("portal-after-block"))
	if err != nil || denied.Decision != vigiev1.Decision_DECISION_DENY || denied.ConsentVersion != 1 {
		t.Fatalf("Check after the block = %v, %v; want DENY under consent 1", denied, err)
	}

	// A stale edit: the consent changes elsewhere (version 2) while the
	// page shows version 1; the page explains, keeps the change, retries.
	consents := vigiev1.NewConsentServiceClient(e.conn)
	patient := e.as(auth.RolePatient, e2ePatient)
	cur, err := consents.GetConsent(patient, &vigiev1.GetConsentRequest{})
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := append(cur.Directives, &vigiev1.Directive{Id: "elsewhere", Kind: &vigiev1.Directive_OpposeEmergency{OpposeEmergency: &vigiev1.OpposeEmergency{}}})
	if _, err := consents.UpdateConsent(patient, &vigiev1.UpdateConsentRequest{ExpectedVersion: cur.Version, Directives: elsewhere}); err != nil {
		t.Fatal(err)
	}
	b.run("stale edit",
		chromedp.SetValue(chromedp.CSS("#block-rpps"), "10000000009"),
		chromedp.Click(chromedp.CSS(`#block-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS("#stale")),
	)
	if msg := b.text("#stale"); !strings.Contains(msg, "10000000009") {
		t.Errorf("the stale message does not keep the change: %q", msg)
	}
	b.screenshot("consent-stale")
	b.run("retry", chromedp.Click(chromedp.CSS("#retry")), chromedp.WaitVisible(chromedp.CSS(`#consent-status[data-version="3"]`)))
	final, err := consents.GetConsent(patient, &vigiev1.GetConsentRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range final.Directives {
		ids = append(ids, d.Id)
	}
	if got := strings.Join(ids, ","); got != "block-"+e2eDoctor+",elsewhere,block-10000000009" {
		t.Errorf("consent after the retry: %s", got)
	}

	// A change the server refuses: naming as treating physician the
	// professional the patient blocks. The reason shows, in French, on the
	// field and on the row of the block; the change is kept, and saved
	// once the block is removed.
	b.run("refused change",
		chromedp.SetValue(chromedp.CSS("#physician-rpps"), e2eDoctor),
		chromedp.Click(chromedp.CSS(`#physician-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS("#physician-rpps-error")),
	)
	if msg := b.text("#physician-rpps-error"); !strings.Contains(msg, "à la fois bloqué et autorisé") || !strings.Contains(msg, "Numéro RPPS") || strings.Contains(msg, "directives[") {
		t.Errorf("the refusal on the physician's field: %q", msg)
	}
	if b.attr("#physician-rpps", "aria-invalid") != "true" {
		t.Errorf("the physician's field is not marked invalid")
	}
	blockRow := fmt.Sprintf(`#directives li[data-id="block-%s"]`, e2eDoctor)
	if msg := b.text(blockRow + " .field-error"); !strings.Contains(msg, "En conflit") {
		t.Errorf("the row of the block: %q", msg)
	}
	if got := b.attr("#stale-title", "data-i18n"); got != "consent.refused" || b.count("#stale:not([hidden])") != 1 {
		t.Errorf("the refused change is not offered again (%q)", got)
	}
	if kept := get(b, "pending change", chromedp.Evaluate[string]("sessionStorage.getItem('vigie.pendingConsent') || ''")); !strings.Contains(kept, e2eDoctor) {
		t.Errorf("the refused change was not kept: %q", kept)
	}
	b.screenshot("consent-refused")
	b.run("remove the block, retry the change",
		chromedp.Click(chromedp.CSS(blockRow+" button")),
		chromedp.WaitVisible(chromedp.CSS(`#consent-status[data-version="4"]`)),
		chromedp.WaitVisible(chromedp.CSS("#stale")),
		chromedp.Click(chromedp.CSS("#retry")),
		chromedp.WaitVisible(chromedp.CSS(`#consent-status[data-version="5"]`)),
	)
	final, err = consents.GetConsent(patient, &vigiev1.GetConsentRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ids = ids[:0]
	for _, d := range final.Directives {
		ids = append(ids, d.Id)
	}
	if got := strings.Join(ids, ","); got != "elsewhere,block-10000000009,treating-physician" || final.Directives[2].GetTreatingPhysician().GetRpps() != e2eDoctor {
		t.Errorf("consent after the block's removal and the retry: %s", got)
	}

	// Through a proxy that changes a body, the page reports the failure.
	tb := newBrowser(t)
	tb.signIn(tamperingProxy(t, base), patientToken, `#verdict[data-state="verified"], #verdict[data-state="failed"]`)
	if state := tb.attr("#verdict", "data-state"); state != "failed" {
		tb.screenshot("tampered-not-detected")
		t.Fatalf("a tampered body was not detected: verdict %q: %s", state, tb.text("#verdict"))
	}
	if got := tb.count(`#events tbody tr[data-verdict="failed"][data-seq="1"]`); got != 1 {
		t.Errorf("the tampered event is not marked failed")
	}
	tb.screenshot("history-tampered")

	// Another patient sees only their own (empty) history.
	other := newBrowser(t)
	other.signIn(base, e.token(auth.RolePatient, "180127512345642"), `#verdict[data-state="verified"]`)
	if n := other.attr("#verdict", "data-events"); n != "0" {
		t.Errorf("another patient sees %s events", n)
	}
	html := get(other, "page source", chromedp.OuterHTML(chromedp.CSS("html")))
	if strings.Contains(html, e2eDoctor) || strings.Contains(html, "10000000002") {
		t.Errorf("another patient's page shows the first patient's professionals")
	}

	// Tokens refused: foreign issuer (server check), expired (client check).
	foreignIssuer, err := apiserver.EmbeddedIssuer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := foreignIssuer.Mint(auth.TokenRequest{Role: auth.RolePatient, Subject: e2ePatient, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	other.run("sign in with a foreign token",
		chromedp.Navigate(base+portal.Prefix+"index.html"),
		// The page re-renders while it verifies, and again when signed
		// out: each node is found and acted on in one step, in the page.
		chromedp.WaitVisible(chromedp.CSS("#signout")),
		inPage(`document.querySelector("#signout").click()`),
		chromedp.WaitVisible(chromedp.CSS("#signin-form[data-ready] #token")),
		inPage(`document.querySelector("#token").value = `+jsString(foreign)+`;
			document.querySelector("#signin-form button[type=submit]").click()`),
		chromedp.WaitVisible(chromedp.CSS("#token-error")),
	)
	if msg := other.text("#token-error"); !strings.Contains(msg, "refusé") {
		t.Errorf("foreign token: %q", msg)
	}
	// A foreign token already in the session: the API refuses it, and the
	// page goes back to sign-in with the server's reason.
	other.run("foreign token in the session",
		eval(fmt.Sprintf("sessionStorage.setItem('vigie.token', %q)", foreign)),
		chromedp.Navigate(base+portal.Prefix+"history.html"),
		chromedp.WaitVisible(chromedp.CSS("#signin-message")),
	)
	if msg := other.text("#signin-message"); !strings.Contains(msg, "refusé") {
		t.Errorf("foreign token in the session: %q", msg)
	}
	expired, err := e.issuer.Mint(auth.TokenRequest{Role: auth.RolePatient, Subject: e2ePatient, TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	other.run("expired token",
		eval(fmt.Sprintf("sessionStorage.setItem('vigie.token', %q)", expired)),
		chromedp.Navigate(base+portal.Prefix+"history.html"),
		chromedp.WaitVisible(chromedp.CSS("#signin-message")),
	)
	if msg := other.text("#signin-message"); !strings.Contains(msg, "expiré") {
		t.Errorf("expired token: %q", msg)
	}
	other.screenshot("signin-expired")

	if strings.Contains(e.proc.stderr.String(), e2ePatient) {
		t.Errorf("the server's log holds the patient's INS")
	}
}

// TestPortalAuditor is the dashboard in a real browser: a regulator sees
// the log verified and consistent, reviews the break-glass access (the
// review is recorded in the patient's chain, as is the regulator's read),
// searches events (a wrong field is named); an auditor sees the log only.
func TestPortalAuditor(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	importDirectories(t, dir)
	e := startE2EAt(t, dir, "--alerts-cache", "0")
	base := e.http().base
	e.waitCheckpoint(1) // the log has a history: a first checkpoint, then the accesses'
	e.waitCheckpoint(portalAccesses(t, e) + 1)
	b := newBrowser(t)
	b.signIn(base, e.token(auth.RoleRegulator, "cnil"), `#log-status[data-state="verified"], #log-status[data-state="failed"], #log-status[data-state="error"]`)
	if state := b.attr("#log-status", "data-state"); state != "verified" {
		t.Fatalf("log status %q: %s", state, b.text("#log-status"))
	}
	if n, _ := strconv.Atoi(b.attr("#log-status", "data-signed-history")); n < 2 {
		t.Errorf("the dashboard checked %d checkpoints of the server's history, want at least 2", n)
	}
	b.run("review queue", chromedp.WaitVisible(chromedp.CSS("form.review")))
	b.run("alerts", chromedp.WaitVisible(chromedp.CSS("#alerts-table, #alerts-body p")))
	b.accessibility("dashboard")
	if n := b.count("form.review"); n != 1 {
		t.Fatalf("%d break-glass accesses to review, want 1", n)
	}
	// The unreviewed emergency access is a critical alert (other rules,
	// such as odd hours, depend on when the test runs: not asserted).
	b.run("alerts", chromedp.WaitVisible(chromedp.CSS("#alerts-table, #alerts-body p")))
	if n := b.count(`#alerts-table tr[data-kind="break-glass-unreviewed"]`); n != 1 {
		t.Errorf("%d unreviewed break-glass alerts, want 1: %s", n, b.text("#alerts-body"))
	}
	if txt := b.text("#alerts-body"); !strings.Contains(txt, "Accès en urgence non examiné") || !strings.Contains(txt, "10000000002") {
		t.Errorf("alerts: %q", txt)
	}
	// Names from the directories beside the numbers, in the alerts and in
	// the review queue.
	if txt := b.text("#alerts-body"); !strings.Contains(txt, "HÔPITAL DES ESSAIS (PARIS) · FINESS "+e2eHospital) {
		t.Errorf("alerts without the establishment's name: %q", txt)
	}
	if txt := b.text("form.review"); !strings.Contains(txt, "HÔPITAL DES ESSAIS (PARIS) · FINESS "+e2eHospital) {
		t.Errorf("review queue without the establishment's name: %q", txt)
	}
	// The details are sentences of the page's language, built from the
	// alert's figures; the dentist's attempt is outside the access matrix.
	detail := func(kind string) string {
		return b.text(fmt.Sprintf(`#alerts-table tr[data-kind=%q] td.detail`, kind))
	}
	if got := detail("break-glass-unreviewed"); !strings.Contains(got, "Accès en urgence autorisé le") || !strings.Contains(got, "pas encore examiné") {
		t.Errorf("the unreviewed access's detail: %q", got)
	}
	if got, want := detail("outside-matrix"), "1 tentative sur des types de documents que la matrice d’accès n’ouvre pas à cette profession (1 patient)."; got != want {
		t.Errorf("the outside-matrix detail: %q, want %q", got, want)
	}
	b.run("alerts in English", chromedp.Click(chromedp.CSS("#lang")), chromedp.WaitVisible(chromedp.CSS(`html[lang="en"]`)))
	if got, want := detail("outside-matrix"), "1 attempt on document types the access matrix does not open to this profession (1 patient)."; got != want {
		t.Errorf("the outside-matrix detail in English: %q, want %q", got, want)
	}
	if got := detail("break-glass-unreviewed"); !strings.Contains(got, "not yet reviewed") {
		t.Errorf("the unreviewed access's detail in English: %q", got)
	}
	b.run("back to French", chromedp.Click(chromedp.CSS("#lang")), chromedp.WaitVisible(chromedp.CSS(`html[lang="fr"]`)))
	b.screenshot("dashboard")
	b.run("review without a verdict",
		chromedp.Click(chromedp.CSS(`form.review button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`form.review .field-error`)),
	)
	if msg := b.text(`form.review .field-error`); !strings.Contains(msg, "Conclusion") {
		t.Errorf("missing verdict: %q", msg)
	}
	b.run("review",
		chromedp.Click(chromedp.CSS(`form.review input[value=justified]`)),
		chromedp.SetValue(chromedp.CSS(`form.review textarea`), "arrêt cardiaque, patient inconscient"),
		chromedp.Click(chromedp.CSS(`form.review button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#queue-status[data-reviewed]`)),
	)
	b.run("search with a wrong RPPS",
		chromedp.SetValue(chromedp.CSS("#s-rpps"), "123"),
		chromedp.Click(chromedp.CSS(`#search-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS("#s-rpps-error")),
	)
	if msg := b.text("#s-rpps-error"); !strings.Contains(msg, "RPPS") {
		t.Errorf("wrong RPPS: %q", msg)
	}
	b.run("search",
		chromedp.SetValue(chromedp.CSS("#s-rpps"), e2eDoctor),
		chromedp.Click(chromedp.CSS(`#search-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#search-count[data-ok]`)),
	)
	if ok := b.attr("#search-count", "data-ok"); ok != "true" || b.count(`#results tbody tr[data-verdict="verified"]`) != 1 {
		t.Errorf("search: ok=%s, %d verified rows, want 1: %s", ok, b.count(`#results tbody tr`), b.text("#results"))
	}
	b.screenshot("dashboard-reviewed")
	b.run("queue after the review", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#queue-empty")))
	b.run("alerts after the review", chromedp.WaitVisible(chromedp.CSS("#alerts-table, #alerts-body p")))
	if n := b.count(`#alerts-table tr[data-kind="break-glass-unreviewed"]`); n != 0 {
		t.Errorf("the reviewed access is still alerted: %s", b.text("#alerts-body"))
	}

	// The patient's chain has the review, and the regulator's reads.
	patient := e.as(auth.RolePatient, e2ePatient)
	var reviews, reads int
	for _, ev := range e.listAndVerify(patient, 100) {
		switch {
		case ev.body.Kind == "break_glass_review":
			reviews++
		case ev.body.Kind == "ledger_read" && strings.Contains(string(ev.body.Payload), `"reader":"regulator:cnil"`):
			reads++
		}
	}
	if reviews != 1 || reads < 3 {
		t.Errorf("the patient's chain has %d reviews and %d reads by the regulator, want 1 and at least 3", reviews, reads)
	}

	// An auditor reads the log, not events.
	a := newBrowser(t)
	a.signIn(base, e.token(auth.RoleAuditor, "asso-patients"), `#log-status[data-state="verified"]`)
	if n := a.count("#search:not([hidden]), #queue:not([hidden]), #alerts:not([hidden])"); n != 0 {
		t.Errorf("an auditor sees %d event sections", n)
	}
	a.screenshot("dashboard-auditor")

	// A server whose history of checkpoints does not hold together (one
	// hash of a consistency proof changed): the dashboard says so.
	forked := changingProxy(t, base, "/v1/log/checkpoints", func(page map[string]any) error {
		cps, _ := page["checkpoints"].([]any)
		if len(cps) < 2 {
			return fmt.Errorf("a history of %d checkpoints", len(cps))
		}
		last := cps[len(cps)-1].(map[string]any)
		proof, _ := last["consistency_proof"].([]any)
		if len(proof) == 0 {
			return fmt.Errorf("no consistency proof to change: %v", last)
		}
		h, err := base64.StdEncoding.DecodeString(proof[0].(string))
		if err != nil {
			return err
		}
		h[0] ^= 1
		proof[0] = base64.StdEncoding.EncodeToString(h)
		return nil
	})
	f := newBrowser(t)
	f.signIn(forked, e.token(auth.RoleAuditor, "asso-patients"), `#log-status[data-state="verified"], #log-status[data-state="failed"]`)
	if state := f.attr("#log-status", "data-state"); state != "failed" {
		t.Errorf("a history with a wrong consistency proof: log status %q: %s", state, f.text("#log-status"))
	}
	f.screenshot("dashboard-inconsistent")
}

// replayProxy forwards to a server, except for the paths given an answer
// of its own: a server rolled back to an older state serves again what it
// served then.
type replayProxy struct {
	url   string
	mu    sync.Mutex
	fixed map[string]fixedAnswer
}

type fixedAnswer struct {
	status      int
	contentType string
	body        []byte
}

func newReplayProxy(t *testing.T, target string) *replayProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &replayProxy{fixed: map[string]fixedAnswer{}}
	forward := httputil.NewSingleHostReverseProxy(u)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		a, ok := p.fixed[r.URL.Path]
		p.mu.Unlock()
		if !ok {
			forward.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", a.contentType)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(a.status)
		w.Write(a.body)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	p.url = "http://" + l.Addr().String()
	return p
}

// serve makes the proxy answer GET path with body; a nil body forwards again.
func (p *replayProxy) serve(path string, status int, contentType string, body []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if body == nil {
		delete(p.fixed, path)
		return
	}
	p.fixed[path] = fixedAnswer{status, contentType, body}
}

// TestPortalRollback: a server that, after this browser verified a larger
// log, serves an older checkpoint (and the answers that go with it) is
// reported as rolled back, on the patient's history and on the dashboard,
// with both sizes; and so is a server that cannot prove the log it serves
// extends the one this browser saw, its size being "beyond" its latest
// checkpoint.
func TestPortalRollback(t *testing.T) {
	e := startE2E(t)
	c := e.http()
	e.waitCheckpoint(portalAccesses(t, e) + 1)
	patientToken := e.token(auth.RolePatient, e2ePatient)
	auditorToken := e.token(auth.RoleAuditor, "asso-patients")
	capture := func(path, token string) []byte {
		t.Helper()
		code, b := c.do("GET", path, token, "")
		if code != http.StatusOK {
			t.Fatalf("GET %s = %d %s", path, code, b)
		}
		return b
	}
	// What the server serves now, to be served again later.
	oldListing := capture("/v1/me/accesses?page_size=200", patientToken)
	oldCheckpoint := capture("/checkpoint", "")
	oldHistory := capture("/v1/log/checkpoints?max_count=100", auditorToken)
	oldSize := strings.Split(string(oldCheckpoint), "\n")[1]

	// The log grows.
	var last uint64
	for i := range 3 {
		resp, err := vigiev1.NewAccessServiceClient(e.conn).Check(e.as(auth.RoleService, "hospital-his", e2eHospital), checkRequest(fmt.Sprintf("portal-later-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Event.LeafIndex
	}
	e.waitCheckpoint(last + 1)

	p := newReplayProxy(t, c.base)
	verdict := `#verdict[data-state="verified"], #verdict[data-state="failed"], #verdict[data-state="error"]`
	b := newBrowser(t)
	b.signIn(p.url, patientToken, verdict)
	if state := b.attr("#verdict", "data-state"); state != "verified" {
		t.Fatalf("history verdict %q: %s", state, b.text("#verdict"))
	}
	b.run("history seen again", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#log-status[data-state="verified"]`)))

	// Rolled back: the listing of before, proved against the older
	// checkpoint, each event authentic.
	p.serve("/v1/me/accesses", http.StatusOK, "application/json", oldListing)
	b.run("history rolled back", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#log-status[data-state="failed"]`)))
	if got := b.attr("#log-status", "data-rollback"); got != "rollback" {
		t.Errorf("history rolled back: data-rollback %q, want rollback: %s", got, b.text("#log-status"))
	}
	if txt, now := b.text("#log-status"), b.attr("#log-status", "data-now"); !strings.Contains(txt, "retour en arrière") || !strings.Contains(txt, "taille "+oldSize) ||
		now != oldSize || !strings.Contains(txt, "taille "+b.attr("#log-status", "data-seen")) || b.attr("#log-status", "role") != "alert" {
		t.Errorf("history rolled back to size %s: the page says (now %s) %q", oldSize, now, txt)
	}
	b.screenshot("history-rolled-back")
	// Served again the log it grew to, the page checks it against the
	// largest it saw: consistent.
	p.serve("/v1/me/accesses", 0, "", nil)
	b.run("history after the rollback", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#log-status[data-state="verified"]`)))

	// The dashboard, in the same browser origin.
	a := newBrowser(t)
	a.signIn(p.url, auditorToken, `#log-status[data-state="verified"], #log-status[data-state="failed"], #log-status[data-state="error"]`)
	if state := a.attr("#log-status", "data-state"); state != "verified" {
		t.Fatalf("log status %q: %s", state, a.text("#log-status"))
	}
	p.serve("/checkpoint", http.StatusOK, "text/plain; charset=utf-8", oldCheckpoint)
	p.serve("/v1/log/checkpoints", http.StatusOK, "application/json", oldHistory)
	a.run("dashboard rolled back", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#log-status[data-state="failed"], #log-status[data-state="error"]`)))
	if got := a.attr("#log-status", "data-rollback"); got != "rollback" || a.attr("#log-status", "data-now") != oldSize {
		t.Errorf("dashboard rolled back: data-rollback %q: %s", got, a.text("#log-status"))
	}
	if txt := a.text("#log-status"); !strings.Contains(txt, "taille "+oldSize) {
		t.Errorf("the dashboard does not name the size served: %q", txt)
	}
	a.screenshot("dashboard-rolled-back")

	// A browser that saw the older log; the server serves the newer one
	// but says it is beyond its checkpoint when asked to prove it.
	p.serve("/checkpoint", 0, "", nil)
	p.serve("/v1/log/checkpoints", 0, "", nil)
	p2 := newReplayProxy(t, c.base)
	p2.serve("/v1/me/accesses", http.StatusOK, "application/json", oldListing)
	o := newBrowser(t)
	o.signIn(p2.url, patientToken, verdict)
	p2.serve("/v1/me/accesses", 0, "", nil)
	p2.serve("/v1/log/consistency", http.StatusBadRequest, "application/json", []byte(`{"code":3,"message":"invalid second: not signed yet","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"BEYOND_CHECKPOINT","domain":"vigie","metadata":{"field":"second"}}]}`))
	o.run("history beyond", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#log-status[data-state="failed"]`)))
	if got := o.attr("#log-status", "data-rollback"); got != "beyond" || o.attr("#log-status", "data-seen") != oldSize {
		t.Errorf("a consistency proof beyond the checkpoint: data-rollback %q: %s", got, o.text("#log-status"))
	}
	if st := o.attr("#verdict", "data-state"); st != "verified" {
		t.Errorf("a consistency proof beyond the checkpoint: the events' verdict %q, want verified (only the log's growth fails)", st)
	}
}

// TestPortalReviewQueue: a DPO bound to two organisations sees in the
// review queue the allowed emergency accesses of both, more than a page
// of them, and not an emergency attempt that was denied (it gave access
// to nothing); the search shows a page of results, and the next on demand.
func TestPortalReviewQueue(t *testing.T) {
	// The dashboard fetches one inclusion proof per event: for two
	// hundred events, more than a DPO's default rate (20/s, burst 50)
	// allows at once; the page paces its calls.
	e := startE2E(t)
	const clinic = "130000011"
	access := vigiev1.NewAccessServiceClient(e.conn)
	btg := func(id, ins, org string) *vigiev1.CheckRequest {
		r := checkRequest(id)
		r.PatientIns = ins
		r.Actor.Rpps, r.Actor.CareTeam, r.Actor.Organization = "10000000002", false, org
		r.PurposeOfUse, r.BreakGlassJustification = vigiev1.PurposeOfUse_PURPOSE_OF_USE_BTG, "patient unconscious in the emergency room"
		return r
	}
	check := func(ctx context.Context, r *vigiev1.CheckRequest, want vigiev1.Decision) *vigiev1.CheckResponse {
		t.Helper()
		resp, err := access.Check(ctx, r)
		if err != nil || resp.Decision != want {
			t.Fatalf("Check %s = %v, %v; want %v", r.RequestId, resp, err, want)
		}
		return resp
	}
	hospital := e.as(auth.RoleService, "hospital-his", e2eHospital)
	// A patient who opposes emergency access: the attempt is denied.
	opposing := "180127512345642"
	if _, err := vigiev1.NewConsentServiceClient(e.conn).UpdateConsent(e.as(auth.RolePatient, opposing), &vigiev1.UpdateConsentRequest{
		Directives: []*vigiev1.Directive{{Id: "oppose", Kind: &vigiev1.Directive_OpposeEmergency{OpposeEmergency: &vigiev1.OpposeEmergency{}}}},
	}); err != nil {
		t.Fatal(err)
	}
	denied := check(hospital, btg("rq-denied", opposing, e2eHospital), vigiev1.Decision_DECISION_DENY)
	for i := range 101 {
		check(hospital, btg(fmt.Sprintf("rq-%d", i), e2ePatient, e2eHospital), vigiev1.Decision_DECISION_ALLOW)
	}
	atClinic := check(e.as(auth.RoleService, "clinic-his", clinic), btg("rq-clinic", e2ePatient, clinic), vigiev1.Decision_DECISION_ALLOW)
	e.waitCheckpoint(atClinic.Event.LeafIndex + 1)

	b := newBrowser(t)
	b.signIn(e.http().base, e.token(auth.RoleDPO, "dpo-ab", e2eHospital, clinic), `#queue-body form.review, #queue-empty, #log-status[data-state="failed"], #log-status[data-state="error"]`)
	if n := b.count("form.review"); n != 102 {
		t.Errorf("%d accesses to review, want 102 (101 at the hospital, 1 at the clinic)", n)
	}
	if n := b.count(fmt.Sprintf(`form.review[data-commitment=%q]`, denied.Event.Commitment)); n != 0 {
		t.Errorf("the denied emergency attempt is in the review queue")
	}
	if n := b.count(fmt.Sprintf(`form.review[data-commitment=%q]`, atClinic.Event.Commitment)); n != 1 {
		t.Errorf("the clinic's emergency access is not in the review queue")
	}
	if n := b.count("#queue-more"); n != 0 {
		t.Errorf("the queue says it is incomplete: %s", b.text("#queue-more"))
	}

	b.run("search the hospital's accesses",
		chromedp.SetValue(chromedp.CSS("#s-org"), e2eHospital),
		chromedp.SetValue(chromedp.CSS("#s-kind"), "EVENT_KIND_ACCESS"),
		chromedp.Click(chromedp.CSS(`#search-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#search-count[data-n="100"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#search-more`)),
	)
	b.run("more results",
		chromedp.Click(chromedp.CSS(`#search-more`)),
		chromedp.WaitVisible(chromedp.CSS(`#search-count[data-n="102"]`)),
	)
	if n := b.count(`#results tbody tr[data-verdict="verified"]`); n != 102 {
		t.Errorf("%d verified results, want 102", n)
	}
	if n := b.count(`#search-more:not([hidden])`); n != 0 {
		t.Errorf("the last page still offers more results")
	}
	b.run("search the clinic's",
		chromedp.SetValue(chromedp.CSS("#s-org"), clinic),
		chromedp.Click(chromedp.CSS(`#search-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#search-count[data-n="1"]`)),
	)
	b.screenshot("dashboard-dpo-two-organisations")
}

// TestPortalUnreadableEvent: a server that cannot read one of the
// patient's events (its storage altered: DATA_LOSS, as the gateway
// answers it) makes the history page fail the verification, naming the
// event, rather than report a loading error.
func TestPortalUnreadableEvent(t *testing.T) {
	e := startE2E(t)
	base := e.http().base
	portalAccesses(t, e)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/me/accesses" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"code":15,"message":"event 2 (log entry 3) cannot be read: its stored form was altered","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"EVENT_UNREADABLE","domain":"vigie","metadata":{"seq":"2","leaf_index":"3"}}]}`)
			return
		}
		proxy.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	b := newBrowser(t)
	b.signIn("http://"+l.Addr().String(), e.token(auth.RolePatient, e2ePatient), `#verdict[data-state="verified"], #verdict[data-state="failed"], #verdict[data-state="error"]`)
	if state := b.attr("#verdict", "data-state"); state != "failed" || !strings.Contains(b.text("#verdict"), "l’événement n° 2") {
		t.Errorf("an unreadable event: verdict %q: %s", state, b.text("#verdict"))
	}
	b.screenshot("history-unreadable")
}

// inPage runs js in the page as one step. A page that re-renders can pull
// a node from under chromedp between its query and its action ("No node
// with given id found"); it cannot within one script.
func inPage(js string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](js+"; true")(ctx, t)
		return err
	})
}

// jsString is s as a JavaScript string literal.
func jsString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // a Go string always marshals
	}
	return string(b)
}

// TestPortalBlockFromHistory: from a line of the history, a patient blocks
// the professional in one action, confirmed in a dialog that says what
// changes (emergencies included), after which a Check is denied; hides the
// document of another line the same way; and a cancelled dialog changes
// nothing. The dialog and the rows' buttons pass the accessibility checks.
func TestPortalBlockFromHistory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	importDirectories(t, dir)
	e := startE2EAt(t, dir)
	base := e.http().base
	e.waitCheckpoint(portalAccesses(t, e) + 1)
	b := newBrowser(t)
	b.signIn(base, e.token(auth.RolePatient, e2ePatient), `#verdict[data-state="verified"], #verdict[data-state="failed"], #verdict[data-state="error"]`)
	if state := b.attr("#verdict", "data-state"); state != "verified" {
		t.Fatalf("history verdict %q: %s", state, b.text("#verdict"))
	}
	blockMarie := `#events button[data-action="block"][aria-label="Bloquer ce professionnel : MARIE ESSAI"]`
	if n := b.count(blockMarie); n != 1 {
		t.Fatalf("%d buttons to block MARIE ESSAI, want 1 (the buttons: %d)", n, b.count(`#events button[data-action="block"]`))
	}
	b.accessibility("history with actions")

	// Cancelled: nothing changes.
	b.run("open and cancel", chromedp.Click(chromedp.CSS(blockMarie)), chromedp.WaitVisible(chromedp.CSS("dialog#confirm[open]")),
		chromedp.Click(chromedp.CSS("#confirm-cancel")), chromedp.WaitNotPresent(chromedp.CSS("dialog#confirm[open]")))
	consents := vigiev1.NewConsentServiceClient(e.conn)
	patient := e.as(auth.RolePatient, e2ePatient)
	if c, err := consents.GetConsent(patient, &vigiev1.GetConsentRequest{}); err != nil || c.Version != 0 {
		t.Fatalf("after a cancelled dialog: consent %v, %v; want version 0", c, err)
	}

	// Confirmed: the dialog says what changes, and the block holds.
	b.run("open the block dialog", chromedp.Click(chromedp.CSS(blockMarie)), chromedp.WaitVisible(chromedp.CSS("dialog#confirm[open]")))
	if txt := b.text("dialog#confirm"); !strings.Contains(txt, "Bloquer MARIE ESSAI") || !strings.Contains(txt, "y compris en urgence (bris de glace)") ||
		!strings.Contains(txt, "médecin traitant") {
		t.Errorf("the block dialog does not say what changes: %q", txt)
	}
	b.accessibility("block dialog")
	b.screenshot("history-block-dialog")
	b.run("confirm", chromedp.Click(chromedp.CSS("#confirm-ok")), chromedp.WaitVisible(chromedp.CSS(`#action-status[data-version="1"]`)))
	if txt := b.text("#action-status"); !strings.Contains(txt, "MARIE ESSAI est bloqué") {
		t.Errorf("status after blocking: %q", txt)
	}
	denied, err := vigiev1.NewAccessServiceClient(e.conn).Check(e.as(auth.RoleService, "hospital-his", e2eHospital), checkRequest("after-history-block"))
	if err != nil || denied.Decision != vigiev1.Decision_DECISION_DENY || denied.ConsentVersion != 1 {
		t.Fatalf("Check after the block = %v, %v; want DENY under consent 1", denied, err)
	}

	// Hide the dentist's document from its line.
	hideDoc := `#events button[data-action="hide"][aria-label="Masquer ce document : doc-7"]`
	b.run("hide a document", chromedp.Click(chromedp.CSS(hideDoc)), chromedp.WaitVisible(chromedp.CSS("dialog#confirm[open]")))
	if txt := b.text("dialog#confirm"); !strings.Contains(txt, "doc-7") || !strings.Contains(txt, "son auteur et par votre médecin traitant") {
		t.Errorf("the hide dialog does not say what changes: %q", txt)
	}
	b.run("confirm", chromedp.Click(chromedp.CSS("#confirm-ok")), chromedp.WaitVisible(chromedp.CSS(`#action-status[data-version="2"]`)))
	c, err := consents.GetConsent(patient, &vigiev1.GetConsentRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var blocked, hidden bool
	for _, d := range c.Directives {
		blocked = blocked || d.GetBlockProfessional().GetRpps() == e2eDoctor
		hidden = hidden || d.GetHideDocument().GetDocumentId() == "doc-7"
	}
	if !blocked || !hidden || len(c.Directives) != 2 {
		t.Errorf("consent after the two actions: %v", c.Directives)
	}

	// The consent page lists who accessed the record, by name, with a
	// block switch; unblocking is one click.
	marie := `#accessed input[role="switch"][data-rpps="` + e2eDoctor + `"]`
	b.run("open the consent page", chromedp.Navigate(base+portal.Prefix+"consent.html"),
		chromedp.WaitVisible(chromedp.CSS(`#consent-status[data-state="verified"]`)), chromedp.WaitVisible(chromedp.CSS(marie)))
	if n := b.count(`#accessed li`); n != 3 {
		t.Errorf("%d professionals listed as having accessed the record, want 3: %s", n, b.text("#accessed"))
	}
	if txt := b.text("#accessed"); !strings.Contains(txt, "MARIE ESSAI") || !strings.Contains(txt, "CLAIRE LEFÈVRE") || !strings.Contains(txt, "RPPS 10000000002") {
		t.Errorf("the list of professionals lacks names: %q", txt)
	}
	if on := get(b, "switch state", chromedp.Evaluate[bool](`document.querySelector('`+marie+`').checked`)); !on {
		t.Errorf("the switch of the professional blocked from the history is off")
	}
	b.accessibility("consent with the professionals")
	b.run("unblock", chromedp.Click(chromedp.CSS(marie)), chromedp.WaitVisible(chromedp.CSS(`#consent-status[data-version="3"]`)))
	allowed, err := vigiev1.NewAccessServiceClient(e.conn).Check(e.as(auth.RoleService, "hospital-his", e2eHospital), checkRequest("after-unblock"))
	if err != nil || allowed.Decision != vigiev1.Decision_DECISION_ALLOW {
		t.Fatalf("Check after unblocking = %v, %v; want ALLOW", allowed, err)
	}

	// The treating physician chosen from a search of the directory by name.
	b.run("search too short", chromedp.SetValue(chromedp.CSS("#search-name"), "l"), chromedp.Click(chromedp.CSS(`#search-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS("#search-name-error")))
	b.run("search", chromedp.SetValue(chromedp.CSS("#search-name"), "lefevre"), chromedp.Click(chromedp.CSS(`#search-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#search-results li[data-rpps="10000000003"]`)))
	if txt := b.text("#search-results"); !strings.Contains(txt, "CLAIRE LEFÈVRE · Médecin, Médecine générale · RPPS 10000000003") {
		t.Errorf("search results: %q", txt)
	}
	b.accessibility("consent with search results")
	b.run("choose the physician", chromedp.Click(chromedp.CSS(`#search-results li[data-rpps="10000000003"] button[data-action="physician"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#consent-status[data-version="4"]`)))
	c, err = consents.GetConsent(patient, &vigiev1.GetConsentRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var physician string
	for _, d := range c.Directives {
		if p := d.GetTreatingPhysician(); p != nil {
			physician = p.Rpps
		}
	}
	if physician != "10000000003" {
		t.Errorf("treating physician %q after choosing from the search, want 10000000003: %v", physician, c.Directives)
	}
	b.screenshot("consent-search")
}

// TestPortalFrenchDates: in a browser whose own language is English, the
// history's chart names months with their whole year ("déc. 2026") and its
// date filters read and accept jj/mm/aaaa (not the browser's mm/dd/yyyy of
// a native date field); a date that does not exist is refused, naming the
// field.
func TestPortalFrenchDates(t *testing.T) {
	e := startE2E(t)
	base := e.http().base
	e.waitCheckpoint(portalAccesses(t, e) + 1)
	b := newBrowser(t)
	b.signIn(base, e.token(auth.RolePatient, e2ePatient), `#verdict[data-state="verified"], #verdict[data-state="failed"], #verdict[data-state="error"]`)
	if got := get(b, "browser language", chromedp.Evaluate[string](`navigator.language`)); !strings.HasPrefix(got, "en") {
		t.Fatalf("navigator.language = %q, want an English browser", got)
	}
	now := time.Now().UTC()
	months := []string{"janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc."}
	if want, got := months[now.Month()-1]+" "+strconv.Itoa(now.Year()), b.text("#chart"); !strings.Contains(got, want) {
		t.Errorf("the chart's month labels %q lack %q", got, want)
	}
	if typ := b.attr("#f-from", "type"); typ != "text" {
		t.Errorf("the date filter is an input of type %q, which follows the browser's locale", typ)
	}
	if hint := b.text(`label[for="f-from"]`); !strings.Contains(hint, "jj/mm/aaaa") {
		t.Errorf("the date filter's label %q does not say jj/mm/aaaa", hint)
	}
	b.accessibility("history with date filters")
	typeDate := func(sel, value string, then ...chromedp.Action[chromedp.Void]) []chromedp.Action[chromedp.Void] {
		return append([]chromedp.Action[chromedp.Void]{eval("document.querySelector('" + sel + "').value = ''"), chromedp.SendKeys(chromedp.CSS(sel), value)}, then...)
	}
	today, tomorrow := now.Format("02/01/2006"), now.AddDate(0, 0, 1).Format("02/01/2006")
	b.run("from tomorrow", typeDate("#f-from", tomorrow, chromedp.WaitNotPresent(chromedp.CSS("#events tbody tr")))...)
	b.run("from today", typeDate("#f-from", today, chromedp.WaitVisible(chromedp.CSS("#events tbody tr")))...)
	if n := b.count("#events tbody tr"); n != 3 {
		t.Errorf("from %s: %d rows, want 3", today, n)
	}
	b.run("a date that does not exist", typeDate("#f-from", "31/02/2026", chromedp.WaitVisible(chromedp.CSS("#f-from-error")))...)
	if msg := b.text("#f-from-error"); !strings.Contains(msg, "Du : une date jj/mm/aaaa qui existe") {
		t.Errorf("the error of 31/02/2026: %q", msg)
	}
	if inv := b.attr("#f-from", "aria-invalid"); inv != "true" {
		t.Errorf("aria-invalid = %q on the refused date", inv)
	}
	b.run("from today", typeDate("#f-from", today)...)
	b.run("to before from", typeDate("#f-to", now.AddDate(0, 0, -1).Format("02/01/2006"), chromedp.WaitVisible(chromedp.CSS("#filter-error")))...)
	b.screenshot("history-dates")
}

// TestPortalReaderOrganization: a DPO's search, then its review of an
// emergency access, are in the patient's history with the organisation
// the DPO acted for, by name beside its FINESS, in the portal and in vigie
// verify (issue 19: the history showed only "dpo:…").
func TestPortalReaderOrganization(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	importDirectories(t, dir)
	w := newWorld(t, dir)
	bg := doCheck(t, w.e, "reader-org-1", e2ePatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_BTG, false)
	dpo := w.e.as(auth.RoleDPO, "dpo-a", e2eHospital)
	audit := vigiev1.NewAuditServiceClient(w.e.conn)
	if _, err := audit.SearchEvents(dpo, &vigiev1.SearchEventsRequest{Organization: e2eHospital}); err != nil {
		t.Fatalf("the DPO's search: %v", err)
	}
	if _, err := audit.ReviewBreakGlass(dpo, &vigiev1.ReviewBreakGlassRequest{RequestId: "reader-org-rv", EventCommitment: bg.Event.Commitment,
		Verdict: vigiev1.BreakGlassVerdict_BREAK_GLASS_VERDICT_JUSTIFIED}); err != nil {
		t.Fatalf("the DPO's review: %v", err)
	}
	w.e.waitCheckpoint(4) // the rules, the access, the read, the review
	const named = "HÔPITAL DES ESSAIS (PARIS), FINESS " + e2eHospital

	code, rep, stderr := w.verify(e2ePatient, filepath.Join(t.TempDir(), "state"), "--lang", "fr")
	if code != exitOK || rep.Verdict != "verified" {
		t.Fatalf("vigie verify: exit %d, verdict %q: %s", code, rep.Verdict, stderr)
	}
	kinds := map[string]bool{}
	for _, r := range rep.Events {
		if r.Kind != "ledger_read" && r.Kind != "break_glass_review" || !strings.HasPrefix(r.Who, "dpo:dpo-a") {
			continue
		}
		kinds[r.Kind] = true
		if r.Who != "dpo:dpo-a, pour "+named || len(r.ReaderOrganizations) != 1 || r.ReaderOrganizations[0] != e2eHospital {
			t.Errorf("vigie verify's %s row: who %q, organisations %v; want the DPO for %s", r.Kind, r.Who, r.ReaderOrganizations, named)
		}
	}
	if !kinds["ledger_read"] || !kinds["break_glass_review"] {
		t.Fatalf("vigie verify shows no DPO's read or review: %+v", rep.Events)
	}

	b := newBrowser(t)
	b.signIn(w.e.http().base, w.token(auth.RolePatient, e2ePatient), `#verdict[data-state="verified"], #verdict[data-state="failed"], #verdict[data-state="error"]`)
	if state := b.attr("#verdict", "data-state"); state != "verified" {
		t.Fatalf("history verdict %q: %s", state, b.text("#verdict"))
	}
	b.run("show every event", chromedp.Click(chromedp.CSS("#f-all")))
	want := "dpo:dpo-a, pour HÔPITAL DES ESSAIS (PARIS) · FINESS " + e2eHospital
	if txt := b.text("#events"); strings.Count(txt, want) != 2 {
		b.screenshot("reader-organization")
		t.Errorf("the history names the DPO's organisation %d times, want 2 (its search and its review):\n%s", strings.Count(txt, want), txt)
	}
}

// TestPortalWitnessPolicy: the patient's page pins the witness policy the
// server serves (GET /witness-policy) on first use, beside the log's key,
// and enforces it; a different policy served later is shown as a finding,
// never taken, while the same one written otherwise passes.
func TestPortalWitnessPolicy(t *testing.T) {
	e := startE2E(t)
	c := e.http()
	e.waitCheckpoint(portalAccesses(t, e) + 1)
	vkey := keyLine.FindStringSubmatch(e.proc.output())[2] // the checkpoint key, printed first
	raw, err := base64.StdEncoding.DecodeString(strings.SplitN(vkey, "+", 3)[2])
	if err != nil {
		t.Fatal(err)
	}
	// One witness that cosigned nothing: a quorum of none passes, a
	// quorum of it does not.
	policy := fmt.Sprintf("log %x\nwitness witness.test/w1 %x\nquorum none\n", raw[1:], bytes.Repeat([]byte{7}, 32))
	other := strings.Replace(policy, "quorum none", "quorum witness.test/w1", 1)
	// This node has no policy (TestLitewitness checks the one served):
	// the proxy serves one as a node with --witness-policy does.
	if code, _ := httpGet(t, c.base+"/witness-policy"); code != http.StatusNotFound {
		t.Errorf("GET /witness-policy without a policy = %d, want 404", code)
	}
	p := newReplayProxy(t, c.base)
	p.serve("/witness-policy", http.StatusOK, "text/plain; charset=utf-8", []byte(policy))
	verdict := `#verdict[data-state="verified"], #verdict[data-state="failed"], #verdict[data-state="error"]`
	b := newBrowser(t)
	b.signIn(p.url, e.token(auth.RolePatient, e2ePatient), verdict)
	if state := b.attr("#verdict", "data-state"); state != "verified" {
		t.Fatalf("first visit with a witness policy served: verdict %q: %s", state, b.text("#verdict"))
	}
	pinned := get(b, "pinned keys", chromedp.Evaluate[string]("localStorage.getItem('vigie.pinnedKeys') || ''"))
	var keys struct {
		CheckpointKey string `json:"checkpoint_key"`
		WitnessPolicy string `json:"witness_policy"`
	}
	if err := json.Unmarshal([]byte(pinned), &keys); err != nil || keys.CheckpointKey != vkey || keys.WitnessPolicy != policy {
		t.Fatalf("pinned after the first visit: %s (%v); want the key and the policy", pinned, err)
	}

	// Another policy served: a finding, the pinned one kept.
	p.serve("/witness-policy", http.StatusOK, "text/plain; charset=utf-8", []byte(other))
	b.run("another policy", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#log-status[data-state="failed"]`)))
	if txt := b.text("#log-status"); !strings.Contains(txt, "liste de témoins") || b.attr("#log-status", "role") != "alert" {
		t.Errorf("another policy served: the page says %q", txt)
	}
	if state := b.attr("#verdict", "data-state"); state != "failed" {
		t.Errorf("another policy served: verdict %q, want failed: %s", state, b.text("#verdict"))
	}
	if again := get(b, "pinned keys", chromedp.Evaluate[string]("localStorage.getItem('vigie.pinnedKeys') || ''")); again != pinned {
		t.Errorf("another policy served: pinned %s, want %s unchanged", again, pinned)
	}
	b.screenshot("history-witness-policy-changed")

	// The pinned policy, written otherwise: verified.
	p.serve("/witness-policy", http.StatusOK, "text/plain; charset=utf-8", []byte("# the same\n"+strings.ReplaceAll(policy, " ", "  ")))
	b.run("the same policy", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(verdict)))
	if state := b.attr("#verdict", "data-state"); state != "verified" {
		t.Errorf("the pinned policy served again: verdict %q: %s", state, b.text("#verdict"))
	}
}
