package client

import (
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
	"golang.org/x/sync/errgroup"

	"github.com/vigie-sante/vigie/ledger/tiles"
)

// tileFetches is how many entry bundles TileLeaves fetches at once.
const tileFetches = 8

// EntryBundle returns the entries of the log's entry bundle n of width w
// (1 to 256; 256 is the full bundle), GET /tile/entries/<N>[.p/<W>] of
// C2SP tlog-tiles: the leaf values of leaves n·256 to n·256+w-1. A
// partial bundle exists only up to the size of the latest signed
// checkpoint: the caller takes w from a checkpoint.
func (c *Client) EntryBundle(ctx context.Context, n uint64, w int) ([][]byte, error) {
	path := tiles.Path(tlog.Tile{H: tiles.Height, L: tiles.EntriesLevel, N: int64(n), W: w})
	b, err := c.do(ctx, "GET", false, "/"+path, nil, nil)
	if err != nil {
		return nil, err
	}
	entries, err := tiles.ParseBundle(b, w)
	if err != nil {
		return nil, fmt.Errorf("GET /%s: %w", path, err)
	}
	return entries, nil
}

// TileLeaves returns the leaf values at indices [start, end) of the tree
// of size leaves, clipped to size, read from the log's entry bundles
// (several at once) instead of GET /v1/log/leaves: any tlog-tiles server
// or HTTP cache in front of Vigie can serve them. size is a signed
// checkpoint's: it decides the width of the last bundle. The caller
// checks the leaves against the checkpoint's root.
func (c *Client) TileLeaves(ctx context.Context, start, end, size uint64) ([][]byte, error) {
	end = min(end, size)
	if start >= end {
		return nil, nil
	}
	first, last := start/tiles.FullWidth, (end-1)/tiles.FullWidth
	bundles := make([][][]byte, last-first+1)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(tileFetches)
	for n := first; n <= last; n++ {
		g.Go(func() error {
			w := int(min(size-n*tiles.FullWidth, tiles.FullWidth))
			var err error
			bundles[n-first], err = c.EntryBundle(gctx, n, w)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := make([][]byte, 0, end-start)
	for i, b := range bundles {
		base := (first + uint64(i)) * tiles.FullWidth
		lo := max(start, base) - base
		hi := min(end, base+uint64(len(b))) - base
		out = append(out, b[lo:hi]...)
	}
	return out, nil
}
