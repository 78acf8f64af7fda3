package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// LogState is what an auditor keeps between two runs of [Follow]: the last
// checkpoint it verified and the compact range of the tree at that size
// (at most 64 hashes), so that the next run fetches only the leaves that
// came after, whatever the size of the log.
type LogState struct {
	Checkpoint []byte       // signed note
	Range      []event.Hash // verify.RootBuilder.Range at its size
}

// FollowOptions configure [Follow].
type FollowOptions struct {
	// Keys are the log's keys (Keys.Checkpoint, and Keys.Witnesses if
	// set: the policy each checkpoint polled must meet).
	Keys Keys
	// State is the state saved by the previous run; nil starts from the
	// empty tree.
	State *LogState
	// FromZero fetches every leaf from index 0 even with a State, so that
	// the saved root is rebuilt too (and Expect can name any index).
	FromZero bool
	// Expect are commitments expected at leaf indices (the events an
	// auditor read with their bodies): each is compared with the leaf
	// served at its index, as the leaves stream by. Indices below the
	// first leaf fetched are not checked (set FromZero).
	Expect map[uint64]event.Hash
	// Batch is how many leaves to ask for at once. Default 1000, the
	// server's maximum.
	Batch uint64
	// Polls is how many times the latest checkpoint is fetched (each time
	// the leaves up to it are fetched and its root rebuilt). Default 2:
	// at the start and after the first catch-up.
	Polls int
	// Progress, if not nil, is called as leaves arrive with the number
	// fetched and the number to fetch so far.
	Progress func(done, total uint64)
	// MinSize and MinSizeWait: the first poll asks for the checkpoint
	// again, every 200 ms for up to MinSizeWait, until one covers MinSize
	// leaves (the events an auditor just read: the log signs them within
	// its merge delay). Without such a checkpoint, Follow goes on with the
	// latest, and the events beyond it are listed in Beyond.
	MinSize     uint64
	MinSizeWait time.Duration
	// Before, if not nil, is a checkpoint the caller was served before
	// following (the bound of a search it made): it is checked as the
	// first one polled (signature, not older than the saved state,
	// consistency with every other, its root rebuilt from the leaves),
	// with the same findings and evidence.
	Before []byte
}

// A Seen checkpoint is one [Follow] saw, with what it checked.
type Seen struct {
	verify.Checkpoint
	Note []byte `json:"-"`
	// Saved is true for the checkpoint of the saved state.
	Saved bool
	// RootChecked: the root recomputed from the leaves (or from the saved
	// range) equals the signed root.
	RootChecked bool
}

// A Pair is a consistency check between two checkpoints seen.
type Pair struct {
	Old, New uint64 // tree sizes
	OK       bool
}

// FollowReport is what [Follow] found.
type FollowReport struct {
	Origin string
	// Seen are the checkpoints seen, the saved one first, in order of
	// size.
	Seen []Seen
	// Pairs are the consistency checks, one per pair of checkpoints seen.
	Pairs []Pair
	// First is the index of the first leaf fetched, Fetched how many were.
	First, Fetched uint64
	// Expected counts the leaves compared with Expect; Beyond lists the
	// expected indices no checkpoint seen covers yet.
	Expected int
	Beyond   []uint64
	Findings []Finding
	// State is the state to save for the next run; nil when there are
	// findings (the next run starts again from the previous state).
	State *LogState
}

// follower is the state of one Follow.
type follower struct {
	src     LogSource
	opts    FollowOptions
	r       *FollowReport
	rb      *verify.RootBuilder
	total   uint64
	stopped bool // a finding makes further leaves meaningless
	// rescanned: the leaves were fetched again from 0 to settle a failed
	// consistency proof.
	rescanned bool
	waited    bool // for a checkpoint of opts.MinSize
	// witnessChecked are the notes whose cosignatures were checked.
	witnessChecked map[string]bool
}

