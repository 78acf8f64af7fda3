package verify

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

const testOrigin = "corpus.example/vigie/1"

// testKey returns an Ed25519 key derived from seed.
func testKey(seed string) ed25519.PrivateKey {
	s := sha256.Sum256([]byte(seed))
	return ed25519.NewKeyFromSeed(s[:])
}

// testLog returns the log's note signer and verifier for testOrigin.
func testLog(t testing.TB) (note.Signer, note.Verifier, ed25519.PublicKey) {
	t.Helper()
	priv := testKey("log")
	pub := priv.Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(testOrigin, pub)
	if err != nil {
		t.Fatal(err)
	}
	// The signer key's form: PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>.
	_, hash, _ := strings.Cut(vkey[len(testOrigin)+1:], "+")
	skey := "PRIVATE+KEY+" + testOrigin + "+" + vkey[len(testOrigin)+1:len(vkey)-len(hash)-1] + "+" +
		base64.StdEncoding.EncodeToString(append([]byte{1}, priv.Seed()...))
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v, pub
}

// threeWitnesses is a policy of three witnesses w1, w2, w3 (keys from
// their names), quorum two of three.
func threeWitnesses(t testing.TB, logKey ed25519.PublicKey) *WitnessPolicy {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "log %x\n", []byte(logKey))
	for _, w := range []string{"w1", "w2", "w3"} {
		fmt.Fprintf(&b, "witness witness.example/%s %x http://127.0.0.1/%s\n", w, []byte(testKey(w).Public().(ed25519.PublicKey)), w)
	}
	b.WriteString("group g 2 witness.example/w1 witness.example/w2 witness.example/w3\nquorum g\n")
	p, err := ParseWitnessPolicy([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// cosigned returns the checkpoint note signed by the log and cosigned by
// the witnesses named (w1, w2...).
func cosigned(t testing.TB, s note.Signer, witnesses ...string) []byte {
	t.Helper()
	c := Checkpoint{Origin: testOrigin, Size: 5, Hash: testCommitment("cosign", 5)}
	n, err := SignCheckpoint(c, s)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := FormatCheckpoint(c)
	for _, w := range witnesses {
		line, err := SignCosignature("witness.example/"+w, testKey(w), 1764320400, text)
		if err != nil {
			t.Fatal(err)
		}
		n = append(n, line...)
	}
	return n
}

// TestCosignatureTorchwood checks the cosignature format against
// filippo.io/torchwood v0.6.1's CosignatureSigner (the witnesses'
// library): its verifier key and a cosignature line it made (Ed25519 is
// deterministic), kept here as a vector.
func TestCosignatureTorchwood(t *testing.T) {
	priv := testKey("vigie test witness")
	pub := priv.Public().(ed25519.PublicKey)
	if got, want := hex.EncodeToString(pub), "c3da861f1d120042c1a6597d3288c77d58786b5be6ba3ec4d9183b0ffc92a603"; got != want {
		t.Fatalf("key %s, want %s", got, want)
	}
	const name = "witness.example/w1"
	if got, want := CosignatureVerifierKey(name, pub), "witness.example/w1+fe123b92+BMPahh8dEgBCwaZZfTKIx31YeGtb5ro+xNkYOw/8kqYD"; got != want {
		t.Errorf("CosignatureVerifierKey = %s, want %s", got, want)
	}
	text := []byte("corpus.example/vigie/1\n5\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\n")
	const torchwood = "— witness.example/w1 /hI7kgAAAABrF20SjVcJHbiVtrAcudfUIq0gX93YbEizPfP634ljf7zNybDSR5I+7bmzTqsnYA7smArJFPXWc+1tl6uDZggfIP8AAA==\n"
	got, err := SignCosignature(name, priv, 0x6b176d12, text)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != torchwood {
		t.Errorf("SignCosignature = %q, want torchwood's %q", got, torchwood)
	}
	// And torchwood's line checks against a policy naming that witness.
	s, _, logPub := testLog(t)
	n, err := note.Sign(&note.Note{Text: string(text)}, s)
	if err != nil {
		t.Fatal(err)
	}
	n = append(n, torchwood...)
	p, err := ParseWitnessPolicy(fmt.Appendf(nil, "log %x\nwitness %s %x\nquorum %s\n", []byte(logPub), name, []byte(pub), name))
	if err != nil {
		t.Fatal(err)
	}
	_, v, _ := testLog(t)
	r, err := p.CheckCosignatures(n, v)
	if err != nil || !r.Met || !slices.Equal(r.Cosigned, []string{name}) || r.Timestamps[0] != 0x6b176d12 {
		t.Errorf("CheckCosignatures(torchwood's) = %+v, %v; want met by %s", r, err, name)
	}
}

// TestQuorum checks a quorum of two of three: zero and one cosignature do
// not meet it (sigsum-go v0.6.1 reads the threshold 2 as 0 and would
// accept both), two and three do; a forged cosignature and an unknown
// witness's count for nothing.
func TestQuorum(t *testing.T) {
	s, v, logPub := testLog(t)
	p := threeWitnesses(t, logPub)
	forged := func(n []byte) []byte {
		// Flip a bit of w2's Ed25519 signature (the line's last bytes).
		lines := bytes.Split(n, []byte("\n"))
		for i, l := range lines {
			if bytes.Contains(l, []byte("witness.example/w2 ")) {
				sig := l[bytes.LastIndexByte(l, ' ')+1:]
				sig[20] ^= 'A' ^ 'B'
				if sig[20] == '=' || sig[20] == '/' {
					sig[20] = 'C'
				}
				lines[i] = l
			}
		}
		return bytes.Join(lines, []byte("\n"))
	}
	stranger := func(n []byte) []byte {
		text, _ := FormatCheckpoint(Checkpoint{Origin: testOrigin, Size: 5, Hash: testCommitment("cosign", 5)})
		line, _ := SignCosignature("witness.example/w9", testKey("w9"), 1, text)
		return append(n, line...)
	}
	impostor := func(n []byte) []byte {
		// w3's name, another key: not w3's cosignature.
		text, _ := FormatCheckpoint(Checkpoint{Origin: testOrigin, Size: 5, Hash: testCommitment("cosign", 5)})
		line, _ := SignCosignature("witness.example/w3", testKey("not w3"), 1, text)
		return append(n, line...)
	}
	for _, tc := range []struct {
		name     string
		note     []byte
		met      bool
		cosigned []string
		invalid  []string
	}{
		{"none", cosigned(t, s), false, nil, nil},
		{"one", cosigned(t, s, "w1"), false, []string{"witness.example/w1"}, nil},
		{"two", cosigned(t, s, "w1", "w3"), true, []string{"witness.example/w1", "witness.example/w3"}, nil},
		{"three", cosigned(t, s, "w3", "w2", "w1"), true, []string{"witness.example/w1", "witness.example/w2", "witness.example/w3"}, nil},
		{"two, one forged", forged(cosigned(t, s, "w1", "w2")), false, []string{"witness.example/w1"}, []string{"witness.example/w2"}},
		{"one and a stranger", stranger(cosigned(t, s, "w1")), false, []string{"witness.example/w1"}, nil},
		{"one and an impostor", impostor(cosigned(t, s, "w1")), false, []string{"witness.example/w1"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := p.CheckCosignatures(tc.note, v)
			if err != nil {
				t.Fatal(err)
			}
			if r.Met != tc.met || !slices.Equal(r.Cosigned, tc.cosigned) || !slices.Equal(r.Invalid, tc.invalid) {
				t.Errorf("CheckCosignatures = met %v, cosigned %v, invalid %v; want %v, %v, %v", r.Met, r.Cosigned, r.Invalid, tc.met, tc.cosigned, tc.invalid)
			}
		})
	}
	// Without the log's signature, nothing counts.
	text, _ := FormatCheckpoint(Checkpoint{Origin: testOrigin, Size: 5, Hash: testCommitment("cosign", 5)})
	var n []byte
	n = append(append(n, text...), '\n')
	for _, w := range []string{"w1", "w2"} {
		line, _ := SignCosignature("witness.example/"+w, testKey(w), 1, text)
		n = append(n, line...)
	}
	if _, err := p.CheckCosignatures(n, v); err == nil {
		t.Error("CheckCosignatures of a note the log did not sign: no error")
	}
}

func TestParseWitnessPolicy(t *testing.T) {
	k := func(seed string) string { return hex.EncodeToString(testKey(seed).Public().(ed25519.PublicKey)) }
	head := "log " + k("log") + "\nwitness a " + k("a") + " https://a.example/\nwitness b " + k("b") + "\n"
	for _, tc := range []struct {
		name, text, err string
		threshold       int
	}{
		{"any", head + "group g any a b\nquorum g\n", "", 1},
		{"all", head + "group g all a b\nquorum g\n", "", 2},
		{"numeric", head + "# two of two\n\ngroup g 2 a b\nquorum g\n", "", 2},
		{"nested", head + "group g 1 a\ngroup h all g b\nquorum h\n", "", 2},
		{"none", head + "quorum none\n", "", 0},
		{"witness quorum", head + "quorum a\n", "", 0},
		{"zero", head + "group g 0 a b\nquorum g\n", "line 4: group threshold", 0},
		{"too many", head + "group g 3 a b\nquorum g\n", "line 4: group threshold", 0},
		{"leading zero", head + "group g 02 a b\nquorum g\n", "line 4: group threshold", 0},
		{"word", head + "group g two a b\nquorum g\n", "line 4: group threshold", 0},
		{"unknown member", head + "group g any a c\nquorum g\n", "line 4: group member 2", 0},
		{"repeated member", head + "group g 2 a a\nquorum g\n", "line 4: group member 2", 0},
		{"unknown quorum", head + "quorum c\n", "line 4: quorum", 0},
		{"no quorum", head, "no quorum line", 0},
		{"no log", "witness a " + k("a") + "\nquorum a\n", "no log line", 0},
		{"two logs", head + "log " + k("x") + "\nquorum none\n", "line 4: log", 0},
		{"log URL", "log " + k("log") + " https://log.example/\nquorum none\n", "line 1: log", 0},
		{"short key", "log " + k("log")[2:] + "\nquorum none\n", "line 1: log key", 0},
		{"bad witness key", head + "witness c zz\nquorum none\n", "line 4: witness key", 0},
		{"witness name", head + "witness c+1 " + k("c") + "\nquorum none\n", "line 4: witness name", 0},
		{"duplicate name", head + "group a any b\nquorum a\n", "line 4: group name", 0},
		{"bad URL", head + "witness c " + k("c") + " ftp://c\nquorum none\n", "line 4: witness URL", 0},
		{"after quorum", head + "quorum none\nwitness c " + k("c") + "\n", "line 5: witness", 0},
		{"two quorums", head + "quorum none\nquorum a\n", "line 5: quorum", 0},
		{"keyword", head + "cosigner c\nquorum none\n", "line 4: keyword", 0},
		{"control", head + "quorum none\x01\n", "line 4: text", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseWitnessPolicy([]byte(tc.text))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseWitnessPolicy = %v, want an error with %q", err, tc.err)
				}
				if strings.Contains(err.Error(), k("log")) {
					t.Errorf("error %q quotes the text", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Groups) > 0 && p.Groups[len(p.Groups)-1].Threshold != tc.threshold {
				t.Errorf("threshold %d, want %d", p.Groups[len(p.Groups)-1].Threshold, tc.threshold)
			}
			again, err := ParseWitnessPolicy(p.Format())
			if err != nil || !bytes.Equal(again.Format(), p.Format()) {
				t.Errorf("Format does not read back: %v\n%s", err, p.Format())
			}
		})
	}
}

func TestCheckLogKey(t *testing.T) {
	_, v, logPub := testLog(t)
	p := threeWitnesses(t, logPub)
	vkey, _ := note.NewEd25519VerifierKey(v.Name(), logPub)
	if err := p.CheckLogKey(vkey); err != nil {
		t.Errorf("CheckLogKey(the log's key) = %v", err)
	}
	other, _ := note.NewEd25519VerifierKey(v.Name(), testKey("other").Public().(ed25519.PublicKey))
	if err := p.CheckLogKey(other); err == nil {
		t.Error("CheckLogKey(another key) = nil")
	}
	if err := p.CheckLogKey("garbage"); err == nil {
		t.Error("CheckLogKey(garbage) = nil")
	}
}

func FuzzParseWitnessPolicy(f *testing.F) {
	f.Add([]byte("log " + strings.Repeat("ab", 32) + "\nwitness w " + strings.Repeat("cd", 32) + " https://w/\ngroup g 1 w\nquorum g\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		p, err := ParseWitnessPolicy(text)
		if err != nil {
			return
		}
		again, err := ParseWitnessPolicy(p.Format())
		if err != nil || !bytes.Equal(again.Format(), p.Format()) {
			t.Fatalf("Format does not read back: %v", err)
		}
	})
}
