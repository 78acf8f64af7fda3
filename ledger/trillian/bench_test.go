package trillian_test

// Storage benchmarks: Vigie's SQLite storage beside Trillian's PostgreSQL
// storage (and, for QueueLeaf, Trillian's in-memory storage), in one run.
// make bench runs them with a throwaway PostgreSQL cluster; see
// docs/performance.md for the figures and how to read them.

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tpb "github.com/google/trillian"
	"github.com/google/trillian/client"
	tlog "github.com/google/trillian/log"
	"github.com/google/trillian/quota"
	"github.com/google/trillian/storage"
	"github.com/google/trillian/storage/memory"
	"github.com/google/trillian/storage/testonly"
	"github.com/google/trillian/types"
	"github.com/google/trillian/util/clock"
	"github.com/transparency-dev/merkle/rfc6962"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-sante/vigie/ledger/sqldb/pgtest"
	vtrillian "github.com/vigie-sante/vigie/ledger/trillian"
	"github.com/vigie-sante/vigie/ledger/trillian/sqlite"
)

type benchStorage struct {
	name string
	open func(b *testing.B) (storage.LogStorage, storage.AdminStorage)
}

func benchSQLite(b *testing.B) (storage.LogStorage, storage.AdminStorage) {
	s, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "trillian.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s.LogStorage(), s.AdminStorage()
}