// Follow follows the log from a saved state to its latest checkpoint (see
// the package documentation). It returns the report, with every finding;
// an error means the log could not be read (a network failure, a server
// that refuses), or the saved state does not open with the key.
func Follow(ctx context.Context, src LogSource, opts FollowOptions) (*FollowReport, error) {
	if opts.Keys.Checkpoint == nil {
		return nil, errors.New("follow: no checkpoint key")
	}
	if opts.Batch == 0 {
		opts.Batch = 1000
	}
	if opts.Polls <= 0 {
		opts.Polls = 2
	}
	f := &follower{src: src, opts: opts, r: &FollowReport{Origin: opts.Keys.Checkpoint.Name()}, rb: &verify.RootBuilder{},
		witnessChecked: make(map[string]bool)}
	if s := opts.State; s != nil {
		prev, err := opts.Keys.openSigned(s.Checkpoint)
		if err != nil {
			return nil, fmt.Errorf("saved state: %w", err)
		}
		f.r.Seen = append(f.r.Seen, Seen{Checkpoint: prev, Note: s.Checkpoint, Saved: true})
		if !opts.FromZero {
			rb, err := verify.NewRootBuilder(prev.Size, s.Range)
			if err != nil || rb.Root() != prev.Hash {
				return nil, fmt.Errorf("saved state: its range is not the tree of its checkpoint (size %d)", prev.Size)
			}
			f.rb = rb
			f.r.Seen[0].RootChecked = true
		}
	}
	f.r.First = f.rb.Size()
	if opts.Before != nil {
		if _, err := f.pollNote(ctx, opts.Before, "the checkpoint served before"); err != nil {
			return nil, err
		}
	}
	for range opts.Polls {
		if f.stopped {
			break
		}
		more, err := f.poll(ctx)
		if err != nil {
			return nil, err
		}
		if !more || f.stopped {
			break
		}
	}
	if !f.stopped {
		if err := f.checkPairs(ctx); err != nil {
			return nil, err
		}
	}
	if len(f.r.Seen) == 0 {
		return f.r, nil // the only checkpoint served is not the log's
	}
	last := f.r.Seen[len(f.r.Seen)-1]
	for i := range opts.Expect {
		if i >= last.Size {
			f.r.Beyond = append(f.r.Beyond, i)
		}
	}
	slices.Sort(f.r.Beyond)
	if len(f.r.Findings) == 0 && last.RootChecked {
		f.r.State = &LogState{Checkpoint: last.Note, Range: f.rb.Range()}
	}
	return f.r, nil
}

