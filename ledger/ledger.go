// Package ledger records every decision about a patient's health data in
// an append-only, verifiable log, without putting health data on the log.
//
// An event (an access decision, a consent change, a read of the ledger...)
// has a body: versioned JSON (package ledger/event) naming the patient by
// pseudonym (a keyed HMAC of the INS, never the INS), with the patient's
// sequence number and the commitment of the patient's previous event (a
// per-patient hash chain). Three hashes, defined in package ledger/verify,
// turn it into a leaf: the commitment, SHA-256 of a domain separator, a
// fresh 32-byte salt and the body's exact bytes; the leaf value, 0x01 and
// the commitment; and the RFC 6962 Merkle leaf hash of the leaf value. Only
// leaf values reach the log; bodies and salts are stored encrypted with the
// patient's data key, which is wrapped by a key-encryption key. Destroying a
// patient's data key (Erase) makes their bodies unreadable while every
// proof stays valid.
//
// Record returns once the event is durable in the Store, with a receipt: a
// signed promise that its commitment will be in the log at its leaf index
// within the maximum merge delay. Leaf indices are assigned, gap-free, in
// the transaction that makes the event durable. A sender sends the outbox
// to the Log (a Trillian PREORDERED_LOG tree) in batches; a checkpointer
// signs a C2SP checkpoint whenever the tree grew, after checking that the
// tree is exactly the ledger's leaves and consistent with the last
// checkpoint. Both run in the background between Start and Close.
//
// [tlog-checkpoint]: https://c2sp.org/tlog-checkpoint
package ledger

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/sqldb"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// Config configures a Ledger. Fields without a default are required.
type Config struct {
	// Origin is the log's name in checkpoints and receipts, conventionally
	// "<name>/vigie/<tree id>". It is saved in the store at first start
	// and must never change.
	Origin string
	// CheckpointSigner signs checkpoints; its name must be Origin.
	CheckpointSigner note.Signer
	// ReceiptSigner signs receipts; its name must be
	// verify.ReceiptKeyName(Origin), which differs from Origin, so that a
	// receipt is never taken for a checkpoint.
	ReceiptSigner note.Signer
	// CheckpointVerifier and ReceiptVerifier are the signers' verifier
	// keys in note's text form. They are saved in the store at first
	// start; a ledger whose keys differ from the saved ones is refused.
	CheckpointVerifier, ReceiptVerifier string
	// CheckpointKeyFile and ReceiptKeyFile name where the signers come
	// from (a file, a key's label), for the error that refuses them.
	// Default "the checkpoint key" and "the receipt key".
	CheckpointKeyFile, ReceiptKeyFile string
	// KEK is the key-encryption key (KeySize bytes) wrapping patients'
	// data keys, unless KeyWrapper is set.
	KEK []byte
	// KeyWrapper, if not nil, wraps patients' data keys instead of KEK (a
	// key-encryption key in a hardware security module); KEK must then be
	// nil. A NamedKEK's KEK is checked at every start by a probe saved
	// under its name at its first use (ledger/keys/hsm names its KEKs by
	// label); other wrappers are their own to check.
	KeyWrapper KeyWrapper
	// KEKName names where the key-encryption key comes from (a file, a
	// key's label), for the error that refuses it. Default "the
	// key-encryption key (keys/kek or --kek-file)".
	KEKName string
	// Pseudonyms derives patients' pseudonyms.
	Pseudonyms *Pseudonymizer
	// MergeDelay is the promise a receipt makes: the event is in a signed
	// checkpoint within this delay. Default 10s.
	MergeDelay time.Duration
	// CheckpointInterval is the least time between two checkpoints.
	// Default 1s.
	CheckpointInterval time.Duration
	// SendBatch is the most leaves sent to the log in one call. Default
	// 1000.
	SendBatch int
	// SendLinger is how long the sender waits after sending less than a
	// full batch, so that the next send carries more. Default 50ms; it
	// adds at most that to the time from Record to a checkpoint.
	SendLinger time.Duration
	// SendStallAfter is how long sending to the log may fail without a
	// break, with events waiting in the outbox, before Ready reports
	// ErrSendStalled: the log is unreachable or refuses the leaves, and
	// receipts are about to be broken. Default 30s.
	SendStallAfter time.Duration
	// RecordFailures and RecordFailFor make Ready report ErrRecordFailing
	// once recording has failed on storage errors RecordFailures times in
	// a row (transactions, not calls) over at least RecordFailFor, with
	// no success since: the node can answer no Check. A caller's bad
	// entry, a consent-version retry and a compare-and-swap lost to
	// another writer are no storage errors. Ready is nil again as soon as
	// a Record commits or, once no failure was seen for RecordFailFor, a
	// probe write that Ready runs itself (a node out of its load
	// balancer's rotation gets no Record to tell). Defaults 3 and 5s.
	RecordFailures int
	RecordFailFor  time.Duration
	// RequestIDRetention is how long an idempotency key's first answer is
	// replayed: a retry within it gets the first event back; after it,
	// Record fails with ErrRequestExpired (never a second event under
	// the same key). The key's hash itself is kept with the event.
	// Default 24h.
	RequestIDRetention time.Duration
	// MaxGroup is the most Record calls committed in one transaction.
	// Default 512.
	MaxGroup int
	// SoleWriter says that this process is the store's only writer (the
	// embedded SQLite files, locked by the process): patients' chain heads
	// and data keys are then kept in memory, at most HeadCache of them,
	// and a recording transaction reads only the patient's row. Where
	// several nodes write one database, leave it false: each transaction
	// reads the heads from the store. Default false.
	SoleWriter bool
	// HeadCache is the most patients whose chain heads SoleWriter keeps
	// (about 1 KiB each). Default 200,000.
	HeadCache int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Rand is the source of salts, nonces, keys and event ids. Default
	// crypto/rand.
	Rand io.Reader
	// Logger receives operational logs (never an INS or a body). Default
	// slog.Default().
	Logger *slog.Logger
	// EraseAlso, if not nil, returns what else to delete when a patient is
	// erased (the consent store's rows), run in the erasure's transaction.
	EraseAlso func(pseudonym event.Hash) func(ctx context.Context, tx sqldb.Tx) error
	// Owner names this process as the holder of the ledger's leases
	// (LeaseSender, LeaseCheckpointer, LeaseErasures): unique per process,
	// never anything from a token or a patient. Default NewOwner().
	Owner string
	// LeaseTTL is how long a lease lasts without renewal; the holder
	// renews it every third of it, the others try to take it as often. A
	// holder that dies is replaced within LeaseTTL and a third. Default
	// DefaultLeaseTTL (3s).
	LeaseTTL time.Duration
	// TracerProvider receives a span per Record or RecordAll call, child
	// of the caller's, with counts and leaf indices only: never an INS,
	// a pseudonym or a body. Default: OpenTelemetry's global provider,
	// which does nothing unless the command sets one.
	TracerProvider trace.TracerProvider
}

