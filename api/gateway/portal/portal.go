// Package portal is Vigie's web pages, served by `vigie serve` beside the
// JSON gateway: the patient portal (sign-in, history of accesses verified
// in the browser, consent) and the auditors' dashboard (the log's
// checkpoints and consistency, misuse alerts, the break-glass review
// queue, event search).
//
// The pages are plain HTML, CSS and JavaScript embedded in the binary
// (static/), with no framework, no third-party request and no inline
// script: every page is served with a strict Content-Security-Policy
// (CSP) whose one allowance is 'wasm-unsafe-eval', for the verifier. The
// pages call the JSON API (docs/api.md) with the bearer token the user
// signed in with, kept in the tab's sessionStorage and never in a URL; the
// API decides what each role may see and records every read of events.
//
// The pages' words are internal/texts's catalogue, the CLI's too, served
// as i18n.js.
//
// The verifier is cmd/verify-wasm (package ledger/verify/report over
// ledger/verify) built for WebAssembly and embedded as static/verify.wasm,
// with the Go toolchain's static/wasm_exec.js: the page checks every
// event it shows itself, and trusts no claim of the server. `go generate`
// rebuilds both; TestWasmUpToDate fails when they are stale.
//
// docs/portal.md describes the pages; docs/threat-model.md says what a
// verifier served by the operator proves and what it cannot.
package portal

//go:generate sh -c "GOOS=js GOARCH=wasm go build -trimpath -ldflags=-s -o static/verify.wasm ../../../cmd/verify-wasm && cp \"$(go env GOROOT)/lib/wasm/wasm_exec.js\" static/wasm_exec.js && go version | cut -d' ' -f3 > static/verify.wasm.go-version"

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/consent/enrolment"
	"github.com/vigie-sante/vigie/internal/texts"
)

//go:embed static
var staticFS embed.FS

// CSP is the Content-Security-Policy of every page and file of the
// portal: scripts, styles, images and connections from the portal's own
// origin only, no inline script or style, no plugin, no framing, and
// 'wasm-unsafe-eval' so that the page may compile the verifier. No form
// is ever submitted by the browser itself (form-action 'none'): the
// pages' scripts read every form, and a form submitted before its script
// ran (a slow load, a click while the page loads) would otherwise put its
// fields in a URL, the sign-in's bearer token or an auditor's search for
// an INS included, into the server's and the browser's history.
const CSP = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"

// Prefix is where the portal is mounted.
const Prefix = "/portal/"

// Config configures the portal.
type Config struct {
	// Authenticate checks a token as the API does
	// (api/auth.Authenticator.Authenticate), given as an Authorization
	// header: the OpenID Connect sign-in checks the token it obtained
	// before the page gets it. Required.
	Authenticate func(ctx context.Context, authorization string) (*auth.Identity, error)
	// OIDC enables sign-in through OpenID Connect providers
	// (Prefix+"oidc/login?p=<index>": professionals' and patients' at
	// once, the page offers a choice); the token one yields is checked
	// with Authenticate before the page gets it. Their CookieKey and
	// RedirectURL must be the same. Empty: users paste a token.
	OIDC []OIDCConfig
	// Enrol, if not nil, enrols the patient who bears the Authorization
	// header (a token of an issuer whose patients are enrolled, not yet
	// linked) with the one-time code the operator gave them
	// (consent/enrolment): POST Prefix+"api/enrol". Its errors wrap
	// api/auth's (the token) or consent/enrolment's (the code, the link),
	// and quote neither a code nor a sub. Nil: no enrolment here.
	Enrol func(ctx context.Context, authorization, code string) error
	// Logger receives the portal's errors. Default slog.Default(). Codes
	// and tokens are never logged.
	Logger *slog.Logger
}

type file struct {
	body, gz    []byte
	contentType string
	etag        string
}

type portal struct {
	cfg   Config
	files map[string]*file
	texts []byte
	oidc  []*oidcFlow // one per Config.OIDC
}

