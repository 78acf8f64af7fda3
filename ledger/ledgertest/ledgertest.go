// Package ledgertest assembles a complete ledger for tests: Vigie's
// database (SQLite or PostgreSQL) with the ledger's tables, an in-process
// Trillian on SQLite or on Trillian's PostgreSQL storage, keys, and the
// ledger itself, as vigie serve assembles them. The same data directory
// and seed reopen the same ledger (crash tests restart it).
//
// It calls the pieces the binary's node is assembled from
// (cmd/vigie/internal/node): ledgersql.Open for the database, trillian.Open
// for Trillian, ledger.New; its keys are derived from a seed instead of
// the files of ledger/keys.
package ledgertest

import (
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"

	tpb "github.com/google/trillian"
	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/ledgersql"
	"github.com/vigie-sante/vigie/ledger/sqldb"
	"github.com/vigie-sante/vigie/ledger/sqldb/pgtest"
	vtrillian "github.com/vigie-sante/vigie/ledger/trillian"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// ApplicationID is the SQLite application_id of Vigie's database.
const ApplicationID = ledgersql.ApplicationID

// Options configure New. The zero value gives a SQLite ledger in a new
// temporary directory, started.
type Options struct {
	// PostgreSQL, if not empty, is the database URL for the ledger's
	// tables and Trillian's (pgtest.NewDatabase gives one).
	PostgreSQL string
	// Dir is the data directory for SQLite (default: t.TempDir()).
	Dir string
	// Seed makes the keys; the same seed gives the same keys. Default 1.
	Seed uint64
	// NoStart leaves the background work stopped.
	NoStart bool
	// NotSoleWriter makes a ledger on SQLite read every chain head from
	// the store, as where several nodes write (ledger.Config.SoleWriter
	// is otherwise set on SQLite, as a node sets it).
	NotSoleWriter bool
	// CheckpointInterval (default 50ms) and SequencerInterval (default
	// 20ms) are short for tests.
	CheckpointInterval, SequencerInterval time.Duration
	// MergeDelay of receipts (default 10s).
	MergeDelay time.Duration
	// Now is the ledger's clock.
	Now func() time.Time
	// Migrations are other tables of Vigie's database to create with the
	// ledger's (the consent store's).
	Migrations []sqldb.Migration
	// WrapStore and WrapLog put fakes with fault hooks around the real
	// store and log.
	WrapStore func(ledger.Store) ledger.Store
	WrapLog   func(ledger.Log) ledger.Log
	// RequestIDRetention is the ledger's Config.RequestIDRetention.
	RequestIDRetention time.Duration
	// EraseAlso is the ledger's Config.EraseAlso.
	EraseAlso func(pseudonym event.Hash) func(ctx context.Context, tx sqldb.Tx) error
	// Share, if not nil, makes this ledger another node of Share's log:
	// it opens its own pool on Share's database (PostgreSQL must be
	// Share's URL) and writes to Share's Trillian, opening none of its
	// own (two sequencers on one Trillian storage are unsafe): Share must
	// have its own Trillian, and its Seed must be this one's.
	Share *Env
	// LeaseTTL is the ledger's Config.LeaseTTL.
	LeaseTTL time.Duration
	// KeyWrapper, if not nil, is the ledger's Config.KeyWrapper, in place
	// of the seed's KEK (Keys.KEK).
	KeyWrapper ledger.KeyWrapper
}

// Env is an assembled ledger.
type Env struct {
	Ledger        *ledger.Ledger
	Store         ledger.Store
	DB            *sqldb.DB
	Log           ledger.Log
	Trillian      *vtrillian.Node
	Tree          *tpb.Tree
	Origin        string
	CheckpointKey note.Verifier
	ReceiptKey    note.Verifier
	// CheckpointVerifierKey is CheckpointKey's text
	// (<origin>+<hash>+<key>).
	CheckpointVerifierKey string
	Pseudonyms            *ledger.Pseudonymizer
	// Config is the ledger's configuration, to open another ledger on
	// the same store and log.
	Config           ledger.Config
	closed           bool
	t                testing.TB
	backgroundCancel context.CancelFunc
}

var quietOnce sync.Once

// Keys derives the test keys of a seed: a deterministic source, so that a
// child process and its parent share them.
type Keys struct {
	KEK, Pseudonym []byte
	rand           io.Reader
}

func keys(seed uint64) Keys {
	r := rand.NewChaCha8(sha256.Sum256([]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)}))
	k := Keys{KEK: make([]byte, 32), Pseudonym: make([]byte, 32), rand: r}
	r.Read(k.KEK)
	r.Read(k.Pseudonym)
	return k
}

