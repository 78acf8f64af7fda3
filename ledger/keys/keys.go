// Package keys keeps a Vigie node's secrets in files: the key-encryption
// key, the pseudonym key and the note signing keys of checkpoints and
// receipts, and the rule every secret file is held to (CheckPrivate: its
// owner alone may read it, or a group of this process when root owns it). The note signers come through Signers, the seam for keys
// held elsewhere (a hardware security module); Dir keeps them in files.
//
// A keys directory holds, created at first start (or by vigie init, for
// the nodes of a cluster, which load them with Config.NoCreate):
//
//	kek             key-encryption key of patients' data keys (32 bytes, hex)
//	pseudonym.key   secret of patients' pseudonyms (32 bytes, hex)
//	checkpoint.key  note signing key of checkpoints, named after the origin
//	receipt.key     note signing key of receipts
//	checkpoint.pub, receipt.pub   the matching verifier keys (public)
//	log-name        the log's name, the start of the origin; never changes
//	page-token.key, portal-oidc-cookie.key, token-issuer.key
//	                the API's keys, the same on every node (CreateShared)
//
// Note keys follow [note]'s text forms.
//
// [note]: https://pkg.go.dev/golang.org/x/mod/sumdb/note
package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// Keyring holds a node's secrets. Backups of the data directory hold the
// wrapped patient keys and the KEK: see docs/operations.md.
type Keyring struct {
	// KEK is the key-encryption key, Pseudonym the pseudonym key
	// (ledger.KeySize bytes each).
	KEK, Pseudonym []byte
	// Checkpoint signs checkpoints (named after the origin), Receipt
	// receipts (named verify.ReceiptKeyName(origin)).
	Checkpoint, Receipt note.Signer
	// CheckpointVerifier and ReceiptVerifier are their verifier keys, in
	// note's text form (public).
	CheckpointVerifier, ReceiptVerifier string
}

// Signers gives the note signers of a log.
//
// Signer returns the signer of role ("checkpoint" or "receipt") named
// name, with its verifier key in note's text form, creating the key at
// first use if the implementation can. It MUST refuse a key of another
// name (the log's name or tree changed) and a verifier key that is not
// the signer's. It is called once per role when a node opens.
type Signers interface {
	Signer(role, name string) (note.Signer, string, error)
}

// Dir is the Signers on the files of a keys directory: <role>.key (mode
// 0600, held to CheckPrivate) and <role>.pub.
type Dir string

var _ Signers = Dir("")

// Config says where Load finds the keys.
type Config struct {
	// Dir is the keys directory (created with mode 0700). Required.
	Dir string
	// KEKFile is the file of the key-encryption key, which may live
	// elsewhere (a mounted secret). Default <Dir>/kek.
	KEKFile string
	// Origin is the log's origin, the checkpoint key's name.
	Origin string
	// Signers gives the note signers. Default Dir(Dir).
	Signers Signers
	// NoKEK leaves the key-encryption key out (Keyring.KEK nil): it is in
	// a hardware security module (ledger/keys/hsm), and KEKFile is not
	// read or created.
	NoKEK bool
	// NoCreate refuses to create a missing key file (a node of a cluster:
	// the keys are made once, elsewhere): Load then fails with an error
	// that names the file and wraps fs.ErrNotExist. Load also makes (or,
	// with NoCreate, requires) PageTokenFile and PortalCookieFile, which
	// the API reads. Signers other than
	// Dir are not affected. Default false: missing keys are created.
	NoCreate bool
}

