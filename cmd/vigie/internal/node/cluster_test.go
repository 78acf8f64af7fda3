package node_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tpb "github.com/google/trillian"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/grpc"

	"github.com/vigie-sante/vigie/cmd/vigie/internal/node"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/ledger/ledgersql"
	"github.com/vigie-sante/vigie/ledger/sqldb/pgtest"
	vtrillian "github.com/vigie-sante/vigie/ledger/trillian"
	"github.com/vigie-sante/vigie/ledger/trillian/sqlite"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// logServer is a Trillian log server on a loopback port, one of several
// on one storage, counting the calls it serves.
type logServer struct {
	addr  string
	calls atomic.Int64
	e     *vtrillian.Embedded
}

// startTrillian starts n Trillian log servers on one SQLite storage; the
// first also sequences (one sequencer per tree, like trillian_log_signer
// beside trillian_log_servers).
func startTrillian(t *testing.T, n int) []*logServer {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "trillian.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var servers []*logServer
	for i := range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls := &logServer{addr: lis.Addr().String()}
		count := grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			ls.calls.Add(1)
			return h(ctx, req)
		})
		ls.e, err = vtrillian.Start(ctx, vtrillian.Config{
			LogStorage: s.LogStorage(), AdminStorage: s.AdminStorage(), Listener: lis,
			SequencerInterval: 20 * time.Millisecond, NoSequencer: i > 0,
			ServerOptions: []grpc.ServerOption{count},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ls.e.Close() })
		servers = append(servers, ls)
	}
	return servers
}

func addrs(servers []*logServer) []string {
	var a []string
	for _, s := range servers {
		a = append(a, s.addr)
	}
	return a
}

// check asks one access decision, recorded in the node's ledger.
func check(t *testing.T, n *node.Node, id string) {
	t.Helper()
	ins, err := ident.ParseINS("279035121518989")
	if err != nil {
		t.Fatal(err)
	}
	rpps, _ := ident.ParseRPPS("10000000001")
	org, _ := ident.ParseFINESS("750712184")
	d, _, err := n.Consent.Check(context.Background(), consent.Request{ID: id, Service: "his", Patient: ins,
		Actor:  consent.Actor{RPPS: rpps, Profession: "10", Sector: "care", Organization: org, CareTeam: true},
		Action: consent.ActionRead, Resource: consent.Resource{Kind: consent.ResourceRecord}, Purpose: consent.PurposeTreatment})
	if err != nil || d.Effect != consent.Allow {
		t.Fatalf("Check(%s) = %v, %v", id, d.Effect, err)
	}
}

