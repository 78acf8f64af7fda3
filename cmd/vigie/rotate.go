package main

import (
	"context"
	"fmt"
	"io"

	"github.com/vigie-sante/vigie/cmd/vigie/internal/node"
)

// runRotateLogKey replaces the log's checkpoint key by a transition
// checkpoint signed by the old key and the new one (node.RotateLogKey),
// every node stopped.
func runRotateLogKey(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("rotate-log-key", stderr)
	dataDir := fs.String("data-dir", "vigie-data", "data directory whose keys directory holds the checkpoint key (embedded: the node's; cluster: the one vigie init ran on)")
	db := fs.String("db", "", "database URL: empty for the embedded SQLite files of --data-dir, or postgres://... (a cluster's)")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	r, err := node.RotateLogKey(ctx, node.Config{DataDir: *dataDir, DB: *db})
	if err != nil {
		fmt.Fprintf(stderr, "vigie rotate-log-key: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "The log %s now signs with %s\n(was %s, kept in %s).\n", r.Origin, r.NewKey, r.OldKey, r.Retired)
	fmt.Fprintf(stdout, "Transition checkpoint (served at /checkpoint/transitions):\n%s", r.Transition)
	if *db != "" {
		fmt.Fprintf(stdout, "Copy %s/checkpoint.key and checkpoint.pub to every node's keys directory, then start the nodes.\n", node.KeysDir(*dataDir))
	}
	return exitOK
}
