package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/keys"
)

// Rotated is what RotateLogKey did.
type Rotated struct {
	Origin string
	// Transition is the transition checkpoint, signed by both keys.
	Transition []byte
	// OldKey and NewKey are the checkpoint's verifier keys before and
	// after.
	OldKey, NewKey string
	// Retired is the file the old key was moved to (with keys in a
	// module: where the old key stays).
	Retired string
}

// RotateLogKey replaces the log's checkpoint key (keys/checkpoint.key)
// with a new one, every node stopped: it makes the new key
// (keys/checkpoint-next.key and .pub, kept if a former run made them),
// has the database save the transition checkpoint signed by both
// (ledger.RotateCheckpointKey, under the checkpointer's lease), then
// moves the old key to keys/checkpoint-retired-<n>.key and the new one
// in its place. A run interrupted after the transition was saved only
// moves the files when run again. Of cfg it reads DataDir, DB and Module:
// with keys in a module, the old key is its "checkpoint" signer and the
// new one its "checkpoint-next" (cfg.Module.NextCheckpointKey); no file
// moves, the operator then starts the nodes with the new key's label.
func RotateLogKey(ctx context.Context, cfg Config) (_ *Rotated, err error) {
	if cfg.Module != nil && cfg.Module.NextCheckpointKey == "" {
		return nil, errors.New("rotate: the checkpoint key is in a module: the new key's label is required")
	}
	db, store, err := openDB(ctx, cfg, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	origin, err := ledger.SavedOrigin(ctx, store)
	if err != nil {
		return nil, fmt.Errorf("rotate: the log's origin (has a node run on this database?): %w", err)
	}
	dir := KeysDir(cfg.DataDir)
	var signers keys.Signers = keys.Dir(dir)
	if cfg.Module != nil {
		signers = cfg.Module.Signers
	} else if _, err := os.Stat(filepath.Join(dir, "checkpoint.key")); err != nil {
		// Signer would make a missing key: the current one must exist.
		return nil, fmt.Errorf("rotate: %w", err)
	}
	current, currentKey, err := signers.Signer("checkpoint", origin)
	if err != nil {
		return nil, err
	}
	next, nextKey, err := signers.Signer("checkpoint-next", origin)
	if err != nil {
		return nil, err
	}
	if nextKey == currentKey {
		return nil, errors.New("rotate: the new checkpoint key is the current one")
	}
	r := &Rotated{Origin: origin, OldKey: currentKey, NewKey: nextKey}
	var first string
	var ts [][]byte
	err = store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
		first, ts, err = ledger.CheckpointKeys(ctx, tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("rotate: the log's checkpoint key: %w", err)
	}
	logKey, err := ledger.CurrentCheckpointKey(first, ts)
	if err != nil {
		return nil, fmt.Errorf("rotate: %w", err)
	}
	if logKey == nextKey && len(ts) > 0 {
		r.Transition = ts[len(ts)-1] // saved by a run that stopped before the files moved
	} else if r.Transition, err = ledger.RotateCheckpointKey(ctx, store, ledger.NewOwner(), current, next, nextKey); err != nil {
		return nil, err
	}
	if cfg.Module != nil {
		r.Retired = cfg.Module.CheckpointKey
		return r, nil
	}
	if r.Retired, err = retire(dir); err != nil {
		return nil, err
	}
	for _, ext := range []string{".key", ".pub"} {
		if err := os.Rename(filepath.Join(dir, "checkpoint-next"+ext), filepath.Join(dir, "checkpoint"+ext)); err != nil {
			return nil, fmt.Errorf("rotate: %w", err)
		}
	}
	return r, syncDir(dir)
}

// retire moves checkpoint.key and .pub to the first free
// checkpoint-retired-<n>.key and .pub, and returns the key's path.
func retire(dir string) (string, error) {
	for n := 1; ; n++ {
		base := filepath.Join(dir, "checkpoint-retired-"+strconv.Itoa(n))
		if _, err := os.Lstat(base + ".key"); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("rotate: %w", err)
		}
		for _, ext := range []string{".key", ".pub"} {
			if err := os.Rename(filepath.Join(dir, "checkpoint"+ext), base+ext); err != nil {
				return "", fmt.Errorf("rotate: %w", err)
			}
		}
		return base + ".key", nil
	}
}
