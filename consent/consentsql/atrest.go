package consentsql

import (
	"context"
	"errors"
	"fmt"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/ledgersql"
	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// SealAtRest converts, once per database, what versions before the
// sealing stored in clear (request ids, consents), then, once, rewrites
// the converted tables so that the plain text leaves the database's files
// (sqldb.DB.Compact). It runs after ledger.New checked the keys, before
// anything is recorded. Backups and WAL archives taken before keep the
// plain text until they expire (docs/threat-model.md).
func SealAtRest(ctx context.Context, db *sqldb.DB, store ledger.Store, pseudonyms *ledger.Pseudonymizer, consents *Store) error {
	if _, err := ledgersql.HashRequestIDs(ctx, db, pseudonyms.RequestHash); err != nil {
		return err
	}
	if _, err := consents.SealPlaintext(ctx); err != nil {
		return err
	}
	const compacted = "plaintext-compacted"
	done := true
	err := store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
		_, err := tx.Meta(ctx, compacted)
		done = err == nil
		if errors.Is(err, ledger.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil || done {
		return err
	}
	if err := db.Compact(ctx, "events", "consents"); err != nil {
		return fmt.Errorf("compact the converted tables: %w", err)
	}
	return store.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error {
		return tx.SetMeta(ctx, compacted, []byte("1"))
	})
}
