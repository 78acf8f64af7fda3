package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func mustHash(t testing.TB, s string) Hash {
	t.Helper()
	h, err := ParseHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

var (
	goldenTime    = time.Date(2026, 11, 28, 22, 0, 0, 123456789, time.UTC)
	goldenPatient = Hash{0: 0x5a, 31: 0x01}
	goldenPrev    = Hash{0: 0xc0, 1: 0xff, 2: 0xee, 31: 0x42}
)

// goldenBodies are the bodies of testdata/*.json, one per kind.
func goldenBodies() map[string]Body {
	return map[string]Body{
		"access": {V: 1, ID: "0123456789abcdef0123456789abcdef", Time: goldenTime, Kind: KindAccess,
			Patient: goldenPatient, Seq: 1, Service: "hopital-nord.example/dpi",
			Payload: json.RawMessage(`{"actor":{"rpps":"10000000001","profession":"10"},"action":"read","document":"doc-1","decision":"allow","rules":["R1"]}`)},
		"consent_change": {V: 1, ID: "fedcba9876543210fedcba9876543210", Time: goldenTime, Kind: KindConsentChange,
			Patient: goldenPatient, Seq: 2, Prev: goldenPrev, Service: "portail-patient",
			Payload: json.RawMessage(`{"consent_version":3,"directives":[{"id":"d1","effect":"deny","profession":"21"}]}`)},
		"rules_change": {V: 1, ID: "00000000000000000000000000000001", Time: goldenTime, Kind: KindRulesChange,
			Seq: 7, Prev: goldenPrev, Service: "admin",
			Payload: json.RawMessage(`{"rules_version":"2026-11","rules_hash":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}`)},
		"ledger_read": {V: 1, ID: "11111111111111111111111111111111", Time: goldenTime, Kind: KindLedgerRead,
			Patient: goldenPatient, Seq: 3, Prev: goldenPrev, Service: "portail-patient",
			Payload: json.RawMessage(`{"reader":"patient","events":12}`)},
		"break_glass_review": {V: 1, ID: "22222222222222222222222222222222", Time: goldenTime, Kind: KindBreakGlassReview,
			Patient: goldenPatient, Seq: 4, Prev: goldenPrev, Service: "dpo-console",
			Payload: json.RawMessage(`{"event":"0123456789abcdef0123456789abcdef","outcome":"justified"}`)},
		"erasure": {V: 1, ID: "33333333333333333333333333333333", Time: goldenTime, Kind: KindErasure,
			Patient: goldenPatient, Seq: 5, Prev: goldenPrev, Service: "admin",
			Payload: json.RawMessage(`{}`)},
	}
}

func TestGoldenBodies(t *testing.T) {
	for name, b := range goldenBodies() {
		t.Run(name, func(t *testing.T) {
			got, err := b.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			path := filepath.Join("testdata", "body-"+name+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Marshal =\n%s\nwant (%s)\n%s", got, path, want)
			}
			parsed, err := Parse(want)
			if err != nil {
				t.Fatalf("Parse(%s): %v", path, err)
			}
			if !equalBody(*parsed, b) {
				t.Errorf("Parse(%s) = %+v, want %+v", path, *parsed, b)
			}
		})
	}
}

func equalBody(a, b Body) bool {
	return a.V == b.V && a.ID == b.ID && a.Time.Equal(b.Time) && a.Kind == b.Kind &&
		a.Patient == b.Patient && a.Seq == b.Seq && a.Prev == b.Prev &&
		a.Service == b.Service && bytes.Equal(a.Payload, b.Payload)
}

func TestMarshalUTC(t *testing.T) {
	b := goldenBodies()["access"]
	b.Time = goldenTime.In(time.FixedZone("CET", 3600))
	got, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got, []byte(`"time":"2026-11-28T22:00:00.123456789Z"`)) {
		t.Errorf("Marshal with a CET time = %s, want the time in UTC", got)
	}
	b.Time = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	got, _ = b.Marshal()
	if !bytes.Contains(got, []byte(`"time":"2026-01-02T03:04:05.000000000Z"`)) {
		t.Errorf("Marshal with a whole second = %s, want nine fractional digits", got)
	}
}

