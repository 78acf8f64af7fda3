package audit

import (
	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/verify"
)

// A FormerKey is a checkpoint key the log replaced by a transition
// checkpoint: it still verifies the checkpoints up to the transition's
// size (those signed before it), never a larger one.
type FormerKey struct {
	Verifier note.Verifier
	// UpTo is the size of the transition checkpoint that replaced it.
	UpTo uint64
}

// openSigned verifies a checkpoint note with the log's key, or with a
// former key (Keys.Former) if its size is at most that key's UpTo. It
// is the one place where a checkpoint is opened against a Keys; the error
// is the current key's.
func (k Keys) openSigned(n []byte) (verify.Checkpoint, error) {
	c, err := verify.OpenCheckpoint(n, k.Checkpoint)
	if err == nil {
		return c, nil
	}
	for _, f := range k.Former {
		if fc, ferr := verify.OpenCheckpoint(n, f.Verifier); ferr == nil && fc.Size <= f.UpTo {
			return fc, nil
		}
	}
	return c, err
}

// FollowTransitions follows the log's key from the one trusted through
// the transition checkpoints served (GET /checkpoint/transitions, oldest
// first, unverified): each one the trusted key signed
// ([verify.OpenTransition]) makes its next key the trusted one, and the
// former one a [FormerKey] up to the transition's size. Notes that the
// trusted key did not sign are ignored (those before it; anything else is
// no transition). A witness policy's log key follows the same way
// ([verify.WitnessPolicy.FollowTransition]). It reports whether the key
// changed: the new one is pinned once the verification succeeds.
func (p *Pinning) FollowTransitions(notes [][]byte) (bool, error) {
	changed := false
	for _, n := range notes {
		t, err := verify.OpenTransition(n, p.Checkpoint)
		if err != nil {
			continue
		}
		if p.Witnesses != nil {
			if err := p.Witnesses.FollowTransition(p.CheckpointKey, t); err != nil {
				return changed, &KeyError{Which: whichPolicy, Err: err}
			}
			p.WitnessPolicy = string(p.Witnesses.Format())
		}
		p.Former = append(p.Former, FormerKey{Verifier: p.Checkpoint, UpTo: t.Size})
		p.Checkpoint, p.CheckpointKey, changed = t.Next, t.NextKey, true
	}
	return changed, nil
}
