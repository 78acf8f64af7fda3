package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/cmd/vigie/internal/node"
	"github.com/vigie-sante/vigie/ledger/keys"
	"github.com/vigie-sante/vigie/ledger/trillian"
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
}

func (c *nodeConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.dataDir, "data-dir", "vigie-data", "directory of Vigie's files: keys, and the SQLite databases in embedded mode")
	fs.StringVar(&c.db, "db", "", "database URL: empty for SQLite files in the data directory (embedded), or postgres://... for PostgreSQL")
	fs.StringVar(&c.trillianAddr, "trillian", "", "address (host:port) of an external Trillian log server; empty runs Trillian in process")
	fs.Int64Var(&c.treeID, "trillian-tree-id", 0, "ID of the Trillian tree to use; 0 finds (or creates) the tree named \""+trillian.TreeName+"\"")
	fs.DurationVar(&c.sequencerInterval, "sequencer-interval", 100*time.Millisecond, "in-process Trillian: time between sequencing runs")
	fs.IntVar(&c.sequencerBatch, "sequencer-batch", 1000, "in-process Trillian: most leaves integrated per sequencing run")
	fs.StringVar(&c.logName, "log-name", "", "the log's name (a DNS name of the operator's), the start of every checkpoint's origin; saved at first start, never changes. Required at first start when an API listens beyond loopback; default on loopback: vigie.localhost")
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

// requireLogName refuses to serve beyond loopback (on any of listen's
// addresses) without --log-name, unless the data directory already has
// a name: the name is in every checkpoint's origin for ever, and the
// default, vigie.localhost, names nobody's log. An address that is not
// host:port is left to the listener to refuse.
func (c *nodeConfig) requireLogName(listen ...string) error {
	if c.logName != "" {
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
	return node.Open(ctx, node.Config{
		DataDir:            c.dataDir,
		DB:                 c.db,
		TrillianAddr:       c.trillianAddr,
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
	})
}
