// Package audittest holds the golden corpus of histories that every face
// of Vigie's verifier must judge alike: package ledger/audit (Go), the
// command `vigie verify`, and the WebAssembly build the portal runs
// (package ledger/verify/report through cmd/verify-wasm). Each case is a
// log and a patient's history as the API serves them, the state a reader
// saved before, and the kinds of findings a verifier must report.
//
// The cases live in testdata/corpus, one JSON file each, written by
// [Cases] with fixed keys (`go test ./ledger/audit/audittest -update`
// rewrites them; a test checks they are what Cases makes). To add a case,
// add an entry to the table in cases.go.
package audittest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// A Case is a log, a patient's history as the API serves it, and what a
// verifier must find.
type Case struct {
	Name  string `json:"-"`
	About string `json:"about"`
	// Want are the kinds of the findings, sorted; empty for a valid case.
	Want []audit.Kind `json:"want"`
	// Keys are the log's keys (GET /v1/log/key), pinned by the reader.
	Keys audit.PublicKeys `json:"keys"`
	// Served are the keys the server serves now, if not Keys: the log's
	// key changed since the reader pinned Keys.
	Served *audit.PublicKeys `json:"served,omitempty"`
	// Transitions are the log's transition checkpoints (GET
	// /checkpoint/transitions), oldest first.
	Transitions [][]byte `json:"transitions,omitempty"`
	// Leaves are the log's leaf values, in order.
	Leaves [][]byte `json:"leaves"`
	// Latest is the latest signed checkpoint (GET /checkpoint).
	Latest []byte `json:"latest"`
	// Listing is the patient's history (GET /v1/me/accesses, one page),
	// unless Error says how the server refuses it.
	Listing *Listing  `json:"listing,omitempty"`
	Error   *APIError `json:"error,omitempty"`
	// State is what an earlier verification saved, if any.
	State *State `json:"state,omitempty"`
	// RefuseProofs, if set, is how the server answers every consistency
	// proof asked.
	RefuseProofs *APIError `json:"refuse_proofs,omitempty"`
}

// Listing is a page of history as the API's JSON has it
// (vigie.v1.ListAccessesResponse).
type Listing struct {
	Events     []Event `json:"events"`
	Checkpoint []byte  `json:"checkpoint,omitempty"`
}

// Event is an event as the API's JSON has it (vigie.v1.LedgerEvent).
type Event struct {
	Sequence       string   `json:"sequence"`
	LeafIndex      string   `json:"leaf_index"`
	Commitment     string   `json:"commitment"`
	Erased         bool     `json:"erased,omitempty"`
	Body           []byte   `json:"body,omitempty"`
	Salt           []byte   `json:"salt,omitempty"`
	InclusionProof [][]byte `json:"inclusion_proof,omitempty"`
	Receipt        []byte   `json:"receipt,omitempty"`
	Kind           string   `json:"kind,omitempty"`
	ActorRPPS      string   `json:"actor_rpps,omitempty"`
	Organization   string   `json:"organization,omitempty"`
}

// APIError is an error answer of the API: its HTTP status and its
// google.rpc.Status as JSON.
type APIError struct {
	HTTPStatus int             `json:"http_status"`
	Status     json.RawMessage `json:"status"`
}

// State is what an earlier verification saved: its newest checkpoint and
// the chain heads it saw (by pseudonym, hex).
type State struct {
	Checkpoint []byte                     `json:"checkpoint"`
	Chains     map[string]audit.ChainHead `json:"chains,omitempty"`
}

// Dir is the corpus's directory, relative to this package.
const Dir = "testdata/corpus"

// Write writes the cases to dir, one file each (name.json).
func Write(dir string, cases []Case) error {
	for _, c := range cases {
		b, err := c.Marshal()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, c.Name+".json"), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Marshal returns the case's file.
func (c *Case) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("case %s: %w", c.Name, err)
	}
	return append(b, '\n'), nil
}

// Load reads the corpus in dir, by name.
func Load(dir string) ([]Case, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no case in %s", dir)
	}
	slices.Sort(files)
	var out []Case
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var c Case
		if err := json.Unmarshal(b, &c); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		c.Name = strings.TrimSuffix(filepath.Base(f), ".json")
		out = append(out, c)
	}
	return out, nil
}

