package verify

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/event"
)

// ReceiptHeaderV2 is the first line of a receipt of version 2: the
// receipt of one event of a batch, whose promise the log signed once for
// the whole batch (a [BatchReceipt]).
const ReceiptHeaderV2 = "vigie receipt v2"

// BatchReceiptHeader is the first line of a batch receipt's note text.
// Like [ReceiptHeader], it has spaces, so no checkpoint starts with it; and
// neither receipt header is a prefix of the other.
const BatchReceiptHeader = "vigie receipt batch v2"

// maxBatch bounds the leaves of a batch receipt, so that a path has at
// most maxProofLen hashes.
const maxBatch = 1 << 32

// A BatchReceipt is the log's signed promise that the Size events of a
// batch, recorded at Time, are at leaves First to First+Size-1 of the log
// named Origin, in order, and that a checkpoint covering them will be
// signed by Deadline. Root is the RFC 6962 Merkle tree hash of the batch's
// leaves (the Merkle leaf hashes of their commitments, [MerkleLeafHash]),
// as a tree of its own: an event's receipt proves its commitment's place
// in it with an inclusion path.
type BatchReceipt struct {
	Origin   string
	First    uint64
	Size     uint64
	Root     event.Hash
	Time     time.Time
	Deadline time.Time
}

// FormatBatchReceipt returns the note text of b: exactly seven lines, each
// ending in a newline:
//
//	vigie receipt batch v2
//	<origin>
//	<first leaf index in decimal>
//	<number of leaves in decimal, at least 1>
//	<batch root in lowercase hex>
//	<time, RFC 3339 UTC with nine fractional digits>
//	<deadline, same form>
//
// It fails on what [FormatReceipt] refuses, on an empty batch, and on a
// batch that would end beyond leaf index 2^64-1.
func FormatBatchReceipt(b BatchReceipt) ([]byte, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	out := make([]byte, 0, 200+len(b.Origin))
	out = append(out, BatchReceiptHeader+"\n"...)
	out = append(out, b.Origin...)
	out = fmt.Appendf(out, "\n%d\n%d\n%s\n", b.First, b.Size, b.Root)
	out = b.Time.UTC().AppendFormat(out, event.TimeLayout)
	out = append(out, '\n')
	out = b.Deadline.UTC().AppendFormat(out, event.TimeLayout)
	out = append(out, '\n')
	return out, nil
}

func (b *BatchReceipt) check() error {
	r := Receipt{Origin: b.Origin, Time: b.Time, Deadline: b.Deadline}
	if err := r.check(); err != nil {
		return fmt.Errorf("batch %w", err)
	}
	if b.Size == 0 || b.Size > maxBatch {
		return errors.New("batch receipt: size out of range")
	}
	if b.First+b.Size < b.First {
		return errors.New("batch receipt: leaves beyond the largest index")
	}
	return nil
}

// ParseBatchReceipt parses the note text of a batch receipt. It accepts
// exactly the bytes [FormatBatchReceipt] produces. It does not check a
// signature.
func ParseBatchReceipt(text []byte) (BatchReceipt, error) {
	const maxSize = len(BatchReceiptHeader) + MaxOriginLen + 2*20 + 2*event.HashSize + 2*len(event.TimeLayout) + 7
	if len(text) > maxSize {
		return BatchReceipt{}, fmt.Errorf("batch receipt: %d bytes, limit %d", len(text), maxSize)
	}
	if err := checkNoteText(text); err != nil {
		return BatchReceipt{}, fmt.Errorf("batch receipt: %w", err)
	}
	lines := strings.Split(string(text[:len(text)-1]), "\n")
	if lines[0] != BatchReceiptHeader {
		return BatchReceipt{}, fmt.Errorf("batch receipt: line 1: want %q", BatchReceiptHeader)
	}
	if len(lines) != 7 {
		return BatchReceipt{}, fmt.Errorf("batch receipt: %d lines, want 7", len(lines))
	}
	var b BatchReceipt
	var err error
	b.Origin = lines[1]
	if !ValidOrigin(b.Origin) {
		return BatchReceipt{}, errors.New("batch receipt: line 2: invalid origin")
	}
	if b.First, err = parseDecimal(lines[2]); err != nil {
		return BatchReceipt{}, fmt.Errorf("batch receipt: line 3: first leaf index: %w", err)
	}
	if b.Size, err = parseDecimal(lines[3]); err != nil {
		return BatchReceipt{}, fmt.Errorf("batch receipt: line 4: size: %w", err)
	}
	if b.Root, err = event.ParseHash(lines[4]); err != nil {
		return BatchReceipt{}, fmt.Errorf("batch receipt: line 5: root: %w", err)
	}
	if b.Time, err = parseTime(lines[5]); err != nil {
		return BatchReceipt{}, fmt.Errorf("batch receipt: line 6: time: %w", err)
	}
	if b.Deadline, err = parseTime(lines[6]); err != nil {
		return BatchReceipt{}, fmt.Errorf("batch receipt: line 7: deadline: %w", err)
	}
	if err := b.check(); err != nil {
		return BatchReceipt{}, err
	}
	return b, nil
}

