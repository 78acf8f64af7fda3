package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	tpb "github.com/google/trillian"
	"github.com/google/trillian/storage"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/consentsql"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/nationalrules"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/ledgersql"
	"github.com/vigie-sante/vigie/ledger/sqldb"
	vtrillian "github.com/vigie-sante/vigie/ledger/trillian"
	"github.com/vigie-sante/vigie/ledger/trillian/sqlite"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// treeName is the display name of Vigie's Trillian tree, found again at
// every start.
const treeName = "vigie"

// dbApplicationID is the SQLite application_id of Vigie's database.
const dbApplicationID = 0x56474431 // "VGD1"

// nodeConfig is what a Vigie node is assembled from (flags of serve and
// bench).
type nodeConfig struct {
	dataDir            string
	db                 string
	trillianAddr       string
	treeID             int64
	sequencerInterval  time.Duration
	sequencerBatch     int
	logName            string
	kekFile            string
	rulesFile          string
	checkpointInterval time.Duration
	mergeDelay         time.Duration
	sendStallAfter     time.Duration
	requestIDRetention time.Duration
}

func (c *nodeConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.dataDir, "data-dir", "vigie-data", "directory of Vigie's files: keys, and the SQLite databases in embedded mode")
	fs.StringVar(&c.db, "db", "", "database URL: empty for SQLite files in the data directory (embedded), or postgres://... for PostgreSQL")
	fs.StringVar(&c.trillianAddr, "trillian", "", "address (host:port) of an external Trillian log server; empty runs Trillian in process")
	fs.Int64Var(&c.treeID, "trillian-tree-id", 0, "ID of the Trillian tree to use; 0 finds (or creates) the tree named \""+treeName+"\"")
	fs.DurationVar(&c.sequencerInterval, "sequencer-interval", 100*time.Millisecond, "in-process Trillian: time between sequencing runs")
	fs.IntVar(&c.sequencerBatch, "sequencer-batch", 1000, "in-process Trillian: most leaves integrated per sequencing run")
	fs.StringVar(&c.logName, "log-name", "", "the log's name, the start of every checkpoint's origin (default vigie.localhost); saved at first start, never changes")
	fs.StringVar(&c.kekFile, "kek-file", "", "file of the key-encryption key (default <data dir>/keys/kek)")
	fs.StringVar(&c.rulesFile, "national-rules", "", "file of the national access rules (JSON, canonical form); default: the illustrative rules built in. A version above the stored one is published at start")
	fs.DurationVar(&c.checkpointInterval, "checkpoint-interval", time.Second, "least time between two signed checkpoints")
	fs.DurationVar(&c.mergeDelay, "merge-delay", 10*time.Second, "maximum merge delay promised by receipts")
	fs.DurationVar(&c.requestIDRetention, "request-id-retention", 24*time.Hour, "how long a retry with the same request_id gets the first answer back; after it, FAILED_PRECONDITION (never a new decision under the same id)")
	fs.DurationVar(&c.sendStallAfter, "send-stall-after", 30*time.Second, "how long sending events to the log may fail without a break before /readyz reports the node not ready")
}

func (c *nodeConfig) validate() error {
	switch {
	case c.sequencerBatch <= 0:
		return errors.New("--sequencer-batch must be positive")
	case c.sequencerInterval <= 0:
		return errors.New("--sequencer-interval must be positive")
	case c.checkpointInterval <= 0:
		return errors.New("--checkpoint-interval must be positive")
	case c.mergeDelay <= 0:
		return errors.New("--merge-delay must be positive")
	case c.sendStallAfter <= 0:
		return errors.New("--send-stall-after must be positive")
	case c.requestIDRetention <= 0:
		return errors.New("--request-id-retention must be positive")
	case c.db != "" && !strings.HasPrefix(c.db, "postgres://") && !strings.HasPrefix(c.db, "postgresql://"):
		return errors.New("--db: want a postgres:// URL, or nothing for the embedded SQLite files")
	}
	return nil
}

