package node_test

import (
	"context"
	"fmt"
	"github.com/vigie-sante/vigie/ledger/sqldb"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"

	"github.com/vigie-sante/vigie/cmd/vigie/internal/node"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/sqldb/pgtest"
)

func TestMain(m *testing.M) {
	klog.SetLogger(logr.Discard()) // Trillian's chatter
	os.Exit(m.Run())
}

// TestOpenReopen: a node opened, used and closed opens again on the same
// data directory with the same tree, origin and keys; a refused start
// (another log name) closes what it opened, so the next start gets the
// files' locks; Close may be called twice.
func TestOpenReopen(t *testing.T) {
	ctx := context.Background()
	cfg := node.Config{DataDir: filepath.Join(t.TempDir(), "data"), LogName: "node.test"}
	n, err := node.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Ready(ctx); err != nil {
		t.Errorf("Ready = %v", err)
	}
	if !strings.HasPrefix(n.Origin, "node.test/") || !strings.HasPrefix(n.Where, "SQLite ") {
		t.Errorf("origin %q, Trillian on %q", n.Origin, n.Where)
	}
	ins, err := ident.ParseINS("279035121518989")
	if err != nil {
		t.Fatal(err)
	}
	rpps, _ := ident.ParseRPPS("10000000001")
	org, _ := ident.ParseFINESS("750712184")
	d, _, err := n.Consent.Check(ctx, consent.Request{ID: "r-1", Service: "his", Patient: ins,
		Actor:  consent.Actor{RPPS: rpps, Profession: "10", Sector: "care", Organization: org, CareTeam: true},
		Action: consent.ActionRead, Resource: consent.Resource{Kind: consent.ResourceRecord}, Purpose: consent.PurposeTreatment})
	if err != nil || d.Effect != consent.Allow {
		t.Fatalf("Check = %v, %v", d.Effect, err)
	}
	first := struct{ origin, key string }{n.Origin, n.Keys.CheckpointVerifier}
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(ctx); err != nil {
		t.Errorf("second Close = %v", err)
	}

	other := cfg
	other.LogName = "other.test"
	if _, err := node.Open(ctx, other); err == nil || !strings.Contains(err.Error(), "never changes") {
		t.Fatalf("Open with another log name = %v, want a refusal", err)
	}

	n, err = node.Open(ctx, node.Config{DataDir: cfg.DataDir})
	if err != nil {
		t.Fatalf("Open after a refused start: %v", err)
	}
	defer n.Close(ctx)
	if n.Origin != first.origin || n.Keys.CheckpointVerifier != first.key {
		t.Errorf("reopened with origin %q and key %q, want %q and %q", n.Origin, n.Keys.CheckpointVerifier, first.origin, first.key)
	}
	if got, err := n.Ledger.ChainLength(ctx, ins); err != nil || got != 1 {
		t.Errorf("ChainLength after reopening = %d, %v; want the one event", got, err)
	}
}

// TestTrillianLeaseLost: a node running Trillian in process on PostgreSQL
// whose lease another node took over (this one paused past its TTL, say)
// must stop: Lost is closed and the node is no longer ready, so that two
// sequencers never run on one storage for long.
func TestTrillianLeaseLost(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDatabase(t)
	n, err := node.Open(ctx, node.Config{DataDir: filepath.Join(t.TempDir(), "data"), DB: db, LogName: "node.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(ctx)
	if n.Lost() == nil {
		t.Fatal("Lost() = nil for a node running Trillian in process on PostgreSQL")
	}
	if err := n.Ready(ctx); err != nil {
		t.Fatalf("Ready before the takeover: %v", err)
	}
	// Another node takes the lease over: a new owner, the epoch bumped.
	if err := n.DB.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		k, err := tx.Exec(ctx, "UPDATE leases SET owner = 'another-node', epoch = epoch + 1, expires_micros = expires_micros + 600000000 WHERE name = $1", ledger.LeaseTrillian)
		if err == nil && k != 1 {
			err = fmt.Errorf("%d lease rows updated, want 1", k)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.Lost():
	case <-time.After(2 * ledger.DefaultLeaseTTL):
		t.Fatal("Lost not closed after another node took the in-process Trillian's lease")
	}
	if err := n.Ready(ctx); err == nil {
		t.Error("Ready after losing the in-process Trillian's lease = nil, want an error")
	}
}

// TestOneInProcessTrillian: on one PostgreSQL database, a second node with
// an in-process Trillian refuses to start, naming --trillian, while the
// first runs; once the first is closed (its lease released), a node
// starts at once.
func TestOneInProcessTrillian(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDatabase(t)
	cfg := node.Config{DataDir: filepath.Join(t.TempDir(), "data"), DB: db, LogName: "node.test"}
	first, err := node.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close(ctx)
	second := node.Config{DataDir: filepath.Join(t.TempDir(), "second"), DB: db, LogName: "node.test"}
	if n, err := node.Open(ctx, second); err == nil || !strings.Contains(err.Error(), "--trillian") {
		if n != nil {
			n.Close(ctx)
		}
		t.Fatalf("a second node with Trillian in process = %v, want a refusal naming --trillian", err)
	}
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// A held lease makes Open refuse at once (above), never wait: that
	// this Open succeeds is the proof that Close released the lease
	// rather than leaving it to expire.
	again, err := node.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open after the first node closed: %v", err)
	}
	defer again.Close(ctx)
}