func benchPostgreSQL(b *testing.B) (storage.LogStorage, storage.AdminStorage) {
	p, err := vtrillian.OpenPostgreSQL(context.Background(), pgtest.NewDatabase(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return p.LogStorage(), p.AdminStorage()
}

func benchMemory(b *testing.B) (storage.LogStorage, storage.AdminStorage) {
	ts := memory.NewTreeStorage()
	return memory.NewLogStorage(ts, nil), memory.NewAdminStorage(ts)
}

var (
	durableStorages = []benchStorage{{"sqlite", benchSQLite}, {"postgresql", benchPostgreSQL}}
	allStorages     = append(slices.Clone(durableStorages), benchStorage{"memory", benchMemory})
)

// leafSeq makes leaf values unique across benchmark runs of one process.
var leafSeq atomic.Int64

func newLeaf() *tpb.LogLeaf {
	v := fmt.Appendf(nil, "benchmark leaf %d", leafSeq.Add(1))
	h := rfc6962.DefaultHasher.HashLeaf(v)
	return &tpb.LogLeaf{LeafValue: v, MerkleLeafHash: h, LeafIdentityHash: h}
}

// BenchmarkQueueLeaf measures QueueLeaf over gRPC on loopback TCP, one leaf
// per call, from 64 concurrent clients, with the sequencer running as in
// production (every 100 ms, up to 1000 leaves). One op is one call.
func BenchmarkQueueLeaf(b *testing.B) {
	for _, st := range allStorages {
		b.Run(st.name, func(b *testing.B) {
			ls, as := st.open(b)
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			e, err := vtrillian.Start(context.Background(), vtrillian.Config{LogStorage: ls, AdminStorage: as, Listener: lis, SequencerInterval: 100 * time.Millisecond, BatchSize: 1000})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			tree, err := client.CreateAndInitTree(context.Background(), &tpb.CreateTreeRequest{Tree: proto.Clone(testonly.LogTree).(*tpb.Tree)}, e.Admin, e.Log)
			if err != nil {
				b.Fatal(err)
			}
			var mu sync.Mutex
			var lat []time.Duration
			b.SetParallelism(max(1, 64/runtimeProcs()))
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					t0 := time.Now()
					if _, err := e.Log.QueueLeaf(context.Background(), &tpb.QueueLeafRequest{LogId: tree.TreeId, Leaf: &tpb.LogLeaf{LeafValue: newLeaf().LeafValue}}); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			elapsed := time.Since(start)
			b.StopTimer()
			reportLatency(b, lat, elapsed, "calls/s")
		})
	}
}

// BenchmarkQueueLeavesBatch100 measures the storage's QueueLeaves (LOG
// trees) in batches of 100 leaves from 4 concurrent callers, without gRPC.
// One op is one leaf.
func BenchmarkQueueLeavesBatch100(b *testing.B) {
	benchBatches(b, testonly.LogTree, func(ctx context.Context, ls storage.LogStorage, tree *tpb.Tree, leaves []*tpb.LogLeaf, _ int64) error {
		_, err := ls.QueueLeaves(ctx, tree, leaves, time.Now())
		return err
	})
}

// BenchmarkAddSequencedLeavesBatch100 measures the storage's
// AddSequencedLeaves (PREORDERED_LOG trees) in batches of 100 contiguous
// leaves from 4 concurrent callers, without gRPC. One op is one leaf.
func BenchmarkAddSequencedLeavesBatch100(b *testing.B) {
	benchBatches(b, testonly.PreorderedLogTree, func(ctx context.Context, ls storage.LogStorage, tree *tpb.Tree, leaves []*tpb.LogLeaf, first int64) error {
		for i, l := range leaves {
			l.LeafIndex = first + int64(i)
		}
		res, err := ls.AddSequencedLeaves(ctx, tree, leaves, time.Now())
		if err != nil {
			return err
		}
		for _, r := range res {
			if c := r.GetStatus().GetCode(); c != 0 {
				return fmt.Errorf("leaf status %v", r.GetStatus())
			}
		}
		return nil
	})
}

func benchBatches(b *testing.B, treeTemplate *tpb.Tree, write func(context.Context, storage.LogStorage, *tpb.Tree, []*tpb.LogLeaf, int64) error) {
	const batch, callers = 100, 4
	for _, st := range durableStorages {
		b.Run(st.name, func(b *testing.B) {
			ctx := context.Background()
			ls, as := st.open(b)
			tree := createTree(b, ls, as, treeTemplate)
			var next atomic.Int64
			var mu sync.Mutex
			var lat []time.Duration
			batches := (b.N + batch - 1) / batch
			b.ResetTimer()
			start := time.Now()
			var issued atomic.Int64
			var wg sync.WaitGroup
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var mine []time.Duration
					for issued.Add(1) <= int64(batches) {
						leaves := make([]*tpb.LogLeaf, batch)
						for i := range leaves {
							leaves[i] = newLeaf()
						}
						t0 := time.Now()
						if err := write(ctx, ls, tree, leaves, next.Add(batch)-batch); err != nil {
							b.Error(err)
							return
						}
						mine = append(mine, time.Since(t0))
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(batches*batch)/elapsed.Seconds(), "leaves/s")
			reportPercentiles(b, lat, "batch")
		})
	}
}

// BenchmarkSequencing measures how fast the sequencer integrates leaves
// already stored, in batches of 1000, either every 100 ms (the
// OperationManager's RunInterval: a run longer than that starts the next at
// once) or back to back. One op is one integrated leaf.
func BenchmarkSequencing(b *testing.B) {
	const batch = 1000
	for _, st := range durableStorages {
		for _, tt := range []*tpb.Tree{testonly.LogTree, testonly.PreorderedLogTree} {
			for _, interval := range []time.Duration{100 * time.Millisecond, 0} {
				name := fmt.Sprintf("%s/%s/batch=%d/interval=%v", st.name, tt.TreeType, batch, interval)
				b.Run(name, func(b *testing.B) {
					ctx := context.Background()
					ls, as := st.open(b)
					tree := createTree(b, ls, as, tt)
					// Store b.N leaves first, untimed.
					for done := 0; done < b.N; done += batch {
						leaves := make([]*tpb.LogLeaf, min(batch, b.N-done))
						for i := range leaves {
							leaves[i] = newLeaf()
							leaves[i].LeafIndex = int64(done + i)
						}
						var err error
						if tt.TreeType == tpb.TreeType_LOG {
							_, err = ls.QueueLeaves(ctx, tree, leaves, time.Now().Add(-time.Second))
						} else {
							_, err = ls.AddSequencedLeaves(ctx, tree, leaves, time.Now().Add(-time.Second))
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					b.ResetTimer()
					start := time.Now()
					for integrated := 0; integrated < b.N; {
						runStart := time.Now()
						n, err := tlog.IntegrateBatch(ctx, tree, batch, 0, 0, clock.System, ls, quota.Noop())
						if err != nil {
							b.Fatal(err)
						}
						if n == 0 {
							b.Fatalf("sequencer integrated nothing at %d of %d", integrated, b.N)
						}
						integrated += n
						if rest := interval - time.Since(runStart); rest > 0 && integrated < b.N {
							time.Sleep(rest)
						}
					}
					elapsed := time.Since(start)
					b.StopTimer()
					b.ReportMetric(float64(b.N)/elapsed.Seconds(), "leaves/s")
				})
			}
		}
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

func createTree(b *testing.B, ls storage.LogStorage, as storage.AdminStorage, template *tpb.Tree) *tpb.Tree {
	b.Helper()
	ctx := context.Background()
	tree, err := storage.CreateTree(ctx, as, proto.Clone(template).(*tpb.Tree))
	if err != nil {
		b.Fatal(err)
	}
	root, err := (&types.LogRootV1{RootHash: rfc6962.DefaultHasher.EmptyRoot(), TimestampNanos: uint64(time.Now().Add(-time.Minute).UnixNano())}).MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	if err := ls.ReadWriteTransaction(ctx, tree, func(ctx context.Context, tx storage.LogTreeTX) error {
		return tx.StoreSignedLogRoot(ctx, &tpb.SignedLogRoot{LogRoot: root})
	}); err != nil {
		b.Fatal(err)
	}
	return tree
}

func reportLatency(b *testing.B, lat []time.Duration, elapsed time.Duration, rateUnit string) {
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), rateUnit)
	reportPercentiles(b, lat, "")
}

func reportPercentiles(b *testing.B, lat []time.Duration, prefix string) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	if prefix != "" {
		prefix += "-"
	}
	b.ReportMetric(pct(0.50), prefix+"p50-ms")
	b.ReportMetric(pct(0.99), prefix+"p99-ms")
}
