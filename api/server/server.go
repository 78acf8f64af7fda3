// Package server is Vigie's gRPC server: the services of api/vigie/v1
// behind the interceptors that every call goes through, over gRPC and
// through the JSON gateway (package api/gateway dials this server), in
// this order:
//
//  1. observe: Prometheus metrics, one log line per call with the
//     attributes gathered along the way (AddLogAttrs), panic recovery,
//     and the one mapping of errors to gRPC statuses ([Status]);
//  2. deadline: a default deadline for calls without one, and a cap;
//  3. authenticate: the caller's [auth.Identity] into the context (a call
//     without credentials goes on as anonymous; bad credentials stop it);
//  4. rate limit: a token bucket per caller (per client address for
//     anonymous calls), by role;
//  5. authorize: the authorization matrix, method × role, and the
//     organisation a service or a DPO acts for;
//  6. size: the request size limit of the method.
//
// The handlers are plugged in as the generated service interfaces
// ([Services]); they find the caller with auth.FromContext, return domain
// errors (mapped by [Status]), and never build gRPC statuses themselves.
//
// The package also serves grpc.health.v1 and server reflection.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// Services are the handlers of the API, one per service of
// api/vigie/v1: each is the generated server interface, and so embeds the
// generated Unimplemented...Server (gRPC requires it, for forward
// compatibility). A nil service is not served: its methods answer
// UNIMPLEMENTED. The interceptors have already authenticated the caller,
// checked the authorization matrix (including the organisation of a
// Check or of a DPO's SearchEvents) and the request size when a handler
// runs. What remains for the handlers:
//
//   - validate the request, and return a *FieldError naming the field at
//     fault (consent's field errors are mapped too);
//   - take the patient from the caller's identity for the `me` methods
//     (auth.FromContext, then Identity.Patient), never from the request;
//   - Access.Check: record before answering; wrap every recording
//     failure in ErrUnavailable (fail closed), and use the caller's
//     Identity.Principal with the request_id as the idempotency key;
//   - Audit.ReviewBreakGlass: a DPO reviews only the events of its
//     organisations (Identity.SpeaksFor on the event's organisation;
//     ErrPermissionDenied otherwise);
//   - page tokens with PageTokens, page sizes with PageSize;
//   - log with AddLogAttrs: pseudonyms, hashes, indices, never an INS, a
//     body or a justification.
type Services struct {
	Access  vigiev1.AccessServiceServer
	Consent vigiev1.ConsentServiceServer
	History vigiev1.HistoryServiceServer
	Admin   vigiev1.AdminServiceServer
	Log     vigiev1.LogServiceServer
	Audit   vigiev1.AuditServiceServer
	// Directory names professionals and establishments.
	Directory vigiev1.DirectoryServiceServer
}

// Config configures a Server. Authenticator is required.
type Config struct {
	// Authenticator authenticates calls.
	Authenticator *auth.Authenticator
	// Logger receives one line per call, and panics, through
	// RedactingHandler. Default slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics (vigie_grpc_*, vigie_auth_*).
	// Default: a registry of the server's own, not exported.
	Registerer prometheus.Registerer
	// RateLimits override DefaultLimits, by role; the empty role is for
	// anonymous calls, limited per client address.
	RateLimits map[auth.Role]Limit
	// MaxRequestBytes is the largest request of a method without a limit
	// of its own (see methodMaxBytes). Default 64 KiB.
	MaxRequestBytes int
	// DefaultTimeout is the deadline of a call that has none. Default 10s.
	DefaultTimeout time.Duration
	// MaxTimeout caps the deadline a client asks for. Default 60s.
	MaxTimeout time.Duration
	// ServerOptions go to grpc.NewServer after the server's own: TLS
	// credentials (grpc.Creds, with ClientAuth VerifyClientCertIfGiven
	// for mTLS services), keepalive parameters. Not interceptors.
	ServerOptions []grpc.ServerOption
	// Now is the clock of durations and rate limits. Default time.Now.
	Now func() time.Time
	// TracerProvider receives one span per call, named by the method,
	// with the attributes rpc.system, rpc.service, rpc.method and
	// rpc.grpc.status_code: nothing of the request, the caller or the
	// answer. Default: OpenTelemetry's global provider, which does
	// nothing unless the command sets one.
	TracerProvider trace.TracerProvider
}

