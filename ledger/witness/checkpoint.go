package witness

import (
	"context"
	"slices"

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
func (c *Checkpoints) LatestCheckpoint(ctx context.Context) ([]byte, uint64, error) {
	latest, size, err := c.ledger.LatestCheckpoint(ctx)
	if err != nil {
		return nil, 0, err
	}
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
