package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"os"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// benchLeaves is how many leaves the root recomputation benchmark rebuilds
// a root from: at least a million (2^20).
const benchLeaves = 1 << 20

// leafValues returns n distinct leaf values, as GetLeaves serves them.
func leafValues(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		var c event.Hash
		binary.BigEndian.PutUint64(c[:], uint64(i))
		c = sha256.Sum256(c[:])
		out[i] = verify.LeafValue(c)
	}
	return out
}

// BenchmarkRootRecompute measures the rebuilding of a log's root from
// 2^20 leaf values already fetched (AppendLeaves into a RootBuilder, what
// vigie audit does with every leaf), and, in the same run, alternating
// with it, raw SHA-256 of 64-byte inputs on the same core: each leaf costs
// at least two hashes (its leaf hash, and on average one interior node),
// so half the raw hash rate is the limit. Metrics:
//
//	leaves/s        leaves appended per second
//	sha256-64B/s    raw SHA-256 of 64-byte inputs per second
//	%limit          leaves/s as a percentage of sha256-64B/s / 2
//
// Run it on one core: go test -run '^$' -bench RootRecompute -cpu 1 -count 10 ./ledger/audit/
func BenchmarkRootRecompute(b *testing.B) {
	if os.Getenv("VIGIE_BENCH_SUITE") == "go" {
		b.Skip("a whole run per iteration: scripts/bench.sh verify runs it")
	}
	values := leafValues(benchLeaves)
	var in [64]byte
	var sink event.Hash
	var rootTime, hashTime time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Raw SHA-256, as many hashes as two per leaf.
		start := time.Now()
		for j := 0; j < 2*benchLeaves; j++ {
			in[0] = byte(j)
			sink = sha256.Sum256(in[:])
		}
		hashTime += time.Since(start)

		start = time.Now()
		var rb verify.RootBuilder
		if _, err := AppendLeaves(&rb, values, nil, nil); err != nil {
			b.Fatal(err)
		}
		sink = rb.Root()
		rootTime += time.Since(start)
	}
	_ = sink
	leavesPerSec := float64(b.N) * benchLeaves / rootTime.Seconds()
	hashesPerSec := float64(b.N) * 2 * benchLeaves / hashTime.Seconds()
	b.ReportMetric(leavesPerSec, "leaves/s")
	b.ReportMetric(hashesPerSec, "sha256-64B/s")
	b.ReportMetric(100*leavesPerSec/(hashesPerSec/2), "%limit")
}

// TestAppendLeavesMemoryFlat checks that rebuilding a root takes memory
// that does not grow with the log: the allocations of AppendLeaves are
// those of the compact range (at most 64 hashes), the same for a thousand
// leaves and for 2^17.
func TestAppendLeavesMemoryFlat(t *testing.T) {
	for _, n := range []int{1000, 1 << 17} {
		values := leafValues(n)
		allocs := testing.AllocsPerRun(3, func() {
			var rb verify.RootBuilder
			if _, err := AppendLeaves(&rb, values, nil, nil); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 8 {
			t.Errorf("AppendLeaves of %d leaves: %v allocations, want at most 8 (the compact range growing)", n, allocs)
		}
	}
}
