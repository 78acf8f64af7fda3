package node

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/keys"
)

// ModuleKeys are the keys a node holds in a hardware security module
// (ledger/keys/hsm, in a vigie built with -tags pkcs11).
type ModuleKeys struct {
	// Signers gives the checkpoint and receipt signers.
	Signers keys.Signers
	// KeyWrapper wraps patients' data keys.
	KeyWrapper ledger.KeyWrapper
	// Rewrap says that KeyWrapper, a ledger.Rewrapper, still opens keys
	// under former KEKs: the node rewraps them in the background
	// (Ledger.Rewrap), one node at a time.
	Rewrap bool
	// CheckpointKey, ReceiptKey and KEK say where each key is (a token's
	// label), for the errors that refuse them.
	CheckpointKey, ReceiptKey, KEK string
	// NextCheckpointKey, for RotateLogKey, says where the key the log's
	// checkpoint key is rotated to is; Signers gives it as role
	// "checkpoint-next".
	NextCheckpointKey string
	// Close, if not nil, closes the module; Node.Close calls it.
	Close func() error
}

// keysConfig is the keys.Config of cfg's keys.
func (cfg Config) keysConfig(dir, origin string, noCreate bool) keys.Config {
	kc := keys.Config{Dir: dir, KEKFile: cfg.KEKFile, Origin: origin, NoCreate: noCreate}
	if cfg.Module != nil {
		kc.Signers, kc.NoKEK = cfg.Module.Signers, true
	}
	return kc
}

// rewrapRetry is how long the rewrap duty waits after a failure, or while
// another node rewraps.
var rewrapRetry = 30 * time.Second

// rewrap runs Ledger.Rewrap until it finishes or ctx is done: one node at
// a time (its lease), again after an error.
func (n *Node) rewrap(ctx context.Context, logger *slog.Logger) {
	defer close(n.rewrapDone)
	if logger == nil {
		logger = slog.Default()
	}
	for {
		start := time.Now()
		count, err := n.Ledger.Rewrap(ctx)
		switch {
		case err == nil:
			logger.Info("node: data keys rewrapped under the current key-encryption key; the old ones may be removed from the module once every node runs with the current one and a pass begun after that finds none left", "rewrapped", count, "took", time.Since(start).Round(time.Millisecond))
			return
		case ctx.Err() != nil:
			return
		case errors.Is(err, ledger.ErrLeaseHeld):
		default:
			logger.Warn("node: rewrap data keys", "rewrapped", count, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(rewrapRetry):
		}
	}
}
