package ledger

import "context"

// QueuedRecords is how many Record calls wait for the next transaction
// (tests order calls into one batch with it).
func QueuedRecords(l *Ledger) int {
	l.batch.mu.Lock()
	defer l.batch.mu.Unlock()
	return len(l.batch.pending)
}

// The rounds of the duties in the term of epoch of their lease, as a node
// that still believes it holds it (fencing tests).

func SendOnce(l *Ledger, ctx context.Context, epoch uint64) (int, error) {
	return l.sendOnce(ctx, term{l.leases[LeaseSender], epoch})
}

func CheckpointOnce(l *Ledger, ctx context.Context, epoch uint64) (bool, error) {
	return l.checkpointOnce(ctx, term{l.leases[LeaseCheckpointer], epoch})
}

func RunDueErasuresIn(l *Ledger, ctx context.Context, epoch uint64) (int, error) {
	return l.runDueErasures(ctx, term{l.leases[LeaseErasures], epoch})
}

// TryLease makes one attempt to take or renew a duty's lease.
func TryLease(l *Ledger, ctx context.Context, name string) (uint64, error) {
	return l.leases[name].Try(ctx)
}

// ReleaseLease frees a duty's lease if the ledger holds it.
func ReleaseLease(l *Ledger, ctx context.Context, name string) error {
	return l.leases[name].Release(ctx)
}

// CheckKEK is New's check of a KEKNamer's KEK.
func CheckKEK(ctx context.Context, store Store, w KeyWrapper, name string) error {
	return checkKEK(ctx, store, w, name)
}
