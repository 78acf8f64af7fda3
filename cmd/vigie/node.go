package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/cmd/vigie/internal/node"
	"github.com/vigie-sante/vigie/ledger/keys"
	"github.com/vigie-sante/vigie/ledger/trillian"
	"github.com/vigie-sante/vigie/ledger/verify"
)

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

	// publishedCheckpoint is --published-checkpoint's file (serve only).
	publishedCheckpoint string
	// witnessPolicy is --witness-policy's file (serve only).
	witnessPolicy string

	// hsm says where the keys are if they are in a hardware security
	// module (--hsm-*; built with -tags pkcs11).
	hsm hsmFlags
}

func (c *nodeConfig) flags(fs *flag.FlagSet) {
	c.initFlags(fs)
	fs.Int64Var(&c.treeID, "trillian-tree-id", 0, "ID of the Trillian tree to use (vigie init prints it), required with --trillian; in process, 0 finds (or creates) the tree named \""+trillian.TreeName+"\"")
	fs.DurationVar(&c.sequencerInterval, "sequencer-interval", trillian.DefaultSequencerInterval, "in-process Trillian: time between sequencing runs")
	fs.IntVar(&c.sequencerBatch, "sequencer-batch", trillian.DefaultBatchSize, "in-process Trillian: most leaves integrated per sequencing run")
	fs.StringVar(&c.rulesFile, "national-rules", "", "file of the national access rules (JSON, canonical form); default: the illustrative rules built in. A version above the stored one is published at start")
	fs.DurationVar(&c.checkpointInterval, "checkpoint-interval", time.Second, "least time between two signed checkpoints")
	fs.DurationVar(&c.mergeDelay, "merge-delay", 10*time.Second, "maximum merge delay promised by receipts")
	fs.DurationVar(&c.requestIDRetention, "request-id-retention", 24*time.Hour, "how long a retry with the same request_id gets the first answer back; after it, FAILED_PRECONDITION (never a new decision under the same id)")
	fs.DurationVar(&c.sendStallAfter, "send-stall-after", 30*time.Second, "how long sending events to the log may fail without a break before /readyz reports the node not ready")
}

// initFlags are the flags of vigie init, a part of a node's.
func (c *nodeConfig) initFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.dataDir, "data-dir", "vigie-data", "directory of Vigie's files: keys, and the SQLite databases in embedded mode")
	fs.StringVar(&c.db, "db", "", "database URL: empty for SQLite files in the data directory (embedded), or postgres://... for PostgreSQL")
	fs.StringVar(&c.trillianAddr, "trillian", "", "addresses (host:port[,host:port...]) of external Trillian log servers on one storage (cluster mode: a node creates no tree and no key, vigie init does); empty runs Trillian in process")
	fs.StringVar(&c.logName, "log-name", "", "the log's name (a DNS name of the operator's), the start of every checkpoint's origin; saved at first start, never changes. Required at first start when an API listens beyond loopback; default on loopback: vigie.localhost")
	fs.StringVar(&c.kekFile, "kek-file", "", "file of the key-encryption key (default <data dir>/keys/kek)")
	c.hsm.flags(fs)
}

// trillianAddrs returns --trillian's list of addresses.
func (c *nodeConfig) trillianAddrs() ([]string, error) {
	if c.trillianAddr == "" {
		return nil, nil
	}
	addrs := strings.Split(c.trillianAddr, ",")
	for _, a := range addrs {
		if host, port, err := net.SplitHostPort(strings.TrimSpace(a)); err != nil || host == "" || port == "" {
			return nil, errors.New("--trillian: want host:port[,host:port...]")
		}
	}
	for i := range addrs {
		addrs[i] = strings.TrimSpace(addrs[i])
	}
	return addrs, nil
}

// validateInit checks the flags of initFlags.
func (c *nodeConfig) validateInit() error {
	if _, err := c.trillianAddrs(); err != nil {
		return err
	}
	if c.db != "" && !strings.HasPrefix(c.db, "postgres://") && !strings.HasPrefix(c.db, "postgresql://") {
		return errors.New("--db: want a postgres:// URL, or nothing for the embedded SQLite files")
	}
	return nil
}

func (c *nodeConfig) validate() error {
	if err := c.validateInit(); err != nil {
		return err
	}
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
	}
	return nil
}

// requireLogName refuses to serve beyond loopback (on any of listen's
// addresses) without --log-name, unless the data directory already has
// a name: the name is in every checkpoint's origin for ever, and the
// default, vigie.localhost, names nobody's log. An address that is not
// host:port is left to the listener to refuse.
func (c *nodeConfig) requireLogName(listen ...string) error {
	if c.logName != "" || c.trillianAddr != "" {
		// With --trillian, the name is the database's, pinned by vigie
		// init.
		return nil
	}
	for _, addr := range listen {
		if err := auth.LoopbackAddr(addr); !errors.Is(err, auth.ErrNotLoopback) {
			continue
		}
		saved, err := keys.SavedLogName(node.KeysDir(c.dataDir))
		if err != nil || saved != "" {
			return err
		}
		return fmt.Errorf("--log-name is required to listen beyond loopback (%s): it starts every checkpoint's origin, for ever", addr)
	}
	return nil
}

// openNode validates the flags and opens the node they describe.
func openNode(ctx context.Context, c nodeConfig, logger *slog.Logger) (*node.Node, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	addrs, _ := c.trillianAddrs() // checked by validate
	var policy *verify.WitnessPolicy
	if c.witnessPolicy != "" {
		b, err := os.ReadFile(c.witnessPolicy)
		if err != nil {
			return nil, fmt.Errorf("--witness-policy: %w", err)
		}
		if policy, err = verify.ParseWitnessPolicy(b); err != nil {
			return nil, fmt.Errorf("--witness-policy: %w", err)
		}
	}
	module, err := c.hsm.open(false)
	if err != nil {
		return nil, err
	}
	n, err := node.Open(ctx, node.Config{
		DataDir:            c.dataDir,
		DB:                 c.db,
		TrillianAddrs:      addrs,
		TreeID:             c.treeID,
		SequencerInterval:  c.sequencerInterval,
		SequencerBatch:     c.sequencerBatch,
		LogName:            c.logName,
		KEKFile:            c.kekFile,
		RulesFile:          c.rulesFile,
		CheckpointInterval: c.checkpointInterval,
		MergeDelay:         c.mergeDelay,
		SendStallAfter:     c.sendStallAfter,
		RequestIDRetention: c.requestIDRetention,
		Logger:             logger,
		Module:             module,

		PublishedCheckpointFile: c.publishedCheckpoint,
		WitnessPolicy:           policy,
	})
	if err != nil && module != nil {
		module.Close()
	}
	return n, err
}
