package portal

// Sign-in through an OpenID Connect provider: the authorization code flow
// with PKCE (S256), state and nonce.
//
//   - [OpenID Connect Core 1.0], section 3.1 (authorization code flow)
//   - [OpenID Connect Discovery 1.0], section 4
//   - [RFC 7636] (PKCE)
//
// [OpenID Connect Core 1.0]: https://openid.net/specs/openid-connect-core-1_0.html
// [OpenID Connect Discovery 1.0]: https://openid.net/specs/openid-connect-discovery-1_0.html
// [RFC 7636]: https://www.rfc-editor.org/rfc/rfc7636

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigie-sante/vigie/api/auth"
)

// OIDCConfig configures the portal's sign-in through an OpenID Connect
// provider. Issuer, ClientID, RedirectURL and CookieKey are required.
type OIDCConfig struct {
	// Name is what the sign-in page's button says ("FranceConnect",
	// "Pro Santé Connect"). Default: the issuer's host.
	Name string
	// Issuer is the provider's issuer URL; its discovery document is at
	// Issuer + "/.well-known/openid-configuration" and must name the same
	// issuer.
	Issuer string
	// ClientID is the portal's client identifier at the provider.
	ClientID string
	// ClientSecret, if not empty, is sent to the token endpoint
	// (client_secret_post): a confidential client. Empty: a public client,
	// protected by PKCE only.
	ClientSecret string
	// RedirectURL is the callback the provider sends the browser back to:
	// the portal's external base URL + Prefix + "oidc/callback". Its
	// scheme decides whether the state cookie is Secure.
	RedirectURL string
	// CookieKey authenticates the state cookie (HMAC-SHA256): at least 32
	// bytes, used for nothing else.
	CookieKey []byte
	// HTTPClient is the base of the client that calls the provider,
	// through auth.ProviderClient (whose redirect rule and time limit
	// apply whatever HTTPClient says). Default: http.DefaultTransport.
	HTTPClient *http.Client
	// DiscoveryTTL is how long the discovery document is used before it
	// is fetched again. Default 1 hour.
	DiscoveryTTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Rand is the source of state, nonce and PKCE verifier. Default
	// crypto/rand.Reader.
	Rand io.Reader
}

// Where the flow lives, and how long a sign-in may take.
const (
	oidcPath       = Prefix + "oidc/"
	oidcCookie     = "vigie_oidc"
	oidcStateTTL   = 10 * time.Minute
	oidcCookieMAC  = "vigie portal oidc state cookie v1\n"
	maxOIDCBody    = 1 << 20
	maxCookieValue = 1024
)

// The short codes the sign-in page receives in #oidc_error=, and
// translates.
const (
	oidcErrUnavailable = "unavailable" // the provider's discovery failed
	oidcErrDenied      = "denied"      // the user or provider said no
	oidcErrProvider    = "provider"    // another error from the provider
	oidcErrState       = "state"       // no, bad or expired state
	oidcErrExchange    = "exchange"    // the token endpoint failed
	oidcErrToken       = "token"       // the tokens are not acceptable
)

func (c *OIDCConfig) validate() error {
	switch {
	case c.Issuer == "":
		return errors.New("portal: OIDCConfig.Issuer is required")
	case !auth.SecureURL(c.Issuer):
		return fmt.Errorf("portal: OIDCConfig.Issuer %q: want https (http only on a loopback host)", c.Issuer)
	case c.ClientID == "":
		return errors.New("portal: OIDCConfig.ClientID is required")
	case len(c.CookieKey) < 32:
		return errors.New("portal: OIDCConfig.CookieKey must be at least 32 bytes")
	case len(c.Name) > 64:
		return errors.New("portal: OIDCConfig.Name: at most 64 bytes")
	}
	if c.Name == "" {
		if u, err := url.Parse(c.Issuer); err == nil {
			c.Name = u.Host
		}
	}
	u, err := url.Parse(c.RedirectURL)
	// The code and the state cookie come back there: https, or http on
	// a loopback host, as every URL a secret travels to (auth.SecureURL).
	if err != nil || !auth.SecureURL(c.RedirectURL) || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || !strings.HasSuffix(u.Path, oidcPath+"callback") {
		return fmt.Errorf("portal: OIDCConfig.RedirectURL %q: want an https URL (http only on a loopback host) ending in %scallback, without a query", c.RedirectURL, oidcPath)
	}
	// The code, the verifier and the client secret go to the token
	// endpoint and nowhere else: ProviderClient follows no redirect of a
	// POST.
	c.HTTPClient = auth.ProviderClient(c.HTTPClient)
	if c.DiscoveryTTL <= 0 {
		c.DiscoveryTTL = time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	return nil
}

// oidcState is what the state cookie keeps between the redirection to the
// provider and the callback.
type oidcState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	// Tab is the random value the sign-in page kept in its tab's
	// sessionStorage before it sent the browser here; it comes back with
	// the token, so that the page takes only a token from a sign-in it
	// started itself (a link carrying someone else's token is refused).
	Tab     string `json:"t"`
	Expires int64  `json:"e"` // Unix seconds
	// Provider is the index of the provider chosen (Config.OIDC): the
	// callback exchanges the code there, and accepts an ID token of that
	// issuer only.
	Provider int `json:"p,omitempty"`
}

