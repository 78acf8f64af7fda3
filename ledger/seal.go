package ledger

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/vigie-sante/vigie/ledger/event"
)

// KeySize is the size of every secret key of the ledger: the
// key-encryption key, the pseudonym key and the patients' data keys.
const KeySize = 32

// PatientID is a patient's identifier in canonical form. consent/ident's
// INS implements it; the ledger never stores or logs it, it only derives
// the pseudonym.
type PatientID interface {
	// Canonical returns the identifier's one normalised form.
	Canonical() string
}

// Pseudonymizer derives patients' pseudonyms: HMAC-SHA256 of the canonical
// INS under a deployment secret. Without the secret, a pseudonym cannot be
// linked to an INS (the INS has too little entropy for an unkeyed hash).
type Pseudonymizer struct{ key []byte }

// NewPseudonymizer returns a Pseudonymizer with a KeySize-byte secret.
func NewPseudonymizer(key []byte) (*Pseudonymizer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("pseudonym key: %d bytes, want %d", len(key), KeySize)
	}
	return &Pseudonymizer{key: append([]byte(nil), key...)}, nil
}

// Pseudonym returns the patient's pseudonym.
func (p *Pseudonymizer) Pseudonym(id PatientID) event.Hash {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte("vigie/pseudonym/v1\x00"))
	m.Write([]byte(id.Canonical()))
	return event.Hash(m.Sum(nil))
}

// RequestHash is the keyed hash of an idempotency key (a calling service
// and its request id), as the Store keeps it: request ids are chosen by
// callers, who put identifiers in them, so none is stored in clear.
type RequestHash [16]byte

// IsZero reports whether h is the zero hash (no key).
func (h RequestHash) IsZero() bool { return h == RequestHash{} }

// RequestHash returns the keyed hash of k: HMAC-SHA256 under the pseudonym
// key, domain-separated from pseudonyms by its label, truncated to 16
// bytes. The pseudonym key is the deployment's, never erased and checked at
// every start, so a request id is recognised after its patient's erasure;
// 16 bytes make a collision between two keys negligible (and a collision
// would only refuse a request, see ErrKeyReused). The zero Key has the zero
// hash.
func (p *Pseudonymizer) RequestHash(k Key) RequestHash {
	if k.IsZero() {
		return RequestHash{}
	}
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte("vigie/request-id/v1\x00"))
	m.Write(binary.AppendUvarint(nil, uint64(len(k.Service))))
	m.Write([]byte(k.Service))
	m.Write([]byte(k.RequestID))
	return RequestHash(m.Sum(nil)[:16])
}

// keyring seals event bodies with patients' data keys, and wraps those
// with a KeyWrapper: the key-encryption key (KEK) of a file by default.
// Every seal is AES-256-GCM with a random nonce; the additional data binds
// a ciphertext to what it belongs to (the patient's pseudonym for a
// wrapped key, the commitment for a body), so a ciphertext moved to
// another row does not open.
type keyring struct {
	wrap KeyWrapper
	rand io.Reader
}

// KeyWrapper wraps patients' data keys with a key-encryption key, which
// may live in a hardware security module (ledger/keys/pkcs11).
//
// Wrap returns key wrapped for the patient pseudonym: the wrapped form
// MUST open only for that pseudonym (a wrapped key copied to another
// patient's row does not open). Unwrap returns the key, or an error
// wrapping ErrCorrupt if wrapped does not open (altered, another
// patient's, or under a KEK that is not there). Both are safe for
// concurrent use and may be retried.
type KeyWrapper interface {
	Wrap(pseudonym event.Hash, key []byte) ([]byte, error)
	Unwrap(pseudonym event.Hash, wrapped []byte) ([]byte, error)
}

// Rewrapper is a KeyWrapper whose KEK is being replaced: Stale reports
// whether wrapped is under a KEK other than the one Wrap uses, so that
// Ledger.Rewrap wraps it again. It reads no key.
type Rewrapper interface {
	KeyWrapper
	Stale(wrapped []byte) bool
}

// NamedKEK is a KeyWrapper whose KEK has a name (a module's label). New
// checks that the KEK of that name is the one it saw at the first start
// under that name, as it checks Config.KEK: it saves a probe, a zero key
// wrapped for no patient, and unwraps it at every start. A KEK replaced
// under the same name (another token, a key made anew) then stops the
// ledger instead of making every patient's data unreadable.
type NamedKEK interface {
	KeyWrapper
	KEKLabel() string
}

// kekProbe is the pseudonym the probes of NamedKEK are wrapped for: the
// hash of a label, no patient's.
var kekProbe = event.Hash(sha256.Sum256([]byte("vigie/kek-probe/v1")))

