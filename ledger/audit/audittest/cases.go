package audittest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// Origin is the corpus log's origin.
const Origin = "corpus.example/vigie/1"

// t0 is when the corpus's events happen.
var t0 = time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)

// patient and stranger are the pseudonyms of the corpus's patients.
var (
	patient  = event.Hash(sha256.Sum256([]byte("corpus patient")))
	stranger = event.Hash(sha256.Sum256([]byte("corpus stranger")))
)

// table is the corpus: one entry per case. A case's build starts from a
// log of the standard history (story) and changes what the server
// serves.
var table = []struct {
	name, about string
	want        []audit.Kind
	build       func(b *builder) *Case
}{
	{"valid", "an untouched history of five events, every one proved in the latest checkpoint", nil,
		func(b *builder) *Case { return b.story(5).serve() }},
	{"valid-erased", "the first two events erased, explained by the erasure record after them", nil,
		func(b *builder) *Case {
			b.record(patient, event.KindAccess, `{"n":1}`)
			b.record(patient, event.KindAccess, `{"n":2}`)
			b.record(patient, event.KindErasure, `{"format":"vigie.erasure.v1","state":"done","erased":2}`)
			b.record(patient, event.KindLedgerRead, `{"n":4}`)
			c := b.serve()
			for i := range 2 {
				e := &c.Listing.Events[i]
				e.Erased, e.Body, e.Salt = true, nil, nil
			}
			return c
		}},
	{"valid-enrolment", "a patient's sign-in at a provider without INS linked, then unlinked by the operator: enrolment events in the patient's chain", nil,
		func(b *builder) *Case {
			b.record(patient, event.KindEnrolment, `{"format":"vigie.enrolment.v1","action":"link","issuer":"https://fc.example","subject":"`+stranger.String()+`"}`)
			b.story(2)
			b.record(patient, event.KindEnrolment, `{"format":"vigie.enrolment.v1","action":"unlink","issuer":"https://fc.example","subject":"`+stranger.String()+`"}`)
			return b.serve()
		}},
	{"altered-enrolment", "the server changed the issuer of a recorded enrolment", []audit.Kind{audit.KindModifiedBody},
		func(b *builder) *Case {
			b.record(patient, event.KindEnrolment, `{"format":"vigie.enrolment.v1","action":"link","issuer":"https://fc.example","subject":"`+stranger.String()+`"}`)
			b.story(2)
			c := b.serve()
			body := c.Listing.Events[0].Body
			i := bytes.Index(body, []byte("fc.example"))
			body[i] = 'x'
			return c
		}},
	{"valid-saved", "a history verified before at a smaller checkpoint; the log grew consistently since", nil,
		func(b *builder) *Case {
			b.story(3)
			saved := b.sign()
			head := audit.ChainHead{Seq: 3, Commitment: b.commitment(2)}
			b.story(2)
			c := b.serve()
			c.State = &State{Checkpoint: saved, Chains: map[string]audit.ChainHead{patient.String(): head}}
			return c
		}},
	{"rotation", "the log's key changed since the saved verification, by a transition checkpoint signed by the pinned key and the new one", nil,
		func(b *builder) *Case { return b.rotation(true, true) }},
	{"rotation-no-transition", "the log signs with a new key that no transition checkpoint introduces", []audit.Kind{audit.KindSignature},
		func(b *builder) *Case { return b.rotation(true, false) }},
	{"rotation-new-key-only", "the transition checkpoint that introduces the new key is signed by the new key only", []audit.Kind{audit.KindSignature},
		func(b *builder) *Case { return b.rotation(false, true) }},
	{"valid-pending", "the newest event is beyond the listing's checkpoint, with its receipt; the latest checkpoint includes it", nil,
		func(b *builder) *Case {
			b.story(4)
			listed := b.sign()
			b.record(patient, event.KindLedgerRead, `{"late":1}`)
			c := b.serveAt(listed)
			c.Latest = b.sign()
			return c
		}},
	{"valid-fields", "every event comes with its kind, professional and establishment as the index has them, agreeing with its body (a regulator's review names no establishment: its index has the reviewed access's)", nil,
		func(b *builder) *Case {
			b.fieldsStory()
			return b.withFields(b.serve())
		}},
	{"fields-disagree", "the index beside two bodies was altered: an access served with another professional, a DPO's review with another establishment; the bodies are intact", []audit.Kind{audit.KindFieldMismatch, audit.KindFieldMismatch},
		func(b *builder) *Case {
			b.fieldsStory()
			c := b.withFields(b.serve())
			c.Listing.Events[0].ActorRPPS = "10000000004"
			c.Listing.Events[2].Organization = "130000001"
			return c
		}},
	{"fields-wrong-kind", "an access served as a consent change", []audit.Kind{audit.KindFieldMismatch},
		func(b *builder) *Case {
			b.fieldsStory()
			c := b.withFields(b.serve())
			c.Listing.Events[0].Kind = "EVENT_KIND_CONSENT_CHANGE"
			return c
		}},
	{"altered-body", "the server changed a byte of an event's body", []audit.Kind{audit.KindModifiedBody},
		func(b *builder) *Case {
			c := b.story(4).serve()
			c.Listing.Events[1].Body[len(c.Listing.Events[1].Body)-3] ^= 1
			return c
		}},
	{"broken-chain", "an event names another predecessor than the event before it", []audit.Kind{audit.KindWrongLink},
		func(b *builder) *Case {
			b.story(2)
			b.prevOverride = &event.Hash{1}
			b.record(patient, event.KindAccess, `{"n":3}`)
			b.story(1)
			return b.serve()
		}},
	{"foreign-patient", "an event of another patient's chain, with the right link, in the history", []audit.Kind{audit.KindForeignPatient},
		func(b *builder) *Case {
			b.story(2)
			b.record(stranger, event.KindAccess, `{"n":3}`)
			b.story(1)
			return b.serve()
		}},
	{"sequence-gap", "an event left out of the history", []audit.Kind{audit.KindMissingEvent},
		func(b *builder) *Case {
			c := b.story(5).serve()
			c.Listing.Events = slices.Delete(c.Listing.Events, 2, 3)
			return c
		}},
	{"unexplained-erasure", "an event shown erased that no erasure record explains", []audit.Kind{audit.KindUnexplainedErasure},
		func(b *builder) *Case {
			c := b.story(4).serve()
			e := &c.Listing.Events[0]
			e.Erased, e.Body, e.Salt = true, nil, nil
			return c
		}},
	{"rollback", "the server shows an older, smaller log than the one a previous verification saved", []audit.Kind{audit.KindRollback},
		func(b *builder) *Case {
			b.story(3)
			older := b.sign()
			b.story(2)
			saved := b.sign()
			c := b.serveAt(older)
			c.Listing.Events = c.Listing.Events[:3]
			c.Latest = older
			c.Leaves = c.Leaves[:b.sizeOf(older)]
			c.State = &State{Checkpoint: saved}
			return c
		}},
	{"rollback-beyond", "the server refuses to prove the checkpoint it lists from the one a previous verification saved, saying it has not reached that size", []audit.Kind{audit.KindRollback},
		func(b *builder) *Case {
			b.story(3)
			saved := b.sign()
			b.story(2)
			c := b.serve()
			c.State = &State{Checkpoint: saved}
			c.RefuseProofs = &APIError{HTTPStatus: 400, Status: json.RawMessage(`{"code":3,"message":"invalid second: not signed yet","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"BEYOND_CHECKPOINT","domain":"vigie","metadata":{"field":"second"}}]}`)}
			return c
		}},
	{"fork", "a previous verification saved a checkpoint of the same size with another tree", []audit.Kind{audit.KindFork},
		func(b *builder) *Case {
			c := b.story(4).serve()
			other := newBuilder()
			other.story(3)
			for other.size() < b.size() {
				other.other()
			}
			c.State = &State{Checkpoint: other.sign()}
			return c
		}},
	{"unreadable-event", "the server refuses the history: it cannot read its own event 2 (DATA_LOSS)", []audit.Kind{audit.KindUnreadable},
		func(b *builder) *Case {
			c := b.story(3).serve()
			c.Listing = nil
			c.Error = &APIError{HTTPStatus: 500, Status: json.RawMessage(`{"code":15,"message":"event 2 (log entry 3) cannot be read: its stored form was altered","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"EVENT_UNREADABLE","domain":"vigie","metadata":{"leaf_index":"3","seq":"2"}}]}`)}
			return c
		}},
	{"witness-met", "the reader pins a policy of three witnesses, quorum two; the latest checkpoint carries cosignatures of two of them", nil,
		func(b *builder) *Case { return b.story(3).serve().witnessed(b, "w1", "w3") }},
	{"witness-not-met", "the latest checkpoint carries the cosignature of only one of the policy's three witnesses, quorum two", []audit.Kind{audit.KindWitnessQuorum},
		func(b *builder) *Case { return b.story(3).serve().witnessed(b, "w2") }},
	{"witness-bad-cosignature", "two cosignatures by witnesses of the policy, one of which does not verify (its signature altered)", []audit.Kind{audit.KindCosignature, audit.KindWitnessQuorum},
		func(b *builder) *Case {
			c := b.story(3).serve().witnessed(b, "w1", "w2")
			// The last byte of w2's signature, before the newline.
			i := bytes.LastIndexByte(c.Latest[:len(c.Latest)-1], ' ') + 10
			c.Latest[i] ^= 'A' ^ 'B'
			return c
		}},
	{"witness-unknown", "one cosignature by a witness of the policy and one by a witness outside it, which counts for nothing", []audit.Kind{audit.KindWitnessQuorum},
		func(b *builder) *Case { return b.story(3).serve().witnessed(b, "w1", "w9") }},
	{"witness-other-branch", "the witnesses cosigned another tree of the listing's size: the listing's checkpoint is on a branch they never saw", []audit.Kind{audit.KindFork},
		func(b *builder) *Case {
			c := b.story(3).serve()
			n, err := verify.SignCheckpoint(verify.Checkpoint{Origin: Origin, Size: b.size(), Hash: event.Hash(sha256.Sum256([]byte("another branch")))}, b.cp)
			if err != nil {
				panic(err)
			}
			c.Latest = n
			return c.witnessed(b, "w1", "w2", "w3")
		}},
}

