package audit

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vigie-sante/vigie/ledger/verify"
)

// A SignedCheckpoint is a checkpoint of the log's own history of signed
// checkpoints (the API's ListCheckpoints), with the consistency proof from
// the checkpoint before it in that history (Prev).
type SignedCheckpoint struct {
	Note     []byte
	SignedAt time.Time
	Prev     []byte
	Proof    [][]byte
}

// A SeenCheckpoint is a checkpoint a reader verified before, and when.
type SeenCheckpoint struct {
	Note []byte    `json:"note"`
	Time time.Time `json:"time"`
}

// A SeriesCheckpoint is one checkpoint of a series, as [CheckSeries]
// checked it.
type SeriesCheckpoint struct {
	verify.Checkpoint
	Note   []byte
	Time   time.Time
	Signed bool // from the log's history (else seen by the reader)
	// OK: signed by the log's key and consistent with the one before.
	OK bool
}

// A SeriesReport is what [CheckSeries] found.
type SeriesReport struct {
	// Latest is the checkpoint the log serves now (zero if it does not
	// open with the key).
	Latest     verify.Checkpoint
	LatestNote []byte
	// Series are the checkpoints, by size; empty after a rollback.
	Series []SeriesCheckpoint
	// Growth is the finding (also in Findings) when the latest checkpoint
	// is older than the largest the reader saw before: a smaller tree
	// (rollback), another tree of that size (fork), or a size the log now
	// refuses to prove (rollback). Seen is the size seen before.
	Growth   *Finding
	Seen     uint64
	Findings []Finding
	// Saved is what the reader keeps for the next check: what it saw
	// before, with the latest added when everything verified.
	Saved []SeenCheckpoint
}

// maxSeen bounds the checkpoints a reader keeps.
const maxSeen = 100

// CheckSeries checks the log as a reader who kept the checkpoints it
// verified before (seen) does: the latest checkpoint is not older than
// the largest seen; then every checkpoint seen and of the log's signed
// history, merged by size, is signed by the log's key and consistent with
// the one before (with the history's proofs, or proofs asked of src). An
// error means the log could not be asked.
func CheckSeries(ctx context.Context, src LogSource, keys Keys, latest []byte, history []SignedCheckpoint, seen []SeenCheckpoint, now time.Time) (*SeriesReport, error) {
	r := &SeriesReport{LatestNote: latest, Saved: seen}
	cp, bad := openCheckpoint(latest, keys, "the latest checkpoint")
	if bad != nil {
		r.Findings = append(r.Findings, *bad)
		return r, nil
	}
	r.Latest = cp
	var largest *SeenCheckpoint
	var largestCp verify.Checkpoint
	for i := range seen {
		c, err := keys.openSigned(seen[i].Note)
		if err == nil && (largest == nil || c.Size > largestCp.Size) {
			largest, largestCp = &seen[i], c
		}
	}
	if largest != nil {
		r.Seen = largestCp.Size
		if cp.Size < largestCp.Size || cp.Size == largestCp.Size && cp.Hash != largestCp.Hash {
			f, _ := consistency(ctx, nil, largestCp, cp, largest.Note, latest) // no proof to ask: same size or smaller
			r.Growth = f
			r.Findings = append(r.Findings, *f)
			return r, nil
		}
	}
	saved := slices.Clone(seen)
	if len(saved) == 0 || !bytes.Equal(saved[len(saved)-1].Note, latest) {
		saved = append(saved, SeenCheckpoint{Note: latest, Time: now.UTC()})
	}
	if len(saved) > maxSeen {
		saved = saved[len(saved)-maxSeen:]
	}

	type item struct {
		SeriesCheckpoint
		opened bool
		prev   []byte
		proof  [][]byte
	}
	var all []item
	add := func(n []byte, t time.Time, signed bool, prev []byte, proof [][]byte) {
		it := item{SeriesCheckpoint: SeriesCheckpoint{Note: n, Time: t, Signed: signed}, prev: prev, proof: proof}
		c, f := openCheckpoint(n, keys, "a checkpoint of the series")
		if f != nil {
			r.Findings = append(r.Findings, *f)
		} else {
			it.Checkpoint, it.opened = c, true
		}
		all = append(all, it)
	}
	for _, h := range history {
		add(h.Note, h.SignedAt, true, h.Prev, h.Proof)
	}
	for _, s := range saved {
		add(s.Note, s.Time, false, nil, nil)
	}
	slices.SortStableFunc(all, func(a, b item) int {
		if c := cmp.Compare(a.Size, b.Size); c != 0 {
			return c
		}
		switch {
		case a.Signed == b.Signed:
			return 0
		case a.Signed:
			return -1
		}
		return 1
	})
	all = slices.CompactFunc(all, func(a, b item) bool { return bytes.Equal(a.Note, b.Note) })
	for i := range all {
		all[i].OK = all[i].opened
	}
	for i := 1; i < len(all); i++ {
		a, b := &all[i-1], &all[i]
		if !a.opened || !b.opened {
			continue
		}
		var proof [][]byte
		switch {
		case b.proof != nil && bytes.Equal(b.prev, a.Note):
			proof = b.proof
		case a.Size == b.Size || a.Size == 0:
		default:
			var err error
			proof, err = src.ConsistencyProof(ctx, a.Size, b.Size)
			if errors.Is(err, ErrBeyondCheckpoint) {
				f := refusedProof(b.Size, a.Note, b.Note)
				r.Seen, r.Growth = b.Size, f
				r.Findings = append(r.Findings, *f)
				r.Series = nil
				return r, nil
			}
			if err != nil {
				return nil, fmt.Errorf("consistency proof from %d to %d: %w", a.Size, b.Size, err)
			}
		}
		if err := verify.VerifyConsistency(a.Checkpoint, b.Checkpoint, proof); err != nil {
			r.Findings = append(r.Findings, inconsistent(err, proof, a.Note, b.Note))
			b.OK = false
		}
	}
	for _, it := range all {
		r.Series = append(r.Series, it.SeriesCheckpoint)
	}
	if len(r.Findings) == 0 {
		r.Saved = saved
	}
	return r, nil
}
