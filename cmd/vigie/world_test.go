package main

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// world is a vigie serve process behind an HTTP proxy whose address stays
// the same across restarts (the verifiers pin the log's key by server URL),
// and which can change answers on their way to the verifiers.
type world struct {
	t     testing.TB
	e     *e2e
	dir   string // the process's data directory
	proxy *httptest.Server

	mu     sync.Mutex
	target *url.URL
	// edit, if set, may change the JSON answer of a route.
	edit func(path string, body []byte) []byte
	// args are more flags of vigie serve for the next start.
	args []string
}

func newWorld(t testing.TB, dataDir string) *world { return newWorldWith(t, dataDir) }

// newWorldWith is newWorld with more flags of vigie serve (world.args).
func newWorldWith(t testing.TB, dataDir string, args ...string) *world {
	w := &world{t: t, args: args}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			w.mu.Lock()
			defer w.mu.Unlock()
			r.SetURL(w.target)
		},
		ModifyResponse: func(resp *http.Response) error {
			w.mu.Lock()
			edit := w.edit
			w.mu.Unlock()
			if edit == nil || resp.StatusCode != http.StatusOK {
				return nil
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			b = edit(resp.Request.URL.Path, b)
			resp.Body = io.NopCloser(bytes.NewReader(b))
			resp.ContentLength = int64(len(b))
			resp.Header.Del("Content-Length")
			return nil
		},
	}
	w.proxy = httptest.NewServer(rp)
	t.Cleanup(w.proxy.Close)
	w.start(dataDir)
	return w
}

// restart stops the process if it runs, and starts vigie serve on dataDir
// for test t, behind the same proxy.
func (w *world) restart(t testing.TB, dataDir string) *world {
	t.Helper()
	if w.e != nil && w.e.proc.cmd.ProcessState == nil {
		w.stop()
	}
	w.t = t
	w.start(dataDir)
	return w
}

// start starts vigie serve on dataDir and points the proxy at it.
func (w *world) start(dataDir string) {
	w.t.Helper()
	w.dir = dataDir
	w.e = startE2EAt(w.t, dataDir, append([]string{"--erasure-delay", "0s"}, w.args...)...)
	m := httpLine.FindStringSubmatch(w.e.proc.output())
	if m == nil {
		w.t.Fatalf("no HTTP address in the output:\n%s", w.e.proc.output())
	}
	u, err := url.Parse(m[1])
	if err != nil {
		w.t.Fatal(err)
	}
	w.mu.Lock()
	w.target, w.edit = u, nil
	w.mu.Unlock()
}

// stop stops the process, cleanly: its files are then consistent.
func (w *world) stop() {
	w.t.Helper()
	if code := w.e.proc.stop(w.t, syscall.SIGTERM); code != 0 {
		w.t.Fatalf("vigie serve exit %d\n%s", code, w.e.proc.stderr)
	}
	w.e.conn.Close()
}

func (w *world) setEdit(f func(path string, body []byte) []byte) {
	w.mu.Lock()
	w.edit = f
	w.mu.Unlock()
}

func (w *world) token(role auth.Role, sub string, orgs ...string) string {
	w.t.Helper()
	tok, err := w.e.issuer.Mint(auth.TokenRequest{Role: role, Subject: sub, Organizations: orgs, TTL: 3600e9})
	if err != nil {
		w.t.Fatal(err)
	}
	return tok
}

