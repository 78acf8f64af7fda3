package audit

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// PublicKeys are the log's keys as text (note verifier keys,
// <name>+<hash>+<key>), as GET /v1/log/key serves them and as a verifier
// pins them.
//
// WitnessPolicy is the witness policy a verifier pins beside them
// ([verify.WitnessPolicy], in its canonical form when pinned): never
// served by the log, whose operator could name its own witnesses, it is
// given by the reader (vigie verify --witness-policy) and then pinned.
type PublicKeys struct {
	CheckpointKey string `json:"checkpoint_key"`
	ReceiptKey    string `json:"receipt_key,omitempty"`
	WitnessPolicy string `json:"witness_policy,omitempty"`
}

// A KeyMismatchError means a key given by the reader differs from the key
// pinned before: the log's key does not change silently. Which is
// "checkpoint", "receipt" or "witness policy" (the policy given differs
// from the policy pinned: a reader accepts a new policy only by saying so,
// which clears the pinned one).
type KeyMismatchError struct{ Which string }

func (e *KeyMismatchError) Error() string {
	if e.Which == whichPolicy {
		return "the witness policy given differs from the witness policy pinned"
	}
	return fmt.Sprintf("the %s key given differs from the key pinned", e.Which)
}

// whichPolicy is the Which of errors about the witness policy.
const whichPolicy = "witness policy"

// A KeyError means a key does not verify notes of the log: it does not
// parse, its name is not a log origin, or the receipt key is not named
// after the checkpoint key. Given is true for a key the reader gave (not
// pinned, not served).
type KeyError struct {
	Which string // "checkpoint", "receipt" or "witness policy"
	Given bool
	Err   error
}

func (e *KeyError) Error() string { return fmt.Sprintf("%s key: %v", e.Which, e.Err) }
func (e *KeyError) Unwrap() error { return e.Err }

// A Pinning is the keys a verification trusts, from [PinKeys].
type Pinning struct {
	Keys
	// PublicKeys are the trusted keys as text: what to pin once the
	// verification succeeds.
	PublicKeys
	// Origin is the log's origin, the checkpoint key's name.
	Origin string
	// FirstUse is true when a key comes from the server itself (trust on
	// first use): pin it only if the verification succeeds, and tell the
	// reader to compare it with the one the operator publishes.
	FirstUse bool
}

