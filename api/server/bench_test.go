package server

import (
	"context"
	"log/slog"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// BenchmarkInterceptors measures a call that does nothing, behind every
// interceptor (a bearer token verified from the cache, the matrix, the
// rate limit, metrics, the log line to a discarding handler), with
// GOMAXPROCS callers: the ceiling of the API's throughput on this machine,
// the "no-op method" of docs/performance.md.
func BenchmarkInterceptors(b *testing.B) {
	iss := newTestIssuer(b)
	unlimited := map[auth.Role]Limit{}
	for _, r := range append(auth.Roles, "") {
		unlimited[r] = Unlimited
	}
	srv, err := New(Config{
		Authenticator: newTestAuthenticator(b, iss),
		Logger:        slog.New(slog.DiscardHandler),
		Registerer:    prometheus.NewRegistry(),
		RateLimits:    unlimited,
	}, Services{})
	if err != nil {
		b.Fatal(err)
	}
	rec := &recorder{reached: map[string][]*auth.Identity{}, handle: map[string]func(context.Context, any) (any, error){}}
	rec.handle[checkMethod] = func(context.Context, any) (any, error) { return &vigiev1.CheckResponse{}, nil }
	registerGeneric(b, srv.GRPC(), rec)
	l := bufconn.Listen(1 << 20)
	go srv.Serve(l)
	defer srv.Stop(context.Background())
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	tok, err := iss.Mint(auth.TokenRequest{Role: auth.RoleService, Subject: "bench", Organizations: []string{ourOrg}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	req := checkRequest()
	// The recorder keeps every caller: not in the benchmark.
	rec.reached = nil
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var resp vigiev1.CheckResponse
		for pb.Next() {
			if err := conn.Invoke(ctx, checkMethod, req, &resp); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
