package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"k8s.io/klog/v2"
)

type serveConfig struct {
	node     nodeConfig
	logLevel slog.Level
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("serve", stderr)
	var cfg serveConfig
	cfg.node.flags(fs)
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

// drainTimeout bounds how long a shutdown waits for the outbox to drain.
const drainTimeout = 30 * time.Second

// serve runs the service until ctx is done (SIGINT or SIGTERM), then shuts
// down in order: nothing new is accepted, work in flight finishes, the
// outbox drains, storage closes last.
func serve(ctx context.Context, cfg serveConfig, stdout io.Writer, logger *slog.Logger) error {
	n, err := openNode(ctx, cfg.node, logger)
	if err != nil {
		return err
	}
	defer n.close(context.Background())

	fmt.Fprintf(stdout, "Vigie %s is running.\n", versionString())
	fmt.Fprintf(stdout, "  ledger: Trillian tree %d (%s) on %s\n", n.tree.TreeId, n.tree.TreeType, n.where)
	fmt.Fprintf(stdout, "  log origin: %s\n", n.origin)
	fmt.Fprintf(stdout, "  checkpoint key: %s\n", n.keys.checkpointVerifier)
	fmt.Fprintf(stdout, "  receipt key: %s\n", n.keys.receiptVerifier)
	fmt.Fprintln(stdout, "Stop it with Ctrl+C (SIGINT) or SIGTERM.")
	logger.Info("ready", "tree_id", n.tree.TreeId, "origin", n.origin, "trillian", n.where)

	<-ctx.Done()
	logger.Info("shutting down")
	dctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := n.close(dctx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	logger.Info("stopped")
	return nil
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
