package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/audit/audittest"
	"github.com/vigie-sante/vigie/ledger/verify"
)

func corpusCase(t *testing.T, name string) audittest.Case {
	t.Helper()
	cases, err := audittest.LoadCorpus()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(cases, func(c audittest.Case) bool { return c.Name == name })
	if i < 0 {
		t.Fatalf("no corpus case %s", name)
	}
	return cases[i]
}

// TestPinWitnessPolicy: the policy is pinned like the keys; a different
// one given is refused, the same one written otherwise is not, and a
// policy whose log line is not the log's key is refused.
func TestPinWitnessPolicy(t *testing.T) {
	c := corpusCase(t, "witness-met")
	policy := c.Keys.WitnessPolicy
	keys := c.Keys
	keys.WitnessPolicy = ""

	p, err := audit.PinKeys(keys, audit.PublicKeys{WitnessPolicy: "# ours\n" + strings.ReplaceAll(policy, " 2 ", " 2  ")}, nil)
	if err != nil || p.Witnesses == nil || p.WitnessPolicy != policy {
		t.Fatalf("PinKeys(policy given) = %+v, %v; want the policy pinned in canonical form", p, err)
	}
	pinned := p.PublicKeys
	if _, err := audit.PinKeys(pinned, audit.PublicKeys{WitnessPolicy: policy}, nil); err != nil {
		t.Errorf("PinKeys(the pinned policy given again) = %v", err)
	}
	other := strings.Replace(policy, "group witnesses 2", "group witnesses 1", 1)
	var mismatch *audit.KeyMismatchError
	if _, err := audit.PinKeys(pinned, audit.PublicKeys{WitnessPolicy: other}, nil); !errors.As(err, &mismatch) || mismatch.Which != "witness policy" {
		t.Errorf("PinKeys(another policy) = %v, want a witness policy mismatch", err)
	}
	// The reader who accepts the change clears the pinned policy first.
	if p, err := audit.PinKeys(keys, audit.PublicKeys{WitnessPolicy: other}, nil); err != nil || p.Witnesses.Groups[0].Threshold != 1 {
		t.Errorf("PinKeys(a new policy, none pinned) = %v", err)
	}
	wrongLog := "log " + strings.Repeat("00", 32) + policy[strings.Index(policy, "\n"):]
	var ke *audit.KeyError
	if _, err := audit.PinKeys(keys, audit.PublicKeys{WitnessPolicy: wrongLog}, nil); !errors.As(err, &ke) || ke.Which != "witness policy" || !ke.Given {
		t.Errorf("PinKeys(a policy of another log) = %v, want a KeyError", err)
	}
	if _, err := audit.PinKeys(keys, audit.PublicKeys{WitnessPolicy: "quorum none\n"}, nil); !errors.As(err, &ke) {
		t.Errorf("PinKeys(a malformed policy) = %v, want a KeyError", err)
	}
}