// witnessKey returns the corpus witness's key (w1, w2...), from a fixed
// seed.
func witnessKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("vigie corpus witness " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// witnessed makes the reader pin a policy of witnesses w1, w2, w3, quorum
// two, and adds to the latest checkpoint the cosignatures of witnesses
// (w9 is outside the policy).
func (c *Case) witnessed(b *builder, witnesses ...string) *Case {
	v := mustVerifier(b.keys.CheckpointKey)
	_, enc, _ := strings.Cut(strings.TrimPrefix(b.keys.CheckpointKey, v.Name()+"+"), "+")
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		panic(err)
	}
	policy := fmt.Sprintf("log %x\n", raw[1:])
	for _, w := range []string{"w1", "w2", "w3"} {
		policy += fmt.Sprintf("witness witness.example/%s %x https://witness.example/%s\n", w, []byte(witnessKey(w).Public().(ed25519.PublicKey)), w)
	}
	policy += "group witnesses 2 witness.example/w1 witness.example/w2 witness.example/w3\nquorum witnesses\n"
	c.Keys.WitnessPolicy = policy
	cp, err := verify.ParseCheckpoint(noteText(c.Latest))
	if err != nil {
		panic(err)
	}
	text, _ := verify.FormatCheckpoint(cp)
	c.Latest = slices.Clone(c.Latest)
	for _, w := range witnesses {
		line, err := verify.SignCosignature("witness.example/"+w, witnessKey(w), uint64(t0.Unix()), text)
		if err != nil {
			panic(err)
		}
		c.Latest = append(c.Latest, line...)
	}
	return c
}