// Load reads the keys of cfg.Origin, creating those that do not exist
// yet (unless cfg.NoCreate). It refuses keys made for another origin.
func Load(cfg Config) (*Keyring, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if cfg.KEKFile == "" {
		cfg.KEKFile = filepath.Join(cfg.Dir, "kek")
	}
	if cfg.Signers == nil {
		cfg.Signers = Dir(cfg.Dir)
	}
	var k Keyring
	var err error
	if !cfg.NoKEK {
		if k.KEK, err = secretFile(cfg.KEKFile, !cfg.NoCreate); err != nil {
			return nil, err
		}
	}
	if k.Pseudonym, err = secretFile(filepath.Join(cfg.Dir, "pseudonym.key"), !cfg.NoCreate); err != nil {
		return nil, err
	}
	if d, ok := cfg.Signers.(Dir); ok && cfg.NoCreate {
		for _, f := range []string{"checkpoint.key", "checkpoint.pub", "receipt.key", "receipt.pub"} {
			if err := mustExist(filepath.Join(string(d), f)); err != nil {
				return nil, err
			}
		}
	}
	// The API's keys, which a node of a cluster would otherwise make at
	// first use, differing from the other nodes'. Checked here; the API
	// reads them.
	for _, f := range []string{PageTokenFile, PortalCookieFile} {
		if _, err := secretFile(filepath.Join(cfg.Dir, f), !cfg.NoCreate); err != nil {
			return nil, err
		}
	}
	if k.Checkpoint, k.CheckpointVerifier, err = cfg.Signers.Signer("checkpoint", cfg.Origin); err != nil {
		return nil, err
	}
	if k.Receipt, k.ReceiptVerifier, err = cfg.Signers.Signer("receipt", verify.ReceiptKeyName(cfg.Origin)); err != nil {
		return nil, err
	}
	return &k, nil
}

// SecretFile reads a hex-encoded ledger.KeySize-byte secret, creating it
// if absent (mode 0600). A file that CheckPrivate refuses is refused.
func SecretFile(path string) ([]byte, error) { return secretFile(path, true) }

// ReadSecretFile reads a hex-encoded ledger.KeySize-byte secret that must
// exist, held to CheckPrivate.
func ReadSecretFile(path string) ([]byte, error) { return secretFile(path, false) }

// mustExist returns an error wrapping fs.ErrNotExist, naming path, if
// path does not exist.
func mustExist(path string) error {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("keys: %s is missing: %w", path, fs.ErrNotExist)
	}
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	return nil
}