// New returns the portal's handler, to be mounted at [Prefix]. It serves
// the pages and static files under Prefix, the catalogue of texts
// (Prefix+"i18n.js"), the texts of decisions (Prefix+"texts.json"), the ways of signing in (Prefix+"api/config":
// {"oidc": bool}), who a token is (Prefix+"api/identity") and, with Config.OIDC, the OpenID Connect sign-in
// (Prefix+"oidc/login" and Prefix+"oidc/callback"). Everything the pages
// show about the ledger comes from the API, with the user's token.
func New(cfg Config) (http.Handler, error) {
	if cfg.Authenticate == nil {
		return nil, errors.New("portal: Config.Authenticate is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &portal{cfg: cfg, files: map[string]*file{}}
	err := fs.WalkDir(staticFS, "static", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(name, ".go-version") {
			return err
		}
		b, err := staticFS.ReadFile(name)
		if err != nil {
			return err
		}
		p.files[strings.TrimPrefix(name, "static/")] = newFile(name, b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("portal: %w", err)
	}
	if p.texts, err = json.Marshal(decisionTexts()); err != nil {
		return nil, fmt.Errorf("portal: %w", err)
	}
	p.files["texts.json"] = newFile("texts.json", p.texts)
	p.files["i18n.js"] = newFile("i18n.js", texts.JS())
	verify := func(ctx context.Context, token string) error {
		_, err := cfg.Authenticate(ctx, "Bearer "+token)
		if errors.Is(err, auth.ErrNotEnrolled) && cfg.Enrol != nil {
			// A patient signing in for the first time: the page asks
			// for their enrolment code.
			return nil
		}
		return err
	}
	for i, oc := range cfg.OIDC {
		if i > 0 && (!bytes.Equal(oc.CookieKey, cfg.OIDC[0].CookieKey) || oc.RedirectURL != cfg.OIDC[0].RedirectURL) {
			return nil, errors.New("portal: every OIDCConfig must have the same CookieKey and RedirectURL")
		}
		f, err := newOIDCFlow(oc, verify)
		if err != nil {
			return nil, err
		}
		p.oidc = append(p.oidc, f)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Prefix+"api/config", p.clientConfig)
	mux.HandleFunc("GET "+Prefix+"api/identity", p.identity)
	if cfg.Enrol != nil {
		mux.HandleFunc("POST "+Prefix+"api/enrol", p.enrol)
	}
	if len(p.oidc) > 0 {
		mux.HandleFunc("GET "+oidcPath+"login", p.oidcLogin)
		mux.HandleFunc("GET "+oidcPath+"callback", p.oidcCallback)
	}
	mux.HandleFunc("GET "+Prefix+"{file...}", p.static)
	return headers(mux), nil
}

func newFile(name string, b []byte) *file {
	sum := sha256.Sum256(b)
	ct := mime.TypeByExtension(path.Ext(name))
	switch path.Ext(name) {
	case ".wasm":
		ct = "application/wasm"
	case ".js":
		ct = "text/javascript; charset=utf-8"
	case ".json":
		ct = "application/json"
	}
	f := &file{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
	if len(b) > 1024 && ct != "image/png" {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(b)
		zw.Close()
		f.gz = buf.Bytes()
	}
	return f
}

// headers sets the security headers of every response of the portal.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
		next.ServeHTTP(w, r)
	})
}

// static serves the embedded files; a directory serves its index.html.
// Files are revalidated on each use (ETag), so that a new binary's pages
// and verifier are never mixed with an old one's.
func (p *portal) static(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if name == "" || strings.HasSuffix(name, "/") {
		name += "index.html"
	}
	f, ok := p.files[name]
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	h.Set("Vary", "Accept-Encoding")
	if r.Header.Get("If-None-Match") == f.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := f.body
	if f.gz != nil && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		h.Set("Content-Encoding", "gzip")
		body = f.gz
	}
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// writeJSON writes v, not to be cached (the portal's API answers are a
// user's).
// identity tells the page who the bearer of the Authorization header is,
// as the API sees it: {"role", "organizations"}. Pages are chosen by the
// server's mapping of the provider's claims (a provider such as Pro Santé
// Connect or FranceConnect emits no role claim), never by claims the page
// reads itself. A refusal says what is missing (auth's errors never quote
// a token).
func (p *portal) identity(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	id, err := p.cfg.Authenticate(r.Context(), r.Header.Get("Authorization"))
	if errors.Is(err, auth.ErrNotEnrolled) && p.cfg.Enrol != nil {
		// The page offers the enrolment form.
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "invalid credentials: " + err.Error(), "enrol": true})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "invalid credentials: " + err.Error()})
		return
	}
	orgs := id.Organizations()
	if orgs == nil {
		orgs = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"role": id.Role(), "organizations": orgs})
}

// maxEnrolBody bounds the body of POST api/enrol.
const maxEnrolBody = 1024

// enrol links the bearer's sign-in to the patient of the code in the body
// ({"code": "..."}, Config.Enrol). The answer says which part is wrong:
// 401 the token, 400 the code (unknown, used, expired), 409 a link that
// exists already; it quotes neither the code nor the sub.
func (p *portal) enrol(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Code string `json:"code"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxEnrolBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Code == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"field": "code", "message": "code: required, in a JSON object {\"code\": ...}"})
		return
	}
	err := p.cfg.Enrol(r.Context(), r.Header.Get("Authorization"), body.Code)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]bool{"enrolled": true})
	case errors.Is(err, enrolment.ErrCodeUnknown), errors.Is(err, enrolment.ErrCodeUsed), errors.Is(err, enrolment.ErrCodeExpired):
		writeJSON(w, http.StatusBadRequest, map[string]string{"field": "code", "message": err.Error()})
	case errors.Is(err, enrolment.ErrAlreadyEnrolled), errors.Is(err, enrolment.ErrPatientEnrolled):
		writeJSON(w, http.StatusConflict, map[string]string{"message": err.Error() + ": the service's operator can revoke the earlier link"})
	case isAuthError(err):
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "invalid credentials: " + err.Error()})
	default:
		p.cfg.Logger.Error("portal: enrolment failed", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"message": "enrolment failed: try again later"})
	}
}

// isAuthError reports whether err is api/auth's refusal of a token.
func isAuthError(err error) bool {
	for _, e := range []error{auth.ErrNoCredentials, auth.ErrMalformed, auth.ErrAlgorithm, auth.ErrUnknownKey, auth.ErrSignature,
		auth.ErrIssuer, auth.ErrAudience, auth.ErrExpired, auth.ErrNotYetValid, auth.ErrRole, auth.ErrSubject, auth.ErrOrganizations} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
