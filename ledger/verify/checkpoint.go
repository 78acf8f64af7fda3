package verify

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/event"
)

// MaxOriginLen is the longest origin, in bytes, that Vigie formats or
// accepts.
const MaxOriginLen = 256

// MaxCheckpointSize is the largest checkpoint note text, in bytes, that
// [ParseCheckpoint] accepts, extension lines included.
const MaxCheckpointSize = 16 << 10

// MaxNoteSize is the largest signed note, in bytes, that [OpenCheckpoint] and
// [OpenReceipt] accept (room for a hundred cosignatures, the most that
// golang.org/x/mod/sumdb/note reads).
const MaxNoteSize = 64 << 10

// A Checkpoint is the head of a log at a given size, as in [tlog-checkpoint]:
// the origin names the log, Hash is the RFC 6962 root of its first Size
// leaves.
//
// [tlog-checkpoint]: https://c2sp.org/tlog-checkpoint
type Checkpoint struct {
	Origin string
	Size   uint64
	Hash   event.Hash
}

// ValidOrigin reports whether origin can name a Vigie log: the origin is
// also the note name of the log's key, so it must be a valid note key name
// (non-empty UTF-8 without spaces or '+'), without control characters, and
// at most [MaxOriginLen] bytes.
func ValidOrigin(origin string) bool {
	return len(origin) <= MaxOriginLen && validNoteName(origin) &&
		strings.IndexFunc(origin, unicode.IsControl) < 0
}

// validNoteName is the rule of golang.org/x/mod/sumdb/note for key names,
// which the note package does not export.
func validNoteName(name string) bool {
	return name != "" && utf8.ValidString(name) &&
		strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}

// FormatOrigin returns the origin of a Vigie log: name + "/vigie/" + tree
// id, for example "dmp.example.fr/vigie/7305128413946201301". The name is
// configured once, at the first start of a deployment, and never changes.
func FormatOrigin(name string, treeID int64) (string, error) {
	if treeID <= 0 {
		return "", fmt.Errorf("origin: tree id %d, want a positive integer", treeID)
	}
	origin := name + "/vigie/" + strconv.FormatInt(treeID, 10)
	if name == "" || !ValidOrigin(origin) {
		return "", fmt.Errorf("origin: name %q: want a non-empty UTF-8 name without spaces or '+', origin at most %d bytes", name, MaxOriginLen)
	}
	return origin, nil
}

// ParseOrigin returns the name and tree id of a Vigie log's origin, the
// inverse of [FormatOrigin]. It accepts only what FormatOrigin returns
// (canonical decimal tree id, no leading zero or sign).
func ParseOrigin(origin string) (name string, treeID int64, err error) {
	i := strings.LastIndex(origin, "/vigie/")
	if i < 0 {
		return "", 0, errors.New("origin: want <name>/vigie/<tree id>")
	}
	name = origin[:i]
	if treeID, err = strconv.ParseInt(origin[i+len("/vigie/"):], 10, 64); err != nil {
		return "", 0, errors.New("origin: the tree id is not a decimal integer")
	}
	if again, err := FormatOrigin(name, treeID); err != nil || again != origin {
		return "", 0, errors.New("origin: not in canonical form <name>/vigie/<tree id>")
	}
	return name, treeID, nil
}

// FormatCheckpoint returns the note text of c: exactly three lines, each
// ending in a newline, with no extension lines:
//
//	<origin>
//	<size in decimal>
//	<root hash in standard base64>
//
// It fails only when c.Origin is not a [ValidOrigin].
func FormatCheckpoint(c Checkpoint) ([]byte, error) {
	if !ValidOrigin(c.Origin) {
		return nil, errors.New("checkpoint: invalid origin")
	}
	b := make([]byte, 0, len(c.Origin)+70)
	b = append(b, c.Origin...)
	b = append(b, '\n')
	b = strconv.AppendUint(b, c.Size, 10)
	b = append(b, '\n')
	b = base64.StdEncoding.AppendEncode(b, c.Hash[:])
	b = append(b, '\n')
	return b, nil
}