// methodMaxBytes are the request size limits of the methods whose
// requests may exceed Config.MaxRequestBytes.
var methodMaxBytes = map[string]int{
	vigiev1.AdminService_LoadNationalRules_FullMethodName: 1<<20 + 4<<10, // a rules file of at most 1 MiB
	vigiev1.ConsentService_UpdateConsent_FullMethodName:   256 << 10,     // at most 256 directives
}

// maxResponseBytes bounds what the in-process client receives (a page of
// history with its proofs).
const maxResponseBytes = 32 << 20

// Server is the gRPC server.
type Server struct {
	cfg     Config
	grpc    *grpc.Server
	health  *health.Server
	metrics *metrics
	limits  *limiters
	names   []string // of the services served, for health
	tracer  trace.Tracer

	// unary is the one chain of unary interceptors, of the gRPC server
	// and of InProcess calls.
	unary grpc.UnaryServerInterceptor
	// methods are the unary methods registered, by full name, for
	// InProcess calls.
	methods map[string]directMethod

	inproc     *bufconn.Listener
	inprocOnce sync.Once
}

// New returns a server for svc. Serve it on listeners with Serve, and
// through the JSON gateway with DialInProcess.
func New(cfg Config, svc Services) (*Server, error) {
	if cfg.Authenticator == nil {
		return nil, errors.New("server: Config.Authenticator is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Logger = slog.New(RedactingHandler(cfg.Logger.Handler()))
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 64 << 10
	}
	if cfg.DefaultTimeout <= 0 {
		cfg.DefaultTimeout = 10 * time.Second
	}
	if cfg.MaxTimeout <= 0 {
		cfg.MaxTimeout = 60 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = otel.GetTracerProvider()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("server: metrics: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		health:  health.NewServer(),
		metrics: m,
		limits:  newLimiters(cfg.RateLimits, cfg.Now),
		inproc:  bufconn.Listen(256 << 10),
		tracer:  cfg.TracerProvider.Tracer("github.com/vigie-sante/vigie/api/server"),
		methods: map[string]directMethod{},
	}
	s.unary = chainUnary(s.observeUnary, s.deadlineUnary, s.authenticateUnary, s.rateLimitUnary, s.authorizeUnary, s.sizeUnary)
	maxRecv := cfg.MaxRequestBytes
	for _, n := range methodMaxBytes {
		maxRecv = max(maxRecv, n)
	}
	opts := []grpc.ServerOption{
		// Requests beyond the largest limit are refused by gRPC before
		// they are read (RESOURCE_EXHAUSTED); below it, the size
		// interceptor applies each method's limit (INVALID_ARGUMENT).
		grpc.MaxRecvMsgSize(maxRecv + 1<<10),
		grpc.UnaryInterceptor(s.unary),
		grpc.ChainStreamInterceptor(s.observeStream, s.authenticateStream, s.rateLimitStream, s.authorizeStream),
	}
	s.grpc = grpc.NewServer(append(opts, cfg.ServerOptions...)...)

	services := registrar{s}
	register := func(name string, ok bool, reg func()) {
		if ok {
			reg()
			s.names = append(s.names, name)
		}
	}
	register(vigiev1.AccessService_ServiceDesc.ServiceName, svc.Access != nil, func() { vigiev1.RegisterAccessServiceServer(services, svc.Access) })
	register(vigiev1.ConsentService_ServiceDesc.ServiceName, svc.Consent != nil, func() { vigiev1.RegisterConsentServiceServer(services, svc.Consent) })
	register(vigiev1.HistoryService_ServiceDesc.ServiceName, svc.History != nil, func() { vigiev1.RegisterHistoryServiceServer(services, svc.History) })
	register(vigiev1.AdminService_ServiceDesc.ServiceName, svc.Admin != nil, func() { vigiev1.RegisterAdminServiceServer(services, svc.Admin) })
	register(vigiev1.LogService_ServiceDesc.ServiceName, svc.Log != nil, func() { vigiev1.RegisterLogServiceServer(services, svc.Log) })
	register(vigiev1.AuditService_ServiceDesc.ServiceName, svc.Audit != nil, func() { vigiev1.RegisterAuditServiceServer(services, svc.Audit) })
	register(vigiev1.DirectoryService_ServiceDesc.ServiceName, svc.Directory != nil, func() { vigiev1.RegisterDirectoryServiceServer(services, svc.Directory) })
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	s.SetServing(false)
	return s, nil
}

// GRPC returns the underlying gRPC server, to register more services
// (each needs a rule in the authorization matrix, or every call is
// refused).
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Serve serves gRPC on l until Stop. TLS, if any, comes from
// Config.ServerOptions.
func (s *Server) Serve(l net.Listener) error { return s.grpc.Serve(l) }

// SetServing sets the status grpc.health.v1 reports for the server and
// each service served: NOT_SERVING until the caller says it is ready.
func (s *Server) SetServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	for _, n := range s.names {
		s.health.SetServingStatus(n, st)
	}
}

// Stop stops the server: health reports NOT_SERVING, new calls are
// refused and calls in flight finish, until ctx is done; then the
// remaining calls are cancelled.
func (s *Server) Stop(ctx context.Context) {
	s.health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
	}
}

