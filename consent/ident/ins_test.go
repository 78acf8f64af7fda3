package ident

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var kindErr = map[string]error{
	"length":    ErrINSLength,
	"character": ErrINSCharacter,
	"corsica":   ErrINSCorsica,
	"key":       ErrINSKey,
}

// goldenLine is one line of testdata/ins.txt.
type goldenLine struct {
	line  int
	op    string
	kind  string // invalid, strict
	input string
	want  string // valid, normalize
}

func readGolden(t *testing.T) []goldenLine {
	t.Helper()
	f, err := os.Open("testdata/ins.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []goldenLine
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		op, rest, _ := strings.Cut(line, " ")
		g := goldenLine{line: n, op: op}
		switch op {
		case "valid":
			g.input, g.want = rest, rest
		case "normalize":
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				t.Fatalf("line %d: %v", n, err)
			}
			g.input, _ = strconv.Unquote(q)
			g.want = strings.TrimSpace(rest[len(q):])
		case "invalid", "strict":
			kind, q, _ := strings.Cut(rest, " ")
			in, err := strconv.Unquote(q)
			if err != nil {
				t.Fatalf("line %d: %v", n, err)
			}
			if kindErr[kind] == nil {
				t.Fatalf("line %d: unknown kind %q", n, kind)
			}
			g.kind, g.input = kind, in
		default:
			t.Fatalf("line %d: unknown op %q", n, op)
		}
		out = append(out, g)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 40 {
		t.Fatalf("only %d golden vectors", len(out))
	}
	return out
}

func TestINSGolden(t *testing.T) {
	for _, g := range readGolden(t) {
		t.Run(fmt.Sprintf("line%d", g.line), func(t *testing.T) {
			switch g.op {
			case "valid":
				x, err := ParseINS(g.input)
				if err != nil {
					t.Fatalf("ParseINS(line %d) = %v, want nil", g.line, err)
				}
				if got := x.Canonical(); got != g.want {
					t.Errorf("ParseINS(line %d).Canonical() = %q, want %q", g.line, got, g.want)
				}
				y, err := NormalizeINS(g.input)
				if err != nil || y != x {
					t.Errorf("NormalizeINS(line %d) = %v, want the ParseINS result", g.line, err)
				}
			case "normalize":
				x, err := NormalizeINS(g.input)
				if err != nil {
					t.Fatalf("NormalizeINS(line %d) = %v, want nil", g.line, err)
				}
				if got := x.Canonical(); got != g.want {
					t.Errorf("NormalizeINS(line %d).Canonical() = %q, want %q", g.line, got, g.want)
				}
			case "strict":
				_, err := ParseINS(g.input)
				if !errors.Is(err, kindErr[g.kind]) {
					t.Errorf("ParseINS(line %d) = %v, want %v", g.line, err, kindErr[g.kind])
				}
				if _, err := NormalizeINS(g.input); err != nil {
					t.Errorf("NormalizeINS(line %d) = %v, want nil", g.line, err)
				}
			case "invalid":
				_, err := ParseINS(g.input)
				if !errors.Is(err, kindErr[g.kind]) {
					t.Errorf("ParseINS(line %d) = %v, want %v", g.line, err, kindErr[g.kind])
				}
				if _, err := NormalizeINS(g.input); err == nil {
					t.Errorf("NormalizeINS(line %d) = nil, want an error", g.line)
				}
				checkNoLeak(t, err, g.input)
			}
		})
	}
}

var digitRun = regexp.MustCompile(`[0-9]{3,}`)

// checkNoLeak fails if err's text could carry the INS: it must not contain
// the input, nor any run of three digits or more.
func checkNoLeak(t *testing.T, err error, input string) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	if len(input) >= 3 && strings.Contains(msg, input) {
		t.Errorf("error %q contains the input", msg)
	}
	if m := digitRun.FindString(msg); m != "" {
		t.Errorf("error %q contains the digit run %q", msg, m)
	}
}

func TestINSCorsicaKey(t *testing.T) {
	// 2A counts as 19 and 2B as 18: the same digits with 19 or 18 in
	// place of the letters have the same key, and are different INS.
	a, err := ParseINS("185052A01234579")
	if err != nil {
		t.Fatal(err)
	}
	n19, err := ParseINS("185051901234579")
	if err != nil {
		t.Fatalf("ParseINS(19 variant) = %v, want nil (same key as 2A)", err)
	}
	if a == n19 {
		t.Errorf("ParseINS(2A) == ParseINS(19), want distinct values")
	}
	if got := n19.Canonical(); got != "185051901234579" {
		t.Errorf("Canonical() = %q, want 185051901234579", got)
	}
	b, err := ParseINS("291112B12345606")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseINS("291111812345606"); err != nil {
		t.Errorf("ParseINS(18 variant) = %v, want nil (same key as 2B)", err)
	}
	if a == b {
		t.Error("distinct INS compare equal")
	}
}

