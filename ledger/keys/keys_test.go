package keys_test

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

// TestLoadNoCreate: with NoCreate, each missing key file is an error
// naming it (wrapping fs.ErrNotExist) and nothing is written; with every
// file there, the keys load.
func TestLoadNoCreate(t *testing.T) {
	src := filepath.Join(t.TempDir(), "keys")
	want, err := keys.Load(keys.Config{Dir: src, Origin: origin})
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"kek", "pseudonym.key", "checkpoint.key", "checkpoint.pub", "receipt.key", "receipt.pub", "page-token.key", "portal-oidc-cookie.key"}
	for _, missing := range files {
		t.Run(missing, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				if f == missing {
					continue
				}
				b, err := os.ReadFile(filepath.Join(src, f))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := keys.Load(keys.Config{Dir: dir, Origin: origin, NoCreate: true})
			if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), filepath.Join(dir, missing)+" is missing") {
				t.Errorf("Load without %s = %v, want an error naming it", missing, err)
			}
			if _, err := os.Stat(filepath.Join(dir, missing)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Load with NoCreate made %s (%v)", missing, err)
			}
		})
	}
	got, err := keys.Load(keys.Config{Dir: src, Origin: origin, NoCreate: true})
	if err != nil || got.CheckpointVerifier != want.CheckpointVerifier || string(got.KEK) != string(want.KEK) {
		t.Errorf("Load with NoCreate and every file = %v, want the keys", err)
	}
	if o, err := keys.SavedOrigin(src); err != nil || o != origin {
		t.Errorf("SavedOrigin = %q, %v; want %q", o, err, origin)
	}
	if o, err := keys.SavedOrigin(t.TempDir()); err != nil || o != "" {
		t.Errorf("SavedOrigin(empty) = %q, %v; want nothing", o, err)
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
		{"kek readable by its group", func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, "kek"), 0o640) }, origin, "kek is readable by its group"},
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

// TestCheckPrivate: the secret-file rule over modes, owners and groups,
// for a process that is not root (as a Kubernetes pod with fsGroup) and
// for one that is; over real files too when the test runs as root. Every refusal names the file and the rule, never what
// the file holds.
func TestCheckPrivate(t *testing.T) {
	const (
		me, myGroup, fsGroup, stranger = 1000, 1000, 2000, 3000
		secret                         = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7"
	)
	pod := keys.NewProcess(me, myGroup, fsGroup)
	root := keys.NewProcess(0, 0)
	for _, tc := range []struct {
		name     string
		as       keys.Process
		uid, gid int
		mode     os.FileMode
		want     string // "" when accepted, else a part of the refusal
	}{
		{"own 0600", pod, me, myGroup, 0o600, ""},
		{"own 0400", pod, me, myGroup, 0o400, ""},
		{"own 0640 in own group", pod, me, myGroup, 0o640, "readable by its group"},
		{"own 0440 in fsGroup", pod, me, fsGroup, 0o440, "readable by its group"},
		{"own 0620", pod, me, myGroup, 0o620, "writable or executable by its group"},
		{"own 0604", pod, me, myGroup, 0o604, "readable by others"},
		{"own 0602", pod, me, myGroup, 0o602, "writable or executable by others"},
		{"root 0400", pod, 0, fsGroup, 0o400, ""},
		{"root 0440 in fsGroup (Kubernetes)", pod, 0, fsGroup, 0o440, ""},
		{"root 0640 in fsGroup", pod, 0, fsGroup, 0o640, ""},
		{"root 0440 in the primary group", pod, 0, myGroup, 0o440, ""},
		{"root 0440 in another group", pod, 0, stranger, 0o440, "readable by group 3000"},
		{"root 0440 in root's group", pod, 0, 0, 0o440, "readable by group 0"},
		{"root 0460 in fsGroup", pod, 0, fsGroup, 0o460, "writable or executable by its group"},
		{"root 0450 in fsGroup", pod, 0, fsGroup, 0o450, "writable or executable by its group"},
		{"root 0444 in fsGroup", pod, 0, fsGroup, 0o444, "readable by others"},
		{"root 0442 in fsGroup", pod, 0, fsGroup, 0o442, "writable or executable by others"},
		{"another user's 0400", pod, stranger, fsGroup, 0o400, "owned by uid 3000"},
		{"another user's 0440 in fsGroup", pod, stranger, fsGroup, 0o440, "owned by uid 3000"},
		{"root process, root 0600", root, 0, 0, 0o600, ""},
		{"root process, root 0440", root, 0, 0, 0o440, "readable by its group"},
		{"root process, root 0440 in fsGroup", root, 0, fsGroup, 0o440, "readable by its group"},
		{"root process, another user's 0600", root, me, myGroup, 0o600, "owned by uid 1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "secret.key")
			write(t, path, secret+"\n")
			check := func(how string, err error) {
				t.Helper()
				switch {
				case tc.want == "" && err != nil:
					t.Errorf("%s = %v, want the file accepted", how, err)
				case tc.want == "":
				case err == nil:
					t.Errorf("%s accepted the file, want a refusal with %q", how, tc.want)
				case !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path):
					t.Errorf("%s = %q, want it to name %s and say %q", how, err, path, tc.want)
				case strings.Contains(err.Error(), secret[:16]):
					t.Errorf("%s = %q quotes the secret", how, err)
				}
			}
			// The rule alone, as any user; then over a real file, which
			// only root can give to another user or group.
			check("the rule", keys.CheckOwnerMode(path, tc.uid, tc.gid, tc.mode, tc.as))
			if os.Geteuid() != 0 {
				return
			}
			if err := os.Chown(path, tc.uid, tc.gid); err != nil {
				t.Fatal(err)
			}
			chmod(t, path, tc.mode)
			check("CheckPrivate", keys.CheckPrivateAs(path, tc.as))
		})
	}
}

