package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/api/gateway"
	"github.com/vigie-sante/vigie/api/gateway/portal"
	"github.com/vigie-sante/vigie/api/server"
	"github.com/vigie-sante/vigie/cmd/vigie/internal/node"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/keys"
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
	fs.StringVar(&c.oidcAudience, "oidc-audience", tokenAudience, "audience tokens must carry")
	fs.StringVar(&c.oidcJWKS, "oidc-jwks-url", "", "JWKS URL of --oidc-issuer, if it does not publish a discovery document")
	fs.StringVar(&c.oidcClientID, "oidc-client-id", "", "the portal's client ID at --oidc-issuer: enables sign-in with the provider in the portal (needs --public-url)")
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

func (c *apiConfig) validate() error {
	switch {
	case (c.tlsCert == "") != (c.tlsKey == ""):
		return errors.New("--tls-cert and --tls-key go together")
	case c.clientCA != "" && c.tlsCert == "":
		return errors.New("--tls-client-ca needs --tls-cert and --tls-key")
	case c.mtlsServices != "" && c.clientCA == "":
		return errors.New("--mtls-services needs --tls-client-ca")
	case c.oidcJWKS != "" && c.oidcIssuer == "":
		return errors.New("--oidc-jwks-url needs --oidc-issuer")
	case c.oidcIssuer != "" && !auth.SecureURL(c.oidcIssuer), c.oidcJWKS != "" && !auth.SecureURL(c.oidcJWKS):
		return errors.New("--oidc-issuer and --oidc-jwks-url: want https URLs (http only on a loopback host): the token signing keys come from there")
	case c.oidcAudience == "":
		return errors.New("--oidc-audience must not be empty")
	case c.oidcClientID != "" && c.oidcIssuer == "":
		return errors.New("--oidc-client-id needs --oidc-issuer (the embedded issuer has no sign-in page: paste a token of `vigie token`)")
	case c.oidcClientID != "" && c.publicURL == "":
		return errors.New("--oidc-client-id needs --public-url (the provider sends the browser back to <public-url>/portal/oidc/callback)")
	case c.oidcClientID != "" && c.httpAddr == "":
		return errors.New("--oidc-client-id needs --http-addr (the portal)")
	case c.oidcSecret != "" && c.oidcClientID == "":
		return errors.New("--oidc-client-secret-file needs --oidc-client-id")
	case c.erasureDelay < 0:
		return errors.New("--erasure-delay must not be negative")
	case c.drainTimeout <= 0:
		return errors.New("--drain-timeout must be positive")
	case c.alertsWindow < 0 || c.alertsCache < 0:
		return errors.New("--alerts-window and --alerts-cache must not be negative")
	case c.grpcAddr == "":
		return errors.New("--grpc-addr is required")
	case c.pprof && c.adminAddr == "":
		return errors.New("--pprof needs --admin-addr (profiles are never served on the API's port)")
	}
	if c.pprof {
		// Profiles show the program's insides (and cost CPU to take):
		// reached through an SSH tunnel or kubectl port-forward.
		if err := loopbackOnly(c.adminAddr); err != nil {
			return fmt.Errorf("--admin-addr with --pprof: %w", err)
		}
	} else if c.adminAddr != "" {
		if _, _, err := net.SplitHostPort(c.adminAddr); err != nil {
			return fmt.Errorf("--admin-addr: want host:port: %w", err)
		}
	}
	if c.publicURL != "" {
		if err := checkPublicURL(c.publicURL); err != nil {
			return fmt.Errorf("--public-url: %w", err)
		}
	}
	if c.tlsCert == "" {
		if err := loopbackOnly(c.grpcAddr); err != nil {
			return fmt.Errorf("--grpc-addr: %w", err)
		}
		// Behind trusted proxies, they terminate TLS: the HTTP API may
		// serve plain HTTP to them (BehindProxies refuses a request they
		// received over plain HTTP). The gRPC API keeps its rule.
		if c.httpAddr != "" && len(c.trustedProxies) == 0 {
			if err := loopbackOnly(c.httpAddr); err != nil {
				return fmt.Errorf("--http-addr: %w, or --trusted-proxies behind a TLS-terminating proxy", err)
			}
		}
	}
	return nil
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

// loopbackOnly refuses an address reachable from other machines: without
// TLS, tokens and health data would cross the network in clear.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port: %w", err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address: listening beyond loopback requires TLS (--tls-cert, --tls-key)", host)
	}
	return nil
}

