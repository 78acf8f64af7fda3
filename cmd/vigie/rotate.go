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
	var h hsmFlags
	h.flags(fs)
	fs.StringVar(&h.nextCheckpointKey, "hsm-next-checkpoint-key", "", "with --hsm-module: label of the new checkpoint key pair (Ed25519), made in the module if missing; --hsm-checkpoint-key is the current one")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if (h.module == "") != (h.nextCheckpointKey == "") {
		fmt.Fprintln(stderr, "vigie rotate-log-key: --hsm-module and --hsm-next-checkpoint-key go together")
		return exitUsage
	}
	module, err := h.open(false)
	if err != nil {
		fmt.Fprintf(stderr, "vigie rotate-log-key: %v\n", err)
		return exitFailure
	}
	if module != nil {
		defer module.Close()
	}
	r, err := node.RotateLogKey(ctx, node.Config{DataDir: *dataDir, DB: *db, Module: module})
	if err != nil {
		fmt.Fprintf(stderr, "vigie rotate-log-key: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "The log %s now signs with %s\n(was %s, kept in %s).\n", r.Origin, r.NewKey, r.OldKey, r.Retired)
	fmt.Fprintf(stdout, "Transition checkpoint (served at /checkpoint/transitions):\n%s", r.Transition)
	if module != nil {
		fmt.Fprintf(stdout, "Start every node with --hsm-checkpoint-key %s (instead of %s); the old key may stay in the module, no node can sign with it any more.\n", h.nextCheckpointKey, h.checkpointKey)
	} else if *db != "" {
		fmt.Fprintf(stdout, "Copy %s/checkpoint.key and checkpoint.pub to every node's keys directory, then start the nodes.\n", node.KeysDir(*dataDir))
	}
	return exitOK
}
