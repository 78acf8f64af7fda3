// Package apiserver runs Vigie's network service on a node: the gRPC API
// (api/server: interceptors, the handlers on the node's ledger and
// consent service), the HTTP gateway and the portal (api/gateway), TLS
// and client certificates, the calls' authentication (an OpenID Connect
// issuer's JWKS, or the embedded issuer of `vigie token`), the metrics
// registry, and the admin server (/metrics, profiles).
//
// It takes a plain [Config] and the node's pieces ([Node]), reads no flag
// or environment variable, and holds the rules on where the service may
// listen and which URLs it trusts ([Config.Validate]); cmd/vigie maps its
// flags onto Config and renders what Start returns.
package apiserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/api/gateway"
	"github.com/vigie-sante/vigie/api/gateway/portal"
	"github.com/vigie-sante/vigie/api/server"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/enrolment"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/keys"
	"github.com/vigie-sante/vigie/ledger/tiles"
)

// Config is what the network service is configured with. Zero durations
// take the defaults of api/server.
type Config struct {
	// GRPCAddr is the address (host:port) of the gRPC API; port 0 picks a
	// free one. Required. Beyond loopback, it needs TLS.
	GRPCAddr string
	// HTTPAddr is the address of the HTTP API (gateway, portal,
	// /checkpoint, /healthz, /readyz, /metrics unless AdminAddr); empty
	// for none. Beyond loopback, it needs TLS or TrustedProxies.
	HTTPAddr string
	// AdminAddr is the address of the admin HTTP server (/metrics, which
	// then leaves the HTTP API, and profiles with Pprof); empty for none.
	AdminAddr string
	// Pprof serves Go's profiles on AdminAddr, which must then be a
	// loopback address.
	Pprof bool

	// CertFile and KeyFile are the server's certificate and key (PEM) for
	// both APIs; empty for none, and then both APIs listen on loopback
	// only.
	CertFile, KeyFile string
	// ClientCAFile holds the CA certificates (PEM) of services' client
	// certificates on the gRPC API; needs CertFile.
	ClientCAFile string
	// ServicesFile is the JSON allow-list of the services that
	// authenticate with a client certificate:
	// [{"name": URI or DNS SAN, "service": name, "organizations": [FINESS...]}].
	// Needs ClientCAFile.
	ServicesFile string

	// Issuer is the OpenID Connect issuer whose tokens are accepted (its
	// JWKS is discovered unless JWKSURL); empty for the embedded issuer
	// (EmbeddedIssuer). A SecureURL.
	Issuer string
	// Audience is what tokens of Issuer must carry. Required with Issuer.
	Audience string
	// JWKSURL is the JWKS of Issuer, if it publishes no discovery
	// document. A SecureURL; needs Issuer.
	JWKSURL string
	// ClientID is the portal's client at Issuer: enables the portal's
	// sign-in. Needs Issuer, PublicURL and HTTPAddr.
	ClientID string
	// Issuers are the OpenID Connect issuers whose tokens are accepted
	// when there are several (professionals, patients), each with its
	// audience and the mapping of its claims; exclusive with Issuer. The
	// portal offers to sign in at each one with a ClientID.
	Issuers []IssuerConfig
	// ClientSecretFile holds the client secret of ClientID (owner-only);
	// empty for a public client, with PKCE.
	ClientSecretFile string
	// PublicURL is the portal's external base URL (auth.CheckBaseURL),
	// for the provider's redirect URI.
	PublicURL string

	// TrustedProxies are the TLS-terminating proxies in front of the HTTP
	// API (gateway.BehindProxies); with them, the HTTP API may listen
	// beyond loopback without CertFile. None may hold every address.
	TrustedProxies []netip.Prefix
	// RateLimits replace api/server's defaults, by role.
	RateLimits map[auth.Role]server.Limit
	// DefaultTimeout is the deadline of a call that has none; MaxTimeout
	// caps the one a call asks for.
	DefaultTimeout, MaxTimeout time.Duration
	// ErasureDelay is how long after a request an erasure runs (0: at
	// once).
	ErasureDelay time.Duration
	// AlertsWindow and AlertsCache configure the misuse alerts
	// (server.AlertsConfig).
	AlertsWindow, AlertsCache time.Duration

	// Version is the build's version, in vigie_build_info and /healthz.
	Version string
	// Logger receives one line per call and the servers' errors. Default
	// slog.Default().
	Logger *slog.Logger
}

