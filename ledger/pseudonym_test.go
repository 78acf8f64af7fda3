package ledger_test

import (
	"encoding/hex"
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

// TestRequestHashGolden pins the stored form of idempotency keys
// (docs/formats.md): the first 16 bytes of HMAC-SHA256 under the pseudonym
// key of "vigie/request-id/v1\x00", the service's length as a uvarint, the
// service and the request id. Cross-checked with Python's hmac module.
func TestRequestHashGolden(t *testing.T) {
	key := make([]byte, ledger.KeySize)
	for i := range key {
		key[i] = byte(i)
	}
	p, err := ledger.NewPseudonymizer(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key  ledger.Key
		want string
	}{
		{ledger.Key{Service: "hospital-his", RequestID: "his-279035121518989-0001"}, "acfb2ed10fb73d376ddbe4e92efb0d3d"},
		{ledger.Key{Service: "dpo:dpo-a", RequestID: "rv-1"}, "eecaca06be104a17b7a29c497fb7e3de"},
	} {
		h := p.RequestHash(tc.key)
		if got := hex.EncodeToString(h[:]); got != tc.want {
			t.Errorf("RequestHash(%+v) = %s, want %s", tc.key, got, tc.want)
		}
	}
	// The length prefix keeps the service and the id apart.
	if p.RequestHash(ledger.Key{Service: "ab", RequestID: "c"}) == p.RequestHash(ledger.Key{Service: "a", RequestID: "bc"}) {
		t.Error("RequestHash does not tell the service from the request id")
	}
	if !p.RequestHash(ledger.Key{}).IsZero() {
		t.Error("RequestHash of no key is not zero")
	}
}