// SignBatchReceipts signs one batch receipt for the events with these
// commitments, at leaves b.First on, and returns each event's receipt of
// version 2, in order: b.Size and b.Root are set from the commitments. s
// is the log's receipt key, named ReceiptKeyName(b.Origin). An event's
// receipt is
//
//	vigie receipt v2
//	<leaf index in decimal>
//	<commitment in lowercase hex>
//	<the inclusion path of the event's leaf in the batch's tree, one
//	 hash a line in standard base64, from the leaf up; none for a batch
//	 of one>
//	<an empty line>
//	<the signed note of the batch receipt>
//
// [OpenReceipt] verifies it.
func SignBatchReceipts(b BatchReceipt, commitments []event.Hash, s note.Signer) ([][]byte, error) {
	if want := ReceiptKeyName(b.Origin); s.Name() != want {
		return nil, fmt.Errorf("sign receipt: key name %q, want %q", s.Name(), want)
	}
	leaves := make([]event.Hash, len(commitments))
	for i, c := range commitments {
		leaves[i] = MerkleLeafHash(c)
	}
	b.Size = uint64(len(commitments))
	var paths [][]event.Hash
	b.Root, paths = batchTree(leaves)
	text, err := FormatBatchReceipt(b)
	if err != nil {
		return nil, err
	}
	signed, err := note.Sign(&note.Note{Text: string(text)}, s)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(commitments))
	for i, c := range commitments {
		r := make([]byte, 0, 100+45*len(paths[i])+len(signed))
		r = append(r, ReceiptHeaderV2+"\n"...)
		r = fmt.Appendf(r, "%d\n%s\n", b.First+uint64(i), c)
		for _, h := range paths[i] {
			r = base64.StdEncoding.AppendEncode(r, h[:])
			r = append(r, '\n')
		}
		r = append(r, '\n')
		out[i] = append(r, signed...)
	}
	return out, nil
}

// batchTree returns the RFC 6962 tree hash of leaves (at least one) and
// each leaf's inclusion path, from the leaf up.
func batchTree(leaves []event.Hash) (event.Hash, [][]event.Hash) {
	if len(leaves) == 1 {
		return leaves[0], [][]event.Hash{nil}
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	left, lp := batchTree(leaves[:k])
	right, rp := batchTree(leaves[k:])
	for i := range lp {
		lp[i] = append(lp[i], right)
	}
	for i := range rp {
		rp[i] = append(rp[i], left)
	}
	return nodeHash(left, right), append(lp, rp...)
}

// openReceiptV2 is [OpenReceipt] for a receipt of version 2.
func openReceiptV2(signed []byte, v note.Verifier) (Receipt, error) {
	if len(signed) > MaxNoteSize {
		return Receipt{}, fmt.Errorf("receipt: %d bytes, limit %d", len(signed), MaxNoteSize)
	}
	head, batchNote, ok := bytes.Cut(signed, []byte("\n\n"))
	if !ok {
		return Receipt{}, errors.New("receipt: no batch receipt after the path")
	}
	if err := checkNoteText(append(head[:len(head):len(head)], '\n')); err != nil {
		return Receipt{}, fmt.Errorf("receipt: %w", err)
	}
	lines := strings.Split(string(head), "\n")
	if len(lines) < 3 || lines[0] != ReceiptHeaderV2 {
		return Receipt{}, fmt.Errorf("receipt: want %q, a leaf index and a commitment", ReceiptHeaderV2)
	}
	index, err := parseDecimal(lines[1])
	if err != nil {
		return Receipt{}, fmt.Errorf("receipt: line 2: leaf index: %w", err)
	}
	c, err := event.ParseHash(lines[2])
	if err != nil {
		return Receipt{}, fmt.Errorf("receipt: line 3: commitment: %w", err)
	}
	if len(lines)-3 > maxProofLen {
		return Receipt{}, fmt.Errorf("receipt: %w: %d hashes, at most %d", ErrMalformedProof, len(lines)-3, maxProofLen)
	}
	path := make([][]byte, 0, len(lines)-3)
	for i, l := range lines[3:] {
		h, err := parseBase64Hash(l)
		if err != nil {
			return Receipt{}, fmt.Errorf("receipt: line %d: path: %w", i+4, err)
		}
		path = append(path, h[:])
	}
	text, err := openNote(batchNote, v)
	if err != nil {
		return Receipt{}, fmt.Errorf("receipt: %w", err)
	}
	b, err := ParseBatchReceipt(text)
	if err != nil {
		return Receipt{}, fmt.Errorf("receipt: %w", err)
	}
	if want := ReceiptKeyName(b.Origin); v.Name() != want {
		return Receipt{}, fmt.Errorf("receipt: key name %q, want %q for origin %q", v.Name(), want, b.Origin)
	}
	if index < b.First || index-b.First >= b.Size {
		return Receipt{}, fmt.Errorf("receipt: leaf index %d outside its batch (%d leaves from %d)", index, b.Size, b.First)
	}
	if err := VerifyInclusion(index-b.First, b.Size, MerkleLeafHash(c), path, b.Root); err != nil {
		return Receipt{}, fmt.Errorf("receipt: commitment %s in its batch: %w", c, err)
	}
	return Receipt{Origin: b.Origin, Index: index, Commitment: c, Time: b.Time, Deadline: b.Deadline}, nil
}
