package verify

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// MaxWitnessPolicySize is the largest witness policy, in bytes, that
// [ParseWitnessPolicy] accepts.
const MaxWitnessPolicySize = 64 << 10

// MaxPolicyWitnesses is the most witnesses a policy may name: no more
// cosignatures fit in a signed note (golang.org/x/mod/sumdb/note reads a
// hundred signatures).
const MaxPolicyWitnesses = 64

// A WitnessPolicy says which witnesses must cosign a checkpoint of the
// log for a verifier to trust it. It is written in the [Sigsum policy]
// format with the conventions for C2SP checkpoints:
//
//	log <log's Ed25519 public key in hex>
//	witness <name> <Ed25519 public key in hex> [<URL>]
//	group <name> <threshold|any|all> <member> ...
//	quorum <name|none>
//
// One log line, without URL: the log's checkpoint key, checked against
// the log's own key ([WitnessPolicy.CheckLogKey]); the origin is the
// key's name, configured apart. A witness's name is the name of its
// cosignature key (the key hash covers it), and its URL is where the log
// submits checkpoints (c2sp.org/tlog-witness). A group is met when at
// least threshold of its members (witnesses or groups defined on earlier
// lines) are; any is 1, all is every member. One quorum line names the
// witness or group that must be met, or none. Blank lines and lines
// starting with '#' are ignored. Names are unique across witnesses and
// groups.
//
// [Sigsum policy]: https://git.glasklar.is/sigsum/core/sigsum-go/-/blob/main/doc/policy.md
type WitnessPolicy struct {
	// LogKey is the log's checkpoint public key.
	LogKey ed25519.PublicKey
	// Witnesses are the witnesses, in the file's order.
	Witnesses []PolicyWitness
	// Groups are the groups, each after its members.
	Groups []WitnessGroup
	// Quorum names the witness or group that must be met; empty for none.
	Quorum string
}

// A PolicyWitness is a witness of a [WitnessPolicy].
type PolicyWitness struct {
	Name string
	Key  ed25519.PublicKey
	// URL is the witness's submission prefix; empty when the policy does
	// not say (a verifier's policy needs none).
	URL string
}

// A WitnessGroup is a group of a [WitnessPolicy].
type WitnessGroup struct {
	Name      string
	Threshold int      // 1 to len(Members)
	Members   []string // witnesses' or earlier groups' names
}

// ParseWitnessPolicy parses a witness policy (see [WitnessPolicy]). It is
// strict: a field that is missing, extra or malformed, a threshold that is
// not 1 to the number of members (a numeric threshold is read as such,
// never as 0), an unknown or repeated name, a second log or quorum line,
// or no quorum line is an error naming the line and the field, never
// quoting the text.
func ParseWitnessPolicy(text []byte) (*WitnessPolicy, error) {
	if len(text) > MaxWitnessPolicySize {
		return nil, fmt.Errorf("witness policy: %d bytes, limit %d", len(text), MaxWitnessPolicySize)
	}
	p := &WitnessPolicy{}
	names := make(map[string]bool)
	quorum := false
	for i, line := range strings.Split(string(text), "\n") {
		fail := func(field, want string) error {
			return fmt.Errorf("witness policy: line %d: %s: %s", i+1, field, want)
		}
		line = strings.TrimSuffix(line, "\r")
		if strings.IndexFunc(line, func(r rune) bool { return r < 0x20 && r != '\t' }) >= 0 {
			return nil, fail("text", "control character")
		}
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if quorum {
			return nil, fail(f[0], "after the quorum line, which must be last")
		}
		switch f[0] {
		case "log":
			if p.LogKey != nil {
				return nil, fail("log", "a second log line (one log per policy)")
			}
			if len(f) != 2 {
				return nil, fail("log", "want exactly a key, no URL")
			}
			k, err := parseHexKey(f[1])
			if err != nil {
				return nil, fail("log key", err.Error())
			}
			p.LogKey = k
		case "witness":
			if len(f) != 3 && len(f) != 4 {
				return nil, fail("witness", "want a name, a key and an optional URL")
			}
			if !validNoteName(f[1]) {
				return nil, fail("witness name", "want a note key name (no spaces or '+')")
			}
			if names[f[1]] {
				return nil, fail("witness name", "already defined")
			}
			k, err := parseHexKey(f[2])
			if err != nil {
				return nil, fail("witness key", err.Error())
			}
			w := PolicyWitness{Name: f[1], Key: k}
			if len(f) == 4 {
				if !strings.HasPrefix(f[3], "https://") && !strings.HasPrefix(f[3], "http://") {
					return nil, fail("witness URL", "want an http or https URL")
				}
				w.URL = f[3]
			}
			if len(p.Witnesses) == MaxPolicyWitnesses {
				return nil, fail("witness", fmt.Sprintf("more than %d witnesses", MaxPolicyWitnesses))
			}
			names[w.Name] = true
			p.Witnesses = append(p.Witnesses, w)
		case "group":
			if len(f) < 4 {
				return nil, fail("group", "want a name, a threshold and at least one member")
			}
			if !validNoteName(f[1]) {
				return nil, fail("group name", "want a name without spaces or '+'")
			}
			if names[f[1]] {
				return nil, fail("group name", "already defined")
			}
			g := WitnessGroup{Name: f[1], Members: f[3:]}
			for j, m := range g.Members {
				if !names[m] {
					return nil, fail(fmt.Sprintf("group member %d", j+1), "not a witness or group defined above")
				}
				if slices.Contains(g.Members[:j], m) {
					return nil, fail(fmt.Sprintf("group member %d", j+1), "repeated")
				}
			}
			switch f[2] {
			case "any":
				g.Threshold = 1
			case "all":
				g.Threshold = len(g.Members)
			default:
				k, err := strconv.Atoi(f[2])
				if err != nil || strconv.Itoa(k) != f[2] || k < 1 || k > len(g.Members) {
					return nil, fail("group threshold", fmt.Sprintf("want any, all, or a number from 1 to %d (the members)", len(g.Members)))
				}
				g.Threshold = k
			}
			names[g.Name] = true
			p.Groups = append(p.Groups, g)
		case "quorum":
			if len(f) != 2 {
				return nil, fail("quorum", "want one name, or none")
			}
			if f[1] != "none" {
				if !names[f[1]] {
					return nil, fail("quorum", "not a witness or group defined above")
				}
				p.Quorum = f[1]
			}
			quorum = true
		default:
			return nil, fail("keyword", "want log, witness, group or quorum")
		}
	}
	if p.LogKey == nil {
		return nil, errors.New("witness policy: no log line")
	}
	if !quorum {
		return nil, errors.New("witness policy: no quorum line")
	}
	return p, nil
}

