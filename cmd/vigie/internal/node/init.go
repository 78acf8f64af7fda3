package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	tpb "github.com/google/trillian"

	"github.com/vigie-sante/vigie/consent/consentsql"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/keys"
	"github.com/vigie-sante/vigie/ledger/trillian"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// Pinned is what Init pinned in the database: the log's tree, its
// origin and its verifier keys (public).
type Pinned struct {
	TreeID int64
	Origin string
	// CheckpointVerifier and ReceiptVerifier are the verifier keys, in
	// note's text form.
	CheckpointVerifier, ReceiptVerifier string
	// Created is true when this run created the tree and pinned it; false
	// when the database already had its log (nothing changed).
	Created bool
}

// beforePin, if set (by tests), is called by Init once it has its tree
// and keys, before it pins them.
var beforePin func()

// keyFiles are the files of a keys directory that Init may create.
var keyFiles = []string{"log-name", "pseudonym.key", "checkpoint.key", "checkpoint.pub", "receipt.key", "receipt.pub"}

// Init makes a log once, for the nodes of a cluster: it creates the
// Trillian tree (a new PREORDERED_LOG; with Trillian in process, the one
// a first start finds or creates by name) and the keys (in cfg.DataDir's
// keys directory, and cfg.KEKFile; the API's keys too, keys.CreateShared,
// which every node must share), and pins the origin (which holds the
// tree's ID) and every key's check in the database, as a node's first
// start does (ledger.New). Of cfg it reads DataDir, DB, TrillianAddrs,
// LogName, KEKFile, Succession and the in-process sequencer's settings.
// With Succession, it records the old log's checkpoint and key as the
// log's first event, and refuses a log that has an event already.
//
// Run again on a database that has its log, it creates nothing: it
// checks the keys of cfg.DataDir against the database (a missing key is
// an error, a different one is refused, named) and returns the same
// tree. It also runs the database's migrations and its once-per-database
// conversions (consentsql.SealAtRest), so that nodes started together
// afterwards find them done. Runs at once on one database: the first to
// pin the origin wins; a loser deletes the tree it created and the key
// files it made, and fails (if it shared the winner's data directory, it
// waits for the winner and returns its tree). A run that stopped before
// pinning left keys naming its tree: the next run takes that tree again,
// if it is still empty.
func Init(ctx context.Context, cfg Config) (_ *Pinned, err error) {
	dataDir, err := PrepareDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	keysDir := KeysDir(dataDir)
	if err := os.MkdirAll(keysDir, 0o700); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	// Runs sharing a data directory take turns: the later one finds the
	// log pinned, and the key files it would remove are never another
	// run's.
	unlock, err := lockDir(keysDir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	db, store, err := openDB(ctx, cfg, dataDir)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	name, pinned, err := pinnedLog(ctx, store)
	if err != nil {
		return nil, err
	}
	tc := trillianConfig(cfg, dataDir)
	created := map[string]bool{} // files this run makes, removed if it loses
	if pinned != 0 {
		if cfg.LogName != "" && cfg.LogName != name {
			return nil, fmt.Errorf("--log-name %q: this database's log is named %q, which never changes", cfg.LogName, name)
		}
		tc.Tree.TreeID = pinned
	} else {
		kek := cfg.KEKFile
		if kek == "" {
			kek = filepath.Join(keysDir, "kek")
		}
		for _, f := range keyFiles {
			created[filepath.Join(keysDir, f)] = true
		}
		for _, f := range keys.SharedFiles(keysDir) {
			created[f] = true
		}
		created[kek] = true
		for f := range created {
			if _, err := os.Lstat(f); !errors.Is(err, fs.ErrNotExist) {
				delete(created, f)
			}
		}
		if name, err = keys.LogName(keysDir, cfg.LogName); err != nil {
			return nil, err
		}
		// Keys made by a run that stopped before pinning name its tree:
		// take it again rather than make another.
		origin, err := keys.SavedOrigin(keysDir)
		if err != nil {
			return nil, err
		}
		if origin != "" {
			_, id, err := verify.ParseOrigin(origin)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", filepath.Join(keysDir, "checkpoint.pub"), err)
			}
			tc.Tree.TreeID = id
		} else {
			// A cluster's nodes find the tree by its ID: a new one, so
			// that a run that loses knows the tree it deletes is its own.
			// In process, nodes find it by its name, as at a first start.
			tc.Tree.New = len(cfg.TrillianAddrs) > 0
		}
	}
	tn, err := trillian.Open(ctx, tc)
	if err != nil {
		return nil, errors.Join(err, removeFiles(created))
	}
	defer tn.Close()
	treeID := tn.Tree.TreeId
	defer func() {
		if err == nil || pinned != 0 {
			return
		}
		// Undo this run if the database pins another tree, or none: a tree
		// the database pins is never deleted.
		_, now, rerr := pinnedLog(context.WithoutCancel(ctx), store)
		if rerr != nil || now == treeID {
			return
		}
		if tc.Tree.New {
			_, derr := tn.Admin.DeleteTree(context.WithoutCancel(ctx), &tpb.DeleteTreeRequest{TreeId: treeID})
			err = errors.Join(err, derr)
		}
		err = errors.Join(err, removeFiles(created))
		if now != 0 {
			err = fmt.Errorf("another vigie init pinned tree %d first: copy the keys directory of its data directory to %s and run vigie init again: %w", now, keysDir, err)
		}
	}()

	if pinned == 0 && tc.Tree.TreeID != 0 {
		// Another database's log, never this one's.
		root, err := tn.Log.Root(ctx)
		if err != nil {
			return nil, fmt.Errorf("trillian: tree %d: %w", treeID, err)
		}
		if root.Size != 0 {
			return nil, fmt.Errorf("%s names Trillian tree %d, which has %d leaves, and this database pins no log: restore the database the log was written from, or start a new log from an empty data directory", filepath.Join(keysDir, "checkpoint.pub"), treeID, root.Size)
		}
	}
	origin, err := verify.FormatOrigin(name, treeID)
	if err != nil {
		return nil, err
	}
	// The API's keys, which the nodes share and never make. Not pinned
	// in the database: made here even for a log pinned by an earlier
	// version's init, so that its nodes get them from this directory.
	if err := keys.CreateShared(keysDir); err != nil {
		return nil, err
	}
	kr, err := keys.Load(cfg.keysConfig(keysDir, origin, pinned != 0))
	if err != nil {
		if pinned != 0 && errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%w: this database has its log already; copy the keys directory of the data directory vigie init first ran on", err)
		}
		return nil, err
	}
	pseudonyms, err := ledger.NewPseudonymizer(kr.Pseudonym)
	if err != nil {
		return nil, err
	}
	if beforePin != nil {
		beforePin()
	}
	l, err := newLedger(ctx, cfg, keysDir, origin, kr, pseudonyms, store, tn.Log, ledger.NewOwner())
	if err != nil {
		return nil, err
	}
	// And the once-per-database work of a first start, so that nodes
	// started together afterwards find it done.
	if err := consentsql.SealAtRest(ctx, db, store, pseudonyms, consentsql.New(db, l)); err != nil {
		return nil, err
	}
	if cfg.Succession != nil {
		if _, _, err := l.RecordSuccession(ctx, cfg.Succession.Checkpoint, cfg.Succession.Key); err != nil {
			return nil, err
		}
	}
	return &Pinned{
		TreeID:             treeID,
		Origin:             origin,
		CheckpointVerifier: kr.CheckpointVerifier,
		ReceiptVerifier:    kr.ReceiptVerifier,
		Created:            pinned == 0,
	}, nil
}

