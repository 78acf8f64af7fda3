package verify

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// TransitionPrefix starts the extension line of a transition checkpoint
// that names the log's next checkpoint key.
const TransitionPrefix = "vigie-next-log-key "

// A Transition is a checkpoint that hands the log over from its key to
// the next: its text is a checkpoint with one extension line naming the
// next key, and it is signed by both. The old key's signature is over the
// text that names the new key (an endorsement no one else can add to an
// ordinary checkpoint, whose signatures are public); the new key's proves
// that whoever introduces it holds it. Both keys are named after the
// origin, as every checkpoint key is.
type Transition struct {
	Checkpoint
	// NextKey is the next checkpoint key, a note verifier key
	// (<origin>+<hash>+<key>).
	NextKey string
	// Next verifies NextKey's signatures.
	Next note.Verifier
}

// FormatTransition returns the text of the transition checkpoint of c to
// the key nextKey: c's three lines, then "vigie-next-log-key <nextKey>".
func FormatTransition(c Checkpoint, nextKey string) ([]byte, error) {
	if _, err := nextVerifier(c.Origin, nextKey); err != nil {
		return nil, err
	}
	text, err := FormatCheckpoint(c)
	if err != nil {
		return nil, err
	}
	return append(append(append(text, TransitionPrefix...), nextKey...), '\n'), nil
}

// ParseTransition parses the text of a transition checkpoint, as strictly
// as [ParseCheckpoint], with exactly one extension line, naming a valid
// Ed25519 note verifier key named after the origin. FormatTransition of
// the result returns text.
func ParseTransition(text []byte) (Transition, error) {
	c, err := ParseCheckpoint(text)
	if err != nil {
		return Transition{}, err
	}
	lines := strings.Split(string(text[:len(text)-1]), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[3], TransitionPrefix) {
		return Transition{}, errors.New("transition: want one extension line naming the next key")
	}
	key := strings.TrimPrefix(lines[3], TransitionPrefix)
	v, err := nextVerifier(c.Origin, key)
	if err != nil {
		return Transition{}, err
	}
	return Transition{Checkpoint: c, NextKey: key, Next: v}, nil
}

func nextVerifier(origin, key string) (note.Verifier, error) {
	v, err := note.NewVerifier(key)
	if err != nil {
		return nil, fmt.Errorf("transition: next key: %w", err)
	}
	if v.Name() != origin {
		return nil, errors.New("transition: the next key is not named after the origin")
	}
	return v, nil
}

// SignTransition returns the transition checkpoint of c from the key
// signing with current to the key next, whose verifier key is nextKey:
// the note of [FormatTransition], signed by both.
func SignTransition(c Checkpoint, nextKey string, current, next note.Signer) ([]byte, error) {
	if current.Name() != c.Origin || next.Name() != c.Origin {
		return nil, errors.New("sign transition: a key is not named after the origin")
	}
	if current.KeyHash() == next.KeyHash() {
		return nil, errors.New("sign transition: the next key is the current key")
	}
	text, err := FormatTransition(c, nextKey)
	if err != nil {
		return nil, err
	}
	return note.Sign(&note.Note{Text: string(text)}, current, next)
}

// OpenTransition verifies a transition checkpoint against current, the
// log's key as the reader pinned it, and returns it: the note carries a
// valid signature by current and one by the next key it names, which
// differs from current. A reader then trusts the next key for the
// checkpoints that extend this one; a checkpoint signed by a new key
// without such a note is refused ([OpenCheckpoint] with the pinned key).
// Errors wrap [ErrSignature] for a missing or invalid signature.
func OpenTransition(signedNote []byte, current note.Verifier) (Transition, error) {
	text, err := openNote(signedNote, current)
	if err != nil {
		return Transition{}, fmt.Errorf("transition: %w", err)
	}
	t, err := ParseTransition(text)
	if err != nil {
		return Transition{}, err
	}
	if t.Origin != current.Name() {
		return Transition{}, fmt.Errorf("transition: origin %q differs from the log key name %q", t.Origin, current.Name())
	}
	if t.Next.KeyHash() == current.KeyHash() {
		return Transition{}, errors.New("transition: the next key is the current key")
	}
	if _, err := openNote(signedNote, t.Next); err != nil {
		return Transition{}, fmt.Errorf("transition: next key: %w", err)
	}
	return t, nil
}
