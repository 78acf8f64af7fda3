package ledger_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
)

// retryCounter counts the transactions a store ran again (serialization
// failures): the calls of f beyond the first of each ReadWrite.
type retryCounter struct {
	ledger.Store
	calls, runs *atomic.Int64
}

func (s retryCounter) ReadWrite(ctx context.Context, f func(ctx context.Context, tx ledger.StoreTx) error) error {
	s.calls.Add(1)
	return s.Store.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error {
		s.runs.Add(1)
		return f(ctx, tx)
	})
}

// BenchmarkIndexAssignment measures Record under concurrent load at
// SERIALIZABLE on one PostgreSQL database, with every node reserving
// leaf indices by compare-and-swap on one row (ReserveIndices): three
// ledgers (three nodes, each its own group commit and pool) against one
// ledger taking the same load (the upper bound of one writer with the
// others forwarding to it, before the forwarding hop:
// BenchmarkForwardingHop). The background work runs, under its leases.
// Each iteration is one Record; the clients (6: a light load, 48: the
// database's saturation) share the nodes, each calling Record in a loop.
// Run with
//
//	scripts/with-pg.sh go test -run '^$' -bench 'IndexAssignment|ForwardingHop' -benchtime 2000x -count 5 ./ledger/
func BenchmarkIndexAssignment(b *testing.B) {
	for _, c := range []struct{ nodes, clients int }{{1, 6}, {3, 6}, {1, 48}, {3, 48}} {
		nodes, clients := c.nodes, c.clients
		b.Run(fmt.Sprintf("nodes=%d/clients=%d", nodes, clients), func(b *testing.B) {
			url := ledgertest.Postgres(b)
			var calls, runs atomic.Int64
			envs := make([]*ledgertest.Env, nodes)
			for i := range nodes {
				opts := ledgertest.Options{
					PostgreSQL: url,
					WrapStore:  func(s ledger.Store) ledger.Store { return retryCounter{Store: s, calls: &calls, runs: &runs} },
				}
				if i > 0 {
					opts.Share = envs[0]
				}
				envs[i] = ledgertest.New(b, opts)
			}
			// Warm up: patients exist, pools are open.
			for i, env := range envs {
				for k := range 20 {
					if _, err := env.Ledger.Record(ctx, access(fmt.Sprintf("p-%d", k), i)); err != nil {
						b.Fatal(err)
					}
				}
			}
			calls.Store(0)
			runs.Store(0)
			lat := make([]time.Duration, b.N)
			var next, failed atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for c := range clients {
				l := envs[c%nodes].Ledger
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						t0 := time.Now()
						_, err := l.Record(ctx, access(fmt.Sprintf("p-%d", i%1000), int(i)))
						lat[i] = time.Since(t0)
						if err != nil {
							failed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(runs.Load()-calls.Load())/float64(b.N), "retries/record")
			b.ReportMetric(float64(failed.Load())/float64(b.N), "failed/record")
		})
	}
}

// BenchmarkForwardingHop measures what forwarding a call to one writer
// would add at least: a unary gRPC round trip (the health check, a few
// bytes each way) over a loopback TCP connection, in process.
func BenchmarkForwardingHop(b *testing.B) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			b.Fatal(err)
		}
	}
}