// DialInProcess returns a client connection to the server over an
// in-memory listener: its calls go through every interceptor, like any
// other, and pay gRPC's framing and serialisation (the gateway uses
// InProcess, which does not). The connection carries no TLS, hence no
// client certificate: a call's identity comes from its bearer token
// only. The caller closes the connection.
func (s *Server) DialInProcess() (*grpc.ClientConn, error) {
	s.inprocOnce.Do(func() {
		go func() {
			if err := s.grpc.Serve(gatewayListener{s.inproc}); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				s.cfg.Logger.Error("in-process listener stopped", "err", err)
			}
		}()
	})
	return grpc.NewClient("passthrough:///vigie-in-process",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return s.inproc.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxResponseBytes)),
	)
}

// GatewayAddr is the peer address of the calls of the gateway's
// connections (InProcess, DialInProcess). Only this package creates
// connections with it: its calls
// may carry the HTTP client's address in metadata (ClientAddrMetadata),
// which the server believes only from them.
type GatewayAddr struct{}

func (GatewayAddr) Network() string { return "vigie-gateway" }
func (GatewayAddr) String() string  { return "gateway" }

// ClientAddrMetadata is the metadata key under which the gateway passes
// the address of the HTTP client, for rate limits and logs.
const ClientAddrMetadata = "vigie-client-addr"

type gatewayListener struct{ *bufconn.Listener }

func (l gatewayListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return gatewayConn{c}, nil
}

type gatewayConn struct{ net.Conn }

func (gatewayConn) RemoteAddr() net.Addr { return GatewayAddr{} }

// callState is what the interceptors learn about a call, for its log line
// and its metrics.
type callState struct {
	requestLog
	id     *auth.Identity
	client string
}

type callStateKey struct{}

func stateOf(ctx context.Context) *callState {
	cs, _ := ctx.Value(callStateKey{}).(*callState)
	return cs
}

// errPanic is what a recovered panic becomes.
var errPanic = errors.New("handler panicked")

