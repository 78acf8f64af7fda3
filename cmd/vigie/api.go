package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigie-sante/vigie/api/apiserver"
	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/api/server"
	"github.com/vigie-sante/vigie/cmd/vigie/internal/node"
)

// apiConfig is what the network service is configured with (flags of
// serve).
type apiConfig struct {
	grpcAddr, httpAddr         string
	tlsCert, tlsKey, clientCA  string
	mtlsServices               string
	oidcIssuer, oidcAudience   string
	oidcJWKS                   string
	oidcClientID, oidcSecret   string // the portal's sign-in
	issuersFile                string
	issuers                    []apiserver.IssuerConfig // read from issuersFile by validate
	publicURL                  string
	erasureDelay               time.Duration
	drainTimeout               time.Duration
	defaultTimeout, maxTimeout time.Duration
	rateLimits                 rateLimits
	alertsWindow, alertsCache  time.Duration
	trustedProxies             prefixes
	adminAddr                  string
	pprof                      bool
}

func (c *apiConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.grpcAddr, "grpc-addr", "127.0.0.1:8081", "address of the gRPC API (host:port; port 0 picks a free one)")
	fs.StringVar(&c.httpAddr, "http-addr", "127.0.0.1:8080", "address of the HTTP API: JSON gateway, portal, /checkpoint, /openapi.json, /healthz, /readyz, /metrics (unless --admin-addr)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "server certificate (PEM) for both APIs; TLS is required to listen beyond loopback")
	fs.StringVar(&c.tlsKey, "tls-key", "", "private key (PEM) of --tls-cert")
	fs.StringVar(&c.clientCA, "tls-client-ca", "", "CA certificates (PEM) of services' client certificates (mTLS on the gRPC API)")
	fs.StringVar(&c.mtlsServices, "mtls-services", "", "JSON file of the services that authenticate with a client certificate: [{\"name\": URI or DNS SAN, \"service\": name, \"organizations\": [FINESS...]}]")
	fs.StringVar(&c.oidcIssuer, "oidc-issuer", "", "OpenID Connect issuer whose tokens are accepted (its JWKS is discovered); empty: the embedded issuer of `vigie token`")
	fs.StringVar(&c.oidcAudience, "oidc-audience", apiserver.EmbeddedAudience, "audience tokens must carry")
	fs.StringVar(&c.oidcJWKS, "oidc-jwks-url", "", "JWKS URL of --oidc-issuer, if it does not publish a discovery document")
	fs.StringVar(&c.oidcClientID, "oidc-client-id", "", "the portal's client ID at --oidc-issuer: enables sign-in with the provider in the portal (needs --public-url)")
	fs.StringVar(&c.issuersFile, "issuers", "", "JSON file of the OpenID Connect issuers whose tokens are accepted when there are several (professionals, patients), each with its audience and the mapping of its claims (docs/identity.md); exclusive with --oidc-issuer")
	fs.StringVar(&c.oidcSecret, "oidc-client-secret-file", "", "file holding the client secret of --oidc-client-id (a confidential client); none: a public client, with PKCE")
	fs.StringVar(&c.publicURL, "public-url", "", "the portal's external base URL (https://host[:port]), for the provider's redirect_uri <public-url>/portal/oidc/callback; http only on loopback")
	fs.DurationVar(&c.erasureDelay, "erasure-delay", 0, "delay between an erasure request and the erasure (0: at once)")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 30*time.Second, "at shutdown, how long calls in flight and the ledger's outbox may take to finish")
	fs.DurationVar(&c.defaultTimeout, "call-timeout", 10*time.Second, "deadline of a call that has none")
	fs.DurationVar(&c.maxTimeout, "max-call-timeout", 60*time.Second, "longest deadline a call may ask for")
	fs.DurationVar(&c.alertsWindow, "alerts-window", 7*24*time.Hour, "misuse alerts (AuditService.ListAlerts): how far back events are read (0: 7 days)")
	fs.DurationVar(&c.alertsCache, "alerts-cache", 30*time.Second, "misuse alerts (AuditService.ListAlerts): how long computed alerts are served again (0: computed for each call)")
	fs.Var(&c.trustedProxies, "trusted-proxies", "addresses (CIDR, comma-separated) of the TLS-terminating proxies in front of the HTTP API: their X-Forwarded-For and X-Forwarded-Proto are believed, and the HTTP API may then listen beyond loopback without --tls-cert")
	fs.StringVar(&c.adminAddr, "admin-addr", "", "address of the admin HTTP server (host:port), for operators only: /metrics, which then leaves the HTTP API, and Go's pprof with --pprof")
	fs.BoolVar(&c.pprof, "pprof", false, "serve Go's profiles (/debug/pprof/) on --admin-addr, which must then be a loopback address")
	fs.Var(&c.rateLimits, "rate-limit", "per-caller rate limits that replace the defaults, as role=calls_per_second:burst (role anonymous for callers without credentials, per client address), comma-separated, role=off for no limit on a role; \"off\" alone for no limit at all: service=5000:10000,patient=10:40")
}