// noteText returns the text of a signed note.
func noteText(n []byte) []byte {
	i := bytes.Index(n, []byte("\n\n"))
	return n[:i+1]
}

// Cases makes the corpus, the same every time (fixed keys, times and
// salts).
func Cases() []Case {
	var out []Case
	for _, tc := range table {
		c := tc.build(newBuilder())
		c.Name, c.About = tc.name, tc.about
		c.Want = slices.Clone(tc.want)
		if c.Want == nil {
			c.Want = []audit.Kind{}
		}
		slices.Sort(c.Want)
		out = append(out, *c)
	}
	return out
}

// builder builds a log and a patient's history in it.
type builder struct {
	cp, rc       note.Signer
	keys         audit.PublicKeys
	leaves       [][]byte
	stored       []tlog.Hash
	events       []Event // of the patient's chain (and spliced ones), in order
	bodies       []*event.Body
	prevOverride *event.Hash
}

func newBuilder() *builder {
	b := &builder{}
	b.cp, b.keys.CheckpointKey = key(Origin)
	b.rc, b.keys.ReceiptKey = key(verify.ReceiptKeyName(Origin))
	return b
}

// key returns a signer and its verifier key, from a fixed seed.
func key(name string) (note.Signer, string) {
	sk, vk, err := note.GenerateKey(seeded("vigie corpus "+name), name)
	if err != nil {
		panic(err) // a fixed seed and a valid name
	}
	s, err := note.NewSigner(sk)
	if err != nil {
		panic(err)
	}
	return s, vk
}

