// Package witness has the log's checkpoints cosigned by the witnesses of
// its policy and serves them cosigned.
//
// The [Submitter] is a leased duty (lease [Lease], one node at a time):
// for each new checkpoint the ledger stored, it sends each witness of the
// policy a [tlog-witness] add-checkpoint request (the size the witness
// knows, the consistency proof from it, the signed note), and stores the
// [tlog-cosignature] it answers under the lease's epoch. Each witness has
// its own loop: a slow or dead witness holds up neither the others nor
// recording, which never waits for a witness. Each answer has one action:
//
//	200           the cosignature is checked and stored
//	409           the witness knows another size (its body): resend from it
//	403, 404      configuration: the witness does not know the log or its key (alert)
//	400           Vigie's request was refused (alert)
//	422           the witness holds a tree the checkpoint does not extend: a
//	              fork, or a witness gone wrong; request and answer kept as
//	              evidence (witness_evidence), alert
//	5xx, timeouts bounded retries with exponential backoff, then the next checkpoint
//
// [Checkpoints] serves the newest checkpoint whose stored cosignatures
// meet the policy's quorum, with them appended (GET /checkpoint).
//
// The policy's format and the cosignature checks are the verifier's
// (ledger/verify: [verify.WitnessPolicy]), so that the log and its readers
// read one file alike.
//
// [tlog-witness]: https://c2sp.org/tlog-witness
// [tlog-cosignature]: https://c2sp.org/tlog-cosignature
package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// Lease is the submitter's lease.
const Lease = "witness"

// noteVerifier is the log's checkpoint key.
type noteVerifier = note.Verifier

// Log is what the submitter reads of the ledger. *ledger.Ledger
// implements it.
type Log interface {
	// LatestCheckpoint returns the latest signed checkpoint note and its
	// size, or an error wrapping ledger.ErrNotFound before the first.
	LatestCheckpoint(ctx context.Context) ([]byte, uint64, error)
	// ConsistencyProof returns the proof from size first to second.
	ConsistencyProof(ctx context.Context, first, second uint64) ([][]byte, error)
}

var _ Log = (*ledger.Ledger)(nil)

// Config configures a [Submitter].
type Config struct {
	// Policy is the witness policy; each of its witnesses needs a URL.
	// Required.
	Policy *verify.WitnessPolicy
	// Verifier is the log's checkpoint key, which the policy's log line
	// must be (verify.WitnessPolicy.CheckLogKey is checked by the
	// caller, which has the key's text). Required.
	Verifier note.Verifier
	// Log is the ledger. Required.
	Log Log
	// Store is the ledger's store (on Vigie's database, with Migrations):
	// leases, cosignatures, evidence. Required.
	Store ledger.Store
	// Owner names this process for the lease (ledger.NewOwner). Required.
	Owner string
	// LeaseTTL is the lease's time to live. Default ledger.DefaultLeaseTTL.
	LeaseTTL time.Duration
	// Poll is how often the latest checkpoint is read. Default 1s.
	Poll time.Duration
	// Timeout bounds one request to a witness. Default 10s.
	Timeout time.Duration
	// Retries is how many times a request that timed out or met a 5xx is
	// sent again for one checkpoint, waiting Backoff, then twice as long
	// each time. Defaults 3 and 500ms.
	Retries int
	Backoff time.Duration
	// HTTPClient sends the requests. Default: a client without timeout
	// of its own (Timeout bounds each request).
	HTTPClient *http.Client
	// Logger receives the alerts and errors. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *Config) validate() error {
	switch {
	case c.Policy == nil:
		return errors.New("witness: no policy")
	case c.Verifier == nil || c.Log == nil || c.Store == nil || c.Owner == "":
		return errors.New("witness: Verifier, Log, Store and Owner are required")
	}
	for i, w := range c.Policy.Witnesses {
		if w.URL == "" {
			return fmt.Errorf("witness policy: witness %d has no URL to submit to", i+1)
		}
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = ledger.DefaultLeaseTTL
	}
	if c.Poll <= 0 {
		c.Poll = time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Retries <= 0 {
		c.Retries = 3
	}
	if c.Backoff <= 0 {
		c.Backoff = 500 * time.Millisecond
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Outcome is the result of one submission, a label of the metrics.
type Outcome string

// The outcomes of a submission.
const (
	OutcomeCosigned    Outcome = "cosigned"    // 200, the cosignature stored
	OutcomeConflict    Outcome = "conflict"    // 409, followed (counted, not final)
	OutcomeConfig      Outcome = "config"      // 403, 404, 400, an unresolved 409: alert
	OutcomeEvidence    Outcome = "evidence"    // 422: kept as evidence, alert
	OutcomeUnavailable Outcome = "unavailable" // 5xx, timeouts, after the retries
	OutcomeInvalid     Outcome = "invalid"     // a 200 without a valid cosignature
	OutcomeLost        Outcome = "lease-lost"  // the lease was lost before storing
)

// A Submitter gathers the witnesses' cosignatures (see the package
// documentation). Start runs it; Stop ends it.
type Submitter struct {
	cfg    Config
	holder *ledger.LeaseHolder

	mu     sync.Mutex
	stats  map[string]*witnessStats // by witness name
	cancel context.CancelFunc
	done   sync.WaitGroup
}

type witnessStats struct {
	known    uint64 // the size the witness is believed to know
	cosigned uint64 // the largest size it cosigned
	outcomes map[Outcome]uint64
}

// New returns a submitter; it does nothing until Start.
func New(cfg Config) (*Submitter, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Submitter{cfg: cfg, stats: make(map[string]*witnessStats)}
	s.holder = ledger.NewLeaseHolder(cfg.Store, Lease, cfg.Owner, cfg.LeaseTTL, cfg.Logger, nil)
	for _, w := range cfg.Policy.Witnesses {
		s.stats[w.Name] = &witnessStats{outcomes: make(map[Outcome]uint64)}
	}
	return s, nil
}

// Start takes the lease when it can and keeps submitting until Stop.
func (s *Submitter) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		s.holder.Run(ctx)
	}()
	for _, w := range s.cfg.Policy.Witnesses {
		s.done.Add(1)
		go func() {
			defer s.done.Done()
			s.run(ctx, w)
		}()
	}
}

// Stop ends the submission and releases the lease.
func (s *Submitter) Stop(ctx context.Context) error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	s.done.Wait()
	return s.holder.Release(ctx)
}

