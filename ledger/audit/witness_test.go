package audit_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/audit/audittest"
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
