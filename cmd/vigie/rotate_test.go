package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// TestRotateLogKey, with real processes: a patient's vigie verify and an
// auditor's vigie audit save their state under the first key; the node
// stops, vigie rotate-log-key replaces the key, and the node restarted
// signs with the new one. Both verifiers, from their old state, follow
// the transition served at /checkpoint/transitions and pin the new key;
// the node refuses to start with the old key, naming it.
func TestRotateLogKey(t *testing.T) {
	w := newWorld(t, filepath.Join(t.TempDir(), "data"))
	verifyState, auditState := t.TempDir(), t.TempDir()
	doCheck(t, w.e, "r-1", e2ePatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
	w.e.waitCheckpoint(1)
	if code, rep, errOut := w.verify(e2ePatient, verifyState); code != exitOK || len(rep.Findings) != 0 {
		t.Fatalf("verify before the rotation: exit %d, %+v\n%s", code, rep.Findings, errOut)
	}
	if code, rep, errOut := w.audit(auth.RoleAuditor, auditState, "--log-only"); code != exitOK || len(rep.Findings) != 0 {
		t.Fatalf("audit before the rotation: exit %d, %+v\n%s", code, rep.Findings, errOut)
	}
	oldKey := w.e.cpKey
	w.stop()

	code, out := runVigie(t, nil, "rotate-log-key", "--data-dir", w.dir)
	if code != exitOK || !strings.Contains(out, "vigie-next-log-key ") {
		t.Fatalf("rotate-log-key: exit %d\n%s", code, out)
	}
	// The old key back in place: refused, named.
	old := copyDir(t, w.dir)
	for _, ext := range []string{".key", ".pub"} {
		b, err := os.ReadFile(filepath.Join(old, "keys", "checkpoint-retired-1"+ext))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(old, "keys", "checkpoint"+ext), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if code, out := runVigie(t, nil, "serve", "--data-dir", old); code != exitFailure || !strings.Contains(out, "was replaced by a rotation") || !strings.Contains(out, "the checkpoint key (") {
		t.Errorf("serve with the old key: exit %d\n%s", code, out)
	}

	w.start(w.dir)
	if w.e.cpKey.KeyHash() == oldKey.KeyHash() {
		t.Fatal("the node still prints the old key")
	}
	doCheck(t, w.e, "r-2", e2ePatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
	waitNewKeyCheckpoint(t, w.e, 2)
	code, rep, errOut := w.verify(e2ePatient, verifyState)
	if code != exitOK || len(rep.Findings) != 0 || len(rep.Events) < 2 {
		t.Fatalf("verify after the rotation: exit %d, %d events, %+v\n%s", code, len(rep.Events), rep.Findings, errOut)
	}
	newKey := strings.TrimSpace(string(must(os.ReadFile(filepath.Join(w.dir, "keys", "checkpoint.pub")))))
	if !stateHolds(t, verifyState, newKey) {
		t.Errorf("the verifier's state does not pin the new key %s", newKey)
	}
	if code, rep, errOut := w.audit(auth.RoleAuditor, auditState, "--log-only"); code != exitOK || len(rep.Findings) != 0 {
		t.Fatalf("audit after the rotation: exit %d, %+v\n%s", code, rep.Findings, errOut)
	}
	// Pinned now: the next run needs no transition.
	if code, rep, errOut := w.verify(e2ePatient, verifyState); code != exitOK || len(rep.Findings) != 0 {
		t.Fatalf("verify with the new key pinned: exit %d, %+v\n%s", code, rep.Findings, errOut)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// stateHolds reports whether a file of a state directory holds s.
func stateHolds(t *testing.T, dir, s string) bool {
	found := false
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), s) {
				found = true
			}
		}
		return nil
	})
	return found
}

// TestRotateLogKeyHSMFlagsTogether: --hsm-next-checkpoint-key without
// --hsm-module, or the module without the new key's label, is a usage
// error naming the flags; nothing is opened.
func TestRotateLogKeyHSMFlagsTogether(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	for _, args := range [][]string{
		{"--hsm-next-checkpoint-key", "vigie-checkpoint-2"},
		{"--hsm-module", "/nonexistent/libpkcs11.so", "--hsm-token", "t", "--hsm-pin-file", "/nonexistent/pin"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append([]string{"rotate-log-key", "--data-dir", dir}, args...), &out, &errOut)
		if code != exitUsage || !strings.Contains(errOut.String(), "--hsm-next-checkpoint-key") {
			t.Errorf("rotate-log-key %v: exit %d, want a usage error naming the flags:\n%s", args, code, errOut.String())
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("rotate-log-key %v made %s", args, dir)
		}
	}
	if testBuildTags == "" { // the static build refuses the module, as serve does
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"rotate-log-key", "--data-dir", dir, "--hsm-module", "/nonexistent/libpkcs11.so", "--hsm-next-checkpoint-key", "vigie-checkpoint-2"}, &out, &errOut)
		if code != exitFailure || !strings.Contains(errOut.String(), "without PKCS#11") {
			t.Errorf("static rotate-log-key --hsm-module: exit %d\n%s", code, errOut.String())
		}
	}
}

// waitNewKeyCheckpoint waits for a signed checkpoint of at least size
// leaves under the node's key after a rotation: until the log grows, the
// latest checkpoint is the old key's, which does not open under it.
func waitNewKeyCheckpoint(t *testing.T, e *e2e, size uint64) {
	t.Helper()
	logs := vigiev1.NewLogServiceClient(e.conn)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		body, err := logs.GetCheckpoint(context.Background(), &vigiev1.GetCheckpointRequest{})
		if err == nil {
			if cp, err := verify.OpenCheckpoint(body.Data, e.cpKey); err == nil && cp.Size >= size {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of %d leaves under the new key within a minute", size)
		}
	}
}