// errBadCookie is any state cookie that is not one this portal issued,
// unaltered and unexpired.
var errBadCookie = errors.New("portal: invalid sign-in state cookie")

// sealState returns the cookie value of st: base64url(JSON) "."
// base64url(HMAC-SHA256(key, label || JSON)).
func sealState(key []byte, st oidcState) string {
	b, _ := json.Marshal(st)
	return base64.RawURLEncoding.EncodeToString(b) + "." + base64.RawURLEncoding.EncodeToString(stateMAC(key, b))
}

func stateMAC(key, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(oidcCookieMAC))
	m.Write(payload)
	return m.Sum(nil)
}

// openState checks a cookie value made by sealState and returns its state
// if it has not expired at now.
func openState(key []byte, value string, now time.Time) (oidcState, error) {
	var st oidcState
	if len(value) > maxCookieValue {
		return st, errBadCookie
	}
	p, m, ok := strings.Cut(value, ".")
	if !ok {
		return st, errBadCookie
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p)
	mac, err2 := base64.RawURLEncoding.DecodeString(m)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, stateMAC(key, payload)) {
		return st, errBadCookie
	}
	if json.Unmarshal(payload, &st) != nil || st.State == "" || st.Nonce == "" || st.Verifier == "" || !tabValue(st.Tab) {
		return st, errBadCookie
	}
	if !now.Before(time.Unix(st.Expires, 0)) {
		return st, fmt.Errorf("%w: expired", errBadCookie)
	}
	return st, nil
}

// oidcFlow runs the sign-in. It is safe for concurrent use.
type oidcFlow struct {
	cfg    OIDCConfig
	secure bool
	verify func(ctx context.Context, token string) error

	mu      sync.Mutex
	doc     *auth.Discovery
	fetched time.Time
}

func newOIDCFlow(cfg OIDCConfig, verify func(ctx context.Context, token string) error) (*oidcFlow, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &oidcFlow{cfg: cfg, secure: strings.HasPrefix(cfg.RedirectURL, "https:"), verify: verify}, nil
}

