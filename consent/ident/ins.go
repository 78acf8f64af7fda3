// Package ident holds the identifiers of French health data: the patient's
// INS (identifiant national de santé, the NIR), the professional's RPPS
// number and the organisation's FINESS number.
//
// Each identifier is a small comparable value with a strict parser that
// accepts exactly one spelling, so that two spellings never name two
// patients. The INS is a direct identifier of a person: it never reaches a
// log line, an error message or a JSON document by accident (see [INS]).
//
// References:
//   - NIR and its control key: décret n° 82-103 (RNIPP), INSEE;
//     [INS] in the référentiel INS of the Agence du numérique en santé.
//   - RPPS: [Annuaire santé] of the Agence du numérique en santé.
//   - FINESS: [FINESS] of the Ministry of Health.
//
// [INS]: https://esante.gouv.fr/securite/identite-numerique/referentiel-ins
// [Annuaire santé]: https://annuaire.sante.fr
// [FINESS]: https://finess.esante.gouv.fr
package ident

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// Errors returned, wrapped, by [ParseINS] and [NormalizeINS]. Callers test
// for them with errors.Is to tell the user what to fix. Their text never
// contains the INS.
var (
	// ErrINSLength: the INS is not 15 characters long.
	ErrINSLength = errors.New("INS must be 15 characters")
	// ErrINSCharacter: a character is neither a digit nor an allowed
	// Corsica letter.
	ErrINSCharacter = errors.New("INS character is not a digit")
	// ErrINSCorsica: the letters A or B appear elsewhere than as the
	// department 2A or 2B (characters 6 and 7).
	ErrINSCorsica = errors.New("INS letters are allowed only as department 2A or 2B (characters 6-7, upper case)")
	// ErrINSKey: the last two digits are not the control key of the
	// first thirteen.
	ErrINSKey = errors.New("INS control key does not match")
)

// INS is a patient's national health identifier: the 15-character NIR,
// thirteen characters and a two-digit control key equal to
// 97 - (number mod 97), where for Corsica the department 2A counts as 19
// and 2B as 18.
//
// The zero INS is absent ([INS.IsZero]). INS values are comparable and may
// be map keys.
//
// An INS never prints: fmt (every verb, including %v, %+v, %#v and %s),
// [INS.String], [INS.MarshalJSON], [INS.MarshalText] and log/slog all give
// "INS(redacted)". Only [INS.Canonical] returns the digits, for the few
// places that must have them (the keyed pseudonym, the patient's own
// view). Its in-memory representation is masked with a per-process random
// value, so that even printing a struct holding an INS in an unexported
// field (which fmt does by reflection, without calling Format) shows
// nothing usable.
type INS struct {
	v uint64 // (packed ^ insMask); 0 means absent
}

// Redacted is how an INS prints.
const Redacted = "INS(redacted)"

// insMask is a per-process random value XORed into every INS, with the top
// bit clear so that a valid INS is never the zero value.
var insMask = func() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("ident: no randomness: " + err.Error()) // crypto/rand never fails on supported platforms
	}
	return binary.LittleEndian.Uint64(b[:]) &^ (1 << 63)
}()

const (
	insValid      = 1 << 63
	insCorsicaA   = 1 << 44 // department 2A, stored as 19
	insCorsicaB   = 1 << 45 // department 2B, stored as 18
	insNumberMask = 1<<44 - 1
)

func (x INS) packed() uint64 {
	if x.v == 0 {
		return 0
	}
	return x.v ^ insMask
}

// IsZero reports whether x is absent.
func (x INS) IsZero() bool { return x.v == 0 }

// Canonical returns the INS in its one canonical spelling: fifteen
// characters, digits except for the Corsica departments written 2A or 2B
// in upper case, no spaces. It returns "" for the zero INS.
//
// Canonical is the only way to read the digits. Call it only where the
// digits must be used (computing the patient's pseudonym, showing patients
// their own number); never log or return its result.
func (x INS) Canonical() string {
	p := x.packed()
	if p == 0 {
		return ""
	}
	n := p & insNumberMask
	var b [15]byte
	for i := 12; i >= 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
	switch {
	case p&insCorsicaA != 0:
		b[5], b[6] = '2', 'A'
	case p&insCorsicaB != 0:
		b[5], b[6] = '2', 'B'
	}
	k := insKey(p & insNumberMask)
	b[13] = byte('0' + k/10)
	b[14] = byte('0' + k%10)
	return string(b[:])
}

