// Package directory holds the public directories of French health
// professionals and establishments, so that people read names beside the
// numbers that events carry: the RPPS extract of the Annuaire Santé
// ("PS_LibreAcces_Personne_activite", published as open data by the Agence
// du numérique en santé) and the FINESS extract of establishments
// ("etalab-cs1100507-stock-*.csv", published on data.gouv.fr by the
// ministry of health), both under the Licence Ouverte / Etalab. Formats,
// sources and licence: docs/directory.md.
//
// The parsers stream: memory does not grow with the file. A bad line is
// reported by its number and the field at fault, never by its content. The
// store (Store) keeps one generation of each directory and replaces it
// atomically on import. The names are public data; they are shown beside
// the identifiers and never enter an event's body or a log line.
package directory

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/vigie-sante/vigie/consent/ident"
)

// Professional is a health professional of the RPPS directory.
type Professional struct {
	RPPS ident.RPPS
	// Title is the civility of practice ("Docteur"), possibly empty.
	Title string
	// Name is the first name and the name of practice, as published.
	Name string
	// Surname is the name of practice alone, which searches start with.
	Surname string
	// Profession is the profession's label ("Médecin").
	Profession string
	// Specialty is the first know-how's label of the professional's
	// activities ("Médecine générale"), possibly empty.
	Specialty string
}

// Establishment is an establishment (entité géographique) of FINESS.
type Establishment struct {
	FINESS ident.FINESS
	// Name is the long corporate name, or the short one when the long is
	// empty.
	Name string
	// Town is the town of the delivery line, without its postal code or
	// CEDEX mention.
	Town string
}

// LineError is a line of a directory file that was not imported. It names
// the line and the field, never the content: the files hold personal
// data (public, but not ours to copy into logs).
type LineError struct {
	Line    int
	Field   string
	Problem string
}

func (e LineError) Error() string {
	return fmt.Sprintf("line %d: field %q: %s", e.Line, e.Field, e.Problem)
}

// ErrFormat is returned, wrapped, when a file is not in the published
// format at all (its header or first line): nothing is imported from it.
// Callers test for it with errors.Is.
var ErrFormat = errors.New("not in the published format")

// MaxLine is the longest line accepted, in bytes; a longer line is a bad
// line.
const MaxLine = 64 << 10

// The RPPS extract's columns that are read, by their header names.
const (
	colIDType     = "Type d'identifiant PP"
	colID         = "Identifiant PP"
	colTitle      = "Libellé civilité d'exercice"
	colLastName   = "Nom d'exercice"
	colFirstName  = "Prénom d'exercice"
	colProfession = "Libellé profession"
	colSpecialty  = "Libellé savoir-faire"
)

// rppsIDType is the "Type d'identifiant PP" of an RPPS number (0 is an
// ADELI number, which this directory does not hold).
const rppsIDType = "8"

// ParseRPPS reads an RPPS extract (PS_LibreAcces_Personne_activite: UTF-8,
// "|"-separated, a header line naming the columns, one line per activity)
// and calls emit for each line of a professional with an RPPS number (a
// professional with several activities comes once per activity) and bad
// for each line it cannot read. Columns are found by their names, so
// columns added by a later edition are ignored. It returns the number of
// lines skipped as holding no RPPS number (ADELI), and an error wrapping
// ErrFormat if the header lacks a column it reads, or the error of emit or
// of the reader.
func ParseRPPS(r io.Reader, emit func(Professional) error, bad func(LineError)) (skipped int, err error) {
	lines := newLineReader(r)
	header, ok, err := lines.next()
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%w: empty file", ErrFormat)
	}
	names := strings.Split(strings.TrimPrefix(header, "\uFEFF"), "|")
	col := make(map[string]int, len(names))
	for i, n := range names {
		if _, dup := col[n]; !dup {
			col[n] = i
		}
	}
	var idx [7]int
	for i, n := range []string{colIDType, colID, colTitle, colLastName, colFirstName, colProfession, colSpecialty} {
		j, found := col[n]
		if !found {
			return 0, fmt.Errorf("%w: no column %q in the header", ErrFormat, n)
		}
		idx[i] = j
	}
	for {
		line, ok, err := lines.next()
		if err != nil {
			return skipped, err
		}
		if !ok {
			return skipped, nil
		}
		if lines.tooLong {
			bad(LineError{lines.n, "line", fmt.Sprintf("longer than %d bytes", MaxLine)})
			continue
		}
		if line == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) != len(names) {
			bad(LineError{lines.n, "line", fmt.Sprintf("%d fields, the header has %d", len(f), len(names))})
			continue
		}
		if f[idx[0]] != rppsIDType {
			skipped++
			continue
		}
		num, err := ident.ParseRPPS(f[idx[1]])
		if err != nil {
			bad(LineError{lines.n, colID, "not an RPPS number (11 digits)"})
			continue
		}
		p := Professional{
			RPPS:       num,
			Title:      strings.TrimSpace(f[idx[2]]),
			Name:       strings.TrimSpace(strings.TrimSpace(f[idx[4]]) + " " + strings.TrimSpace(f[idx[3]])),
			Surname:    strings.TrimSpace(f[idx[3]]),
			Profession: strings.TrimSpace(f[idx[5]]),
			Specialty:  strings.TrimSpace(f[idx[6]]),
		}
		if p.Surname == "" {
			bad(LineError{lines.n, colLastName, "empty"})
			continue
		}
		if err := emit(p); err != nil {
			return skipped, err
		}
	}
}

