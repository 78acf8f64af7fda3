package event

import (
	"encoding/hex"
	"errors"
)

// HashSize is the size of a [Hash] in bytes.
const HashSize = 32

// A Hash is a SHA-256 value: a commitment, a patient pseudonym, a Merkle leaf
// hash or a tree root. Its text form is exactly 64 lowercase hexadecimal
// digits, the only form in which Vigie writes a hash into an event body or a
// URL.
type Hash [HashSize]byte

var errHashText = errors.New("hash: want 64 lowercase hex digits")

// String returns h as 64 lowercase hexadecimal digits.
func (h Hash) String() string {
	return hex.EncodeToString(h[:])
}

// IsZero reports whether h is all zero bytes (the first link of a chain, or
// the pseudonym of the system chain).
func (h Hash) IsZero() bool {
	return h == Hash{}
}

// MarshalText returns h as 64 lowercase hexadecimal digits.
func (h Hash) MarshalText() ([]byte, error) {
	return hex.AppendEncode(nil, h[:]), nil
}

// UnmarshalText sets h from exactly 64 lowercase hexadecimal digits and
// rejects anything else (uppercase included), so that a hash has one text
// form.
func (h *Hash) UnmarshalText(text []byte) error {
	if !isLowerHex(text, 2*HashSize) {
		return errHashText
	}
	_, err := hex.Decode(h[:], text)
	return err
}

// ParseHash parses the text form of a hash, as [Hash.UnmarshalText] does.
func ParseHash(s string) (Hash, error) {
	var h Hash
	err := h.UnmarshalText([]byte(s))
	return h, err
}

// isLowerHex reports whether b is exactly n lowercase hexadecimal digits.
func isLowerHex[T string | []byte](b T, n int) bool {
	if len(b) != n {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// A Ref names an event of the log: its leaf index and its commitment.
// Reports (verification findings, replay differences, misuse alerts) name
// events by Ref, which anyone can check against the log.
type Ref struct {
	Index      uint64 `json:"leaf_index"`
	Commitment Hash   `json:"commitment"`
}

// Logged is a parsed body with its place in the log, as a verifier holds
// it once it has checked the body against the commitment and the
// commitment against the log.
type Logged struct {
	Ref
	Body *Body
}