// copyKeys copies the keys directory of one data directory to another's.
func copyKeys(t *testing.T, from, to string) {
	t.Helper()
	src, dst := node.KeysDir(from), node.KeysDir(to)
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		info, _ := e.Info()
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// liveTrees returns the IDs of the trees Trillian has that are not
// deleted.
func liveTrees(t *testing.T, addr string) []int64 {
	t.Helper()
	r, err := vtrillian.Dial([]string{addr})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	resp, err := r.Admin.ListTrees(context.Background(), &tpb.ListTreesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, tr := range resp.Tree {
		if !tr.Deleted {
			ids = append(ids, tr.TreeId)
		}
	}
	return ids
}

// TestInitCluster: vigie init makes the tree and keys once and pins them;
// run again it changes nothing; a node with --trillian starts only with
// the pinned tree's ID and a copy of the keys, and never makes keys.
func TestInitCluster(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDatabase(t)
	servers := startTrillian(t, 1)
	root := t.TempDir()
	initDir := filepath.Join(root, "init")
	cfg := node.Config{DataDir: initDir, DB: db, TrillianAddrs: addrs(servers), LogName: "cluster.test"}
	p, err := node.Init(ctx, cfg)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	if !p.Created || p.Origin != fmt.Sprintf("cluster.test/vigie/%d", p.TreeID) {
		t.Errorf("Init = %+v, want a created tree named cluster.test", p)
	}
	again, err := node.Init(ctx, node.Config{DataDir: initDir, DB: db, TrillianAddrs: addrs(servers)})
	if err != nil || again.Created || again.TreeID != p.TreeID || again.CheckpointVerifier != p.CheckpointVerifier {
		t.Errorf("Init again = %+v, %v; want tree %d unchanged", again, err, p.TreeID)
	}
	if got := liveTrees(t, servers[0].addr); len(got) != 1 || got[0] != p.TreeID {
		t.Errorf("trees after two inits: %v, want [%d]", got, p.TreeID)
	}

	nodeDir := filepath.Join(root, "node1")
	ncfg := node.Config{DataDir: nodeDir, DB: db, TrillianAddrs: addrs(servers), TreeID: p.TreeID, CheckpointInterval: 50 * time.Millisecond}
	// No keys: named, never made.
	_, err = node.Open(ctx, ncfg)
	if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), filepath.Join(nodeDir, "keys", "kek")) || !strings.Contains(err.Error(), "vigie init") {
		t.Errorf("Open without keys = %v, want an error naming keys/kek and vigie init", err)
	}
	if _, err := os.Stat(filepath.Join(nodeDir, "keys", "kek")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open without keys made keys/kek (%v)", err)
	}
	copyKeys(t, initDir, nodeDir)
	for _, tc := range []struct {
		name   string
		treeID int64
		want   string
	}{
		{"no tree id", 0, fmt.Sprintf("--trillian-tree-id is required with --trillian: this database's log is tree %d", p.TreeID)},
		{"another tree id", p.TreeID + 1, fmt.Sprintf("--trillian-tree-id %d: this database's log is tree %d", p.TreeID+1, p.TreeID)},
	} {
		c := ncfg
		c.TreeID = tc.treeID
		if _, err := node.Open(ctx, c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Open = %v, want %q", tc.name, err, tc.want)
		}
	}
	if got := liveTrees(t, servers[0].addr); len(got) != 1 {
		t.Errorf("trees after refused starts: %v, want one", got)
	}
	n, err := node.Open(ctx, ncfg)
	if err != nil {
		t.Fatalf("Open with the keys and the tree: %v", err)
	}
	defer n.Close(ctx)
	if n.Origin != p.Origin || n.Keys.CheckpointVerifier != p.CheckpointVerifier || n.Keys.ReceiptVerifier != p.ReceiptVerifier {
		t.Errorf("node: origin %q, keys %q %q; want init's %+v", n.Origin, n.Keys.CheckpointVerifier, n.Keys.ReceiptVerifier, p)
	}
	check(t, n, "cluster-1")
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := n.Ledger.WaitCheckpoint(wctx, 0); err != nil {
		t.Errorf("WaitCheckpoint: %v", err)
	}
}

// TestInitSharedKeys: vigie init makes the API's keys, which every node
// must share (a page token or a sign-in cookie made by one node is
// checked by another), and makes them again for a log an earlier init
// pinned without them; a node with --trillian missing one refuses to
// start, naming it, and makes none.
func TestInitSharedKeys(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDatabase(t)
	servers := startTrillian(t, 1)
	root := t.TempDir()
	initDir := filepath.Join(root, "init")
	shared := []string{"page-token.key", "portal-oidc-cookie.key", "token-issuer.key"}
	p, err := node.Init(ctx, node.Config{DataDir: initDir, DB: db, TrillianAddrs: addrs(servers), LogName: "shared.test"})
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	made := map[string][]byte{}
	for _, f := range shared {
		b, err := os.ReadFile(filepath.Join(node.KeysDir(initDir), f))
		if err != nil {
			t.Errorf("Init made no %s: %v", f, err)
		}
		made[f] = b
	}
	// An init of an earlier version made none: init again makes them,
	// and keeps those there are.
	if err := os.Remove(filepath.Join(node.KeysDir(initDir), "portal-oidc-cookie.key")); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Init(ctx, node.Config{DataDir: initDir, DB: db, TrillianAddrs: addrs(servers)}); err != nil {
		t.Fatalf("Init again: %v", err)
	}
	for _, f := range shared {
		b, err := os.ReadFile(filepath.Join(node.KeysDir(initDir), f))
		if err != nil {
			t.Errorf("Init again: no %s: %v", f, err)
		} else if f != "portal-oidc-cookie.key" && string(b) != string(made[f]) {
			t.Errorf("Init again changed %s", f)
		}
	}

	ncfg := node.Config{DataDir: filepath.Join(root, "node"), DB: db, TrillianAddrs: addrs(servers), TreeID: p.TreeID}
	for _, f := range []string{"page-token.key", "portal-oidc-cookie.key"} {
		copyKeys(t, initDir, ncfg.DataDir)
		missing := filepath.Join(node.KeysDir(ncfg.DataDir), f)
		if err := os.Remove(missing); err != nil {
			t.Fatal(err)
		}
		_, err := node.Open(ctx, ncfg)
		if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "vigie init") {
			t.Errorf("Open without %s = %v, want an error naming it and vigie init", f, err)
		}
		if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open made %s (%v)", f, err)
		}
	}
	copyKeys(t, initDir, ncfg.DataDir)
	n, err := node.Open(ctx, ncfg)
	if err != nil {
		t.Fatalf("Open with init's keys: %v", err)
	}
	n.Close(ctx)
}