// observe runs a call and accounts for it.
func (s *Server) observe(ctx context.Context, method string, call func(ctx context.Context) (req, resp any, err error)) error {
	service, name, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	ctx, span := s.tracer.Start(ctx, service+"/"+name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		attribute.String("rpc.system", "grpc"), attribute.String("rpc.service", service), attribute.String("rpc.method", name)))
	defer span.End()
	start := s.cfg.Now()
	cs := &callState{}
	ctx = context.WithValue(ctx, callStateKey{}, cs)
	ctx = context.WithValue(ctx, requestLogKey{}, &cs.requestLog)
	s.metrics.inFlight.Inc()
	defer s.metrics.inFlight.Dec()

	var req, resp any
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				s.metrics.panics.Inc()
				s.cfg.Logger.LogAttrs(ctx, slog.LevelError, "panic", slog.String("method", method),
					slog.String("panic", ErrorText(fmt.Sprint(p))), slog.String("stack", string(debug.Stack())))
				err = errPanic
			}
		}()
		req, resp, err = call(ctx)
	}()

	st, fault := Status(err)
	// The code only: an error's text is for the log, which redacts it.
	span.SetAttributes(attribute.Int("rpc.grpc.status_code", int(st.Code())))
	if fault {
		span.SetStatus(otelcodes.Error, st.Code().String())
	}
	elapsed := s.cfg.Now().Sub(start)
	s.metrics.requests.WithLabelValues(method, st.Code().String()).Inc()
	s.metrics.duration.WithLabelValues(method).Observe(elapsed.Seconds())
	if st.Code() == codes.Unauthenticated {
		reason := "none"
		if e := authError(err); e != nil {
			reason = e.Error()
		}
		s.metrics.authFailed.WithLabelValues(reason).Inc()
	}

	level := slog.LevelInfo
	if fault {
		level = slog.LevelError
	}
	if s.cfg.Logger.Enabled(ctx, level) {
		attrs := make([]slog.Attr, 0, 10)
		attrs = append(attrs,
			slog.String("method", method),
			slog.String("code", st.Code().String()),
			slog.Duration("duration", elapsed),
			slog.Attr{Key: "caller", Value: cs.id.LogValue()},
			slog.String("client", cs.client),
		)
		if m, ok := req.(proto.Message); ok {
			attrs = append(attrs, slog.Int("request_bytes", proto.Size(m)))
		}
		if m, ok := resp.(proto.Message); ok && err == nil {
			attrs = append(attrs, slog.Int("response_bytes", proto.Size(m)))
		}
		attrs = append(attrs, cs.take()...)
		if err != nil {
			// The cause, for operators only, as RedactingHandler logs
			// errors: without what they quote (another package's error
			// may quote its input), nor any INS.
			attrs = append(attrs, slog.Any("error", err))
		}
		s.cfg.Logger.LogAttrs(ctx, level, "grpc call", attrs...)
	}
	if err != nil {
		return st.Err()
	}
	return nil
}

// chainUnary returns the interceptors as one, the first outermost.
func chainUnary(interceptors ...grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return chainFrom(interceptors, 0, info, handler)(ctx, req)
	}
}

func chainFrom(interceptors []grpc.UnaryServerInterceptor, i int, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) grpc.UnaryHandler {
	if i == len(interceptors) {
		return handler
	}
	return func(ctx context.Context, req any) (any, error) {
		return interceptors[i](ctx, req, info, chainFrom(interceptors, i+1, info, handler))
	}
}

