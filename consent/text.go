package consent

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Free text is what people write for other people to read: a break-glass
// justification, a break-glass review's comment, a label of the national
// rules. It is shown in patients' histories and in auditors' reports, in
// terminals and in browsers, so it must not be able to move the cursor,
// clear a screen, start a new line or row, or reorder what follows it.

// UnsafeRune reports whether r has no place in free text: a C0 control
// character (TAB, LF and CR included), DEL, a C1 control character, a
// line or paragraph separator (U+2028, U+2029), or a bidirectional
// embedding, override or isolate (U+202A–U+202E, U+2066–U+2069).
func UnsafeRune(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) ||
		r == 0x2028 || r == 0x2029 ||
		(r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}

// CheckText checks free text: valid UTF-8, at most max bytes, and no
// [UnsafeRune]. Its error says what is wrong and never quotes the text.
// Every entry point checks free text with it, and names the field.
func CheckText(s string, max int) error {
	if len(s) > max {
		return errors.New("longer than " + strconv.Itoa(max) + " bytes")
	}
	if !utf8.ValidString(s) {
		return errors.New("must be UTF-8 text")
	}
	if i := strings.IndexFunc(s, UnsafeRune); i >= 0 {
		return errors.New("character " + strconv.Itoa(utf8.RuneCountInString(s[:i])+1) + " is a control or bidirectional formatting character")
	}
	return nil
}

// checkText is CheckText as a *FieldError naming field.
func checkText(field, s string, max int) error {
	if err := CheckText(s, max); err != nil {
		return fieldErr(field, err.Error())
	}
	return nil
}

// EscapeText returns s ready to be shown where a character could forge
// what is around it (a terminal, a table row): each [UnsafeRune] is
// written as its Go escape (\n, \x1b, \u202e) and each byte that is not
// UTF-8 as \xNN. Text that passed [CheckText] comes back unchanged; text
// recorded before the rule, or sent by a hostile server, is shown
// harmless.
func EscapeText(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, UnsafeRune) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(s[i])>>4, 16))
			b.WriteString(strconv.FormatUint(uint64(s[i])&0xf, 16))
		case UnsafeRune(r):
			q := strconv.QuoteRuneToASCII(r) // '\x1b', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}
