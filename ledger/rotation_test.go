package ledger_test

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// TestRotateCheckpointKey: the rotation waits for the checkpointer's
// lease (no node signs meanwhile), signs a transition of the latest
// checkpoint by both keys, served by Transitions; then a ledger starts
// only with the new key (the old one is refused, named), and signs with
// it; a second rotation chains on the first.
func TestRotateCheckpointKey(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) { testRotateCheckpointKey(t, "") })
	t.Run("PostgreSQL", func(t *testing.T) { testRotateCheckpointKey(t, ledgertest.Postgres(t)) })
}

func testRotateCheckpointKey(t *testing.T, pg string) {
	env := ledgertest.New(t, ledgertest.Options{PostgreSQL: pg, LeaseTTL: 300 * time.Millisecond})
	rec := record(t, env.Ledger, access("alice", 1))
	if err := env.Ledger.WaitCheckpoint(ctx, rec.Index); err != nil {
		t.Fatal(err)
	}
	skey, nextKey, err := note.GenerateKey(rand.Reader, env.Origin)
	if err != nil {
		t.Fatal(err)
	}
	next, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	old := env.Config
	if _, err := ledger.RotateCheckpointKey(ctx, env.Store, "rotate", old.CheckpointSigner, next, nextKey); !errors.Is(err, ledger.ErrLeaseHeld) {
		t.Fatalf("rotation while a node signs = %v, want ErrLeaseHeld", err)
	}
	env.Kill()
	time.Sleep(400 * time.Millisecond) // the killed node's leases expire
	if _, err := ledger.RotateCheckpointKey(ctx, env.Store, "rotate", next, next, nextKey); !errors.Is(err, ledger.ErrRotated) {
		t.Fatalf("rotation signed by a key that is not the log's = %v, want ErrRotated", err)
	}
	signed, err := ledger.RotateCheckpointKey(ctx, env.Store, "rotate", old.CheckpointSigner, next, nextKey)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := verify.OpenTransition(signed, env.CheckpointKey)
	if err != nil || tr.NextKey != nextKey {
		t.Fatalf("transition = %q, %v; want one to the next key", tr.NextKey, err)
	}
	_, size, err := env.Ledger.LatestCheckpoint(ctx)
	if err != nil || tr.Size != size {
		t.Errorf("transition of size %d, want the latest checkpoint's %d (%v)", tr.Size, size, err)
	}
	if ts, err := env.Ledger.Transitions(ctx); err != nil || len(ts) != 1 || string(ts[0]) != string(signed) {
		t.Errorf("Transitions = %d notes, %v; want the transition", len(ts), err)
	}

	_, err = ledger.New(ctx, old, env.Store, env.Log)
	if !errors.Is(err, ledger.ErrRotated) || !strings.Contains(err.Error(), "replaced by a rotation") || !strings.Contains(err.Error(), old.CheckpointKeyFile) {
		t.Fatalf("New with the old key = %v, want ErrRotated naming the key", err)
	}
	if strings.Contains(err.Error(), old.CheckpointVerifier) || strings.Contains(err.Error(), nextKey) {
		t.Errorf("New with the old key = %v, quotes a key", err)
	}
	cfg := old
	cfg.CheckpointSigner, cfg.CheckpointVerifier = next, nextKey
	l, err := ledger.New(ctx, cfg, env.Store, env.Log)
	if err != nil {
		t.Fatalf("New with the new key: %v", err)
	}
	l.Start(ctx)
	defer l.Close(ctx)
	rec = record(t, l, access("bob", 1))
	if err := l.WaitCheckpoint(ctx, rec.Index); err != nil {
		t.Fatal(err)
	}
	n, _, err := l.LatestCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := note.NewVerifier(nextKey)
	if _, err := verify.OpenCheckpoint(n, v); err != nil {
		t.Errorf("checkpoint after the rotation: %v, want signed by the new key", err)
	}
	if _, err := verify.OpenCheckpoint(n, env.CheckpointKey); err == nil {
		t.Errorf("checkpoint after the rotation opens with the old key")
	}
}