func TestMarshalErrors(t *testing.T) {
	base := goldenBodies()["consent_change"]
	tests := []struct {
		name  string
		edit  func(b *Body)
		field string // "" for ErrTooLarge
	}{
		{"version 0", func(b *Body) { b.V = 0 }, "v"},
		{"version 2", func(b *Body) { b.V = 2 }, "v"},
		{"short id", func(b *Body) { b.ID = "abc" }, "id"},
		{"uppercase id", func(b *Body) { b.ID = strings.ToUpper(b.ID) }, "id"},
		{"zero time", func(b *Body) { b.Time = time.Time{} }, "time"},
		{"year 10000", func(b *Body) { b.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "time"},
		{"unknown kind", func(b *Body) { b.Kind = "delete" }, "kind"},
		{"empty kind", func(b *Body) { b.Kind = "" }, "kind"},
		{"rules change with patient", func(b *Body) { b.Kind = KindRulesChange }, "patient"},
		{"access without patient", func(b *Body) { b.Kind = KindAccess; b.Patient = SystemChain }, "patient"},
		{"erasure without patient", func(b *Body) { b.Kind = KindErasure; b.Patient = SystemChain }, "patient"},
		{"seq 0", func(b *Body) { b.Seq = 0 }, "seq"},
		{"seq 1 with prev", func(b *Body) { b.Seq = 1 }, "prev"},
		{"seq 2 without prev", func(b *Body) { b.Prev = Hash{} }, "prev"},
		{"empty service", func(b *Body) { b.Service = "" }, "service"},
		{"long service", func(b *Body) { b.Service = strings.Repeat("s", MaxServiceLen+1) }, "service"},
		{"service with quote", func(b *Body) { b.Service = `a"b` }, "service"},
		{"service with backslash", func(b *Body) { b.Service = `a\b` }, "service"},
		{"service with newline", func(b *Body) { b.Service = "a\nb" }, "service"},
		{"service not ASCII", func(b *Body) { b.Service = "hôpital" }, "service"},
		{"nil payload", func(b *Body) { b.Payload = nil }, "payload"},
		{"payload array", func(b *Body) { b.Payload = json.RawMessage(`[1]`) }, "payload"},
		{"payload string", func(b *Body) { b.Payload = json.RawMessage(`"x"`) }, "payload"},
		{"payload null", func(b *Body) { b.Payload = json.RawMessage(`null`) }, "payload"},
		{"payload not JSON", func(b *Body) { b.Payload = json.RawMessage(`{x}`) }, "payload"},
		{"payload two values", func(b *Body) { b.Payload = json.RawMessage(`{}{}`) }, "payload"},
		{"payload with space", func(b *Body) { b.Payload = json.RawMessage(`{"a": 1}`) }, "payload"},
		{"payload with newline", func(b *Body) { b.Payload = json.RawMessage("{\"a\":1}\n") }, "payload"},
		{"payload duplicate key", func(b *Body) { b.Payload = json.RawMessage(`{"a":1,"a":2}`) }, "payload"},
		{"payload duplicate escaped key", func(b *Body) { b.Payload = json.RawMessage(`{"a":1,"\u0061":2}`) }, "payload"},
		{"payload nested duplicate key", func(b *Body) { b.Payload = json.RawMessage(`{"a":[{"b":1,"b":1}]}`) }, "payload"},
		{"payload bad UTF-8", func(b *Body) { b.Payload = json.RawMessage("{\"a\":\"\xff\"}") }, "payload"},
		{"payload too deep", func(b *Body) {
			b.Payload = json.RawMessage(strings.Repeat(`{"a":`, MaxPayloadDepth+1) + "1" + strings.Repeat("}", MaxPayloadDepth+1))
		}, "payload"},
		{"too large", func(b *Body) {
			b.Payload = json.RawMessage(`{"a":"` + strings.Repeat("x", MaxBodySize) + `"}`)
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := base
			tt.edit(&b)
			got, err := b.Marshal()
			if err == nil {
				t.Fatalf("Marshal = %s, want an error", got)
			}
			if tt.field == "" {
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("Marshal error = %v, want ErrTooLarge", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Marshal error = %v, want a FieldError on %q", err, tt.field)
			}
		})
	}
}

func TestPayloadDepthLimit(t *testing.T) {
	b := goldenBodies()["consent_change"]
	b.Payload = json.RawMessage(strings.Repeat(`{"a":`, MaxPayloadDepth-1) + "[1]" + strings.Repeat("}", MaxPayloadDepth-1))
	if _, err := b.Marshal(); err != nil {
		t.Errorf("Marshal with a payload %d deep: %v", MaxPayloadDepth, err)
	}
	// Same keys in sibling objects are not duplicates.
	b.Payload = json.RawMessage(`{"a":{"x":1},"b":{"x":1},"c":[{"x":1},{"x":2}]}`)
	if _, err := b.Marshal(); err != nil {
		t.Errorf("Marshal with repeated keys in sibling objects: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	golden, err := os.ReadFile("testdata/body-consent_change.json")
	if err != nil {
		t.Fatal(err)
	}
	g := string(golden)
	replace := func(old, new string) []byte {
		if !strings.Contains(g, old) {
			t.Fatalf("golden body lacks %q", old)
		}
		return []byte(strings.Replace(g, old, new, 1))
	}
	tests := []struct {
		name     string
		data     []byte
		sentinel error  // errors.Is, if set
		field    string // FieldError.Field, if set
		substr   string // in the message, if set
	}{
		{"empty", nil, nil, "", "not a JSON object"},
		{"not JSON", []byte("hello"), nil, "", "not a JSON object"},
		{"JSON array", []byte(`[1]`), nil, "", "not a JSON object"},
		{"empty object", []byte(`{}`), ErrMissingVersion, "", ""},
		{"no version", []byte(`{"id":"x"}`), ErrMissingVersion, "", ""},
		{"version 2", replace(`{"v":1,`, `{"v":2,`), ErrUnsupportedVersion, "", "version 2"},
		{"version 10", replace(`{"v":1,`, `{"v":10,`), ErrUnsupportedVersion, "", "version 10"},
		{"version 0", replace(`{"v":1,`, `{"v":0,`), ErrUnsupportedVersion, "", "version 0"},
		{"version 2 alone", []byte(`{"v":2}`), ErrUnsupportedVersion, "", "version 2"},
		{"version 1 alone", []byte(`{"v":1}`), nil, "id", "missing"},
		{"version 1 truncated", []byte(`{"v":1`), nil, "", "truncated"},
		{"space after version", []byte(`{"v":1 ,"id":"x"}`), nil, "", "canonical"},
		{"version null", replace(`{"v":1,`, `{"v":null,`), ErrUnsupportedVersion, "", "not a small decimal integer"},
		{"version string", replace(`{"v":1,`, `{"v":"1",`), ErrUnsupportedVersion, "", "not a small decimal integer"},
		{"version 1.0", replace(`{"v":1,`, `{"v":1.0,`), ErrUnsupportedVersion, "", ""},
		{"version -1", replace(`{"v":1,`, `{"v":-1,`), ErrUnsupportedVersion, "", ""},
		{"version huge", []byte(`{"v":123456789012345678901234567890,"id":1}`), ErrUnsupportedVersion, "", ""},
		{"version not first", []byte(`{"id":"x","v":1}`), nil, "v", "first"},
		{"space before version", []byte(`{ "v":1}`), nil, "", "canonical"},
		{"space before version 2", []byte(`{ "v":2}`), ErrUnsupportedVersion, "", "version 2"},
		{"version escaped", []byte(`{"\u0076":1}`), nil, "", "canonical"},
		{"too large", append(bytes.Repeat([]byte(" "), MaxBodySize-1), golden...), ErrTooLarge, "", ""},
		{"truncated", golden[:len(golden)-1], nil, "", "truncated"},
		{"truncated in payload", golden[:len(golden)-10], nil, "", ""},
		{"trailing newline", append(bytes.Clone(golden), '\n'), nil, "", "canonical"},
		{"trailing data", append(bytes.Clone(golden), `{}`...), nil, "", "after the object"},
		{"space after colon", replace(`"kind":"`, `"kind": "`), nil, "", "canonical"},
		{"unknown field", replace(`,"payload":`, `,"extra":1,"payload":`), nil, "extra", "unknown"},
		{"unknown field at end", replace(`}]}}`, `}]},"extra":1}`), nil, "extra", "unknown"},
		{"too many fields", replace(`}]}}`, `}]}`+manyFields(20)+`}`), nil, "", "too many fields"},
		{"missing field", replace(`"service":"portail-patient",`, ``), nil, "service", "missing"},
		{"missing payload", replace(`,"payload":{"consent_version":3,"directives":[{"id":"d1","effect":"deny","profession":"21"}]}`, ``), nil, "payload", "missing"},
		{"repeated field", replace(`,"payload":`, `,"kind":"access","payload":`), nil, "kind", "repeated"},
		{"swapped fields", replace(`"patient":"5a00000000000000000000000000000000000000000000000000000000000001","seq":2`,
			`"seq":2,"patient":"5a00000000000000000000000000000000000000000000000000000000000001"`), nil, "patient", "order"},
		{"short id", replace(`"fedcba9876543210fedcba9876543210"`, `"fedcba98"`), nil, "id", ""},
		{"uppercase id", replace(`"fedcba9876543210fedcba9876543210"`, `"FEDCBA9876543210FEDCBA9876543210"`), nil, "id", ""},
		{"id number", replace(`"fedcba9876543210fedcba9876543210"`, `12`), nil, "id", ""},
		{"time without nanoseconds", replace(`22:00:00.123456789Z`, `22:00:00Z`), nil, "time", ""},
		{"time with offset", replace(`22:00:00.123456789Z`, `22:00:00.123456789+01:00`), nil, "time", ""},
		{"time lowercase z", replace(`22:00:00.123456789Z`, `22:00:00.123456789z`), nil, "time", ""},
		{"time invalid day", replace(`2026-11-28`, `2026-02-30`), nil, "time", ""},
		{"time hour 24", replace(`T22:`, `T24:`), nil, "time", ""},
		{"time escaped", replace(`"2026-11-28T22:00:00.123456789Z"`, `"\u0032026-11-28T22:00:00.123456789Z"`), nil, "time", ""},
		{"unknown kind", replace(`"consent_change"`, `"delete"`), nil, "kind", "unknown"},
		{"kind escaped", replace(`"consent_change"`, `"consent\u005fchange"`), nil, "", "canonical"},
		{"kind number", replace(`"consent_change"`, `3`), nil, "kind", ""},
		{"patient short", replace(`"5a00000000000000000000000000000000000000000000000000000000000001"`, `"5a01"`), nil, "patient", ""},
		{"patient uppercase", replace(`"5a00000000000000000000000000000000000000000000000000000000000001"`, `"5A00000000000000000000000000000000000000000000000000000000000001"`), nil, "patient", ""},
		{"patient zero for consent change", replace(`"5a00000000000000000000000000000000000000000000000000000000000001"`, `"`+strings.Repeat("0", 64)+`"`), nil, "patient", ""},
		{"seq 0", replace(`"seq":2`, `"seq":0`), nil, "seq", ""},
		{"seq leading zero", replace(`"seq":2`, `"seq":02`), nil, "", ""},
		{"seq negative", replace(`"seq":2`, `"seq":-2`), nil, "seq", ""},
		{"seq float", replace(`"seq":2`, `"seq":2.0`), nil, "seq", ""},
		{"seq exponent", replace(`"seq":2`, `"seq":2e0`), nil, "seq", ""},
		{"seq string", replace(`"seq":2`, `"seq":"2"`), nil, "seq", ""},
		{"seq overflow", replace(`"seq":2`, `"seq":18446744073709551616`), nil, "seq", ""},
		{"prev zero with seq 2", replace(`"c0ffee0000000000000000000000000000000000000000000000000000000042"`, `"`+strings.Repeat("0", 64)+`"`), nil, "prev", ""},
		{"prev null", replace(`"c0ffee0000000000000000000000000000000000000000000000000000000042"`, `null`), nil, "prev", ""},
		{"service empty", replace(`"portail-patient"`, `""`), nil, "service", ""},
		{"service escaped", replace(`"portail-patient"`, `"portail\u002dpatient"`), nil, "", "canonical"},
		{"service number", replace(`"portail-patient"`, `7`), nil, "service", ""},
		{"payload array", replace(`"payload":{"consent_version":3,"directives":[{"id":"d1","effect":"deny","profession":"21"}]}`, `"payload":[1]`), nil, "payload", ""},
		{"payload null", replace(`"payload":{"consent_version":3,"directives":[{"id":"d1","effect":"deny","profession":"21"}]}`, `"payload":null`), nil, "payload", ""},
		{"payload duplicate key", replace(`"effect":"deny"`, `"effect":"deny","effect":"allow"`), nil, "payload", "duplicate"},
		{"payload space", replace(`"consent_version":3`, `"consent_version": 3`), nil, "payload", "compact"},
		{"bad UTF-8", replace(`"deny"`, "\"d\xffny\""), nil, "", "UTF-8"},
		{"control character", replace(`"deny"`, "\"d\x01ny\""), nil, "", "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Parse(tt.data)
			if err == nil {
				t.Fatalf("Parse = %+v, want an error", b)
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("Parse error = %v, want %v", err, tt.sentinel)
			}
			if tt.field != "" {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tt.field {
					t.Errorf("Parse error = %v, want a FieldError on %q", err, tt.field)
				}
			}
			if !strings.Contains(err.Error(), tt.substr) {
				t.Errorf("Parse error = %v, want it to contain %q", err, tt.substr)
			}
			if bytes.Contains(tt.data, []byte("directives")) && strings.Contains(err.Error(), "deny") {
				t.Errorf("Parse error = %v, quotes the payload", err)
			}
		})
	}
}

func manyFields(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `,"extra%d":1`, i)
	}
	return b.String()
}

// TestErrorsHidePayload checks that no error quotes payload content, since a
// payload can hold health data.
func TestErrorsHidePayload(t *testing.T) {
	const secret = "SECRET-diagnostic"
	golden, err := os.ReadFile("testdata/body-access.json")
	if err != nil {
		t.Fatal(err)
	}
	g := string(golden)
	payloads := []string{
		`{"x":"` + secret + `" }`,
		`{"x":"` + secret + `","x":"` + secret + `"}`,
		`{"` + secret + `":1,"` + secret + `":2}`,
		`{"x":` + secret + `}`,
		`{"x":"` + secret + `"`,
		`{"x":"` + secret + "\x00\"}",
		`{"x":"` + secret + "\xff\"}",
		`["` + secret + `"]`,
		`"` + secret + `"`,
		secret,
		`{"x":"` + secret + `"}` + secret,
		strings.Repeat(`{"`+secret+`":`, MaxPayloadDepth+1) + "1" + strings.Repeat("}", MaxPayloadDepth+1),
	}
	i := strings.Index(g, `"payload":`) + len(`"payload":`)
	for _, p := range payloads {
		data := g[:i] + p + "}"
		_, err := Parse([]byte(data))
		if err == nil {
			t.Errorf("Parse(body with payload %q) succeeded, want an error", p)
			continue
		}
		if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "diagnostic") {
			t.Errorf("Parse error %q quotes the payload", err)
		}
		b := goldenBodies()["access"]
		b.Payload = json.RawMessage(p)
		if _, err := b.Marshal(); err == nil {
			t.Errorf("Marshal(payload %q) succeeded, want an error", p)
		} else if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("Marshal error %q quotes the payload", err)
		}
	}
}