// Node is what the service runs on: the pieces of an open node.
type Node struct {
	Ledger  *ledger.Ledger
	Consent *consent.Service
	// Consents is the consent store (consent/consentsql.Store), which
	// also records break-glass reviews.
	Consents interface {
		consent.Store
		server.ReviewRecorder
	}
	// Directory is the public directories (consent/directory.Store), for
	// names beside numbers; nil shows numbers alone.
	Directory server.Directory
	// Origin, CheckpointKey and ReceiptKey are the log's origin and its
	// note verifier keys, published by GET /v1/log/key.
	Origin, CheckpointKey, ReceiptKey string
	// KeysDir is the directory of the node's secret files: the page-token
	// key, the portal's cookie key and the embedded issuer's key are
	// kept there (keys.PageTokenFile...), created at first use unless
	// NoCreateKeys.
	KeysDir string
	// NoCreateKeys refuses to create a missing key file (a node of a
	// cluster: vigie init made them, and every node must hold the same):
	// the start fails naming it.
	NoCreateKeys bool
	// TilesDir, if not empty, is where full tiles and entry bundles are
	// kept once made (tiles.Config.Dir); empty keeps them in memory only.
	TilesDir string
	// Enrolments links the sign-ins of issuers whose patients are
	// enrolled (IssuerConfig.PatientSubject) to patients
	// (consent/enrolment.Store): their tokens' patients, and the portal's
	// enrolment with a one-time code (POST /portal/api/enrol). Nil
	// refuses their patients' tokens (auth.ErrNotEnrolled).
	Enrolments Enrolments
	// Checkpoints serves GET /checkpoint (the checkpoint cosigned by the
	// witnesses, ledger/witness.Checkpoints); nil serves the ledger's
	// latest checkpoint.
	Checkpoints server.CheckpointSource
	// WitnessPolicy is the witness policy of Checkpoints, in canonical
	// form (verify.WitnessPolicy.Format), served at GET /witness-policy
	// for the portal's pages to pin; nil serves none (404).
	WitnessPolicy []byte
	// Ready reports whether the node can serve (/readyz).
	Ready func(context.Context) error
	// Collectors are registered on /metrics beside the ledger's.
	Collectors []prometheus.Collector
}

// Enrolments is what the service needs of consent/enrolment.Store.
type Enrolments interface {
	// Patient finds the patient of a sign-in, or an error wrapping
	// enrolment.ErrNotEnrolled.
	Patient(ctx context.Context, issuer, subject string) (ident.INS, error)
	// Redeem links a sign-in to the patient of a one-time code.
	Redeem(ctx context.Context, code, issuer, subject string) (*ledger.Recorded, error)
	// Issue and Revoke: the operator's side (AdminService).
	server.EnrolmentAdmin
}

// enrolmentLookup is auth.Enrolments on Enrolments: enrolment's
// ErrNotEnrolled becomes auth's.
type enrolmentLookup struct{ e Enrolments }

func (l enrolmentLookup) Patient(ctx context.Context, issuer, subject string) (ident.INS, error) {
	ins, err := l.e.Patient(ctx, issuer, subject)
	if errors.Is(err, enrolment.ErrNotEnrolled) {
		return ins, fmt.Errorf("%w: %w", auth.ErrNotEnrolled, err)
	}
	return ins, err
}

