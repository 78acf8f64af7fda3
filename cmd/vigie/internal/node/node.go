// Package node assembles a whole Vigie node for the binary's commands
// (serve, bench, init): Vigie's database and its migrations, Trillian
// (embedded on SQLite, in process on PostgreSQL, or remote), the keys of
// the data directory, the ledger and its background work, and the
// consent service. It takes a plain Config and reads no flag or
// environment variable: cmd/vigie maps its flags onto Config (and the
// errors name the flags, for the binary's users).
//
// With remote Trillian log servers (the cluster mode), a node makes
// nothing: Init, run once, creates the tree and the keys and pins them in
// the database; every node then takes the tree's ID and a copy of the
// keys, and refuses to start with another tree or other keys.
//
// The pieces are shared with the tests' ledger/ledgertest:
// ledgersql.Open (the database), trillian.Open (Trillian), ledger.New
// (the ledger); keys come from ledger/keys.
package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	tpb "github.com/google/trillian"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/consentsql"
	"github.com/vigie-sante/vigie/consent/directory"
	"github.com/vigie-sante/vigie/consent/enrolment"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/nationalrules"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/keys"
	"github.com/vigie-sante/vigie/ledger/ledgersql"
	"github.com/vigie-sante/vigie/ledger/sqldb"
	"github.com/vigie-sante/vigie/ledger/trillian"
	"github.com/vigie-sante/vigie/ledger/verify"
	"github.com/vigie-sante/vigie/ledger/witness"
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
	// TrillianAddrs are the addresses (host:port) of external Trillian
	// log servers on one storage (the cluster mode: the node creates no
	// tree and no key); none runs Trillian in process, on DB (PostgreSQL)
	// or on <DataDir>/trillian.db (SQLite).
	TrillianAddrs []string
	// TreeID is the Trillian tree. In process, 0 finds (or creates) the
	// tree named trillian.TreeName; in the cluster mode it is required
	// and must be the tree Init pinned in the database.
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
	// Module, if not nil, holds the checkpoint and receipt keys and the
	// key-encryption key in a hardware security module (vigie built
	// with -tags pkcs11): KEKFile is then not read (the wrapper itself
	// may open what a key file wrapped, until it is rewrapped).
	Module *ModuleKeys
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
	// PublishedCheckpointFile is a file holding the latest checkpoint the
	// log published (a signed note), checked at start
	// (ledger.Ledger.CheckPublished). If it is beyond the node's ledger,
	// the node opens halted: it records nothing, signs nothing and is not
	// ready (Halted). Required while the data directory holds
	// RestoredCheckpoint (a restored backup); the file is removed once a
	// published checkpoint is found within the ledger.
	PublishedCheckpointFile string
	// WitnessPolicy, if not nil, is the witness policy: its log line must
	// be the log's checkpoint key, and the node submits its checkpoints
	// to the policy's witnesses (ledger/witness, a leased duty) and
	// serves them cosigned (Node.Checkpoints).
	WitnessPolicy *verify.WitnessPolicy
	// Succession, read by Init only, is the old log's latest published
	// checkpoint (a signed note) and its verifier key: Init records them
	// as the new log's first event (ledger.Ledger.RecordSuccession).
	Succession *Succession
}

