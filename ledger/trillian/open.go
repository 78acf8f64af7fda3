package trillian

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	tpb "github.com/google/trillian"
	"github.com/google/trillian/storage"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigie-sante/vigie/ledger/sqldb"
	"github.com/vigie-sante/vigie/ledger/trillian/sqlite"
)

// TreeName is the display name of Vigie's tree, by which a node finds it
// again at every start when no tree ID is given.
const TreeName = "vigie"

// OpenConfig says where a node's Trillian runs and which tree the ledger
// writes to. Exactly one of Remote, PostgreSQL and SQLite is set.
type OpenConfig struct {
	// Remote are the addresses (host:port) of trillian_log_servers run
	// elsewhere on one storage (the cluster mode), used as Dial says;
	// nothing of Trillian runs in process.
	Remote []string
	// PostgreSQL is the URL of the database holding Trillian's own
	// PostgreSQL storage (the single-server mode), run in process.
	PostgreSQL string
	// SQLite is the file of Trillian's storage on SQLite (the embedded
	// mode), run in process.
	SQLite string
	// SequencerInterval and BatchSize configure an in-process sequencer
	// (Config's fields, same defaults).
	SequencerInterval time.Duration
	BatchSize         int
	// Tree names the tree; its Type must be PREORDERED_LOG.
	Tree TreeSpec
	// TreeTimeout bounds finding (or creating) the tree. Default 30s.
	TreeTimeout time.Duration
}

// Node is a node's Trillian, brought up by Open: the clients, the tree and
// the ledger's Log on it.
type Node struct {
	Clients
	Tree *tpb.Tree
	Log  *Log
	// Where says where Trillian runs, for humans: "SQLite <file>",
	// "PostgreSQL" or "Trillian at <address>".
	Where string
	// Embedded and Storage are the in-process Trillian and its storage,
	// nil with Remote.
	Embedded *Embedded
	Storage  storage.Provider
	// Collectors are an in-process Trillian's metrics, for a Prometheus
	// registry: Metrics() (trillian_*) and, on PostgreSQL, its connection
	// pool's (vigie_db_pool_*{db="trillian"}). None with Remote: that
	// Trillian exports its own.
	Collectors []prometheus.Collector

	closers []func() error
}

// Open brings Trillian up as cfg says: it opens the storage and starts
// Trillian in process (or connects to the remote one), finds or creates
// the tree, and returns the Log on it. Close undoes it; on error, Open
// closes what it opened.
func Open(ctx context.Context, cfg OpenConfig) (_ *Node, err error) {
	set := 0
	for _, s := range []string{strings.Join(cfg.Remote, ","), cfg.PostgreSQL, cfg.SQLite} {
		if s != "" {
			set++
		}
	}
	if set != 1 {
		return nil, errors.New("trillian: want exactly one of Remote, PostgreSQL and SQLite")
	}
	if cfg.TreeTimeout <= 0 {
		cfg.TreeTimeout = 30 * time.Second
	}
	n := &Node{}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	var ls storage.LogStorage // in process: read directly for batches of proofs
	if len(cfg.Remote) > 0 {
		r, err := Dial(cfg.Remote)
		if err != nil {
			return nil, err
		}
		n.closers = append(n.closers, r.Close)
		n.Clients, n.Where = r.Clients, "Trillian at "+strings.Join(cfg.Remote, ",")
	} else {
		if cfg.SQLite != "" {
			s, err := sqlite.Open(ctx, cfg.SQLite, sqlite.Options{})
			if err != nil {
				return nil, fmt.Errorf("open Trillian storage: %w", err)
			}
			n.Storage, n.Where = s, "SQLite "+cfg.SQLite
		} else {
			s, err := OpenPostgreSQL(ctx, cfg.PostgreSQL, processMetrics)
			if err != nil {
				return nil, err
			}
			n.Storage, n.Where = s, "PostgreSQL"
			n.Collectors = append(n.Collectors, sqldb.NewPoolCollector("trillian", s.pool))
		}
		n.Collectors = append(n.Collectors, processMetrics)
		n.closers = append(n.closers, n.Storage.Close)
		ls = n.Storage.LogStorage()
		n.Embedded, err = Start(ctx, Config{
			LogStorage:        n.Storage.LogStorage(),
			AdminStorage:      n.Storage.AdminStorage(),
			SequencerInterval: cfg.SequencerInterval,
			BatchSize:         cfg.BatchSize,
			MetricFactory:     processMetrics,
		})
		if err != nil {
			return nil, err
		}
		n.closers = append(n.closers, n.Embedded.Close)
		n.Clients = n.Embedded.Clients
	}
	tctx, cancel := context.WithTimeout(ctx, cfg.TreeTimeout)
	defer cancel()
	if n.Tree, err = EnsureTree(tctx, n.Clients, cfg.Tree); err != nil {
		return nil, err
	}
	if n.Log, err = NewLog(n.Clients, n.Tree, ls); err != nil {
		return nil, err
	}
	return n, nil
}

// Close stops the in-process Trillian, then closes its storage (or the
// connection to the remote one). It is idempotent.
func (n *Node) Close() error {
	var errs []error
	for i := len(n.closers) - 1; i >= 0; i-- {
		errs = append(errs, n.closers[i]())
	}
	n.closers = nil
	return errors.Join(errs...)
}