// discover returns the provider's discovery document, fetched at most
// once per DiscoveryTTL (a failure is not cached).
func (f *oidcFlow) discover(ctx context.Context) (*auth.Discovery, error) {
	f.mu.Lock()
	doc, fetched := f.doc, f.fetched
	f.mu.Unlock()
	if doc != nil && f.cfg.Now().Sub(fetched) < f.cfg.DiscoveryTTL {
		return doc, nil
	}
	// Fetched without the lock: a slow provider does not queue every
	// sign-in behind one request.
	d, err := auth.Discover(ctx, f.cfg.HTTPClient, f.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	if d.AuthorizationEndpoint == "" || d.TokenEndpoint == "" {
		return nil, errors.New("OpenID Connect discovery: no authorization_endpoint or token_endpoint")
	}
	f.mu.Lock()
	f.doc, f.fetched = d, f.cfg.Now()
	f.mu.Unlock()
	return d, nil
}

func (f *oidcFlow) random() (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(f.cfg.Rand, b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// login sends the browser to the provider's authorization endpoint, with
// the state, nonce and PKCE verifier in an authenticated cookie.
func (p *portal) oidcLogin(w http.ResponseWriter, r *http.Request) {
	var st oidcState
	if v := r.URL.Query().Get("p"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n >= len(p.oidc) || strconv.Itoa(n) != v {
			p.oidcFail(w, r, oidcErrState)
			return
		}
		st.Provider = n
	}
	f := p.oidc[st.Provider]
	d, err := f.discover(r.Context())
	if err != nil {
		p.cfg.Logger.Warn("portal: OpenID Connect sign-in", "err", err)
		p.oidcFail(w, r, oidcErrUnavailable)
		return
	}
	if st.Tab = r.URL.Query().Get("t"); !tabValue(st.Tab) {
		p.oidcFail(w, r, oidcErrState)
		return
	}
	for _, s := range []*string{&st.State, &st.Nonce, &st.Verifier} {
		if *s, err = f.random(); err != nil {
			p.cfg.Logger.Error("portal: OpenID Connect sign-in", "err", err)
			p.oidcFail(w, r, oidcErrUnavailable)
			return
		}
	}
	st.Expires = f.cfg.Now().Add(oidcStateTTL).Unix()
	challenge := sha256.Sum256([]byte(st.Verifier))
	u, err := url.Parse(d.AuthorizationEndpoint)
	if err != nil {
		p.oidcFail(w, r, oidcErrUnavailable)
		return
	}
	q := u.Query()
	q.Set("response_type", "code")
	q.Set("client_id", f.cfg.ClientID)
	q.Set("redirect_uri", f.cfg.RedirectURL)
	q.Set("scope", "openid")
	q.Set("state", st.State)
	q.Set("nonce", st.Nonce)
	q.Set("code_challenge", base64.RawURLEncoding.EncodeToString(challenge[:]))
	q.Set("code_challenge_method", "S256")
	u.RawQuery = q.Encode()
	f.setCookie(w, sealState(f.cfg.CookieKey, st), int(oidcStateTTL/time.Second))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func (f *oidcFlow) setCookie(w http.ResponseWriter, value string, maxAge int) {
	if maxAge <= 0 {
		maxAge = -1
	}
	http.SetCookie(w, &http.Cookie{
		Name: oidcCookie, Value: value, Path: oidcPath, MaxAge: maxAge,
		HttpOnly: true, Secure: f.secure, SameSite: http.SameSiteLaxMode,
	})
}

// oidcCallback checks the state, exchanges the code for tokens and hands
// the token the API accepts to the sign-in page, in the URL's fragment:
// browsers never send a fragment to a server, so the token reaches no
// log. The code and the tokens are never logged either.
func (p *portal) oidcCallback(w http.ResponseWriter, r *http.Request) {
	f := p.oidc[0]         // the cookie's attributes are every provider's
	f.setCookie(w, "", -1) // one use
	w.Header().Set("Cache-Control", "no-store")
	q := r.URL.Query()
	c, err := r.Cookie(oidcCookie)
	if err != nil {
		p.oidcFail(w, r, oidcErrState)
		return
	}
	st, err := openState(f.cfg.CookieKey, c.Value, f.cfg.Now())
	if err == nil && (st.Provider < 0 || st.Provider >= len(p.oidc)) {
		err = errBadCookie
	}
	if err != nil {
		p.cfg.Logger.Info("portal: OpenID Connect callback refused", "err", err)
		p.oidcFail(w, r, oidcErrState)
		return
	}
	f = p.oidc[st.Provider]
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(st.State)) != 1 {
		p.cfg.Logger.Info("portal: OpenID Connect callback refused", "err", "state does not match")
		p.oidcFail(w, r, oidcErrState)
		return
	}
	if e := q.Get("error"); e != "" {
		p.cfg.Logger.Info("portal: OpenID Connect provider refused the sign-in", "error", truncate(e, 64))
		if e == "access_denied" {
			p.oidcFail(w, r, oidcErrDenied)
		} else {
			p.oidcFail(w, r, oidcErrProvider)
		}
		return
	}
	code := q.Get("code")
	if code == "" {
		p.oidcFail(w, r, oidcErrProvider)
		return
	}
	token, reason, err := f.exchange(r.Context(), code, st)
	if err != nil {
		p.cfg.Logger.Warn("portal: OpenID Connect sign-in failed", "err", err)
		p.oidcFail(w, r, reason)
		return
	}
	http.Redirect(w, r, Prefix+"index.html#oidc_token="+url.QueryEscape(token)+"&oidc_tab="+url.QueryEscape(st.Tab), http.StatusSeeOther)
}

// tabValue reports whether t can be the sign-in page's tab value: 22 to
// 128 base64url characters (the page makes 43).
func tabValue(t string) bool {
	if len(t) < 22 || len(t) > 128 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// exchange redeems code at the token endpoint and returns the token to
// hand to the page: the access token if it is one the API accepts, else
// the ID token. On error, it also returns the code for the page.
func (f *oidcFlow) exchange(ctx context.Context, code string, st oidcState) (token, reason string, err error) {
	d, err := f.discover(ctx)
	if err != nil {
		return "", oidcErrUnavailable, err
	}
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {f.cfg.RedirectURL},
		"client_id":     {f.cfg.ClientID},
		"code_verifier": {st.Verifier},
	}
	if f.cfg.ClientSecret != "" {
		form.Set("client_secret", f.cfg.ClientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", oidcErrExchange, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	var resp struct {
		IDToken     string `json:"id_token"`
		AccessToken string `json:"access_token"`
	}
	if err := auth.ProviderJSON(f.cfg.HTTPClient, req, maxOIDCBody, &resp); err != nil {
		return "", oidcErrExchange, fmt.Errorf("token endpoint: %w", err)
	}
	if err := f.checkIDToken(resp.IDToken, st.Nonce); err != nil {
		return "", oidcErrToken, err
	}
	if strings.Count(resp.AccessToken, ".") == 2 && f.verify(ctx, resp.AccessToken) == nil {
		return resp.AccessToken, "", nil
	}
	if err := f.verify(ctx, resp.IDToken); err != nil {
		return "", oidcErrToken, fmt.Errorf("neither the access token nor the ID token is accepted by the API: %w", err)
	}
	return resp.IDToken, "", nil
}

// checkIDToken checks the ID token's iss, aud and nonce. Its signature is
// not checked here: it came straight from the token endpoint over the
// connection this server opened (OpenID Connect Core 1.0, 3.1.3.7 (6));
// the token handed to the page is verified by the API's verifier.
func (f *oidcFlow) checkIDToken(idToken, nonce string) error {
	parts := strings.Split(idToken, ".")
	if len(parts) != 3 {
		return errors.New("ID token: missing or not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return errors.New("ID token: claims are not base64url")
	}
	var c struct {
		Issuer   string          `json:"iss"`
		Audience json.RawMessage `json:"aud"`
		Nonce    string          `json:"nonce"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return errors.New("ID token: claims are not a JSON object")
	}
	var aud []string
	if json.Unmarshal(c.Audience, &aud) != nil {
		var one string
		json.Unmarshal(c.Audience, &one)
		aud = []string{one}
	}
	switch {
	case c.Issuer != f.cfg.Issuer:
		return errors.New("ID token: another issuer")
	case !slices.Contains(aud, f.cfg.ClientID):
		return errors.New("ID token: not for this client")
	case subtle.ConstantTimeCompare([]byte(c.Nonce), []byte(nonce)) != 1:
		return errors.New("ID token: the nonce does not match")
	}
	return nil
}

// oidcFail sends the browser back to the sign-in page with an error code.
func (p *portal) oidcFail(w http.ResponseWriter, r *http.Request, code string) {
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, Prefix+"index.html#oidc_error="+code, http.StatusSeeOther)
}

// clientConfig tells the sign-in page which ways of signing in there are:
// {"oidc": bool, "providers": [{"name": ...}, ...]}, the providers in the
// order of Config.OIDC (oidc/login?p= takes the index).
func (p *portal) clientConfig(w http.ResponseWriter, r *http.Request) {
	providers := []map[string]string{}
	for _, f := range p.oidc {
		providers = append(providers, map[string]string{"name": f.cfg.Name})
	}
	writeJSON(w, http.StatusOK, map[string]any{"oidc": len(p.oidc) > 0, "providers": providers})
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