// run is witness w's loop: while the lease is held, each checkpoint newer
// than the one w last cosigned is submitted.
func (s *Submitter) run(ctx context.Context, w verify.PolicyWitness) {
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for {
		if epoch, ok := s.holder.Held(); ok {
			n, size, err := s.cfg.Log.LatestCheckpoint(ctx)
			switch {
			case errors.Is(err, ledger.ErrNotFound):
			case err != nil:
				if ctx.Err() == nil {
					s.cfg.Logger.Warn("witness: latest checkpoint", "err", err)
				}
			case size > s.cosigned(w.Name):
				s.submit(ctx, w, epoch, n, size)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Submitter) cosigned(name string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats[name].cosigned
}

func (s *Submitter) known(name string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats[name].known
}

func (s *Submitter) record(name string, o Outcome, known, cosigned uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats[name]
	st.outcomes[o]++
	if known > 0 {
		st.known = known
	}
	st.cosigned = max(st.cosigned, cosigned)
}

// submit submits checkpoint note n of size to witness w under the lease's
// term epoch, follows a 409 once, retries what may pass later, and acts
// on the answer (see the package documentation). It returns the outcome.
func (s *Submitter) submit(ctx context.Context, w verify.PolicyWitness, epoch uint64, n []byte, size uint64) Outcome {
	old := s.known(w.Name)
	if old > size {
		old = 0 // a new term, or a witness that spoke of a larger tree: ask it again
	}
	conflicts := 0
	for attempt := 0; ; {
		proof, err := s.cfg.Log.ConsistencyProof(ctx, old, size)
		if err != nil {
			s.cfg.Logger.Warn("witness: consistency proof", "witness", w.Name, "from", old, "to", size, "err", err)
			s.record(w.Name, OutcomeUnavailable, 0, 0)
			return OutcomeUnavailable
		}
		body, err := FormatAddCheckpoint(old, proof, n)
		if err != nil {
			s.record(w.Name, OutcomeInvalid, 0, 0)
			return OutcomeInvalid
		}
		status, answer, err := s.post(ctx, w, body)
		switch {
		case err != nil || status >= 500 || status == http.StatusTooManyRequests:
			if ctx.Err() != nil {
				return OutcomeUnavailable
			}
			attempt++
			if attempt > s.cfg.Retries {
				s.cfg.Logger.Warn("witness: unavailable, checkpoint left for the next", "witness", w.Name, "size", size, "status", status, "err", err)
				s.record(w.Name, OutcomeUnavailable, 0, 0)
				return OutcomeUnavailable
			}
			wait(ctx, s.cfg.Backoff<<(attempt-1))
			continue
		case status == http.StatusOK:
			line, err := checkCosignatures(s.cfg.Policy, w, s.cfg.Verifier, n, answer)
			if err != nil {
				s.cfg.Logger.Error("witness: answer without a valid cosignature", "witness", w.Name, "size", size, "err", err)
				s.record(w.Name, OutcomeInvalid, 0, 0)
				return OutcomeInvalid
			}
			err = s.write(ctx, epoch, func(ctx context.Context, tx ledger.StoreTx) error {
				return addCosignature(ctx, tx.SQL(), Cosignature{Size: size, Witness: w.Name, Line: line}, s.cfg.Now())
			})
			if err != nil {
				return s.failedWrite(w, err)
			}
			s.record(w.Name, OutcomeCosigned, size, size)
			return OutcomeCosigned
		case status == http.StatusConflict:
			known, err := parseKnownSize(answer)
			conflicts++
			if err != nil || conflicts > 1 || known > size {
				// A witness that knows a larger tree than the latest
				// checkpoint has seen another log (or a restored one):
				// the next checkpoint asks again from 0.
				s.cfg.Logger.Error("witness: conflict not resolved", "witness", w.Name, "size", size, "known", known, "err", err)
				s.record(w.Name, OutcomeConfig, 0, 0)
				return OutcomeConfig
			}
			old = known
			s.record(w.Name, OutcomeConflict, known, 0)
			continue
		case status == http.StatusUnprocessableEntity:
			e := Evidence{Witness: w.Name, Size: size, Status: status, OldSize: old, Request: body, Answer: answer, Nanos: s.cfg.Now().UnixNano()}
			err := s.write(ctx, epoch, func(ctx context.Context, tx ledger.StoreTx) error {
				return addEvidence(ctx, tx.SQL(), e)
			})
			s.cfg.Logger.Error("witness: SECURITY: the witness holds a tree this checkpoint does not extend (kept as evidence of a fork)",
				"witness", w.Name, "size", size, "old", old, "stored", err == nil)
			if err != nil {
				return s.failedWrite(w, err)
			}
			s.record(w.Name, OutcomeEvidence, 0, 0)
			return OutcomeEvidence
		default: // 403, 404, 400 and the rest: configuration
			s.cfg.Logger.Error("witness: refused the checkpoint (configuration: does the witness know the log's origin and key?)",
				"witness", w.Name, "size", size, "status", status)
			s.record(w.Name, OutcomeConfig, 0, 0)
			return OutcomeConfig
		}
	}
}

// failedWrite records a write that failed: the lease lost, or the
// database.
func (s *Submitter) failedWrite(w verify.PolicyWitness, err error) Outcome {
	if errors.Is(err, ledger.ErrLeaseLost) {
		s.record(w.Name, OutcomeLost, 0, 0)
		return OutcomeLost
	}
	s.cfg.Logger.Warn("witness: store", "witness", w.Name, "err", err)
	s.record(w.Name, OutcomeUnavailable, 0, 0)
	return OutcomeUnavailable
}

// write runs f in a transaction that first checks the lease's term epoch.
func (s *Submitter) write(ctx context.Context, epoch uint64, f func(ctx context.Context, tx ledger.StoreTx) error) error {
	err := s.cfg.Store.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error {
		if err := s.holder.Check(ctx, tx, epoch); err != nil {
			return err
		}
		return f(ctx, tx)
	})
	if errors.Is(err, ledger.ErrLeaseLost) {
		s.holder.Lost(epoch)
	}
	return err
}

// maxAnswer bounds what is read of a witness's answer.
const maxAnswer = 4 << 10

// post sends an add-checkpoint request to w and returns the status and
// the answer's first maxAnswer bytes.
func (s *Submitter) post(ctx context.Context, w verify.PolicyWitness, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(w.URL, "/")+"/add-checkpoint", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, answer, nil
}

func wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// WitnessStats are a witness's counters, for metrics and tests.
type WitnessStats struct {
	Known, Cosigned uint64
	Outcomes        map[Outcome]uint64
}

// Stats returns each witness's counters.
func (s *Submitter) Stats() map[string]WitnessStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]WitnessStats, len(s.stats))
	for name, st := range s.stats {
		o := make(map[Outcome]uint64, len(st.outcomes))
		for k, v := range st.outcomes {
			o[k] = v
		}
		out[name] = WitnessStats{Known: st.known, Cosigned: st.cosigned, Outcomes: o}
	}
	return out
}