// TestInitUninitialised: a node with --trillian on a database without a
// log refuses to start, and creates no tree.
func TestInitUninitialised(t *testing.T) {
	servers := startTrillian(t, 1)
	_, err := node.Open(context.Background(), node.Config{DataDir: t.TempDir(), DB: pgtest.NewDatabase(t), TrillianAddrs: addrs(servers), TreeID: 1})
	if err == nil || !strings.Contains(err.Error(), "run vigie init once") {
		t.Errorf("Open on a database without a log = %v, want an error saying to run vigie init", err)
	}
	if got := liveTrees(t, servers[0].addr); len(got) != 0 {
		t.Errorf("trees: %v, want none", got)
	}
}

// TestInitConcurrent: two vigie init at once on one database and one
// Trillian, each with its own data directory: one wins, the other fails,
// and one tree is left, the pinned one; the loser's keys are gone. Two at
// once on one data directory both return the one tree. On a database
// already migrated, both runs reach Trillian and the pinning: each makes
// a tree, and the loser deletes its own.
func TestInitConcurrent(t *testing.T) {
	ctx := context.Background()
	for round := range 4 {
		t.Run(fmt.Sprintf("round %d", round), func(t *testing.T) {
			db := pgtest.NewDatabase(t)
			if round > 0 {
				sdb, _, err := ledgersql.Open(ctx, ledgersql.DBConfig{PostgreSQL: db, Also: node.Migrations()})
				if err != nil {
					t.Fatal(err)
				}
				sdb.Close()
			}
			servers := startTrillian(t, 1)
			root := t.TempDir()
			dirs := []string{filepath.Join(root, "a"), filepath.Join(root, "b"), filepath.Join(root, "a")}
			results := make([]*node.Pinned, len(dirs))
			errs := make([]error, len(dirs))
			var wg sync.WaitGroup
			for i, d := range dirs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i], errs[i] = node.Init(ctx, node.Config{DataDir: d, DB: db, TrillianAddrs: addrs(servers), LogName: "race.test"})
				}()
			}
			wg.Wait()
			// a and its twin agree; exactly one of a and b won.
			if (errs[0] == nil) != (errs[2] == nil) {
				t.Fatalf("two runs on data directory a: %v and %v, want the same outcome", errs[0], errs[2])
			}
			winner, loser := 0, 1
			if errs[0] != nil {
				winner, loser = 1, 0
			}
			if errs[winner] != nil || errs[loser] == nil {
				t.Fatalf("Init a = %v, Init b = %v; want one success", errs[0], errs[1])
			}
			if errs[2] == nil && results[2].TreeID != results[0].TreeID {
				t.Errorf("two runs on data directory a: trees %d and %d", results[0].TreeID, results[2].TreeID)
			}
			t.Logf("winner %s, loser: %v", dirs[winner], errs[loser])
			if got := liveTrees(t, servers[0].addr); len(got) != 1 || got[0] != results[winner].TreeID {
				t.Errorf("trees: %v, want only the pinned %d", got, results[winner].TreeID)
			}
			for _, f := range []string{"checkpoint.key", "receipt.key", "kek", "pseudonym.key"} {
				if _, err := os.Stat(filepath.Join(node.KeysDir(dirs[loser]), f)); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("the loser's keys/%s is still there (%v)", f, err)
				}
			}
			// The loser, given the winner's keys, gets the same tree.
			copyKeys(t, dirs[winner], dirs[loser])
			p, err := node.Init(ctx, node.Config{DataDir: dirs[loser], DB: db, TrillianAddrs: addrs(servers)})
			if err != nil || p.TreeID != results[winner].TreeID || p.Created {
				t.Errorf("Init with the winner's keys = %+v, %v; want tree %d", p, err, results[winner].TreeID)
			}
		})
	}
}