// removeFiles removes the files of set, those that exist.
func removeFiles(set map[string]bool) error {
	var errs []error
	for f := range set {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// newLedger returns the ledger of a node's keys, which pins the origin
// and the keys in store at the first start and refuses other ones after.
func newLedger(ctx context.Context, cfg Config, keysDir, origin string, k *keys.Keyring, pseudonyms *ledger.Pseudonymizer, store ledger.Store, log ledger.Log, owner string) (*ledger.Ledger, error) {
	lc := ledger.Config{
		Origin:             origin,
		CheckpointSigner:   k.Checkpoint,
		ReceiptSigner:      k.Receipt,
		CheckpointVerifier: k.CheckpointVerifier,
		ReceiptVerifier:    k.ReceiptVerifier,
		CheckpointKeyFile:  "the checkpoint key (" + filepath.Join(keysDir, "checkpoint.key") + ")",
		ReceiptKeyFile:     "the receipt key (" + filepath.Join(keysDir, "receipt.key") + ")",
		KEK:                k.KEK,
		Pseudonyms:         pseudonyms,
		MergeDelay:         cfg.MergeDelay,
		SendStallAfter:     cfg.SendStallAfter,
		CheckpointInterval: cfg.CheckpointInterval,
		Logger:             cfg.Logger,
		EraseAlso:          eraseAlso,
		RequestIDRetention: cfg.RequestIDRetention,
		Owner:              owner,
		// Embedded: the SQLite files are locked by this process, the one
		// writer; chain heads stay in memory.
		SoleWriter: cfg.DB == "",
	}
	if m := cfg.Module; m != nil {
		lc.KEK, lc.KeyWrapper = nil, m.KeyWrapper
		lc.KEKName, lc.CheckpointKeyFile, lc.ReceiptKeyFile = m.KEK, m.CheckpointKey, m.ReceiptKey
	}
	return ledger.New(ctx, lc, store, log)
}
