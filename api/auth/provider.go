package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Limits of every call to an identity provider.
const (
	// ProviderTimeout bounds one call to an identity provider, redirects
	// and reading the answer included.
	ProviderTimeout = 10 * time.Second
	// MaxProviderAnswer is the largest answer read from an identity
	// provider, in bytes.
	MaxProviderAnswer = 1 << 20
	// maxProviderRedirects is the most redirects followed for one call.
	maxProviderRedirects = 5
)

// ProviderClient returns the HTTP client of every call to an OpenID
// Connect provider (discovery, JWKS, token endpoint): base's transport
// (nil: http.DefaultTransport), base's timeout if set, else
// ProviderTimeout, and this redirect rule: a redirect is followed only for
// a GET, at most 5 times, to a URL that [SecureURL] accepts, and never
// from https to http. Signing keys fetched through a redirect to plain
// http elsewhere (or a code and client secret sent there) would be an
// attacker's.
func ProviderClient(base *http.Client) *http.Client {
	c := &http.Client{}
	if base != nil {
		*c = *base
	}
	if c.Timeout <= 0 || c.Timeout > ProviderTimeout {
		c.Timeout = ProviderTimeout
	}
	c.CheckRedirect = checkProviderRedirect
	return c
}

// errRedirect is a redirect ProviderClient does not follow.
var errRedirect = errors.New("redirect refused")

func checkProviderRedirect(req *http.Request, via []*http.Request) error {
	first, last := via[0], via[len(via)-1]
	switch {
	case len(via) > maxProviderRedirects:
		return fmt.Errorf("%w: more than %d redirects", errRedirect, maxProviderRedirects)
	case first.Method != http.MethodGet:
		return fmt.Errorf("%w: the provider redirected a %s", errRedirect, first.Method)
	case !SecureURL(req.URL.String()):
		return fmt.Errorf("%w: the target is not https (http only on a loopback host)", errRedirect)
	case last.URL.Scheme == "https" && req.URL.Scheme != "https":
		return fmt.Errorf("%w: from https to %s", errRedirect, req.URL.Scheme)
	}
	return nil
}

// ProviderJSON sends req with client (made by [ProviderClient]) and
// decodes the JSON answer, of at most max bytes (0: MaxProviderAnswer),
// into v. The answer must be 200 with a Content-Type among types (default
// application/json). Errors name the URL without its credentials and
// never quote the answer (it may hold tokens); for an error answer, they
// give its OAuth error code (RFC 6749, section 5.2) only.
func ProviderJSON(client *http.Client, req *http.Request, max int64, v any, types ...string) error {
	if max <= 0 {
		max = MaxProviderAnswer
	}
	if len(types) == 0 {
		types = []string{"application/json"}
	}
	where := req.Method + " " + req.URL.Redacted()
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if int64(len(b)) > max {
		return fmt.Errorf("%s: answer larger than %d bytes", where, max)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(b, &e)
		if len(e.Error) > 64 {
			e.Error = e.Error[:64]
		}
		return fmt.Errorf("%s: %s (error %q)", where, resp.Status, e.Error)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || !slices.Contains(types, mt) {
		return fmt.Errorf("%s: the answer is not %s", where, strings.Join(types, " or "))
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: the answer is not a JSON document of the expected shape", where)
	}
	return nil
}

// Discovery is what Vigie uses of an OpenID Connect provider's discovery
// document ([OpenID Connect Discovery 1.0], section 3).
//
// [OpenID Connect Discovery 1.0]: https://openid.net/specs/openid-connect-discovery-1_0.html
type Discovery struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	JWKSURI               string `json:"jwks_uri"`
}

// Discover fetches the discovery document of an OpenID Connect issuer
// (issuer + "/.well-known/openid-configuration", application/json) with
// [ProviderClient](client), and checks that it names the same issuer, that
// it has a jwks_uri, and that every endpoint it names is a [SecureURL].
// It is the one discovery of the API's token verification and of the
// portal's sign-in.
func Discover(ctx context.Context, client *http.Client, issuer string) (*Discovery, error) {
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("OpenID Connect discovery: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	var d Discovery
	if err := ProviderJSON(ProviderClient(client), req, MaxProviderAnswer, &d); err != nil {
		return nil, fmt.Errorf("OpenID Connect discovery: %w", err)
	}
	switch {
	case d.Issuer != issuer:
		return nil, fmt.Errorf("OpenID Connect discovery: the document is for issuer %q, not %q", d.Issuer, issuer)
	case d.JWKSURI == "":
		return nil, errors.New("OpenID Connect discovery: no jwks_uri")
	}
	for _, e := range []struct{ name, url string }{
		{"jwks_uri", d.JWKSURI},
		{"authorization_endpoint", d.AuthorizationEndpoint},
		{"token_endpoint", d.TokenEndpoint},
	} {
		if e.url != "" && !SecureURL(e.url) {
			return nil, fmt.Errorf("OpenID Connect discovery: the %s is not https (http only on a loopback host)", e.name)
		}
	}
	return &d, nil
}

// Minimum strength of a verification key.
const (
	// MinRSABits is the smallest RSA modulus accepted (ANSSI RGS B1 and
	// NIST SP 800-57 both retire smaller ones).
	MinRSABits = 2048
	// minRSAExponent is the smallest RSA public exponent accepted
	// (FIPS 186-5, 5.4).
	minRSAExponent = 65537
)

// CheckKeyStrength reports whether k is a public key strong enough to
// verify tokens: RSA of at least MinRSABits bits with an odd exponent of
// at least 65537, ECDSA on P-256, P-384 or P-521, or Ed25519. Anything
// else (a shorter RSA key, another curve, a symmetric key) is refused.
func CheckKeyStrength(k jose.JSONWebKey) error {
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		if pub.N == nil || pub.N.BitLen() < MinRSABits {
			return fmt.Errorf("RSA key shorter than %d bits", MinRSABits)
		}
		if pub.E < minRSAExponent || pub.E%2 == 0 {
			return fmt.Errorf("RSA public exponent is even or below %d", minRSAExponent)
		}
		return nil
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return errors.New("ECDSA key on a curve other than P-256, P-384 or P-521")
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize {
			return errors.New("Ed25519 key of the wrong size")
		}
		return nil
	}
	return fmt.Errorf("key of type %T is not an accepted public key", k.Key)
}
