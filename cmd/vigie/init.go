package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"github.com/vigie-sante/vigie/cmd/vigie/internal/node"
	"github.com/vigie-sante/vigie/ledger/verify"
)

func runInit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("init", stderr)
	var cfg nodeConfig
	cfg.initFlags(fs)
	fs.BoolVar(&cfg.hsm.create, "hsm-create-keys", false, "create the keys missing from the module (--hsm-*) under their labels: the checkpoint and receipt key pairs (Ed25519) and the key-encryption key (AES-256), none extractable")
	succeeds := fs.String("succeeds", "", "file of the latest published checkpoint (signed note) of the closed log this new log succeeds: recorded as the new log's first event; with --previous-key")
	previousKey := fs.String("previous-key", "", "the closed log's checkpoint verifier key (name+hash+key), under which --succeeds must verify")
	asJSON := fs.Bool("json", false, "print the result as one JSON object (tree_id as a string: it exceeds JSON's exact integers)")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	// Trillian's client chatter (klog) goes to debug, not shown.
	logger := newLogger(stderr, slog.LevelInfo)
	succ, err := readSuccession(*succeeds, *previousKey)
	if err != nil {
		fmt.Fprintf(stderr, "vigie init: %v\n", err)
		return exitUsage
	}
	p, err := initLog(ctx, cfg, succ, logger)
	if err != nil {
		fmt.Fprintf(stderr, "vigie init: %v\n", successionFlag(err))
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
	if succ != nil {
		fmt.Fprintf(stdout, "Its first event: this log succeeds %s at size %d (checkpoint verified under key %s).\n", succ.verified.Origin, succ.verified.Previous.Size, succ.verified.KeyID)
	}
	if cfg.trillianAddr != "" {
		fmt.Fprintf(stdout, "Copy %s to every node's data directory, then start each with --trillian-tree-id %d.\n", keysDir, p.TreeID)
	}
	return exitOK
}

// initLog validates init's flags and makes the log once (node.Init).
func initLog(ctx context.Context, c nodeConfig, succ *succession, logger *slog.Logger) (*node.Pinned, error) {
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
		Succession:    succ.node(),
	})
}

// A succession is init's --succeeds and --previous-key, checked.
type succession struct {
	node.Succession
	verified *verify.VerifiedSuccession
}

func (s *succession) node() *node.Succession {
	if s == nil {
		return nil
	}
	return &s.Succession
}

// readSuccession reads --succeeds and checks it under --previous-key
// before anything is made; nil without either flag.
func readSuccession(file, key string) (*succession, error) {
	switch {
	case file == "" && key == "":
		return nil, nil
	case file == "":
		return nil, errors.New("--previous-key needs --succeeds, the closed log's latest published checkpoint")
	case key == "":
		return nil, errors.New("--succeeds needs --previous-key, the closed log's checkpoint verifier key")
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("--succeeds: %w", err)
	}
	defer f.Close()
	cp, err := io.ReadAll(io.LimitReader(f, verify.MaxNoteSize+1))
	if err != nil {
		return nil, fmt.Errorf("--succeeds: %w", err)
	}
	_, vs, err := verify.NewSuccession(cp, key, "")
	if err != nil {
		return nil, successionFlag(err)
	}
	return &succession{Succession: node.Succession{Checkpoint: cp, Key: key}, verified: vs}, nil
}

// successionFlag names the flag of a succession refused.
func successionFlag(err error) error {
	var se *verify.SuccessionError
	if !errors.As(err, &se) {
		return err
	}
	flag := map[string]string{"key": "--previous-key", "checkpoint": "--succeeds", "origin": "--log-name", "log": "--data-dir"}[se.Field]
	if flag == "" {
		return err
	}
	return fmt.Errorf("%s: %w", flag, err)
}
