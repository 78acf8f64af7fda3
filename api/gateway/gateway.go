// Package gateway is Vigie's HTTP face: the JSON mapping of the gRPC API
// of api/vigie/v1 (grpc-gateway, with the routes of the google.api.http
// annotations), the signed checkpoint at /checkpoint as text/plain, as
// C2SP tlog-checkpoint logs serve it, the API's OpenAPI description at
// /openapi.json (vigiev1.OpenAPI), /healthz, /readyz and /metrics.
//
// The gateway is a gRPC client of the server (Config.Conn, from
// server.Server.InProcess): every HTTP call is a gRPC call that goes
// through all of the server's interceptors, authentication and
// authorization included, called directly in process (no HTTP/2 framing,
// no second serialisation). It never serves a handler itself
// (grpc-gateway's Register...HandlerServer would skip the interceptors),
// and it forwards no request header but Authorization: no header can
// claim an identity. A TLS client certificate presented to the HTTP
// server does not reach the gRPC server either: services that
// authenticate by mTLS call gRPC directly, and HTTP callers use bearer
// tokens.
//
// JSON uses the .proto field names (request_id, leaf_index) and enum
// value names ("DECISION_ALLOW", "PURPOSE_OF_USE_TREAT"); 64-bit integers are strings and bytes
// are base64, as protojson does; unknown fields, unknown query parameters
// and anything after the body's JSON object are refused. Errors are
// google.rpc.Status objects with the HTTP status of their gRPC code (400
// INVALID_ARGUMENT, 401, 403, 404, 409 ABORTED, 429, 503...).
//
// [C2SP tlog-checkpoint]: https://c2sp.org/tlog-checkpoint
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vigie-sante/vigie/api/server"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// Config configures the gateway. Conn is required.
type Config struct {
	// Conn is the connection to the gRPC server that serves every call:
	// server.Server.InProcess (or DialInProcess, over gRPC's transport).
	// The gateway does not close it.
	Conn grpc.ClientConnInterface
	// Ready reports whether the service is ready to serve (/readyz: 200
	// if it returns nil, 503 otherwise). Default: ready.
	Ready func(ctx context.Context) error
	// Gatherer is what /metrics serves. Nil: no /metrics.
	Gatherer prometheus.Gatherer
	// MaxBodyBytes is the largest request body, except for the routes of
	// LargeBodies. Default 128 KiB.
	MaxBodyBytes int64
	// Logger receives the gateway's own errors (calls are logged by the
	// gRPC server). Default slog.Default().
	Logger *slog.Logger
	// Version is the service's version, shown by /healthz. Default
	// "unknown".
	Version string
}

// LargeBodies are the routes whose request bodies may exceed
// Config.MaxBodyBytes, with their own limit: a national rules file (1 MiB,
// base64 in JSON), a consent of up to 256 directives.
var LargeBodies = map[string]int64{
	"POST /v1/rules":     2 << 20,
	"PUT /v1/me/consent": 512 << 10,
}

