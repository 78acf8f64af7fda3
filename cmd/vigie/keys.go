package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// keyring holds the deployment's secrets, kept in <data dir>/keys with
// mode 0600 and created at first start:
//
//	kek             key-encryption key of patients' data keys (32 bytes, hex)
//	pseudonym.key   secret of patients' pseudonyms (32 bytes, hex)
//	checkpoint.key  note signing key of checkpoints, named after the origin
//	receipt.key     note signing key of receipts
//	checkpoint.pub, receipt.pub   the matching verifier keys (public)
//	log-name        the log's name, the start of the origin; never changes
//
// The KEK may live elsewhere (--kek-file), for instance on a mounted
// secret. Backups of the data directory hold the wrapped patient keys and
// the KEK: see docs/operations.md.
type keyring struct {
	kek, pseudonym     []byte
	checkpoint         note.Signer
	receipt            note.Signer
	checkpointVerifier string
	receiptVerifier    string
}

// loadOrCreateKeys reads the keys for origin from dir, creating those that
// do not exist yet. It refuses keys made for another origin.
func loadOrCreateKeys(dir, kekFile, origin string) (*keyring, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	var k keyring
	var err error
	if kekFile == "" {
		kekFile = filepath.Join(dir, "kek")
	}
	if k.kek, err = secretFile(kekFile); err != nil {
		return nil, err
	}
	if k.pseudonym, err = secretFile(filepath.Join(dir, "pseudonym.key")); err != nil {
		return nil, err
	}
	if k.checkpoint, k.checkpointVerifier, err = noteKey(dir, "checkpoint", origin); err != nil {
		return nil, err
	}
	if k.receipt, k.receiptVerifier, err = noteKey(dir, "receipt", verify.ReceiptKeyName(origin)); err != nil {
		return nil, err
	}
	return &k, nil
}

// secretFile reads a hex-encoded 32-byte secret, creating it if absent. A
// secret readable by others than its owner is refused.
func secretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key := make([]byte, ledger.KeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := writeNew(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
			return nil, err
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if err := checkPrivate(path); err != nil {
		return nil, err
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != ledger.KeySize {
		return nil, fmt.Errorf("keys: %s: want %d bytes in hex", path, ledger.KeySize)
	}
	return key, nil
}

func checkPrivate(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("keys: %s is readable by others (mode %v): chmod 600 it", path, info.Mode().Perm())
	}
	return nil
}

// noteKey reads <dir>/<base>.key, or creates it with its .pub, named name.
func noteKey(dir, base, name string) (note.Signer, string, error) {
	path := filepath.Join(dir, base+".key")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		skey, vkey, err := note.GenerateKey(rand.Reader, name)
		if err != nil {
			return nil, "", err
		}
		if err := writeNew(path, []byte(skey+"\n"), 0o600); err != nil {
			return nil, "", err
		}
		if err := writeNew(filepath.Join(dir, base+".pub"), []byte(vkey+"\n"), 0o644); err != nil {
			return nil, "", err
		}
		b = []byte(skey)
	} else if err != nil {
		return nil, "", fmt.Errorf("keys: %w", err)
	} else if err := checkPrivate(path); err != nil {
		return nil, "", err
	}
	s, err := note.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, "", fmt.Errorf("keys: %s: %w", path, err)
	}
	if s.Name() != name {
		return nil, "", fmt.Errorf("keys: %s is the key of %q, this log is %q (the log's name or its Trillian tree changed)", path, s.Name(), name)
	}
	pub, err := os.ReadFile(filepath.Join(dir, base+".pub"))
	if err != nil {
		return nil, "", fmt.Errorf("keys: %w", err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(pub)))
	if err != nil || v.Name() != name || v.KeyHash() != s.KeyHash() {
		return nil, "", fmt.Errorf("keys: %s does not match %s", filepath.Join(dir, base+".pub"), path)
	}
	return s, strings.TrimSpace(string(pub)), nil
}

// logName returns the log's name saved in dir, saving want at first
// start; a different name afterwards is refused (it is part of every
// checkpoint's origin).
func logName(dir, want string) (string, error) {
	path := filepath.Join(dir, "log-name")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if want == "" {
			want = "vigie.localhost"
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", err
		}
		return want, writeNew(path, []byte(want+"\n"), 0o644)
	}
	if err != nil {
		return "", err
	}
	saved := string(bytes.TrimSpace(b))
	if want != "" && want != saved {
		return "", fmt.Errorf("--log-name %q: this data directory's log is named %q, which never changes", want, saved)
	}
	return saved, nil
}

// writeNew creates a file that must not exist yet, durably.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("keys: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("keys: %w", err)
	}
	return f.Close()
}
