package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/cmd/vigie/internal/node"
	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// TestBackupRestore backs up a running node under load, restores the
// archive into new directories and checks what each kind of verifier
// sees: (a) with no checkpoint published past the backup, the restored
// node records on and the verifiers whose state predates the backup
// pass; (b) with one published past it, the node refuses to answer and
// to sign, and a verifier whose state was saved after the backup reports
// a rollback.
func TestBackupRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts vigie serve four times")
	}
	dir := filepath.Join(t.TempDir(), "data")
	w := newWorld(t, dir)
	for i := range 3 {
		doCheck(t, w.e, fmt.Sprint("b-", i), e2ePatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
	}
	before := filepath.Join(t.TempDir(), "before")
	if code, rep, errOut := w.verify(e2ePatient, before); code != exitOK || len(rep.Findings) != 0 {
		t.Fatalf("verify before the backup: exit %d, %+v\n%s", code, rep, errOut)
	}
	auditBefore := filepath.Join(t.TempDir(), "audit-before")
	if code, rep, errOut := w.audit(auth.RoleAuditor, auditBefore); code != exitOK || len(rep.Findings) != 0 {
		t.Fatalf("audit before the backup: exit %d, %+v\n%s", code, rep, errOut)
	}

	// Under load: Check calls run throughout the backup.
	ctx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var loaded atomic.Int64
	var loadErr atomic.Value
	svc := vigiev1.NewAccessServiceClient(w.e.conn)
	cctx := w.e.as(auth.RoleService, "hospital-his", e2eHospital)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				req := checkRequest(fmt.Sprintf("load-%d-%d", g, i))
				req.PatientIns = otherPatient
				if _, err := svc.Check(cctx, req); err != nil && ctx.Err() == nil {
					loadErr.Store(err)
					return
				}
				loaded.Add(1)
			}
		}()
	}
	for loaded.Load() < 20 {
		if err := loadErr.Load(); err != nil {
			t.Fatalf("load: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	archive := filepath.Join(t.TempDir(), "vigie.backup")
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"backup", "--data-dir", dir, "--out", archive}, &out, &errOut)
	atBackup := loaded.Load()
	for loaded.Load() < atBackup+20 && loadErr.Load() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	stopLoad()
	wg.Wait()
	if code != exitOK {
		t.Fatalf("vigie backup: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if err := loadErr.Load(); err != nil {
		t.Fatalf("load: %v", err)
	}
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	m, err := node.CheckArchive(f)
	f.Close()
	if err != nil {
		t.Fatalf("CheckArchive: %v", err)
	}
	if m.Origin == "" || m.CheckpointSize == 0 || len(m.Files) != 2 {
		t.Fatalf("manifest %+v", m)
	}
	if code, _, _ := runLocal("backup", "--data-dir", dir, "--out", archive); code != exitFailure {
		t.Errorf("vigie backup over an existing file: exit %d, want %d", code, exitFailure)
	}

	// After the backup: more events, a checkpoint published past it, and
	// verifiers whose state is saved after it.
	var last *vigiev1.CheckResponse
	for i := range 3 {
		last = doCheck(t, w.e, fmt.Sprint("a-", i), e2ePatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
	}
	waitCheckpoint(t, w, last.Event.LeafIndex+1)
	after := filepath.Join(t.TempDir(), "after")
	if code, rep, errOut := w.verify(e2ePatient, after); code != exitOK || len(rep.Findings) != 0 || rep.Log.CheckpointSize <= m.CheckpointSize {
		t.Fatalf("verify after the backup: exit %d, %+v\n%s", code, rep, errOut)
	}
	auditAfter := filepath.Join(t.TempDir(), "audit-after")
	if code, rep, errOut := w.audit(auth.RoleAuditor, auditAfter); code != exitOK || len(rep.Findings) != 0 {
		t.Fatalf("audit after the backup: exit %d, %+v\n%s", code, rep, errOut)
	}
	published := filepath.Join(t.TempDir(), "published-checkpoint")
	resp, err := http.Get(w.proxy.URL + "/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if cp, err := verify.OpenCheckpoint(b, w.e.cpKey); err != nil || cp.Size <= m.CheckpointSize {
		t.Fatalf("published checkpoint: %v, size %d, backup's %d", err, cp.Size, m.CheckpointSize)
	}
	if err := os.WriteFile(published, b, 0o600); err != nil {
		t.Fatal(err)
	}
	w.stop()

	// restore checks the archive and wants a new directory.
	restore := func(t *testing.T) string {
		t.Helper()
		nd := filepath.Join(t.TempDir(), "restored")
		if code, out, errOut := runLocal("restore", archive, "--data-dir", nd); code != exitOK {
			t.Fatalf("vigie restore: exit %d\n%s%s", code, out, errOut)
		}
		// The keys directory kept apart, as the operator copies it back.
		kept := copyDir(t, node.KeysDir(dir))
		if err := os.Rename(kept, node.KeysDir(nd)); err != nil {
			t.Fatal(err)
		}
		return nd
	}
	t.Run("refusals", func(t *testing.T) {
		if code, _, errOut := runLocal("restore", archive, "--data-dir", dir); code != exitFailure || !strings.Contains(errOut, "not empty") {
			t.Errorf("restore into a non-empty directory: exit %d, %s", code, errOut)
		}
		damaged := filepath.Join(t.TempDir(), "damaged")
		b, err := os.ReadFile(archive)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x40
		os.WriteFile(damaged, b, 0o600)
		nd := filepath.Join(t.TempDir(), "new")
		if code, _, errOut := runLocal("restore", damaged, "--data-dir", nd); code != exitFailure {
			t.Errorf("restore of a damaged archive: exit %d, %s", code, errOut)
		}
		if _, err := os.Stat(nd); !os.IsNotExist(err) {
			t.Errorf("a failed restore left %s: %v", nd, err)
		}
		// A restored directory starts only with --published-checkpoint.
		nd = restore(t)
		if code, out := runVigie(t, nil, "serve", "--data-dir", nd, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"); code != exitFailure || !strings.Contains(out, "--published-checkpoint") {
			t.Errorf("serve of a restored directory without --published-checkpoint: exit %d\n%s", code, out)
		}
	})

	t.Run("a checkpoint published past the backup", func(t *testing.T) {
		nd := restore(t)
		w.args = []string{"--published-checkpoint", published}
		w := w.restart(t, nd)
		if !strings.Contains(w.e.proc.output(), "REFUSING TO RECORD OR SIGN") {
			t.Errorf("the banner does not say the node refuses:\n%s", w.e.proc.output())
		}
		req := checkRequest("after-restore")
		req.PatientIns = e2ePatient
		_, err := vigiev1.NewAccessServiceClient(w.e.conn).Check(w.e.as(auth.RoleService, "hospital-his", e2eHospital), req)
		if status.Code(err) != codes.Unavailable {
			t.Errorf("Check on the halted node: %v, want UNAVAILABLE", err)
		}
		resp, err := http.Get(w.proxy.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("/readyz = %d, want 503", resp.StatusCode)
		}
		if code, out := runVigie(t, nil, "health", "--server", w.proxy.URL); code == exitOK {
			t.Errorf("vigie health on the halted node: exit 0\n%s", out)
		}
		// The verifier saved after the backup sees the log go back.
		code, rep, errOut := w.audit(auth.RoleAuditor, copyDir(t, auditAfter))
		if code != exitFailure || !hasFinding(rep.Findings, audit.KindRollback) {
			t.Errorf("audit with state saved after the backup: exit %d, findings %v\n%s", code, rep.Findings, errOut)
		}
		// A patient's history is not served: the read would be recorded.
		if code, _, errOut := w.verify(e2ePatient, copyDir(t, after)); code != exitUsage || !strings.Contains(errOut, "Unavailable") {
			t.Errorf("verify on the halted node: exit %d, want %d (the server refuses)\n%s", code, exitUsage, errOut)
		}
		w.stop()
		// Nothing was signed: the latest checkpoint is the backup's.
		if got := latestCheckpointSize(t, nd); got != m.CheckpointSize {
			t.Errorf("latest checkpoint of the halted node: size %d, want the backup's %d", got, m.CheckpointSize)
		}
	})

	t.Run("a new log succeeds the old one", func(t *testing.T) {
		pub, err := os.ReadFile(filepath.Join(node.KeysDir(dir), "checkpoint.pub"))
		if err != nil {
			t.Fatal(err)
		}
		oldKey := strings.TrimSpace(string(pub))
		oldOrigin, _, _ := strings.Cut(oldKey, "+")
		nd := filepath.Join(t.TempDir(), "successor")
		// Refused before anything is made, naming the flag: a checkpoint
		// that does not verify under the key given, a flag alone.
		_, otherKey, _ := note.GenerateKey(nil, oldOrigin)
		if code, _, errOut := runLocal("init", "--data-dir", nd, "--log-name", "successor.localhost", "--succeeds", published, "--previous-key", otherKey); code != exitUsage || !strings.Contains(errOut, "--succeeds") {
			t.Errorf("init with a checkpoint under another key: exit %d\n%s", code, errOut)
		}
		if code, _, errOut := runLocal("init", "--data-dir", nd, "--succeeds", published); code != exitUsage || !strings.Contains(errOut, "--previous-key") {
			t.Errorf("init with --succeeds alone: exit %d\n%s", code, errOut)
		}
		if _, err := os.Stat(nd); !os.IsNotExist(err) {
			t.Errorf("a refused init made %s: %v", nd, err)
		}
		code, out, errOut := runLocal("init", "--data-dir", nd, "--log-name", "successor.localhost", "--succeeds", published, "--previous-key", oldKey)
		if code != exitOK || !strings.Contains(out, "succeeds "+oldOrigin) {
			t.Fatalf("vigie init --succeeds: exit %d\n%s%s", code, out, errOut)
		}
		// Once only: the succession is the log's first event.
		if code, _, errOut := runLocal("init", "--data-dir", nd, "--succeeds", published, "--previous-key", oldKey); code != exitFailure || !strings.Contains(errOut, "first event") {
			t.Errorf("a second succession: exit %d\n%s", code, errOut)
		}

		w.args = nil
		w := w.restart(t, nd)
		if !strings.HasPrefix(w.e.cpKey.Name(), "successor.localhost/") {
			t.Fatalf("the new log's origin %s", w.e.cpKey.Name())
		}
		r := doCheck(t, w.e, "in-the-new-log", e2ePatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
		if r.Event.LeafIndex == 0 {
			t.Errorf("the first access recorded at leaf 0, before the succession")
		}
		waitCheckpoint(t, w, r.Event.LeafIndex+1)
		auditNew := filepath.Join(t.TempDir(), "audit-new")
		code, rep, errOut := w.audit(auth.RoleRegulator, auditNew, "--previous-key", oldKey)
		if code != exitOK || len(rep.Findings) != 0 || rep.Succession == nil || rep.Succession.Origin != oldOrigin ||
			rep.Succession.Size <= m.CheckpointSize || !rep.Succession.Pinned || !strings.HasPrefix(oldKey, rep.Succession.Key) {
			t.Errorf("audit of the new log: exit %d, succession %+v, findings %v\n%s", code, rep.Succession, rep.Findings, errOut)
		}
		code, tableOut, _ := w.cli("audit", "--lang", "en", "--state-dir", copyDir(t, auditNew), "--token", w.token(auth.RoleRegulator, "cnil"), "--alert-odd-hours-min", "1000000")
		if want := "This log succeeds " + oldOrigin + " at size "; code != exitOK || !strings.Contains(tableOut, want) {
			t.Errorf("vigie audit's table: exit %d, want %q\n%s", code, want, tableOut)
		}
		// An auditor whose state pinned the old log is told too.
		code, arep, errOut := w.audit(auth.RoleAuditor, copyDir(t, auditAfter))
		if code != exitFailure || arep.OriginChanged == nil || arep.OriginChanged.Pinned != oldOrigin || arep.OriginChanged.Served != w.e.cpKey.Name() {
			t.Errorf("audit with the old log's state: exit %d, origin change %+v, findings %v\n%s", code, arep.OriginChanged, arep.Findings, errOut)
		}
		// The patient whose state pinned the old log is told the log
		// changed origin, and the verification fails.
		code, vrep, errOut := w.verify(e2ePatient, copyDir(t, after))
		if code != exitFailure || vrep.OriginChanged == nil || vrep.OriginChanged.Served != w.e.cpKey.Name() || vrep.OriginChanged.Pinned != oldOrigin {
			t.Errorf("verify with the old log's state: exit %d, origin change %+v, findings %v\n%s", code, vrep.OriginChanged, vrep.Findings, errOut)
		}
		// A new state pins the new log on first use and verifies.
		if code, vrep, errOut := w.verify(e2ePatient, filepath.Join(t.TempDir(), "new-state")); code != exitOK || len(vrep.Findings) != 0 {
			t.Errorf("verify of the new log from a new state: exit %d, findings %v\n%s", code, vrep.Findings, errOut)
		}
		w.stop()
	})

	t.Run("no checkpoint published past the backup", func(t *testing.T) {
		nd := restore(t)
		w.args = []string{"--published-checkpoint", filepath.Join(nd, node.RestoredCheckpoint)}
		w := w.restart(t, nd)
		w.args = nil
		if _, err := os.Stat(filepath.Join(nd, node.RestoredCheckpoint)); !os.IsNotExist(err) {
			t.Errorf("the restored mark is still there: %v", err)
		}
		r := doCheck(t, w.e, "after-restore", e2ePatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
		waitCheckpoint(t, w, r.Event.LeafIndex+1)
		if code, rep, errOut := w.verify(e2ePatient, copyDir(t, before)); code != exitOK || len(rep.Findings) != 0 {
			t.Errorf("verify with state saved before the backup: exit %d, %+v\n%s", code, rep.Findings, errOut)
		}
		if code, rep, errOut := w.audit(auth.RoleAuditor, copyDir(t, auditBefore)); code != exitOK || len(rep.Findings) != 0 {
			t.Errorf("audit with state saved before the backup: exit %d, %+v\n%s", code, rep.Findings, errOut)
		}
		// Had a checkpoint been published past the backup, its holders
		// would see a fork or a rollback: the verifiers are the backstop
		// of the operator's word.
		code, rep, errOut := w.verify(e2ePatient, copyDir(t, after))
		if code != exitFailure || !hasFinding(rep.Findings, audit.KindRollback) && !hasFinding(rep.Findings, audit.KindFork) {
			t.Errorf("verify with state saved after the backup: exit %d, findings %v\n%s", code, rep.Findings, errOut)
		}
		w.stop()
	})
}

// runLocal runs a vigie command in process, without a server.
func runLocal(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func hasFinding(fs []audit.Finding, kind audit.Kind) bool {
	for _, f := range fs {
		if f.Kind == kind {
			return true
		}
	}
	return false
}

// latestCheckpointSize reads the latest checkpoint's size in a stopped
// data directory.
func latestCheckpointSize(t *testing.T, dataDir string) uint64 {
	t.Helper()
	db := openDB(t, filepath.Join(dataDir, "vigie.db"))
	var size uint64
	if err := db.QueryRow("SELECT max(size) FROM checkpoints").Scan(&size); err != nil {
		t.Fatal(err)
	}
	return size
}
