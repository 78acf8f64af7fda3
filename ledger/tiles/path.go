// Package tiles serves Vigie's log as C2SP tlog-tiles: the hashes of the
// log's Merkle tree in tiles of 256 hashes (`tile/<L>/<N>[.p/<W>]`) and its
// entries in bundles (`tile/entries/<N>[.p/<W>]`), so that any tlog-tiles
// client, and any HTTP cache in front of Vigie, reads the whole log.
//
// An entry is a leaf value (docs/formats.md): 0x01 ‖ the event's
// commitment, 33 bytes, whose RFC 6962 leaf hash is the level-0 hash at its
// index. Tiles are computed from the ledger's own commitments, the ones the
// checkpointer recomputes the root from before it signs, and only within
// the latest signed checkpoint. An erasure keeps commitments, so a tile
// never changes once it is served.
//
// The package follows [tlog-tiles] with tiles of height 8; a [tlog.Tile]
// with H = 8 names a tile (L = -1 for an entry bundle), as in
// golang.org/x/mod/sumdb/tlog, whose paths differ from the C2SP ones only
// by their height element and "data" for "entries".
//
// [tlog-tiles]: https://c2sp.org/tlog-tiles
package tiles

import (
	"errors"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

const (
	// Height is the height of every tile: a full tile holds 256 hashes.
	Height = 8
	// FullWidth is the number of hashes of a full tile, or entries of a
	// full bundle.
	FullWidth = 1 << Height
	// MaxLevel is the highest tile level a path may name.
	MaxLevel = 63
	// EntriesLevel is the level of an entry bundle in a [tlog.Tile].
	EntriesLevel = -1
	// maxPathLen bounds what ParsePath reads: the longest canonical path
	// (an entry bundle at the largest index, partial) is 57 bytes.
	maxPathLen = 80
)

// ErrPath is returned by ParsePath for a path that is not a canonical
// tlog-tiles path. It never quotes the path.
var ErrPath = errors.New("malformed tile path")

// ParsePath parses a tlog-tiles path without its leading prefix, such as
// "tile/0/x001/x234/067.p/8" or "tile/entries/067". It accepts only the
// canonical form (no leading zeroes, no "x000" element first, W from 1 to
// 255, L from 0 to 63): Path of the result is the path.
func ParsePath(path string) (tlog.Tile, error) {
	if len(path) > maxPathLen {
		return tlog.Tile{}, ErrPath
	}
	rest, ok := strings.CutPrefix(path, "tile/")
	if !ok {
		return tlog.Tile{}, ErrPath
	}
	if e, ok := strings.CutPrefix(rest, "entries/"); ok {
		rest = "data/" + e
	} else if strings.HasPrefix(rest, "data/") {
		return tlog.Tile{}, ErrPath // sumdb's name, not C2SP's
	}
	t, err := tlog.ParseTilePath("tile/8/" + rest)
	if err != nil || t.H != Height || t.L > MaxLevel || t.N < 0 || Path(t) != path {
		return tlog.Tile{}, ErrPath
	}
	return t, nil
}

// Path returns the tlog-tiles path of tile t, which must have H = 8.
func Path(t tlog.Tile) string {
	p := strings.TrimPrefix(t.Path(), "tile/8/")
	if d, ok := strings.CutPrefix(p, "data/"); ok && t.L == EntriesLevel {
		return "tile/entries/" + d
	}
	return "tile/" + p
}

// Full reports whether t is a full tile (or bundle).
func Full(t tlog.Tile) bool { return t.W == FullWidth }