// checkKEK saves the probe of the KEK named name at its first use, and
// unwraps it afterwards.
func checkKEK(ctx context.Context, store Store, w KeyWrapper, name string) error {
	meta := "kek-probe/" + name
	var saved []byte
	err := store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
		var err error
		saved, err = tx.Meta(ctx, meta)
		return err
	})
	switch {
	case errors.Is(err, ErrNotFound):
		probe, err := w.Wrap(kekProbe, make([]byte, KeySize))
		if err != nil {
			return err
		}
		err = store.ReadWrite(ctx, func(ctx context.Context, tx StoreTx) error {
			saved = probe
			err := tx.SetMeta(ctx, meta, probe)
			if err != nil {
				// Another node saved its probe first: check that one.
				if other, rerr := tx.Meta(ctx, meta); rerr == nil {
					saved, err = other, nil
				}
			}
			return err
		})
		if err != nil {
			return err
		}
	case err != nil:
		return err
	}
	if _, err := w.Unwrap(kekProbe, saved); err != nil {
		return err
	}
	return nil
}

// kekWrapper is the KeyWrapper of a KEK held in memory (Config.KEK): the
// wrapped key is nonce ‖ AES-256-GCM(key), with the pseudonym as
// additional data.
type kekWrapper struct {
	kek  cipher.AEAD
	rand io.Reader
}

// NewKEKWrapper returns the KeyWrapper of a KeySize-byte key-encryption
// key held in memory (what Config.KEK makes), with rand for its nonces
// (nil: crypto/rand).
func NewKEKWrapper(kek []byte, rand io.Reader) (KeyWrapper, error) {
	if len(kek) != KeySize {
		return nil, fmt.Errorf("key-encryption key: %d bytes, want %d", len(kek), KeySize)
	}
	if rand == nil {
		rand = cryptorand.Reader
	}
	a, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	return kekWrapper{kek: a, rand: rand}, nil
}

func (w kekWrapper) Wrap(pseudonym event.Hash, key []byte) ([]byte, error) {
	return seal(w.kek, w.rand, key, pseudonym[:])
}

func (w kekWrapper) Unwrap(pseudonym event.Hash, wrapped []byte) ([]byte, error) {
	return open(w.kek, wrapped, pseudonym[:])
}

func newKeyring(wrap KeyWrapper, rand io.Reader) *keyring {
	return &keyring{wrap: wrap, rand: rand}
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// ErrCorrupt means a stored event does not open: its sealed body or its
// patient's wrapped key fails authentication, or the body does not match
// the event's commitment. The store was altered (or the key-encryption key
// is not the one it was sealed with). Reads of the event fail with a
// *CorruptEventError, which wraps it. Callers test with errors.Is.
var ErrCorrupt = errors.New("stored event does not open")

// CorruptEventError says which event does not open (ErrCorrupt). Its
// message holds leaf index and sequence number, no body.
type CorruptEventError struct {
	Index uint64 // leaf index
	Seq   uint64 // sequence number in the patient's chain
	Err   error  // wraps ErrCorrupt
}

func (e *CorruptEventError) Error() string {
	return fmt.Sprintf("event at leaf %d (sequence number %d): %v", e.Index, e.Seq, e.Err)
}

func (e *CorruptEventError) Unwrap() error { return e.Err }

// corrupt returns err as a *CorruptEventError about row if it is an
// ErrCorrupt, else err.
func corrupt(row EventRow, err error) error {
	if errors.Is(err, ErrCorrupt) {
		return &CorruptEventError{Index: row.Index, Seq: row.Seq, Err: err}
	}
	return err
}

// errUnsealed is returned when a ciphertext does not open: a tampered row
// (an erased patient's key is gone, ErrErased, before anything is opened).
var errUnsealed = fmt.Errorf("%w: ciphertext does not open", ErrCorrupt)

func seal(a cipher.AEAD, rand io.Reader, plaintext, ad []byte) ([]byte, error) {
	nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(plaintext)+a.Overhead())
	if _, err := io.ReadFull(rand, nonce); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	return a.Seal(nonce, nonce, plaintext, ad), nil
}

func open(a cipher.AEAD, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < a.NonceSize()+a.Overhead() {
		return nil, errUnsealed
	}
	out, err := a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():], ad)
	if err != nil {
		return nil, errUnsealed
	}
	return out, nil
}

// newDataKey makes a patient's data key and returns it with its wrapped
// form.
func (k *keyring) newDataKey(pseudonym event.Hash) (cipher.AEAD, []byte, error) {
	key := make([]byte, KeySize)
	if _, err := io.ReadFull(k.rand, key); err != nil {
		return nil, nil, fmt.Errorf("data key: %w", err)
	}
	wrapped, err := k.wrap.Wrap(pseudonym, key)
	if err != nil {
		return nil, nil, fmt.Errorf("wrap data key: %w", err)
	}
	a, err := newAEAD(key)
	return a, wrapped, err
}

