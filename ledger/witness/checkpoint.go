package witness

import (
	"context"
	"slices"
	"sync"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// Checkpoints serves the log's checkpoint with its cosignatures.
type Checkpoints struct {
	policy *verify.WitnessPolicy
	log    note.Verifier
	ledger *ledger.Ledger
	store  ledger.Store

	mu    sync.Mutex
	cache *cachedCheckpoint // the last answer, and what it was made of
}

// cachedCheckpoint is an answer of LatestCheckpoint and the state of the
// database it was made from.
type cachedCheckpoint struct {
	version cosignedVersion
	note    []byte
	size    uint64
}

// cosignedVersion is what LatestCheckpoint's answer depends on, read in
// one query: the log's latest checkpoint size, and the largest size
// cosigned and the number of cosignatures among the latest sizes
// cosigned (the rows the answer is made of: they are only ever added).
type cosignedVersion struct {
	latest, top uint64
	count       int
}

// NewCheckpoints returns the cosigned checkpoints of l (whose store is
// store, on Vigie's database with Migrations), for policy, whose log line
// is the key log.
func NewCheckpoints(policy *verify.WitnessPolicy, log note.Verifier, l *ledger.Ledger, store ledger.Store) *Checkpoints {
	return &Checkpoints{policy: policy, log: log, ledger: l, store: store}
}

// Policy returns the witness policy the checkpoints are cosigned for.
func (c *Checkpoints) Policy() *verify.WitnessPolicy { return c.policy }

// recentSizes is how many of the latest cosigned sizes LatestCheckpoint
// considers.
const recentSizes = 16

// LatestCheckpoint returns the newest checkpoint whose stored
// cosignatures meet the policy's quorum, as one signed note: the log's
// signature then the witnesses' cosignatures, in the policy's order. If
// none of the latest sizes cosigned meets it (witnesses down, or not yet
// asked), it returns the latest checkpoint with whatever cosignatures it
// has: a verifier then reports the quorum not met. Its size is returned
// beside it.
//
// The answer is kept while the database's cosignedVersion is the same:
// every node reads that version on each call (one count over the primary
// key's index, instead of reading the cosignatures, the checkpoints of
// older sizes and checking their signatures), so a cosignature stored by
// the node that holds the submitter's lease is seen by the others at
// their next call.
func (c *Checkpoints) LatestCheckpoint(ctx context.Context) ([]byte, uint64, error) {
	latest, size, err := c.ledger.LatestCheckpoint(ctx)
	if err != nil {
		return nil, 0, err
	}
	top, count, err := recentCosigned(ctx, c.store, recentSizes)
	if err != nil {
		return nil, 0, err
	}
	v := cosignedVersion{latest: size, top: top, count: count}
	c.mu.Lock()
	cached := c.cache
	c.mu.Unlock()
	if cached != nil && cached.version == v {
		return slices.Clone(cached.note), cached.size, nil
	}
	n, s, err := c.latestCheckpoint(ctx, latest, size)
	if err != nil {
		return nil, 0, err
	}
	c.mu.Lock()
	c.cache = &cachedCheckpoint{version: v, note: slices.Clone(n), size: s}
	c.mu.Unlock()
	return n, s, nil
}

// latestCheckpoint is LatestCheckpoint's answer, given the log's latest
// checkpoint and its size.
func (c *Checkpoints) latestCheckpoint(ctx context.Context, latest []byte, size uint64) ([]byte, uint64, error) {
	cs, err := cosignatures(ctx, c.store, recentSizes)
	if err != nil {
		return nil, 0, err
	}
	bySize := make(map[uint64][]Cosignature)
	var sizes []uint64
	for _, x := range cs {
		if _, ok := bySize[x.Size]; !ok {
			sizes = append(sizes, x.Size)
		}
		bySize[x.Size] = append(bySize[x.Size], x)
	}
	if !slices.Contains(sizes, size) {
		sizes = append([]uint64{size}, sizes...)
	}
	for _, s := range sizes { // largest first
		if s > size {
			continue
		}
		n := latest
		if s != size {
			row, err := c.checkpoint(ctx, s)
			if err != nil {
				continue
			}
			n = row
		}
		n = c.cosign(n, bySize[s])
		if r, err := c.policy.CheckCosignatures(n, c.log); err == nil && r.Met {
			return n, s, nil
		}
	}
	return c.cosign(latest, bySize[size]), size, nil
}

// cosign appends the cosignature lines of the policy's witnesses to n,
// in the policy's order.
func (c *Checkpoints) cosign(n []byte, cs []Cosignature) []byte {
	out := slices.Clone(n)
	for _, w := range c.policy.Witnesses {
		for _, x := range cs {
			if x.Witness == w.Name {
				out = append(out, x.Line...)
			}
		}
	}
	return out
}

func (c *Checkpoints) checkpoint(ctx context.Context, size uint64) ([]byte, error) {
	var row ledger.CheckpointRow
	err := c.store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
		var err error
		row, err = tx.Checkpoint(ctx, size)
		return err
	})
	return row.Note, err
}
