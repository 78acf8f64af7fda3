package verify

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"golang.org/x/mod/sumdb/note"
)

// Witness cosignatures, as in [tlog-cosignature]: a witness that checked
// a checkpoint consistent with every checkpoint of the log it saw before
// signs, with its Ed25519 key, the message
//
//	cosignature/v1
//	time <seconds since 1970>
//	<checkpoint note text>
//
// and adds it to the checkpoint's note as a signature line whose bytes
// are the key hash (4), the timestamp (8, big-endian) and the Ed25519
// signature (64). The key hash is the first 4 bytes of
// SHA-256(name || "\n" || 0x04 || public key).
//
// [tlog-cosignature]: https://c2sp.org/tlog-cosignature

// CosignatureAlg is the signature type of an Ed25519 cosignature/v1 key
// in the signed-note key encoding.
const CosignatureAlg = 0x04

// cosignatureSize is the size of a cosignature/v1 signature line's bytes:
// key hash, timestamp, Ed25519 signature.
const cosignatureSize = 4 + 8 + ed25519.SignatureSize

// CosignatureKeyHash returns the key hash (key ID) of a witness's
// cosignature/v1 key named name.
func CosignatureKeyHash(name string, key ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', CosignatureAlg})
	h.Write(key)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// CosignatureVerifierKey returns the signed-note verifier key of a
// witness's cosignature/v1 key (<name>+<hash>+<base64(0x04 || key)>), the
// form witnesses print.
func CosignatureVerifierKey(name string, key ed25519.PublicKey) string {
	return fmt.Sprintf("%s+%08x+%s", name, CosignatureKeyHash(name, key),
		base64.StdEncoding.EncodeToString(append([]byte{CosignatureAlg}, key...)))
}

// CosignatureMessage returns what a witness signs to cosign the checkpoint
// note text at time timestamp (seconds since 1970).
func CosignatureMessage(timestamp uint64, text []byte) []byte {
	b := make([]byte, 0, len(text)+40)
	b = append(b, "cosignature/v1\ntime "...)
	b = strconv.AppendUint(b, timestamp, 10)
	b = append(b, '\n')
	return append(b, text...)
}

// SignCosignature returns the signature line ("— name base64\n") of a
// cosignature of the checkpoint note text at time timestamp by the
// witness named name with key priv: what a witness adds to a note. It is
// the inverse of the checks of [WitnessPolicy.CheckCosignatures].
func SignCosignature(name string, priv ed25519.PrivateKey, timestamp uint64, text []byte) ([]byte, error) {
	if !validNoteName(name) {
		return nil, errors.New("cosignature: invalid witness name")
	}
	if _, err := ParseCheckpoint(text); err != nil {
		return nil, fmt.Errorf("cosignature: %w", err)
	}
	pub, _ := priv.Public().(ed25519.PublicKey)
	sig := make([]byte, 0, cosignatureSize)
	sig = binary.BigEndian.AppendUint32(sig, CosignatureKeyHash(name, pub))
	sig = binary.BigEndian.AppendUint64(sig, timestamp)
	sig = append(sig, ed25519.Sign(priv, CosignatureMessage(timestamp, text))...)
	return fmt.Appendf(nil, "— %s %s\n", name, base64.StdEncoding.EncodeToString(sig)), nil
}

// A CosignatureCheck is what [WitnessPolicy.CheckCosignatures] found on a
// checkpoint note.
type CosignatureCheck struct {
	// Checkpoint is the checkpoint, signed by the log's key.
	Checkpoint Checkpoint
	// Cosigned are the policy's witnesses with a valid cosignature, in
	// the policy's order; Timestamps their cosignatures' times (seconds
	// since 1970), in the same order.
	Cosigned   []string
	Timestamps []uint64
	// Invalid are the policy's witnesses whose key signed a cosignature
	// line that does not verify: a forged or damaged cosignature.
	Invalid []string
	// Met is true when Cosigned meet the policy's quorum.
	Met bool
}

// CheckCosignatures opens signedNote with the log's key log (as
// [OpenCheckpoint] does, failing as it does) and checks the cosignatures
// it carries by the policy's witnesses. Signature lines of other keys (a
// witness outside the policy, a witness's former key) are ignored, as the
// signed-note specification requires. The checkpoint meets the policy when
// the witnesses with a valid cosignature meet its quorum; a policy whose
// quorum is none is met by any checkpoint.
func (p *WitnessPolicy) CheckCosignatures(signedNote []byte, log note.Verifier) (CosignatureCheck, error) {
	c, err := OpenCheckpoint(signedNote, log)
	if err != nil {
		return CosignatureCheck{}, err
	}
	n, err := note.Open(signedNote, note.VerifierList(log))
	if err != nil { // OpenCheckpoint opened it
		return CosignatureCheck{}, fmt.Errorf("checkpoint: %w", err)
	}
	r := CosignatureCheck{Checkpoint: c}
	valid := make(map[string]uint64)
	invalid := make(map[string]bool)
	for _, s := range n.UnverifiedSigs {
		w := p.witness(s.Name)
		if w == nil || s.Hash != CosignatureKeyHash(w.Name, w.Key) {
			continue
		}
		if ts, ok := verifyCosignature(w.Key, s.Base64, []byte(n.Text)); ok {
			valid[w.Name] = ts
		} else {
			invalid[w.Name] = true
		}
	}
	for _, w := range p.Witnesses {
		if ts, ok := valid[w.Name]; ok {
			r.Cosigned = append(r.Cosigned, w.Name)
			r.Timestamps = append(r.Timestamps, ts)
		} else if invalid[w.Name] {
			r.Invalid = append(r.Invalid, w.Name)
		}
	}
	r.Met = p.Satisfied(func(name string) bool { _, ok := valid[name]; return ok })
	return r, nil
}

// verifyCosignature checks a cosignature line's bytes (base64) over text
// and returns its timestamp.
func verifyCosignature(key ed25519.PublicKey, b64 string, text []byte) (uint64, bool) {
	sig, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(sig) != cosignatureSize {
		return 0, false
	}
	ts := binary.BigEndian.Uint64(sig[4:12])
	return ts, ed25519.Verify(key, CosignatureMessage(ts, text), sig[12:])
}

// witness returns the policy's witness named name, or nil.
func (p *WitnessPolicy) witness(name string) *PolicyWitness {
	i := slices.IndexFunc(p.Witnesses, func(w PolicyWitness) bool { return w.Name == name })
	if i < 0 {
		return nil
	}
	return &p.Witnesses[i]
}

// Satisfied reports whether the witnesses for which cosigned is true meet
// the policy's quorum (always, for a quorum of none).
func (p *WitnessPolicy) Satisfied(cosigned func(witness string) bool) bool {
	if p.Quorum == "" {
		return true
	}
	return p.met(p.Quorum, cosigned)
}

func (p *WitnessPolicy) met(name string, cosigned func(string) bool) bool {
	if p.witness(name) != nil {
		return cosigned(name)
	}
	i := slices.IndexFunc(p.Groups, func(g WitnessGroup) bool { return g.Name == name })
	if i < 0 {
		return false // ParseWitnessPolicy resolves every name
	}
	g := p.Groups[i]
	k := 0
	for _, m := range g.Members {
		if p.met(m, cosigned) {
			k++
		}
	}
	return k >= g.Threshold
}
