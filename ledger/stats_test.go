package ledger_test

import (
	"testing"
	"time"

	"github.com/vigie-sante/vigie/ledger/ledgertest"
)

// TestStats follows the ledger's counters from recorded to signed: the
// outbox and the integration lag grow while the background work is
// stopped, and fall to zero once it has run.
func TestStats(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	env := ledgertest.New(t, ledgertest.Options{NoStart: true, Now: func() time.Time { return now }})
	s, err := env.Ledger.Stats(ctx)
	if err != nil || s.Recorded != 0 || s.Outbox() != 0 || !s.CheckpointTime.IsZero() || s.IntegrationLag(now) != 0 {
		t.Fatalf("Stats of an empty ledger = %+v, %v", s, err)
	}
	for i := range 3 {
		record(t, env.Ledger, access("alice", i))
	}
	s, err = env.Ledger.Stats(ctx)
	if err != nil || s.Recorded != 3 || s.Sent != 0 || s.Outbox() != 3 || s.Unsigned() != 3 {
		t.Fatalf("Stats before sending = %+v, %v; want 3 recorded, 3 in the outbox", s, err)
	}
	if lag := s.IntegrationLag(now.Add(4 * time.Second)); lag != 4*time.Second {
		t.Errorf("integration lag 4s after the first event = %v", lag)
	}

	env.Start()
	if err := env.Ledger.WaitCheckpoint(ctx, 2); err != nil {
		t.Fatal(err)
	}
	s, err = env.Ledger.Stats(ctx)
	if err != nil || s.Outbox() != 0 || s.Unsigned() != 0 || s.CheckpointSize != 3 || !s.CheckpointTime.Equal(now) || s.IntegrationLag(now.Add(time.Hour)) != 0 {
		t.Fatalf("Stats after a checkpoint = %+v, %v; want everything signed at %v", s, err, now)
	}
}