func TestParseDoesNotAlias(t *testing.T) {
	golden, err := os.ReadFile("testdata/body-access.json")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(golden)
	if err != nil {
		t.Fatal(err)
	}
	want := string(b.Payload)
	for i := range golden {
		golden[i] = 'x'
	}
	if string(b.Payload) != want {
		t.Errorf("Payload changed with the input buffer: %s", b.Payload)
	}
}

func TestHashText(t *testing.T) {
	h := Hash{0: 0xab, 31: 0x01}
	const s = "ab00000000000000000000000000000000000000000000000000000000000001"
	if got := h.String(); got != s {
		t.Errorf("String = %s, want %s", got, s)
	}
	text, _ := h.MarshalText()
	if string(text) != s {
		t.Errorf("MarshalText = %s, want %s", text, s)
	}
	if got := mustHash(t, s); got != h {
		t.Errorf("ParseHash(%s) = %v, want %v", s, got, h)
	}
	j, err := json.Marshal(map[string]Hash{"h": h})
	if err != nil || string(j) != `{"h":"`+s+`"}` {
		t.Errorf("json.Marshal = %s, %v", j, err)
	}
	for _, bad := range []string{"", s[:63], s + "0", strings.ToUpper(s), "0x" + s[2:], s[:62] + "g1", s[:63] + " "} {
		if _, err := ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) succeeded, want an error", bad)
		}
	}
	if !(Hash{}).IsZero() || h.IsZero() {
		t.Error("IsZero is wrong")
	}
}

