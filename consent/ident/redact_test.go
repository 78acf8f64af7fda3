package ident

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// withKey returns body (13 characters, 2A or 2B at characters 6-7 for
// Corsica) followed by its control key.
func withKey(body string) string {
	digits := strings.NewReplacer("2A", "19", "2B", "18").Replace(body)
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || len(body) != 13 {
		panic("withKey: " + body)
	}
	return fmt.Sprintf("%s%02d", body, 97-n%97)
}

func TestRedactINS(t *testing.T) {
	ins := "184127645108946"
	corsA := withKey("17912" + "2A" + "123456")
	corsB := withKey("28001" + "2B" + "654321")
	lowerA := strings.Replace(corsA, "2A", "2a", 1)
	lowerB := strings.Replace(corsB, "2B", "2b", 1)
	for _, s := range []string{ins, corsA, corsB} {
		if _, err := ParseINS(s); err != nil {
			t.Fatalf("test INS %s: %v", s, err)
		}
	}
	wrongKey := ins[:13] + "00"
	tests := []struct{ in, want string }{
		{ins, Redacted},
		{corsA, Redacted},
		{corsB, Redacted},
		{lowerA, Redacted},
		{lowerB, Redacted},
		{"1 84 12 76 451 089 46", Redacted},
		{"1\u00a084\u00a012\u202f76\t451 089 46", Redacted},
		{"caller=service:" + ins + " code=OK", "caller=service:" + Redacted + " code=OK"},
		{"request_id=req-" + lowerA + "-1", "request_id=req-" + Redacted + "-1"},
		{"x" + lowerB + "y", "x" + Redacted + "y"},
		{"00" + ins + "99", "00" + Redacted + "99"},
		{ins + ins, Redacted + Redacted},
		{ins + " " + corsA, Redacted + " " + Redacted},
		{"/v1/rules/" + ins, "/v1/rules/" + Redacted},
		{"parsing \"" + lowerA + "\": value out of range", "parsing \"" + Redacted + "\": value out of range"},
		{wrongKey, wrongKey},
		{ins[:14], ins[:14]},
		{"no number here", "no number here"},
		{"", ""},
		{"leaf 12 of 4096, took 3ms", "leaf 12 of 4096, took 3ms"},
	}
	for _, tt := range tests {
		if got := RedactINS(tt.in); got != tt.want {
			t.Errorf("RedactINS(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestRedactINSEveryForm: whatever spelling NormalizeINS accepts, inside
// whatever text, RedactINS leaves none of it.
func TestRedactINSEveryForm(t *testing.T) {
	forms := func(s string) []string {
		out := []string{s, strings.ToLower(s)}
		spaced := s[:1] + " " + s[1:3] + " " + s[3:5] + " " + s[5:7] + " " + s[7:10] + " " + s[10:13] + " " + s[13:]
		out = append(out, spaced, strings.ToLower(spaced), strings.ReplaceAll(spaced, " ", "\u202f"), strings.ReplaceAll(spaced, " ", "\u00a0\t"))
		return out
	}
	for _, body := range []string{"1841276451089", "27903" + "2A" + "121518", "16512" + "2B" + "000001", "2000000000000"} {
		canon := withKey(body)
		for _, f := range forms(canon) {
			if x, err := NormalizeINS(f); err != nil || x.Canonical() != canon {
				t.Fatalf("NormalizeINS(%q) = %v, %v: not a form the API accepts", f, x, err)
			}
			for _, around := range [][2]string{{"", ""}, {"id-", "-x"}, {"PSYCHIATRY-NOTE-", ".pdf"}, {"é", "é"}, {"\"", "\""}} {
				in := around[0] + f + around[1]
				got := RedactINS(in)
				if got != around[0]+Redacted+around[1] {
					t.Errorf("RedactINS(%q) = %q", in, got)
				}
			}
		}
	}
}

func FuzzRedactINS(f *testing.F) {
	f.Add("184127645108946", "x")
	f.Add("1 84 12 76 451 089 46", "")
	f.Add(withKey("27903"+"2A"+"121518"), "req-")
	f.Add("2790321215189", "00")
	f.Fuzz(func(t *testing.T, s, around string) {
		once := RedactINS(s)
		if twice := RedactINS(once); twice != once {
			t.Fatalf("RedactINS is not idempotent on %q: %q then %q", s, once, twice)
		}
		// Whatever surrounds an INS, it does not come out whole.
		if x, err := NormalizeINS(s); err == nil {
			got := RedactINS(around + s + around)
			if strings.Contains(got, s) || strings.Contains(got, x.Canonical()) {
				t.Fatalf("RedactINS(%q) = %q, keeps the INS", around+s+around, got)
			}
		}
	})
}
