// Package verify checks what a Vigie log shows its readers, trusting nothing
// but data and the log's public keys: event commitments, per-patient hash
// chains, signed checkpoints, inclusion and consistency proofs, and receipts.
//
// It is pure Go over bytes (no server, database, clock or randomness), so
// the service, the command line, the tests and the browser (GOOS=js
// GOARCH=wasm) run the same code. It depends only on the standard library,
// [golang.org/x/mod/sumdb/note], [github.com/transparency-dev/merkle] and
// package ledger/event.
//
// # Three hashes
//
// An event becomes a leaf of the log in three steps, each named once:
//
//	commitment       = SHA-256("vigie/event/v1" || 0x00 || salt || body)   (32 bytes)
//	leaf value       = 0x01 || commitment                                  (33 bytes)
//	Merkle leaf hash = SHA-256(0x00 || leaf value)                         (RFC 6962)
//
// The salt is 32 random bytes per event, kept secret with the body, so that
// the public leaf reveals nothing about a body (not even a guessable one).
// Chains, receipts and lookups use the commitment; proofs use the Merkle
// leaf hash. The leaf value is what the log (Trillian) stores.
//
// # Formats
//
// Checkpoints follow [tlog-checkpoint] as [signed notes]; receipts are
// signed notes whose first line is "vigie receipt v1". The exact byte
// layouts, with worked examples, are in docs/formats.md.
//
// [tlog-checkpoint]: https://c2sp.org/tlog-checkpoint
// [signed notes]: https://c2sp.org/signed-note
package verify

import (
	"crypto/sha256"
	"errors"

	"github.com/vigie-sante/vigie/ledger/event"
)

// CommitmentDomain is the domain separator that starts the input of every
// commitment, so that a commitment can never be mistaken for a hash of
// anything else.
const CommitmentDomain = "vigie/event/v1\x00"

// SaltSize is the size of an event's salt in bytes.
const SaltSize = 32

// LeafValueVersion is the first byte of a leaf value: the version of the
// leaf format.
const LeafValueVersion = 0x01

// LeafValueSize is the size of a leaf value in bytes.
const LeafValueSize = 1 + event.HashSize

// Commitment returns the commitment to an event: SHA-256 of
// [CommitmentDomain], the salt, and the exact body bytes. The body is hashed
// as it is; it is never re-encoded.
func Commitment(salt [SaltSize]byte, body []byte) event.Hash {
	h := sha256.New()
	h.Write([]byte(CommitmentDomain))
	h.Write(salt[:])
	h.Write(body)
	var c event.Hash
	h.Sum(c[:0])
	return c
}

// LeafValue returns the leaf value of commitment c, the bytes the log
// stores: [LeafValueVersion] followed by c (33 bytes).
func LeafValue(c event.Hash) []byte {
	v := make([]byte, LeafValueSize)
	v[0] = LeafValueVersion
	copy(v[1:], c[:])
	return v
}

var errLeafValue = errors.New("leaf value: want 33 bytes starting with 0x01")

// ParseLeafValue returns the commitment in leaf value v. It accepts exactly
// the bytes [LeafValue] produces.
func ParseLeafValue(v []byte) (event.Hash, error) {
	if len(v) != LeafValueSize || v[0] != LeafValueVersion {
		return event.Hash{}, errLeafValue
	}
	return event.Hash(v[1:]), nil
}

// MerkleLeafHash returns the RFC 6962 Merkle leaf hash of the leaf holding
// commitment c: SHA-256(0x00 || LeafValue(c)).
func MerkleLeafHash(c event.Hash) event.Hash {
	var in [1 + LeafValueSize]byte
	in[0] = 0x00 // RFC 6962 leaf prefix
	in[1] = LeafValueVersion
	copy(in[2:], c[:])
	return sha256.Sum256(in[:])
}

// nodeHash is the RFC 6962 hash of an interior node.
func nodeHash(left, right event.Hash) event.Hash {
	var in [1 + 2*event.HashSize]byte
	in[0] = 0x01 // RFC 6962 node prefix
	copy(in[1:], left[:])
	copy(in[1+event.HashSize:], right[:])
	return sha256.Sum256(in[:])
}