// New assembles and (unless NoStart) starts a ledger; Close or the end of
// the test closes it.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	quietOnce.Do(func() {
		if !testing.Verbose() {
			klog.SetLogger(logr.Discard()) // Trillian's chatter
		}
	})
	ctx := context.Background()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if opts.CheckpointInterval == 0 {
		opts.CheckpointInterval = 50 * time.Millisecond
	}
	if opts.SequencerInterval == 0 {
		opts.SequencerInterval = 20 * time.Millisecond
	}
	e := &Env{t: t}
	t.Cleanup(e.Close)
	dbc := ledgersql.DBConfig{PostgreSQL: opts.PostgreSQL, Also: opts.Migrations}
	tc := vtrillian.OpenConfig{
		PostgreSQL:        opts.PostgreSQL,
		SequencerInterval: opts.SequencerInterval,
		Tree:              vtrillian.TreeSpec{DisplayName: vtrillian.TreeName, Type: tpb.TreeType_PREORDERED_LOG},
	}
	if opts.PostgreSQL == "" {
		dbc.SQLite = filepath.Join(opts.Dir, "vigie.db")
		tc.SQLite = filepath.Join(opts.Dir, "trillian.db")
	}
	var store *ledgersql.Store
	var err error
	if e.DB, store, err = ledgersql.Open(ctx, dbc); err != nil {
		t.Fatalf("ledgertest: %v", err)
	}
	e.Store = store
	if opts.WrapStore != nil {
		e.Store = opts.WrapStore(e.Store)
	}
	if opts.Share != nil {
		e.Tree, e.Log = opts.Share.Tree, opts.Share.Trillian.Log
	} else {
		if e.Trillian, err = vtrillian.Open(ctx, tc); err != nil {
			t.Fatalf("ledgertest: %v", err)
		}
		e.Tree = e.Trillian.Tree
		e.Log = e.Trillian.Log
	}
	if opts.WrapLog != nil {
		e.Log = opts.WrapLog(e.Log)
	}
	e.Origin, err = verify.FormatOrigin("test.vigie.example", e.Tree.TreeId)
	if err != nil {
		t.Fatalf("ledgertest: %v", err)
	}
	k := keys(opts.Seed)
	cpSigner, cpVerifier, cpText := signer(t, k.rand, e.Origin)
	rcSigner, rcVerifier, rcText := signer(t, k.rand, verify.ReceiptKeyName(e.Origin))
	e.CheckpointKey, e.ReceiptKey = cpVerifier, rcVerifier
	e.CheckpointVerifierKey = cpText
	e.Pseudonyms, err = ledger.NewPseudonymizer(k.Pseudonym)
	if err != nil {
		t.Fatal(err)
	}
	kek := k.KEK
	if opts.KeyWrapper != nil {
		kek = nil
	}
	e.Config = ledger.Config{
		Origin:             e.Origin,
		CheckpointSigner:   cpSigner,
		ReceiptSigner:      rcSigner,
		CheckpointVerifier: cpText,
		ReceiptVerifier:    rcText,
		KEK:                kek,
		KeyWrapper:         opts.KeyWrapper,
		Pseudonyms:         e.Pseudonyms,
		MergeDelay:         opts.MergeDelay,
		CheckpointInterval: opts.CheckpointInterval,
		Now:                opts.Now,
		EraseAlso:          opts.EraseAlso,
		RequestIDRetention: opts.RequestIDRetention,
		LeaseTTL:           opts.LeaseTTL,
		// As a node: the embedded SQLite files have one writer.
		SoleWriter: opts.PostgreSQL == "" && !opts.NotSoleWriter,
	}
	e.Ledger, err = ledger.New(ctx, e.Config, e.Store, e.Log)
	if err != nil {
		t.Fatalf("ledgertest: %v", err)
	}
	if _, err := ledgersql.HashRequestIDs(ctx, e.DB, e.Pseudonyms.RequestHash); err != nil {
		t.Fatalf("ledgertest: %v", err)
	}
	if !opts.NoStart {
		e.Start()
	}
	return e
}

// Start starts the ledger's background work.
func (e *Env) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	e.backgroundCancel = cancel
	e.Ledger.Start(ctx)
}

// Kill stops the ledger's background work without closing it, as if its
// node died: its leases stay in the database until they expire. Start
// starts it again.
func (e *Env) Kill() {
	if e.backgroundCancel != nil {
		e.backgroundCancel()
		e.backgroundCancel = nil
	}
}

func signer(t testing.TB, r io.Reader, name string) (note.Signer, note.Verifier, string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(r, name)
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
	return s, v, vkey
}

// Close drains and stops the ledger, then closes Trillian and the
// databases. It is idempotent.
func (e *Env) Close() {
	if e.closed {
		return
	}
	e.closed = true
	if e.Ledger != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := e.Ledger.Close(ctx); err != nil {
			e.t.Logf("ledgertest: close ledger: %v", err)
		}
		cancel()
	}
	if e.backgroundCancel != nil {
		e.backgroundCancel()
	}
	if e.Trillian != nil {
		e.Trillian.Close()
	}
	if e.DB != nil {
		e.DB.Close()
	}
}

// Postgres returns a fresh PostgreSQL database for New, or skips t as
// pgtest does.
func Postgres(t testing.TB) string { return pgtest.NewDatabase(t) }

// Patient is a test patient identifier (implements ledger.PatientID).
type Patient string

// Canonical implements ledger.PatientID.
func (p Patient) Canonical() string { return string(p) }