// dataKey unwraps a patient's data key.
func (k *keyring) dataKey(pseudonym event.Hash, wrapped []byte) (cipher.AEAD, error) {
	if wrapped == nil {
		return nil, ErrErased
	}
	key, err := k.wrap.Unwrap(pseudonym, wrapped)
	if err != nil {
		return nil, fmt.Errorf("unwrap data key: %w", err)
	}
	return newAEAD(key)
}

// sealBody encrypts salt ‖ body for an event with this commitment.
func (k *keyring) sealBody(dk cipher.AEAD, salt [32]byte, body []byte, c event.Hash) ([]byte, error) {
	plain := make([]byte, 0, len(salt)+len(body))
	plain = append(append(plain, salt[:]...), body...)
	return seal(dk, k.rand, plain, c[:])
}

// openBody decrypts an event's salt and body.
func openBody(dk cipher.AEAD, sealed []byte, c event.Hash) (salt [32]byte, body []byte, err error) {
	plain, err := open(dk, sealed, c[:])
	if err != nil {
		return salt, nil, err
	}
	if len(plain) < len(salt) {
		return salt, nil, errUnsealed
	}
	copy(salt[:], plain)
	return salt, plain[len(salt):], nil
}

// DataKey is a patient's data key, for the patient's rows of other tables
// (the consent store's): sealed with it, they are erased with the patient's
// events when the key is destroyed (crypto-shredding). It is safe for
// concurrent use.
type DataKey struct {
	aead cipher.AEAD
	rand io.Reader
}

// dataPrefix starts the additional data of everything DataKey seals, which
// an event body's (its 32-byte commitment) never is: a sealed row never
// opens as an event body, nor the reverse.
const dataPrefix = "vigie/patient-data/v1\x00"

// Seal encrypts plaintext (AES-256-GCM, random nonce), bound to ad, which
// says what the plaintext belongs to (a table, a row): a ciphertext moved
// to another row does not open.
func (k *DataKey) Seal(plaintext, ad []byte) ([]byte, error) {
	return seal(k.aead, k.rand, plaintext, append([]byte(dataPrefix), ad...))
}

// Open decrypts what Seal sealed with the same ad, or fails with an error
// wrapping ErrCorrupt.
func (k *DataKey) Open(sealed, ad []byte) ([]byte, error) {
	return open(k.aead, sealed, append([]byte(dataPrefix), ad...))
}

// DataKey unwraps a patient's data key from its wrapped form, as the
// patients table holds it: ErrErased if nil (the patient was erased),
// an error wrapping ErrCorrupt if it does not open.
func (l *Ledger) DataKey(pseudonym event.Hash, wrapped []byte) (*DataKey, error) {
	a, err := l.keys.dataKey(pseudonym, wrapped)
	if err != nil {
		return nil, err
	}
	return &DataKey{aead: a, rand: l.cfg.Rand}, nil
}

// applyTx is the transaction an Entry's Apply runs in: the store's, with
// the data key of the entry's patient (new patients have no stored key
// before the transaction ends).
type applyTx struct {
	StoreTx
	dk *DataKey
}

// EntryDataKey returns the data key of the patient of the entry whose Apply
// received tx, to seal that patient's rows of other tables in the same
// transaction. It fails for any other tx.
func EntryDataKey(tx StoreTx) (*DataKey, error) {
	a, ok := tx.(applyTx)
	if !ok || a.dk == nil {
		return nil, errors.New("ledger: EntryDataKey: not the transaction of an entry's Apply")
	}
	return a.dk, nil
}

// SubjectHash returns the keyed hash of a person's identifier at an
// identity provider (an OpenID Connect issuer and its sub): HMAC-SHA256
// under the pseudonym key, domain-separated from pseudonyms and request
// hashes by its label. An enrolment is stored and recorded under it, so
// that neither the database nor the log holds the provider's sub, which
// the provider and the person's other services could link back.
func (p *Pseudonymizer) SubjectHash(issuer, subject string) event.Hash {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte("vigie/oidc-subject/v1\x00"))
	m.Write(binary.AppendUvarint(nil, uint64(len(issuer))))
	m.Write([]byte(issuer))
	m.Write([]byte(subject))
	return event.Hash(m.Sum(nil))
}

// SubjectHash returns the keyed hash of an issuer's subject
// (Pseudonymizer.SubjectHash) under the ledger's pseudonym key.
func (l *Ledger) SubjectHash(issuer, subject string) event.Hash {
	return l.cfg.Pseudonyms.SubjectHash(issuer, subject)
}
