//go:build pkcs11

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/ledger/keys/hsm/hsmtest"
)

// Under the pkcs11 tag, the binary the tests run is vigie-hsm
// (CGO_ENABLED=1, dynamically linked).
func init() { testBuildTags, testCGO = "pkcs11", "1" }

// TestHSMServe runs a node whose checkpoint and receipt keys and KEK are
// in a SoftHSM2 token: it signs and seals through the module, vigie verify
// and vigie audit pass; a key missing from the module stops serve, named;
// the KEK is rotated while the node serves, and the old one is then not
// needed.
func TestHSMServe(t *testing.T) {
	cfg, m := hsmtest.Keys(t, "vigie-hsm", "vigie-kek")
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(cfg.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hsmArgs := []string{"--hsm-module", cfg.Module, "--hsm-token", cfg.Token, "--hsm-pin-file", pinFile}
	dataDir := filepath.Join(t.TempDir(), "data")

	t.Run("missing key", func(t *testing.T) {
		for _, tc := range []struct{ flag, label string }{
			{"--hsm-receipt-key", "no-such-receipt-key"},
			{"--hsm-checkpoint-key", "no-such-checkpoint-key"},
			{"--hsm-kek", "no-such-kek"},
			{"--hsm-old-keks", "no-such-old-kek"},
		} {
			var out, errOut bytes.Buffer
			args := append([]string{"serve", "--data-dir", filepath.Join(t.TempDir(), "d"), "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, hsmArgs...)
			code := run(context.Background(), append(args, tc.flag, tc.label), &out, &errOut)
			if code == exitOK || !strings.Contains(errOut.String(), `"`+tc.label+`"`) {
				t.Errorf("serve %s %s: exit %d, want a failure naming the label:\n%s", tc.flag, tc.label, code, errOut.String())
			}
		}
	})

	w := newWorldWith(t, dataDir, hsmArgs...)
	// The keys printed are the module's.
	for role, label := range map[string]string{"checkpoint": "vigie-checkpoint", "receipt": "vigie-receipt"} {
		_, vkey, err := m.Signer(label, map[string]string{"checkpoint": w.e.cpKey.Name(), "receipt": w.e.rcptKey.Name()}[role])
		if err != nil {
			t.Fatal(err)
		}
		v, _ := note.NewVerifier(vkey)
		if got := map[string]note.Verifier{"checkpoint": w.e.cpKey, "receipt": w.e.rcptKey}[role]; got.KeyHash() != v.KeyHash() {
			t.Errorf("the %s key served is not the module's", role)
		}
	}
	for _, f := range []string{"kek", "checkpoint.key", "receipt.key"} {
		if _, err := os.Stat(filepath.Join(dataDir, "keys", f)); err == nil {
			t.Errorf("keys/%s exists: the key is in the module", f)
		}
	}
	story := func(round int) {
		t.Helper()
		for i := range 3 {
			doCheck(t, w.e, fmt.Sprint("h-", round, "-", i), e2ePatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
			doCheck(t, w.e, fmt.Sprint("o-", round, "-", i), otherPatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
		}
		if _, err := vigiev1.NewConsentServiceClient(w.e.conn).UpdateConsent(w.e.as(auth.RolePatient, e2ePatient), &vigiev1.UpdateConsentRequest{ExpectedVersion: int64(round), Directives: []*vigiev1.Directive{{
			Id: fmt.Sprint("no-dr-b-", round), Kind: &vigiev1.Directive_BlockProfessional{BlockProfessional: &vigiev1.BlockProfessional{Rpps: otherDoctor}},
		}}}); err != nil {
			t.Fatal(err)
		}
	}
	verifyAll := func(what string, events int) {
		t.Helper()
		if code, rep, errOut := w.verify(e2ePatient, t.TempDir()); code != exitOK || rep.Verdict != "verified" || len(rep.Events) < events {
			t.Fatalf("%s: vigie verify: exit %d, %s, %d events\n%s", what, code, rep.Verdict, len(rep.Events), errOut)
		}
		if code, rep, errOut := w.audit(auth.RoleRegulator, t.TempDir()); code != exitOK || len(rep.Findings)+len(rep.Replayed)+len(rep.Alerts) != 0 {
			t.Fatalf("%s: vigie audit: exit %d, %+v\n%s", what, code, rep, errOut)
		}
	}
	story(0)
	verifyAll("keys in the module", 4)

	// KEK rotation while serving: a new KEK in the module, the old one
	// still opening what it wrapped until the node has rewrapped it.
	if err := m.GenerateKEK("vigie-kek-2"); err != nil {
		t.Fatal(err)
	}
	w.stop()
	w.args = append(hsmArgs, "--hsm-kek", "vigie-kek-2", "--hsm-old-keks", "vigie-kek")
	w.start(dataDir)
	story(1)
	deadline := time.Now().Add(30 * time.Second)
	for {
		time.Sleep(500 * time.Millisecond)
		w.stop()
		if strings.Contains(w.e.proc.stderr.String(), "data keys rewrapped") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no rewrap after 30s:\n%s", w.e.proc.stderr)
		}
		w.start(dataDir)
	}
	// The old KEK gone from the configuration: every patient's data opens.
	w.args = append(hsmArgs, "--hsm-kek", "vigie-kek-2")
	w.start(dataDir)
	story(2)
	verifyAll("after the rotation, the old KEK removed", 8)
}

// TestHSMRotateLogKey: a node signing with a checkpoint key in the
// module; vigie verify saves its state; vigie rotate-log-key
// --hsm-next-checkpoint-key makes the new key pair in the module and
// signs the transition with both; the node restarted with the new label
// signs with it, vigie verify from its old state follows the transition
// and pins the new key; the old label is refused, named, no key quoted.
func TestHSMRotateLogKey(t *testing.T) {
	cfg, m := hsmtest.Keys(t, "vigie-hsm", "vigie-kek")
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(cfg.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hsmArgs := []string{"--hsm-module", cfg.Module, "--hsm-token", cfg.Token, "--hsm-pin-file", pinFile}
	w := newWorldWith(t, filepath.Join(t.TempDir(), "data"), hsmArgs...)
	verifyState := t.TempDir()
	doCheck(t, w.e, "hr-1", e2ePatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
	w.e.waitCheckpoint(1)
	if code, rep, errOut := w.verify(e2ePatient, verifyState); code != exitOK || len(rep.Findings) != 0 {
		t.Fatalf("verify before the rotation: exit %d, %+v\n%s", code, rep.Findings, errOut)
	}
	_, oldVKey, err := m.Signer("vigie-checkpoint", w.e.cpKey.Name())
	if err != nil {
		t.Fatal(err)
	}
	oldKey := w.e.cpKey
	w.stop()

	if code, out := runVigie(t, nil, append([]string{"rotate-log-key", "--data-dir", w.dir, "--hsm-next-checkpoint-key", "vigie-checkpoint-2"}, hsmArgs...)...); code != exitOK ||
		!strings.Contains(out, "--hsm-checkpoint-key vigie-checkpoint-2") {
		t.Fatalf("rotate-log-key: exit %d\n%s", code, out)
	}
	_, newVKey, err := m.Signer("vigie-checkpoint-2", w.e.cpKey.Name())
	if err != nil {
		t.Fatalf("the new key is not in the module: %v", err)
	}
	for _, f := range []string{"checkpoint.key", "checkpoint-next.key"} {
		if _, err := os.Stat(filepath.Join(w.dir, "keys", f)); err == nil {
			t.Errorf("keys/%s exists: the keys are in the module", f)
		}
	}
	// The old label: refused, named, no key quoted.
	code, out := runVigie(t, nil, append([]string{"serve", "--data-dir", copyDir(t, w.dir), "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, hsmArgs...)...)
	if code != exitFailure || !strings.Contains(out, "was replaced by a rotation") || !strings.Contains(out, `"vigie-checkpoint"`) {
		t.Errorf("serve with the old label: exit %d\n%s", code, out)
	}
	if i := strings.LastIndex(oldVKey, "+"); strings.Contains(out, oldVKey[i+1:]) {
		t.Errorf("serve with the old label quotes the key:\n%s", out)
	}

	w.args = append(hsmArgs, "--hsm-checkpoint-key", "vigie-checkpoint-2")
	w.start(w.dir)
	if w.e.cpKey.KeyHash() == oldKey.KeyHash() {
		t.Fatal("the node still prints the old key")
	}
	doCheck(t, w.e, "hr-2", e2ePatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
	waitNewKeyCheckpoint(t, w.e, 2)
	if code, rep, errOut := w.verify(e2ePatient, verifyState); code != exitOK || len(rep.Findings) != 0 || len(rep.Events) < 2 {
		t.Fatalf("verify after the rotation: exit %d, %d events, %+v\n%s", code, len(rep.Events), rep.Findings, errOut)
	}
	if !stateHolds(t, verifyState, newVKey) {
		t.Errorf("the verifier's state does not pin the new key %s", newVKey)
	}
}