type seeded string

func (s seeded) Read(p []byte) (int, error) {
	for i := 0; i < len(p); i += 32 {
		h := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", s, i)))
		copy(p[i:], h[:])
	}
	return len(p), nil
}

func (b *builder) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = b.stored[x]
	}
	return out, nil
}

func (b *builder) size() uint64 { return uint64(len(b.leaves)) }

func (b *builder) add(c event.Hash) uint64 {
	n := int64(len(b.leaves))
	v := verify.LeafValue(c)
	hs, err := tlog.StoredHashes(n, v, b)
	if err != nil {
		panic(err)
	}
	b.leaves = append(b.leaves, v)
	b.stored = append(b.stored, hs...)
	return uint64(n)
}

// other adds a leaf of someone else's event.
func (b *builder) other() {
	b.add(event.Hash(sha256.Sum256([]byte(fmt.Sprint("corpus other ", len(b.leaves))))))
}

// story adds n events to the patient's chain, each after another leaf.
func (b *builder) story(n int) *builder {
	for range n {
		b.other()
		b.record(patient, event.KindAccess, fmt.Sprintf(`{"n":%d}`, len(b.events)+1))
	}
	return b
}

// commitment returns the commitment of the i-th event (from 0).
func (b *builder) commitment(i int) event.Hash {
	c, err := event.ParseHash(b.events[i].Commitment)
	if err != nil {
		panic(err)
	}
	return c
}

// record adds the next event of the chain, in the name of pseudonym p.
func (b *builder) record(p event.Hash, kind event.Kind, payload string) {
	seq := uint64(len(b.events) + 1)
	body := &event.Body{V: event.Version, ID: fmt.Sprintf("%032x", 0xc0de0000+seq), Time: t0.Add(time.Duration(seq) * time.Hour),
		Kind: kind, Patient: p, Seq: seq, Service: "hospital.example/dpi", Payload: []byte(payload)}
	if seq > 1 {
		body.Prev = b.commitment(int(seq) - 2)
	}
	if b.prevOverride != nil {
		body.Prev, b.prevOverride = *b.prevOverride, nil
	}
	raw, err := body.Marshal()
	if err != nil {
		panic(err)
	}
	var salt [verify.SaltSize]byte
	copy(salt[:], fmt.Sprintf("corpus salt %d", seq))
	c := commitmentOf(salt, raw)
	i := b.add(c)
	b.events = append(b.events, Event{Sequence: strconv.FormatUint(seq, 10), LeafIndex: strconv.FormatUint(i, 10), Commitment: c.String(), Body: raw, Salt: salt[:]})
	b.bodies = append(b.bodies, body)
}

func (b *builder) root(size uint64) event.Hash {
	if size == 0 {
		return event.Hash(sha256.Sum256(nil))
	}
	h, err := tlog.TreeHash(int64(size), b)
	if err != nil {
		panic(err)
	}
	return event.Hash(h)
}

// sign signs a checkpoint of the whole tree.
func (b *builder) sign() []byte {
	n, err := verify.SignCheckpoint(verify.Checkpoint{Origin: Origin, Size: b.size(), Hash: b.root(b.size())}, b.cp)
	if err != nil {
		panic(err)
	}
	return n
}

func (b *builder) sizeOf(n []byte) uint64 {
	cp, err := verify.ParseCheckpoint(noteText(n))
	if err != nil {
		panic(err)
	}
	return cp.Size
}

// rotation makes a history verified before (saved) under the pinned key,
// then a transition to the next key (signed by the pinned key if
// oldSigns, always by the next), then more events under the next key;
// the case serves the transition if served.
func (b *builder) rotation(oldSigns, served bool) *Case {
	b.story(3)
	saved := b.sign()
	head := audit.ChainHead{Seq: 3, Commitment: b.commitment(2)}
	sk, nextKey, err := note.GenerateKey(seeded("vigie corpus next "+Origin), Origin)
	if err != nil {
		panic(err)
	}
	next, err := note.NewSigner(sk)
	if err != nil {
		panic(err)
	}
	cp := verify.Checkpoint{Origin: Origin, Size: b.size(), Hash: b.root(b.size())}
	var transition []byte
	if oldSigns {
		transition, err = verify.SignTransition(cp, nextKey, b.cp, next)
	} else {
		text, ferr := verify.FormatTransition(cp, nextKey)
		if ferr != nil {
			panic(ferr)
		}
		transition, err = note.Sign(&note.Note{Text: string(text)}, next)
	}
	if err != nil {
		panic(err)
	}
	b.cp = next
	b.story(2)
	c := b.serve()
	c.State = &State{Checkpoint: saved, Chains: map[string]audit.ChainHead{patient.String(): head}}
	c.Served = &audit.PublicKeys{CheckpointKey: nextKey, ReceiptKey: b.keys.ReceiptKey}
	if served {
		c.Transitions = [][]byte{transition}
	}
	return c
}