// TestInitRace: two vigie init that both made a tree and keys pin them
// at once: the first to pin the origin wins; the other deletes its tree
// and its key files, and says which tree won.
func TestInitRace(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDatabase(t)
	servers := startTrillian(t, 1)
	root := t.TempDir()
	// Both runs wait for each other before pinning.
	var arrived sync.WaitGroup
	arrived.Add(2)
	defer node.SetBeforePin(func() {
		arrived.Done()
		arrived.Wait()
	})()
	// The migrations first: two runs migrating at once is another race
	// (TestInitConcurrent).
	sdb, _, err := ledgersql.Open(ctx, ledgersql.DBConfig{PostgreSQL: db, Also: node.Migrations()})
	if err != nil {
		t.Fatal(err)
	}
	sdb.Close()
	dirs := []string{filepath.Join(root, "a"), filepath.Join(root, "b")}
	results := make([]*node.Pinned, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, d := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = node.Init(ctx, node.Config{DataDir: d, DB: db, TrillianAddrs: addrs(servers), LogName: "race.test"})
		}()
	}
	wg.Wait()
	winner, loser := 0, 1
	if errs[0] != nil {
		winner, loser = 1, 0
	}
	if errs[winner] != nil || errs[loser] == nil {
		t.Fatalf("Init a = %v, Init b = %v; want one success", errs[0], errs[1])
	}
	if want := fmt.Sprintf("another vigie init pinned tree %d first", results[winner].TreeID); !strings.Contains(errs[loser].Error(), want) {
		t.Errorf("the loser's error = %v, want %q", errs[loser], want)
	}
	if got := liveTrees(t, servers[0].addr); len(got) != 1 || got[0] != results[winner].TreeID {
		t.Errorf("trees: %v, want only the pinned %d", got, results[winner].TreeID)
	}
	left, err := os.ReadDir(node.KeysDir(dirs[loser]))
	if err != nil || len(left) != 0 {
		t.Errorf("the loser's keys directory holds %v (%v), want nothing", left, err)
	}
}

