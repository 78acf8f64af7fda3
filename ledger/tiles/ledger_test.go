package tiles_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
	"golang.org/x/sync/errgroup"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
	"github.com/vigie-sante/vigie/ledger/tiles"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// TestLedgerTiles reads a real ledger's tiles with tlog's client, on
// SQLite and PostgreSQL: they rebuild the root of the signed checkpoint
// and prove each recorded event's inclusion. After a patient's erasure, a
// new Reader (nothing cached) serves the same bytes for every tile and
// bundle.
func TestLedgerTiles(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) { testLedgerTiles(t, ledgertest.Options{}) })
	t.Run("PostgreSQL", func(t *testing.T) { testLedgerTiles(t, ledgertest.Options{PostgreSQL: ledgertest.Postgres(t)}) })
}

func testLedgerTiles(t *testing.T, opts ledgertest.Options) {
	env := ledgertest.New(t, opts)
	ctx := context.Background()
	const n = 300
	recorded := make([]*ledger.Recorded, n)
	var g errgroup.Group
	g.SetLimit(16)
	for i := range n {
		g.Go(func() error {
			var err error
			recorded[i], err = env.Ledger.Record(ctx, ledger.Entry{
				Kind:    event.KindAccess,
				Patient: ledgertest.Patient(fmt.Sprint("patient-", i%3)),
				Service: "hospital-his",
				Payload: json.RawMessage(fmt.Sprintf(`{"decision":"allow","n":%d}`, i)),
				Actor:   "10000000001",
			})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := env.Ledger.WaitCheckpoint(ctx, n-1); err != nil {
		t.Fatal(err)
	}
	note, size, err := env.Ledger.LatestCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := verify.OpenCheckpoint(note, env.CheckpointKey)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != size || size < n {
		t.Fatalf("checkpoint of size %d (%d), want %d", cp.Size, size, n)
	}

	r := tiles.New(env.Ledger, tiles.Config{})
	hr := tlog.TileHashReader(tlog.Tree{N: int64(cp.Size), Hash: tlog.Hash(cp.Hash)}, tileReader{t, r})
	root, err := tlog.TreeHash(int64(cp.Size), hr)
	if err != nil {
		t.Fatalf("TreeHash through tiles: %v", err)
	}
	if root != tlog.Hash(cp.Hash) {
		t.Fatalf("root through tiles = %x, want the checkpoint's %x", root, cp.Hash)
	}
	for _, rec := range recorded {
		proof, err := tlog.ProveRecord(int64(cp.Size), int64(rec.Index), hr)
		if err != nil {
			t.Fatalf("ProveRecord(%d): %v", rec.Index, err)
		}
		if err := tlog.CheckRecord(proof, int64(cp.Size), root, int64(rec.Index), tlog.RecordHash(verify.LeafValue(rec.Commitment))); err != nil {
			t.Errorf("event %d: %v", rec.Index, err)
		}
	}

	all := append(tlog.NewTiles(tiles.Height, 0, int64(cp.Size)), entryBundles(cp.Size)...)
	before := readAll(t, r, all)
	if _, err := env.Ledger.Erase(ctx, ledgertest.Patient("patient-1")); err != nil {
		t.Fatal(err)
	}
	after := readAll(t, tiles.New(env.Ledger, tiles.Config{}), all)
	for i, tile := range all {
		if !bytes.Equal(before[i], after[i]) {
			t.Errorf("%s changed after an erasure", tiles.Path(tile))
		}
	}
}

func entryBundles(size uint64) []tlog.Tile {
	var out []tlog.Tile
	for n := uint64(0); n*256 < size; n++ {
		out = append(out, tlog.Tile{H: 8, L: tiles.EntriesLevel, N: int64(n), W: int(min(size-n*256, 256))})
	}
	return out
}

func readAll(t *testing.T, r *tiles.Reader, ts []tlog.Tile) [][]byte {
	t.Helper()
	out := make([][]byte, len(ts))
	for i, tile := range ts {
		c, err := r.Read(context.Background(), tile)
		if err != nil {
			t.Fatalf("Read(%s): %v", tiles.Path(tile), err)
		}
		out[i] = c.Data
	}
	return out
}

// BenchmarkLedgerRead reads full level-0 tiles of a real ledger (SQLite):
// from the cache, and made again from the store on every read (a cache of
// one tile: the bundle made with it evicts it).
//
//	go test -run NONE -bench LedgerRead -count 5 ./ledger/tiles
func BenchmarkLedgerRead(b *testing.B) {
	env := ledgertest.New(b, ledgertest.Options{})
	ctx := context.Background()
	const n = 8 * 256
	var g errgroup.Group
	g.SetLimit(32)
	for i := range n {
		g.Go(func() error {
			_, err := env.Ledger.Record(ctx, ledger.Entry{
				Kind: event.KindAccess, Patient: ledgertest.Patient(fmt.Sprint("patient-", i%5)), Service: "hospital-his",
				Payload: json.RawMessage(`{"decision":"allow"}`), Actor: "10000000001",
			})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	if err := env.Ledger.WaitCheckpoint(ctx, n-1); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		cache int
	}{{"cached", 0}, {"from-store", 1}} {
		b.Run(bc.name, func(b *testing.B) {
			r := tiles.New(env.Ledger, tiles.Config{CacheTiles: bc.cache})
			i := 0
			for b.Loop() {
				if _, err := r.Read(ctx, tlog.Tile{H: 8, L: 0, N: int64(i % 8), W: 256}); err != nil {
					b.Fatal(err)
				}
				i++
			}
			if bc.cache == 1 && r.Stats().SourceReads < uint64(b.N) {
				b.Fatalf("%d reads of the store for %d tiles: the cache served some", r.Stats().SourceReads, b.N)
			}
		})
	}
}
