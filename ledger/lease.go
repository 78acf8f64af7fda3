package ledger

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// The leases of the ledger's duties: each is done by one node at a time,
// the holder of its lease (StoreTx.AcquireLease), and every write it
// makes checks the lease's epoch in its own transaction
// (StoreTx.CheckLease), so that a node that lost a lease writes nothing
// more under it.
const (
	// LeaseSender is the sender's: the outbox to the log in index order,
	// and MarkSent.
	LeaseSender = "sender"
	// LeaseCheckpointer is the checkpointer's: AddCheckpoint, and the
	// security events it stores.
	LeaseCheckpointer = "checkpointer"
	// LeaseErasures is the scheduled erasures'.
	LeaseErasures = "erasures"
	// LeaseTrillian is held (HoldLease) by the node that runs an
	// in-process Trillian on a shared PostgreSQL database: two sequencers
	// on one Trillian storage are unsafe, and Trillian's writes cannot
	// check an epoch, so a second such node refuses to start.
	LeaseTrillian = "trillian-in-process"
)

// DefaultLeaseTTL is Config.LeaseTTL's default.
const DefaultLeaseTTL = 3 * time.Second

// NewOwner returns a lease owner's name for this process, unique among
// the processes of all nodes: the host's name, the process id and 64
// random bits. It names nothing but the process.
func NewOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	b := make([]byte, 8)
	rand.Read(b)
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))
}

// LeaseHolder takes and keeps one lease for its owner. It takes the lease
// when it is free or expired, renews it at a third of its time to live,
// and considers it held only until its time to live has passed since the
// start of its last successful renewal, by this process's monotonic
// clock: a holder that cannot renew stops acting before another node can
// take the lease over (the database's clock counts for that, and only the
// rates of the clocks must agree, not their times). Correctness rests on
// the epoch alone: a write made under the lease calls Check in its
// transaction.
//
// A LeaseHolder is safe for concurrent use.
type LeaseHolder struct {
	store  Store
	name   string
	owner  string
	ttl    time.Duration
	logger *slog.Logger
	gained func() // called when a term begins

	mu        sync.Mutex
	epoch     uint64    // the current or last term's
	held      bool      // a term is on
	until     time.Time // it ends then, by the monotonic clock
	takeovers uint64    // terms begun by this holder
	lost      uint64    // terms that ended without a release
}

// NewLeaseHolder returns a holder of the lease name for owner, taken for
// ttl at a time. It takes nothing yet (Try, Run). gained, if not nil, is
// called whenever a term begins.
func NewLeaseHolder(store Store, name, owner string, ttl time.Duration, logger *slog.Logger, gained func()) *LeaseHolder {
	if logger == nil {
		logger = slog.Default()
	}
	return &LeaseHolder{store: store, name: name, owner: owner, ttl: ttl, logger: logger, gained: gained}
}

// Name returns the lease's name.
func (h *LeaseHolder) Name() string { return h.name }

// Held returns the epoch of the current term and true while the lease is
// held by this holder's clock.
func (h *LeaseHolder) Held() (uint64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held && time.Now().After(h.until) {
		h.held = false
		h.lost++
		h.logger.Warn("ledger: lease not renewed in time, duty stopped", "lease", h.name, "epoch", h.epoch)
	}
	return h.epoch, h.held
}

// Try makes one attempt to take or renew the lease and returns the epoch
// of the term held. It fails with an error wrapping ErrLeaseHeld if
// another node holds the lease; on another error the term, if any, goes
// on until its time runs out.
func (h *LeaseHolder) Try(ctx context.Context) (uint64, error) {
	start := time.Now()
	var l Lease
	err := h.store.ReadWrite(ctx, func(ctx context.Context, tx StoreTx) error {
		var err error
		l, err = tx.AcquireLease(ctx, h.name, h.owner, h.ttl)
		return err
	})
	if errors.Is(err, ErrLeaseHeld) {
		h.end(0, "taken over by another node")
		return 0, err
	}
	if err != nil {
		return 0, err
	}
	h.mu.Lock()
	began := !h.held || h.epoch != l.Epoch
	h.epoch, h.held, h.until = l.Epoch, true, start.Add(h.ttl)
	if began {
		h.takeovers++
	}
	h.mu.Unlock()
	if began {
		h.logger.Info("ledger: lease taken", "lease", h.name, "epoch", l.Epoch)
		if h.gained != nil {
			h.gained()
		}
	}
	return l.Epoch, nil
}

// Lost ends the term of epoch, if it is the current one: a write under it
// failed with ErrLeaseLost.
func (h *LeaseHolder) Lost(epoch uint64) { h.end(epoch, "a write found it taken over") }

// end ends the current term if its epoch is epoch (0: any).
func (h *LeaseHolder) end(epoch uint64, why string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.held || (epoch != 0 && epoch != h.epoch) {
		return
	}
	h.held = false
	h.lost++
	h.logger.Warn("ledger: lease lost, duty stopped", "lease", h.name, "epoch", h.epoch, "why", why)
}

