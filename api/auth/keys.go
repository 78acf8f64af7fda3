package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// KeySource finds an issuer's public keys. Implementations are safe for
// concurrent use.
type KeySource interface {
	// Key returns the public key with this key ID. An empty kid names the
	// only key of a set of one. It returns an error wrapping
	// ErrUnknownKey when there is no such key, and ErrKeys when the keys
	// could not be had.
	Key(ctx context.Context, kid string) (jose.JSONWebKey, error)
}

// StaticKeys is a fixed key set: the embedded issuer's, or keys given in
// configuration.
type StaticKeys jose.JSONWebKeySet

// Key implements KeySource.
func (s *StaticKeys) Key(_ context.Context, kid string) (jose.JSONWebKey, error) {
	return findKey((*jose.JSONWebKeySet)(s), kid)
}

// findKey returns the public key of set with this ID (or the only one,
// for an empty kid).
func findKey(set *jose.JSONWebKeySet, kid string) (jose.JSONWebKey, error) {
	if kid == "" {
		if len(set.Keys) == 1 && set.Keys[0].Valid() {
			return set.Keys[0].Public(), nil
		}
		return jose.JSONWebKey{}, fmt.Errorf("%w: the token names no key", ErrUnknownKey)
	}
	for _, k := range set.Keys {
		if k.KeyID == kid && k.Valid() {
			return k.Public(), nil
		}
	}
	return jose.JSONWebKey{}, ErrUnknownKey
}

// RemoteKeysConfig configures RemoteKeys. URL is required.
type RemoteKeysConfig struct {
	// URL is the issuer's JWKS (the jwks_uri of its OpenID Connect
	// discovery document: see DiscoverJWKS).
	URL string
	// Client fetches the keys. Default: an http.Client with a 10s timeout.
	Client *http.Client
	// MaxAge is how long fetched keys are used before they are fetched
	// again. Default 1 hour.
	MaxAge time.Duration
	// MinRefresh is the least time between two fetches: after a failed
	// fetch, or for a key ID not in the set (the issuer rotated its keys,
	// or a caller sends garbage). Default 1 minute.
	MinRefresh time.Duration
	// MaxSize is the largest key set accepted, in bytes. Default 1 MiB.
	MaxSize int64
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// RemoteKeys is the key set of an OpenID Connect issuer, fetched from its
// JWKS URL, kept MaxAge, and fetched again earlier when a token names a
// key it does not have (at most once per MinRefresh): keys the issuer
// rotates in are found, keys it drops stop working at the next fetch.
// When a fetch fails, the keys fetched before are used until a fetch
// succeeds. Safe for concurrent use.
type RemoteKeys struct {
	cfg RemoteKeysConfig

	mu      sync.Mutex
	set     *jose.JSONWebKeySet // nil before the first fetch
	fetched time.Time           // of set
	tried   time.Time           // last fetch attempt, successful or not
	lastErr error
}

// NewRemoteKeys returns a RemoteKeys; it fetches nothing until the first
// Key.
func NewRemoteKeys(cfg RemoteKeysConfig) (*RemoteKeys, error) {
	if cfg.URL == "" {
		return nil, errors.New("auth: RemoteKeysConfig.URL is required")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = time.Hour
	}
	if cfg.MinRefresh <= 0 {
		cfg.MinRefresh = time.Minute
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = 1 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &RemoteKeys{cfg: cfg}, nil
}

// Key implements KeySource.
func (r *RemoteKeys) Key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now()
	stale := r.set == nil || now.Sub(r.fetched) >= r.cfg.MaxAge
	if stale && r.mayFetchLocked(now) {
		r.refreshLocked(ctx, now)
	}
	if r.set == nil {
		return jose.JSONWebKey{}, fmt.Errorf("%w: %w", ErrKeys, r.lastErr)
	}
	k, err := findKey(r.set, kid)
	if errors.Is(err, ErrUnknownKey) && kid != "" && r.mayFetchLocked(now) {
		// A key we do not know: the issuer may have rotated.
		r.refreshLocked(ctx, now)
		k, err = findKey(r.set, kid)
	}
	return k, err
}

// mayFetchLocked reports whether a fetch may be made now: fetches, failed
// or not, are at least MinRefresh apart, so that neither an issuer that is
// down nor a caller sending unknown key IDs makes Vigie hammer the issuer.
func (r *RemoteKeys) mayFetchLocked(now time.Time) bool {
	return r.tried.IsZero() || now.Sub(r.tried) >= r.cfg.MinRefresh
}

// refreshLocked fetches the key set; on failure it keeps the old one.
// Fetching under the lock makes concurrent callers wait for one fetch
// instead of each making their own.
func (r *RemoteKeys) refreshLocked(ctx context.Context, now time.Time) {
	r.tried = now
	set, err := r.fetch(ctx)
	if err != nil {
		r.lastErr = err
		return
	}
	r.set, r.fetched, r.lastErr = set, now, nil
}

func (r *RemoteKeys) fetch(ctx context.Context) (*jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := getJSON(ctx, r.cfg.Client, r.cfg.URL, r.cfg.MaxSize, &set); err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		// Only public signing keys: a JWKS that publishes a private or
		// symmetric key is misconfigured, and such a key must not verify.
		if k.Valid() && k.IsPublic() && (k.Use == "" || k.Use == "sig") {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("fetch JWKS: no public signing key")
	}
	return &jose.JSONWebKeySet{Keys: keys}, nil
}

// DiscoverJWKS returns the jwks_uri of an OpenID Connect issuer, from its
// discovery document (issuer + "/.well-known/openid-configuration"),
// after checking that the document names the same issuer.
func DiscoverJWKS(ctx context.Context, client *http.Client, issuer string) (string, error) {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	if err := getJSON(ctx, client, u, 1<<20, &doc); err != nil {
		return "", fmt.Errorf("OpenID Connect discovery: %w", err)
	}
	if doc.Issuer != issuer {
		return "", fmt.Errorf("OpenID Connect discovery: the document is for issuer %q, not %q", doc.Issuer, issuer)
	}
	if doc.JWKSURI == "" {
		return "", errors.New("OpenID Connect discovery: no jwks_uri")
	}
	if !SecureURL(doc.JWKSURI) {
		return "", errors.New("OpenID Connect discovery: the jwks_uri is not https (http only on a loopback host)")
	}
	return doc.JWKSURI, nil
}

// getJSON fetches a JSON document of at most max bytes.
func getJSON(ctx context.Context, client *http.Client, url string, max int64, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != "application/json" && mt != "application/jwk-set+json") {
			return fmt.Errorf("GET %s: content type %q is not JSON", url, ct)
		}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return err
	}
	if int64(len(b)) > max {
		return fmt.Errorf("GET %s: larger than %d bytes", url, max)
	}
	return json.Unmarshal(b, v)
}

// SecureURL reports whether s is an https URL, or an http one on a
// loopback host (tests, a provider on the same machine): where keys,
// codes and secrets may be fetched from or sent to.
func SecureURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	if u.Scheme == "https" {
		return true
	}
	h := u.Hostname()
	ip := net.ParseIP(h)
	return u.Scheme == "http" && (h == "localhost" || ip != nil && ip.IsLoopback())
}
