// Package node assembles a whole Vigie node for the binary's commands
// (serve, bench): Vigie's database and its migrations, Trillian (embedded
// on SQLite, in process on PostgreSQL, or remote), the keys of the data
// directory, the ledger and its background work, and the consent
// service. It takes a plain Config and reads no flag or environment
// variable: cmd/vigie maps its flags onto Config.
//
// The pieces are shared with the tests' ledger/ledgertest:
// ledgersql.Open (the database), trillian.Open (Trillian), ledger.New
// (the ledger); keys come from ledger/keys.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	tpb "github.com/google/trillian"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/consentsql"
	"github.com/vigie-sante/vigie/consent/directory"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/nationalrules"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/keys"
	"github.com/vigie-sante/vigie/ledger/ledgersql"
	"github.com/vigie-sante/vigie/ledger/sqldb"
	"github.com/vigie-sante/vigie/ledger/trillian"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// Config is what a node is assembled from. Zero durations and sizes take
// the defaults of the packages they go to (ledger.Config,
// trillian.Config).
type Config struct {
	// DataDir is the directory of the node's files (keys, and the SQLite
	// databases in the embedded mode), created if absent. Required.
	DataDir string
	// DB is the URL (postgres://...) of Vigie's database; empty for the
	// SQLite file <DataDir>/vigie.db.
	DB string
	// TrillianAddr is the address (host:port) of an external Trillian log
	// server; empty runs Trillian in process, on DB (PostgreSQL) or on
	// <DataDir>/trillian.db (SQLite).
	TrillianAddr string
	// TreeID is the Trillian tree; 0 finds (or creates) the tree named
	// trillian.TreeName.
	TreeID int64
	// SequencerInterval and SequencerBatch configure an in-process
	// Trillian's sequencer.
	SequencerInterval time.Duration
	SequencerBatch    int
	// LogName is the log's name, the start of every checkpoint's origin,
	// saved at first start (keys.LogName); empty keeps the saved one.
	LogName string
	// KEKFile is the file of the key-encryption key (default
	// <DataDir>/keys/kek).
	KEKFile string
	// RulesFile is the file of the national access rules
	// (consent.LoadRulesFile); empty for the illustrative rules.
	RulesFile string
	// CheckpointInterval, MergeDelay, SendStallAfter and
	// RequestIDRetention are the ledger's (ledger.Config).
	CheckpointInterval time.Duration
	MergeDelay         time.Duration
	SendStallAfter     time.Duration
	RequestIDRetention time.Duration
	// ChangesPoll bounds how long consent changes and national rules
	// published on other nodes take to reach this node's caches where
	// LISTEN/NOTIFY does not carry them (consentsql.FeedOptions.Poll;
	// default 1s).
	ChangesPoll time.Duration
	// Logger receives the ledger's operational logs. Default
	// slog.Default().
	Logger *slog.Logger
}

// Node is an assembled Vigie node. Its fields are set by Open and must
// not be changed.
type Node struct {
	DB       *sqldb.DB
	Store    ledger.Store
	Trillian *trillian.Node
	Tree     *tpb.Tree
	Ledger   *ledger.Ledger
	Consents *consentsql.Store
	Consent  *consent.Service
	// Directory is the public directories of professionals and
	// establishments, for names beside numbers.
	Directory *directory.Store
	Keys      *keys.Keyring
	// DataDir is Config.DataDir, absolute.
	DataDir string
	// Origin is the log's origin, "<log name>/vigie/<tree id>".
	Origin string
	// Where says where Trillian runs, for humans.
	Where string
	// Collectors are the node's metrics besides the ledger's
	// (ledger.NewCollector), for the API's registry: its database pool's
	// (vigie_db_pool_*, PostgreSQL only) and an in-process Trillian's
	// (trillian.Node.Collectors).
	Collectors []prometheus.Collector

	ledgerRun, closed bool
	// trillianLease is held while an in-process Trillian runs on a
	// PostgreSQL database (ledger.LeaseTrillian).
	trillianLease *ledger.HeldLease
}