// LoadCorpus reads the committed corpus, from a test of any package of
// this module (it finds the module's root from the working directory).
func LoadCorpus() ([]Case, error) {
	dir, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return Load(filepath.Join(dir, "ledger", "audit", "audittest", Dir))
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil, errors.New("corpus: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Kinds returns the sorted kinds of findings: what the faces compare.
func Kinds(fs []audit.Finding) []audit.Kind {
	out := []audit.Kind{}
	for _, f := range fs {
		out = append(out, f.Kind)
	}
	slices.Sort(out)
	return out
}

// tree is the case's log, for proofs.
func (c *Case) tree() (*hashes, error) {
	h := &hashes{}
	for i, v := range c.Leaves {
		hs, err := tlog.StoredHashes(int64(i), v, h)
		if err != nil {
			return nil, err
		}
		h.stored = append(h.stored, hs...)
	}
	return h, nil
}

type hashes struct{ stored []tlog.Hash }

func (h *hashes) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(h.stored)) {
			return nil, errors.New("hash not stored")
		}
		out[i] = h.stored[x]
	}
	return out, nil
}

func toBytes(p []tlog.Hash) [][]byte {
	out := make([][]byte, len(p))
	for i, h := range p {
		out[i] = slices.Clone(h[:])
	}
	return out
}

func (c *Case) consistency(first, second uint64) ([][]byte, error) {
	t, err := c.tree()
	if err != nil {
		return nil, err
	}
	if first < 1 || first > second || second > uint64(len(c.Leaves)) {
		return nil, fmt.Errorf("no consistency proof from %d to %d", first, second)
	}
	p, err := tlog.ProveTree(int64(second), int64(first), t)
	return toBytes(p), err
}

func (c *Case) inclusion(index, size uint64) ([][]byte, error) {
	t, err := c.tree()
	if err != nil {
		return nil, err
	}
	if index >= size || size > uint64(len(c.Leaves)) {
		return nil, fmt.Errorf("no inclusion proof of %d in %d", index, size)
	}
	p, err := tlog.ProveRecord(int64(size), int64(index), t)
	return toBytes(p), err
}

// Source returns the case as package ledger/audit reads a server, in Go
// (no HTTP, no JSON).
func (c *Case) Source() audit.HistorySource { return source{c} }

type source struct{ c *Case }

func (s source) Checkpoint(context.Context) ([]byte, error) { return s.c.Latest, nil }
func (s source) ConsistencyProof(_ context.Context, first, second uint64) ([][]byte, error) {
	if e := s.c.RefuseProofs; e != nil {
		if reason, _ := e.reason(); reason == "BEYOND_CHECKPOINT" {
			return nil, fmt.Errorf("HTTP %d: %w", e.HTTPStatus, audit.ErrBeyondCheckpoint)
		}
		return nil, fmt.Errorf("HTTP %d", e.HTTPStatus)
	}
	return s.c.consistency(first, second)
}

// reason returns the reason and metadata of the error's ErrorInfo.
func (e *APIError) reason() (string, map[string]string) {
	var st struct {
		Details []struct {
			Reason   string            `json:"reason"`
			Metadata map[string]string `json:"metadata"`
		} `json:"details"`
	}
	if json.Unmarshal(e.Status, &st) != nil || len(st.Details) == 0 {
		return "", nil
	}
	return st.Details[0].Reason, st.Details[0].Metadata
}

// message returns the error's message.
func (e *APIError) message() string {
	var st struct {
		Message string `json:"message"`
	}
	json.Unmarshal(e.Status, &st)
	return st.Message
}
func (s source) InclusionProof(_ context.Context, index, size uint64) ([][]byte, error) {
	return s.c.inclusion(index, size)
}
func (s source) Leaves(_ context.Context, start, end uint64) ([][]byte, error) {
	end = min(end, uint64(len(s.c.Leaves)))
	if start >= end {
		return nil, nil
	}
	return s.c.Leaves[start:end], nil
}