// New returns the gateway's handler.
func New(ctx context.Context, cfg Config) (http.Handler, error) {
	if cfg.Conn == nil {
		return nil, errors.New("gateway: Config.Conn is required")
	}
	if cfg.Ready == nil {
		cfg.Ready = func(context.Context) error { return nil }
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 128 << 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Version == "" {
		cfg.Version = "unknown"
	}
	jsonpb := &runtime.JSONPb{
		MarshalOptions: protojson.MarshalOptions{
			UseProtoNames: true,
			// Zero values are shown: a leaf index 0 or a consent version 0
			// is an answer, not an absence.
			EmitUnpopulated: true,
		},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}
	mux := runtime.NewServeMux(
		// google.api.HttpBody responses (/checkpoint, the rules' bytes)
		// are written as they are, with their content type.
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{Marshaler: fieldErrors{jsonpb}}),
		// No request header becomes metadata (Authorization always does,
		// as "authorization", and only it).
		runtime.WithIncomingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithOutgoingTrailerMatcher(func(string) (string, bool) { return "", false }),
		// The client's address as this HTTP server saw it, for rate
		// limits: set here, it replaces anything the request says.
		runtime.WithMetadata(func(_ context.Context, r *http.Request) metadata.MD {
			return metadata.Pairs(server.ClientAddrMetadata, clientHost(r))
		}),
		// A parameter that cannot be read is named, its value never
		// quoted.
		runtime.WithErrorHandler(paramErrors),
		runtime.WithDisableHTTPMethodOverride(),
		runtime.WithDisablePathLengthFallback(),
	)
	cc := cfg.Conn
	for _, err := range []error{
		vigiev1.RegisterAccessServiceHandlerClient(ctx, mux, vigiev1.NewAccessServiceClient(cc)),
		vigiev1.RegisterConsentServiceHandlerClient(ctx, mux, vigiev1.NewConsentServiceClient(cc)),
		vigiev1.RegisterHistoryServiceHandlerClient(ctx, mux, vigiev1.NewHistoryServiceClient(cc)),
		vigiev1.RegisterAdminServiceHandlerClient(ctx, mux, vigiev1.NewAdminServiceClient(cc)),
		vigiev1.RegisterLogServiceHandlerClient(ctx, mux, vigiev1.NewLogServiceClient(cc)),
		vigiev1.RegisterAuditServiceHandlerClient(ctx, mux, vigiev1.NewAuditServiceClient(cc)),
		vigiev1.RegisterDirectoryServiceHandlerClient(ctx, mux, vigiev1.NewDirectoryServiceClient(cc)),
	} {
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}

	top := http.NewServeMux()
	top.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "ok\nversion %s\n", cfg.Version)
	})
	top.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := cfg.Ready(r.Context()); err != nil {
			cfg.Logger.Warn("not ready", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready")
			return
		}
		fmt.Fprintln(w, "ready")
	})
	top.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(vigiev1.OpenAPI)
	})
	if cfg.Gatherer != nil {
		top.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	top.Handle("/", limitBody(strictQuery(mux, apiRoutes(), jsonpb), cfg.MaxBodyBytes, jsonpb))
	return secureHeaders(top), nil
}

// clientHost returns the host of the request's peer, as the HTTP server
// saw it (X-Forwarded-For is not believed here: BehindProxies, in front,
// sets the peer from it for trusted proxies only).
func clientHost(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	if r.RemoteAddr != "" {
		return r.RemoteAddr
	}
	return "unknown"
}

// limitBody refuses request bodies beyond the route's limit with
// INVALID_ARGUMENT (HTTP 400).
func limitBody(next http.Handler, def int64, m runtime.Marshaler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := def
		if l, ok := LargeBodies[r.Method+" "+r.URL.Path]; ok {
			limit = l
		}
		if r.ContentLength > limit {
			writeStatus(w, m, status.New(codes.InvalidArgument, fmt.Sprintf("request body too large: at most %d bytes", limit)))
			return
		}
		// A body without a length is cut at the limit: the JSON decoder
		// then fails, and the gateway answers INVALID_ARGUMENT.
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		next.ServeHTTP(w, r)
	})
}

// writeStatus writes a google.rpc.Status as grpc-gateway does.
func writeStatus(w http.ResponseWriter, m runtime.Marshaler, st *status.Status) {
	b, err := m.Marshal(st.Proto())
	if err != nil {
		http.Error(w, st.Message(), runtime.HTTPStatusFromCode(st.Code()))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(runtime.HTTPStatusFromCode(st.Code()))
	w.Write(b)
}

// secureHeaders marks every response as not to be cached (patients'
// data go through here) nor sniffed.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		// No response of the API is a page: nothing in it may run, load
		// or be framed, even if a browser were made to render it.
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		if !strings.HasPrefix(r.URL.Path, "/metrics") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}