// ParseCheckpoint parses the note text of a checkpoint. It is strict about
// the three lines [FormatCheckpoint] writes (a valid origin, a decimal size
// without sign or leading zeros, a 32-byte hash in canonical standard
// base64) and, as tlog-checkpoint allows, accepts and ignores non-empty
// extension lines after them. The text is at most [MaxCheckpointSize] bytes
// of UTF-8 without control characters other than newline, and ends in a
// newline. For text without extension lines, FormatCheckpoint of the result
// returns text.
//
// ParseCheckpoint does not check a signature; see [OpenCheckpoint].
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	if len(text) > MaxCheckpointSize {
		return Checkpoint{}, fmt.Errorf("checkpoint: %d bytes, limit %d", len(text), MaxCheckpointSize)
	}
	if err := checkNoteText(text); err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint: %w", err)
	}
	lines := strings.Split(string(text[:len(text)-1]), "\n")
	if len(lines) < 3 {
		return Checkpoint{}, fmt.Errorf("checkpoint: %d lines, want at least 3", len(lines))
	}
	if !ValidOrigin(lines[0]) {
		return Checkpoint{}, errors.New("checkpoint: line 1: invalid origin")
	}
	size, err := parseDecimal(lines[1])
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint: line 2: tree size: %w", err)
	}
	hash, err := parseBase64Hash(lines[2])
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint: line 3: root hash: %w", err)
	}
	for i, ext := range lines[3:] {
		if ext == "" {
			return Checkpoint{}, fmt.Errorf("checkpoint: line %d: empty extension line", i+4)
		}
	}
	return Checkpoint{Origin: lines[0], Size: size, Hash: hash}, nil
}

// checkNoteText checks the rules of a signed note's text: non-empty, ending
// in a newline, valid UTF-8 with no control character other than newline.
func checkNoteText(text []byte) error {
	if len(text) == 0 || text[len(text)-1] != '\n' {
		return errors.New("text does not end in a newline")
	}
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRune(text[i:])
		if r == utf8.RuneError && size == 1 {
			return fmt.Errorf("invalid UTF-8 at byte %d", i)
		}
		if r < 0x20 && r != '\n' {
			return fmt.Errorf("control character at byte %d", i)
		}
		i += size
	}
	return nil
}

// parseDecimal parses an unsigned decimal integer in its one form: no sign,
// no leading zeros (except "0" itself), at most 2^64-1.
func parseDecimal(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != s {
		return 0, errors.New("want a decimal integer without sign or leading zeros, at most 2^64-1")
	}
	return n, nil
}

// parseBase64Hash parses a 32-byte hash in canonical standard base64 (44
// characters, padded, unused bits zero).
func parseBase64Hash(s string) (event.Hash, error) {
	var h event.Hash
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != event.HashSize || base64.StdEncoding.EncodeToString(b) != s {
		return h, errors.New("want 32 bytes in standard base64")
	}
	copy(h[:], b)
	return h, nil
}

// OpenCheckpoint verifies a signed checkpoint note and returns its
// checkpoint. The note must carry a valid signature by v, the log's key,
// whose name must equal the checkpoint's origin; signatures by other keys
// (witness cosignatures, a rotated key) are ignored, as the signed note
// specification requires. The note is at most [MaxNoteSize] bytes.
func OpenCheckpoint(signedNote []byte, v note.Verifier) (Checkpoint, error) {
	text, err := openNote(signedNote, v)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint: %w", err)
	}
	c, err := ParseCheckpoint(text)
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != v.Name() {
		return Checkpoint{}, fmt.Errorf("checkpoint: origin %q differs from the log key name %q", c.Origin, v.Name())
	}
	return c, nil
}

// SignCheckpoint formats c and signs it with s, the log's key, whose name
// must equal c.Origin. It is the inverse of [OpenCheckpoint].
func SignCheckpoint(c Checkpoint, s note.Signer) ([]byte, error) {
	if s.Name() != c.Origin {
		return nil, fmt.Errorf("sign checkpoint: key name %q differs from the origin %q", s.Name(), c.Origin)
	}
	text, err := FormatCheckpoint(c)
	if err != nil {
		return nil, err
	}
	return note.Sign(&note.Note{Text: string(text)}, s)
}

// openNote checks the size of a signed note and a valid signature by v, and
// returns the note's text.
func openNote(signed []byte, v note.Verifier) ([]byte, error) {
	if v == nil {
		return nil, errors.New("no verifier key")
	}
	if len(signed) > MaxNoteSize {
		return nil, fmt.Errorf("signed note: %d bytes, limit %d", len(signed), MaxNoteSize)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return nil, fmt.Errorf("%w: no signature by key %s+%08x", ErrSignature, v.Name(), v.KeyHash())
		case errors.As(err, &invalid):
			return nil, fmt.Errorf("%w: invalid signature by key %s+%08x", ErrSignature, v.Name(), v.KeyHash())
		}
		return nil, fmt.Errorf("signed note: %w", err)
	}
	// note.Open verified at least one signature, and v is the only key it
	// knows.
	return []byte(n.Text), nil
}

// ErrSignature means a signed note carries no valid signature by the
// expected key: a missing signature, a signature by another key, or a
// forged one. Test it with [errors.Is].
var ErrSignature = errors.New("not signed by the expected key")