// The FINESS extract's fields that are read, by position in a
// "structureet" line (0 is the line's type).
const (
	finessFieldNumber    = 1  // nofinesset
	finessFieldName      = 3  // rs
	finessFieldLongName  = 4  // rslongue
	finessFieldDelivery  = 15 // ligneacheminement: "75013 PARIS"
	finessStructureCount = 32 // fields of a structureet line, the last empty
)

// finessFieldNames names the fields read, for LineError.
var finessFieldNames = map[int]string{
	finessFieldNumber:   "nofinesset",
	finessFieldName:     "rs",
	finessFieldLongName: "rslongue",
	finessFieldDelivery: "ligneacheminement",
}

// ParseFINESS reads the FINESS extract of establishments as etalab
// publishes it (";"-separated, no header row: a first line
// "finess;etalab;..." then "structureet" lines, one per establishment,
// then "geolocalisation" lines, which are not needed here) and calls emit
// for each establishment and bad for each line it cannot read. Lines that
// are not valid UTF-8 are read as Windows-1252, the encoding of older
// editions. It returns an error wrapping ErrFormat if the first line is not
// the extract's, or the error of emit or of the reader.
func ParseFINESS(r io.Reader, emit func(Establishment) error, bad func(LineError)) error {
	lines := newLineReader(r)
	first, ok, err := lines.next()
	if err != nil {
		return err
	}
	if !ok || !strings.HasPrefix(strings.TrimPrefix(first, "\uFEFF"), "finess;") {
		return fmt.Errorf("%w: the first line is not \"finess;etalab;...\"", ErrFormat)
	}
	for {
		line, ok, err := lines.next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		if lines.tooLong {
			bad(LineError{lines.n, "line", fmt.Sprintf("longer than %d bytes", MaxLine)})
			continue
		}
		kind, _, _ := strings.Cut(line, ";")
		switch kind {
		case "":
			continue
		case "geolocalisation":
			continue
		case "structureet":
		default:
			bad(LineError{lines.n, "type", "neither structureet nor geolocalisation"})
			continue
		}
		f := strings.Split(line, ";")
		if len(f) < finessStructureCount {
			bad(LineError{lines.n, "line", fmt.Sprintf("%d fields, want %d", len(f), finessStructureCount)})
			continue
		}
		num, err := ident.ParseFINESS(f[finessFieldNumber])
		if err != nil {
			bad(LineError{lines.n, finessFieldNames[finessFieldNumber], "not a FINESS number"})
			continue
		}
		e := Establishment{FINESS: num, Name: strings.TrimSpace(f[finessFieldLongName]), Town: town(f[finessFieldDelivery])}
		if e.Name == "" {
			e.Name = strings.TrimSpace(f[finessFieldName])
		}
		if e.Name == "" {
			bad(LineError{lines.n, finessFieldNames[finessFieldName], "empty"})
			continue
		}
		if err := emit(e); err != nil {
			return err
		}
	}
}

// town is the town of a delivery line "01012 BOURG EN BRESSE CEDEX 9".
func town(delivery string) string {
	s := strings.TrimSpace(delivery)
	if len(s) > 6 && s[5] == ' ' && isDigits(s[:5]) {
		s = s[6:]
	}
	if i := strings.Index(s, " CEDEX"); i > 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// lineReader reads lines of at most MaxLine bytes, numbered from 1,
// without their end of line (LF or CRLF), as UTF-8.
type lineReader struct {
	r       *bufio.Reader
	n       int
	tooLong bool
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, MaxLine)}
}

// next returns the next line; ok is false at the end of the input. When
// the line was too long, tooLong is set and the line is "".
func (l *lineReader) next() (line string, ok bool, err error) {
	l.tooLong = false
	b, err := l.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		l.tooLong = true
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = l.r.ReadSlice('\n')
		}
		if err != nil && err != io.EOF {
			return "", false, err
		}
		l.n++
		return "", true, nil
	}
	if err != nil && err != io.EOF {
		return "", false, err
	}
	if len(b) == 0 && err == io.EOF {
		return "", false, nil
	}
	l.n++
	b = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	if utf8.Valid(b) {
		return string(b), true, nil
	}
	return decodeWindows1252(b), true, nil
}

// windows1252 maps the bytes 0x80 to 0x9F of Windows-1252 (the others are
// Latin-1's); 0 marks a byte that Windows-1252 leaves undefined.
var windows1252 = [32]rune{
	'€', 0, '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', 0, 'Ž', 0,
	0, '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', 0, 'ž', 'Ÿ',
}

func decodeWindows1252(b []byte) string {
	var s strings.Builder
	s.Grow(len(b) + len(b)/4)
	for _, c := range b {
		switch {
		case c < 0x80:
			s.WriteByte(c)
		case c < 0xA0 && windows1252[c-0x80] != 0:
			s.WriteRune(windows1252[c-0x80])
		case c < 0xA0:
			s.WriteRune(utf8.RuneError)
		default:
			s.WriteRune(rune(c))
		}
	}
	return s.String()
}