// TestFollowWitnessQuorum: an auditor following the log with a policy
// reports a checkpoint without quorum, checks the log all the same, and
// saves no state.
func TestFollowWitnessQuorum(t *testing.T) {
	for _, tc := range []struct {
		name string
		want []audit.Kind
	}{
		{"witness-met", nil},
		{"witness-not-met", []audit.Kind{audit.KindWitnessQuorum}},
		{"witness-bad-cosignature", []audit.Kind{audit.KindCosignature, audit.KindWitnessQuorum}},
		{"witness-unknown", []audit.Kind{audit.KindWitnessQuorum}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := corpusCase(t, tc.name)
			p, err := audit.PinKeys(c.Keys, audit.PublicKeys{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			r, err := audit.Follow(context.Background(), c.Source(), audit.FollowOptions{Keys: p.Keys, Polls: 1})
			if err != nil {
				t.Fatal(err)
			}
			if got := audittest.Kinds(r.Findings); !slices.Equal(got, append([]audit.Kind{}, tc.want...)) {
				t.Errorf("findings %v, want kinds %v", r.Findings, tc.want)
			}
			if (r.State == nil) != (len(tc.want) > 0) || len(r.Seen) == 0 || !r.Seen[len(r.Seen)-1].RootChecked {
				t.Errorf("state %v, seen %+v: want the root checked, and a state only without findings", r.State, r.Seen)
			}
			for _, f := range r.Findings {
				if f.Evidence == nil || len(f.Evidence.Checkpoints) != 1 {
					t.Errorf("finding %v without the checkpoint as evidence", f)
				}
			}
		})
	}
}

// TestWitnessKeyRotated: the policy's witness w1 gets a new key (w1',
// same name). A verifier that pinned the old policy refuses the new one
// until the reader accepts it (the pinned policy cleared, as
// --accept-witness-policy-change does); then the old w1's cosignatures
// stop counting, and the quorum is counted with w1'.
func TestWitnessKeyRotated(t *testing.T) {
	c := corpusCase(t, "witness-met") // cosigned by w1 and w3, quorum two of three
	oldKey := testWitnessKey("vigie corpus witness w1")
	newKey := testWitnessKey("vigie corpus witness w1 rotated")
	oldPolicy := c.Keys.WitnessPolicy
	newPolicy := strings.Replace(oldPolicy, fmt.Sprintf("%x", []byte(oldKey.Public().(ed25519.PublicKey))),
		fmt.Sprintf("%x", []byte(newKey.Public().(ed25519.PublicKey))), 1)
	if newPolicy == oldPolicy {
		t.Fatal("w1's key is not in the corpus policy")
	}
	follow := func(keys audit.Keys, latest []byte) []audit.Kind {
		t.Helper()
		c := c
		c.Latest = latest
		r, err := audit.Follow(context.Background(), c.Source(), audit.FollowOptions{Keys: keys, Polls: 1})
		if err != nil {
			t.Fatal(err)
		}
		return audittest.Kinds(r.Findings)
	}
	old, err := audit.PinKeys(c.Keys, audit.PublicKeys{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if k := follow(old.Keys, c.Latest); len(k) != 0 {
		t.Fatalf("the old policy over w1's and w3's cosignatures: %v", k)
	}

	// The pinned policy refuses the new one.
	var mismatch *audit.KeyMismatchError
	if _, err := audit.PinKeys(old.PublicKeys, audit.PublicKeys{WitnessPolicy: newPolicy}, nil); !errors.As(err, &mismatch) || mismatch.Which != "witness policy" {
		t.Fatalf("PinKeys(the rotated policy over the pinned one) = %v, want a witness policy mismatch", err)
	}
	// Accepted: the pinned policy is cleared, the new one pinned.
	accepting := old.PublicKeys
	accepting.WitnessPolicy = ""
	rotated, err := audit.PinKeys(accepting, audit.PublicKeys{WitnessPolicy: newPolicy}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.WitnessPolicy == old.WitnessPolicy {
		t.Fatal("the rotated policy is pinned as the old one")
	}

	// The old w1's cosignature no longer counts: w3's alone is short.
	if k := follow(rotated.Keys, c.Latest); !slices.Equal(k, []audit.Kind{audit.KindWitnessQuorum}) {
		t.Errorf("the rotated policy over the old w1's and w3's cosignatures: %v, want the quorum not met", k)
	}
	// w1' cosigns: the quorum is met again under the new policy, and the
	// old policy does not count w1' (its w3 alone is short).
	i := bytes.Index(c.Latest, []byte("\n— witness.example/"))
	if i < 0 {
		t.Fatal("no cosignature in the corpus checkpoint")
	}
	bare := c.Latest[:i+1]
	cp, err := verify.ParseCheckpoint(bare[:bytes.Index(bare, []byte("\n\n"))+1])
	if err != nil {
		t.Fatal(err)
	}
	text, _ := verify.FormatCheckpoint(cp)
	cosign := func(n []byte, name string, key ed25519.PrivateKey) []byte {
		t.Helper()
		line, err := verify.SignCosignature("witness.example/"+name, key, 1764320400, text)
		if err != nil {
			t.Fatal(err)
		}
		return append(slices.Clone(n), line...)
	}
	w3 := testWitnessKey("vigie corpus witness w3")
	withNew := cosign(cosign(bare, "w1", newKey), "w3", w3)
	if k := follow(rotated.Keys, withNew); len(k) != 0 {
		t.Errorf("the rotated policy over w1' and w3's cosignatures: %v, want none", k)
	}
	if k := follow(old.Keys, withNew); !slices.Equal(k, []audit.Kind{audit.KindWitnessQuorum}) {
		t.Errorf("the old policy over w1' and w3's cosignatures: %v, want the quorum not met", k)
	}
}

// testWitnessKey returns the Ed25519 key of seed's SHA-256, as the
// corpus makes its witnesses' ("vigie corpus witness w1"...).
func testWitnessKey(seed string) ed25519.PrivateKey {
	s := sha256.Sum256([]byte(seed))
	return ed25519.NewKeyFromSeed(s[:])
}
