package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// checkPayload checks that p is a compact JSON object (RFC 8259, no
// whitespace outside strings), valid UTF-8, with no duplicate keys (after
// unescaping, as encoding/json reads them) and no deeper nesting than
// MaxPayloadDepth. Its errors never quote p.
//
// It runs on every event recorded, so it is one pass over p without
// allocating for the common case (keys without escapes, objects of fewer
// than 16 keys). payload_test.go holds it to a plain implementation on
// encoding/json.
func checkPayload(p []byte) error {
	if len(p) == 0 {
		return errors.New("missing")
	}
	if p[0] != '{' {
		return errors.New("not a JSON object")
	}
	if !utf8.Valid(p) {
		return errors.New("not valid UTF-8")
	}
	s := payloadScanner{p: p}
	if err := s.value(0); err != nil {
		return err
	}
	if s.i != len(p) {
		return s.syntax()
	}
	return nil
}

type payloadScanner struct {
	p []byte
	i int
	// whitespace is set when the input is valid JSON except for
	// whitespace between tokens: reported as not compact, as the first
	// implementation did.
	whitespace bool
}

var errNotJSON = errors.New("not valid JSON")

func (s *payloadScanner) syntax() error {
	if s.whitespace {
		return errors.New("not compact JSON (whitespace outside strings)")
	}
	// Whitespace outside strings is the likelier mistake: look for it
	// before calling the input invalid.
	if s.onlyWhitespaceWrong() {
		return errors.New("not compact JSON (whitespace outside strings)")
	}
	return errNotJSON
}

// onlyWhitespaceWrong reports whether p is valid JSON: then the scanner
// failed on whitespace.
func (s *payloadScanner) onlyWhitespaceWrong() bool { return json.Valid(s.p) }

func (s *payloadScanner) value(depth int) error {
	if s.i >= len(s.p) {
		return s.syntax()
	}
	switch c := s.p[s.i]; {
	case c == '{':
		return s.object(depth)
	case c == '[':
		return s.array(depth)
	case c == '"':
		_, err := s.str()
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	}
	return s.syntax()
}

func (s *payloadScanner) literal(lit string) error {
	if len(s.p)-s.i < len(lit) || string(s.p[s.i:s.i+len(lit)]) != lit {
		return s.syntax()
	}
	s.i += len(lit)
	return nil
}

func (s *payloadScanner) number() error {
	p, i := s.p, s.i
	if p[i] == '-' {
		i++
	}
	switch {
	case i < len(p) && p[i] == '0':
		i++
	case i < len(p) && '1' <= p[i] && p[i] <= '9':
		for i < len(p) && '0' <= p[i] && p[i] <= '9' {
			i++
		}
	default:
		return s.syntax()
	}
	if i < len(p) && p[i] == '.' {
		i++
		if i >= len(p) || p[i] < '0' || p[i] > '9' {
			return s.syntax()
		}
		for i < len(p) && '0' <= p[i] && p[i] <= '9' {
			i++
		}
	}
	if i < len(p) && (p[i] == 'e' || p[i] == 'E') {
		i++
		if i < len(p) && (p[i] == '+' || p[i] == '-') {
			i++
		}
		if i >= len(p) || p[i] < '0' || p[i] > '9' {
			return s.syntax()
		}
		for i < len(p) && '0' <= p[i] && p[i] <= '9' {
			i++
		}
	}
	s.i = i
	return nil
}