// A Succession names the closed log a new log succeeds.
type Succession struct {
	Checkpoint []byte
	Key        string
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
	// Enrolments links patients' sign-ins at providers that give no INS
	// (consent/enrolment).
	Enrolments *enrolment.Store
	// Directory is the public directories of professionals and
	// establishments, for names beside numbers.
	Directory *directory.Store
	Keys      *keys.Keyring
	// DataDir is Config.DataDir, absolute.
	DataDir string
	// Cluster is true with an external Trillian (Config.TrillianAddrs):
	// the node makes no key, vigie init made them all (the API's too).
	Cluster bool
	// Origin is the log's origin, "<log name>/vigie/<tree id>".
	Origin string
	// Where says where Trillian runs, for humans.
	Where string
	// Collectors are the node's metrics besides the ledger's
	// (ledger.NewCollector), for the API's registry: its database pool's
	// (vigie_db_pool_*, PostgreSQL only) and an in-process Trillian's
	// (trillian.Node.Collectors).
	Collectors []prometheus.Collector
	// Witnesses submits checkpoints to the witnesses and Checkpoints
	// serves them cosigned (GET /checkpoint); both nil without
	// Config.WitnessPolicy.
	Witnesses   *witness.Submitter
	Checkpoints *witness.Checkpoints

	// Halted is the reason the node records nothing and signs nothing
	// (ledger.ErrBehindPublished), or nil.
	Halted error

	ledgerRun, closed bool
	module            *ModuleKeys
	stopRewrap        context.CancelFunc
	rewrapDone        chan struct{}
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
	n := &Node{module: cfg.Module}
	if cfg.Module != nil {
		if c, ok := cfg.Module.KeyWrapper.(prometheus.Collector); ok {
			n.Collectors = append(n.Collectors, c) // its cache's hits and misses
		}
	}
	defer func() {
		if err != nil {
			n.Close(context.Background())
		}
	}()
	if n.DataDir, err = PrepareDataDir(cfg.DataDir); err != nil {
		return nil, err
	}

	if n.DB, n.Store, err = openDB(ctx, cfg, n.DataDir); err != nil {
		return nil, err
	}
	n.Directory = directory.New(n.DB)
	if c := n.DB.Collector(); c != nil {
		n.Collectors = append(n.Collectors, c)
	}
	cluster := len(cfg.TrillianAddrs) > 0
	n.Cluster = cluster
	keysDir := KeysDir(n.DataDir)
	var name string
	if cluster {
		if name, err = clusterLog(ctx, n.Store, cfg, keysDir); err != nil {
			return nil, err
		}
	}

	// One process name for every lease this node holds.
	owner := ledger.NewOwner()

	// Trillian.
	if len(cfg.TrillianAddrs) == 0 && cfg.DB != "" {
		// One in-process Trillian per database: a second sequencer on
		// the same storage would corrupt it.
		n.trillianLease, err = ledger.HoldLease(ctx, n.Store, ledger.LeaseTrillian, owner, ledger.DefaultLeaseTTL, cfg.Logger)
		if errors.Is(err, ledger.ErrLeaseHeld) {
			return nil, errors.New("node: another node runs Trillian in process on this database; several nodes need an external Trillian (--trillian HOST:PORT)")
		}
		if err != nil {
			return nil, fmt.Errorf("node: in-process Trillian's lease: %w", err)
		}
	}
	if n.Trillian, err = trillian.Open(ctx, trillianConfig(cfg, n.DataDir)); err != nil {
		return nil, err
	}
	n.Tree, n.Where = n.Trillian.Tree, n.Trillian.Where
	n.Collectors = append(n.Collectors, n.Trillian.Collectors...)

	// Keys and the ledger.
	if !cluster {
		if name, err = keys.LogName(keysDir, cfg.LogName); err != nil {
			return nil, err
		}
	}
	if n.Origin, err = verify.FormatOrigin(name, n.Tree.TreeId); err != nil {
		return nil, err
	}
	restored, err := restoredCheckpoint(n.DataDir, cfg)
	if err != nil {
		return nil, err
	}
	if n.Keys, err = keys.Load(cfg.keysConfig(keysDir, n.Origin, cluster || restored)); err != nil {
		switch {
		case cluster && errors.Is(err, fs.ErrNotExist):
			err = fmt.Errorf("%w: a node with --trillian makes no key; run vigie init once and copy its data directory's keys directory to every node's", err)
		case restored && errors.Is(err, fs.ErrNotExist):
			err = fmt.Errorf("%w: a restored node makes no key; copy the keys directory kept apart from the backups to %s", err, keysDir)
		}
		return nil, err
	}
	pseudonyms, err := ledger.NewPseudonymizer(n.Keys.Pseudonym)
	if err != nil {
		return nil, err
	}
	n.Ledger, err = newLedger(ctx, cfg, keysDir, n.Origin, n.Keys, pseudonyms, n.Store, n.Trillian.Log, owner)
	if err != nil {
		return nil, err
	}
	if err := n.checkPublished(ctx, cfg, restored); err != nil {
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
	n.Enrolments = enrolment.New(n.DB, n.Ledger, nil)
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
	if n.Halted != nil {
		// Fail closed: no sender, no checkpointer, no erasure.
		cfg.Logger.Error("node: SECURITY: the log is behind a published checkpoint; recording and signing refused", "err", n.Halted)
		return n, nil
	}
	n.Ledger.Start(context.WithoutCancel(ctx))
	n.ledgerRun = true
	if cfg.WitnessPolicy != nil {
		if err := n.startWitnesses(ctx, cfg, owner); err != nil {
			return nil, err
		}
	}
	if cfg.Module != nil && cfg.Module.Rewrap {
		var rctx context.Context
		rctx, n.stopRewrap = context.WithCancel(context.WithoutCancel(ctx))
		n.rewrapDone = make(chan struct{})
		go n.rewrap(rctx, cfg.Logger)
	}
	return n, nil
}

// startWitnesses checks the policy against the log's key and starts the
// submitter.
func (n *Node) startWitnesses(ctx context.Context, cfg Config, owner string) error {
	if err := cfg.WitnessPolicy.CheckLogKey(n.Keys.CheckpointVerifier); err != nil {
		return err
	}
	v, err := note.NewVerifier(n.Keys.CheckpointVerifier)
	if err != nil {
		return fmt.Errorf("node: checkpoint key: %w", err)
	}
	n.Witnesses, err = witness.New(witness.Config{Policy: cfg.WitnessPolicy, Verifier: v, Log: n.Ledger, Store: n.Store,
		Owner: owner, Logger: cfg.Logger})
	if err != nil {
		return err
	}
	n.Checkpoints = witness.NewCheckpoints(cfg.WitnessPolicy, v, n.Ledger, n.Store)
	n.Collectors = append(n.Collectors, witness.NewCollector(n.Witnesses))
	n.Witnesses.Start(context.WithoutCancel(ctx))
	return nil
}

// restoredCheckpoint reports whether the data directory is a restored
// backup not yet checked against a published checkpoint, and refuses to
// go on without one.
func restoredCheckpoint(dataDir string, cfg Config) (bool, error) {
	_, err := os.Stat(filepath.Join(dataDir, RestoredCheckpoint))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case cfg.PublishedCheckpointFile == "":
		return true, fmt.Errorf("this data directory was restored from a backup: start it with the latest checkpoint the log published (--published-checkpoint FILE; %s if none was published after the backup)", filepath.Join(dataDir, RestoredCheckpoint))
	}
	return true, nil
}