// rateLimits is the value of --rate-limit.
type rateLimits map[auth.Role]server.Limit

func (r *rateLimits) String() string {
	if r == nil || len(*r) == 0 {
		return ""
	}
	var parts []string
	for role, l := range *r {
		name := string(role)
		if name == "" {
			name = "anonymous"
		}
		if math.IsInf(l.PerSecond, 1) {
			parts = append(parts, name+"=off")
		} else {
			parts = append(parts, fmt.Sprintf("%s=%g:%d", name, l.PerSecond, l.Burst))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func (r *rateLimits) Set(s string) error {
	if *r == nil {
		*r = rateLimits{}
	}
	if strings.TrimSpace(s) == "off" {
		for _, role := range append(auth.Roles, "") {
			(*r)[role] = server.Unlimited
		}
		return nil
	}
	for _, item := range strings.Split(s, ",") {
		name, spec, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return fmt.Errorf("%q: want role=calls_per_second:burst", item)
		}
		role := auth.Role(name)
		if name == "anonymous" {
			role = ""
		} else if !role.Valid() {
			return fmt.Errorf("%q: unknown role (%s, anonymous)", name, rolesList())
		}
		if spec == "off" {
			(*r)[role] = server.Unlimited
			continue
		}
		rateStr, burstStr, ok := strings.Cut(spec, ":")
		rate, err1 := strconv.ParseFloat(rateStr, 64)
		burst, err2 := strconv.Atoi(burstStr)
		if !ok || err1 != nil || err2 != nil || rate <= 0 || math.IsInf(rate, 0) || burst < 1 {
			return fmt.Errorf("%q: want role=calls_per_second:burst with both positive, or role=off", item)
		}
		(*r)[role] = server.Limit{PerSecond: rate, Burst: burst}
	}
	return nil
}

// validate checks what only flags say (the service's rules are
// apiserver.Config.Validate, its errors renamed to flags by flagError).
func (c *apiConfig) validate() error {
	switch {
	case c.oidcAudience == "":
		return errors.New("--oidc-audience must not be empty")
	case c.drainTimeout <= 0:
		return errors.New("--drain-timeout must be positive")
	}
	if err := c.readIssuers(); err != nil {
		return err
	}
	cfg := c.config(nil)
	return c.flagError(cfg.Validate())
}

// readIssuers reads --issuers, once.
func (c *apiConfig) readIssuers() error {
	if c.issuersFile == "" || c.issuers != nil {
		return nil
	}
	var err error
	c.issuers, err = readIssuers(c.issuersFile)
	return err
}

// config maps the flags onto the service's configuration.
func (c *apiConfig) config(logger *slog.Logger) apiserver.Config {
	return apiserver.Config{
		GRPCAddr:         c.grpcAddr,
		HTTPAddr:         c.httpAddr,
		AdminAddr:        c.adminAddr,
		Pprof:            c.pprof,
		CertFile:         c.tlsCert,
		KeyFile:          c.tlsKey,
		ClientCAFile:     c.clientCA,
		ServicesFile:     c.mtlsServices,
		Issuer:           c.oidcIssuer,
		Audience:         c.oidcAudience,
		JWKSURL:          c.oidcJWKS,
		ClientID:         c.oidcClientID,
		Issuers:          c.issuers,
		ClientSecretFile: c.oidcSecret,
		PublicURL:        c.publicURL,
		TrustedProxies:   c.trustedProxies,
		RateLimits:       c.rateLimits,
		DefaultTimeout:   c.defaultTimeout,
		MaxTimeout:       c.maxTimeout,
		ErasureDelay:     c.erasureDelay,
		AlertsWindow:     c.alertsWindow,
		AlertsCache:      c.alertsCache,
		Version:          versionString(),
		Logger:           logger,
	}
}

// configFlags names the flag of each field of apiserver.Config that
// an error may name.
var configFlags = map[string]string{
	"GRPCAddr":         "--grpc-addr",
	"HTTPAddr":         "--http-addr",
	"AdminAddr":        "--admin-addr",
	"Pprof":            "--pprof",
	"CertFile":         "--tls-cert, --tls-key", // the pair, when it does not load
	"KeyFile":          "--tls-key",
	"ClientCAFile":     "--tls-client-ca",
	"ServicesFile":     "--mtls-services",
	"Issuer":           "--oidc-issuer",
	"Audience":         "--oidc-audience",
	"JWKSURL":          "--oidc-jwks-url",
	"ClientID":         "--oidc-client-id",
	"Issuers":          "--issuers",
	"ClientSecretFile": "--oidc-client-secret-file",
	"PublicURL":        "--public-url",
	"TrustedProxies":   "--trusted-proxies",
	"ErasureDelay":     "--erasure-delay",
	"AlertsWindow":     "--alerts-window, --alerts-cache",
}

// needsWhy says why a flag needs another, where it is not plain.
var needsWhy = map[string]string{
	"ClientCAFile CertFile": " and --tls-key",
	"ClientID Issuer":       " (the embedded issuer has no sign-in page: paste a token of `vigie token`)",
	"ClientID PublicURL":    " (the provider sends the browser back to <public-url>/portal/oidc/callback)",
	"ClientID HTTPAddr":     " (the portal)",
	"Pprof AdminAddr":       " (profiles are never served on the API's port)",
}

// flagError renames the field an apiserver.FieldError names to its flag.
func (c *apiConfig) flagError(err error) error {
	var fe *apiserver.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	name, ok := configFlags[fe.Field]
	if !ok {
		return err
	}
	if fe.Needs != "" {
		one := func(field string) string { // one flag of the pair
			if field == "CertFile" {
				return "--tls-cert"
			}
			return configFlags[field]
		}
		return fmt.Errorf("%s needs %s%s", one(fe.Field), one(fe.Needs), needsWhy[fe.Field+" "+fe.Needs])
	}
	if fe.Field == "AdminAddr" && c.pprof {
		name = "--admin-addr with --pprof"
	}
	hint := ""
	if errors.Is(fe.Err, apiserver.ErrNeedsTLS) {
		hint = " (--tls-cert, --tls-key)"
		if fe.Field == "HTTPAddr" {
			hint += ", or --trusted-proxies behind a TLS-terminating proxy"
		}
	}
	return fmt.Errorf("%s: %w%s", name, fe.Err, hint)
}

// startAPI starts the service's APIs on the node, as the flags say.
func startAPI(ctx context.Context, c apiConfig, n *node.Node, logger *slog.Logger) (*apiserver.API, error) {
	if err := c.readIssuers(); err != nil {
		return nil, err
	}
	a, err := apiserver.Start(ctx, c.config(logger), apiNode(n))
	return a, c.flagError(err)
}

// apiNode returns the pieces of n the APIs run on.
func apiNode(n *node.Node) apiserver.Node {
	return apiserver.Node{
		Ledger:        n.Ledger,
		Consent:       n.Consent,
		Consents:      n.Consents,
		Directory:     n.Directory,
		Origin:        n.Origin,
		CheckpointKey: n.Keys.CheckpointVerifier,
		ReceiptKey:    n.Keys.ReceiptVerifier,
		KeysDir:       node.KeysDir(n.DataDir),
		NoCreateKeys:  n.Cluster,
		TilesDir:      filepath.Join(n.DataDir, "tiles"),
		Enrolments:    n.Enrolments,
		Ready:         n.Ready,
		Collectors:    n.Collectors,
		Checkpoints:   checkpoints(n),
		WitnessPolicy: witnessPolicy(n),
	}
}

// prefixes is the value of --trusted-proxies.
type prefixes []netip.Prefix

func (p *prefixes) String() string {
	if p == nil {
		return ""
	}
	s := make([]string, len(*p))
	for i, x := range *p {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

// Set reads comma-separated CIDR prefixes (an address alone is a prefix
// of that one address), refusing one that holds every address.
func (p *prefixes) Set(s string) error {
	var out prefixes
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		x, err := netip.ParsePrefix(item)
		if err != nil {
			a, aerr := netip.ParseAddr(item)
			if aerr != nil || a.Zone() != "" {
				return fmt.Errorf("%q: want a CIDR prefix (10.0.0.0/8) or an address", item)
			}
			x = netip.PrefixFrom(a, a.BitLen())
		}
		if x.Bits() == 0 {
			return fmt.Errorf("%q trusts every address: name the proxies' addresses", item)
		}
		out = append(out, x.Masked())
	}
	*p = out
	return nil
}

// checkpoints returns what serves the latest checkpoint: the node's
// cosigned checkpoints with a witness policy, else the ledger's (nil).
// witnessPolicy returns n's witness policy in canonical form, or nil.
func witnessPolicy(n *node.Node) []byte {
	if n.Checkpoints == nil {
		return nil
	}
	return n.Checkpoints.Policy().Format()
}

func checkpoints(n *node.Node) server.CheckpointSource {
	if n.Checkpoints == nil {
		return nil
	}
	return n.Checkpoints
}
