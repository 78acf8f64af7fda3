package consentsql

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// consentAD is the additional data a consent version is sealed with: a
// sealed consent moved to another patient or version does not open.
func consentAD(pseudonym event.Hash, version int64) []byte {
	ad := append([]byte("vigie/consent/v1\x00"), pseudonym[:]...)
	return binary.BigEndian.AppendUint64(ad, uint64(version))
}

// openConsent opens a sealed consent version with the patient's wrapped
// data key.
func (s *Store) openConsent(pseudonym event.Hash, version int64, wrapped, sealed []byte) (consent.Consent, error) {
	dk, err := s.ledger.DataKey(pseudonym, wrapped)
	if err != nil {
		return consent.Consent{}, err
	}
	plain, err := dk.Open(sealed, consentAD(pseudonym, version))
	if err != nil {
		return consent.Consent{}, fmt.Errorf("consent version %d: %w", version, err)
	}
	return consent.ParseConsent(plain)
}

// consentsSealed is the ledger_meta row saying that SealPlaintext ran.
const consentsSealed = "consents-sealed"

// SealPlaintext seals, under each patient's data key, the consents that a
// version before the sealing stored in clear, in one transaction recorded
// in ledger_meta, so that it runs once per database (an empty one
// included). It reports whether it ran. The overwritten text stays in the
// files until sqldb.DB.Compact.
//
// It must run after the ledger checked its keys against the database
// (ledger.New) and before the store is used.
func (s *Store) SealPlaintext(ctx context.Context) (bool, error) {
	ran := false
	err := s.db.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		ran = false
		var v []byte
		err := tx.QueryRow(ctx, "SELECT value FROM ledger_meta WHERE name = $1", consentsSealed).Scan(&v)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sqldb.ErrNoRows) {
			return err
		}
		type row struct {
			pseudonym      event.Hash
			version        int64
			plain, wrapped []byte
		}
		var todo []row
		rows, err := tx.Query(ctx, "SELECT c.pseudonym, c.version, c.consent, p.wrapped_key FROM consents c LEFT JOIN patients p ON p.pseudonym = c.pseudonym")
		if err != nil {
			return err
		}
		for rows.Next() {
			var r row
			var pseudo []byte
			if err := rows.Scan(&pseudo, &r.version, &r.plain, &r.wrapped); err != nil {
				rows.Close()
				return err
			}
			if len(pseudo) != len(r.pseudonym) {
				rows.Close()
				return errors.New("consents: malformed pseudonym")
			}
			copy(r.pseudonym[:], pseudo)
			todo = append(todo, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, r := range todo {
			if _, err := consent.ParseConsent(r.plain); err != nil {
				return fmt.Errorf("consent version %d: not a consent in clear: %w", r.version, err)
			}
			dk, err := s.ledger.DataKey(r.pseudonym, r.wrapped)
			if err != nil {
				return fmt.Errorf("consent version %d: %w", r.version, err)
			}
			sealed, err := dk.Seal(r.plain, consentAD(r.pseudonym, r.version))
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "UPDATE consents SET consent = $1 WHERE pseudonym = $2 AND version = $3", sealed, r.pseudonym[:], r.version); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, "INSERT INTO ledger_meta (name, value) VALUES ($1, $2)", consentsSealed, []byte(fmt.Sprint(len(todo))))
		ran = true
		return err
	})
	if err != nil {
		return false, fmt.Errorf("seal consents: %w", err)
	}
	return ran, nil
}
