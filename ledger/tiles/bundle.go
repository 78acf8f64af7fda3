package tiles

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// maxEntry is the largest entry a bundle can hold (a uint16 length).
const maxEntry = 1<<16 - 1

// FormatBundle returns the entry bundle of entries: each entry prefixed by
// its length as a big-endian uint16. It fails if an entry is longer than
// 65,535 bytes or if there are more than 256 entries.
func FormatBundle(entries [][]byte) ([]byte, error) {
	if len(entries) > FullWidth {
		return nil, fmt.Errorf("bundle: %d entries, at most %d", len(entries), FullWidth)
	}
	n := 0
	for i, e := range entries {
		if len(e) > maxEntry {
			return nil, fmt.Errorf("bundle: entry %d is %d bytes, at most %d", i, len(e), maxEntry)
		}
		n += 2 + len(e)
	}
	b := make([]byte, 0, n)
	for _, e := range entries {
		b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
		b = append(b, e...)
	}
	return b, nil
}

var errBundle = errors.New("bundle: truncated entry")

// ParseBundle returns the entries of an entry bundle, which must hold
// exactly width entries (1 to 256). The entries alias b.
func ParseBundle(b []byte, width int) ([][]byte, error) {
	if width < 1 || width > FullWidth {
		return nil, fmt.Errorf("bundle: width %d, want 1 to %d", width, FullWidth)
	}
	out := make([][]byte, 0, width)
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, errBundle
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return nil, errBundle
		}
		if len(out) == width {
			return nil, fmt.Errorf("bundle: more than %d entries", width)
		}
		out = append(out, b[2:2+n:2+n])
		b = b[2+n:]
	}
	if len(out) != width {
		return nil, fmt.Errorf("bundle: %d entries, want %d", len(out), width)
	}
	return out, nil
}