func parseHexKey(s string) (ed25519.PublicKey, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize || hex.EncodeToString(b) != strings.ToLower(s) {
		return nil, errors.New("want 32 bytes in hex")
	}
	return ed25519.PublicKey(b), nil
}

// Format returns the policy in its canonical form: what
// [ParseWitnessPolicy] reads back into the same policy, one line per
// statement, keys in lower-case hex, thresholds as numbers. Two policies
// are the same when their Format is.
func (p *WitnessPolicy) Format() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "log %x\n", []byte(p.LogKey))
	for _, w := range p.Witnesses {
		fmt.Fprintf(&b, "witness %s %x", w.Name, []byte(w.Key))
		if w.URL != "" {
			fmt.Fprintf(&b, " %s", w.URL)
		}
		b.WriteByte('\n')
	}
	for _, g := range p.Groups {
		fmt.Fprintf(&b, "group %s %d %s\n", g.Name, g.Threshold, strings.Join(g.Members, " "))
	}
	q := p.Quorum
	if q == "" {
		q = "none"
	}
	fmt.Fprintf(&b, "quorum %s\n", q)
	return b.Bytes()
}

// CheckLogKey checks that the policy's log key is the log's checkpoint
// key, given as a note verifier key (<origin>+<hash>+<base64(0x01 ||
// key)>). It is the one place where the policy's log key is compared with
// the log's.
func (p *WitnessPolicy) CheckLogKey(vkey string) error {
	if _, err := note.NewVerifier(vkey); err != nil {
		return fmt.Errorf("witness policy: the log's key: %w", err)
	}
	key, err := noteEd25519Key(vkey)
	if err != nil {
		return errors.New("witness policy: the log's key is not an Ed25519 note key")
	}
	if !bytes.Equal(key, p.LogKey) {
		return errors.New("witness policy: the log line's key is not the log's checkpoint key")
	}
	return nil
}

// FollowTransition makes the policy's log key follow the log's key from
// current (checked by CheckLogKey) to the next key the transition t names
// (t verified by its caller with [OpenTransition] against current).
func (p *WitnessPolicy) FollowTransition(current string, t Transition) error {
	if err := p.CheckLogKey(current); err != nil {
		return err
	}
	key, err := noteEd25519Key(t.NextKey)
	if err != nil {
		return errors.New("witness policy: the next log key is not an Ed25519 note key")
	}
	p.LogKey = key
	return nil
}

// noteEd25519Key returns the Ed25519 public key of a note verifier key
// (<name>+<hash>+<base64(0x01 || key)>), which note.NewVerifier accepted.
func noteEd25519Key(vkey string) (ed25519.PublicKey, error) {
	_, enc, _ := strings.Cut(vkey[strings.Index(vkey, "+")+1:], "+")
	b, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(b) != 1+ed25519.PublicKeySize || b[0] != 0x01 {
		return nil, errors.New("not an Ed25519 note key")
	}
	return ed25519.PublicKey(b[1:]), nil
}
