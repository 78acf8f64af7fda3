package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"

	"github.com/vigie-sante/vigie/api/server"
)

// fieldErrors is the JSON marshaler whose decoder reports a body it cannot
// read by the path of the field at fault ("invalid
// directives[0].valid_until: not an RFC 3339 timestamp"), never quoting the
// value: protojson's own messages quote it, and it may be an INS.
type fieldErrors struct{ *runtime.JSONPb }

func (m fieldErrors) NewDecoder(r io.Reader) runtime.Decoder {
	return runtime.DecoderFunc(func(v any) error {
		b, err := io.ReadAll(r)
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				return fmt.Errorf("request body too large: at most %d bytes", tooLarge.Limit)
			}
			return errors.New("request body cannot be read")
		}
		if err := m.JSONPb.Unmarshal(b, v); err != nil {
			return bodyError(b, err)
		}
		// JSONPb reads the first JSON value and ignores the rest: a body
		// is one object, and nothing but white space follows it.
		if !oneValue(b) {
			return errors.New("invalid request body: data after the JSON object")
		}
		return nil
	})
}

// oneValue reports whether b holds one JSON value, with nothing but white
// space after it.
func oneValue(b []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	var first json.RawMessage
	if err := dec.Decode(&first); err != nil {
		return false
	}
	_, err := dec.Token()
	return err == io.EOF
}

var protojsonPosition = regexp.MustCompile(`\(line (\d+):(\d+)\)`)

// bodyError turns a protojson error about body b into a message naming
// the field at fault.
func bodyError(b []byte, err error) error {
	msg := err.Error()
	var what string
	switch {
	case strings.Contains(msg, "unknown field"):
		what = "unknown field"
	case strings.Contains(msg, "google.protobuf.Timestamp"):
		what = "not an RFC 3339 timestamp (e.g. 2026-11-28T10:00:00Z)"
	case strings.Contains(msg, "google.protobuf.Duration"):
		what = "not a duration (e.g. 3.5s)"
	case strings.Contains(msg, "invalid value for enum"):
		what = "unknown value"
	case strings.Contains(msg, "invalid value for"):
		what = "wrong JSON type or value"
	case strings.Contains(msg, "unexpected token") && len(bytes.TrimSpace(b)) > 0 && bytes.TrimSpace(b)[0] != '{':
		what = "the body must be a JSON object"
	default:
		what = "malformed JSON"
	}
	path := ""
	if m := protojsonPosition.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		col, _ := strconv.Atoi(m[2])
		path = jsonPath(b, byteOffset(b, line, col))
	}
	if what == "unknown field" && !fieldLike(path) {
		// The client's key, which may be anything: not repeated.
		path = ""
	}
	if path == "" {
		return errors.New(server.RedactINS("invalid request body: " + what))
	}
	return errors.New(server.RedactINS("invalid " + path + ": " + what))
}

// byteOffset returns the offset of 1-based line and column (in runes, as
// protojson counts them) in b.
func byteOffset(b []byte, line, col int) int {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			return len(b)
		}
		off += i + 1
	}
	for c := 1; c < col && off < len(b); c++ {
		_, size := utf8.DecodeRune(b[off:])
		off += size
	}
	return off
}

// jsonPath returns the path, with the .proto names the client used
// (json names are mapped back to themselves: they are what the client
// wrote), of the JSON key or value at offset in b, as "a.b[2].c"; "" if it
// is the top level or cannot be told.
func jsonPath(b []byte, offset int) string {
	type frame struct {
		object    bool
		key       string
		index     int
		expectKey bool
	}
	var stack []frame
	path := func(extra string) string {
		var sb strings.Builder
		for _, f := range stack {
			if f.object {
				if f.expectKey {
					continue
				}
				if sb.Len() > 0 {
					sb.WriteByte('.')
				}
				sb.WriteString(f.key)
			} else {
				fmt.Fprintf(&sb, "[%d]", f.index)
			}
		}
		if extra != "" {
			if sb.Len() > 0 {
				sb.WriteByte('.')
			}
			sb.WriteString(extra)
		}
		return sb.String()
	}
	valueDone := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].object {
				stack[n-1].expectKey = true
			} else {
				stack[n-1].index++
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := dec.Token()
		end := int(dec.InputOffset())
		if err != nil {
			return path("")
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].expectKey {
			if tok == json.Delim('}') {
				stack = stack[:n-1]
				valueDone()
				continue
			}
			key, _ := tok.(string)
			if offset < end {
				return path(key)
			}
			stack[n-1].key, stack[n-1].expectKey = key, false
			continue
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if offset < end {
				return path("")
			}
			stack = append(stack, frame{object: tok == json.Delim('{'), expectKey: tok == json.Delim('{')})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
		default:
			if offset < end {
				return path("")
			}
			valueDone()
		}
	}
}

var fieldName = regexp.MustCompile(`^[a-z][a-zA-Z0-9_]{0,63}(\[[0-9]+\])*$`)

// fieldLike reports whether every key of path is spelled as a field
// name (.proto or JSON), so that naming it repeats no value.
func fieldLike(path string) bool {
	for _, k := range strings.Split(path, ".") {
		if !fieldName.MatchString(k) {
			return false
		}
	}
	return true
}