// checkPublicURL accepts scheme://host[:port] with an optional trailing
// slash: https, or http on a loopback host (a sign-in's cookie and code
// would otherwise cross the network in clear).
func checkPublicURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return err
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("%q: want an https URL", s)
	case u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%q: want scheme://host[:port], without a path, query or user", s)
	case u.Scheme == "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); h != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("%q: http is allowed on loopback only, want https", s)
		}
	}
	return nil
}

// portalOIDC returns the portal's OpenID Connect sign-in configuration,
// or nil without --oidc-client-id.
func portalOIDC(cfg apiConfig, keysDir string) (*portal.OIDCConfig, error) {
	if cfg.oidcClientID == "" {
		return nil, nil
	}
	// A key of its own: the page-token key authenticates something else.
	key, err := keys.SecretFile(filepath.Join(keysDir, "portal-oidc-cookie.key"))
	if err != nil {
		return nil, err
	}
	c := &portal.OIDCConfig{
		Issuer:      cfg.oidcIssuer,
		ClientID:    cfg.oidcClientID,
		RedirectURL: strings.TrimSuffix(cfg.publicURL, "/") + portal.Prefix + "oidc/callback",
		CookieKey:   key,
	}
	if cfg.oidcSecret != "" {
		if err := keys.CheckPrivate(cfg.oidcSecret); err != nil {
			return nil, fmt.Errorf("--oidc-client-secret-file: %w", err)
		}
		b, err := os.ReadFile(cfg.oidcSecret)
		if err != nil {
			return nil, fmt.Errorf("--oidc-client-secret-file: %w", err)
		}
		if c.ClientSecret = strings.TrimSpace(string(b)); c.ClientSecret == "" {
			return nil, fmt.Errorf("--oidc-client-secret-file: %s is empty", cfg.oidcSecret)
		}
	}
	return c, nil
}

// api is the running network service.
type api struct {
	grpc     *server.Server
	grpcAddr net.Addr
	http     *http.Server
	httpAddr net.Addr
	conn     *grpc.ClientConn
	admin    *http.Server // with --admin-addr
	adminURL string
	tls      bool
	signIn   string     // the portal's OpenID Connect provider, if any
	done     chan error // the listeners' errors
	logger   *slog.Logger
}