// TestKeysPinned: each key is pinned in the database at the first start;
// a node whose key differs refuses to start, naming the key and its file,
// never its value.
func TestKeysPinned(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	n, err := node.Open(ctx, node.Config{DataDir: dir, LogName: "pin.test"})
	if err != nil {
		t.Fatal(err)
	}
	origin := n.Origin
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	keysDir := node.KeysDir(dir)
	secret := func() []byte {
		b := make([]byte, 32)
		rand.Read(b)
		return []byte(hex.EncodeToString(b) + "\n")
	}
	noteKey := func(name string) (skey, vkey []byte) {
		s, v, err := note.GenerateKey(rand.Reader, name)
		if err != nil {
			t.Fatal(err)
		}
		return []byte(s + "\n"), []byte(v + "\n")
	}
	for _, tc := range []struct {
		name  string
		files func() map[string][]byte
		want  string
	}{
		{"kek", func() map[string][]byte { return map[string][]byte{"kek": secret()} }, "the key-encryption key"},
		{"pseudonym", func() map[string][]byte { return map[string][]byte{"pseudonym.key": secret()} }, "the pseudonym key"},
		{"checkpoint", func() map[string][]byte {
			s, v := noteKey(origin)
			return map[string][]byte{"checkpoint.key": s, "checkpoint.pub": v}
		}, "the checkpoint key (" + filepath.Join(keysDir, "checkpoint.key") + ")"},
		{"receipt", func() map[string][]byte {
			s, v := noteKey(verify.ReceiptKeyName(origin))
			return map[string][]byte{"receipt.key": s, "receipt.pub": v}
		}, "the receipt key (" + filepath.Join(keysDir, "receipt.key") + ")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := tc.files()
			saved := map[string][]byte{}
			for f, b := range files {
				old, err := os.ReadFile(filepath.Join(keysDir, f))
				if err != nil {
					t.Fatal(err)
				}
				saved[f] = old
				if err := os.WriteFile(filepath.Join(keysDir, f), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			n, err := node.Open(ctx, node.Config{DataDir: dir})
			if err == nil {
				n.Close(ctx)
				t.Fatalf("Open with another %s key succeeded", tc.name)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "not the one this database was written with") {
				t.Errorf("Open with another %s key = %v, want a refusal naming %q", tc.name, err, tc.want)
			}
			for _, b := range files {
				// The whole file, and a note key's own bytes (after
				// "name+hash+", or "PRIVATE+KEY+name+hash+").
				v := strings.TrimSpace(string(b))
				parts := []string{v}
				if strings.HasPrefix(v, "PRIVATE+KEY+") {
					parts = append(parts, strings.SplitN(v, "+", 5)[4])
				} else if strings.Contains(v, "+") {
					parts = append(parts, strings.SplitN(v, "+", 3)[2])
				}
				for _, part := range parts {
					if strings.Contains(err.Error(), part) {
						t.Errorf("the refusal quotes the key: %v", err)
					}
				}
			}
			for f, b := range saved {
				if err := os.WriteFile(filepath.Join(keysDir, f), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	n, err = node.Open(ctx, node.Config{DataDir: dir})
	if err != nil {
		t.Fatalf("Open with the first keys again: %v", err)
	}
	n.Close(ctx)
}

// TestClusterTrillianFailover: with --trillian naming two log servers on
// one storage, recording and checkpoints go on when one of them stops.
func TestClusterTrillianFailover(t *testing.T) {
	ctx := context.Background()
	servers := startTrillian(t, 2)
	dir := filepath.Join(t.TempDir(), "data")
	p, err := node.Init(ctx, node.Config{DataDir: dir, TrillianAddrs: addrs(servers), LogName: "failover.test"})
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(ctx, node.Config{DataDir: dir, TrillianAddrs: addrs(servers), TreeID: p.TreeID, CheckpointInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(ctx)
	wait := func(index uint64) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := n.Ledger.WaitCheckpoint(wctx, index); err != nil {
			t.Fatalf("WaitCheckpoint(%d): %v", index, err)
		}
	}
	for i := range 10 {
		check(t, n, fmt.Sprintf("before-%d", i))
	}
	wait(9)
	if servers[1].calls.Load() == 0 || servers[0].calls.Load() == 0 {
		t.Fatalf("calls served: %d and %d, want both servers used", servers[0].calls.Load(), servers[1].calls.Load())
	}
	// The second server stops; the first, which also sequences, stays.
	if err := servers[1].e.Close(); err != nil {
		t.Fatal(err)
	}
	before := servers[0].calls.Load()
	for i := range 10 {
		check(t, n, fmt.Sprintf("after-%d", i))
	}
	wait(19)
	if servers[0].calls.Load() == before {
		t.Error("no call reached the server left")
	}
	if err := n.Ready(ctx); err != nil {
		t.Errorf("Ready after a log server stopped: %v", err)
	}
}

// TestInitEmbedded: vigie init without --trillian makes what a first
// start makes; the node then opens on that tree and those keys, and init
// again changes nothing.
func TestInitEmbedded(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	p, err := node.Init(ctx, node.Config{DataDir: dir, LogName: "laptop.test"})
	if err != nil || !p.Created {
		t.Fatalf("Init = %+v, %v", p, err)
	}
	n, err := node.Open(ctx, node.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if n.Origin != p.Origin || n.Keys.CheckpointVerifier != p.CheckpointVerifier {
		t.Errorf("node: origin %q, key %q; want init's %+v", n.Origin, n.Keys.CheckpointVerifier, p)
	}
	check(t, n, "embedded-1")
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := node.Init(ctx, node.Config{DataDir: dir})
	if err != nil || again.Created || again.TreeID != p.TreeID {
		t.Errorf("Init again = %+v, %v; want tree %d unchanged", again, err, p.TreeID)
	}
}

// TestInitResumes: keys made by a run that stopped before pinning name
// their tree: the next run on another (empty) database takes that tree
// again, while it is empty, and makes no other; once it has leaves, it is
// another database's log and init refuses it.
func TestInitResumes(t *testing.T) {
	ctx := context.Background()
	servers := startTrillian(t, 1)
	dir := filepath.Join(t.TempDir(), "data")
	first, err := node.Init(ctx, node.Config{DataDir: dir, DB: pgtest.NewDatabase(t), TrillianAddrs: addrs(servers), LogName: "resume.test"})
	if err != nil {
		t.Fatal(err)
	}
	db := pgtest.NewDatabase(t)
	p, err := node.Init(ctx, node.Config{DataDir: dir, DB: db, TrillianAddrs: addrs(servers)})
	if err != nil || p.TreeID != first.TreeID || !p.Created {
		t.Fatalf("Init on a new database = %+v, %v; want tree %d pinned there", p, err, first.TreeID)
	}
	if got := liveTrees(t, servers[0].addr); len(got) != 1 {
		t.Errorf("trees: %v, want one", got)
	}
	n, err := node.Open(ctx, node.Config{DataDir: dir, DB: db, TrillianAddrs: addrs(servers), TreeID: p.TreeID, CheckpointInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	check(t, n, "resume-1")
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := n.Ledger.WaitCheckpoint(wctx, 0); err != nil {
		t.Fatal(err)
	}
	n.Close(ctx)
	_, err = node.Init(ctx, node.Config{DataDir: dir, DB: pgtest.NewDatabase(t), TrillianAddrs: addrs(servers)})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("names Trillian tree %d, which has ", p.TreeID)) || !strings.Contains(err.Error(), " leaves, and this database pins no log") {
		t.Errorf("Init on a third database = %v, want a refusal naming the tree and its leaves", err)
	}
	if _, err := os.Stat(filepath.Join(node.KeysDir(dir), "checkpoint.key")); err != nil {
		t.Errorf("the refused run removed the keys: %v", err)
	}
}
