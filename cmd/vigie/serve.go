package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	tpb "github.com/google/trillian"
	"github.com/google/trillian/storage"
	"k8s.io/klog/v2"

	vtrillian "github.com/vigie-sante/vigie/ledger/trillian"
	"github.com/vigie-sante/vigie/ledger/trillian/sqlite"
)

// treeName is the display name of Vigie's Trillian tree, found again at
// every start.
const treeName = "vigie"

type serveConfig struct {
	dataDir           string
	db                string
	trillianAddr      string
	treeID            int64
	sequencerInterval time.Duration
	sequencerBatch    int
	logLevel          slog.Level
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("serve", stderr)
	var cfg serveConfig
	fs.StringVar(&cfg.dataDir, "data-dir", "vigie-data", "directory of Vigie's files: SQLite databases and keys (embedded mode)")
	fs.StringVar(&cfg.db, "db", "", "database URL: empty for SQLite files in the data directory (embedded), or postgres://... for PostgreSQL")
	fs.StringVar(&cfg.trillianAddr, "trillian", "", "address (host:port) of an external Trillian log server; empty runs Trillian in process")
	fs.Int64Var(&cfg.treeID, "trillian-tree-id", 0, "ID of the Trillian tree to use; 0 finds (or creates) the tree named \""+treeName+"\"")
	fs.DurationVar(&cfg.sequencerInterval, "sequencer-interval", 100*time.Millisecond, "in-process Trillian: time between sequencing runs")
	fs.IntVar(&cfg.sequencerBatch, "sequencer-batch", 1000, "in-process Trillian: most leaves integrated per sequencing run")
	fs.TextVar(&cfg.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	logger := newLogger(stderr, cfg.logLevel)
	if err := serve(ctx, cfg, stdout, logger); err != nil {
		fmt.Fprintf(stderr, "vigie serve: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// serve runs the service until ctx is done (SIGINT or SIGTERM), then shuts
// down in order: nothing new is accepted, work in flight finishes, storage
// closes last.
func serve(ctx context.Context, cfg serveConfig, stdout io.Writer, logger *slog.Logger) error {
	if cfg.sequencerBatch <= 0 {
		return errors.New("--sequencer-batch must be positive")
	}
	if cfg.sequencerInterval <= 0 {
		return errors.New("--sequencer-interval must be positive")
	}
	lg, err := openLedger(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer lg.close()

	fmt.Fprintf(stdout, "Vigie %s is running.\n", versionString())
	fmt.Fprintf(stdout, "  ledger: Trillian tree %d (%s) on %s\n", lg.tree.TreeId, lg.tree.TreeType, lg.where)
	fmt.Fprintln(stdout, "Stop it with Ctrl+C (SIGINT) or SIGTERM.")
	logger.Info("ready", "tree_id", lg.tree.TreeId, "trillian", lg.where)

	<-ctx.Done()
	logger.Info("shutting down")
	if err := lg.close(); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// ledger holds the Trillian side of the service.
type ledger struct {
	clients vtrillian.Clients
	tree    *tpb.Tree
	where   string
	closers []func() error // run in reverse order
	closed  bool
}

func (l *ledger) close() error {
	if l.closed {
		return nil
	}
	l.closed = true
	var errs []error
	for i := len(l.closers) - 1; i >= 0; i-- {
		errs = append(errs, l.closers[i]())
	}
	return errors.Join(errs...)
}

func openLedger(ctx context.Context, cfg serveConfig, logger *slog.Logger) (_ *ledger, err error) {
	lg := &ledger{}
	defer func() {
		if err != nil {
			lg.close()
		}
	}()
	spec := vtrillian.TreeSpec{TreeID: cfg.treeID, DisplayName: treeName, Type: tpb.TreeType_PREORDERED_LOG}

	if cfg.trillianAddr != "" {
		r, err := vtrillian.Dial(cfg.trillianAddr)
		if err != nil {
			return nil, err
		}
		lg.closers = append(lg.closers, r.Close)
		lg.clients = r.Clients
		lg.where = "Trillian at " + cfg.trillianAddr
	} else {
		var p storage.Provider
		switch {
		case cfg.db == "":
			dir, err := prepareDataDir(cfg.dataDir)
			if err != nil {
				return nil, err
			}
			path := filepath.Join(dir, "trillian.db")
			s, err := sqlite.Open(ctx, path, sqlite.Options{})
			if err != nil {
				return nil, fmt.Errorf("open Trillian storage: %w", err)
			}
			p, lg.where = s, "SQLite "+path
		case strings.HasPrefix(cfg.db, "postgres://") || strings.HasPrefix(cfg.db, "postgresql://"):
			s, err := vtrillian.OpenPostgreSQL(ctx, cfg.db, nil)
			if err != nil {
				return nil, err
			}
			p, lg.where = s, "PostgreSQL"
		default:
			return nil, errors.New("--db: want a postgres:// URL, or nothing for the embedded SQLite files")
		}
		lg.closers = append(lg.closers, p.Close)
		e, err := vtrillian.Start(ctx, vtrillian.Config{
			LogStorage:        p.LogStorage(),
			AdminStorage:      p.AdminStorage(),
			SequencerInterval: cfg.sequencerInterval,
			BatchSize:         cfg.sequencerBatch,
		})
		if err != nil {
			return nil, err
		}
		lg.closers = append(lg.closers, e.Close)
		lg.clients = e.Clients
	}

	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	lg.tree, err = vtrillian.EnsureTree(tctx, lg.clients, spec)
	if err != nil {
		return nil, err
	}
	logger.Debug("trillian tree", "tree_id", lg.tree.TreeId)
	return lg, nil
}

// prepareDataDir creates the data directory (owner-only) if needed and
// returns its absolute path.
func prepareDataDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("data directory: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", fmt.Errorf("create data directory: %w", err)
	}
	return abs, nil
}

// newLogger returns the service's logger. Trillian logs through klog; its
// chatter (info) goes to debug, its warnings and errors stay.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	h := slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
	klog.SetSlogLogger(slog.New(demote{h}).With("component", "trillian"))
	return slog.New(h)
}

// demote lowers records below warning to debug.
type demote struct{ slog.Handler }

func (d demote) Enabled(ctx context.Context, l slog.Level) bool {
	if l < slog.LevelWarn {
		l = slog.LevelDebug
	}
	return d.Handler.Enabled(ctx, l)
}

func (d demote) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		r.Level = slog.LevelDebug
	}
	return d.Handler.Handle(ctx, r)
}

func (d demote) WithAttrs(as []slog.Attr) slog.Handler { return demote{d.Handler.WithAttrs(as)} }
func (d demote) WithGroup(g string) slog.Handler       { return demote{d.Handler.WithGroup(g)} }
