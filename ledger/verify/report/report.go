// Package report is the JSON face of Vigie's verifier (packages
// ledger/verify and ledger/audit) for the patient portal's WebAssembly
// build (cmd/verify-wasm): it decodes what the page gives it (what the
// browser keeps: the keys it pinned, the state it saved), asks the API
// through a function the page provides ([Fetch]), runs the Go verifier and
// encodes its verdict and findings as JSON. It holds no rule of its own:
// the CLI (vigie verify, vigie audit) runs the same checks over the same
// API, so the browser, the CLI and the tests reach the same verdicts.
//
// The page parses nothing it shows as verified: events' contents come
// from the bytes the verifier hashed, sizes from the checkpoints it
// opened.
//
// The API's JSON (docs/api.md): .proto field names, bytes in base64,
// 64-bit integers as strings (plain numbers are accepted too).
package report

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// Uint64 is a 64-bit integer as protojson writes it (a JSON string), or a
// plain JSON number.
type Uint64 uint64

// UnmarshalJSON accepts "123" and 123.
func (u *Uint64) UnmarshalJSON(b []byte) error {
	s := string(bytes.Trim(b, `"`))
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("want an unsigned integer, got %s", b)
	}
	*u = Uint64(n)
	return nil
}

// Fetch asks the API for path (a GET, with the reader's credentials) and
// returns the HTTP status and body of the answer. An error means the
// server could not be reached.
type Fetch func(ctx context.Context, path string) (status int, body []byte, err error)

// An APIError is an answer of the API other than 200 OK.
type APIError struct {
	Status   int
	Message  string
	Reason   string // of the google.rpc.ErrorInfo detail, if any
	Metadata map[string]string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
}

// apiError decodes an error answer (google.rpc.Status as JSON), and
// returns it as package audit knows it when it is one of the answers a
// verification turns into a finding.
func apiError(status int, body []byte) error {
	var st struct {
		Message string `json:"message"`
		Details []struct {
			Type     string            `json:"@type"`
			Reason   string            `json:"reason"`
			Metadata map[string]string `json:"metadata"`
		} `json:"details"`
	}
	_ = json.Unmarshal(body, &st) // an answer that is not JSON: the status says enough
	e := &APIError{Status: status, Message: st.Message}
	for _, d := range st.Details {
		if d.Type == "type.googleapis.com/google.rpc.ErrorInfo" {
			e.Reason, e.Metadata = d.Reason, d.Metadata
		}
	}
	switch e.Reason {
	case "EVENT_UNREADABLE":
		ue := &audit.UnreadableError{Detail: e.Message}
		if seq, err := strconv.ParseUint(e.Metadata["seq"], 10, 64); err == nil {
			ue.Seq = seq
		}
		if index, err := strconv.ParseUint(e.Metadata["leaf_index"], 10, 64); err == nil {
			ue.Index = &index
		}
		return ue
	case "BEYOND_CHECKPOINT":
		return fmt.Errorf("%w: %v", audit.ErrBeyondCheckpoint, e)
	}
	return e
}

// Source is the API over a [Fetch], as package ledger/audit reads it.
type Source struct {
	Fetch Fetch
	// PageSize is the size of the history's pages. Default 200.
	PageSize int
}

var _ audit.HistorySource = Source{}

