package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"

	"github.com/vigie-sante/vigie/cmd/vigie/internal/node"
)

func runInit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("init", stderr)
	var cfg nodeConfig
	cfg.initFlags(fs)
	fs.BoolVar(&cfg.hsm.create, "hsm-create-keys", false, "create the keys missing from the module (--hsm-*) under their labels: the checkpoint and receipt key pairs (Ed25519) and the key-encryption key (AES-256), none extractable")
	asJSON := fs.Bool("json", false, "print the result as one JSON object (tree_id as a string: it exceeds JSON's exact integers)")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	// Trillian's client chatter (klog) goes to debug, not shown.
	logger := newLogger(stderr, slog.LevelInfo)
	p, err := initLog(ctx, cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "vigie init: %v\n", err)
		return exitFailure
	}
	keysDir := node.KeysDir(cfg.dataDir)
	if abs, err := filepath.Abs(keysDir); err == nil {
		keysDir = abs
	}
	if *asJSON {
		json.NewEncoder(stdout).Encode(struct {
			TreeID        string `json:"tree_id"`
			Origin        string `json:"origin"`
			CheckpointKey string `json:"checkpoint_key"`
			ReceiptKey    string `json:"receipt_key"`
			Created       bool   `json:"created"`
			KeysDirectory string `json:"keys_directory"`
		}{strconv.FormatInt(p.TreeID, 10), p.Origin, p.CheckpointVerifier, p.ReceiptVerifier, p.Created, keysDir})
		return exitOK
	}
	what := "already pinned in the database; nothing changed"
	if p.Created {
		what = "created and pinned in the database"
	}
	fmt.Fprintf(stdout, "Trillian tree %d: the log %s (%s).\n", p.TreeID, p.Origin, what)
	if cfg.trillianAddr != "" {
		fmt.Fprintf(stdout, "Copy %s to every node's data directory, then start each with --trillian-tree-id %d.\n", keysDir, p.TreeID)
	}
	return exitOK
}

// initLog validates init's flags and makes the log once (node.Init).
func initLog(ctx context.Context, c nodeConfig, logger *slog.Logger) (*node.Pinned, error) {
	if err := c.validateInit(); err != nil {
		return nil, err
	}
	addrs, _ := c.trillianAddrs() // checked by validateInit
	module, err := c.hsm.open(c.hsm.create)
	if err != nil {
		return nil, err
	}
	if module != nil {
		defer module.Close()
	}
	return node.Init(ctx, node.Config{
		DataDir:       c.dataDir,
		DB:            c.db,
		TrillianAddrs: addrs,
		LogName:       c.logName,
		KEKFile:       c.kekFile,
		Logger:        logger,
		Module:        module,
	})
}
