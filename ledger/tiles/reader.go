package tiles

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/mod/sumdb/tlog"
	"golang.org/x/sync/singleflight"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// Source is the signed log that tiles are made of. [ledger.Ledger] is one.
// Implementations must be safe for concurrent use.
type Source interface {
	// LatestCheckpoint returns the latest signed checkpoint and its size,
	// or an error wrapping ledger.ErrNotFound before the first.
	LatestCheckpoint(ctx context.Context) ([]byte, uint64, error)
	// Leaves returns the leaf values at indices [start, end), in order,
	// clipped to the size of the latest signed checkpoint (fewer, or
	// none, beyond it). It may clip to a maximum count, of at least 256.
	Leaves(ctx context.Context, start, end uint64) ([][]byte, error)
}

var _ Source = (*ledger.Ledger)(nil)

// ErrNotInLog is returned by [Reader.Read] for a tile that the latest
// signed checkpoint does not cover. Callers test with errors.Is.
var ErrNotInLog = errors.New("tile beyond the latest signed checkpoint")

// Config configures a Reader. The zero value is the default.
type Config struct {
	// CacheTiles is how many full tiles and entry bundles are kept in
	// memory, the least recently read dropped first. Default 4096 (about
	// 35 MiB).
	CacheTiles int
	// MaxReads bounds the reads of the Source running at once (tiles not
	// in the cache, partial tiles); other reads wait for a turn or for
	// their context. Default 4.
	MaxReads int
	// Dir, if not empty, is a directory where full tiles and bundles are
	// also kept, each written once when first made (one file per level):
	// one beyond the memory cache, or after a restart, is read back from
	// there instead of being made again from the Source. Dir holds one log's tiles: the Reader empties it
	// when the Source's log is shorter than the largest checkpoint whose
	// tiles it holds, or of that size with another root (a log restored
	// from an older backup, then grown again). A file that is not a full
	// tile (truncated, say) is made again and rewritten.
	Dir string
}

// Content is a tile's or bundle's bytes and their SHA-256. Data is shared
// with the cache and other readers: it must not be modified.
type Content struct {
	Data   []byte
	Digest [sha256.Size]byte
}

// Stats counts a Reader's work.
type Stats struct {
	// Hits are reads of full tiles served from the cache.
	Hits uint64
	// SourceReads are the calls to Source.Leaves.
	SourceReads uint64
	// Cached is the number of full tiles and bundles in the cache.
	Cached int
	// FileReads are full tiles and bundles read back from Config.Dir;
	// FileErrors the failures to read or write one there (the tile is
	// then made from the Source, or served without being kept).
	FileReads, FileErrors uint64
}

// Reader reads tiles and entry bundles from a Source. Full tiles and
// bundles are immutable: once read, they stay in a bounded cache, and a
// read of one in the cache does no work beyond a map lookup. The roots of
// full tiles of level 1 and above (one hash for 65,536 leaves or more)
// are kept for the Reader's life, so a tile of a high level is made from
// the one below without reading the leaves again. A Reader is safe for
// concurrent use; concurrent reads of one tile share one computation.
type Reader struct {
	src   Source
	cap   int
	reads chan struct{}

	size       atomic.Uint64 // the largest checkpoint size seen
	sizeFlight singleflight.Group
	flight     singleflight.Group

	hits, sourceReads atomic.Uint64

	dir                   string
	dirChecked            atomic.Bool // dir's log was compared with the Source's
	filesMu               sync.Mutex
	files                 map[int]*os.File // of Dir, by level
	fileReads, fileErrors atomic.Uint64

	mu    sync.Mutex
	lru   *list.List // of *cached, most recent first
	cache map[tlog.Tile]*list.Element
	roots map[tlog.Tile]event.Hash
}

type cached struct {
	tile tlog.Tile
	c    Content
}