func TestINSZero(t *testing.T) {
	var x INS
	if !x.IsZero() {
		t.Error("INS{}.IsZero() = false, want true")
	}
	if got := x.Canonical(); got != "" {
		t.Errorf("INS{}.Canonical() = %q, want empty", got)
	}
	y, err := ParseINS("100000000000047")
	if err != nil {
		t.Fatal(err)
	}
	if y.IsZero() {
		t.Error("ParseINS(100000000000047).IsZero() = true, want false")
	}
}

type holder struct {
	Patient INS
	secret  INS
	List    []INS
	Map     map[string]INS
	Ptr     *INS
}

func TestINSNeverPrints(t *testing.T) {
	const canonical = "184127645108946"
	x, err := ParseINS(canonical)
	if err != nil {
		t.Fatal(err)
	}
	h := holder{Patient: x, secret: x, List: []INS{x}, Map: map[string]INS{"k": x}, Ptr: &x}

	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%08v", "%T %v"} {
		outputs = append(outputs, fmt.Sprintf(verb, x), fmt.Sprintf(verb, h), fmt.Sprintf(verb, &h))
	}
	outputs = append(outputs, fmt.Sprint(x), fmt.Sprintln(x, h), x.String(), x.GoString())

	j, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, string(j))
	mk, err := json.Marshal(map[INS]int{x: 1})
	if err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, string(mk))

	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("check", "patient", x, "holder", h)
	text := slog.New(slog.NewTextHandler(&buf, nil))
	text.Info("check", slog.Any("patient", x), "ptr", &x)
	outputs = append(outputs, buf.String())

	for _, out := range outputs {
		if strings.Contains(out, canonical) || strings.Contains(out, canonical[:13]) {
			t.Errorf("output %q contains the INS", out)
		}
	}
	if got := fmt.Sprintf("%v", x); got != Redacted {
		t.Errorf("Sprintf(%%v) = %q, want %q", got, Redacted)
	}
	if got := fmt.Sprintf("%#v", x); got != Redacted {
		t.Errorf("Sprintf(%%#v) = %q, want %q", got, Redacted)
	}
	if !strings.Contains(string(j), `"Patient":"INS(redacted)"`) {
		t.Errorf("json.Marshal = %s, want a redacted Patient", j)
	}
	if !strings.Contains(buf.String(), `"patient":"INS(redacted)"`) {
		t.Errorf("slog JSON = %s, want a redacted patient", buf.String())
	}
	if got := x.Canonical(); got != canonical {
		t.Errorf("Canonical() = %q, want %q", got, canonical)
	}
}

func TestINSMaskedInMemory(t *testing.T) {
	// The unexported field of a struct prints through reflection: it must
	// not be the number itself.
	x, err := ParseINS("184127645108946")
	if err != nil {
		t.Fatal(err)
	}
	raw := fmt.Sprintf("%d", x.v)
	if strings.Contains(raw, "1841276451089") {
		t.Errorf("in-memory value %s holds the digits unmasked", raw)
	}
}

func FuzzParseINS(f *testing.F) {
	for _, s := range []string{"137047624348415", "185052A01234579", "291112B12345606", "", "185052a01234579", "1 37 04 76 243 484 15"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		x, err := ParseINS(s)
		if err != nil {
			checkNoLeak(t, err, s)
			if x != (INS{}) {
				t.Fatalf("ParseINS failed but returned a non-zero INS")
			}
			return
		}
		// Strict: only the canonical spelling parses.
		if got := x.Canonical(); got != s {
			t.Fatalf("ParseINS(%q).Canonical() = %q, want the input", s, got)
		}
		y, err := ParseINS(x.Canonical())
		if err != nil || y != x {
			t.Fatalf("ParseINS(Canonical()) = %v, %v; want the same INS", y, err)
		}
	})
}

func FuzzNormalizeINS(f *testing.F) {
	for _, s := range []string{"137047624348415", "1 85 05 2a 012 345 79", "\u00a0291112b12345606", "x", "12345678901234567890"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		x, err := NormalizeINS(s)
		if err != nil {
			checkNoLeak(t, err, s)
			return
		}
		c := x.Canonical()
		y, err := ParseINS(c)
		if err != nil || y != x {
			t.Fatalf("ParseINS(NormalizeINS(%q).Canonical()) = %v; want the same INS", s, err)
		}
		z, err := NormalizeINS(c)
		if err != nil || z != x {
			t.Fatalf("NormalizeINS is not idempotent on %q", s)
		}
		// Normalization only drops separators and upper-cases a and b.
		stripped := strings.Map(func(r rune) rune {
			switch r {
			case ' ', '\t', '\u00a0', '\u202f':
				return -1
			case 'a':
				return 'A'
			case 'b':
				return 'B'
			}
			return r
		}, s)
		if stripped != c {
			t.Fatalf("NormalizeINS(%q) = %q, want %q", s, c, stripped)
		}
	})
}