// node is an assembled Vigie: database, Trillian, ledger, consent.
type node struct {
	db        *sqldb.DB
	store     ledger.Store
	clients   vtrillian.Clients
	tree      *tpb.Tree
	ledger    *ledger.Ledger
	consents  *consentsql.Store
	consent   *consent.Service
	keys      *keyring
	dataDir   string
	origin    string
	where     string // where Trillian runs, for humans
	closers   []func() error
	cancelBg  context.CancelFunc
	ledgerRun bool
}

// openNode assembles a node and starts the ledger's background work.
func openNode(ctx context.Context, cfg nodeConfig, logger *slog.Logger) (_ *node, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &node{}
	defer func() {
		if err != nil {
			n.close(context.Background())
		}
	}()
	dataDir, err := prepareDataDir(cfg.dataDir)
	if err != nil {
		return nil, err
	}
	n.dataDir = dataDir

	// Vigie's own database.
	if cfg.db == "" {
		n.db, err = sqldb.OpenSQLiteDB(ctx, filepath.Join(dataDir, "vigie.db"), sqldb.Options{SQLite: sqldb.SQLiteOptions{ApplicationID: dbApplicationID, Name: "Vigie database"}})
	} else {
		n.db, err = sqldb.OpenPostgres(ctx, cfg.db, sqldb.Options{})
	}
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	n.closers = append(n.closers, n.db.Close)
	// Every table of the database, in one list: Migrate refuses a
	// database with migrations it does not know.
	migrations := append(slices.Clone(ledgersql.Migrations), consentsql.Migrations...)
	if err := n.db.Migrate(ctx, migrations); err != nil {
		return nil, fmt.Errorf("database schema: %w", err)
	}
	n.store = ledgersql.New(n.db)

	// Trillian.
	spec := vtrillian.TreeSpec{TreeID: cfg.treeID, DisplayName: treeName, Type: tpb.TreeType_PREORDERED_LOG}
	var logStorage storage.LogStorage // in process: read directly for batches of proofs
	if cfg.trillianAddr != "" {
		r, err := vtrillian.Dial(cfg.trillianAddr)
		if err != nil {
			return nil, err
		}
		n.closers = append(n.closers, r.Close)
		n.clients, n.where = r.Clients, "Trillian at "+cfg.trillianAddr
	} else {
		var p storage.Provider
		if cfg.db == "" {
			path := filepath.Join(dataDir, "trillian.db")
			s, err := sqlite.Open(ctx, path, sqlite.Options{})
			if err != nil {
				return nil, fmt.Errorf("open Trillian storage: %w", err)
			}
			p, n.where = s, "SQLite "+path
		} else {
			s, err := vtrillian.OpenPostgreSQL(ctx, cfg.db, nil)
			if err != nil {
				return nil, err
			}
			p, n.where = s, "PostgreSQL"
		}
		n.closers = append(n.closers, p.Close)
		logStorage = p.LogStorage()
		e, err := vtrillian.Start(ctx, vtrillian.Config{
			LogStorage:        p.LogStorage(),
			AdminStorage:      p.AdminStorage(),
			SequencerInterval: cfg.sequencerInterval,
			BatchSize:         cfg.sequencerBatch,
		})
		if err != nil {
			return nil, err
		}
		n.closers = append(n.closers, e.Close)
		n.clients = e.Clients
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if n.tree, err = vtrillian.EnsureTree(tctx, n.clients, spec); err != nil {
		return nil, err
	}
	log, err := vtrillian.NewLog(n.clients, n.tree, logStorage)
	if err != nil {
		return nil, err
	}

	// Keys and the ledger.
	keysDir := filepath.Join(dataDir, "keys")
	name, err := logName(keysDir, cfg.logName)
	if err != nil {
		return nil, err
	}
	if n.origin, err = verify.FormatOrigin(name, n.tree.TreeId); err != nil {
		return nil, err
	}
	if n.keys, err = loadOrCreateKeys(keysDir, cfg.kekFile, n.origin); err != nil {
		return nil, err
	}
	pseudonyms, err := ledger.NewPseudonymizer(n.keys.pseudonym)
	if err != nil {
		return nil, err
	}
	n.ledger, err = ledger.New(ctx, ledger.Config{
		Origin:             n.origin,
		CheckpointSigner:   n.keys.checkpoint,
		ReceiptSigner:      n.keys.receipt,
		KEK:                n.keys.kek,
		Pseudonyms:         pseudonyms,
		MergeDelay:         cfg.mergeDelay,
		SendStallAfter:     cfg.sendStallAfter,
		CheckpointInterval: cfg.checkpointInterval,
		Logger:             logger,
		EraseAlso:          consentsql.EraseRows,
		RequestIDRetention: cfg.requestIDRetention,
	}, n.store, log)
	if err != nil {
		return nil, err
	}

	// Consent: the store and recorder on the same database and ledger,
	// the national rules (published through the ledger if new), the
	// engine.
	rules := nationalrules.Illustrative()
	if cfg.rulesFile != "" {
		if rules, err = consent.LoadRulesFile(cfg.rulesFile); err != nil {
			return nil, err
		}
	}
	n.consents = consentsql.New(n.db, n.ledger)
	if err := sealAtRest(ctx, n.db, n.store, pseudonyms, n.consents); err != nil {
		return nil, err
	}
	n.consent, err = consent.NewService(ctx, consent.Config{
		Store:    n.consents,
		Recorder: n.consents,
		Engine:   ladonpolicy.NewEngine(ladonpolicy.Options{}),
		Rules:    rules,
	})
	if err != nil {
		return nil, err
	}
	bg, cancelBg := context.WithCancel(context.WithoutCancel(ctx))
	n.cancelBg = cancelBg
	n.ledger.Start(bg)
	n.ledgerRun = true
	return n, nil
}

// sealAtRest converts, once per database, what versions before the
// sealing stored in clear (request ids, consents), then, once, rewrites
// the converted tables so that the plain text leaves the database's files
// (sqldb.DB.Compact). It runs after ledger.New checked the keys, before
// anything is recorded. Backups and WAL archives taken before keep the
// plain text until they expire (docs/threat-model.md).
func sealAtRest(ctx context.Context, db *sqldb.DB, store ledger.Store, pseudonyms *ledger.Pseudonymizer, consents *consentsql.Store) error {
	if _, err := ledgersql.HashRequestIDs(ctx, db, pseudonyms.RequestHash); err != nil {
		return err
	}
	if _, err := consents.SealPlaintext(ctx); err != nil {
		return err
	}
	const compacted = "plaintext-compacted"
	done := true
	err := store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
		_, err := tx.Meta(ctx, compacted)
		done = err == nil
		if errors.Is(err, ledger.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil || done {
		return err
	}
	if err := db.Compact(ctx, "events", "consents"); err != nil {
		return fmt.Errorf("compact the converted tables: %w", err)
	}
	return store.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error {
		return tx.SetMeta(ctx, compacted, []byte("1"))
	})
}

// ready reports whether the node can serve: the ledger's background work
// is healthy and its database answers.
func (n *node) ready(ctx context.Context) error {
	if err := n.ledger.Ready(); err != nil {
		return err
	}
	_, err := n.ledger.Stats(ctx)
	return err
}

// close drains the ledger's outbox (until ctx is done), stops it, then
// closes Trillian and the databases.
func (n *node) close(ctx context.Context) error {
	var errs []error
	if n.ledgerRun {
		n.ledgerRun = false
		errs = append(errs, n.ledger.Close(ctx))
	}
	if n.cancelBg != nil {
		n.cancelBg()
	}
	for i := len(n.closers) - 1; i >= 0; i-- {
		errs = append(errs, n.closers[i]())
	}
	n.closers = nil
	return errors.Join(errs...)
}
