package client

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/vigie-sante/vigie/ledger/tiles"
)

// TestTileLeaves reads ranges of leaves from entry bundles that a server
// makes from a log of 1,000 leaves: across bundles, up to the partial last
// one, clipped to the size, and nothing from the size on.
func TestTileLeaves(t *testing.T) {
	const size = 1000
	leaf := func(i uint64) []byte { return []byte(fmt.Sprintf("leaf %d", i)) }
	var mu sync.Mutex
	var asked []string
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Path)
		mu.Unlock()
		tile, err := tiles.ParsePath(r.URL.Path[1:])
		if err != nil || tile.L != tiles.EntriesLevel {
			http.Error(w, "malformed tile path", http.StatusBadRequest)
			return
		}
		start := uint64(tile.N) * 256
		if start+uint64(tile.W) > size || (tile.W < 256 && start+uint64(tile.W) != size) {
			http.Error(w, "tile not in the log", http.StatusNotFound)
			return
		}
		var entries [][]byte
		for i := range uint64(tile.W) {
			entries = append(entries, leaf(start+i))
		}
		b, _ := tiles.FormatBundle(entries)
		w.Write(b)
	}, "")
	ctx := context.Background()
	for _, tc := range []struct{ start, end, want uint64 }{
		{0, 1, 1},
		{10, 700, 690},
		{255, 257, 2},
		{900, 1000, 100},
		{900, 5000, 100},
		{0, 1000, 1000},
	} {
		got, err := c.TileLeaves(ctx, tc.start, tc.end, size)
		if err != nil {
			t.Fatalf("TileLeaves(%d, %d): %v", tc.start, tc.end, err)
		}
		if uint64(len(got)) != tc.want {
			t.Fatalf("TileLeaves(%d, %d) = %d leaves, want %d", tc.start, tc.end, len(got), tc.want)
		}
		for i, l := range got {
			if !bytes.Equal(l, leaf(tc.start+uint64(i))) {
				t.Fatalf("TileLeaves(%d, %d)[%d] = %q, want leaf %d", tc.start, tc.end, i, l, tc.start+uint64(i))
			}
		}
	}
	asked = nil
	if got, err := c.TileLeaves(ctx, 1000, 2000, size); err != nil || len(got) != 0 || len(asked) != 0 {
		t.Errorf("TileLeaves from the size on = %d leaves, %v, %d calls; want none", len(got), err, len(asked))
	}
	// A size beyond the server's: the last bundle it would need is refused.
	if _, err := c.TileLeaves(ctx, 990, 1001, 1001); err == nil {
		t.Error("TileLeaves accepted a bundle the server refused")
	}
}