func (s source) HistoryPage(_ context.Context, token string) (*audit.HistoryPage, error) {
	if e := s.c.Error; e != nil {
		reason, md := e.reason()
		if reason != "EVENT_UNREADABLE" {
			return nil, fmt.Errorf("HTTP %d", e.HTTPStatus)
		}
		ue := &audit.UnreadableError{Detail: e.message()}
		ue.Seq, _ = strconv.ParseUint(md["seq"], 10, 64)
		if i, err := strconv.ParseUint(md["leaf_index"], 10, 64); err == nil {
			ue.Index = &i
		}
		return nil, ue
	}
	p := &audit.HistoryPage{Checkpoint: s.c.Listing.Checkpoint}
	for _, e := range s.c.Listing.Events {
		seq, err1 := strconv.ParseUint(e.Sequence, 10, 64)
		index, err2 := strconv.ParseUint(e.LeafIndex, 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		p.Events = append(p.Events, audit.Envelope{Seq: seq, Index: index, Commitment: e.Commitment, Erased: e.Erased,
			Body: e.Body, Salt: e.Salt, Proof: e.InclusionProof, Receipt: e.Receipt,
			Kind: e.Kind, Actor: e.ActorRPPS, Organization: e.Organization})
	}
	return p, nil
}

// Saved returns the state an earlier verification saved (nil, nil for
// none), as package ledger/audit takes it.
func (c *Case) Saved() *audit.SavedState {
	s := &audit.SavedState{Chains: map[event.Hash]audit.ChainHead{}}
	if c.State == nil {
		return s
	}
	s.Checkpoint = c.State.Checkpoint
	for p, h := range c.State.Chains {
		if ps, err := event.ParseHash(p); err == nil {
			s.Chains[ps] = h
		}
	}
	return s
}

// Handler serves the case as Vigie's HTTP API does, for the routes a
// verifier reads: the keys, the latest checkpoint, the history, and
// consistency and inclusion proofs computed from the leaves.
func (c *Case) Handler() http.Handler {
	mux := http.NewServeMux()
	writeJSON := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	fail := func(w http.ResponseWriter, code int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]any{"code": 3, "message": msg})
	}
	uint := func(r *http.Request, name string) uint64 {
		n, _ := strconv.ParseUint(r.URL.Query().Get(name), 10, 64)
		return n
	}
	mux.HandleFunc("GET /v1/log/key", func(w http.ResponseWriter, r *http.Request) {
		k := c.Keys
		if c.Served != nil {
			k = *c.Served
		}
		origin := strings.SplitN(k.CheckpointKey, "+", 2)[0]
		writeJSON(w, map[string]string{"origin": origin, "checkpoint_key": k.CheckpointKey, "receipt_key": k.ReceiptKey})
	})
	mux.HandleFunc("GET /checkpoint/transitions", func(w http.ResponseWriter, r *http.Request) {
		notes := make([]string, len(c.Transitions))
		for i, n := range c.Transitions {
			notes[i] = string(n)
		}
		writeJSON(w, map[string][]string{"transitions": notes})
	})
	mux.HandleFunc("GET /checkpoint", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(c.Latest)
	})
	mux.HandleFunc("GET /v1/log/checkpoints", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"checkpoints": []map[string]any{{"note": c.Latest, "signed_at": "2026-11-28T09:00:00Z"}}})
	})
	mux.HandleFunc("GET /v1/me/accesses", func(w http.ResponseWriter, r *http.Request) {
		if e := c.Error; e != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(e.HTTPStatus)
			w.Write(e.Status)
			return
		}
		writeJSON(w, c.Listing)
	})
	mux.HandleFunc("GET /v1/log/consistency", func(w http.ResponseWriter, r *http.Request) {
		if e := c.RefuseProofs; e != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(e.HTTPStatus)
			w.Write(e.Status)
			return
		}
		first, second := uint(r, "first"), uint(r, "second")
		p, err := c.consistency(first, second)
		if err != nil {
			fail(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, map[string]any{"first": strconv.FormatUint(first, 10), "second": strconv.FormatUint(second, 10), "hashes": p})
	})
	mux.HandleFunc("GET /v1/log/inclusion", func(w http.ResponseWriter, r *http.Request) {
		index, size := uint(r, "leaf_index"), uint(r, "tree_size")
		p, err := c.inclusion(index, size)
		if err != nil {
			fail(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, map[string]any{"leaf_index": strconv.FormatUint(index, 10), "tree_size": strconv.FormatUint(size, 10), "hashes": p})
	})
	return mux
}

// commitmentOf is the commitment of a verified event body and salt.
func commitmentOf(salt [verify.SaltSize]byte, body []byte) event.Hash {
	return verify.Commitment(salt, body)
}