func (c *Config) validate() error {
	switch {
	case c.Origin == "":
		return errors.New("ledger: Origin is required")
	case c.CheckpointSigner == nil || c.ReceiptSigner == nil:
		return errors.New("ledger: CheckpointSigner and ReceiptSigner are required")
	case c.CheckpointSigner.Name() != c.Origin:
		return fmt.Errorf("ledger: the checkpoint key is named %q, want the origin %q", c.CheckpointSigner.Name(), c.Origin)
	case c.ReceiptSigner.Name() != verify.ReceiptKeyName(c.Origin):
		return fmt.Errorf("ledger: the receipt key is named %q, want %q", c.ReceiptSigner.Name(), verify.ReceiptKeyName(c.Origin))
	case c.Pseudonyms == nil:
		return errors.New("ledger: Pseudonyms is required")
	}
	for _, k := range []struct {
		what     string
		signer   note.Signer
		verifier string
	}{{"CheckpointVerifier", c.CheckpointSigner, c.CheckpointVerifier}, {"ReceiptVerifier", c.ReceiptSigner, c.ReceiptVerifier}} {
		if v, err := note.NewVerifier(k.verifier); err != nil || v.Name() != k.signer.Name() || v.KeyHash() != k.signer.KeyHash() {
			return fmt.Errorf("ledger: %s is not the verifier key of its signer", k.what)
		}
	}
	if c.KeyWrapper != nil && c.KEK != nil {
		return errors.New("ledger: KEK and KeyWrapper are both set: one wraps the data keys")
	}
	if c.KEKName == "" {
		c.KEKName = "the key-encryption key (keys/kek or --kek-file)"
	}
	if c.CheckpointKeyFile == "" {
		c.CheckpointKeyFile = "the checkpoint key"
	}
	if c.ReceiptKeyFile == "" {
		c.ReceiptKeyFile = "the receipt key"
	}
	if c.MergeDelay <= 0 {
		c.MergeDelay = 10 * time.Second
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = time.Second
	}
	if c.SendBatch <= 0 {
		c.SendBatch = 1000
	}
	if c.SendLinger <= 0 {
		c.SendLinger = 50 * time.Millisecond
	}
	if c.SendStallAfter <= 0 {
		c.SendStallAfter = 30 * time.Second
	}
	if c.RecordFailures <= 0 {
		c.RecordFailures = 3
	}
	if c.RecordFailFor <= 0 {
		c.RecordFailFor = 5 * time.Second
	}
	if c.RequestIDRetention <= 0 {
		c.RequestIDRetention = 24 * time.Hour
	}
	if c.MaxGroup <= 0 {
		c.MaxGroup = 512
	}
	if c.HeadCache <= 0 {
		c.HeadCache = 200_000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Owner == "" {
		c.Owner = NewOwner()
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	return nil
}

// Ledger records events and publishes them. It is safe for concurrent use.
type Ledger struct {
	cfg    Config
	store  Store
	log    Log
	keys   *keyring
	tracer trace.Tracer

	batch batcher
	// heads is nil unless Config.SoleWriter.
	heads *headCache

	// Background work, between Start and Close.
	wake chan struct{} // new events: the sender should look
	sent chan struct{} // leaves sent: the checkpointer should look
	// erasureWake asks the erasure loop to look now.
	erasureWake chan struct{}
	stop        context.CancelFunc
	wg          sync.WaitGroup
	// leases are the duties' (LeaseSender...), renewed between Start and
	// Close by their own goroutines, which outlive the duties' so that
	// Close drains under them.
	leases     map[string]*LeaseHolder
	stopLeases context.CancelFunc
	leaseWG    sync.WaitGroup
	health     health
	started    bool

	// lastSecurity is, by kind, the last security event stored (a hash of
	// its detail and evidence) and when: the same evidence found again at
	// every round is stored once an hour.
	securityMu   sync.Mutex
	lastSecurity map[string]storedSecurity

	// duties is read-locked by each round of the sender and the
	// checkpointer, and locked by Pause.
	duties sync.RWMutex
	// haltErr, once set by Halt, fails every Record.
	haltMu  sync.Mutex
	haltErr error
}

type storedSecurity struct {
	sum [32]byte
	at  time.Time
}

// New returns a ledger over store and log. It checks the configuration
// and, at first start, saves the origin in the store; afterwards the
// origin must be the same.
func New(ctx context.Context, cfg Config, store Store, log Log) (*Ledger, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	wrap := cfg.KeyWrapper
	if wrap == nil {
		var err error
		if wrap, err = NewKEKWrapper(cfg.KEK, cfg.Rand); err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
	}
	keys := newKeyring(wrap, cfg.Rand)
	if err := store.ReadWrite(ctx, func(ctx context.Context, tx StoreTx) error {
		return tx.SetMeta(ctx, "origin", []byte(cfg.Origin))
	}); err != nil {
		return nil, fmt.Errorf("ledger: origin: %w", err)
	}
	// The keys are those the database was written with: a missing key
	// file replaced by a new key (an unmounted volume) would make every
	// patient's data unreadable, or split every chain, and an erasure
	// would then wrap new keys under the wrong one. Each secret is checked
	// by a keyed hash of a label, saved at first start, which reveals
	// nothing of the key. The signing keys are checked by their verifier
	// keys (public): a node with other keys would sign checkpoints and
	// receipts that nobody can verify.
	for _, k := range []struct {
		name, what string
		key        []byte // a secret, saved as a keyed hash
		public     string // or a verifier key, saved as is
	}{
		{name: "kek-check", what: cfg.KEKName, key: cfg.KEK},
		{name: "pseudonym-key-check", what: "the pseudonym key (keys/pseudonym.key)", key: cfg.Pseudonyms.key},
		{name: "receipt-verifier", what: cfg.ReceiptKeyFile, public: cfg.ReceiptVerifier},
	} {
		if k.name == "kek-check" && cfg.KeyWrapper != nil {
			continue // a KeyWrapper's KEK: checked by the wrapper
		}
		value := []byte(k.public)
		if k.key != nil {
			m := hmac.New(sha256.New, k.key)
			m.Write([]byte("vigie/" + k.name + "/v1"))
			value = m.Sum(nil)
		}
		err := store.ReadWrite(ctx, func(ctx context.Context, tx StoreTx) error { return tx.SetMeta(ctx, k.name, value) })
		if err != nil {
			return nil, fmt.Errorf("ledger: %s is not the one this database was written with (or the database cannot be read): %w", k.what, err)
		}
	}
	// The checkpoint key may have changed by a transition checkpoint
	// (RotateCheckpointKey): it is the first one followed through them.
	if err := store.ReadWrite(ctx, func(ctx context.Context, tx StoreTx) error {
		return checkCheckpointKey(ctx, tx, cfg.CheckpointVerifier, cfg.CheckpointKeyFile)
	}); err != nil {
		return nil, fmt.Errorf("ledger: %s is not the one this database was written with (or the database cannot be read): %w", cfg.CheckpointKeyFile, err)
	}
	if n, ok := cfg.KeyWrapper.(NamedKEK); ok {
		if err := checkKEK(ctx, store, wrap, n.KEKLabel()); err != nil {
			return nil, fmt.Errorf("ledger: %s is not the one this database was written with (or the database cannot be read): %w", cfg.KEKName, err)
		}
	}
	l := &Ledger{
		cfg:         cfg,
		store:       store,
		log:         log,
		keys:        keys,
		tracer:      cfg.TracerProvider.Tracer("github.com/vigie-sante/vigie/ledger"),
		wake:        make(chan struct{}, 1),
		sent:        make(chan struct{}, 1),
		erasureWake: make(chan struct{}, 1),
	}
	l.batch.token = make(chan struct{}, 1)
	if cfg.SoleWriter {
		l.heads = newHeadCache(cfg.HeadCache)
	}
	l.leases = map[string]*LeaseHolder{
		LeaseSender:       NewLeaseHolder(store, LeaseSender, cfg.Owner, cfg.LeaseTTL, cfg.Logger, func() { notify(l.wake) }),
		LeaseCheckpointer: NewLeaseHolder(store, LeaseCheckpointer, cfg.Owner, cfg.LeaseTTL, cfg.Logger, func() { notify(l.sent) }),
		// Scheduled erasures keep their cadence: a new holder runs them
		// at its loop's next round, within a minute.
		LeaseErasures: NewLeaseHolder(store, LeaseErasures, cfg.Owner, cfg.LeaseTTL, cfg.Logger, nil),
	}
	return l, nil
}

// Origin returns the log's origin.
func (l *Ledger) Origin() string { return l.cfg.Origin }

// SavedOrigin returns the origin New saved in store at the first start,
// or ErrNotFound before it.
func SavedOrigin(ctx context.Context, store Store) (string, error) {
	var origin []byte
	err := store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
		var err error
		origin, err = tx.Meta(ctx, "origin")
		return err
	})
	return string(origin), err
}