// checkPublished checks cfg's published checkpoint against the ledger:
// beyond it, the node is halted; within it, a restored data directory's
// mark is removed.
func (n *Node) checkPublished(ctx context.Context, cfg Config, restored bool) error {
	if cfg.PublishedCheckpointFile == "" {
		return nil
	}
	note, err := os.ReadFile(cfg.PublishedCheckpointFile)
	if err != nil {
		return fmt.Errorf("published checkpoint: %w", err)
	}
	if len(note) == 0 {
		// A backup made before the first checkpoint, and nothing
		// published since, as the operator states.
		err = nil
	} else {
		err = n.Ledger.CheckPublished(ctx, note)
	}
	if errors.Is(err, ledger.ErrBehindPublished) {
		n.Halted = err
		n.Ledger.Halt(err)
		return nil
	}
	if err != nil {
		return err
	}
	if restored {
		if err := os.Remove(filepath.Join(n.DataDir, RestoredCheckpoint)); err != nil {
			return fmt.Errorf("published checkpoint: %w", err)
		}
	}
	return nil
}

// Migrations are the tables of Vigie's database beyond the ledger's: the
// consent store's, the directories' and the witnesses' cosignatures
// (ledger/7, in the ledger's sequence). Whatever opens the database
// passes them to ledgersql.Open, which refuses a database holding a
// migration it was not given.
func Migrations() []sqldb.Migration {
	return slices.Concat(consentsql.Migrations, directory.Migrations, enrolment.Migrations, witness.Migrations)
}

// eraseAlso is what else an erasure deletes (ledger.Config.EraseAlso):
// the patient's consents and enrolments.
func eraseAlso(pseudonym event.Hash) func(ctx context.Context, tx sqldb.Tx) error {
	consents, links := consentsql.EraseRows(pseudonym), enrolment.EraseRows(pseudonym)
	return func(ctx context.Context, tx sqldb.Tx) error {
		if err := consents(ctx, tx); err != nil {
			return err
		}
		return links(ctx, tx)
	}
}

// Ready reports whether the node can serve: the ledger's background work
// is healthy and its database answers.
func (n *Node) Ready(ctx context.Context) error {
	if n.trillianLease != nil {
		select {
		case <-n.trillianLease.Lost():
			return errTrillianLeaseLost
		default:
		}
	}
	if err := n.Ledger.Ready(); err != nil {
		return err
	}
	_, err := n.Ledger.Stats(ctx)
	return err
}