// startAPI starts the gRPC and HTTP APIs on the node. They report
// NOT_SERVING until markReady.
func startAPI(ctx context.Context, cfg apiConfig, n *node.Node, logger *slog.Logger) (_ *api, err error) {
	a := &api{logger: logger, done: make(chan error, 3), tls: cfg.tlsCert != ""}
	defer func() {
		if err != nil {
			a.stop(context.Background())
		}
	}()
	authn, err := authenticator(ctx, cfg, filepath.Join(n.DataDir, "keys"))
	if err != nil {
		return nil, err
	}
	pageKey, err := keys.SecretFile(filepath.Join(n.DataDir, "keys", "page-token.key"))
	if err != nil {
		return nil, err
	}
	pages, err := server.NewPageTokens(pageKey)
	if err != nil {
		return nil, err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), ledger.NewCollector(n.Ledger), buildInfo())
	reg.MustRegister(n.Collectors...) // the database pools' and Trillian's

	backend := &server.Backend{
		Consent:      n.Consent,
		Consents:     n.Consents,
		Reviews:      n.Consents,
		Ledger:       n.Ledger,
		Pages:        pages,
		Keys:         server.PublicKeys{Origin: n.Origin, CheckpointKey: n.Keys.CheckpointVerifier, ReceiptKey: n.Keys.ReceiptVerifier},
		Alerts:       &server.AlertsConfig{Window: cfg.alertsWindow, CacheTTL: cfg.alertsCache},
		ErasureDelay: cfg.erasureDelay,
		Logger:       logger,
	}
	opts := []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 15 * time.Minute, Time: 2 * time.Minute, Timeout: 20 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 30 * time.Second, PermitWithoutStream: true}),
	}
	var httpTLS *tls.Config
	if a.tls {
		grpcTLS, err := serverTLS(cfg.tlsCert, cfg.tlsKey, cfg.clientCA)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(grpcTLS)))
		// The gateway's calls carry no client certificate: over HTTP,
		// services authenticate with bearer tokens.
		httpTLS = grpcTLS.Clone()
		httpTLS.ClientAuth, httpTLS.ClientCAs = tls.NoClientCert, nil
	}
	a.grpc, err = server.New(server.Config{
		Authenticator:  authn,
		Logger:         logger,
		Registerer:     reg,
		DefaultTimeout: cfg.defaultTimeout,
		MaxTimeout:     cfg.maxTimeout,
		RateLimits:     cfg.rateLimits,
		ServerOptions:  opts,
	}, backend.Services())
	if err != nil {
		return nil, err
	}

	gl, err := net.Listen("tcp", cfg.grpcAddr)
	if err != nil {
		return nil, fmt.Errorf("gRPC API: %w", err)
	}
	a.grpcAddr = gl.Addr()
	go func() { a.done <- a.grpc.Serve(gl) }()

	// With --admin-addr, /metrics is served there only.
	var public prometheus.Gatherer = reg
	if cfg.adminAddr != "" {
		if err := a.startAdmin(cfg, reg); err != nil {
			return nil, err
		}
		public = nil
	}

	if cfg.httpAddr != "" {
		if a.conn, err = a.grpc.DialInProcess(); err != nil {
			return nil, err
		}
		h, err := gateway.New(ctx, gateway.Config{
			Conn:     a.conn,
			Gatherer: public,
			Logger:   logger,
			Ready:    func(ctx context.Context) error { return n.Ready(ctx) },
			Version:  versionString(),
		})
		if err != nil {
			return nil, err
		}
		oidc, err := portalOIDC(cfg, filepath.Join(n.DataDir, "keys"))
		if err != nil {
			return nil, err
		}
		if oidc != nil {
			a.signIn = oidc.Issuer
		}
		pages, err := portal.New(portal.Config{
			Authenticate: func(ctx context.Context, authorization string) (*auth.Identity, error) {
				return authn.Authenticate(ctx, authorization, nil)
			},
			OIDC:   oidc,
			Logger: logger,
		})
		if err != nil {
			return nil, err
		}
		// The portal's pages beside the JSON gateway; / leads to them.
		mux := http.NewServeMux()
		mux.Handle(portal.Prefix, pages)
		mux.Handle("GET /{$}", http.RedirectHandler(portal.Prefix, http.StatusFound))
		mux.Handle("/", h)
		a.http = &http.Server{
			Handler:           gateway.BehindProxies(mux, cfg.trustedProxies),
			TLSConfig:         httpTLS,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      cfg.maxTimeout + 10*time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
		hl, err := net.Listen("tcp", cfg.httpAddr)
		if err != nil {
			return nil, fmt.Errorf("HTTP API: %w", err)
		}
		a.httpAddr = hl.Addr()
		go func() {
			var err error
			if a.tls {
				err = a.http.ServeTLS(hl, "", "")
			} else {
				err = a.http.Serve(hl)
			}
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			a.done <- err
		}()
	}
	return a, nil
}

// startAdmin serves /metrics, and the profiles with --pprof, on
// --admin-addr.
func (a *api) startAdmin(cfg apiConfig, reg prometheus.Gatherer) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if cfg.pprof {
		// Not /debug/pprof/cmdline: the command line may hold a
		// database URL with its password.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("GET /debug/pprof/cmdline", http.NotFound)
	}
	a.admin = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// A CPU profile or a trace lasts ?seconds= (30 by default).
		WriteTimeout: 5 * time.Minute,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
	}
	l, err := net.Listen("tcp", cfg.adminAddr)
	if err != nil {
		return fmt.Errorf("--admin-addr: %w", err)
	}
	a.adminURL = "http://" + l.Addr().String()
	go func() {
		err := a.admin.Serve(l)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		a.done <- err
	}()
	return nil
}

