package tiles

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// treeFile, in Config.Dir, names the largest checkpoint whose full tiles
// the directory may hold: "<size> <root in base64>\n" (the root empty if
// the checkpoint did not parse).
const treeFile = "tree"

// checkDir compares the tree Dir was filled under with the Source's latest
// checkpoint (size, signed note n), once, and records the larger one: a
// Source that is behind, or of the same size with another root, is
// another history, and Dir is emptied. It is called by refreshSize, one
// caller at a time.
func (r *Reader) checkDir(size uint64, n []byte) error {
	root := ""
	if i := bytes.Index(n, []byte("\n\n")); i >= 0 {
		if cp, err := verify.ParseCheckpoint(n[:i+1]); err == nil {
			root = cp.Hash.String()
		}
	}
	path := filepath.Join(r.dir, treeFile)
	if !r.dirChecked.Load() {
		oldSize, oldRoot, err := readTreeFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil || oldSize > size || (oldSize == size && oldRoot != root):
			// Another history, or a record that cannot say: start again.
			if err := r.emptyDir(); err != nil {
				return fmt.Errorf("tiles: empty the directory of another log's tiles: %w", err)
			}
		case oldSize == size:
			r.dirChecked.Store(true)
			return nil
		}
		r.dirChecked.Store(true)
	} else if size <= r.size.Load() {
		return nil
	}
	b := fmt.Appendf(nil, "%d %s\n", size, root)
	if err := writeAtomic(path, b); err != nil {
		return fmt.Errorf("tiles: %w", err)
	}
	return nil
}

func readTreeFile(path string) (uint64, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, "", err
	}
	f := bytes.Fields(b)
	if len(f) < 1 || len(f) > 2 {
		return 0, "", fmt.Errorf("tiles: malformed %s", treeFile)
	}
	size, err := strconv.ParseUint(string(f[0]), 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("tiles: malformed %s", treeFile)
	}
	root := ""
	if len(f) == 2 {
		root = string(f[1])
	}
	return size, root, nil
}

// Full tiles are kept in Dir in one file per level ("level-<L>", and
// "entries" for the bundles), the tile N at offset N times its size: a
// full hash tile is 8,192 bytes, and a full bundle 8,960 (256 leaf values
// of 33 bytes, each after its 2-byte length). A tile is read and written
// with one system call; a file per tile would cost a file creation per
// 256 leaves, and a whole-log read one open per tile. A range never
// written reads as zeros, which no full tile is (no hash is zero, no leaf
// value starts with 0); nor is one torn by a crash during its write, which
// is then made again.
const bundleSize = FullWidth * (2 + verify.LeafValueSize)

func recordSize(t tlog.Tile) int64 {
	if t.L == EntriesLevel {
		return bundleSize
	}
	return FullWidth * event.HashSize
}

func fileName(level int) string {
	if level == EntriesLevel {
		return "entries"
	}
	return "level-" + strconv.Itoa(level)
}

// file returns the open file of tiles of level l in Dir.
func (r *Reader) file(level int) (*os.File, error) {
	r.filesMu.Lock()
	defer r.filesMu.Unlock()
	if f := r.files[level]; f != nil {
		return f, nil
	}
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(r.dir, fileName(level)), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	r.files[level] = f
	return f, nil
}

// readFile returns full tile t from Dir if it holds it, whole.
func (r *Reader) readFile(t tlog.Tile) (Content, bool) {
	f, err := r.file(t.L)
	if err != nil {
		r.fileErrors.Add(1)
		return Content{}, false
	}
	size := recordSize(t)
	b := make([]byte, size)
	n, err := f.ReadAt(b, t.N*size)
	if n < len(b) {
		if err != nil && !errors.Is(err, io.EOF) {
			r.fileErrors.Add(1)
		}
		return Content{}, false
	}
	if !wholeTile(t, b) {
		return Content{}, false
	}
	r.fileReads.Add(1)
	return content(b), true
}

// wholeTile reports whether b is a full tile of t's level as Vigie makes
// them: no zero hash, or 256 leaf values.
func wholeTile(t tlog.Tile, b []byte) bool {
	if t.L == EntriesLevel {
		entries, err := ParseBundle(b, FullWidth)
		if err != nil {
			return false
		}
		for _, e := range entries {
			if _, err := verify.ParseLeafValue(e); err != nil {
				return false
			}
		}
		return true
	}
	var zero [event.HashSize]byte
	for i := 0; i < len(b); i += event.HashSize {
		if bytes.Equal(b[i:i+event.HashSize], zero[:]) {
			return false
		}
	}
	return true
}

// writeFile keeps full tile t in Dir, if set and checked; a failure only
// counts in Stats.FileErrors.
func (r *Reader) writeFile(t tlog.Tile, data []byte) {
	if r.dir == "" || !r.dirChecked.Load() || int64(len(data)) != recordSize(t) {
		return
	}
	f, err := r.file(t.L)
	if err == nil {
		_, err = f.WriteAt(data, t.N*recordSize(t))
	}
	if err != nil {
		r.fileErrors.Add(1)
	}
}

// emptyDir removes the tiles kept in Dir.
func (r *Reader) emptyDir() error {
	r.filesMu.Lock()
	defer r.filesMu.Unlock()
	for l := EntriesLevel; l <= MaxLevel; l++ {
		if f := r.files[l]; f != nil {
			f.Close()
			delete(r.files, l)
		}
		if err := os.Remove(filepath.Join(r.dir, fileName(l))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// writeAtomic writes data to path through a temporary file renamed over
// it: a reader sees the old file or the new one, never a part.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