// latest returns the latest checkpoint note, waiting for one of
// opts.MinSize leaves the first time.
func (f *follower) latest(ctx context.Context) ([]byte, error) {
	deadline := time.Now().Add(f.opts.MinSizeWait)
	for {
		n, err := f.src.Checkpoint(ctx)
		if err != nil {
			return nil, fmt.Errorf("latest checkpoint: %w", err)
		}
		if f.waited || f.opts.MinSize == 0 || time.Now().After(deadline) {
			f.waited = true
			return n, nil
		}
		// The size only decides whether to wait: the note is verified by
		// the caller.
		if cp, err := verify.ParseCheckpoint(noteText(n)); err != nil || cp.Size >= f.opts.MinSize {
			f.waited = true
			return n, nil
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// noteText returns the text of a signed note (before its blank line).
func noteText(n []byte) []byte {
	if i := bytes.Index(n, []byte("\n\n")); i >= 0 {
		return n[:i+1]
	}
	return n
}

// poll fetches the latest checkpoint and, if it is new, the leaves up to
// it. It reports whether the checkpoint was new.
func (f *follower) poll(ctx context.Context) (bool, error) {
	n, err := f.latest(ctx)
	if err != nil {
		return false, err
	}
	return f.pollNote(ctx, n, "the latest checkpoint")
}

// pollNote checks checkpoint n (what) against those seen and catches up
// with its leaves.
func (f *follower) pollNote(ctx context.Context, n []byte, what string) (bool, error) {
	cp, bad := openCheckpoint(n, f.opts.Keys, what)
	if bad != nil {
		f.finding(*bad)
		return false, nil
	}
	// Without quorum the log is still checked (the finding keeps the
	// state from being saved); a note polled twice is judged once.
	if !f.witnessChecked[string(n)] {
		f.witnessChecked[string(n)] = true
		f.r.Findings = append(f.r.Findings, witnessed(n, f.opts.Keys, what)...)
	}
	if k := len(f.r.Seen); k > 0 {
		last := f.r.Seen[k-1]
		switch {
		case cp.Size < last.Size:
			f.finding(Finding{Kind: KindRollback,
				Message:  fmt.Sprintf("the log shows a tree of %d leaves, smaller than the tree of %d leaves seen before", cp.Size, last.Size),
				Evidence: &Evidence{Checkpoints: [][]byte{last.Note, n}}})
			return false, nil
		case cp.Size == last.Size && cp.Hash == last.Hash:
			// Nothing new; but the leaves up to it may be to fetch still
			// (from zero).
			return false, f.catchUp(ctx, f.rb, cp.Size)
		}
	}
	f.r.Seen = append(f.r.Seen, Seen{Checkpoint: cp, Note: n})
	if k := len(f.r.Seen); k > 1 {
		// Consistency with the previous checkpoint first: a fork is
		// reported as such, not as the root mismatch it leads to.
		if err := f.checkPair(ctx, k-2, k-1); err != nil || f.stopped {
			return false, err
		}
	}
	if f.rb.Size() > cp.Size {
		return true, nil // a rescan went there already
	}
	return true, f.catchUp(ctx, f.rb, cp.Size)
}

// catchUp appends the leaves from rb's size to size, checking the root of
// every checkpoint seen whose size it passes, and the expected leaves.
func (f *follower) catchUp(ctx context.Context, rb *verify.RootBuilder, size uint64) error {
	f.total += size - rb.Size()
	f.checkRoots(rb)
	for rb.Size() < size && !f.stopped {
		start := rb.Size()
		// Stop at the next checkpoint size, so that its root is checked.
		end := min(start+f.opts.Batch, size)
		for _, s := range f.r.Seen {
			if s.Size > start && s.Size < end {
				end = s.Size
			}
		}
		values, err := f.src.Leaves(ctx, start, end)
		if err != nil {
			return fmt.Errorf("leaves from %d: %w", start, err)
		}
		if len(values) == 0 {
			return fmt.Errorf("leaves from %d: none served, below the checkpoint of size %d", start, size)
		}
		if i, err := AppendLeaves(rb, values, f.opts.Expect, &f.r.Expected); err != nil {
			k := KindMalformed
			if _, ok := err.(*leafMismatch); ok {
				k = KindNotInLog
			}
			f.finding(Finding{Kind: k, Index: ptr(i), Message: err.Error(), Evidence: &Evidence{LeafValue: values[i-start]}})
			return nil
		}
		f.r.Fetched += uint64(len(values))
		if f.opts.Progress != nil {
			f.opts.Progress(f.r.Fetched, f.total)
		}
		f.checkRoots(rb)
	}
	return nil
}

// AppendLeaves appends leaf values, served from index rb.Size() on, to rb,
// and compares those at an index of expect with the commitment expected
// there, counting the comparisons in *compared. It returns the index of the
// first leaf that is not a leaf value, or whose commitment is not the one
// expected, with an error saying why. With no expectations it allocates
// nothing: it is the loop that rebuilds a log's root from its leaves.
func AppendLeaves(rb *verify.RootBuilder, values [][]byte, expect map[uint64]event.Hash, compared *int) (uint64, error) {
	for _, v := range values {
		i := rb.Size()
		c, err := verify.ParseLeafValue(v)
		if err != nil {
			return i, fmt.Errorf("leaf %d: %v", i, err)
		}
		if want, ok := expect[i]; ok {
			*compared++
			if c != want {
				return i, &leafMismatch{index: i, want: want, got: c}
			}
		}
		rb.Append(verify.MerkleLeafHash(c))
	}
	return 0, nil
}

type leafMismatch struct {
	index     uint64
	want, got event.Hash
}

func (e *leafMismatch) Error() string {
	return fmt.Sprintf("the leaf at index %d holds commitment %s, not the commitment %s of the event served for that index", e.index, e.got, e.want)
}

// checkRoots compares rb's root with the signed root of every checkpoint
// seen of rb's size.
func (f *follower) checkRoots(rb *verify.RootBuilder) {
	for i := range f.r.Seen {
		s := &f.r.Seen[i]
		if s.Size != rb.Size() || s.RootChecked {
			continue
		}
		if root := rb.Root(); root != s.Hash {
			x := Finding{Kind: KindRootMismatch,
				Message:  fmt.Sprintf("the root recomputed from the %d leaves served, %s, is not the signed root %s", s.Size, root, s.Hash),
				Evidence: &Evidence{Checkpoints: [][]byte{s.Note}}}
			if s.Saved {
				x.Kind = KindFork
				x.Message = fmt.Sprintf("the first %d leaves served now do not rebuild the root of the checkpoint of that size seen before (%s, now %s): the log's history changed", s.Size, s.Hash, root)
			}
			f.finding(x)
			return
		}
		s.RootChecked = true
	}
}

func (f *follower) finding(x Finding) {
	f.r.Findings = append(f.r.Findings, x)
	f.stopped = true
}

// checkPairs checks consistency between every pair of checkpoints seen
// that was not checked yet.
func (f *follower) checkPairs(ctx context.Context) error {
	for j := 1; j < len(f.r.Seen) && !f.stopped; j++ {
		for i := 0; i < j && !f.stopped; i++ {
			if err := f.checkPair(ctx, i, j); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkPair checks that checkpoint j extends checkpoint i. A proof that
// fails is settled by the leaves: if they rebuild both signed roots, the
// log is consistent and served a wrong proof (its Merkle tree storage is
// not its leaves); if they do not rebuild the older root, the log forked.
func (f *follower) checkPair(ctx context.Context, i, j int) error {
	a, b := f.r.Seen[i], f.r.Seen[j]
	for _, p := range f.r.Pairs {
		if p.Old == a.Size && p.New == b.Size {
			return nil
		}
	}
	bad, err := consistency(ctx, f.src, a.Checkpoint, b.Checkpoint, a.Note, b.Note)
	if err != nil {
		return err
	}
	f.r.Pairs = append(f.r.Pairs, Pair{Old: a.Size, New: b.Size, OK: bad == nil})
	if bad == nil {
		return nil
	}
	if bad.Kind == KindFork && a.Size < b.Size && !(f.rescanned && f.r.Seen[i].RootChecked && f.r.Seen[j].RootChecked) {
		// Rebuild both roots from the leaves served now.
		if err := f.rescan(ctx, b.Size); err != nil {
			return err
		}
		if f.stopped {
			return nil // a root the leaves do not rebuild: reported
		}
	}
	if bad.Kind == KindFork && f.r.Seen[i].RootChecked && f.r.Seen[j].RootChecked && a.Size < b.Size {
		bad.Kind = KindProof
		bad.Message = fmt.Sprintf("the consistency proof from size %d to %d does not verify, although the leaves rebuild both signed roots: the log is consistent but serves wrong proofs (its Merkle tree storage is not its leaves): %s", a.Size, b.Size, bad.Message)
	}
	f.finding(*bad)
	return nil
}

// rescan rebuilds the tree from leaf 0 to size, checking every root seen
// on the way, and continues from there.
func (f *follower) rescan(ctx context.Context, size uint64) error {
	rb := &verify.RootBuilder{}
	f.rescanned = true
	for i := range f.r.Seen {
		f.r.Seen[i].RootChecked = false
	}
	f.r.First = 0
	if err := f.catchUp(ctx, rb, size); err != nil {
		return err
	}
	if !f.stopped {
		f.rb = rb
	}
	return nil
}
