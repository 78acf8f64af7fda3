package ident

import (
	"errors"
	"fmt"
)

// ErrRPPS is returned, wrapped, by [ParseRPPS] for a malformed RPPS number.
// Callers test for it with errors.Is.
var ErrRPPS = errors.New("RPPS number must be 11 digits")

// RPPS is a health professional's number in the Répertoire partagé des
// professionnels de santé: eleven digits. The zero RPPS is absent.
//
// Only the format is checked. Several secondary sources describe the last
// digit as a Luhn check digit, but we could not confirm it against the
// Agence du numérique en santé's specification, and identifiers printed
// in its own documents fail that check; rejecting a real professional's
// number would be worse than accepting a mistyped one, which the
// directory lookup of the calling service catches anyway.
//
// RPPS numbers are public (the professional directory publishes them) and
// print as their digits.
type RPPS struct {
	v uint64 // number | rppsValid; 0 means absent
}

const rppsValid = 1 << 63

// ParseRPPS parses an RPPS number: exactly eleven ASCII digits.
func ParseRPPS(s string) (RPPS, error) {
	if len(s) != 11 {
		return RPPS{}, fmt.Errorf("%w, got %s", ErrRPPS, countText(len(s)))
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return RPPS{}, fmt.Errorf("%w: character %d is not a digit", ErrRPPS, i+1)
		}
		n = n*10 + uint64(c-'0')
	}
	return RPPS{v: n | rppsValid}, nil
}

// MustParseRPPS is like [ParseRPPS] but panics on error. It is for tests
// and constants.
func MustParseRPPS(s string) RPPS {
	r, err := ParseRPPS(s)
	if err != nil {
		panic(err)
	}
	return r
}

// IsZero reports whether r is absent.
func (r RPPS) IsZero() bool { return r.v == 0 }

// String returns the eleven digits, or "" for the zero RPPS.
func (r RPPS) String() string {
	if r.v == 0 {
		return ""
	}
	var b [11]byte
	return string(r.AppendDigits(b[:0]))
}

// AppendText appends the eleven digits of r (nothing for the zero RPPS)
// to b. It implements encoding.TextAppender.
func (r RPPS) AppendText(b []byte) ([]byte, error) { return r.AppendDigits(b), nil }

// AppendDigits appends the eleven digits of r (nothing for the zero RPPS)
// to b.
func (r RPPS) AppendDigits(b []byte) []byte {
	if r.v == 0 {
		return b
	}
	n := r.v &^ rppsValid
	var d [11]byte
	for i := 10; i >= 0; i-- {
		d[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, d[:]...)
}

// MarshalText returns the eleven digits.
func (r RPPS) MarshalText() ([]byte, error) { return r.AppendDigits(nil), nil }

// UnmarshalText parses eleven digits with [ParseRPPS]; empty text gives
// the zero RPPS.
func (r *RPPS) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*r = RPPS{}
		return nil
	}
	v, err := ParseRPPS(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// ErrFINESS is returned, wrapped, by [ParseFINESS] for a malformed FINESS
// number. Callers test for it with errors.Is.
var ErrFINESS = errors.New("FINESS number must be 9 characters: a department (2 digits, 2A or 2B) and 7 digits")

// ErrFINESSKey is returned, wrapped, by [ParseFINESS] when the check digit
// of an all-digit FINESS number is wrong. Callers test for it with
// errors.Is.
var ErrFINESSKey = errors.New("FINESS check digit does not match")

// FINESS is an organisation's number in the Fichier national des
// établissements sanitaires et sociaux: nine characters, the department
// (two digits, or 2A / 2B for Corsica) then seven digits, the last of
// which is a check digit. The zero FINESS is absent.
//
// For all-digit numbers the check digit is verified with the Luhn
// algorithm over the nine digits: every FINESS number we could find in
// public directories satisfies it (for example 750712184, 690781810,
// 330781196, 130786049). How the letters of the Corsica departments enter
// the computation is not documented in any source we found, so for 2A and
// 2B only the format is checked.
type FINESS struct {
	v uint64 // number | flags; 0 means absent
}

const (
	finessValid    = 1 << 63
	finessCorsicaA = 1 << 40
	finessCorsicaB = 1 << 41
	finessNumber   = 1<<40 - 1
)

// ParseFINESS parses a FINESS number in its canonical spelling: nine
// characters, digits except that the first two may be 2A or 2B (upper
// case), with a valid check digit for all-digit numbers.
func ParseFINESS(s string) (FINESS, error) {
	if len(s) != 9 {
		return FINESS{}, fmt.Errorf("%w, got %s", ErrFINESS, countText(len(s)))
	}
	var flags uint64
	start := 0
	if s[0] == '2' && (s[1] == 'A' || s[1] == 'B') {
		if s[1] == 'A' {
			flags = finessCorsicaA
		} else {
			flags = finessCorsicaB
		}
		start = 2
	}
	var n uint64
	for i := start; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return FINESS{}, fmt.Errorf("%w: character %d is not a digit", ErrFINESS, i+1)
		}
		n = n*10 + uint64(c-'0')
	}
	if flags == 0 && !luhnValid(s) {
		return FINESS{}, ErrFINESSKey
	}
	return FINESS{v: n | flags | finessValid}, nil
}

// MustParseFINESS is like [ParseFINESS] but panics on error. It is for
// tests and constants.
func MustParseFINESS(s string) FINESS {
	f, err := ParseFINESS(s)
	if err != nil {
		panic(err)
	}
	return f
}

// luhnValid reports whether the digit string s passes the Luhn check.
func luhnValid(s string) bool {
	sum := 0
	for i := 0; i < len(s); i++ {
		d := int(s[len(s)-1-i] - '0')
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// IsZero reports whether f is absent.
func (f FINESS) IsZero() bool { return f.v == 0 }

// String returns the nine characters, or "" for the zero FINESS.
func (f FINESS) String() string {
	if f.v == 0 {
		return ""
	}
	var b [9]byte
	return string(f.appendTo(b[:0]))
}

// AppendText appends the nine characters of f (nothing for the zero
// FINESS) to b. It implements encoding.TextAppender.
func (f FINESS) AppendText(b []byte) ([]byte, error) { return f.appendTo(b), nil }

func (f FINESS) appendTo(b []byte) []byte {
	if f.v == 0 {
		return b
	}
	n := f.v & finessNumber
	var d [9]byte
	for i := 8; i >= 0; i-- {
		d[i] = byte('0' + n%10)
		n /= 10
	}
	switch {
	case f.v&finessCorsicaA != 0:
		d[0], d[1] = '2', 'A'
	case f.v&finessCorsicaB != 0:
		d[0], d[1] = '2', 'B'
	}
	return append(b, d[:]...)
}

// MarshalText returns the nine characters.
func (f FINESS) MarshalText() ([]byte, error) { return f.appendTo(nil), nil }

// UnmarshalText parses nine characters with [ParseFINESS]; empty text
// gives the zero FINESS.
func (f *FINESS) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*f = FINESS{}
		return nil
	}
	v, err := ParseFINESS(string(b))
	if err != nil {
		return err
	}
	*f = v
	return nil
}
