package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vigie-sante/vigie/api/auth"
)

// PageSize returns the page size a request asks for in its page_size
// field: def for 0, n for 1 to max, and a *FieldError for anything else.
func PageSize(n int32, def, max int) (int, error) {
	switch {
	case n == 0:
		return def, nil
	case n < 0:
		return 0, &FieldError{Field: "page_size", Problem: "must not be negative"}
	case int64(n) > int64(max):
		return 0, &FieldError{Field: "page_size", Problem: fmt.Sprintf("at most %d", max)}
	}
	return int(n), nil
}

// PageTokenKeySize is the size of a PageTokens key.
const PageTokenKeySize = 32

// maxPageValues bounds the numbers a page token holds.
const maxPageValues = 8

// PageTokens seals and opens page tokens: opaque strings holding a few
// numbers (a checkpoint size, the last sequence number returned...),
// authenticated with HMAC-SHA256 under a key of the deployment, and bound
// to a scope (the method) and to the caller, neither of which they
// contain. A token forged, altered, or presented by another caller or to
// another method does not open. Safe for concurrent use.
//
// A token is base64url (no padding) of: version byte 1, the count of
// values, each value as a uvarint, then the first 16 bytes of
// HMAC-SHA256(key, "vigie page token v1" 0 scope 0 len(binding) binding
// version count values).
type PageTokens struct{ key []byte }

// NewPageTokens returns a PageTokens with a PageTokenKeySize-byte key. All
// the nodes of a deployment share the key, so that a page token from one
// opens on another.
func NewPageTokens(key []byte) (*PageTokens, error) {
	if len(key) != PageTokenKeySize {
		return nil, fmt.Errorf("page token key: %d bytes, want %d", len(key), PageTokenKeySize)
	}
	return &PageTokens{key: append([]byte(nil), key...)}, nil
}

// Binding returns what binds page tokens to a caller: its principal, or
// for a patient their INS (in the MAC only, never in the token). It is
// stable across restarts and nodes.
func Binding(id *auth.Identity) []byte {
	if p, ok := id.Patient(); ok {
		return []byte("patient\x00" + p.Canonical())
	}
	return []byte("principal\x00" + id.Principal())
}

const pageTokenVersion = 1

// Seal returns a token holding values (at most 8), for scope and binding.
func (p *PageTokens) Seal(scope string, binding []byte, values ...uint64) string {
	if len(values) > maxPageValues {
		panic("server: PageTokens.Seal: too many values") // a caller's bug, never input
	}
	b := []byte{pageTokenVersion, byte(len(values))}
	for _, v := range values {
		b = binary.AppendUvarint(b, v)
	}
	b = append(b, p.mac(scope, binding, b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

var errPageToken = errors.New("invalid page token")

// Open returns the n values of a token that Seal made for the same scope
// and binding, or a *FieldError naming page_token.
func (p *PageTokens) Open(scope string, binding []byte, token string, n int) ([]uint64, error) {
	invalid := &FieldError{Field: "page_token", Problem: "not a token of this listing: start again without it", Err: errPageToken}
	if len(token) > 256 {
		return nil, invalid
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 2+16 {
		return nil, invalid
	}
	body, tag := b[:len(b)-16], b[len(b)-16:]
	if !hmac.Equal(tag, p.mac(scope, binding, body)) {
		return nil, invalid
	}
	if body[0] != pageTokenVersion || int(body[1]) != n {
		return nil, invalid
	}
	values := make([]uint64, 0, n)
	rest := body[2:]
	for range n {
		v, k := binary.Uvarint(rest)
		if k <= 0 {
			return nil, invalid
		}
		values = append(values, v)
		rest = rest[k:]
	}
	if len(rest) != 0 {
		return nil, invalid
	}
	return values, nil
}

func (p *PageTokens) mac(scope string, binding, body []byte) []byte {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte("vigie page token v1\x00"))
	m.Write([]byte(scope))
	m.Write([]byte{0})
	m.Write(binary.AppendUvarint(nil, uint64(len(binding))))
	m.Write(binding)
	m.Write(body)
	return m.Sum(nil)[:16]
}
