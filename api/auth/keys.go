package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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
	// discovery document: see Discover).
	URL string
	// Client is the base of the client that fetches the keys, through
	// ProviderClient (whose redirect rule and time limit apply whatever
	// Client says). Default: http.DefaultTransport.
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
	cfg.Client = ProviderClient(cfg.Client)
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	// Each key is read alone: a key of a type this package cannot read
	// (another curve, another algorithm) is left out, not fatal to the
	// others.
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := ProviderJSON(r.cfg.Client, req, r.cfg.MaxSize, &set, "application/jwk-set+json", "application/json"); err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if k.UnmarshalJSON(raw) != nil {
			continue
		}
		// Only public signing keys of accepted strength: a JWKS that
		// publishes a private or symmetric key is misconfigured, and such
		// a key must not verify; nor may a weak one.
		if k.Valid() && k.IsPublic() && (k.Use == "" || k.Use == "sig") && CheckKeyStrength(k) == nil {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("fetch JWKS: no public signing key of accepted strength")
	}
	return &jose.JSONWebKeySet{Keys: keys}, nil
}
