package tiles_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/tiles"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// fakeLog is a Source over leaves in memory, with a signed size that the
// test moves.
type fakeLog struct {
	mu     sync.Mutex
	leaves [][]byte
	size   uint64
	reads  int
}

func newFakeLog(n int) *fakeLog {
	f := &fakeLog{}
	for i := range n {
		c := event.Hash(sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i))))
		f.leaves = append(f.leaves, verify.LeafValue(c))
	}
	f.size = uint64(n)
	return f
}

func (f *fakeLog) setSize(n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.size = n
}

func (f *fakeLog) LatestCheckpoint(context.Context) ([]byte, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.size == 0 {
		return nil, 0, ledger.ErrNotFound
	}
	return []byte("checkpoint"), f.size, nil
}

func (f *fakeLog) Leaves(_ context.Context, start, end uint64) ([][]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	end = min(end, f.size, start+ledger.MaxLeaves)
	if start >= end {
		return nil, nil
	}
	return f.leaves[start:end], nil
}

// hashStorage is the tree's stored hashes as golang.org/x/mod/sumdb/tlog
// computes them from the records: the independent reference.
type hashStorage []tlog.Hash

func (s hashStorage) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		out[i] = s[x]
	}
	return out, nil
}

func storeRecords(t *testing.T, leaves [][]byte) hashStorage {
	t.Helper()
	var s hashStorage
	for i, v := range leaves {
		hs, err := tlog.StoredHashes(int64(i), v, s)
		if err != nil {
			t.Fatal(err)
		}
		s = append(s, hs...)
	}
	return s
}

// tileReader is tlog's TileReader over a Reader, through the C2SP paths:
// tlog names a tile by its checksum-database path, which differs only by
// the height element and "data" for "entries".
type tileReader struct {
	t *testing.T
	r *tiles.Reader
}

func c2spPath(t tlog.Tile) string {
	p := strings.Replace(t.Path(), "tile/8/", "tile/", 1)
	return strings.Replace(p, "tile/data/", "tile/entries/", 1)
}

func (tr tileReader) Height() int { return 8 }

func (tr tileReader) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(ts))
	for i, t := range ts {
		parsed, err := tiles.ParsePath(c2spPath(t))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c2spPath(t), err)
		}
		c, err := tr.r.Read(context.Background(), parsed)
		if err != nil {
			return nil, err
		}
		out[i] = c.Data
	}
	return out, nil
}

