package ident

import "strings"

// RedactINS returns s with every INS in it replaced by [Redacted]: every
// spelling [NormalizeINS] accepts (the canonical one, the Corsica letters
// in lower case, separators between the characters), also inside a
// longer string such as a request id or a URL. Fifteen characters that
// happen to make a valid number and key are redacted too: a false alarm
// hides a number, a miss would show a patient.
//
// It is the safety net under the rule that no log line or error message
// carries an INS, not a substitute for keeping it out of them.
func RedactINS(s string) string {
	digits := 0
	for i := 0; i < len(s); i++ {
		if '0' <= s[i] && s[i] <= '9' {
			digits++
		}
	}
	if digits < 13 {
		return s // an INS has at least 13 digits
	}
	type char struct {
		start, end int
		c          byte
	}
	var (
		run  []char // the INS characters of the current run, separators skipped
		out  strings.Builder
		done int // s[:done] is in out
	)
	flush := func() {
		for i := 0; i+15 <= len(run); i++ {
			var b [15]byte
			for j := range b {
				b[j] = run[i+j].c
			}
			if _, err := ParseINS(string(b[:])); err != nil {
				continue
			}
			out.WriteString(s[done:run[i].start])
			out.WriteString(Redacted)
			done = run[i+14].end
			i += 14
		}
		run = run[:0]
	}
	for i, r := range s {
		switch {
		case '0' <= r && r <= '9', r == 'A', r == 'B':
			run = append(run, char{i, i + 1, byte(r)})
		case r == 'a', r == 'b':
			run = append(run, char{i, i + 1, byte(r) - 'a' + 'A'})
		case insSeparator(r):
			// Inside a run, as NormalizeINS skips it.
		default:
			flush()
		}
	}
	flush()
	if done == 0 {
		return s
	}
	out.WriteString(s[done:])
	return out.String()
}

// insSeparator reports whether NormalizeINS skips r.
func insSeparator(r rune) bool {
	return r == ' ' || r == '\t' || r == '\u00a0' || r == '\u202f'
}
