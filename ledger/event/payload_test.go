package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkPayloadReference is the first implementation of checkPayload, on
// encoding/json: slow, plainly right. The fuzz test holds the fast one to it.
// It checks that p is a compact JSON object, valid UTF-8, with no
// duplicate keys and bounded nesting. Its errors never quote p.
func checkPayloadReference(p []byte) error {
	if len(p) == 0 {
		return errors.New("missing")
	}
	if p[0] != '{' {
		return errors.New("not a JSON object")
	}
	if !utf8.Valid(p) {
		return errors.New("not valid UTF-8")
	}
	if !json.Valid(p) {
		return errors.New("not valid JSON")
	}
	var compact bytes.Buffer
	compact.Grow(len(p))
	if err := json.Compact(&compact, p); err != nil || !bytes.Equal(compact.Bytes(), p) {
		return errors.New("not compact JSON (whitespace outside strings)")
	}
	return checkKeysReference(p)
}

// checkKeys walks the valid JSON value p and rejects duplicate object keys
// (which JSON parsers resolve differently) and nesting deeper than
// MaxPayloadDepth.
func checkKeysReference(p []byte) error {
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber()
	type frame struct {
		object bool
		keys   map[string]struct{}
		isKey  bool // the next token of an object is a key
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return errors.New("not valid JSON")
		}
		var top *frame
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		if top != nil && top.object && top.isKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			k, _ := tok.(string)
			if _, dup := top.keys[k]; dup {
				return fmt.Errorf("duplicate key at depth %d", len(stack))
			}
			top.keys[k] = struct{}{}
			top.isKey = false
			continue
		}
		if top != nil && top.object {
			top.isKey = true // this token is a value; the next is a key
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) == MaxPayloadDepth {
				return fmt.Errorf("nested deeper than %d", MaxPayloadDepth)
			}
			obj := tok == json.Delim('{')
			f := frame{object: obj, isKey: obj}
			if obj {
				f.keys = make(map[string]struct{})
			}
			stack = append(stack, f)
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}

// payloadCases are payloads at the edges of checkPayload's rules.
var payloadCases = []string{
	``, `x`, `[]`, `{}`, `{"a":1}`, `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"a":{"a":1}}`,
	`{"a":[{"b":1,"b":2}]}`, `{ "a":1}`, `{"a" :1}`, `{"a":1} `, `{"a":1}x`, `{"a":01}`, `{"a":-0.5e+3}`,
	`{"a":1.}`, `{"a":.5}`, `{"a":-}`, `{"a":1e}`, `{"a":tru}`, `{"a":true,"b":false,"c":null}`,
	`{"a":"\x01"}`, `{"a":"\q"}`, `{"a":"\u12"}`, `{"a":"\u12g4"}`, "{\"a\":\"\xff\"}", `{"\ud800":1,"\udfff":2}`,
	`{"a":"b\"c","a\"":1}`, `{"a":[1,2,]}`, `{"a":[,]}`, `{"a":1,}`, `{,}`, `{"a"}`, `{"a":}`, `{"a":[1 ,2]}`,
	`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k3":3}`,
	`{"x":` + strings.Repeat(`[`, 31) + strings.Repeat(`]`, 31) + `}`,
	`{"x":` + strings.Repeat(`[`, 32) + strings.Repeat(`]`, 32) + `}`,
	`{"x":` + strings.Repeat(`[`, 32) + strings.Repeat(`]`, 31) + `}`,
	`{"x":` + strings.Repeat(`[`, 40) + ` ` + strings.Repeat(`]`, 40) + `}`,
	`{"a":1,"a":2} `, `{"a":1,"a":2,}`,
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// TestCheckPayloadMatchesReference holds the fast checker to the plain one
// on the edge cases; FuzzCheckPayload does on everything else.
func TestCheckPayloadMatchesReference(t *testing.T) {
	for _, p := range payloadCases {
		if got, want := errText(checkPayload([]byte(p))), errText(checkPayloadReference([]byte(p))); got != want {
			t.Errorf("checkPayload(%q) = %s, reference says %s", p, got, want)
		}
	}
}

func FuzzCheckPayload(f *testing.F) {
	for _, p := range payloadCases {
		f.Add([]byte(p))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if got, want := errText(checkPayload(p)), errText(checkPayloadReference(p)); got != want {
			t.Fatalf("checkPayload(%q) = %s, reference says %s", p, got, want)
		}
	})
}

// BenchmarkCheckPayload compares the checker with the reference on an
// access record's payload.
func BenchmarkCheckPayload(b *testing.B) {
	p := []byte(`{"format":"vigie.access.v1","request":{"id":"c-12-345","service":"service:hospital-his","actor":{"rpps":"10000000001","profession":"10","sector":"care","organization":"750712184","care_team":true},"action":"read","resource":{"kind":"document","document_id":"doc-1","document_type":"discharge-summary"},"purpose":"TREAT","time":"2026-11-29T00:10:25.425134267Z"},"decision":{"effect":"ALLOW","reason":"allowed","grounds":[{"source":"rule","id":"care-team","kind":"care-team","effect":"ALLOW"}],"obligations":[],"consent_version":0,"rules_version":1,"rules_hash":"baf547e63474bb8fda61caa4e2f146f6ce0d43aefe06518a1302aad8fa27b9c3","time":"2026-11-29T00:10:25.425134267Z"}}`)
	for _, c := range []struct {
		name  string
		check func([]byte) error
	}{{"fast", checkPayload}, {"reference", checkPayloadReference}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				if err := c.check(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
