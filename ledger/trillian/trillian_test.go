package trillian_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tpb "github.com/google/trillian"
	"github.com/google/trillian/integration"
	"github.com/google/trillian/storage"

	"github.com/vigie-sante/vigie/ledger/sqldb/pgtest"
	vtrillian "github.com/vigie-sante/vigie/ledger/trillian"
	"github.com/vigie-sante/vigie/ledger/trillian/sqlite"
)

type provider interface {
	LogStorage() storage.LogStorage
	AdminStorage() storage.AdminStorage
	Close() error
}

func openSQLite(t *testing.T) provider {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "trillian.db"), sqlite.Options{})
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openPostgreSQL(t *testing.T) provider {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	p, err := vtrillian.OpenPostgreSQL(context.Background(), dsn, nil)
	if err != nil {
		t.Fatalf("OpenPostgreSQL: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func start(t *testing.T, p provider) *vtrillian.Embedded {
	t.Helper()
	e, err := vtrillian.Start(context.Background(), vtrillian.Config{
		LogStorage:        p.LogStorage(),
		AdminStorage:      p.AdminStorage(),
		SequencerInterval: 50 * time.Millisecond,
		BatchSize:         100,
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func integrationParams(treeID int64) integration.TestParameters {
	p := integration.DefaultTestParameters(treeID)
	p.SequencingWaitTotal = 2 * time.Minute
	p.SequencingPollWait = 100 * time.Millisecond
	return p
}

// runLogIntegration runs Trillian's own end-to-end log test on a LOG tree:
// it queues 1,000 leaves through QueueLeaf, waits for the sequencer, reads
// them back and checks roots and proofs against an independent tree.
func runLogIntegration(t *testing.T, p provider) {
	ctx := context.Background()
	e := start(t, p)
	tree, err := vtrillian.EnsureTree(ctx, e.Clients, vtrillian.TreeSpec{DisplayName: "integration", Type: tpb.TreeType_LOG})
	if err != nil {
		t.Fatalf("EnsureTree: %v", err)
	}
	if err := integration.RunLogIntegration(e.Log, integrationParams(tree.TreeId)); err != nil {
		t.Fatalf("RunLogIntegration: %v", err)
	}
}

// runPreorderedLogIntegration runs the same test on a PREORDERED_LOG tree,
// which QueueLeaf does not accept: the leaves the test expects are first
// added at their indices through AddSequencedLeaves.
func runPreorderedLogIntegration(t *testing.T, p provider) {
	ctx := context.Background()
	e := start(t, p)
	tree, err := vtrillian.EnsureTree(ctx, e.Clients, vtrillian.TreeSpec{DisplayName: "integration", Type: tpb.TreeType_PREORDERED_LOG})
	if err != nil {
		t.Fatalf("EnsureTree: %v", err)
	}
	params := integrationParams(tree.TreeId)
	const batch = 100
	for i := int64(0); i < params.LeafCount; i += batch {
		req := &tpb.AddSequencedLeavesRequest{LogId: tree.TreeId}
		for j := i; j < min(i+batch, params.LeafCount); j++ {
			req.Leaves = append(req.Leaves, &tpb.LogLeaf{
				LeafValue: fmt.Appendf(nil, "Leaf %d", j),
				ExtraData: fmt.Appendf(nil, "Extra %d", j),
				LeafIndex: j,
			})
		}
		resp, err := e.Log.AddSequencedLeaves(ctx, req)
		if err != nil {
			t.Fatalf("AddSequencedLeaves(%d): %v", i, err)
		}
		for k, r := range resp.Results {
			if r.GetStatus().GetCode() != 0 {
				t.Fatalf("AddSequencedLeaves(%d): leaf %d: %v", i, k, r.GetStatus())
			}
		}
	}
	params.QueueLeaves = false
	params.CheckLogEmpty = false
	if err := integration.RunLogIntegration(e.Log, params); err != nil {
		t.Fatalf("RunLogIntegration: %v", err)
	}
}

func TestLogIntegrationSQLite(t *testing.T)           { runLogIntegration(t, openSQLite(t)) }
func TestPreorderedLogIntegrationSQLite(t *testing.T) { runPreorderedLogIntegration(t, openSQLite(t)) }
func TestLogIntegrationPostgreSQL(t *testing.T)       { runLogIntegration(t, openPostgreSQL(t)) }
func TestPreorderedLogIntegrationPostgreSQL(t *testing.T) {
	runPreorderedLogIntegration(t, openPostgreSQL(t))
}

// TestEnsureTreeFindsItAgain checks that the tree created on first start is
// the one found after a restart, and that a tree ID pins it.
func TestEnsureTreeFindsItAgain(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "trillian.db")
	spec := vtrillian.TreeSpec{DisplayName: "vigie", Type: tpb.TreeType_PREORDERED_LOG}

	var first int64
	for run := range 2 {
		s, err := sqlite.Open(ctx, path, sqlite.Options{})
		if err != nil {
			t.Fatalf("run %d: Open: %v", run, err)
		}
		e, err := vtrillian.Start(ctx, vtrillian.Config{LogStorage: s.LogStorage(), AdminStorage: s.AdminStorage()})
		if err != nil {
			t.Fatalf("run %d: Start: %v", run, err)
		}
		tree, err := vtrillian.EnsureTree(ctx, e.Clients, spec)
		if err != nil {
			t.Fatalf("run %d: EnsureTree: %v", run, err)
		}
		if run == 0 {
			first = tree.TreeId
		} else if tree.TreeId != first {
			t.Errorf("run %d: EnsureTree = tree %d, want %d", run, tree.TreeId, first)
		}
		byID, err := vtrillian.EnsureTree(ctx, e.Clients, vtrillian.TreeSpec{TreeID: first, Type: tpb.TreeType_PREORDERED_LOG})
		if err != nil || byID.TreeId != first {
			t.Errorf("run %d: EnsureTree(id %d) = %v, %v", run, first, byID.GetTreeId(), err)
		}
		if _, err := vtrillian.EnsureTree(ctx, e.Clients, vtrillian.TreeSpec{TreeID: first, Type: tpb.TreeType_LOG}); err == nil {
			t.Errorf("run %d: EnsureTree with the wrong type succeeded", run)
		}
		e.Close()
		s.Close()
	}
}

// TestPostgreSQLSchemaMatchesTrillian keeps our copy of Trillian's
// PostgreSQL schema identical to the one in the Trillian module we build
// with.
func TestPostgreSQLSchemaMatchesTrillian(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/google/trillian").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	want, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "storage", "postgresql", "schema", "storage.sql"))
	if err != nil {
		t.Fatalf("read Trillian's schema: %v", err)
	}
	got, err := os.ReadFile("postgresql_schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	// Our copy starts with a header naming its origin, then a blank line.
	_, body, ok := bytes.Cut(got, []byte("\n\n"))
	if !ok || !bytes.Equal(body, want) {
		t.Errorf("postgresql_schema.sql differs from Trillian's storage/postgresql/schema/storage.sql: copy it again")
	}
}