// TestCheckPrivateThisProcess: CheckPrivate judges as this process (root
// here): a file of its own is 0600 or less, a file of another user is
// refused; SecretFile holds its files to the same rule.
func TestCheckPrivateThisProcess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to give files to other users")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "kek")
	if _, err := keys.SecretFile(path); err != nil {
		t.Fatal(err)
	}
	if err := keys.CheckPrivate(path); err != nil {
		t.Errorf("CheckPrivate(new secret) = %v", err)
	}
	chmod(t, path, 0o440)
	if _, err := keys.SecretFile(path); err == nil || !strings.Contains(err.Error(), "readable by its group") {
		t.Errorf("SecretFile(own file, 0440) = %v, want a refusal", err)
	}
	chmod(t, path, 0o600)
	if err := os.Chown(path, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.SecretFile(path); err == nil || !strings.Contains(err.Error(), "owned by uid 1000") {
		t.Errorf("SecretFile(another user's file) = %v, want a refusal", err)
	}
}

// TestCheckPrivateKubernetesSecret: a process that is not root reads a
// secret as Kubernetes mounts it with fsGroup (root, group fsGroup, 0440),
// through a supplementary group; without that group it is refused. The
// test binary runs again as another user (root gives it the identity).
func TestCheckPrivateKubernetesSecret(t *testing.T) {
	if path := os.Getenv("KEYS_TEST_SECRET"); path != "" {
		// The child: CheckPrivate as this process.
		if err := keys.CheckPrivate(path); err != nil {
			fmt.Println("refused:", err)
		} else {
			fmt.Println("accepted")
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run as another user")
	}
	const nobody, fsGroup = 65534, 4242
	dir := t.TempDir()
	chmod(t, dir, 0o755)
	chmod(t, filepath.Dir(dir), 0o755) // t.TempDir's parent
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "keys.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "kek")
	write(t, secret, "secret\n")
	if err := os.Chown(secret, 0, fsGroup); err != nil {
		t.Fatal(err)
	}
	chmod(t, secret, 0o440)
	for _, tc := range []struct {
		name   string
		groups []uint32
		want   string
	}{
		{"in fsGroup", []uint32{fsGroup}, "accepted"},
		{"not in fsGroup", nil, "refused: keys: " + secret + " is readable by group 4242"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, "-test.run=^TestCheckPrivateKubernetesSecret$")
			cmd.Env = append(os.Environ(), "KEYS_TEST_SECRET="+secret)
			cmd.Dir = dir
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: tc.groups}}
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), tc.want) {
				t.Errorf("CheckPrivate as uid %d, groups %v: %v\n%s\nwant %q", nobody, tc.groups, err, out, tc.want)
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