// Check fails with an error wrapping ErrLeaseLost unless the term of epoch
// is still the lease's in tx: a duty calls it in the transaction of each
// of its writes.
func (h *LeaseHolder) Check(ctx context.Context, tx StoreTx, epoch uint64) error {
	return tx.CheckLease(ctx, h.name, h.owner, epoch)
}

// Run takes or renews the lease every third of its time to live until
// ctx is done (it does not release it: Release does).
func (h *LeaseHolder) Run(ctx context.Context) {
	for {
		h.renew(ctx)
		wait(ctx, h.ttl/3, nil)
		if ctx.Err() != nil {
			return
		}
	}
}

// renew makes one attempt to take or renew the lease, logging an error
// other than another node's holding it.
func (h *LeaseHolder) renew(ctx context.Context) {
	if _, err := h.Try(ctx); err != nil && !errors.Is(err, ErrLeaseHeld) && ctx.Err() == nil {
		h.logger.Warn("ledger: lease", "lease", h.name, "err", err)
	}
}

// Release ends the term and frees the lease in the store, so that another
// node takes it at its next attempt instead of after the lease's time.
func (h *LeaseHolder) Release(ctx context.Context) error {
	h.mu.Lock()
	epoch, held := h.epoch, h.held
	h.held = false
	h.mu.Unlock()
	if !held {
		return nil
	}
	err := h.store.ReadWrite(ctx, func(ctx context.Context, tx StoreTx) error {
		return tx.ReleaseLease(ctx, h.name, h.owner, epoch)
	})
	if err != nil {
		return fmt.Errorf("release lease %s: %w", h.name, err)
	}
	return nil
}

// leaseStats is a holder's state for metrics.
type leaseStats struct {
	held            bool
	epoch           uint64
	takeovers, lost uint64
}

func (h *LeaseHolder) stats() leaseStats {
	_, held := h.Held()
	h.mu.Lock()
	defer h.mu.Unlock()
	return leaseStats{held: held, epoch: h.epoch, takeovers: h.takeovers, lost: h.lost}
}

// HoldLease takes the lease name for owner and keeps it renewed in the
// background until Release (for what must run on one node at a time
// outside the ledger's transactions, such as an in-process Trillian
// sequencer). If another node holds it, HoldLease tries again for one time
// to live and a third, the most a dead holder's lease can outlive it, then
// fails with an error wrapping ErrLeaseHeld.
func HoldLease(ctx context.Context, store Store, name, owner string, ttl time.Duration, logger *slog.Logger) (*HeldLease, error) {
	h := NewLeaseHolder(store, name, owner, ttl, logger, nil)
	deadline := time.Now().Add(ttl + ttl/3)
	for {
		_, err := h.Try(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrLeaseHeld) || time.Now().After(deadline) {
			return nil, err
		}
		wait(ctx, ttl/3, nil)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	held := &HeldLease{LeaseHolder: h, cancel: cancel, done: make(chan struct{}), lost: make(chan struct{})}
	go func() {
		defer close(held.done)
		for {
			wait(ctx, ttl/3, nil)
			if ctx.Err() != nil {
				return
			}
			h.renew(ctx)
			if _, ok := h.Held(); !ok && ctx.Err() == nil {
				// Taken over, or not renewed in time: what the lease
				// guards must stop; it is not taken again.
				close(held.lost)
				return
			}
		}
	}()
	return held, nil
}

// HeldLease is a lease taken by HoldLease and renewed in the background.
type HeldLease struct {
	*LeaseHolder
	cancel context.CancelFunc
	done   chan struct{}
	lost   chan struct{}
}

// Lost is closed when the lease's term ends other than by Release: it was
// taken over, or could not be renewed before its time ran out. What the
// lease guards must then stop (HoldLease does not take it again).
func (h *HeldLease) Lost() <-chan struct{} { return h.lost }

// Release stops renewing the lease and frees it, trying for at most 5s
// even if ctx is done (a node's shutdown).
func (h *HeldLease) Release(ctx context.Context) error {
	h.cancel()
	<-h.done
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return h.LeaseHolder.Release(ctx)
}

// term is a duty's term under its lease: the writes it makes check it.
// The zero term (no holder) checks nothing: an erasure a request runs
// itself is no duty.
type term struct {
	h     *LeaseHolder
	epoch uint64
}

func (t term) check(ctx context.Context, tx StoreTx) error {
	if t.h == nil {
		return nil
	}
	return t.h.Check(ctx, tx, t.epoch)
}

// lost ends the term if err says it was taken over, and reports so.
func (t term) lost(err error) bool {
	if t.h == nil || !errors.Is(err, ErrLeaseLost) {
		return false
	}
	t.h.Lost(t.epoch)
	return true
}

// held returns the current term of the ledger's lease name, if held.
func (l *Ledger) held(name string) (term, bool) {
	h := l.leases[name]
	epoch, ok := h.Held()
	return term{h: h, epoch: epoch}, ok
}

// LeaseHeld reports whether this ledger holds the lease of a duty
// (LeaseSender, LeaseCheckpointer, LeaseErasures) and the term's epoch.
func (l *Ledger) LeaseHeld(name string) (uint64, bool) {
	h, ok := l.leases[name]
	if !ok {
		return 0, false
	}
	return h.Held()
}