func (s Source) get(ctx context.Context, path string, q url.Values) ([]byte, error) {
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	status, body, err := s.Fetch(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if status != 200 {
		return nil, fmt.Errorf("GET %s: %w", path, apiError(status, body))
	}
	return body, nil
}

func (s Source) getJSON(ctx context.Context, path string, q url.Values, v any) error {
	b, err := s.get(ctx, path, q)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// PublicKeys returns the keys the server serves (GET /v1/log/key).
func (s Source) PublicKeys(ctx context.Context) (audit.PublicKeys, error) {
	var k audit.PublicKeys
	return k, s.getJSON(ctx, "/v1/log/key", nil, &k)
}

// WitnessPolicy returns the witness policy the server serves (GET
// /witness-policy, the operator's --witness-policy), or "" if it serves
// none (404).
func (s Source) WitnessPolicy(ctx context.Context) (string, error) {
	status, body, err := s.Fetch(ctx, "/witness-policy")
	switch {
	case err != nil:
		return "", fmt.Errorf("GET /witness-policy: %w", err)
	case status == 404:
		return "", nil
	case status != 200:
		return "", fmt.Errorf("GET /witness-policy: %w", apiError(status, body))
	}
	return string(body), nil
}

// Transitions returns the log's transition checkpoints, unverified (GET
// /checkpoint/transitions); none from a server without the route.
func (s Source) Transitions(ctx context.Context) ([][]byte, error) {
	const path = "/checkpoint/transitions"
	if status, _, err := s.Fetch(ctx, path); err == nil && status == 404 {
		return nil, nil
	}
	var out struct {
		Transitions []string `json:"transitions"`
	}
	if err := s.getJSON(ctx, path, nil, &out); err != nil {
		return nil, err
	}
	notes := make([][]byte, len(out.Transitions))
	for i, n := range out.Transitions {
		notes[i] = []byte(n)
	}
	return notes, nil
}

// Checkpoint implements audit.LogSource (GET /checkpoint).
func (s Source) Checkpoint(ctx context.Context) ([]byte, error) {
	return s.get(ctx, "/checkpoint", nil)
}

// ConsistencyProof implements audit.LogSource.
func (s Source) ConsistencyProof(ctx context.Context, first, second uint64) ([][]byte, error) {
	var out struct {
		Hashes [][]byte `json:"hashes"`
	}
	q := url.Values{"first": {strconv.FormatUint(first, 10)}, "second": {strconv.FormatUint(second, 10)}}
	return out.Hashes, s.getJSON(ctx, "/v1/log/consistency", q, &out)
}

// InclusionProof implements audit.LogSource.
func (s Source) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	var out struct {
		Hashes [][]byte `json:"hashes"`
	}
	q := url.Values{"leaf_index": {strconv.FormatUint(index, 10)}, "tree_size": {strconv.FormatUint(size, 10)}}
	return out.Hashes, s.getJSON(ctx, "/v1/log/inclusion", q, &out)
}

// Leaves implements audit.LogSource.
func (s Source) Leaves(ctx context.Context, start, end uint64) ([][]byte, error) {
	var out struct {
		Leaves [][]byte `json:"leaves"`
	}
	q := url.Values{"start": {strconv.FormatUint(start, 10)}, "end": {strconv.FormatUint(end, 10)}}
	return out.Leaves, s.getJSON(ctx, "/v1/log/leaves", q, &out)
}

// HistoryPage implements audit.HistorySource (GET /v1/me/accesses).
func (s Source) HistoryPage(ctx context.Context, token string) (*audit.HistoryPage, error) {
	size := s.PageSize
	if size <= 0 {
		size = 200
	}
	q := url.Values{"page_size": {strconv.Itoa(size)}}
	if token != "" {
		q.Set("page_token", token)
	}
	var p struct {
		Events     []Event `json:"events"`
		Checkpoint []byte  `json:"checkpoint"`
		Next       string  `json:"next_page_token"`
	}
	if err := s.getJSON(ctx, "/v1/me/accesses", q, &p); err != nil {
		return nil, err
	}
	out := &audit.HistoryPage{Checkpoint: p.Checkpoint, Next: p.Next}
	for _, e := range p.Events {
		out.Events = append(out.Events, e.envelope())
	}
	return out, nil
}

// Event is one event as the API serves it (vigie.v1.LedgerEvent).
type Event struct {
	Sequence       Uint64   `json:"sequence"`
	LeafIndex      Uint64   `json:"leaf_index"`
	Commitment     string   `json:"commitment"`
	Erased         bool     `json:"erased"`
	Body           []byte   `json:"body"`
	Salt           []byte   `json:"salt"`
	InclusionProof [][]byte `json:"inclusion_proof"`
	Receipt        []byte   `json:"receipt"`
	// Kind, ActorRPPS and Organization are the server's index, checked
	// against the body (audit.CheckFields), never shown.
	Kind         string `json:"kind"`
	ActorRPPS    string `json:"actor_rpps"`
	Organization string `json:"organization"`
}

func (e Event) envelope() audit.Envelope {
	return audit.Envelope{Seq: uint64(e.Sequence), Index: uint64(e.LeafIndex), Commitment: e.Commitment, Erased: e.Erased,
		Body: e.Body, Salt: e.Salt, Proof: e.InclusionProof, Receipt: e.Receipt,
		Kind: e.Kind, Actor: e.ActorRPPS, Organization: e.Organization}
}

// Checkpoint is a verified checkpoint's contents.
type Checkpoint struct {
	Origin string `json:"origin"`
	Size   uint64 `json:"size,string"`
	Hash   string `json:"hash"` // hex
}

func checkpointOf(c verify.Checkpoint) *Checkpoint {
	return &Checkpoint{Origin: c.Origin, Size: c.Size, Hash: c.Hash.String()}
}

// Event verdicts.
const (
	// Verified: the body and salt match the commitment, and the leaf is in
	// a signed checkpoint's tree (or the event was erased and its leaf is
	// there).
	Verified = "verified"
	// Promised: the body and salt match the commitment, and the log signed
	// a receipt promising to include it by a deadline not passed yet.
	Promised = "promised"
	// Failed: a check failed; Problems says which.
	Failed = "failed"
)

// EventReport is the verdict on one event, with the event's contents as
// parsed from the bytes that were hashed: a page shows these, never the
// server's own fields.
type EventReport struct {
	Sequence   uint64          `json:"sequence,string"`
	LeafIndex  uint64          `json:"leaf_index,string"`
	Commitment string          `json:"commitment"`
	Verdict    string          `json:"verdict"`
	Problems   []string        `json:"problems,omitempty"`
	Erased     bool            `json:"erased,omitempty"`
	ID         string          `json:"id,omitempty"`
	Time       *time.Time      `json:"time,omitempty"`
	Kind       event.Kind      `json:"kind,omitempty"`
	Service    string          `json:"service,omitempty"`
	Payload    json.RawMessage `json:"payload,omitempty"`
	Deadline   *time.Time      `json:"deadline,omitempty"` // of a promised event's receipt
}

// eventReports gives each event its verdict and the problems the findings
// name at its place; the other findings' messages are returned apart.
func eventReports(events []audit.HistoryEvent, findings []audit.Finding) ([]EventReport, []string) {
	out := make([]EventReport, 0, len(events))
	byPlace := map[uint64]int{}
	for _, e := range events {
		r := EventReport{Sequence: e.Seq, LeafIndex: e.Index, Commitment: e.Commitment.String(), Erased: e.Erased}
		switch e.Proof {
		case audit.Included:
			r.Verdict = Verified
		case audit.Pending:
			r.Verdict = Promised
			d := e.Receipt.Deadline
			r.Deadline = &d
		default:
			r.Verdict = Failed
		}
		if b := e.Body; b != nil {
			t := b.Time
			r.ID, r.Time, r.Kind, r.Service, r.Payload = b.ID, &t, b.Kind, b.Service, b.Payload
		}
		byPlace[e.Index] = len(out)
		out = append(out, r)
	}
	var rest []string
	for _, f := range findings {
		i, ok := 0, false
		if f.Index != nil {
			i, ok = byPlace[*f.Index]
		}
		if !ok && f.Seq != 0 {
			for j := range out {
				if out[j].Sequence == f.Seq {
					i, ok = j, true
					break
				}
			}
		}
		if !ok {
			rest = append(rest, f.Message)
			continue
		}
		out[i].Problems = append(out[i].Problems, f.Message)
		out[i].Verdict = Failed
	}
	return out, rest
}

// Keys are what the page keeps of the log's keys: those it pinned (on
// first use, or pasted by the reader from another channel).
type Keys struct {
	// Pinned are the keys pinned (localStorage vigie.pinnedKeys), if any.
	Pinned *audit.PublicKeys `json:"pinned"`
}

// KeysReport says which keys were trusted, and what to pin.
type KeysReport struct {
	CheckpointKey string `json:"checkpoint_key"`
	ReceiptKey    string `json:"receipt_key"`
	// FirstUse: the keys came from the server; Pin holds them to pin
	// once a verification succeeded.
	FirstUse bool `json:"first_use,omitempty"`
	// Changed: the server serves other keys than those trusted.
	Changed bool `json:"changed,omitempty"`
	// PolicyFirstUse: no witness policy was pinned, and the one the
	// server serves is enforced and, once a verification succeeded, pinned
	// (in Pin). PolicyChanged: the server serves another policy than the
	// one pinned, which is still enforced: a finding.
	PolicyFirstUse bool `json:"policy_first_use,omitempty"`
	PolicyChanged  bool `json:"policy_changed,omitempty"`
	// Rotated: the log's key changed by a transition checkpoint signed
	// by the pinned one; Pin holds the new keys to pin once a
	// verification succeeded.
	Rotated bool              `json:"rotated,omitempty"`
	Pin     *audit.PublicKeys `json:"pin,omitempty"`
}

// pinNow reports whether a successful verification pins what it trusted.
func (k *KeysReport) pinNow(p *audit.Pinning) bool {
	return p.FirstUse || k.PolicyFirstUse || k.Rotated
}

// policyChanged returns the finding of a witness policy served that is
// not the one pinned, if it is not.
func (k *KeysReport) policyChanged() []audit.Finding {
	if !k.PolicyChanged {
		return nil
	}
	return []audit.Finding{{Kind: audit.KindWitnessPolicyChanged,
		Message: "the server serves another witness policy than the one this browser pinned: the pinned policy is enforced; accept the new one only once its publisher confirms it"}}
}

// pin decides the keys with audit.PinKeys, asking the server for its own
// and for its witness policy. The policy is pinned on first use like the
// keys (the one served is enforced, and pinned once a verification
// succeeded); once pinned, it alone is enforced, and one served that
// differs (in canonical form) is reported, never taken. A server that
// serves none leaves the pinned one enforced: its checkpoints then fail
// the quorum, if they lack the cosignatures.
func pin(ctx context.Context, src Source, k Keys) (*audit.Pinning, *KeysReport, error) {
	var pinned audit.PublicKeys
	if k.Pinned != nil {
		pinned = *k.Pinned
	}
	served, err := src.PublicKeys(ctx)
	if err != nil {
		return nil, nil, err
	}
	policy, err := src.WitnessPolicy(ctx)
	if err != nil {
		return nil, nil, err
	}
	firstPolicy := pinned.WitnessPolicy == "" && policy != ""
	if firstPolicy {
		pinned.WitnessPolicy = policy
	}
	p, err := audit.PinKeys(pinned, audit.PublicKeys{}, func() (audit.PublicKeys, error) { return served, nil })
	if err != nil {
		return nil, nil, err
	}
	rotated := false
	if !p.FirstUse && p.Differs(served) {
		notes, err := src.Transitions(ctx)
		if err != nil {
			return nil, nil, err
		}
		if rotated, err = p.FollowTransitions(notes); err != nil {
			return nil, nil, err
		}
	}
	kr := &KeysReport{CheckpointKey: p.CheckpointKey, ReceiptKey: p.ReceiptKey, FirstUse: p.FirstUse, Changed: p.Differs(served), PolicyFirstUse: firstPolicy, Rotated: rotated}
	if !firstPolicy && p.WitnessPolicy != "" && policy != "" {
		sp, err := verify.ParseWitnessPolicy([]byte(policy))
		kr.PolicyChanged = err != nil || string(sp.Format()) != p.WitnessPolicy
	}
	return p, kr, nil
}

// State is what the page keeps between two verifications of a history
// (localStorage vigie.lastCheckpoint): the newest checkpoint verified, and
// the head of each chain verified (by pseudonym, hex).
type State struct {
	Note   []byte                     `json:"note"`
	Chains map[string]audit.ChainHead `json:"chains,omitempty"`
}

func (s *State) saved() *audit.SavedState {
	out := &audit.SavedState{Chains: map[event.Hash]audit.ChainHead{}}
	if s == nil {
		return out
	}
	out.Checkpoint = s.Note
	for p, h := range s.Chains {
		if ps, err := event.ParseHash(p); err == nil {
			out.Chains[ps] = h
		}
	}
	return out
}

func stateOf(s *audit.SavedState) *State {
	out := &State{Note: s.Checkpoint, Chains: map[string]audit.ChainHead{}}
	for p, h := range s.Chains {
		out.Chains[p.String()] = h
	}
	return out
}

// HistoryInput is what VerifyHistory takes: the keys and state the page
// kept, and the time to judge receipts' deadlines by.
type HistoryInput struct {
	Keys  Keys      `json:"keys"`
	State *State    `json:"state"`
	Now   time.Time `json:"now"`
}

// Growth is the verdict on the log against the state saved before.
type Growth struct {
	OK bool `json:"ok"`
	// Rollback is "rollback" (a smaller tree), "fork" (another tree of
	// that size, or not an extension) or "beyond" (a size the log now
	// refuses to prove); empty when OK.
	Rollback string   `json:"rollback,omitempty"`
	Seen     uint64   `json:"seen,string"`
	Now      uint64   `json:"now,string"`
	Problems []string `json:"problems,omitempty"`
}

func growthOf(f *audit.Finding, seen, now uint64) *Growth {
	g := &Growth{OK: f == nil, Seen: seen, Now: now}
	if f == nil {
		return g
	}
	g.Problems = []string{f.Message}
	switch {
	case f.Kind == audit.KindRollback && now < seen:
		g.Rollback = "rollback"
	case f.Kind == audit.KindRollback:
		g.Rollback = "beyond"
	case f.Kind == audit.KindFork:
		g.Rollback = "fork"
	}
	return g
}

// HistoryReport is the verdict on a patient's history.
type HistoryReport struct {
	// OK is true when every event is verified or promised, the listing's
	// checkpoint is signed and the chain is whole: no finding but the
	// log's growth.
	OK bool `json:"ok"`
	// Error is set when the verification could not be done (the server
	// could not be asked, or refused): nothing was verified.
	Error string `json:"error,omitempty"`
	// Checkpoint is the signed checkpoint the events are proved against.
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	// Problems are the findings' messages that concern the history as a
	// whole; an event's are in its report.
	Problems []string        `json:"problems,omitempty"`
	Events   []EventReport   `json:"events"`
	Findings []audit.Finding `json:"findings"`
	// Log is the verdict on the log against the saved state (absent on a
	// first verification).
	Log  *Growth     `json:"log,omitempty"`
	Keys *KeysReport `json:"keys,omitempty"`
	// State is what to keep for the next verification: set only when
	// nothing was found.
	State *State `json:"state,omitempty"`
}

// VerifyHistory fetches the patient's whole history and verifies it with
// audit.VerifyHistory, against the keys (audit.PinKeys) and state
// (audit.SavedState) the page kept. A failure to ask the server is a
// report with one problem.
func VerifyHistory(ctx context.Context, in HistoryInput, fetch Fetch) *HistoryReport {
	rep := &HistoryReport{Events: []EventReport{}, Findings: []audit.Finding{}}
	src := Source{Fetch: fetch}
	p, kr, err := pin(ctx, src, in.Keys)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	rep.Keys = kr
	rep.Findings = append(rep.Findings, kr.policyChanged()...)
	state := in.State.saved()
	opts := state.Options(p)
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	opts.Now = func() time.Time { return now }
	hr, err := audit.VerifyHistory(ctx, src, opts)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	var others []audit.Finding
	for _, f := range hr.Findings {
		if hr.Growth == nil || f.Kind != hr.Growth.Kind || f.Message != hr.Growth.Message {
			others = append(others, f)
		}
	}
	rep.Findings = append(rep.Findings, hr.Findings...)
	rep.Events, rep.Problems = eventReports(hr.Events, others)
	if f := kr.policyChanged(); f != nil {
		others = append(others, f...)
		rep.Problems = append(rep.Problems, f[0].Message)
	}
	if len(hr.CheckpointNote) > 0 && !hr.Checkpoint.Hash.IsZero() {
		rep.Checkpoint = checkpointOf(hr.Checkpoint)
	}
	if hr.Previous != nil && rep.Checkpoint != nil {
		rep.Log = growthOf(hr.Growth, hr.Previous.Size, hr.Checkpoint.Size)
	}
	rep.OK = len(others) == 0
	if len(hr.Findings) == 0 && !kr.PolicyChanged {
		rep.State = stateOf(state.Next(hr))
		if kr.pinNow(p) {
			rep.Keys.Pin = &p.PublicKeys
		}
	}
	return rep
}

// EventsInput is a set of events that are not a whole chain (an auditor's
// search results), each with its inclusion proof in the tree of one signed
// checkpoint.
type EventsInput struct {
	Keys       audit.PublicKeys `json:"keys"`
	Checkpoint []byte           `json:"checkpoint"`
	Events     []Event          `json:"events"`
	Now        time.Time        `json:"now"`
}

// VerifyEvents checks each event with audit.CheckEvents, not the chain
// between them: search results are not a whole chain.
func VerifyEvents(in EventsInput) *HistoryReport {
	rep := &HistoryReport{Events: []EventReport{}, Findings: []audit.Finding{}}
	p, err := audit.PinKeys(in.Keys, audit.PublicKeys{}, nil)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	envs := make([]audit.Envelope, len(in.Events))
	for i, e := range in.Events {
		envs[i] = e.envelope()
	}
	events, cp, findings := audit.CheckEvents(p.Keys, in.Checkpoint, envs, in.Now)
	rep.Findings = append(rep.Findings, findings...)
	rep.Events, rep.Problems = eventReports(events, findings)
	if !cp.Hash.IsZero() {
		rep.Checkpoint = checkpointOf(cp)
	}
	rep.OK = len(findings) == 0
	return rep
}

// LogInput is what VerifyLog takes: the keys the page pinned, and the
// checkpoints it verified before (localStorage vigie.audit.checkpoints).
type LogInput struct {
	Keys Keys             `json:"keys"`
	Seen []SeenCheckpoint `json:"seen"`
	Now  time.Time        `json:"now"`
}

// SeenCheckpoint is a checkpoint the page verified before: its signed
// note, in base64, and when.
type SeenCheckpoint struct {
	Note []byte    `json:"note"`
	Time time.Time `json:"time"`
}

// CheckpointReport is the verdict on one checkpoint of a series.
type CheckpointReport struct {
	Checkpoint
	Time    time.Time `json:"time"`
	Signed  bool      `json:"signed,omitempty"`
	Verdict string    `json:"verdict"`
}

// LogReport is the verdict on the log's series of checkpoints.
type LogReport struct {
	// OK is true when every checkpoint is signed by the checkpoint key and
	// each is consistent with the one before: the log only grew.
	OK bool `json:"ok"`
	// Error is set when the check could not be done.
	Error string `json:"error,omitempty"`
	// Latest is the checkpoint the log serves now, verified, and
	// LatestNote its signed note (to prove search results against).
	Latest      *Checkpoint        `json:"latest,omitempty"`
	LatestNote  []byte             `json:"latest_note,omitempty"`
	Log         *Growth            `json:"log,omitempty"`
	Problems    []string           `json:"problems,omitempty"`
	Findings    []audit.Finding    `json:"findings"`
	Checkpoints []CheckpointReport `json:"checkpoints"`
	// SignedHistory counts the checkpoints of the log's signed history.
	SignedHistory int              `json:"signed_history"`
	Keys          *KeysReport      `json:"keys,omitempty"`
	Seen          []SeenCheckpoint `json:"seen,omitempty"` // to keep, when OK
}

// VerifyLog fetches the latest checkpoint and the log's signed history of
// checkpoints, and checks them with those the page saw before
// (audit.CheckSeries).
func VerifyLog(ctx context.Context, in LogInput, fetch Fetch) *LogReport {
	rep := &LogReport{Findings: []audit.Finding{}, Checkpoints: []CheckpointReport{}}
	src := Source{Fetch: fetch}
	p, kr, err := pin(ctx, src, in.Keys)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	rep.Keys = kr
	latest, err := src.Checkpoint(ctx)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	var hist struct {
		Checkpoints []struct {
			Note     []byte    `json:"note"`
			SignedAt time.Time `json:"signed_at"`
			Proof    [][]byte  `json:"consistency_proof"`
		} `json:"checkpoints"`
	}
	if err := src.getJSON(ctx, "/v1/log/checkpoints", url.Values{"max_count": {"100"}}, &hist); err != nil {
		rep.Error = err.Error()
		return rep
	}
	var history []audit.SignedCheckpoint
	for i, h := range hist.Checkpoints {
		s := audit.SignedCheckpoint{Note: h.Note, SignedAt: h.SignedAt}
		if i > 0 {
			s.Prev, s.Proof = hist.Checkpoints[i-1].Note, h.Proof
			if s.Proof == nil {
				s.Proof = [][]byte{}
			}
		}
		history = append(history, s)
	}
	rep.SignedHistory = len(history)
	seen := make([]audit.SeenCheckpoint, len(in.Seen))
	for i, s := range in.Seen {
		seen[i] = audit.SeenCheckpoint{Note: s.Note, Time: s.Time}
	}
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	sr, err := audit.CheckSeries(ctx, src, p.Keys, latest, history, seen, now)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	rep.Findings = append(rep.Findings, sr.Findings...)
	rep.Findings = append(rep.Findings, kr.policyChanged()...)
	for _, f := range rep.Findings {
		rep.Problems = append(rep.Problems, f.Message)
	}
	if !sr.Latest.Hash.IsZero() {
		rep.Latest, rep.LatestNote = checkpointOf(sr.Latest), latest
	}
	if sr.Growth != nil {
		rep.Log = growthOf(sr.Growth, sr.Seen, sr.Latest.Size)
	}
	for _, c := range sr.Series {
		v := Verified
		if !c.OK {
			v = Failed
		}
		rep.Checkpoints = append(rep.Checkpoints, CheckpointReport{Checkpoint: *checkpointOf(c.Checkpoint), Time: c.Time, Signed: c.Signed, Verdict: v})
	}
	rep.OK = len(rep.Findings) == 0
	if rep.OK {
		for _, s := range sr.Saved {
			rep.Seen = append(rep.Seen, SeenCheckpoint{Note: s.Note, Time: s.Time})
		}
		if kr.pinNow(p) {
			rep.Keys.Pin = &p.PublicKeys
		}
	}
	return rep
}
