package apiserver

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/verify"
)

// TestTorchwoodClient: filippo.io/torchwood's tlog client, which nobody
// here wrote, reads the service's C2SP paths directly (no adapter): it
// opens the signed checkpoint with x/mod's note package and torchwood's
// parser, reads every entry of the log, each checked by the client against
// the tree's hash tiles, then proves some entries' inclusion. Through a
// server that changes one entry on its way, it refuses.
func TestTorchwoodClient(t *testing.T) {
	base, env, recorded := startWithEvents(t, 600, nil)
	ctx := context.Background()
	signed, err := httpGet(ctx, http.DefaultClient, base+"/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(signed, note.VerifierList(env.CheckpointKey))
	if err != nil {
		t.Fatalf("the checkpoint does not open with the log's key: %v", err)
	}
	cp, err := torchwood.ParseCheckpoint(n.Text)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Origin != env.Origin || cp.N < int64(len(recorded)) {
		t.Fatalf("checkpoint of %q, %d leaves; want %q, %d", cp.Origin, cp.N, env.Origin, len(recorded))
	}
	want := map[int64][]byte{}
	for _, rec := range recorded {
		want[int64(rec.Index)] = verify.LeafValue(rec.Commitment)
	}

	read := func(base string) (int64, error) {
		f, err := torchwood.NewTileFetcher(base)
		if err != nil {
			t.Fatal(err)
		}
		c, err := torchwood.NewClient(f)
		if err != nil {
			t.Fatal(err)
		}
		// Entries may stop before a partial bundle: resume until the size.
		next := int64(0)
		for next < cp.N {
			before := next
			for i, e := range c.Entries(ctx, cp.Tree, next) {
				if i != next {
					t.Fatalf("entry %d after %d", i, next-1)
				}
				if w, ok := want[i]; ok && !bytes.Equal(e, w) {
					t.Errorf("entry %d is not the event's leaf value", i)
				}
				next++
			}
			if err := c.Err(); err != nil {
				return next, err
			}
			if next == before {
				t.Fatalf("Entries from %d yields nothing, size %d", next, cp.N)
			}
		}
		for _, i := range []int64{0, 255, 256, cp.N - 1} {
			e, _, err := c.Entry(ctx, cp.Tree, i)
			if err != nil {
				return next, err
			}
			if w, ok := want[i]; ok && !bytes.Equal(e, w) {
				t.Errorf("Entry(%d) is not the event's leaf value", i)
			}
		}
		return next, nil
	}
	if got, err := read(base); err != nil || got != cp.N {
		t.Fatalf("torchwood read %d of %d entries: %v", got, cp.N, err)
	}

	// The same log through a proxy that changes the commitment of leaf 300.
	target, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.URL.Path != "/tile/entries/001" {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		b = bytes.Clone(b)
		b[(300-256)*(2+verify.LeafValueSize)+5] ^= 1
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return nil
	}
	proxy := httptest.NewServer(rp)
	defer proxy.Close()
	if got, err := read(proxy.URL); err == nil || got > 300 {
		t.Fatalf("torchwood through a changed bundle read %d entries, %v; want a refusal at entry 300", got, err)
	}
}