func (tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

// TestTilesAgainstTlog compares every tile of a log of 70,000 leaves (the
// example of the C2SP spec: 273 full level-0 tiles, a partial one of width
// 112, a full and a partial level-1 tile, a partial level-2 tile) with the
// tiles golang.org/x/mod/sumdb/tlog computes from the records, and
// rebuilds the root and inclusion proofs through tlog's tile reader.
func TestTilesAgainstTlog(t *testing.T) {
	const n = 70_000
	f := newFakeLog(n)
	storage := storeRecords(t, f.leaves)
	root, err := tlog.TreeHash(n, storage)
	if err != nil {
		t.Fatal(err)
	}
	r := tiles.New(f, tiles.Config{})
	ctx := context.Background()

	want := tlog.NewTiles(tiles.Height, 0, n)
	if len(want) != 273+1+1+1+1 {
		t.Fatalf("tlog.NewTiles gave %d tiles, want 277", len(want))
	}
	for _, tile := range want {
		wantData, err := tlog.ReadTileData(tile, storage)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.Read(ctx, tile)
		if err != nil {
			t.Fatalf("Read(%s): %v", tiles.Path(tile), err)
		}
		if !bytes.Equal(got.Data, wantData) {
			t.Errorf("Read(%s) differs from tlog's tile", tiles.Path(tile))
		}
		if got.Digest != sha256.Sum256(wantData) {
			t.Errorf("Read(%s).Digest is not the SHA-256 of the tile", tiles.Path(tile))
		}
	}

	hr := tlog.TileHashReader(tlog.Tree{N: n, Hash: root}, tileReader{t, r})
	gotRoot, err := tlog.TreeHash(n, hr)
	if err != nil {
		t.Fatalf("TreeHash through tiles: %v", err)
	}
	if gotRoot != root {
		t.Fatalf("root through tiles = %x, want %x", gotRoot, root)
	}
	for _, i := range []int64{0, 255, 256, 65535, 65536, 69_999} {
		proof, err := tlog.ProveRecord(n, i, hr)
		if err != nil {
			t.Fatalf("ProveRecord(%d): %v", i, err)
		}
		if err := tlog.CheckRecord(proof, n, root, i, tlog.RecordHash(f.leaves[i])); err != nil {
			t.Errorf("CheckRecord(%d): %v", i, err)
		}
	}

	// Every entry bundle holds the leaves, in order.
	for b := int64(0); b*256 < n; b++ {
		w := min(n-b*256, 256)
		c, err := r.Read(ctx, tlog.Tile{H: 8, L: tiles.EntriesLevel, N: b, W: int(w)})
		if err != nil {
			t.Fatalf("entries %d: %v", b, err)
		}
		entries, err := tiles.ParseBundle(c.Data, int(w))
		if err != nil {
			t.Fatalf("entries %d: %v", b, err)
		}
		for i, e := range entries {
			if !bytes.Equal(e, f.leaves[b*256+int64(i)]) {
				t.Fatalf("entry %d of bundle %d differs", i, b)
			}
		}
	}
}

// TestPartialThenFull: a partial tile is served for the signed size; the
// full tile only once a checkpoint covers it, and then it begins with the
// partial one's hashes.
func TestPartialThenFull(t *testing.T) {
	f := newFakeLog(600)
	f.setSize(300)
	r := tiles.New(f, tiles.Config{})
	ctx := context.Background()
	full := tlog.Tile{H: 8, L: 0, N: 1, W: 256}
	partial := tlog.Tile{H: 8, L: 0, N: 1, W: 44}
	if _, err := r.Read(ctx, full); !errors.Is(err, tiles.ErrNotInLog) {
		t.Fatalf("Read(full tile beyond size 300) = %v, want ErrNotInLog", err)
	}
	if _, err := r.Read(ctx, tlog.Tile{H: 8, L: 0, N: 1, W: 45}); !errors.Is(err, tiles.ErrNotInLog) {
		t.Fatalf("Read(partial tile wider than size 300) = %v, want ErrNotInLog", err)
	}
	p, err := r.Read(ctx, partial)
	if err != nil {
		t.Fatal(err)
	}
	f.setSize(600)
	c, err := r.Read(ctx, full)
	if err != nil {
		t.Fatalf("Read(full tile) after the checkpoint grew: %v", err)
	}
	if len(c.Data) != 256*32 || !bytes.HasPrefix(c.Data, p.Data) {
		t.Errorf("the full tile does not extend the partial one")
	}
}

// TestNotInLog: tiles beyond the checkpoint, up to the largest index and
// level, are refused without reading a leaf; before the first checkpoint
// there is no tile.
func TestNotInLog(t *testing.T) {
	f := newFakeLog(1000)
	r := tiles.New(f, tiles.Config{})
	ctx := context.Background()
	for _, path := range []string{
		"tile/0/004",
		"tile/0/003.p/233",
		"tile/1/000",
		"tile/1/000.p/4",
		"tile/2/000.p/1",
		"tile/63/000.p/1",
		"tile/63/x009/x223/x372/x036/x854/x775/807",
		"tile/entries/x009/x223/x372/x036/x854/x775/807",
		"tile/entries/004.p/1",
	} {
		tile, err := tiles.ParsePath(path)
		if err != nil {
			t.Fatalf("ParsePath(%q): %v", path, err)
		}
		if _, err := r.Read(ctx, tile); !errors.Is(err, tiles.ErrNotInLog) {
			t.Errorf("Read(%s) = %v, want ErrNotInLog", path, err)
		}
	}
	if f.reads != 0 {
		t.Errorf("%d reads of leaves for tiles beyond the checkpoint, want 0", f.reads)
	}
	empty := tiles.New(newFakeLog(0), tiles.Config{})
	if _, err := empty.Read(ctx, tlog.Tile{H: 8, L: 0, N: 0, W: 1}); !errors.Is(err, tiles.ErrNotInLog) {
		t.Errorf("Read before the first checkpoint = %v, want ErrNotInLog", err)
	}
}

// TestCache: a full tile read again is served from the cache without
// reading the leaves; the cache keeps at most CacheTiles tiles; a level-1
// tile read again after its level-0 tiles left the cache needs no leaf.
func TestCache(t *testing.T) {
	f := newFakeLog(70_000)
	r := tiles.New(f, tiles.Config{CacheTiles: 8})
	ctx := context.Background()
	tile0 := tlog.Tile{H: 8, L: 0, N: 3, W: 256}
	first, err := r.Read(ctx, tile0)
	if err != nil {
		t.Fatal(err)
	}
	reads := r.Stats().SourceReads
	// The bundle was read with the hashes.
	for _, tile := range []tlog.Tile{tile0, {H: 8, L: tiles.EntriesLevel, N: 3, W: 256}} {
		if _, err := r.Read(ctx, tile); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.Stats(); got.SourceReads != reads || got.Hits != 2 {
		t.Errorf("after two cached reads: Stats = %+v, want %d source reads and 2 hits", got, reads)
	}
	// Level 1 needs 256 level-0 tiles: more than the cache holds.
	level1 := tlog.Tile{H: 8, L: 1, N: 0, W: 256}
	if _, err := r.Read(ctx, level1); err != nil {
		t.Fatal(err)
	}
	reads = r.Stats().SourceReads
	level2 := tlog.Tile{H: 8, L: 2, N: 0, W: 1}
	if _, err := r.Read(ctx, level2); err != nil {
		t.Fatal(err)
	}
	if got := r.Stats().SourceReads; got != reads {
		t.Errorf("the level-2 tile read %d more leaf ranges, want 0 (level-1 roots are kept)", got-reads)
	}
	// tile0 left the cache: read again, it is the same.
	again, err := r.Read(ctx, tile0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Stats().SourceReads == reads {
		t.Errorf("a tile evicted from a cache of 8 was served without reading leaves")
	}
	if !bytes.Equal(first.Data, again.Data) {
		t.Errorf("tile %s changed", tiles.Path(tile0))
	}
	if got := r.Stats().Cached; got != 8 {
		t.Errorf("Stats().Cached = %d, want 8 (the cache's size)", got)
	}
	if problems, err := testutil.CollectAndLint(tiles.NewCollector(r)); err != nil || len(problems) > 0 {
		t.Errorf("the collector's metrics: %v %v", err, problems)
	}
	want := "# HELP vigie_tiles_cached Full tiles and entry bundles in the cache.\n# TYPE vigie_tiles_cached gauge\nvigie_tiles_cached 8\n"
	if err := testutil.CollectAndCompare(tiles.NewCollector(r), strings.NewReader(want), "vigie_tiles_cached"); err != nil {
		t.Error(err)
	}
}

// TestConcurrentReads: concurrent readers of the same tiles get the same
// bytes (run with -race).
func TestConcurrentReads(t *testing.T) {
	f := newFakeLog(66_000)
	r := tiles.New(f, tiles.Config{CacheTiles: 64, MaxReads: 2})
	ctx := context.Background()
	want, err := tlog.ReadTileData(tlog.Tile{H: 8, L: 1, N: 0, W: 256}, storeRecords(t, f.leaves))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			c, err := r.Read(ctx, tlog.Tile{H: 8, L: 1, N: 0, W: 256})
			if err == nil && !bytes.Equal(c.Data, want) {
				err = errors.New("wrong level-1 tile")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// slowLog is a Source whose Leaves wait for the test, counting the calls
// running at once.
type slowLog struct {
	*fakeLog
	release       chan struct{}
	running, most atomic.Int32
	started       chan struct{}
}

func (s *slowLog) Leaves(ctx context.Context, start, end uint64) ([][]byte, error) {
	n := s.running.Add(1)
	defer s.running.Add(-1)
	for {
		m := s.most.Load()
		if n <= m || s.most.CompareAndSwap(m, n) {
			break
		}
	}
	s.started <- struct{}{}
	<-s.release
	return s.fakeLog.Leaves(ctx, start, end)
}

// TestReadsBounded: however many tiles not in the cache are asked at
// once, at most MaxReads reads of the source run at a time; a caller that
// gives up while waiting for its turn leaves at once.
func TestReadsBounded(t *testing.T) {
	s := &slowLog{fakeLog: newFakeLog(20 * 256), release: make(chan struct{}), started: make(chan struct{}, 20)}
	r := tiles.New(s, tiles.Config{MaxReads: 3})
	ctx := context.Background()
	var wg sync.WaitGroup
	for n := range 20 {
		wg.Go(func() {
			if _, err := r.Read(ctx, tlog.Tile{H: 8, L: 0, N: int64(n), W: 256}); err != nil {
				t.Error(err)
			}
		})
	}
	for range 3 {
		<-s.started
	}
	// Three reads run and hold their turns; a fourth caller gives up.
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() {
		_, err := r.Read(cctx, tlog.Tile{H: 8, L: -1, N: 19, W: 255})
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Read with a cancelled context = %v, want context.Canceled", err)
	}
	close(s.release)
	wg.Wait()
	if most := s.most.Load(); most != 3 {
		t.Errorf("at most %d reads ran at once, want 3", most)
	}
}

// notedLog is a fakeLog whose checkpoint note carries a root.
type notedLog struct {
	*fakeLog
	root event.Hash
}

func (l notedLog) LatestCheckpoint(ctx context.Context) ([]byte, uint64, error) {
	_, size, err := l.fakeLog.LatestCheckpoint(ctx)
	if err != nil {
		return nil, 0, err
	}
	text, err := verify.FormatCheckpoint(verify.Checkpoint{Origin: "tiles.test", Size: size, Hash: l.root})
	if err != nil {
		return nil, 0, err
	}
	return append(text, "\n— tiles.test AAAA\n"...), size, nil
}

// TestDir: full tiles made once are kept in Config.Dir and read back by
// a new Reader (a restart) without reading the Source; a damaged file is
// made again; a log behind the tiles kept, or of their size with another
// root, empties the directory.
func TestDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	f := newFakeLog(70_000)
	src := notedLog{fakeLog: f, root: event.Hash{1}}
	want := map[tlog.Tile][]byte{}
	full := []tlog.Tile{{H: 8, L: 0, N: 3, W: 256}, {H: 8, L: tiles.EntriesLevel, N: 5, W: 256}, {H: 8, L: 1, N: 0, W: 256}}
	first := tiles.New(src, tiles.Config{Dir: dir})
	for _, tile := range full {
		c, err := first.Read(ctx, tile)
		if err != nil {
			t.Fatal(err)
		}
		want[tile] = c.Data
	}

	second := tiles.New(src, tiles.Config{Dir: dir})
	for _, tile := range full {
		c, err := second.Read(ctx, tile)
		if err != nil || !bytes.Equal(c.Data, want[tile]) {
			t.Fatalf("Read(%s) after a restart = %d bytes, %v; want the %d bytes made first", tiles.Path(tile), len(c.Data), err, len(want[tile]))
		}
	}
	if got := second.Stats(); got.SourceReads != 0 || got.FileReads != uint64(len(full)) || got.FileErrors != 0 {
		t.Errorf("after a restart: Stats = %+v, want no source read and %d file reads", got, len(full))
	}
	// A partial tile is never kept: it is made from the Source.
	if _, err := second.Read(ctx, tlog.Tile{H: 8, L: 0, N: 273, W: 112}); err != nil {
		t.Fatal(err)
	}
	if got := second.Stats().SourceReads; got != 1 {
		t.Errorf("the partial tile: %d source reads, want 1", got)
	}

	// A bundle torn (zeros from a crash during its write) is made again,
	// and rewritten.
	path := filepath.Join(dir, "entries")
	kept, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	torn := bytes.Clone(kept)
	at := int(full[1].N) * len(want[full[1]])
	clear(torn[at+4096 : at+len(want[full[1]])])
	if err := os.WriteFile(path, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	third := tiles.New(src, tiles.Config{Dir: dir})
	if c, err := third.Read(ctx, full[1]); err != nil || !bytes.Equal(c.Data, want[full[1]]) {
		t.Fatalf("Read of a torn bundle = %d bytes, %v; want it made again", len(c.Data), err)
	}
	if got := third.Stats(); got.SourceReads != 1 || got.FileReads != 0 {
		t.Errorf("a torn bundle: Stats = %+v, want it made from the Source", got)
	}
	if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, kept) {
		t.Errorf("the torn bundle was not rewritten: %d bytes, %v", len(b), err)
	}

	for _, tc := range []struct {
		name string
		src  tiles.Source
	}{
		{"same size, another root", notedLog{fakeLog: f, root: event.Hash{2}}},
		{"behind", notedLog{fakeLog: newFakeLog(1000), root: event.Hash{1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Tiles kept under the first log.
			if _, err := tiles.New(src, tiles.Config{Dir: dir}).Read(ctx, full[0]); err != nil {
				t.Fatal(err)
			}
			r := tiles.New(tc.src, tiles.Config{Dir: dir})
			if _, err := r.Read(ctx, tlog.Tile{H: 8, L: 0, N: 0, W: 256}); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, "level-0")); err != nil || len(b) > tiles.FullWidth*event.HashSize {
				t.Errorf("the tiles of another history are still kept: %d bytes of level-0 tiles, %v", len(b), err)
			}
			if got := r.Stats().FileReads; got != 0 {
				t.Errorf("%d file reads, want 0", got)
			}
		})
	}
}