// errTrillianLeaseLost: another node may now run Trillian in process on
// the same storage.
var errTrillianLeaseLost = errors.New("node: the in-process Trillian's lease was lost (the database was unreachable longer than the lease, or another node took it): this node must stop")

// Lost is closed when the node must stop: it runs Trillian in process on
// PostgreSQL and lost that lease, so another node may run a second
// sequencer on the same storage. Nil (never closed) otherwise.
func (n *Node) Lost() <-chan struct{} {
	if n.trillianLease == nil {
		return nil
	}
	return n.trillianLease.Lost()
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
	if n.Witnesses != nil {
		errs = append(errs, n.Witnesses.Stop(ctx))
	}
	if n.stopRewrap != nil {
		n.stopRewrap()
		<-n.rewrapDone
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
	if n.module != nil && n.module.Close != nil {
		errs = append(errs, n.module.Close())
	}
	return errors.Join(errs...)
}

// openDB opens Vigie's own database: every table of it, the ledger's and
// the consent store's, in one list of migrations.
func openDB(ctx context.Context, cfg Config, dataDir string) (*sqldb.DB, ledger.Store, error) {
	dbc := ledgersql.DBConfig{PostgreSQL: cfg.DB, Also: Migrations()}
	if cfg.DB == "" {
		dbc.SQLite = filepath.Join(dataDir, "vigie.db")
	}
	db, store, err := ledgersql.Open(ctx, dbc)
	if err != nil {
		return nil, nil, err
	}
	return db, store, nil
}

// trillianConfig says where cfg's Trillian runs.
func trillianConfig(cfg Config, dataDir string) trillian.OpenConfig {
	tc := trillian.OpenConfig{
		Remote:            cfg.TrillianAddrs,
		SequencerInterval: cfg.SequencerInterval,
		BatchSize:         cfg.SequencerBatch,
		Tree:              trillian.TreeSpec{TreeID: cfg.TreeID, DisplayName: trillian.TreeName, Type: tpb.TreeType_PREORDERED_LOG},
	}
	switch {
	case len(cfg.TrillianAddrs) > 0:
	case cfg.DB != "":
		tc.PostgreSQL = cfg.DB
	default:
		tc.SQLite = filepath.Join(dataDir, "trillian.db")
	}
	return tc
}

// pinnedLog returns the log's name and tree that the database's origin
// pins (ledger.SavedOrigin), or a zero tree before the first start.
func pinnedLog(ctx context.Context, store ledger.Store) (name string, treeID int64, err error) {
	origin, err := ledger.SavedOrigin(ctx, store)
	if errors.Is(err, ledger.ErrNotFound) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, fmt.Errorf("read the log's origin: %w", err)
	}
	if name, treeID, err = verify.ParseOrigin(origin); err != nil {
		return "", 0, fmt.Errorf("the database's log: %w", err)
	}
	return name, treeID, nil
}

// clusterLog returns the name of the log that the database pins, after
// checking that cfg (the tree, the log's name) and the keys directory's
// saved name agree with it: a node of a cluster never starts a log.
func clusterLog(ctx context.Context, store ledger.Store, cfg Config, keysDir string) (string, error) {
	name, pinned, err := pinnedLog(ctx, store)
	switch {
	case err != nil:
		return "", err
	case pinned == 0:
		return "", errors.New("this database has no log yet: run vigie init once (with the same --db and --trillian); it prints the tree id for --trillian-tree-id")
	case cfg.TreeID == 0:
		return "", fmt.Errorf("--trillian-tree-id is required with --trillian: this database's log is tree %d", pinned)
	case cfg.TreeID != pinned:
		return "", fmt.Errorf("--trillian-tree-id %d: this database's log is tree %d (pinned by vigie init)", cfg.TreeID, pinned)
	case cfg.LogName != "" && cfg.LogName != name:
		return "", fmt.Errorf("--log-name %q: this database's log is named %q, which never changes", cfg.LogName, name)
	}
	saved, err := keys.SavedLogName(keysDir)
	if err != nil {
		return "", err
	}
	if saved != "" && saved != name {
		return "", fmt.Errorf("%s names the log %q, this database's log is %q: copy the keys directory of the data directory vigie init ran on", filepath.Join(keysDir, "log-name"), saved, name)
	}
	return name, nil
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
