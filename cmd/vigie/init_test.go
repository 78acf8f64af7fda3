package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vigie-sante/vigie/ledger/sqldb/pgtest"
	vtrillian "github.com/vigie-sante/vigie/ledger/trillian"
	"github.com/vigie-sante/vigie/ledger/trillian/sqlite"
)

// startLogServer starts a Trillian log server (and sequencer) on a
// loopback port, over SQLite, as an external Trillian for the cluster
// mode.
func startLogServer(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "trillian.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e, err := vtrillian.Start(ctx, vtrillian.Config{LogStorage: s.LogStorage(), AdminStorage: s.AdminStorage(), Listener: lis})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return lis.Addr().String()
}

// TestInitThenNodes is the cluster's start-up as docs/operations.md
// tells it: vigie init once, the keys copied, nodes started with
// --trillian and --trillian-tree-id; a node without the tree id, or
// before init, refuses to start and names what is missing.
func TestInitThenNodes(t *testing.T) {
	db := pgtest.NewDatabase(t)
	addr := startLogServer(t)
	root := t.TempDir()
	initDir := filepath.Join(root, "init")

	code, out := runVigie(t, nil, "serve", "--db", db, "--trillian", addr, "--trillian-tree-id", "1", "--data-dir", filepath.Join(root, "early"))
	if code != exitFailure || !strings.Contains(out, "run vigie init once") {
		t.Errorf("serve before init: exit %d, output:\n%s", code, out)
	}

	code, out = runVigie(t, nil, "init", "--db", db, "--trillian", addr, "--data-dir", initDir, "--log-name", "cluster.example", "--json")
	var p struct {
		TreeID        string `json:"tree_id"`
		Origin        string `json:"origin"`
		CheckpointKey string `json:"checkpoint_key"`
		Created       bool   `json:"created"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &p) != nil || !p.Created || p.Origin != "cluster.example/vigie/"+p.TreeID {
		t.Fatalf("init: exit %d, output:\n%s", code, out)
	}
	code, out = runVigie(t, nil, "init", "--db", db, "--trillian", addr, "--data-dir", initDir)
	if code != exitOK || !strings.Contains(out, "Trillian tree "+p.TreeID+":") || !strings.Contains(out, "nothing changed") {
		t.Errorf("init again: exit %d, output:\n%s", code, out)
	}

	nodeDir := filepath.Join(root, "node")
	code, out = runVigie(t, nil, "serve", "--db", db, "--trillian", addr, "--trillian-tree-id", p.TreeID, "--data-dir", nodeDir)
	if code != exitFailure || !strings.Contains(out, filepath.Join(nodeDir, "keys", "kek")+" is missing") || !strings.Contains(out, "vigie init") {
		t.Errorf("serve without the keys: exit %d, output:\n%s", code, out)
	}
	copyKeys(t, initDir, nodeDir)
	code, out = runVigie(t, nil, "serve", "--db", db, "--trillian", addr, "--data-dir", nodeDir)
	if code != exitFailure || !strings.Contains(out, "--trillian-tree-id is required with --trillian: this database's log is tree "+p.TreeID) {
		t.Errorf("serve without --trillian-tree-id: exit %d, output:\n%s", code, out)
	}
	// Two nodes, each with its copy of the keys.
	var nodes []*serveProc
	for _, name := range []string{"node-a", "node-b"} {
		dir := filepath.Join(root, name)
		copyKeys(t, initDir, dir)
		nodes = append(nodes, startServe(t, "--db", db, "--trillian", addr+","+addr, "--trillian-tree-id", p.TreeID, "--data-dir", dir))
	}
	for _, n := range nodes {
		n.waitReady(t)
		if !strings.Contains(n.output(), "log origin:     "+p.Origin) || !strings.Contains(n.output(), "checkpoint key: "+p.CheckpointKey) {
			t.Errorf("a node's banner does not show init's origin and key:\n%s", n.output())
		}
	}
	for _, n := range nodes {
		if code := n.stop(t, syscall.SIGTERM); code != 0 {
			t.Errorf("exit code %d\n%s", code, n.stderr)
		}
	}
}

// copyKeys copies the keys directory of a data directory to another's, as
// cp -p does (secret files keep their mode).
func copyKeys(t *testing.T, from, to string) {
	t.Helper()
	src, dst := filepath.Join(from, "keys"), filepath.Join(to, "keys")
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
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTrillianFlagValidated: --trillian is a list of host:port; anything
// else stops serve and init before anything starts, naming the flag and
// not its value.
func TestTrillianFlagValidated(t *testing.T) {
	for _, cmd := range []string{"serve", "init"} {
		for _, v := range []string{"secret-host", "127.0.0.1:1,", ",127.0.0.1:1", "127.0.0.1:1,:2", "127.0.0.1:"} {
			var out bytes.Buffer
			dir := t.TempDir()
			code := run(context.Background(), []string{cmd, "--data-dir", dir, "--trillian", v}, &out, &out)
			if code == exitOK || !strings.Contains(out.String(), "--trillian: want host:port[,host:port...]") || (v == "secret-host" && strings.Contains(out.String(), v)) {
				t.Errorf("%s --trillian %q: exit %d:\n%s", cmd, v, code, out.String())
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("%s --trillian %q wrote %v", cmd, v, entries)
			}
		}
	}
}