// New returns a Reader of src's tiles.
func New(src Source, cfg Config) *Reader {
	if cfg.CacheTiles <= 0 {
		cfg.CacheTiles = 4096
	}
	if cfg.MaxReads <= 0 {
		cfg.MaxReads = 4
	}
	return &Reader{
		src:   src,
		cap:   cfg.CacheTiles,
		dir:   cfg.Dir,
		files: map[int]*os.File{},
		reads: make(chan struct{}, cfg.MaxReads),
		lru:   list.New(),
		cache: map[tlog.Tile]*list.Element{},
		roots: map[tlog.Tile]event.Hash{},
	}
}

// Stats returns the counts of the Reader's work so far.
func (r *Reader) Stats() Stats {
	r.mu.Lock()
	cached := r.lru.Len()
	r.mu.Unlock()
	return Stats{Hits: r.hits.Load(), SourceReads: r.sourceReads.Load(), Cached: cached,
		FileReads: r.fileReads.Load(), FileErrors: r.fileErrors.Load()}
}

// Read returns tile t: its hashes, or for L = -1 its entry bundle. It
// fails with ErrNotInLog if the latest signed checkpoint does not cover it,
// with ErrPath if t is not a tile of height 8.
func (r *Reader) Read(ctx context.Context, t tlog.Tile) (Content, error) {
	if t.H != Height || t.L < EntriesLevel || t.L > MaxLevel || t.N < 0 || t.W < 1 || t.W > FullWidth {
		return Content{}, ErrPath
	}
	if Full(t) {
		if c, ok := r.cached(t); ok {
			r.hits.Add(1)
			return c, nil
		}
	}
	if !covers(r.size.Load(), t) {
		size, err := r.refreshSize(ctx)
		if err != nil {
			return Content{}, err
		}
		if !covers(size, t) {
			return Content{}, ErrNotInLog
		}
	}
	return r.read(ctx, t)
}

// covers reports whether a tree of size leaves holds tile t.
func covers(size uint64, t tlog.Tile) bool {
	level := max(t.L, 0)
	avail := size >> (Height * uint(level)) // hashes at t's level; 0 beyond 64 bits
	n := uint64(t.N)
	return n <= avail/FullWidth && n*FullWidth+uint64(t.W) <= avail
}

// refreshSize reads the latest checkpoint's size; concurrent calls share
// one read.
func (r *Reader) refreshSize(ctx context.Context) (uint64, error) {
	v, err, _ := r.sizeFlight.Do("size", func() (any, error) {
		n, size, err := r.src.LatestCheckpoint(ctx)
		if errors.Is(err, ledger.ErrNotFound) {
			return uint64(0), nil
		}
		if err != nil {
			return uint64(0), fmt.Errorf("tiles: latest checkpoint: %w", err)
		}
		if r.dir != "" {
			if err := r.checkDir(size, n); err != nil {
				return uint64(0), err
			}
		}
		for {
			old := r.size.Load()
			if size <= old || r.size.CompareAndSwap(old, size) {
				return max(size, old), nil
			}
		}
	})
	return v.(uint64), err
}

// read returns tile t from the cache or computes it, once for concurrent
// callers. The computation runs under the context of the caller that
// started it: if that caller gives up, the others start it again.
func (r *Reader) read(ctx context.Context, t tlog.Tile) (Content, error) {
	for attempt := 0; ; attempt++ {
		if Full(t) {
			if c, ok := r.cached(t); ok {
				return c, nil
			}
		}
		ch := r.flight.DoChan(Path(t), func() (any, error) {
			return r.compute(ctx, t)
		})
		select {
		case <-ctx.Done():
			return Content{}, ctx.Err()
		case res := <-ch:
			if res.Err == nil {
				return res.Val.(Content), nil
			}
			if attempt < 3 && ctx.Err() == nil && (errors.Is(res.Err, context.Canceled) || errors.Is(res.Err, context.DeadlineExceeded)) {
				continue // another caller's context ended its computation
			}
			return Content{}, res.Err
		}
	}
}

