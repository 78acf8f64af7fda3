package ledgersql

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// dbNow returns the database's clock, in microseconds since 1970: every
// node measures leases' expiry on the same clock, whatever its own says.
// On PostgreSQL and CockroachDB it is the transaction's start, which a
// retried transaction takes again.
func (t txn) dbNow(ctx context.Context) (int64, error) {
	q := "SELECT CAST(EXTRACT(EPOCH FROM now()) * 1000000 AS BIGINT)"
	if t.tx.Dialect() == sqldb.SQLiteDialect {
		q = "SELECT CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)"
	}
	var now int64
	if err := t.tx.QueryRow(ctx, q).Scan(&now); err != nil {
		return 0, fmt.Errorf("database clock: %w", err)
	}
	return now, nil
}

func (t txn) AcquireLease(ctx context.Context, name, owner string, ttl time.Duration) (ledger.Lease, error) {
	if owner == "" {
		return ledger.Lease{}, errors.New("acquire lease: no owner")
	}
	now, err := t.dbNow(ctx)
	if err != nil {
		return ledger.Lease{}, err
	}
	expires := now + ttl.Microseconds()
	l := ledger.Lease{Name: name}
	var epoch, old int64
	err = t.tx.QueryRow(ctx, "SELECT owner, epoch, expires_micros FROM leases WHERE name = $1", name).Scan(&l.Owner, &epoch, &old)
	switch {
	case errors.Is(err, sqldb.ErrNoRows):
		_, err := t.tx.Exec(ctx, "INSERT INTO leases (name, owner, epoch, expires_micros) VALUES ($1, $2, 1, $3)", name, owner, expires)
		if sqldb.IsUniqueViolation(err) {
			return l, fmt.Errorf("acquire lease %s: %w", name, ledger.ErrLeaseHeld)
		}
		if err != nil {
			return l, fmt.Errorf("acquire lease %s: %w", name, err)
		}
		return ledger.Lease{Name: name, Owner: owner, Epoch: 1, Expires: time.UnixMicro(expires)}, nil
	case err != nil:
		return l, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	l.Epoch, l.Expires = uint64(epoch), time.UnixMicro(old)
	next := epoch
	switch {
	case l.Owner == owner:
		// A renewal: the term goes on.
	case l.Owner != "" && old > now:
		return l, fmt.Errorf("acquire lease %s: %w", name, ledger.ErrLeaseHeld)
	default:
		// Free or expired: a new term, which fences the old one's writes.
		next = epoch + 1
	}
	// Compare-and-swap on the owner and epoch read: of two nodes taking
	// an expired lease, one commits.
	n, err := t.tx.Exec(ctx, "UPDATE leases SET owner = $1, epoch = $2, expires_micros = $3 WHERE name = $4 AND owner = $5 AND epoch = $6",
		owner, next, expires, name, l.Owner, epoch)
	if err != nil {
		return l, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	if n != 1 {
		return l, fmt.Errorf("acquire lease %s: %w", name, ledger.ErrLeaseHeld)
	}
	return ledger.Lease{Name: name, Owner: owner, Epoch: uint64(next), Expires: time.UnixMicro(expires)}, nil
}

func (t txn) CheckLease(ctx context.Context, name, owner string, epoch uint64) error {
	if owner == "" {
		return fmt.Errorf("lease %s: %w", name, ledger.ErrLeaseLost)
	}
	// A write, not a read: a takeover's UPDATE of the same row and this
	// one cannot both commit, at any isolation level (at READ COMMITTED
	// this one waits, then matches no row).
	n, err := t.tx.Exec(ctx, "UPDATE leases SET epoch = epoch WHERE name = $1 AND owner = $2 AND epoch = $3", name, owner, int64(epoch))
	if err != nil {
		return fmt.Errorf("check lease %s: %w", name, err)
	}
	if n != 1 {
		return fmt.Errorf("lease %s epoch %d: %w", name, epoch, ledger.ErrLeaseLost)
	}
	return nil
}

func (t txn) ReleaseLease(ctx context.Context, name, owner string, epoch uint64) error {
	_, err := t.tx.Exec(ctx, "UPDATE leases SET owner = '', expires_micros = 0 WHERE name = $1 AND owner = $2 AND epoch = $3", name, owner, int64(epoch))
	if err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}