// PinKeys decides which keys a verification trusts: for each key, the one
// the reader gave (obtained through another channel), else the one pinned
// before, else the one the server serves (trust on first use; served is
// called only then). A given key that differs from the pinned one is a
// [*KeyMismatchError]. The receipt key must be named after the checkpoint
// key's origin ([verify.ReceiptKeyName]).
//
// The witness policy is the one given, else the one pinned (never one
// served); a given policy that differs from the pinned one is a
// [*KeyMismatchError]. Its log line must name the checkpoint key
// ([verify.WitnessPolicy.CheckLogKey]); Keys.Witnesses is the policy, and
// PublicKeys.WitnessPolicy its canonical form, to pin.
func PinKeys(pinned, given PublicKeys, served func() (PublicKeys, error)) (*Pinning, error) {
	if given.CheckpointKey != "" && pinned.CheckpointKey != "" && given.CheckpointKey != pinned.CheckpointKey {
		return nil, &KeyMismatchError{Which: "checkpoint"}
	}
	if given.ReceiptKey != "" && pinned.ReceiptKey != "" && given.ReceiptKey != pinned.ReceiptKey {
		return nil, &KeyMismatchError{Which: "receipt"}
	}
	var policy *verify.WitnessPolicy
	if pinned.WitnessPolicy != "" || given.WitnessPolicy != "" {
		text, isGiven := pinned.WitnessPolicy, false
		if given.WitnessPolicy != "" {
			text, isGiven = given.WitnessPolicy, true
		}
		var err error
		if policy, err = verify.ParseWitnessPolicy([]byte(text)); err != nil {
			return nil, &KeyError{Which: whichPolicy, Given: isGiven, Err: err}
		}
		if isGiven && pinned.WitnessPolicy != "" {
			old, err := verify.ParseWitnessPolicy([]byte(pinned.WitnessPolicy))
			if err != nil || !bytes.Equal(old.Format(), policy.Format()) {
				return nil, &KeyMismatchError{Which: whichPolicy}
			}
		}
	}
	p := &Pinning{PublicKeys: pinned}
	if given.CheckpointKey != "" {
		p.CheckpointKey = given.CheckpointKey
	}
	if given.ReceiptKey != "" {
		p.ReceiptKey = given.ReceiptKey
	}
	if p.CheckpointKey == "" || p.ReceiptKey == "" {
		if served == nil {
			return nil, errors.New("no key pinned or given, and none served")
		}
		s, err := served()
		if err != nil {
			return nil, err
		}
		if p.CheckpointKey == "" {
			p.CheckpointKey, p.FirstUse = s.CheckpointKey, true
		}
		if p.ReceiptKey == "" {
			p.ReceiptKey, p.FirstUse = s.ReceiptKey, true
		}
	}
	var err error
	if p.Checkpoint, err = note.NewVerifier(p.CheckpointKey); err != nil {
		return nil, &KeyError{Which: "checkpoint", Given: given.CheckpointKey != "", Err: err}
	}
	p.Origin = p.Checkpoint.Name()
	if !verify.ValidOrigin(p.Origin) {
		return nil, &KeyError{Which: "checkpoint", Given: given.CheckpointKey != "", Err: errors.New("its name is not a valid log origin")}
	}
	if p.Receipt, err = note.NewVerifier(p.ReceiptKey); err != nil {
		return nil, &KeyError{Which: "receipt", Given: given.ReceiptKey != "", Err: err}
	}
	if want := verify.ReceiptKeyName(p.Origin); p.Receipt.Name() != want {
		return nil, &KeyError{Which: "receipt", Given: given.ReceiptKey != "", Err: fmt.Errorf("named %q, want %q", p.Receipt.Name(), want)}
	}
	p.WitnessPolicy = ""
	if policy != nil {
		if err := policy.CheckLogKey(p.CheckpointKey); err != nil {
			return nil, &KeyError{Which: whichPolicy, Given: given.WitnessPolicy != "", Err: err}
		}
		p.Witnesses, p.WitnessPolicy = policy, string(policy.Format())
	}
	return p, nil
}

// Differs reports whether the server serves other keys than those
// trusted: the log's key changed, or the server is not the log pinned.
func (p *Pinning) Differs(served PublicKeys) bool {
	return served.CheckpointKey != p.CheckpointKey || served.ReceiptKey != p.ReceiptKey
}

// A SavedState is what a patient's verifier keeps about one log between
// two verifications of histories: the newest checkpoint it verified (the
// log must still extend it: no rollback, no fork) and the head of each
// chain it verified (the history must still hold it).
type SavedState struct {
	Checkpoint []byte
	Chains     map[event.Hash]ChainHead
}

// Options returns the options of the next [VerifyHistory] against s, with
// the keys p.
func (s *SavedState) Options(p *Pinning) HistoryOptions {
	return HistoryOptions{Keys: p.Keys, Previous: s.Checkpoint, Heads: s.Chains}
}

// Next returns the state to save after a verification that found r: the
// newest checkpoint it verified and the chain head it saw, replacing
// those of s. A report with findings changes nothing: the state keeps
// what was verified, and the next run is checked against it again.
func (s *SavedState) Next(r *HistoryReport) *SavedState {
	if len(r.Findings) > 0 {
		return s
	}
	next := &SavedState{Checkpoint: s.Checkpoint, Chains: make(map[event.Hash]ChainHead, len(s.Chains)+1)}
	for p, h := range s.Chains {
		next.Chains[p] = h
	}
	if n := r.NewestNote(); len(n) > 0 {
		next.Checkpoint = n
	}
	if !r.Pseudonym.IsZero() {
		next.Chains[r.Pseudonym] = r.Head
	}
	return next
}
