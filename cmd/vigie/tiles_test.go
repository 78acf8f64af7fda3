package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/api/gateway"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/tiles"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// TestAuditThroughTiles: vigie audit --tiles reads every leaf from the
// entry bundles of /tile/entries/ and rebuilds the signed roots from them;
// a bundle changed on its way (a cache in front, say) is a root mismatch.
func TestAuditThroughTiles(t *testing.T) {
	w := newWorld(t, filepath.Join(t.TempDir(), "data"))
	const n = 300
	for i := range n {
		doCheck(t, w.e, fmt.Sprint("tiles-", i), e2ePatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
	}
	waitCheckpoint(t, w, n)

	code, rep, errOut := w.audit(auth.RoleAuditor, t.TempDir(), "--log-only", "--tiles", "--batch", "100")
	if code != exitOK || len(rep.Findings) != 0 || rep.Log.Fetched < n {
		t.Fatalf("vigie audit --tiles: exit %d, %d leaves, findings %+v\n%s", code, rep.Log.Fetched, rep.Findings, errOut)
	}
	for _, cp := range rep.Log.Checkpoints {
		if !cp.RootChecked {
			t.Errorf("the root of the checkpoint of size %d was not rebuilt", cp.Size)
		}
	}

	w.setEdit(func(path string, body []byte) []byte {
		if path != "/tile/entries/000" {
			return body
		}
		b := bytes.Clone(body)
		b[8] ^= 1 // in the commitment of leaf 0, after its length and 0x01
		return b
	})
	code, rep, _ = w.audit(auth.RoleAuditor, t.TempDir(), "--log-only", "--tiles")
	found := false
	for _, f := range rep.Findings {
		found = found || f.Kind == audit.KindRootMismatch
	}
	if code == exitOK || !found {
		t.Errorf("vigie audit --tiles with a changed bundle: exit %d, findings %+v, want %s", code, rep.Findings, audit.KindRootMismatch)
	}
}

// TestTileSourcePrefetch: once a batch of leaves is returned, the next
// batch is already being fetched; a call for it gets the same leaves as a
// fresh fetch, and a call for another range is served on its own.
func TestTileSourcePrefetch(t *testing.T) {
	l := newBigLog(t, 3000)
	var mu sync.Mutex
	asked := map[string]int{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /checkpoint", func(w http.ResponseWriter, _ *http.Request) { w.Write(l.note) })
	tilesH := gateway.Tiles(tiles.New(l, tiles.Config{}), nil)
	mux.Handle(gateway.TilesPrefix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked[r.URL.Path]++
		mu.Unlock()
		tilesH.ServeHTTP(w, r)
	}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	cl, err := (&remoteConfig{server: srv.URL}).client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	src := &tileSource{searchSource: searchSource{cl}}
	if _, err := src.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	check := func(got [][]byte, start uint64) {
		t.Helper()
		for i, v := range got {
			if !bytes.Equal(v, verify.LeafValue(l.commitment(start+uint64(i)))) {
				t.Fatalf("leaf %d is not the log's", start+uint64(i))
			}
		}
	}
	got, err := src.Leaves(ctx, 0, 1024)
	if err != nil || len(got) != 1024 {
		t.Fatalf("Leaves(0, 1024) = %d leaves, %v", len(got), err)
	}
	check(got, 0)
	// Bundles 4 to 7 are asked for before any call asks for them.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := asked["/tile/entries/004"] + asked["/tile/entries/007"]
		mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the next batch was not fetched ahead")
		}
		time.Sleep(10 * time.Millisecond)
	}
	got, err = src.Leaves(ctx, 1024, 2048)
	if err != nil || len(got) != 1024 {
		t.Fatalf("Leaves(1024, 2048) = %d leaves, %v", len(got), err)
	}
	check(got, 1024)
	mu.Lock()
	if n := asked["/tile/entries/005"]; n != 1 {
		t.Errorf("bundle 5 fetched %d times, want once (the prefetch used)", n)
	}
	mu.Unlock()
	// Another range than the one prefetched (2048 to 3000): its own fetch.
	got, err = src.Leaves(ctx, 100, 2900)
	if err != nil || len(got) != 2800 {
		t.Fatalf("Leaves(100, 2900) = %d leaves, %v", len(got), err)
	}
	check(got, 100)
	// The last batch, partial bundle included, up to the size.
	got, err = src.Leaves(ctx, 2900, 5000)
	if err != nil || len(got) != 100 {
		t.Fatalf("Leaves(2900, 5000) = %d leaves, %v", len(got), err)
	}
	check(got, 2900)
}