// markReady makes health checks report SERVING.
func (a *api) markReady() { a.grpc.SetServing(true) }

// stop stops accepting calls and lets those in flight finish, until ctx is
// done.
func (a *api) stop(ctx context.Context) {
	if a.http != nil {
		if err := a.http.Shutdown(ctx); err != nil {
			a.http.Close()
		}
	}
	if a.grpc != nil {
		a.grpc.Stop(ctx)
	}
	if a.admin != nil {
		if err := a.admin.Shutdown(ctx); err != nil {
			a.admin.Close()
		}
	}
	if a.conn != nil {
		a.conn.Close()
	}
}

// urls returns the base URLs of the APIs, for humans.
func (a *api) urls() (grpcURL, httpURL string) {
	scheme := "http"
	if a.tls {
		scheme = "https"
	}
	grpcURL = a.grpcAddr.String()
	if a.httpAddr != nil {
		httpURL = scheme + "://" + a.httpAddr.String()
	}
	return grpcURL, httpURL
}

// metricsURL returns where /metrics is served: the admin server's, or
// the HTTP API's; "" if neither runs.
func (a *api) metricsURL() string {
	if a.adminURL != "" {
		return a.adminURL + "/metrics"
	}
	if _, httpURL := a.urls(); httpURL != "" {
		return httpURL + "/metrics"
	}
	return ""
}

// authenticator returns the calls' authenticator: bearer tokens of the
// configured OpenID Connect issuer, or of the embedded one; client
// certificates of the services listed.
func authenticator(ctx context.Context, cfg apiConfig, keysDir string) (*auth.Authenticator, error) {
	vc := auth.VerifierConfig{Audience: cfg.oidcAudience}
	if cfg.oidcIssuer != "" {
		url := cfg.oidcJWKS
		if url == "" {
			dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			d, err := auth.Discover(dctx, nil, cfg.oidcIssuer)
			if err != nil {
				return nil, fmt.Errorf("--oidc-issuer: %w", err)
			}
			url = d.JWKSURI
		}
		keys, err := auth.NewRemoteKeys(auth.RemoteKeysConfig{URL: url})
		if err != nil {
			return nil, err
		}
		vc.Issuer, vc.Keys = cfg.oidcIssuer, keys
	} else {
		iss, err := embeddedTokenIssuer(keysDir)
		if err != nil {
			return nil, err
		}
		vc.Issuer, vc.Audience, vc.Keys = iss.Issuer(), iss.Audience(), iss.Keys()
	}
	v, err := auth.NewVerifier(vc)
	if err != nil {
		return nil, err
	}
	var services []auth.ServiceCert
	if cfg.mtlsServices != "" {
		b, err := os.ReadFile(cfg.mtlsServices)
		if err != nil {
			return nil, fmt.Errorf("--mtls-services: %w", err)
		}
		var list []struct {
			Name          string   `json:"name"`
			Service       string   `json:"service"`
			Organizations []string `json:"organizations"`
		}
		if err := json.Unmarshal(b, &list); err != nil {
			return nil, fmt.Errorf("--mtls-services: %s: %w", cfg.mtlsServices, err)
		}
		for _, s := range list {
			services = append(services, auth.ServiceCert{Name: s.Name, Service: s.Service, Organizations: s.Organizations})
		}
	}
	a, err := auth.NewAuthenticator(auth.AuthenticatorConfig{Verifier: v, Services: services})
	if err != nil {
		return nil, fmt.Errorf("--mtls-services: %w", err)
	}
	return a, nil
}

// serverTLS returns the TLS configuration of the gRPC API: the server's
// certificate and, with clientCA, client certificates verified when given
// (services may authenticate with one, others with tokens).
func serverTLS(certFile, keyFile, clientCA string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert, --tls-key: %w", err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	if clientCA != "" {
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-client-ca: %s holds no PEM certificate", clientCA)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return c, nil
}