func mustVerifier(k string) note.Verifier {
	v, err := note.NewVerifier(k)
	if err != nil {
		panic(err)
	}
	return v
}

// serve signs the whole tree and serves the history against it.
func (b *builder) serve() *Case {
	n := b.sign()
	return b.serveAt(n)
}

// serveAt serves the history against checkpoint n: inclusion proofs for
// the events it covers, receipts for the others.
func (b *builder) serveAt(n []byte) *Case {
	size := b.sizeOf(n)
	c := &Case{Keys: b.keys, Leaves: slices.Clone(b.leaves), Latest: n, Listing: &Listing{Checkpoint: n}}
	for _, e := range b.events {
		e.Body, e.Salt = slices.Clone(e.Body), slices.Clone(e.Salt)
		index, _ := strconv.ParseUint(e.LeafIndex, 10, 64)
		if index < size {
			p, err := tlog.ProveRecord(int64(size), int64(index), b)
			if err != nil {
				panic(err)
			}
			e.InclusionProof = toBytes(p)
		} else {
			seq, _ := strconv.ParseUint(e.Sequence, 10, 64)
			r := verify.Receipt{Origin: Origin, Index: index, Commitment: b.commitment(int(seq) - 1), Time: t0.Add(time.Duration(seq) * time.Hour), Deadline: t0.Add(time.Duration(seq)*time.Hour + time.Minute)}
			rc, err := verify.SignReceipt(r, b.rc)
			if err != nil {
				panic(err)
			}
			e.Receipt = rc
		}
		c.Listing.Events = append(c.Listing.Events, e)
	}
	return c
}

// The professional and establishment of the corpus's accesses.
const (
	corpusRPPS   = "10000000003"
	corpusFINESS = "750712184"
)

// corpusAccess is an access record as package consent formats it
// (consent.FormatAccessRecord), so that every face shows its body.
const corpusAccess = `{"format":"vigie.access.v1","request":{"id":"corpus-1","service":"hospital.example/dpi","actor":{"rpps":"` + corpusRPPS +
	`","profession":"10","sector":"care","organization":"` + corpusFINESS + `","care_team":false},"action":"read","resource":{"kind":"record"},` +
	`"purpose":"TREAT","time":"2026-11-28T10:00:00Z"},"decision":{"effect":"ALLOW","reason":"consent","grounds":[],"obligations":[],` +
	`"consent_version":0,"rules_version":1,"rules_hash":"0000000000000000000000000000000000000000000000000000000000000000","time":"2026-11-28T10:00:00Z"}}`

// fieldsStory records an access, a ledger read, a DPO's review and a
// regulator's review of it, with payloads that name whom they concern.
func (b *builder) fieldsStory() {
	b.record(patient, event.KindAccess, corpusAccess)
	b.record(patient, event.KindLedgerRead, `{"format":"vigie.ledger-read.v2","reader":"patient","method":"ListAccesses","events":1}`)
	access := fmt.Sprintf(`"event":"%s","leaf_index":%s`, b.commitment(len(b.events)-2), b.events[len(b.events)-2].LeafIndex)
	b.record(patient, event.KindBreakGlassReview, `{"format":"vigie.break-glass-review.v2",`+access+`,"verdict":"justified","reviewer":"dpo:a","organization":"`+corpusFINESS+`"}`)
	b.record(patient, event.KindBreakGlassReview, `{"format":"vigie.break-glass-review.v2",`+access+`,"verdict":"unjustified","reviewer":"regulator:cnil"}`)
}

// withFields sets on each event of c what a server's index says of it
// (kind, RPPS, FINESS), as Vigie's server fills them: an access's
// professional and establishment, a review's reviewed access's
// establishment.
func (b *builder) withFields(c *Case) *Case {
	for i := range c.Listing.Events {
		e := &c.Listing.Events[i]
		body := b.bodies[i]
		e.Kind = body.Kind.APIName()
		switch body.Kind {
		case event.KindAccess:
			e.ActorRPPS, e.Organization = corpusRPPS, corpusFINESS
		case event.KindBreakGlassReview:
			e.Organization = corpusFINESS
		}
	}
	return c
}
