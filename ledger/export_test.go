package ledger

// QueuedRecords is how many Record calls wait for the next transaction
// (tests order calls into one batch with it).
func QueuedRecords(l *Ledger) int {
	l.batch.mu.Lock()
	defer l.batch.mu.Unlock()
	return len(l.batch.pending)
}