func secretFile(path string, create bool) ([]byte, error) {
	if !create {
		if err := mustExist(path); err != nil {
			return nil, err
		}
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key := make([]byte, ledger.KeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := WriteNew(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
			return nil, err
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if err := CheckPrivate(path); err != nil {
		return nil, err
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != ledger.KeySize {
		return nil, fmt.Errorf("keys: %s: want %d bytes in hex", path, ledger.KeySize)
	}
	return key, nil
}

// CheckPrivate refuses a secret file that others than this process and
// root may read, or anyone but its owner may change. The rule, after
// PostgreSQL's for its ssl_key_file:
//
//   - the file is owned by this process's (effective) user, or by root;
//   - others have no permission, and its group neither write nor execute;
//   - its group may read it only if root owns it and the group is this
//     process's (effective or supplementary): a Secret that Kubernetes
//     mounts with fsGroup (root, group fsGroup, mode 0440 or 0640). A
//     file the process's own user owns must be 0600 or less, even when
//     that user is root.
//
// The message names the file and the rule, never what the file holds.
func CheckPrivate(path string) error {
	// Without the supplementary groups (not supported here), only the
	// effective group counts: stricter, never looser.
	groups, _ := os.Getgroups()
	return checkPrivate(path, process{uid: os.Geteuid(), gid: os.Getegid(), groups: groups})
}

// process is who reads a secret file, for checkPrivate.
type process struct {
	uid, gid int
	groups   []int // supplementary
}

func (p process) inGroup(gid int) bool {
	return gid == p.gid || slices.Contains(p.groups, gid)
}

func checkPrivate(path string, p process) error {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	perm := info.Mode().Perm()
	uid, gid, ok := fileOwner(info)
	if !ok {
		// No owner to check (not a Unix system): owner-only.
		if perm&0o077 != 0 {
			return fmt.Errorf("keys: %s is readable by others (mode %v): a secret file is its owner's alone (chmod 600)", path, perm)
		}
		return nil
	}
	return checkOwnerMode(path, uid, gid, perm, p)
}

// checkOwnerMode is CheckPrivate's rule over a file's owner, group and
// permission bits.
func checkOwnerMode(path string, uid, gid int, perm fs.FileMode, p process) error {
	switch {
	case uid != p.uid && uid != 0:
		return fmt.Errorf("keys: %s is owned by uid %d: a secret file is owned by this process's user (uid %d) or by root", path, uid, p.uid)
	case perm&0o004 != 0:
		return fmt.Errorf("keys: %s is readable by others (mode %v): a secret file gives others no access (chmod o-rwx)", path, perm)
	case perm&0o003 != 0:
		return fmt.Errorf("keys: %s is writable or executable by others (mode %v): a secret file gives others no access (chmod o-rwx)", path, perm)
	case perm&0o030 != 0:
		return fmt.Errorf("keys: %s is writable or executable by its group (mode %v): a secret file's group may at most read it (chmod g-wx)", path, perm)
	case perm&0o040 == 0:
		return nil
	case uid == p.uid:
		return fmt.Errorf("keys: %s is readable by its group (mode %v): a secret file owned by this process's user is 0600 or less; group read is accepted only on a file owned by root, in a group of this process (a Kubernetes Secret with fsGroup)", path, perm)
	case !p.inGroup(gid):
		return fmt.Errorf("keys: %s is readable by group %d (mode %v), which this process is not in: a secret file's group, if it may read, is this process's", path, gid, perm)
	}
	return nil
}

// Signer implements Signers: it reads <d>/<role>.key, or creates it with
// its .pub, named name.
func (d Dir) Signer(role, name string) (note.Signer, string, error) {
	dir := string(d)
	path := filepath.Join(dir, role+".key")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		skey, vkey, err := note.GenerateKey(rand.Reader, name)
		if err != nil {
			return nil, "", err
		}
		if err := WriteNew(path, []byte(skey+"\n"), 0o600); err != nil {
			return nil, "", err
		}
		if err := WriteNew(filepath.Join(dir, role+".pub"), []byte(vkey+"\n"), 0o644); err != nil {
			return nil, "", err
		}
		b = []byte(skey)
	} else if err != nil {
		return nil, "", fmt.Errorf("keys: %w", err)
	} else if err := CheckPrivate(path); err != nil {
		return nil, "", err
	}
	s, err := note.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, "", fmt.Errorf("keys: %s: %w", path, err)
	}
	if s.Name() != name {
		return nil, "", fmt.Errorf("keys: %s is the key of %q, this log is %q (the log's name or its Trillian tree changed)", path, s.Name(), name)
	}
	pub, err := os.ReadFile(filepath.Join(dir, role+".pub"))
	if err != nil {
		return nil, "", fmt.Errorf("keys: %w", err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(pub)))
	if err != nil || v.Name() != name || v.KeyHash() != s.KeyHash() {
		return nil, "", fmt.Errorf("keys: %s does not match %s", filepath.Join(dir, role+".pub"), path)
	}
	return s, strings.TrimSpace(string(pub)), nil
}

// LogName returns the log's name saved in dir, saving want (default
// vigie.localhost) at first start; a different name afterwards is refused
// (it is part of every checkpoint's origin).
func LogName(dir, want string) (string, error) {
	saved, err := SavedLogName(dir)
	if err != nil {
		return "", err
	}
	if saved == "" {
		if want == "" {
			want = "vigie.localhost"
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", err
		}
		return want, WriteNew(filepath.Join(dir, "log-name"), []byte(want+"\n"), 0o644)
	}
	if want != "" && want != saved {
		return "", fmt.Errorf("--log-name %q: this data directory's log is named %q, which never changes", want, saved)
	}
	return saved, nil
}

// SavedOrigin returns the origin the checkpoint key of dir was made for
// (the name of checkpoint.pub), or "" if dir has no checkpoint key yet.
// It writes nothing.
func SavedOrigin(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "checkpoint.pub"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("keys: %w", err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("keys: %s: %w", filepath.Join(dir, "checkpoint.pub"), err)
	}
	return v.Name(), nil
}

// SavedLogName returns the log's name saved in dir, or "" if none was
// saved yet. It writes nothing.
func SavedLogName(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "log-name"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("keys: %w", err)
	}
	return string(bytes.TrimSpace(b)), nil
}

// WriteNew creates a file that must not exist yet, durably.
func WriteNew(path string, data []byte, mode os.FileMode) error {
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
