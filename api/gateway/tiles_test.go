package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/tiles"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// memLog is a tiles.Source in memory whose signed size the test moves.
type memLog struct {
	mu     sync.Mutex
	leaves [][]byte
	size   uint64
}

func newMemLog(n int) *memLog {
	m := &memLog{size: uint64(n)}
	for i := range n {
		m.leaves = append(m.leaves, verify.LeafValue(event.Hash(sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i))))))
	}
	return m
}

func (m *memLog) setSize(n uint64) { m.mu.Lock(); m.size = n; m.mu.Unlock() }

func (m *memLog) LatestCheckpoint(context.Context) ([]byte, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return nil, m.size, nil
}

func (m *memLog) Leaves(_ context.Context, start, end uint64) ([][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	end = min(end, m.size, start+ledger.MaxLeaves)
	if start >= end {
		return nil, nil
	}
	return m.leaves[start:end], nil
}

func tilesServer(t *testing.T, src tiles.Source) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(TilesPrefix, Tiles(tiles.New(src, tiles.Config{}), slog.New(slog.DiscardHandler)))
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// httpTiles is golang.org/x/mod/sumdb/tlog's TileReader over HTTP: tlog
// names tiles by the checksum database's paths (tile/8/L/N, tile/8/data/N),
// which this adapter turns into C2SP's.
type httpTiles struct {
	base   string
	client *http.Client
}

func (h httpTiles) Height() int { return 8 }

func (h httpTiles) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(ts))
	for i, t := range ts {
		p := strings.Replace(strings.Replace(t.Path(), "tile/8/", "tile/", 1), "tile/data/", "tile/entries/", 1)
		resp, err := h.client.Get(h.base + "/" + p)
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", p, resp.Status)
		}
		out[i] = b
	}
	return out, nil
}

func (httpTiles) SaveTiles([]tlog.Tile, [][]byte) {}

// TestTilesOverHTTP: tlog's tile client reads the tiles over HTTP and
// rebuilds the root and inclusion proofs that tlog computes from the
// records; the entry bundles hold the leaves.
func TestTilesOverHTTP(t *testing.T) {
	const n = 1000
	src := newMemLog(n)
	s := tilesServer(t, src)
	var storage []tlog.Hash
	reader := tlog.HashReaderFunc(func(xs []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(xs))
		for i, x := range xs {
			out[i] = storage[x]
		}
		return out, nil
	})
	for i, v := range src.leaves {
		hs, err := tlog.StoredHashes(int64(i), v, reader)
		if err != nil {
			t.Fatal(err)
		}
		storage = append(storage, hs...)
	}
	root, err := tlog.TreeHash(n, reader)
	if err != nil {
		t.Fatal(err)
	}
	hr := tlog.TileHashReader(tlog.Tree{N: n, Hash: root}, httpTiles{s.URL, s.Client()})
	if got, err := tlog.TreeHash(n, hr); err != nil || got != root {
		t.Fatalf("TreeHash over HTTP = %x, %v, want %x", got, err, root)
	}
	for _, i := range []int64{0, 511, 999} {
		proof, err := tlog.ProveRecord(n, i, hr)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(proof, n, root, i, tlog.RecordHash(src.leaves[i])); err != nil {
			t.Errorf("leaf %d: %v", i, err)
		}
	}
	data, err := httpTiles{s.URL, s.Client()}.ReadTiles([]tlog.Tile{{H: 8, L: -1, N: 3, W: 232}})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := tiles.ParseBundle(data[0], 232)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range entries {
		if !bytes.Equal(e, src.leaves[768+i]) {
			t.Fatalf("entry %d of bundle 3 is not leaf %d", i, 768+i)
		}
	}
}

