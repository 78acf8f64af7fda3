package keys_test

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/keys"
	"github.com/vigie-sante/vigie/ledger/verify"
)

const origin = "test.vigie.example/vigie/1"

// TestLoad: the keys are created at first start, owner-only, and the same
// keys are read back at the next.
func TestLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	k1, err := keys.Load(keys.Config{Dir: dir, Origin: origin})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kek", "pseudonym.key", "checkpoint.key", "receipt.key"} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, perm)
		}
	}
	if k1.Checkpoint.Name() != origin || k1.Receipt.Name() != verify.ReceiptKeyName(origin) {
		t.Errorf("signers named %q and %q", k1.Checkpoint.Name(), k1.Receipt.Name())
	}
	v, err := note.NewVerifier(k1.CheckpointVerifier)
	if err != nil || v.KeyHash() != k1.Checkpoint.KeyHash() {
		t.Errorf("CheckpointVerifier %q is not the checkpoint key's (%v)", k1.CheckpointVerifier, err)
	}
	k2, err := keys.Load(keys.Config{Dir: dir, Origin: origin})
	if err != nil {
		t.Fatal(err)
	}
	if string(k1.KEK) != string(k2.KEK) || string(k1.Pseudonym) != string(k2.Pseudonym) ||
		k1.CheckpointVerifier != k2.CheckpointVerifier || k1.ReceiptVerifier != k2.ReceiptVerifier {
		t.Error("the second Load read other keys than the first created")
	}
}

// TestLoadRefuses: keys of another origin, a secret others may read, a
// malformed secret, a public key of another key: each is refused with a
// message naming the file, and nothing is replaced.
func TestLoadRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		spoil  func(t *testing.T, dir string)
		origin string
		want   string
	}{
		{"another origin", func(*testing.T, string) {}, "other.example/vigie/1", "checkpoint.key is the key of"},
		{"kek readable by others", func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, "kek"), 0o640) }, origin, "kek is readable by others"},
		{"signing key readable by others", func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, "receipt.key"), 0o604) }, origin, "receipt.key is readable by others"},
		{"short secret", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "pseudonym.key"), "abcd\n") }, origin, "pseudonym.key: want 32 bytes in hex"},
		{"public key of another key", func(t *testing.T, dir string) {
			_, vkey, err := note.GenerateKey(rand.Reader, origin)
			if err != nil {
				t.Fatal(err)
			}
			os.Remove(filepath.Join(dir, "checkpoint.pub"))
			write(t, filepath.Join(dir, "checkpoint.pub"), vkey+"\n")
		}, origin, "checkpoint.pub does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			if _, err := keys.Load(keys.Config{Dir: dir, Origin: origin}); err != nil {
				t.Fatal(err)
			}
			tc.spoil(t, dir)
			_, err := keys.Load(keys.Config{Dir: dir, Origin: tc.origin})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestSigners: Load takes the note signers from Config.Signers, the seam
// for keys held elsewhere; the secrets stay in files.
func TestSigners(t *testing.T) {
	dir := t.TempDir()
	s := &fakeSigners{dir: keys.Dir(filepath.Join(dir, "elsewhere"))}
	if err := os.Mkdir(string(s.dir), 0o700); err != nil {
		t.Fatal(err)
	}
	k, err := keys.Load(keys.Config{Dir: filepath.Join(dir, "keys"), Origin: origin, Signers: s})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.asked, ",") != "checkpoint "+origin+",receipt "+verify.ReceiptKeyName(origin) {
		t.Errorf("Signers asked for %q", s.asked)
	}
	if _, err := os.Stat(filepath.Join(dir, "keys", "checkpoint.key")); err == nil {
		t.Error("a checkpoint key file was written beside the other Signers")
	}
	if _, err := os.Stat(filepath.Join(dir, "keys", "kek")); err != nil {
		t.Errorf("no KEK file: %v", err)
	}
	if k.Checkpoint.Name() != origin {
		t.Errorf("checkpoint signer named %q", k.Checkpoint.Name())
	}
}

type fakeSigners struct {
	dir   keys.Dir
	asked []string
}

func (f *fakeSigners) Signer(role, name string) (note.Signer, string, error) {
	f.asked = append(f.asked, role+" "+name)
	return f.dir.Signer(role, name)
}

// TestLogName: the name given at first start is kept, the default is
// vigie.localhost, and another name afterwards is refused.
func TestLogName(t *testing.T) {
	dir := t.TempDir()
	if got, err := keys.LogName(filepath.Join(dir, "a"), ""); err != nil || got != "vigie.localhost" {
		t.Errorf("LogName(new, \"\") = %q, %v; want vigie.localhost", got, err)
	}
	b := filepath.Join(dir, "b")
	if got, err := keys.LogName(b, "first.example"); err != nil || got != "first.example" {
		t.Fatalf("LogName(new, first.example) = %q, %v", got, err)
	}
	if got, err := keys.LogName(b, ""); err != nil || got != "first.example" {
		t.Errorf("LogName(saved, \"\") = %q, %v; want first.example", got, err)
	}
	if _, err := keys.LogName(b, "second.example"); err == nil || !strings.Contains(err.Error(), "which never changes") {
		t.Errorf("LogName(saved, second.example) = %v, want a refusal", err)
	}
}

// TestWriteNew: a file that exists is never overwritten.
func TestWriteNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	if err := keys.WriteNew(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := keys.WriteNew(path, []byte("two"), 0o600); err == nil {
		t.Error("WriteNew over an existing file succeeded")
	}
	if b, _ := os.ReadFile(path); string(b) != "one" {
		t.Errorf("file holds %q, want one", b)
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
