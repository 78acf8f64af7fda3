package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
	"golang.org/x/sync/errgroup"

	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/api/server"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/consentsql"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/nationalrules"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
	"github.com/vigie-sante/vigie/ledger/tiles"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// startWithEvents starts the service on a test ledger holding n events
// under a signed checkpoint, and returns its HTTP URL and the ledger.
func startWithEvents(t testing.TB, n int, limits map[auth.Role]server.Limit) (string, *ledgertest.Env, []*ledger.Recorded) {
	t.Helper()
	env := ledgertest.New(t, ledgertest.Options{Migrations: consentsql.Migrations, EraseAlso: consentsql.EraseRows})
	consents := consentsql.New(env.DB, env.Ledger)
	svc, err := consent.NewService(context.Background(), consent.Config{
		Store: consents, Recorder: consents, Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}), Rules: nationalrules.Illustrative(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	recorded := make([]*ledger.Recorded, n)
	var g errgroup.Group
	g.SetLimit(32)
	for i := range n {
		g.Go(func() error {
			var err error
			recorded[i], err = env.Ledger.Record(ctx, ledger.Entry{
				Kind: event.KindAccess, Patient: ledgertest.Patient(fmt.Sprint("patient-", i%7)), Service: "hospital-his",
				Payload: json.RawMessage(fmt.Sprintf(`{"decision":"allow","n":%d}`, i)), Actor: "10000000001",
			})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := env.Ledger.WaitCheckpoint(ctx, uint64(n-1)); err != nil {
		t.Fatal(err)
	}
	a, err := Start(ctx, Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Audience: EmbeddedAudience,
		Logger: slog.New(slog.DiscardHandler), RateLimits: limits,
	}, Node{
		Ledger: env.Ledger, Consent: svc, Consents: consents,
		Origin: env.Origin, CheckpointKey: env.CheckpointKey.Name(), ReceiptKey: env.ReceiptKey.Name(),
		KeysDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Stop(context.Background()) })
	a.MarkReady()
	_, httpURL := a.URLs()
	return httpURL, env, recorded
}

func httpGet(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, err
}

// tlogTiles is golang.org/x/mod/sumdb/tlog's TileReader over the
// service's HTTP API, with the checksum database's paths turned into
// C2SP's.
type tlogTiles struct{ base string }

func (tlogTiles) Height() int { return 8 }

func (r tlogTiles) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(ts))
	for i, t := range ts {
		p := strings.Replace(strings.Replace(t.Path(), "tile/8/", "tile/", 1), "tile/data/", "tile/entries/", 1)
		b, err := httpGet(context.Background(), http.DefaultClient, r.base+"/"+p)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (tlogTiles) SaveTiles([]tlog.Tile, [][]byte) {}

// TestTiles: the running service serves its log as tiles beside
// /checkpoint, without authentication; tlog's client rebuilds the signed
// checkpoint's root from them and proves every event's inclusion.
func TestTiles(t *testing.T) {
	base, env, recorded := startWithEvents(t, 600, nil)
	note, err := httpGet(context.Background(), http.DefaultClient, base+"/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	cp, err := verify.OpenCheckpoint(note, env.CheckpointKey)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(cp.Size)
	hr := tlog.TileHashReader(tlog.Tree{N: size, Hash: tlog.Hash(cp.Hash)}, tlogTiles{base})
	if root, err := tlog.TreeHash(size, hr); err != nil || root != tlog.Hash(cp.Hash) {
		t.Fatalf("root through the tiles = %x, %v; want the checkpoint's %x", root, err, cp.Hash)
	}
	for _, rec := range recorded {
		proof, err := tlog.ProveRecord(size, int64(rec.Index), hr)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(proof, size, tlog.Hash(cp.Hash), int64(rec.Index), tlog.RecordHash(verify.LeafValue(rec.Commitment))); err != nil {
			t.Errorf("event %d: %v", rec.Index, err)
		}
	}
	// Public and cacheable as the spec wants, whatever the API's other
	// routes say (no-store): a bad token changes nothing.
	req, _ := http.NewRequest("GET", base+"/tile/entries/000", nil)
	req.Header.Set("Authorization", "Bearer not-a-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" {
		t.Fatalf("GET /tile/entries/000 = %s, Cache-Control %q, %v", resp.Status, resp.Header.Get("Cache-Control"), err)
	}
	entries, err := tiles.ParseBundle(b, 256)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recorded {
		if rec.Index < 256 && string(entries[rec.Index]) != string(verify.LeafValue(rec.Commitment)) {
			t.Errorf("entry %d is not the event's leaf value", rec.Index)
		}
	}
}

// BenchmarkReadLog reads 256 leaves at a time over HTTP, from parallel
// clients (4 per core): a full level-0 tile and a full entry bundle (from
// the cache), against the JSON route (/v1/log/leaves), without the JSON
// route's anonymous rate limit so that its own cost shows.
//
//	go test -run NONE -bench ReadLog -benchtime 2s -count 5 ./api/apiserver
func BenchmarkReadLog(b *testing.B) {
	unlimited := map[auth.Role]server.Limit{"": server.Unlimited}
	base, _, _ := startWithEvents(b, 2048, unlimited)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for _, bc := range []struct{ name, path string }{
		{"tile", "/tile/0/%03d"},
		{"entries", "/tile/entries/%03d"},
		{"json", "/v1/log/leaves?start=%d&end=%d"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var n atomic.Int64
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1) % 8
					url := base + fmt.Sprintf(bc.path, i)
					if bc.name == "json" {
						url = base + fmt.Sprintf(bc.path, i*256, i*256+256)
					}
					if _, err := httpGet(context.Background(), client, url); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			b.ReportMetric(256*float64(b.N)/b.Elapsed().Seconds(), "leaves/s")
		})
	}
}
