package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/api/gateway"
	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/tiles"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// bigLog is a generated log of n leaves (leaf i commits to i, in its first
// 8 bytes), with a checkpoint signed over its root.
type bigLog struct {
	n        uint64
	note     []byte
	verifier note.Verifier
}

func (l *bigLog) commitment(i uint64) event.Hash {
	var c event.Hash
	binary.BigEndian.PutUint64(c[:], i)
	c[31] = 0x5a
	return c
}

func (l *bigLog) LatestCheckpoint(context.Context) ([]byte, uint64, error) {
	return l.note, l.n, nil
}

func (l *bigLog) Leaves(_ context.Context, start, end uint64) ([][]byte, error) {
	end = min(end, l.n, start+1000)
	var out [][]byte
	for i := start; i < end; i++ {
		out = append(out, verify.LeafValue(l.commitment(i)))
	}
	return out, nil
}

var bigLogs sync.Map // of size -> *bigLog

// newBigLog returns the log of n leaves, made once per process.
func newBigLog(tb testing.TB, n uint64) *bigLog {
	if v, ok := bigLogs.Load(n); ok {
		return v.(*bigLog)
	}
	l := &bigLog{n: n}
	var rb verify.RootBuilder
	for i := range n {
		rb.Append(verify.MerkleLeafHash(l.commitment(i)))
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, "vigie.example/bench-tiles")
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		tb.Fatal(err)
	}
	if l.verifier, err = note.NewVerifier(vkey); err != nil {
		tb.Fatal(err)
	}
	l.note, err = verify.SignCheckpoint(verify.Checkpoint{Origin: "vigie.example/bench-tiles", Size: n, Hash: rb.Root()}, signer)
	if err != nil {
		tb.Fatal(err)
	}
	bigLogs.Store(n, l)
	return l
}

// BenchmarkAuditTiles measures the whole-log audit of vigie audit --log-only
// --tiles (its source, audit.Follow, its batch) over HTTP on loopback,
// against the gateway's tile handler over a tiles.Reader, on a generated
// log of VIGIE_BENCH_TILES_LEAVES leaves (default 4,000,000): every entry
// bundle fetched, every leaf parsed and hashed, the signed root rebuilt.
// "cold" is the first audit of a new Reader (every tile made from its
// source, as after a restart with nothing stored), "warm" the next ones.
//
//	go test -run '^$' -bench AuditTiles -benchtime 3x -count 5 ./cmd/vigie/
func BenchmarkAuditTiles(b *testing.B) {
	n := uint64(4_000_000)
	if s := os.Getenv("VIGIE_BENCH_TILES_LEAVES"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		n = v
	}
	l := newBigLog(b, n)
	audit1 := func(b *testing.B, base string) time.Duration {
		cl, err := (&remoteConfig{server: base}).client()
		if err != nil {
			b.Fatal(err)
		}
		src := &tileSource{searchSource: searchSource{cl}}
		start := time.Now()
		fr, err := audit.Follow(context.Background(), src, audit.FollowOptions{Keys: audit.Keys{Checkpoint: l.verifier}, Batch: defaultTileBatch})
		took := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if len(fr.Findings) != 0 || fr.Fetched != n {
			b.Fatalf("audit: %d leaves, findings %+v", fr.Fetched, fr.Findings)
		}
		return took
	}
	serve := func(dir string) *httptest.Server {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /checkpoint", func(w http.ResponseWriter, _ *http.Request) { w.Write(l.note) })
		mux.Handle(gateway.TilesPrefix, gateway.Tiles(tiles.New(l, tiles.Config{Dir: dir}), nil))
		return httptest.NewServer(mux)
	}
	// leaves/s is the wall-clock rate; cpu-µs/leaf the process's CPU
	// time (client and server, user and system) per leaf, which says what
	// the rate is on an idle machine: 2 cores / that cost.
	var cpu0 time.Duration
	report := func(b *testing.B, took time.Duration) {
		b.ReportMetric(float64(n)*float64(b.N)/took.Seconds(), "leaves/s")
		b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(n*uint64(b.N)), "cpu-µs/leaf")
		b.ReportMetric(0, "ns/op")
	}
	// Every tile made from the source, as on the first read ever.
	b.Run("cold", func(b *testing.B) {
		var took time.Duration
		cpu0 = cpuTime(b)
		for b.Loop() {
			srv := serve(b.TempDir())
			took += audit1(b, srv.URL)
			srv.Close()
		}
		report(b, took)
	})
	// A new Reader over the tiles kept by an earlier one: a restarted
	// server, or a log beyond the memory cache.
	b.Run("stored", func(b *testing.B) {
		dir := b.TempDir()
		srv := serve(dir)
		audit1(b, srv.URL)
		srv.Close()
		var took time.Duration
		cpu0 = cpuTime(b)
		for b.Loop() {
			srv := serve(dir)
			took += audit1(b, srv.URL)
			srv.Close()
		}
		report(b, took)
	})
}
