package witness

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/vigie-sante/vigie/ledger/verify"
)

// maxProofHashes is the most hashes a consistency proof of a tree of at
// most 2^63 leaves has.
const maxProofHashes = 126

// FormatAddCheckpoint returns the body of a tlog-witness add-checkpoint
// request: the size the witness is believed to know, the consistency
// proof from it to the checkpoint (each hash in standard base64 on its own
// line), a blank line, and the signed checkpoint note.
func FormatAddCheckpoint(oldSize uint64, proof [][]byte, signedNote []byte) ([]byte, error) {
	if len(proof) > maxProofHashes {
		return nil, fmt.Errorf("add-checkpoint: %d proof hashes, limit %d", len(proof), maxProofHashes)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "old %d\n", oldSize)
	for i, h := range proof {
		if len(h) != 32 {
			return nil, fmt.Errorf("add-checkpoint: proof hash %d: %d bytes, want 32", i+1, len(h))
		}
		b.WriteString(base64.StdEncoding.EncodeToString(h))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.Write(signedNote)
	return b.Bytes(), nil
}

// ParseAddCheckpoint is the inverse of [FormatAddCheckpoint] (for fake
// witnesses in tests, and to keep the format's two halves together).
func ParseAddCheckpoint(body []byte) (oldSize uint64, proof [][]byte, signedNote []byte, err error) {
	head, n, ok := bytes.Cut(body, []byte("\n\n"))
	if !ok {
		return 0, nil, nil, errors.New("add-checkpoint: no blank line before the checkpoint")
	}
	lines := strings.Split(string(head), "\n")
	size, ok := strings.CutPrefix(lines[0], "old ")
	if !ok {
		return 0, nil, nil, errors.New("add-checkpoint: line 1: want old <size>")
	}
	if oldSize, err = strconv.ParseUint(size, 10, 64); err != nil || strconv.FormatUint(oldSize, 10) != size {
		return 0, nil, nil, errors.New("add-checkpoint: line 1: old size: want a decimal integer")
	}
	if len(lines)-1 > maxProofHashes {
		return 0, nil, nil, errors.New("add-checkpoint: too many proof hashes")
	}
	for i, l := range lines[1:] {
		h, err := base64.StdEncoding.Strict().DecodeString(l)
		if err != nil || len(h) != 32 {
			return 0, nil, nil, fmt.Errorf("add-checkpoint: line %d: proof hash: want 32 bytes in base64", i+2)
		}
		proof = append(proof, h)
	}
	return oldSize, proof, n, nil
}

// parseKnownSize parses the body of a 409 Conflict answer
// (text/x.tlog.size): the size of the latest checkpoint the witness knows,
// in decimal, and a newline.
func parseKnownSize(body []byte) (uint64, error) {
	s := strings.TrimSuffix(string(body), "\n")
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != s {
		return 0, errors.New("409 answer: want the witness's known tree size in decimal")
	}
	return n, nil
}

// checkCosignatures checks the signature lines a witness answered for
// signedNote: one of them must be a valid cosignature by w (others are
// ignored). It returns w's line.
func checkCosignatures(p *verify.WitnessPolicy, w verify.PolicyWitness, log noteVerifier, signedNote, lines []byte) ([]byte, error) {
	if len(lines) == 0 || len(lines) > 8<<10 || lines[len(lines)-1] != '\n' {
		return nil, errors.New("answer: want signature lines, each ending in a newline")
	}
	for _, l := range bytes.SplitAfter(lines, []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		if !bytes.HasPrefix(l, []byte("— "+w.Name+" ")) {
			continue
		}
		n := append(append([]byte{}, signedNote...), l...)
		r, err := p.CheckCosignatures(n, log)
		if err != nil {
			return nil, err
		}
		for _, name := range r.Cosigned {
			if name == w.Name {
				return l, nil
			}
		}
	}
	return nil, errors.New("answer: no valid cosignature by the witness's key")
}