// Pseudonym returns a patient's pseudonym.
func (l *Ledger) Pseudonym(id PatientID) event.Hash { return l.cfg.Pseudonyms.Pseudonym(id) }

// Start starts the background work: the sender, the erasures and the
// checkpointer, each acting only while this node holds its lease, and the
// leases' renewals. They stop when ctx is done or Close is called; a node
// passes a context that its shutdown signal does not cancel, so that
// Close drains the outbox first. A ctx cancelled without Close leaves the
// leases to expire (a node that died).
func (l *Ledger) Start(ctx context.Context) {
	leaseCtx, stopLeases := context.WithCancel(ctx)
	l.stopLeases = stopLeases
	for _, h := range l.leases {
		l.leaseWG.Add(1)
		go func() {
			defer l.leaseWG.Done()
			h.Run(leaseCtx)
		}()
	}
	ctx, l.stop = context.WithCancel(ctx)
	l.started = true
	l.wg.Add(3)
	go func() {
		defer l.wg.Done()
		l.sendLoop(ctx)
	}()
	go func() {
		defer l.wg.Done()
		l.erasureLoop(ctx)
	}()
	go func() {
		defer l.wg.Done()
		l.checkpointLoop(ctx)
	}()
}

// Close stops the background work, then, until ctx is done, drains what
// this node's leases allow: the outbox if it holds the sender's lease
// (what remains is sent by the next holder), a last checkpoint if it
// holds the checkpointer's and the tree grew. Last it releases its
// leases, so that another node takes them at once. Without Start, it only
// releases them.
func (l *Ledger) Close(ctx context.Context) error {
	var errs []error
	if l.started {
		l.started = false
		l.stop()
		l.wg.Wait()
		errs = append(errs, l.drain(ctx))
		l.stopLeases()
		l.leaseWG.Wait()
	}
	// A lease taken without Start (RunDueErasures) is released too.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, h := range l.leases {
		errs = append(errs, h.Release(rctx))
	}
	return errors.Join(errs...)
}

// notify wakes a background loop without blocking.
func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
