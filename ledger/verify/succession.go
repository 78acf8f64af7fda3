package verify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"
)

// SuccessionFormat names the payload of a log succession event
// (event.KindLogSuccession), the first event of a log started after the
// log it succeeds was closed (docs/formats.md).
const SuccessionFormat = "vigie.log-succession.v1"

// A Succession is the payload of a log succession event: the old log's
// origin, its latest published checkpoint (the signed note, as
// published) and the verifier key of its checkpoints (note's text form).
type Succession struct {
	Format     string `json:"format"`
	Origin     string `json:"origin"`
	Checkpoint string `json:"checkpoint"`
	Key        string `json:"key"`
}

// A VerifiedSuccession is a succession whose checkpoint verifies under
// its key.
type VerifiedSuccession struct {
	Succession
	// Previous is the old log's checkpoint, opened.
	Previous Checkpoint
	// KeyID names the old log's key: its name and hash ("origin+hash").
	KeyID string
	// Verifier is the old log's checkpoint key.
	Verifier note.Verifier
}

// ErrSuccession is wrapped by every error of [CheckSuccession].
var ErrSuccession = errors.New("log succession")

// A SuccessionError is a succession refused: Field names the part at
// fault ("format", "origin", "key", "checkpoint", "payload").
type SuccessionError struct {
	Field  string
	Reason string
	Err    error
}

func (e *SuccessionError) Error() string {
	s := "log succession: " + e.Field + ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is makes every SuccessionError an ErrSuccession.
func (e *SuccessionError) Is(target error) bool { return target == ErrSuccession }

func (e *SuccessionError) Unwrap() error { return e.Err }

func successionErr(field, reason string, err error) error {
	return &SuccessionError{Field: field, Reason: reason, Err: err}
}

// NewSuccession checks a succession of the log named newOrigin, from the
// old log's signed checkpoint and its verifier key, and returns its
// payload. The errors name the field at fault ("checkpoint", "key") and
// never quote what was given.
func NewSuccession(signedCheckpoint []byte, key, newOrigin string) ([]byte, *VerifiedSuccession, error) {
	v, err := note.NewVerifier(key)
	if err != nil {
		return nil, nil, successionErr("key", "not a note verifier key", nil)
	}
	s := Succession{Format: SuccessionFormat, Origin: v.Name(), Checkpoint: string(signedCheckpoint), Key: key}
	payload, err := s.encode()
	if err != nil {
		return nil, nil, err
	}
	vs, err := CheckSuccession(payload, newOrigin)
	if err != nil {
		return nil, nil, err
	}
	return payload, vs, nil
}

// encode writes s in its one byte form: compact, in field order, without
// HTML escaping.
func (s Succession) encode() ([]byte, error) {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(s); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// CheckSuccession checks the payload of a log succession event recorded
// in the log named newOrigin: its format, a key whose name is the old
// origin (which differs from newOrigin), and a checkpoint of that origin
// signed by that key. It returns what the event says.
func CheckSuccession(payload []byte, newOrigin string) (*VerifiedSuccession, error) {
	var s Succession
	d := json.NewDecoder(bytes.NewReader(payload))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil || d.More() {
		return nil, successionErr("payload", "not a "+SuccessionFormat+" object", nil)
	}
	if again, err := s.encode(); err != nil || !bytes.Equal(again, payload) {
		return nil, successionErr("payload", "not in its one byte form (compact, fields in order, no avoidable escape)", nil)
	}
	if s.Format != SuccessionFormat {
		return nil, successionErr("format", "want "+SuccessionFormat, nil)
	}
	if !ValidOrigin(s.Origin) {
		return nil, successionErr("origin", "not a log origin", nil)
	}
	if s.Origin == newOrigin {
		return nil, successionErr("origin", "the old log's origin is this log's: a new log needs a new origin", nil)
	}
	v, err := note.NewVerifier(s.Key)
	if err != nil {
		return nil, successionErr("key", "not a note verifier key", nil)
	}
	if v.Name() != s.Origin {
		return nil, successionErr("key", "its name is not the old log's origin", nil)
	}
	cp, err := OpenCheckpoint([]byte(s.Checkpoint), v)
	if err != nil {
		return nil, successionErr("checkpoint", "does not verify under the old log's key", err)
	}
	return &VerifiedSuccession{
		Succession: s,
		Previous:   cp,
		KeyID:      fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash()),
		Verifier:   v,
	}, nil
}