func (r *Reader) compute(ctx context.Context, t tlog.Tile) (Content, error) {
	if Full(t) && r.dirChecked.Load() {
		if c, ok := r.readFile(t); ok {
			r.add(t, c)
			return c, nil
		}
	}
	if t.L <= 0 {
		return r.computeLeaves(ctx, t)
	}
	data := make([]byte, 0, t.W*event.HashSize)
	for k := range t.W {
		below := tlog.Tile{H: Height, L: t.L - 1, N: t.N*FullWidth + int64(k), W: FullWidth}
		h, err := r.fullRoot(ctx, below)
		if err != nil {
			return Content{}, err
		}
		data = append(data, h[:]...)
	}
	c := content(data)
	if Full(t) {
		r.add(t, c)
		r.writeFile(t, c.Data)
	}
	return c, nil
}

// computeLeaves reads the leaves of a level-0 tile or bundle and makes
// both; full ones go to the cache together.
func (r *Reader) computeLeaves(ctx context.Context, t tlog.Tile) (Content, error) {
	start := uint64(t.N) * FullWidth
	select {
	case r.reads <- struct{}{}:
	case <-ctx.Done():
		return Content{}, ctx.Err()
	}
	r.sourceReads.Add(1)
	leaves, err := r.src.Leaves(ctx, start, start+uint64(t.W))
	<-r.reads
	if err != nil {
		return Content{}, fmt.Errorf("tiles: leaves %d to %d: %w", start, start+uint64(t.W), err)
	}
	if len(leaves) < t.W {
		return Content{}, ErrNotInLog
	}
	hashes := make([]byte, 0, t.W*event.HashSize)
	for i, v := range leaves[:t.W] {
		c, err := verify.ParseLeafValue(v)
		if err != nil {
			return Content{}, fmt.Errorf("tiles: leaf %d: %w", start+uint64(i), err)
		}
		h := verify.MerkleLeafHash(c)
		hashes = append(hashes, h[:]...)
	}
	bundle, err := FormatBundle(leaves[:t.W])
	if err != nil {
		return Content{}, fmt.Errorf("tiles: %w", err)
	}
	hc, bc := content(hashes), content(bundle)
	if Full(t) {
		ht, bt := tlog.Tile{H: Height, L: 0, N: t.N, W: FullWidth}, tlog.Tile{H: Height, L: EntriesLevel, N: t.N, W: FullWidth}
		r.add(ht, hc)
		r.add(bt, bc)
		r.writeFile(ht, hc.Data)
		r.writeFile(bt, bc.Data)
	}
	if t.L == EntriesLevel {
		return bc, nil
	}
	return hc, nil
}

// fullRoot returns the Merkle tree hash of full tile t's range of leaves:
// the hash of its 256 hashes as the leaves of a tree of height 8.
func (r *Reader) fullRoot(ctx context.Context, t tlog.Tile) (event.Hash, error) {
	if t.L >= 1 {
		r.mu.Lock()
		h, ok := r.roots[t]
		r.mu.Unlock()
		if ok {
			return h, nil
		}
	}
	c, err := r.read(ctx, t)
	if err != nil {
		return event.Hash{}, err
	}
	var b verify.RootBuilder
	for i := 0; i < len(c.Data); i += event.HashSize {
		b.Append(event.Hash(c.Data[i : i+event.HashSize]))
	}
	h := b.Root()
	if t.L >= 1 {
		r.mu.Lock()
		r.roots[t] = h
		r.mu.Unlock()
	}
	return h, nil
}

func content(data []byte) Content { return Content{Data: data, Digest: sha256.Sum256(data)} }

func (r *Reader) cached(t tlog.Tile) (Content, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.cache[t]
	if !ok {
		return Content{}, false
	}
	r.lru.MoveToFront(e)
	return e.Value.(*cached).c, true
}

func (r *Reader) add(t tlog.Tile, c Content) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.cache[t]; ok {
		r.lru.MoveToFront(e)
		return
	}
	r.cache[t] = r.lru.PushFront(&cached{tile: t, c: c})
	for r.lru.Len() > r.cap {
		last := r.lru.Back()
		r.lru.Remove(last)
		delete(r.cache, last.Value.(*cached).tile)
	}
}
