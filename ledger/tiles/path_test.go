package tiles_test

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/vigie-sante/vigie/ledger/tiles"
)

func TestParsePath(t *testing.T) {
	for _, tc := range []struct {
		path string
		want tlog.Tile
	}{
		{"tile/0/000", tlog.Tile{H: 8, L: 0, N: 0, W: 256}},
		{"tile/0/067", tlog.Tile{H: 8, L: 0, N: 67, W: 256}},
		{"tile/0/x001/x234/067", tlog.Tile{H: 8, L: 0, N: 1234067, W: 256}},
		{"tile/1/x001/000.p/8", tlog.Tile{H: 8, L: 1, N: 1000, W: 8}},
		{"tile/63/000.p/1", tlog.Tile{H: 8, L: 63, N: 0, W: 1}},
		{"tile/entries/x001/x234/067.p/255", tlog.Tile{H: 8, L: -1, N: 1234067, W: 255}},
		{"tile/entries/000", tlog.Tile{H: 8, L: -1, N: 0, W: 256}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			got, err := tiles.ParsePath(tc.path)
			if err != nil || got != tc.want {
				t.Fatalf("ParsePath(%q) = %+v, %v, want %+v", tc.path, got, err, tc.want)
			}
			if p := tiles.Path(got); p != tc.path {
				t.Errorf("Path(%+v) = %q, want %q", got, p, tc.path)
			}
		})
	}
	for _, path := range []string{
		"",
		"tile/",
		"tile/0",
		"tile/0/",
		"/tile/0/000",
		"tile/8/0/000",     // the checksum database's form
		"tile/data/000",    // ditto
		"tile/00/000",      // leading zero
		"tile/+1/000",      // sign
		"tile/64/000",      // level
		"tile/-1/000",      // level
		"tile/0/67",        // not 3 digits
		"tile/0/0067",      // ditto
		"tile/0/x000/067",  // not canonical
		"tile/0/001/067",   // x missing
		"tile/0/x067",      // x on the last element
		"tile/0/000.p/0",   // width
		"tile/0/000.p/256", // a full tile is not partial
		"tile/0/000.p/08",  // leading zero
		"tile/0/000.p/",
		"tile/0/000.p",
		"tile/0/000/",
		"tile/entries/000.p/-1",
		"tile/0/x999/x999/x999/x999/x999/x999/x999/999", // beyond int64
		"tile/0/x1/000",
		"tile/0/000?x",
	} {
		if got, err := tiles.ParsePath(path); !errors.Is(err, tiles.ErrPath) {
			t.Errorf("ParsePath(%q) = %+v, %v, want ErrPath", path, got, err)
		}
	}
}

// FuzzParsePath: no panic; what parses is a valid tile of height 8 whose
// path is the input.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"tile/0/000", "tile/entries/x001/x234/067.p/8", "tile/63/000.p/255", "tile/0/x000/000", "tile/1/999.p/1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		tile, err := tiles.ParsePath(path)
		if err != nil {
			if !errors.Is(err, tiles.ErrPath) {
				t.Fatalf("ParsePath error %v is not ErrPath", err)
			}
			return
		}
		if tile.H != 8 || tile.L < -1 || tile.L > 63 || tile.N < 0 || tile.W < 1 || tile.W > 256 {
			t.Fatalf("ParsePath(%q) = %+v: not a tile", path, tile)
		}
		if p := tiles.Path(tile); p != path {
			t.Fatalf("Path(ParsePath(%q)) = %q", path, p)
		}
	})
}

func TestBundle(t *testing.T) {
	entries := [][]byte{{}, {1}, bytes.Repeat([]byte{2}, 33), bytes.Repeat([]byte{3}, 65535)}
	b, err := tiles.FormatBundle(entries)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0, 0, 0, 1, 1, 0, 33, 2}; !bytes.HasPrefix(b, want) {
		t.Fatalf("FormatBundle starts with %x, want %x", b[:8], want)
	}
	got, err := tiles.ParseBundle(b, len(entries))
	if err != nil {
		t.Fatal(err)
	}
	for i := range entries {
		if !bytes.Equal(got[i], entries[i]) {
			t.Errorf("entry %d differs", i)
		}
	}
	if _, err := tiles.FormatBundle([][]byte{make([]byte, 65536)}); err == nil {
		t.Error("FormatBundle accepted an entry of 65,536 bytes")
	}
	if _, err := tiles.FormatBundle(make([][]byte, 257)); err == nil {
		t.Error("FormatBundle accepted 257 entries")
	}
	for _, tc := range []struct {
		name  string
		b     []byte
		width int
	}{
		{"truncated length", []byte{0}, 1},
		{"truncated entry", []byte{0, 2, 1}, 1},
		{"too few", []byte{0, 1, 1}, 2},
		{"too many", []byte{0, 1, 1, 0, 0}, 1},
		{"width 0", nil, 0},
		{"width 257", nil, 257},
	} {
		if _, err := tiles.ParseBundle(tc.b, tc.width); err == nil {
			t.Errorf("ParseBundle(%s) succeeded", tc.name)
		}
	}
}

// FuzzBundle: what parses formats back to the same bytes.
func FuzzBundle(f *testing.F) {
	f.Add([]byte{0, 1, 1, 0, 0}, 2)
	f.Add([]byte{}, 1)
	f.Fuzz(func(t *testing.T, b []byte, width int) {
		entries, err := tiles.ParseBundle(b, width)
		if err != nil {
			return
		}
		again, err := tiles.FormatBundle(entries)
		if err != nil {
			t.Fatalf("FormatBundle(ParseBundle(b)): %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("FormatBundle(ParseBundle(%x)) = %x", b, again)
		}
	})
}
