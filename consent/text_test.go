package consent_test

import (
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/consent"
)

func TestCheckText(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		ok         bool
	}{
		{"empty", "", true},
		{"French", "patient inconscient, admis aux urgences à 3 h — « SAMU »", true},
		{"right-to-left script", "مريض فاقد للوعي", true},
		{"ESC", "ok\x1b[2J", false},
		{"CR", "ok\rforged", false},
		{"LF", "ok\nforged", false},
		{"TAB", "ok\tforged", false},
		{"BEL", "ok\a", false},
		{"NUL", "ok\x00", false},
		{"DEL", "ok\x7f", false},
		{"C1 CSI", "ok\u009b2J", false},
		{"line separator", "ok\u2028forged", false},
		{"LRE", "ok\u202a", false},
		{"RLO", "ok\u202edeifitsuj", false},
		{"PDF", "ok\u202c", false},
		{"LRI", "ok\u2066", false},
		{"PDI", "ok\u2069", false},
		{"not UTF-8", "ok\xff", false},
		{"too long", strings.Repeat("a", 17), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := consent.CheckText(tc.text, 16*4)
			if tc.name == "too long" {
				err = consent.CheckText(tc.text, 16)
			}
			if (err == nil) != tc.ok {
				t.Errorf("CheckText(%q) = %v, want ok %v", tc.text, err, tc.ok)
			}
			if err != nil && strings.Contains(err.Error(), "ok") {
				t.Errorf("CheckText(%q) = %v: quotes the text", tc.text, err)
			}
		})
	}
}

func TestEscapeText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"patient inconscient — à 3 h", "patient inconscient — à 3 h"},
		{"a\x1b[2Jb", `a\x1b[2Jb`},
		{"a\r\n\tb\a", `a\r\n\tb\a`},
		{"a\u009bb", `a\u009bb`},
		{"a\u202eb\u2067c\u2028", `a\u202eb\u2067c\u2028`},
		{"a\xffb", `a\xffb`},
	} {
		got := consent.EscapeText(tc.in)
		if got != tc.want {
			t.Errorf("EscapeText(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if consent.CheckText(got, 1<<10) != nil {
			t.Errorf("EscapeText(%q) = %q, which CheckText refuses", tc.in, got)
		}
	}
}

// FuzzEscapeText checks that whatever the input, the escaped text is
// safe to show.
func FuzzEscapeText(f *testing.F) {
	for _, s := range []string{"", "ok", "a\x1b[2J\r\n", "\u202e\xff\u2069"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if err := consent.CheckText(consent.EscapeText(s), 1<<30); err != nil {
			t.Errorf("EscapeText(%q) = %q: %v", s, consent.EscapeText(s), err)
		}
		if consent.CheckText(s, 1<<30) == nil && consent.EscapeText(s) != s {
			t.Errorf("EscapeText(%q) changed text that CheckText accepts", s)
		}
	})
}