// insKey returns the control key of the 13-digit number n (Corsica
// letters already replaced by 19 or 18).
func insKey(n uint64) uint64 { return 97 - n%97 }

// String returns "INS(redacted)".
func (x INS) String() string { return Redacted }

// GoString returns "INS(redacted)".
func (x INS) GoString() string { return Redacted }

// Format prints "INS(redacted)" whatever the verb and flags.
func (x INS) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(Redacted)) }

// MarshalJSON returns the JSON string "INS(redacted)". JSON documents that
// must carry a patient carry a pseudonym, never the INS.
func (x INS) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText returns "INS(redacted)", so that text encoders (and INS map
// keys in JSON) never write the digits.
func (x INS) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// LogValue makes log/slog print "INS(redacted)".
func (x INS) LogValue() slog.Value { return slog.StringValue(Redacted) }

// ParseINS parses an INS in its canonical spelling (see [INS.Canonical]):
// exactly fifteen characters, all digits except that characters 6 and 7
// may be 2A or 2B, and a correct control key. It accepts nothing else: no
// spaces, no lower-case letters. Use [NormalizeINS] for what people type.
//
// Errors wrap [ErrINSLength], [ErrINSCharacter], [ErrINSCorsica] or
// [ErrINSKey], and never contain the input.
func ParseINS(s string) (INS, error) {
	if len(s) != 15 {
		return INS{}, fmt.Errorf("%w, got %s", ErrINSLength, countText(len(s)))
	}
	var n uint64
	var flags uint64
	for i := 0; i < 13; i++ {
		c := s[i]
		if i == 5 && c == '2' && (s[6] == 'A' || s[6] == 'B') {
			// Corsica: department 2A counts as 19, 2B as 18.
			if s[6] == 'A' {
				n, flags = n*100+19, insCorsicaA
			} else {
				n, flags = n*100+18, insCorsicaB
			}
			i++
			continue
		}
		switch {
		case '0' <= c && c <= '9':
			n = n*10 + uint64(c-'0')
		case c == 'A' || c == 'B' || c == 'a' || c == 'b':
			return INS{}, fmt.Errorf("character %d: %w", i+1, ErrINSCorsica)
		default:
			return INS{}, fmt.Errorf("character %d: %w", i+1, ErrINSCharacter)
		}
	}
	for i := 13; i < 15; i++ {
		if c := s[i]; c < '0' || c > '9' {
			if c == 'A' || c == 'B' || c == 'a' || c == 'b' {
				return INS{}, fmt.Errorf("character %d: %w", i+1, ErrINSCorsica)
			}
			return INS{}, fmt.Errorf("character %d: %w", i+1, ErrINSCharacter)
		}
	}
	k := uint64(s[13]-'0')*10 + uint64(s[14]-'0')
	if k != insKey(n) {
		return INS{}, ErrINSKey
	}
	return INS{v: (n | flags | insValid) ^ insMask}, nil
}

// NormalizeINS is the one lenient entry point for an INS typed or read by
// people. It accepts exactly:
//
//   - the canonical spelling (see [ParseINS]);
//   - with any number of separators anywhere, each an ASCII space, a tab,
//     a no-break space (U+00A0) or a narrow no-break space (U+202F), as in
//     "1 84 12 76 451 089 46";
//   - with the Corsica letters in lower case ("2a", "2b").
//
// Nothing else is changed: dots, dashes, other letters and other Unicode
// characters are errors. The result is the parsed INS, whose
// [INS.Canonical] is the canonical spelling. Errors are those of
// [ParseINS] and never contain the input.
func NormalizeINS(s string) (INS, error) {
	var b strings.Builder
	b.Grow(15)
	for _, r := range s {
		if insSeparator(r) {
			continue
		}
		switch r {
		case 'a':
			r = 'A'
		case 'b':
			r = 'B'
		}
		b.WriteRune(r)
	}
	return ParseINS(b.String())
}

// countText describes a length without revealing long inputs' sizes
// precisely (and never with more than two digits).
func countText(n int) string {
	if n > 99 {
		return "more than 99 characters"
	}
	return fmt.Sprintf("%d characters", n)
}
