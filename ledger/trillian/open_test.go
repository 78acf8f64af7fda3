package trillian_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tpb "github.com/google/trillian"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/sqldb/pgtest"
	vtrillian "github.com/vigie-sante/vigie/ledger/trillian"
	"github.com/vigie-sante/vigie/ledger/verify"
)

var vigieTree = vtrillian.TreeSpec{DisplayName: vtrillian.TreeName, Type: tpb.TreeType_PREORDERED_LOG}

// TestOpen brings Trillian up in each mode twice, as a node restarts: the
// tree created at the first start is found again, and what the Log
// accepted is still there. The second start on SQLite also shows that
// Close released the storage (it is locked while open).
func TestOpen(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   func(t *testing.T) vtrillian.OpenConfig
		where string
	}{
		{"SQLite", func(t *testing.T) vtrillian.OpenConfig {
			return vtrillian.OpenConfig{SQLite: filepath.Join(t.TempDir(), "trillian.db")}
		}, "SQLite "},
		{"PostgreSQL", func(t *testing.T) vtrillian.OpenConfig {
			return vtrillian.OpenConfig{PostgreSQL: pgtest.NewDatabase(t)}
		}, "PostgreSQL"},
		{"remote", func(t *testing.T) vtrillian.OpenConfig {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			p := openSQLite(t)
			e, err := vtrillian.Start(context.Background(), vtrillian.Config{LogStorage: p.LogStorage(), AdminStorage: p.AdminStorage(), Listener: lis})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.Close() })
			return vtrillian.OpenConfig{Remote: []string{lis.Addr().String()}}
		}, "Trillian at 127.0.0.1:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			cfg := tc.cfg(t)
			cfg.Tree = vigieTree
			var first int64
			for run := range 2 {
				n, err := vtrillian.Open(ctx, cfg)
				if err != nil {
					t.Fatalf("run %d: Open: %v", run, err)
				}
				if !strings.HasPrefix(n.Where, tc.where) {
					t.Errorf("run %d: Where = %q, want %q...", run, n.Where, tc.where)
				}
				if (n.Embedded == nil) != (cfg.Remote != nil) || (n.Storage == nil) != (cfg.Remote != nil) {
					t.Errorf("run %d: Embedded %v, Storage %v with Remote %q", run, n.Embedded != nil, n.Storage != nil, cfg.Remote)
				}
				// The leaf added at the first start is found again at the
				// second: another value at its index is a conflict.
				out, err := n.Log.AddSequenced(ctx, 0, [][]byte{verify.LeafValue(event.Hash{byte(run + 1)})})
				if err != nil || len(out) != 1 {
					t.Fatalf("run %d: AddSequenced = %v, %v", run, out, err)
				}
				if run == 0 {
					first = n.Tree.TreeId
					if !out[0].Stored {
						t.Errorf("run 0: AddSequenced = %+v, want stored", out[0])
					}
					// Integrated before the close: Trillian serves only
					// integrated leaves, and the second start's conflict
					// is read from them (a loaded machine's sequencer may
					// not have run yet).
					for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
						r, err := n.Log.Root(ctx)
						if err == nil && r.Size >= 1 {
							break
						}
						if time.Now().After(deadline) {
							t.Fatalf("run 0: the leaf not integrated after 30 s (root %+v, %v)", r, err)
						}
					}
				} else {
					if n.Tree.TreeId != first {
						t.Errorf("run %d: tree %d, want the first start's %d", run, n.Tree.TreeId, first)
					}
					if out[0].Stored || string(out[0].Conflict) != string(verify.LeafValue(event.Hash{1})) {
						t.Errorf("run %d: AddSequenced over the first start's leaf = %+v, want a conflict with it", run, out[0])
					}
				}
				if err := n.Close(); err != nil {
					t.Errorf("run %d: Close: %v", run, err)
				}
				if err := n.Close(); err != nil {
					t.Errorf("run %d: second Close: %v", run, err)
				}
			}
		})
	}
}

// TestOpenConfig: exactly one place for Trillian.
func TestOpenConfig(t *testing.T) {
	dir := t.TempDir()
	for _, cfg := range []vtrillian.OpenConfig{
		{},
		{Remote: []string{"127.0.0.1:1"}, SQLite: filepath.Join(dir, "trillian.db")},
		{PostgreSQL: "postgres://127.0.0.1:1/x", SQLite: filepath.Join(dir, "trillian.db")},
	} {
		cfg.Tree = vigieTree
		if n, err := vtrillian.Open(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "exactly one") {
			t.Errorf("Open(%+v) = %v, want an error asking for exactly one", cfg, err)
			if n != nil {
				n.Close()
			}
		}
	}
}

// TestDialAddresses: Dial takes host:port addresses, and names a bad one
// by its position, never quoting it.
func TestDialAddresses(t *testing.T) {
	for _, tc := range []struct {
		addrs []string
		want  string
	}{
		{nil, "no log server address"},
		{[]string{"127.0.0.1:1", "secret-host"}, "log server address 2: want host:port"},
		{[]string{":1"}, "log server address 1: want host:port"},
		{[]string{"127.0.0.1:"}, "log server address 1: want host:port"},
	} {
		r, err := vtrillian.Dial(tc.addrs)
		if err == nil {
			r.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret-host") {
			t.Errorf("Dial(%q) = %v, want %q", tc.addrs, err, tc.want)
		}
	}
	r, err := vtrillian.Dial([]string{"127.0.0.1:1", "[::1]:2"})
	if err != nil {
		t.Fatalf("Dial(two addresses) = %v", err)
	}
	r.Close()
}