// str scans a string and returns its raw contents (between the quotes)
// and whether they hold an escape.
func (s *payloadScanner) str() (raw []byte, err error) {
	p := s.p
	i := s.i + 1
	start := i
	for i < len(p) {
		c := p[i]
		switch {
		case c == '"':
			s.i = i + 1
			return p[start:i], nil
		case c < 0x20:
			return nil, s.syntax()
		case c == '\\':
			i++
			if i >= len(p) {
				return nil, s.syntax()
			}
			switch p[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if len(p)-i < 5 || !isHex(p[i+1]) || !isHex(p[i+2]) || !isHex(p[i+3]) || !isHex(p[i+4]) {
					return nil, s.syntax()
				}
				i += 5
			default:
				return nil, s.syntax()
			}
		default:
			i++
		}
	}
	return nil, s.syntax()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func (s *payloadScanner) array(depth int) error {
	if depth == MaxPayloadDepth {
		return s.deepOrInvalid()
	}
	s.i++ // [
	if s.i < len(s.p) && s.p[s.i] == ']' {
		s.i++
		return nil
	}
	for {
		if err := s.value(depth + 1); err != nil {
			return err
		}
		if s.i >= len(s.p) {
			return s.syntax()
		}
		switch s.p[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return s.syntax()
		}
	}
}

// smallKeys is how many keys an object may have before duplicates are
// looked for in a map rather than by comparing with each.
const smallKeys = 16

func (s *payloadScanner) object(depth int) error {
	if depth == MaxPayloadDepth {
		return s.deepOrInvalid()
	}
	s.i++ // {
	if s.i < len(s.p) && s.p[s.i] == '}' {
		s.i++
		return nil
	}
	var small [smallKeys][]byte
	keys := small[:0]
	var many map[string]struct{}
	for {
		if s.i >= len(s.p) || s.p[s.i] != '"' {
			return s.syntax()
		}
		raw, err := s.str()
		if err != nil {
			return err
		}
		key, err := s.key(raw)
		if err != nil {
			return err
		}
		if many == nil && len(keys) == smallKeys {
			many = make(map[string]struct{}, 2*smallKeys)
			for _, k := range keys {
				many[string(k)] = struct{}{}
			}
		}
		if many != nil {
			if _, dup := many[string(key)]; dup {
				return s.duplicate(depth)
			}
			many[string(key)] = struct{}{}
		} else {
			for _, k := range keys {
				if bytes.Equal(k, key) {
					return s.duplicate(depth)
				}
			}
			keys = append(keys, key)
		}
		if s.i >= len(s.p) || s.p[s.i] != ':' {
			return s.syntax()
		}
		s.i++
		if err := s.value(depth + 1); err != nil {
			return err
		}
		if s.i >= len(s.p) {
			return s.syntax()
		}
		switch s.p[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.syntax()
		}
	}
}

// key returns an object key as encoding/json reads it: the raw bytes
// when they hold no escape (the input is valid UTF-8), else unescaped by
// encoding/json itself, which decides what an escape means (lone
// surrogates become U+FFFD).
func (s *payloadScanner) key(raw []byte) ([]byte, error) {
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw, nil
	}
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(append(append(quoted, '"'), raw...), '"')
	var k string
	if err := json.Unmarshal(quoted, &k); err != nil {
		return nil, errNotJSON
	}
	return []byte(k), nil
}

// A duplicate key is reported only if the whole input is valid JSON, as
// the first implementation did (it validated, then looked for
// duplicates).
func (s *payloadScanner) duplicate(depth int) error {
	if !json.Valid(s.p) {
		return s.syntax()
	}
	if s.compactAfter() != nil {
		return s.syntax()
	}
	return fmt.Errorf("duplicate key at depth %d", depth+1)
}

// deepOrInvalid reports nesting beyond MaxPayloadDepth, if the input is
// otherwise valid compact JSON; else what is wrong with it.
func (s *payloadScanner) deepOrInvalid() error {
	if !json.Valid(s.p) || s.compactAfter() != nil {
		return s.syntax()
	}
	return fmt.Errorf("nested deeper than %d", MaxPayloadDepth)
}

// compactAfter reports whether p has whitespace outside strings, with a
// scan that needs no nesting limit.
func (s *payloadScanner) compactAfter() error {
	in := false
	for i := 0; i < len(s.p); i++ {
		c := s.p[i]
		switch {
		case in && c == '\\':
			i++
		case c == '"':
			in = !in
		case !in && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			s.whitespace = true
			return errors.New("whitespace")
		}
	}
	return nil
}