// cli runs a vigie command in process against the proxy.
func (w *world) cli(args ...string) (int, string, string) {
	w.t.Helper()
	var out, errOut bytes.Buffer
	args = append(args[:1:1], append([]string{"--server", w.proxy.URL}, args[1:]...)...)
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// verify runs vigie verify --json as the patient, with a state directory.
func (w *world) verify(patient, stateDir string, extra ...string) (int, *verifyReport, string) {
	w.t.Helper()
	rep := &verifyReport{}
	code, errOut := w.runJSON(rep, append([]string{"verify", "--json", "--state-dir", stateDir, "--token", w.token(auth.RolePatient, patient)}, extra...)...)
	return code, rep, errOut
}

// audit runs vigie audit --json with a token of role, and a state
// directory.
func (w *world) audit(role auth.Role, stateDir string, extra ...string) (int, *auditReport, string) {
	w.t.Helper()
	rep := &auditReport{}
	code, errOut := w.runJSON(rep, append([]string{"audit", "--json", "--state-dir", stateDir, "--token", w.token(role, "cnil"),
		"--alert-odd-hours-min", "1000000"}, extra...)...) // the time of day of the test run must not matter
	return code, rep, errOut
}

// runJSON runs a command whose report is JSON, decodes it into rep unless
// the exit code is 2, and checks that no output holds an INS.
func (w *world) runJSON(rep any, args ...string) (int, string) {
	w.t.Helper()
	code, out, errOut := w.cli(args...)
	if code != exitUsage {
		if err := json.Unmarshal([]byte(out), rep); err != nil {
			w.t.Fatalf("vigie %s: exit %d, output not JSON: %v\n%s\n%s", args[0], code, err, out, errOut)
		}
	}
	w.noINS(out + errOut)
	return code, errOut
}

// noINS checks that an output holds no INS of the story.
func (w *world) noINS(s string) {
	w.t.Helper()
	for _, ins := range []string{e2ePatient, otherPatient} {
		if strings.Contains(s, ins) {
			w.t.Errorf("an output holds a patient's INS:\n%s", s)
		}
	}
}

// copyDir copies a directory tree (a data or state directory), owner-only.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, 0o700)
		}
		return os.Chmod(p, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// openDB opens a SQLite file of a stopped data directory.
func openDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func execOne(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	res, err := db.Exec(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("%s: %d rows, want 1", q, n)
	}
}

// openSealed decrypts an event's salt and body as the operator can, with
// the key-encryption key of the data directory: AES-256-GCM, the nonce
// first, the data key bound to the pseudonym, the body to the commitment
// (ledger/seal.go).
func openSealed(t *testing.T, dataDir string, wrapped, pseudonym, sealed, commitment []byte) (cipher.AEAD, []byte) {
	t.Helper()
	kekHex, err := os.ReadFile(filepath.Join(dataDir, "keys", "kek"))
	if err != nil {
		t.Fatal(err)
	}
	kek, err := hex.DecodeString(strings.TrimSpace(string(kekHex)))
	if err != nil {
		t.Fatal(err)
	}
	open := func(key, sealed, ad []byte) []byte {
		b, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		a, err := cipher.NewGCM(b)
		if err != nil {
			t.Fatal(err)
		}
		out, err := a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():], ad)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	dk := open(kek, wrapped, pseudonym)
	b, _ := aes.NewCipher(dk)
	a, _ := cipher.NewGCM(b)
	return a, open(dk, sealed, commitment)
}

// sealConsentAsOperator seals a consent version as the consent store does
// (consent/consentsql), with the data directory's KEK: AES-256-GCM under the
// patient's data key, bound to the pseudonym and the version.
func sealConsentAsOperator(t *testing.T, dataDir string, pseudonym, wrapped []byte, version int64, plain []byte) []byte {
	t.Helper()
	kekHex, err := os.ReadFile(filepath.Join(dataDir, "keys", "kek"))
	if err != nil {
		t.Fatal(err)
	}
	kek, err := hex.DecodeString(strings.TrimSpace(string(kekHex)))
	if err != nil {
		t.Fatal(err)
	}
	aead := func(key []byte) cipher.AEAD {
		b, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		a, err := cipher.NewGCM(b)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	k := aead(kek)
	dk, err := k.Open(nil, wrapped[:k.NonceSize()], wrapped[k.NonceSize():], pseudonym)
	if err != nil {
		t.Fatal(err)
	}
	a := aead(dk)
	ad := append([]byte("vigie/patient-data/v1\x00vigie/consent/v1\x00"), pseudonym...)
	ad = binary.BigEndian.AppendUint64(ad, uint64(version))
	nonce := make([]byte, a.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	return a.Seal(nonce, nonce, plain, ad)
}

// editHistory returns an edit of the patient's listing.
func editHistory(f func(r *vigiev1.ListAccessesResponse)) func(string, []byte) []byte {
	return func(path string, body []byte) []byte {
		if path != "/v1/me/accesses" {
			return body
		}
		var r vigiev1.ListAccessesResponse
		if err := protojson.Unmarshal(body, &r); err != nil {
			return body
		}
		f(&r)
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(&r)
		if err != nil {
			return body
		}
		return b
	}
}
