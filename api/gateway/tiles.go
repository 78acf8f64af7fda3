package gateway

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"
	"golang.org/x/time/rate"

	"github.com/vigie-sante/vigie/ledger/tiles"
)

// TileReader reads the log's tiles: [tiles.Reader]. It returns an error
// wrapping tiles.ErrNotInLog for a tile beyond the latest signed
// checkpoint.
type TileReader interface {
	Read(ctx context.Context, t tlog.Tile) (tiles.Content, error)
}

var _ TileReader = (*tiles.Reader)(nil)

// TilesPrefix is the route of the tiles, as the server's mux names it.
const TilesPrefix = "GET /tile/"

// Cache lifetimes of the tiles: a full tile or bundle never changes; a
// partial one is replaced by a wider one as the log grows.
const (
	fullTileCache    = "public, max-age=31536000, immutable"
	partialTileCache = "public, max-age=60"
)

// The anonymous limit of tile requests per client address: a whole-log
// audit at 1,000,000 leaves a second reads about 3,900 bundles a second,
// a client that also checks every hash tile twice that.
const (
	tileRate  = 10_000
	tileBurst = 20_000
)

// Tiles returns TilesLimited with the default limit: 10,000 requests a
// second per client address, in bursts of 20,000.
func Tiles(r TileReader, logger *slog.Logger) http.Handler {
	return TilesLimited(r, logger, tileRate, tileBurst)
}

// TilesLimited returns the handler of the log as [C2SP tlog-tiles]:
// GET /tile/<L>/<N>[.p/<W>] (hashes) and /tile/entries/<N>[.p/<W>] (entry
// bundles of leaf values), application/octet-stream, within the latest
// signed checkpoint. They are public: no authentication, and readable
// from any origin (CORS), as the checkpoint is. Each client address
// (the peer, or the client a trusted proxy names) may make perSecond
// requests a second, in bursts of burst, far beyond the JSON calls'
// limits: beyond, 429 with Retry-After. A full tile is served from the
// Reader's cache or its files, public and immutable for any HTTP cache in
// front, with a strong ETag; the Reader bounds the reads of the database
// that the other tiles need. A malformed path is 400, a tile beyond the
// checkpoint 404 (not cached), neither quoting the path.
//
// [C2SP tlog-tiles]: https://c2sp.org/tlog-tiles
func TilesLimited(r TileReader, logger *slog.Logger, perSecond float64, burst int) http.Handler {
	if logger == nil {
		logger = slog.Default()
	}
	limits := &addrLimits{rate: rate.Limit(perSecond), burst: burst, m: map[string]*addrLimit{}}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		h.Set("Access-Control-Allow-Origin", "*")
		if !limits.allow(clientHost(req), time.Now()) {
			h.Set("Retry-After", "1")
			tileError(w, http.StatusTooManyRequests, "too many tile requests")
			return
		}
		// The escaped path: a percent-encoded character is never part of
		// a canonical tile path.
		t, err := tiles.ParsePath(strings.TrimPrefix(req.URL.EscapedPath(), "/"))
		if err != nil {
			tileError(w, http.StatusBadRequest, "malformed tile path")
			return
		}
		c, err := r.Read(req.Context(), t)
		switch {
		case errors.Is(err, tiles.ErrNotInLog):
			tileError(w, http.StatusNotFound, "tile not in the log")
			return
		case err != nil:
			if req.Context().Err() == nil {
				logger.Warn("gateway: tile", "tile", tiles.Path(t), "err", err)
			}
			tileError(w, http.StatusServiceUnavailable, "tiles unavailable")
			return
		}
		h.Set("Content-Type", "application/octet-stream")
		h.Set("ETag", `"`+hex.EncodeToString(c.Digest[:16])+`"`)
		if tiles.Full(t) {
			h.Set("Cache-Control", fullTileCache)
		} else {
			h.Set("Cache-Control", partialTileCache)
		}
		// If-None-Match (304), HEAD and ranges, as for a file.
		http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(c.Data))
	})
}

func tileError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

// addrLimits are the token buckets of the client addresses seen within a
// minute; the others are dropped (a full bucket is a new bucket).
type addrLimits struct {
	rate  rate.Limit
	burst int

	mu    sync.Mutex
	m     map[string]*addrLimit
	swept time.Time
}

type addrLimit struct {
	lim  *rate.Limiter
	seen time.Time
}

func (a *addrLimits) allow(addr string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if now.Sub(a.swept) > time.Minute {
		for k, l := range a.m {
			if now.Sub(l.seen) > time.Minute {
				delete(a.m, k)
			}
		}
		a.swept = now
	}
	l := a.m[addr]
	if l == nil {
		l = &addrLimit{lim: rate.NewLimiter(a.rate, a.burst)}
		a.m[addr] = l
	}
	l.seen = now
	return l.lim.AllowN(now, 1)
}