// A FieldError is a Config field that Validate refuses.
type FieldError struct {
	Field string // the field's name in Config, "GRPCAddr"
	Err   error
	// Needs names the field that Field needs and lacks, if that is the
	// problem ("ClientCAFile" needs "CertFile").
	Needs string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// ErrNeedsTLS is the error of a FieldError for an address beyond
// loopback without TLS (wrapping auth.ErrNotLoopback).
var ErrNeedsTLS = fmt.Errorf("%w: listening beyond loopback requires TLS", auth.ErrNotLoopback)

// Validate checks c, returning a *FieldError. Without TLS, both APIs
// listen on loopback only (the HTTP API beyond it behind TrustedProxies,
// which terminate TLS); profiles are served on loopback only; every URL
// that keys, codes or tokens come from or go to is a SecureURL.
func (c *Config) Validate() error {
	bad := func(field, msg string) error { return &FieldError{Field: field, Err: errors.New(msg)} }
	needs := func(field, other string) error {
		return &FieldError{Field: field, Err: errors.New("needs " + other), Needs: other}
	}
	tls := c.CertFile != ""
	switch {
	case c.GRPCAddr == "":
		return bad("GRPCAddr", "required")
	case c.CertFile != "" && c.KeyFile == "":
		return bad("KeyFile", "required with a certificate")
	case c.KeyFile != "" && c.CertFile == "":
		return needs("KeyFile", "CertFile")
	case c.ClientCAFile != "" && !tls:
		return needs("ClientCAFile", "CertFile")
	case c.ServicesFile != "" && c.ClientCAFile == "":
		return needs("ServicesFile", "ClientCAFile")
	case len(c.Issuers) > 0 && (c.Issuer != "" || c.JWKSURL != "" || c.ClientID != ""):
		return bad("Issuers", "exclusive with Issuer, JWKSURL and ClientID (the portal's client is an issuer's ClientID)")
	case c.JWKSURL != "" && c.Issuer == "":
		return needs("JWKSURL", "Issuer")
	case c.Issuer != "" && !auth.SecureURL(c.Issuer):
		return bad("Issuer", "want https URLs (http only on a loopback host): the token signing keys come from there")
	case c.JWKSURL != "" && !auth.SecureURL(c.JWKSURL):
		return bad("JWKSURL", "want https URLs (http only on a loopback host): the token signing keys come from there")
	case c.Issuer != "" && c.Audience == "":
		return bad("Audience", "required with Issuer")
	case c.ClientID != "" && c.Issuer == "":
		return needs("ClientID", "Issuer")
	case c.ClientID != "" && c.PublicURL == "":
		return needs("ClientID", "PublicURL")
	case c.ClientID != "" && c.HTTPAddr == "":
		return needs("ClientID", "HTTPAddr")
	case c.ClientSecretFile != "" && c.portalClientID() == "":
		return needs("ClientSecretFile", "ClientID")
	case c.Pprof && c.AdminAddr == "":
		return needs("Pprof", "AdminAddr")
	case c.ErasureDelay < 0:
		return bad("ErasureDelay", "must not be negative")
	case c.AlertsWindow < 0 || c.AlertsCache < 0:
		return bad("AlertsWindow", "must not be negative")
	}
	if err := c.validateIssuers(); err != nil {
		return err
	}
	for _, p := range c.TrustedProxies {
		if p.Bits() == 0 {
			return bad("TrustedProxies", "a prefix holds every address")
		}
	}
	if c.AdminAddr != "" {
		err := auth.LoopbackAddr(c.AdminAddr)
		// Profiles show the program's insides (and cost CPU to take):
		// reached through an SSH tunnel or kubectl port-forward.
		if err != nil && (c.Pprof || !errors.Is(err, auth.ErrNotLoopback)) {
			return &FieldError{Field: "AdminAddr", Err: err}
		}
	}
	if c.PublicURL != "" {
		if err := auth.CheckBaseURL(c.PublicURL); err != nil {
			return &FieldError{Field: "PublicURL", Err: err}
		}
	}
	if !tls {
		if err := listenRule(c.GRPCAddr); err != nil {
			return &FieldError{Field: "GRPCAddr", Err: err}
		}
		// Behind trusted proxies, they terminate TLS: the HTTP API may
		// serve plain HTTP to them (BehindProxies refuses a request they
		// received over plain HTTP). The gRPC API keeps its rule.
		if c.HTTPAddr != "" && len(c.TrustedProxies) == 0 {
			if err := listenRule(c.HTTPAddr); err != nil {
				return &FieldError{Field: "HTTPAddr", Err: err}
			}
		}
	}
	return nil
}

// listenRule is the rule of an address without TLS.
func listenRule(addr string) error {
	err := auth.LoopbackAddr(addr)
	if errors.Is(err, auth.ErrNotLoopback) {
		return ErrNeedsTLS
	}
	return err
}

// API is the running network service.
type API struct {
	grpc     *server.Server
	grpcAddr net.Addr
	http     *http.Server
	httpAddr net.Addr
	admin    *http.Server
	adminURL string
	tls      bool
	signIn   string
	done     chan error
	logger   *slog.Logger
	tiles    *tiles.Reader
}

// Start validates cfg and starts the APIs on the node. They report
// NOT_SERVING until MarkReady. On error, Start stops what it started.
func Start(ctx context.Context, cfg Config, n Node) (_ *API, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	logger := cfg.Logger
	a := &API{logger: logger, done: make(chan error, 3), tls: cfg.CertFile != ""}
	defer func() {
		if err != nil {
			a.Stop(context.Background())
		}
	}()
	var lookup auth.Enrolments
	if n.Enrolments != nil {
		lookup = enrolmentLookup{n.Enrolments}
	}
	authn, err := authenticator(ctx, cfg, n.KeysDir, !n.NoCreateKeys, lookup)
	if err != nil {
		return nil, err
	}
	pageKey, err := secretFile(filepath.Join(n.KeysDir, keys.PageTokenFile), !n.NoCreateKeys)
	if err != nil {
		return nil, err
	}
	pages, err := server.NewPageTokens(pageKey)
	if err != nil {
		return nil, err
	}
	reg := newRegistry(n, cfg.Version)
	a.tiles = tiles.New(n.Ledger, tiles.Config{Dir: n.TilesDir})
	reg.MustRegister(tiles.NewCollector(a.tiles))

	backend := &server.Backend{
		Consent:      n.Consent,
		Consents:     n.Consents,
		Reviews:      n.Consents,
		Directory:    n.Directory,
		Ledger:       n.Ledger,
		Checkpoints:  n.Checkpoints,
		Pages:        pages,
		Keys:         server.PublicKeys{Origin: n.Origin, CheckpointKey: n.CheckpointKey, ReceiptKey: n.ReceiptKey},
		Alerts:       &server.AlertsConfig{Window: cfg.AlertsWindow, CacheTTL: cfg.AlertsCache},
		ErasureDelay: cfg.ErasureDelay,
		Logger:       logger,
	}
	if n.Enrolments != nil {
		backend.Enrolments = n.Enrolments
	}
	opts := []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 15 * time.Minute, Time: 2 * time.Minute, Timeout: 20 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 30 * time.Second, PermitWithoutStream: true}),
	}
	var httpTLS *tls.Config
	if a.tls {
		grpcTLS, err := serverTLS(cfg.CertFile, cfg.KeyFile, cfg.ClientCAFile)
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
		DefaultTimeout: cfg.DefaultTimeout,
		MaxTimeout:     cfg.MaxTimeout,
		RateLimits:     cfg.RateLimits,
		ServerOptions:  opts,
	}, backend.Services())
	if err != nil {
		return nil, err
	}

	gl, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return nil, fmt.Errorf("gRPC API: %w", err)
	}
	a.grpcAddr = gl.Addr()
	go func() { a.done <- a.grpc.Serve(gl) }()

	// With an admin server, /metrics is served there only.
	var public prometheus.Gatherer = reg
	if cfg.AdminAddr != "" {
		if err := a.startAdmin(cfg, reg); err != nil {
			return nil, err
		}
		public = nil
	}
	if cfg.HTTPAddr != "" {
		if err := a.startHTTP(ctx, cfg, n, authn, public, httpTLS); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// startHTTP serves the JSON gateway and the portal on cfg.HTTPAddr.
func (a *API) startHTTP(ctx context.Context, cfg Config, n Node, authn *auth.Authenticator, metrics prometheus.Gatherer, httpTLS *tls.Config) (err error) {
	ready := n.Ready
	if ready == nil {
		ready = func(context.Context) error { return nil }
	}
	h, err := gateway.New(ctx, gateway.Config{
		Conn:     a.grpc.InProcess(),
		Gatherer: metrics,
		Logger:   a.logger,
		Ready:    ready,
		Version:  cfg.Version,
	})
	if err != nil {
		return err
	}
	oidc, err := portalOIDC(cfg, n.KeysDir, !n.NoCreateKeys)
	if err != nil {
		return err
	}
	var signIn []string
	for _, o := range oidc {
		signIn = append(signIn, o.Issuer)
	}
	a.signIn = strings.Join(signIn, ", ")
	var enrol func(ctx context.Context, authorization, code string) error
	if n.Enrolments != nil {
		enrol = func(ctx context.Context, authorization, code string) error {
			iss, sub, err := authn.ProviderSubject(ctx, authorization)
			if err != nil {
				return err
			}
			_, err = n.Enrolments.Redeem(ctx, code, iss, sub)
			return err
		}
	}
	pages, err := portal.New(portal.Config{
		Authenticate: func(ctx context.Context, authorization string) (*auth.Identity, error) {
			return authn.Authenticate(ctx, authorization, nil)
		},
		OIDC:   oidc,
		Enrol:  enrol,
		Logger: a.logger,
	})
	if err != nil {
		return err
	}
	// The portal's pages beside the JSON gateway; / leads to them.
	mux := http.NewServeMux()
	mux.Handle(portal.Prefix, pages)
	mux.Handle("GET /{$}", http.RedirectHandler(portal.Prefix, http.StatusFound))
	// The log as C2SP tlog-tiles, public and cacheable, beside the
	// gateway's /checkpoint.
	mux.Handle(gateway.TilesPrefix, gateway.Tiles(a.tiles, a.logger))
	if policy := n.WitnessPolicy; policy != nil {
		// The witness policy /checkpoint's cosignatures are for, public:
		// the portal's pages pin it on first use (docs/portal.md).
		mux.HandleFunc("GET /witness-policy", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write(policy)
		})
	}
	transitions, err := n.Ledger.Transitions(ctx)
	if err != nil {
		return fmt.Errorf("transition checkpoints: %w", err)
	}
	mux.Handle(gateway.TransitionsRoute, gateway.TransitionsHandler(transitions))
	mux.Handle("/", h)
	maxTimeout := cfg.MaxTimeout
	if maxTimeout <= 0 {
		maxTimeout = 60 * time.Second // api/server's default
	}
	a.http = &http.Server{
		Handler:           gateway.BehindProxies(mux, cfg.TrustedProxies),
		TLSConfig:         httpTLS,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      maxTimeout + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
	}
	hl, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP API: %w", err)
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
	return nil
}

// MarkReady makes health checks report SERVING.
func (a *API) MarkReady() { a.grpc.SetServing(true) }

// Done receives the error of a listener that stopped serving.
func (a *API) Done() <-chan error { return a.done }

// Stop stops accepting calls and lets those in flight finish, until ctx
// is done. It may be called more than once.
func (a *API) Stop(ctx context.Context) {
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
}

// GRPCAddr is the address the gRPC API listens on.
func (a *API) GRPCAddr() net.Addr { return a.grpcAddr }

// URLs returns the base URLs of the APIs, for humans; httpURL is "" without
// an HTTP API.
func (a *API) URLs() (grpcURL, httpURL string) {
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

// MetricsURL returns where /metrics is served: the admin server's, or
// the HTTP API's; "" if neither runs.
func (a *API) MetricsURL() string {
	if a.adminURL != "" {
		return a.adminURL + "/metrics"
	}
	if _, httpURL := a.URLs(); httpURL != "" {
		return httpURL + "/metrics"
	}
	return ""
}

// SignIn returns the OpenID Connect providers of the portal's sign-in,
// separated by ", "; "" without one.
func (a *API) SignIn() string { return a.signIn }