func TestNewID(t *testing.T) {
	r := bytes.NewReader(bytes.Repeat([]byte{0xab, 0x01}, 8))
	id, err := NewID(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Repeat("ab01", 8); id != want {
		t.Errorf("NewID = %s, want %s", id, want)
	}
	if _, err := NewID(bytes.NewReader(make([]byte, 15))); err == nil {
		t.Error("NewID with 15 bytes of randomness succeeded, want an error")
	}
	a, err := NewID(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewID(nil)
	if a == b || !isLowerHex(a, IDLen) {
		t.Errorf("NewID(nil) = %s, %s: want two different ids of %d hex digits", a, b, IDLen)
	}
}

func TestKindValid(t *testing.T) {
	for _, k := range []Kind{KindAccess, KindConsentChange, KindRulesChange, KindLedgerRead, KindBreakGlassReview, KindErasure} {
		if !k.Valid() {
			t.Errorf("%s.Valid() = false", k)
		}
	}
	for _, k := range []Kind{"", "Access", "access ", "other"} {
		if k.Valid() {
			t.Errorf("%q.Valid() = true", k)
		}
	}
}

// FuzzParse checks that Parse never panics, and that whatever it accepts
// re-encodes to the same bytes (one event, one byte form).
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/body-*.json")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":1,"id":"0"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Parse(data)
		if err != nil {
			if b != nil {
				t.Fatalf("Parse returned a body and an error %v", err)
			}
			return
		}
		out, err := b.Marshal()
		if err != nil {
			t.Fatalf("Marshal(Parse(%q)): %v", data, err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("Marshal(Parse(x)) = %q, want x = %q", out, data)
		}
	})
}

// FuzzMarshal checks that whatever Marshal accepts parses back to the same
// body.
func FuzzMarshal(f *testing.F) {
	for _, b := range goldenBodies() {
		f.Add(b.ID, b.Time.UnixNano(), string(b.Kind), b.Patient[:], b.Seq, b.Prev[:], b.Service, []byte(b.Payload))
	}
	f.Fuzz(func(t *testing.T, id string, unixNano int64, kind string, patient []byte, seq uint64, prev []byte, service string, payload []byte) {
		b := Body{V: 1, ID: id, Time: time.Unix(0, unixNano), Kind: Kind(kind), Seq: seq, Service: service, Payload: payload}
		copy(b.Patient[:], patient)
		copy(b.Prev[:], prev)
		data, err := b.Marshal()
		if err != nil {
			return
		}
		got, err := Parse(data)
		if err != nil {
			t.Fatalf("Parse(Marshal(b)) = %v, data %q", err, data)
		}
		if !equalBody(*got, b) {
			t.Fatalf("Parse(Marshal(b)) = %+v, want %+v", *got, b)
		}
	})
}
