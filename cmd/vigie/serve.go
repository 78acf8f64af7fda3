package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"k8s.io/klog/v2"

	"github.com/vigie-sante/vigie/api/apiserver"
	"github.com/vigie-sante/vigie/api/gateway/portal"
	"github.com/vigie-sante/vigie/api/server"
	"github.com/vigie-sante/vigie/cmd/vigie/internal/node"
)

type serveConfig struct {
	node      nodeConfig
	api       apiConfig
	logLevel  slog.Level
	logFormat logFormat
	trace     traceConfig
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("serve", stderr)
	var cfg serveConfig
	cfg.node.flags(fs)
	fs.StringVar(&cfg.node.publishedCheckpoint, "published-checkpoint", "", "file of the latest checkpoint the log published (a signed note, e.g. saved from /checkpoint); checked at start: if it is beyond this node's log (a restored backup), the node records nothing, signs nothing and is not ready. Required after vigie restore")
	fs.StringVar(&cfg.node.witnessPolicy, "witness-policy", "", "file of the witness policy (Sigsum format: log, witness NAME KEY URL, group, quorum): each checkpoint is submitted to its witnesses, and /checkpoint serves the newest checkpoint their cosignatures meet the quorum of")
	cfg.api.flags(fs)
	cfg.trace.flags(fs)
	fs.TextVar(&cfg.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	fs.Var(&cfg.logFormat, "log-format", "log lines on standard error: text (key=value) or json (one object a line)")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	logger := newLoggerAs(stderr, cfg.logLevel, cfg.logFormat)
	if err := serve(ctx, cfg, stdout, logger); err != nil {
		fmt.Fprintf(stderr, "vigie serve: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// serve runs the service until ctx is done (SIGINT or SIGTERM), then shuts
// down in order: health checks report NOT_SERVING, nothing new is
// accepted, calls in flight finish, the outbox drains, storage closes
// last.
func serve(ctx context.Context, cfg serveConfig, stdout io.Writer, logger *slog.Logger) error {
	if err := cfg.api.validate(); err != nil {
		return err
	}
	if err := cfg.node.requireLogName(cfg.api.grpcAddr, cfg.api.httpAddr); err != nil {
		return err
	}
	stopTracing, err := startTracing(ctx, cfg.trace)
	if err != nil {
		return err
	}
	// Last: the spans of the shutdown itself are flushed too.
	defer stopTracing(context.Background())
	n, err := openNode(ctx, cfg.node, logger)
	if err != nil {
		return err
	}
	defer n.Close(context.Background())
	if cfg.node.db == "" && cfg.node.trillianAddr == "" {
		// vigie backup's way in: the embedded mode's files are locked.
		// Without it the node still serves (a data directory's path too
		// long for a socket, for one).
		if err := n.ServeBackups(ctx, versionString()); err != nil {
			logger.Warn("vigie backup will not reach this node", "err", err)
		}
	}
	a, err := startAPI(ctx, cfg.api, n, logger)
	if err != nil {
		return err
	}
	defer a.Stop(context.Background())
	a.MarkReady()
	printBanner(stdout, n, a)
	grpcURL, httpURL := a.URLs()
	logger.Info("ready", "tree_id", n.Tree.TreeId, "origin", n.Origin, "trillian", n.Where, "grpc", grpcURL, "http", httpURL)

	var stopErr error
	select {
	case <-ctx.Done():
	case err := <-a.Done():
		logger.Error("a listener stopped", "err", err)
	case <-n.Lost():
		// Another node may run Trillian in process on the same storage:
		// stop at once, with an error, so that a supervisor restarts this
		// one, which then waits for the lease.
		stopErr = errors.New("the in-process Trillian's lease was lost; several nodes need an external Trillian (--trillian)")
		logger.Error("stopping", "err", stopErr)
	}
	logger.Info("shutting down")
	dctx, cancel := context.WithTimeout(context.Background(), cfg.api.drainTimeout)
	defer cancel()
	a.Stop(dctx)
	if err := n.Close(dctx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	if stopErr != nil {
		return stopErr
	}
	logger.Info("stopped")
	return nil
}

// examplePatient is a made-up INS (valid control key) for the examples.
const examplePatient = "279035121518989"

// printBanner tells the person who started Vigie where it is and how to
// try it.
func printBanner(w io.Writer, n *node.Node, a *apiserver.API) {
	grpcURL, httpURL := a.URLs()
	fmt.Fprintf(w, "Vigie %s is running.\n", versionString())
	if n.Halted != nil {
		fmt.Fprintf(w, "  REFUSING TO RECORD OR SIGN (not ready): %v\n", n.Halted)
	}
	fmt.Fprintf(w, "  gRPC API:       %s\n", grpcURL)
	if httpURL != "" {
		fmt.Fprintf(w, "  HTTP API:       %s  (checkpoint: %s/checkpoint)\n", httpURL, httpURL)
		how := "patients and auditors sign in with a token"
		if p := a.SignIn(); p != "" {
			how = "patients sign in with " + p + ", or a token"
		}
		fmt.Fprintf(w, "  portal:         %s%s  (%s)\n", httpURL, portal.Prefix, how)
	}
	if m := a.MetricsURL(); m != "" {
		fmt.Fprintf(w, "  metrics:        %s\n", m)
	}
	fmt.Fprintf(w, "  ledger:         Trillian tree %d (%s) on %s\n", n.Tree.TreeId, n.Tree.TreeType, n.Where)
	fmt.Fprintf(w, "  log origin:     %s\n", n.Origin)
	fmt.Fprintf(w, "  checkpoint key: %s\n", n.Keys.CheckpointVerifier)
	fmt.Fprintf(w, "  receipt key:    %s\n", n.Keys.ReceiptVerifier)
	fmt.Fprintf(w, "  national rules: version %d%s\n", n.Consent.Rules().Version(), illustrativeNote(n))
	if httpURL != "" {
		self := os.Args[0]
		fmt.Fprintf(w, "\nTry it (a hospital's software asks whether a physician may read a patient's record):\n\n")
		fmt.Fprintf(w, "  TOKEN=$(%s token --data-dir %s --role service --sub hospital-his --org 750712184)\n", self, n.DataDir)
		fmt.Fprintf(w, "  curl -sS -H \"Authorization: Bearer $TOKEN\" %s/v1/access:check -d '{\"request_id\": \"try-1\", \"patient_ins\": \"%s\", \"actor\": {\"rpps\": \"10000000001\", \"profession\": \"10\", \"organization\": \"750712184\", \"sector\": \"care\", \"care_team\": true}, \"action\": \"ACTION_READ\", \"resource\": {\"record\": {}}, \"purpose_of_use\": \"PURPOSE_OF_USE_TREAT\"}'\n\n", httpURL, examplePatient)
		fmt.Fprintf(w, "Then, as that patient, list who read the file:\n\n")
		fmt.Fprintf(w, "  TOKEN=$(%s token --data-dir %s --role patient --sub %s)\n", self, n.DataDir, examplePatient)
		fmt.Fprintf(w, "  curl -sS -H \"Authorization: Bearer $TOKEN\" %s/v1/me/accesses\n\n", httpURL)
	}
	fmt.Fprintln(w, "Stop it with Ctrl+C (SIGINT) or SIGTERM.")
}

func illustrativeNote(n *node.Node) string {
	if n.Consent.Rules().Illustrative() {
		return " (ILLUSTRATIVE: not the official rules; load them with --national-rules)"
	}
	return ""
}

// logFormat is the value of --log-format: text (the default) or json.
type logFormat string

const (
	logText logFormat = "text"
	logJSON logFormat = "json"
)

func (f *logFormat) String() string {
	if f == nil || *f == "" {
		return string(logText)
	}
	return string(*f)
}

func (f *logFormat) Set(s string) error {
	switch logFormat(s) {
	case logText, logJSON:
		*f = logFormat(s)
		return nil
	}
	return errors.New("want text or json")
}

// newLogger returns a text logger (see newLoggerAs).
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return newLoggerAs(w, level, logText)
}

// newLoggerAs returns the service's logger, writing in format (slog's
// text or JSON handler). Trillian logs through klog, into the same
// handler; its chatter goes to debug (info, and warnings too: klog hands
// them to a logr sink as info), its errors stay.
func newLoggerAs(w io.Writer, level slog.Level, format logFormat) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var out slog.Handler = slog.NewTextHandler(w, opts)
	if format == logJSON {
		out = slog.NewJSONHandler(w, opts)
	}
	// Every line, whoever writes it, goes through the one redaction.
	h := server.RedactingHandler(out)
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