func (s *Server) observeUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	var resp any
	err := s.observe(ctx, info.FullMethod, func(ctx context.Context) (any, any, error) {
		var err error
		resp, err = handler(ctx, req)
		return req, resp, err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) observeStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return s.observe(ss.Context(), info.FullMethod, func(ctx context.Context) (any, any, error) {
		return nil, nil, handler(srv, &ctxStream{ss, ctx})
	})
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

// deadlineUnary gives calls without a deadline the default one, and caps
// the others.
func (s *Server) deadlineUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	dl, ok := ctx.Deadline()
	if !ok || time.Until(dl) > s.cfg.MaxTimeout {
		timeout := s.cfg.MaxTimeout
		if !ok {
			timeout = s.cfg.DefaultTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return handler(ctx, req)
}

// authenticate puts the caller's identity into the context. A call
// without credentials goes on without one (authorize refuses it unless the
// method is public).
func (s *Server) authenticate(ctx context.Context) (context.Context, error) {
	// The two values it needs, not a copy of all the metadata.
	p, _ := peer.FromContext(ctx)
	cs := stateOf(ctx)
	cs.client = clientAddr(p, metadata.ValueFromIncomingContext(ctx, ClientAddrMetadata))
	var authorization string
	switch vals := metadata.ValueFromIncomingContext(ctx, "authorization"); len(vals) {
	case 0:
	case 1:
		authorization = vals[0]
		if authorization == "" {
			return nil, fmt.Errorf("%w: empty authorization", auth.ErrMalformed)
		}
	default:
		return nil, fmt.Errorf("%w: several authorization values", auth.ErrMalformed)
	}
	var state *tls.ConnectionState
	if p != nil {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			state = &ti.State
		}
	}
	id, err := s.cfg.Authenticator.Authenticate(ctx, authorization, state)
	if errors.Is(err, auth.ErrNoCredentials) {
		return ctx, nil
	}
	if err != nil {
		return nil, err
	}
	cs.id = id
	return auth.NewContext(ctx, id), nil
}

// clientAddr returns the address of the caller: the peer's host, or for
// the in-process gateway the HTTP client's host that it passes (gateway,
// the values of ClientAddrMetadata).
func clientAddr(p *peer.Peer, gateway []string) string {
	if p == nil || p.Addr == nil {
		return "unknown"
	}
	if _, ok := p.Addr.(GatewayAddr); ok {
		if v := gateway; len(v) == 1 && v[0] != "" {
			return v[0]
		}
		return "gateway"
	}
	a := p.Addr.String()
	if host, _, err := net.SplitHostPort(a); err == nil {
		return host
	}
	return a
}

func (s *Server) authenticateUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *Server) authenticateStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := s.authenticate(ss.Context())
	if err != nil {
		return err
	}
	return handler(srv, &ctxStream{ss, ctx})
}

// rateLimit refuses a call beyond its caller's rate.
func (s *Server) rateLimit(ctx context.Context) error {
	var role auth.Role
	var key string
	if id, ok := auth.FromContext(ctx); ok {
		role, key = id.Role(), id.Key()
	} else if cs := stateOf(ctx); cs != nil {
		key = "addr:" + cs.client
	}
	return s.allow(role, key)
}

func (s *Server) allow(role auth.Role, key string) error {
	if !s.limits.allow(role, key) {
		s.metrics.rateLimited.WithLabelValues(string(role)).Inc()
		return errRateLimited
	}
	return nil
}

func (s *Server) rateLimitUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := s.rateLimit(ctx); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *Server) rateLimitStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := s.rateLimit(ss.Context()); err != nil {
		return err
	}
	return handler(srv, ss)
}

func (s *Server) authorizeUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	id, _ := auth.FromContext(ctx)
	if err := authorize(info.FullMethod, id, req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *Server) authorizeStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	id, _ := auth.FromContext(ss.Context())
	if err := authorize(info.FullMethod, id, nil); err != nil {
		return err
	}
	return handler(srv, ss)
}

// sizeUnary applies the method's request size limit.
func (s *Server) sizeUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	limit, ok := methodMaxBytes[info.FullMethod]
	if !ok {
		limit = s.cfg.MaxRequestBytes
	}
	if m, ok := req.(proto.Message); ok {
		if n := proto.Size(m); n > limit {
			return nil, fmt.Errorf("%w: %d bytes, at most %d for %s", errTooLarge, n, limit, info.FullMethod[strings.LastIndexByte(info.FullMethod, '/')+1:])
		}
	}
	return handler(ctx, req)
}