func get(t *testing.T, s *httptest.Server, method, path string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestTileHeaders: full tiles are public and immutable with a strong
// ETag (304 when it matches), partial tiles short-lived, errors not
// cached; the partial tile of a size, then the full tile once the signed
// size covers it.
func TestTileHeaders(t *testing.T) {
	src := newMemLog(600)
	src.setSize(300)
	s := tilesServer(t, src)

	resp, full := get(t, s, "GET", "/tile/0/000")
	if resp.StatusCode != 200 || len(full) != 8192 {
		t.Fatalf("GET /tile/0/000 = %s, %d bytes", resp.Status, len(full))
	}
	etag := resp.Header.Get("ETag")
	for k, want := range map[string]string{
		"Content-Type":                "application/octet-stream",
		"Cache-Control":               "public, max-age=31536000, immutable",
		"Access-Control-Allow-Origin": "*",
		"X-Content-Type-Options":      "nosniff",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("full tile: %s = %q, want %q", k, got, want)
		}
	}
	if len(etag) != 34 || !strings.HasPrefix(etag, `"`) {
		t.Errorf("full tile: ETag = %q, want a strong ETag", etag)
	}
	if resp, b := get(t, s, "GET", "/tile/0/000", "If-None-Match", etag); resp.StatusCode != http.StatusNotModified || len(b) != 0 {
		t.Errorf("GET with If-None-Match = %s, %d bytes, want 304", resp.Status, len(b))
	}
	if resp, b := get(t, s, "HEAD", "/tile/0/000"); resp.StatusCode != 200 || len(b) != 0 || resp.ContentLength != 8192 {
		t.Errorf("HEAD = %s, %d bytes, length %d", resp.Status, len(b), resp.ContentLength)
	}

	resp, partial := get(t, s, "GET", "/tile/0/001.p/44")
	if resp.StatusCode != 200 || len(partial) != 44*32 {
		t.Fatalf("GET /tile/0/001.p/44 = %s, %d bytes", resp.Status, len(partial))
	}
	if got := resp.Header.Get("Cache-Control"); got != "public, max-age=60" {
		t.Errorf("partial tile: Cache-Control = %q", got)
	}
	resp, _ = get(t, s, "GET", "/tile/0/001")
	if resp.StatusCode != 404 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("full tile beyond the checkpoint = %s, Cache-Control %q, want 404, no-store", resp.Status, resp.Header.Get("Cache-Control"))
	}
	src.setSize(600)
	resp, b := get(t, s, "GET", "/tile/0/001")
	if resp.StatusCode != 200 || !bytes.HasPrefix(b, partial) || len(b) != 8192 {
		t.Errorf("full tile once signed = %s, %d bytes; want 200, extending the partial tile", resp.Status, len(b))
	}
	resp, b = get(t, s, "GET", "/tile/entries/002.p/88")
	if resp.StatusCode != 200 || len(b) != 88*35 {
		t.Errorf("GET /tile/entries/002.p/88 = %s, %d bytes, want 88 entries of 35 bytes", resp.Status, len(b))
	}
}

// TestTileErrors: malformed paths are 400, tiles beyond the checkpoint
// 404, and neither answer quotes the path.
func TestTileErrors(t *testing.T) {
	s := tilesServer(t, newMemLog(300))
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/tile/0/001", 404},
		{"/tile/0/001.p/45", 404},
		{"/tile/1/000", 404},
		{"/tile/63/x009/x223/x372/x036/x854/x775/807", 404},
		{"/tile/entries/001", 404},
		{"/tile/0/1", 400},
		{"/tile/0/x000/001", 400},
		{"/tile/8/0/000", 400},
		{"/tile/data/000", 400},
		{"/tile/64/000", 400},
		{"/tile/0/000.p/256", 400},
		{"/tile/0/000.p/0", 400},
		{"/tile/0/%30%30%30", 400},
		{"/tile/0/x999/x999/x999/x999/x999/x999/x999/999", 400},
		{"/tile/secret-INS-137047624348415", 400},
		{"/tile/", 400},
	} {
		resp, b := get(t, s, "GET", tc.path)
		if resp.StatusCode != tc.code {
			t.Errorf("GET %s = %s, want %d", tc.path, resp.Status, tc.code)
		}
		if strings.Contains(string(b), "137047624348415") || strings.Contains(string(b), "x999") {
			t.Errorf("GET %s: the answer quotes the path: %q", tc.path, b)
		}
	}
}

// TestTileLimit: each client address has its own bucket; beyond it, 429
// with Retry-After, not cached; another address is served meanwhile.
func TestTileLimit(t *testing.T) {
	h := TilesLimited(tiles.New(newMemLog(300), tiles.Config{}), slog.New(slog.DiscardHandler), 1, 3)
	get := func(addr string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/tile/entries/000", nil)
		req.RemoteAddr = addr + ":4242"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	for i := range 3 {
		if w := get("192.0.2.1"); w.Code != http.StatusOK {
			t.Fatalf("request %d within the burst: %d", i, w.Code)
		}
	}
	w := get("192.0.2.1")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("beyond the burst: %d, Retry-After %q, Cache-Control %q; want 429, a Retry-After, no-store", w.Code, w.Header().Get("Retry-After"), w.Header().Get("Cache-Control"))
	}
	if w := get("192.0.2.2"); w.Code != http.StatusOK {
		t.Errorf("another address: %d, want 200", w.Code)
	}
}