// Open assembles a node and starts the ledger's background work. The
// background work outlives ctx's cancellation: Close stops it. On error,
// Open closes what it opened.
func Open(ctx context.Context, cfg Config) (_ *Node, err error) {
	if cfg.DataDir == "" {
		return nil, errors.New("node: DataDir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Node{}
	defer func() {
		if err != nil {
			n.Close(context.Background())
		}
	}()
	if n.DataDir, err = PrepareDataDir(cfg.DataDir); err != nil {
		return nil, err
	}

	// Vigie's own database: every table of it, the ledger's and the
	// consent store's, in one list of migrations.
	dbc := ledgersql.DBConfig{PostgreSQL: cfg.DB, Also: Migrations()}
	if cfg.DB == "" {
		dbc.SQLite = filepath.Join(n.DataDir, "vigie.db")
	}
	var store *ledgersql.Store
	if n.DB, store, err = ledgersql.Open(ctx, dbc); err != nil {
		return nil, err
	}
	n.Store = store
	n.Directory = directory.New(n.DB)
	if c := n.DB.Collector(); c != nil {
		n.Collectors = append(n.Collectors, c)
	}

	// One process name for every lease this node holds.
	owner := ledger.NewOwner()

	// Trillian.
	tc := trillian.OpenConfig{
		Remote:            cfg.TrillianAddr,
		SequencerInterval: cfg.SequencerInterval,
		BatchSize:         cfg.SequencerBatch,
		Tree:              trillian.TreeSpec{TreeID: cfg.TreeID, DisplayName: trillian.TreeName, Type: tpb.TreeType_PREORDERED_LOG},
	}
	switch {
	case cfg.TrillianAddr != "":
	case cfg.DB != "":
		tc.PostgreSQL = cfg.DB
		// One in-process Trillian per database: a second sequencer on
		// the same storage would corrupt it.
		n.trillianLease, err = ledger.HoldLease(ctx, n.Store, ledger.LeaseTrillian, owner, ledger.DefaultLeaseTTL, cfg.Logger)
		if errors.Is(err, ledger.ErrLeaseHeld) {
			return nil, errors.New("node: another node runs Trillian in process on this database; several nodes need an external Trillian (--trillian HOST:PORT)")
		}
		if err != nil {
			return nil, fmt.Errorf("node: in-process Trillian's lease: %w", err)
		}
	default:
		tc.SQLite = filepath.Join(n.DataDir, "trillian.db")
	}
	if n.Trillian, err = trillian.Open(ctx, tc); err != nil {
		return nil, err
	}
	n.Tree, n.Where = n.Trillian.Tree, n.Trillian.Where
	n.Collectors = append(n.Collectors, n.Trillian.Collectors...)

	// Keys and the ledger.
	keysDir := KeysDir(n.DataDir)
	name, err := keys.LogName(keysDir, cfg.LogName)
	if err != nil {
		return nil, err
	}
	if n.Origin, err = verify.FormatOrigin(name, n.Tree.TreeId); err != nil {
		return nil, err
	}
	if n.Keys, err = keys.Load(keys.Config{Dir: keysDir, KEKFile: cfg.KEKFile, Origin: n.Origin}); err != nil {
		return nil, err
	}
	pseudonyms, err := ledger.NewPseudonymizer(n.Keys.Pseudonym)
	if err != nil {
		return nil, err
	}
	n.Ledger, err = ledger.New(ctx, ledger.Config{
		Origin:             n.Origin,
		CheckpointSigner:   n.Keys.Checkpoint,
		ReceiptSigner:      n.Keys.Receipt,
		KEK:                n.Keys.KEK,
		Pseudonyms:         pseudonyms,
		MergeDelay:         cfg.MergeDelay,
		SendStallAfter:     cfg.SendStallAfter,
		CheckpointInterval: cfg.CheckpointInterval,
		Logger:             cfg.Logger,
		EraseAlso:          consentsql.EraseRows,
		RequestIDRetention: cfg.RequestIDRetention,
		Owner:              owner,
	}, n.Store, n.Trillian.Log)
	if err != nil {
		return nil, err
	}

	// Consent: the store and recorder on the same database and ledger,
	// the national rules (published through the ledger if new), the
	// engine.
	rules := nationalrules.Illustrative()
	if cfg.RulesFile != "" {
		if rules, err = consent.LoadRulesFile(cfg.RulesFile); err != nil {
			return nil, err
		}
	}
	n.Consents = consentsql.New(n.DB, n.Ledger)
	if err := consentsql.SealAtRest(ctx, n.DB, n.Store, pseudonyms, n.Consents); err != nil {
		return nil, err
	}
	n.Consent, err = consent.NewService(ctx, consent.Config{
		Store:    n.Consents,
		Recorder: n.Consents,
		Engine:   ladonpolicy.NewEngine(ladonpolicy.Options{}),
		Rules:    rules,
		Changes:  n.Consents.Changes(consentsql.FeedOptions{Poll: cfg.ChangesPoll}),
	})
	if err != nil {
		return nil, err
	}
	n.Ledger.Start(context.WithoutCancel(ctx))
	n.ledgerRun = true
	return n, nil
}

// Migrations are the tables of Vigie's database beyond the ledger's: the
// consent store's and the directories'. Whatever opens the database
// passes them to ledgersql.Open, which refuses a database holding a
// migration it was not given.
func Migrations() []sqldb.Migration {
	return slices.Concat(consentsql.Migrations, directory.Migrations)
}

// Ready reports whether the node can serve: the ledger's background work
// is healthy and its database answers.
func (n *Node) Ready(ctx context.Context) error {
	if err := n.Ledger.Ready(); err != nil {
		return err
	}
	_, err := n.Ledger.Stats(ctx)
	return err
}

// Close stops following other nodes' changes, drains the ledger's outbox
// (until ctx is done), stops it, then closes Trillian and the database. It may be called more than once.
func (n *Node) Close(ctx context.Context) error {
	if n.closed {
		return nil
	}
	n.closed = true
	var errs []error
	if n.Consent != nil {
		n.Consent.Close()
	}
	if n.ledgerRun {
		n.ledgerRun = false
		errs = append(errs, n.Ledger.Close(ctx))
	}
	if n.Trillian != nil {
		errs = append(errs, n.Trillian.Close())
	}
	if n.trillianLease != nil {
		errs = append(errs, n.trillianLease.Release(ctx))
	}
	if n.DB != nil {
		errs = append(errs, n.DB.Close())
	}
	return errors.Join(errs...)
}

// KeysDir returns the keys directory of a data directory (ledger/keys).
func KeysDir(dataDir string) string { return filepath.Join(dataDir, "keys") }

// PrepareDataDir creates the data directory (owner-only) if needed and
// returns its absolute path.
func PrepareDataDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("data directory: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", fmt.Errorf("create data directory: %w", err)
	}
	return abs, nil
}
