package ledger_test

import (
	"testing"

	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/ledger"
)

// TestPseudonymGolden pins the pseudonym formula of docs/formats.md:
// HMAC-SHA256 under the deployment secret of "vigie/pseudonym/v1\x00"
// followed by the normalised INS. The vectors were cross-checked with
// Python's hmac module; a Corsican INS (2A) is among them.
func TestPseudonymGolden(t *testing.T) {
	key := make([]byte, ledger.KeySize)
	for i := range key {
		key[i] = byte(i) // 00 01 02 ... 1f
	}
	p, err := ledger.NewPseudonymizer(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ ins, want string }{
		{"279035121518989", "07f087f2ebcbb14f2666efc74f0a38c30e743d4b545e13b2f88b40fdd343018b"},
		{"185052A01234579", "8b99991f600ef3931e875fafa32195686d2abe0e25ac8d481179579eb4e01983"}, // born in Corse-du-Sud
	} {
		ins, err := ident.ParseINS(tc.ins)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Pseudonym(ins).String(); got != tc.want {
			t.Errorf("Pseudonym(%s) = %s, want %s", ins.Canonical(), got, tc.want)
		}
	}
}
