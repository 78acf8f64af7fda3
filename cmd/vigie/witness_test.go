package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// litewitness is a litewitness process (filippo.io/torchwood v0.6.1,
// built by scripts/litewitness-bin.sh) with its own ssh-agent holding its
// key.
type litewitness struct {
	name, url string
	key       []byte // Ed25519 public key
	cmd       *exec.Cmd
	out       *bytes.Buffer
}

// litewitnessBin builds (once, cached) and returns the directory of
// litewitness and witnessctl.
func litewitnessBin(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("../../scripts/litewitness-bin.sh").Output()
	if err != nil {
		t.Fatalf("scripts/litewitness-bin.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// startLitewitness starts a witness named name that knows the log origin
// with key vkey, on a loopback port.
func startLitewitness(t *testing.T, bin, name, origin, vkey string) *litewitness {
	t.Helper()
	dir, err := os.MkdirTemp("", "lw") // short: a socket path is at most 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	run := func(env []string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	keyFile := filepath.Join(dir, "key")
	run(nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", keyFile)
	pub, err := os.ReadFile(keyFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	blob, err := base64.StdEncoding.DecodeString(strings.Fields(string(pub))[1])
	if err != nil || len(blob) < 32 {
		t.Fatalf("the witness's public key: %v", err)
	}
	fingerprint := strings.Fields(run(nil, "ssh-keygen", "-l", "-E", "sha256", "-f", keyFile+".pub"))[1]

	sock := filepath.Join(dir, "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i > 200 {
			t.Fatal("ssh-agent did not create its socket")
		}
		time.Sleep(10 * time.Millisecond)
	}
	run([]string{"SSH_AUTH_SOCK=" + sock}, "ssh-add", "-q", keyFile)

	db := filepath.Join(dir, "witness.db")
	run(nil, filepath.Join(bin, "witnessctl"), "add-log", "-db", db, "-origin", origin)
	run(nil, filepath.Join(bin, "witnessctl"), "add-key", "-db", db, "-origin", origin, "-key", vkey)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	w := &litewitness{name: name, url: "http://" + addr, key: blob[len(blob)-32:], out: &bytes.Buffer{}}
	w.cmd = exec.Command(filepath.Join(bin, "litewitness"), "-name", name, "-db", db, "-ssh-agent", sock, "-key", fingerprint, "-listen", addr)
	w.cmd.Stdout, w.cmd.Stderr = w.out, w.out
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.stop)
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if i > 500 {
			t.Fatalf("litewitness %s does not listen:\n%s", name, w.out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return w
}

func (w *litewitness) stop() {
	if w.cmd.ProcessState == nil {
		w.cmd.Process.Signal(syscall.SIGKILL)
		w.cmd.Wait()
	}
}

// TestLitewitness: vigie serve submits its checkpoints to three real
// witnesses (litewitness, quorum two of three) and serves their
// cosignatures at /checkpoint; vigie verify and vigie audit, given the
// policy, accept what is served while two or three witnesses are up, and
// report the quorum not met while only one cosigned.
func TestLitewitness(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs litewitness")
	}
	bin := litewitnessBin(t)
	data := filepath.Join(t.TempDir(), "data")
	w := newWorld(t, data)
	vkey := keyLine.FindStringSubmatch(w.e.proc.output())[2] // the checkpoint key, printed first
	origin := w.e.cpKey.Name()
	rawKey, err := base64.StdEncoding.DecodeString(strings.SplitN(vkey, "+", 3)[2]) // the name has no "+", the key may
	if err != nil {
		t.Fatal(err)
	}

	var witnesses []*litewitness
	var policy strings.Builder
	fmt.Fprintf(&policy, "# The test's witnesses, quorum two of three.\nlog %x\n", rawKey[1:])
	for i := range 3 {
		lw := startLitewitness(t, bin, fmt.Sprintf("witness.test/w%d", i+1), origin, vkey)
		witnesses = append(witnesses, lw)
		fmt.Fprintf(&policy, "witness %s %x %s\n", lw.name, lw.key, lw.url)
	}
	policy.WriteString("group witnesses 2 witness.test/w1 witness.test/w2 witness.test/w3\nquorum witnesses\n")
	policyFile := filepath.Join(t.TempDir(), "witnesses.txt")
	if err := os.WriteFile(policyFile, []byte(policy.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := verify.ParseWitnessPolicy([]byte(policy.String()))
	if err != nil {
		t.Fatal(err)
	}
	// Two witnesses down from the start: only w1 cosigns.
	witnesses[1].stop()
	witnesses[2].stop()
	w.args = []string{"--witness-policy", policyFile}
	w.restart(t, data)
	if code, body := httpGet(t, w.proxy.URL+"/witness-policy"); code != http.StatusOK || body != string(p.Format()) {
		t.Errorf("GET /witness-policy = %d %q, want the policy in canonical form", code, body)
	}

	n := 0
	check := func() {
		t.Helper()
		n++
		doCheck(t, w.e, fmt.Sprintf("w-%d", n), e2ePatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
	}
	// servedWhen waits until /checkpoint's cosignatures are ok.
	servedWhen := func(ok func(r verify.CosignatureCheck) bool) verify.CosignatureCheck {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := http.Get(w.proxy.URL + "/checkpoint")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r, err := p.CheckCosignatures(b, w.e.cpKey)
			if err == nil && ok(r) {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("/checkpoint: %+v, %v\n%s", r, err, b)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// served waits until /checkpoint is cosigned by want witnesses at
	// least, at a size of min or more.
	served := func(want int, min uint64) verify.CosignatureCheck {
		t.Helper()
		return servedWhen(func(r verify.CosignatureCheck) bool { return len(r.Cosigned) >= want && r.Checkpoint.Size >= min })
	}
	findings := func(fs []audit.Finding) []audit.Kind { return slices.Sorted(slices.Values(kindsOf(fs))) }

	check()
	r := served(1, 1)
	if r.Met {
		t.Fatalf("met with one witness: %+v", r)
	}
	vstate, astate := t.TempDir(), t.TempDir()
	code, vrep, errOut := w.verify(e2ePatient, vstate, "--witness-policy", policyFile)
	if code != exitFailure || !slices.Contains(findings(vrep.Findings), audit.KindWitnessQuorum) {
		t.Errorf("vigie verify with one cosignature: exit %d, findings %v\n%s", code, vrep.Findings, errOut)
	}
	code, arep, errOut := w.audit(auth.RoleRegulator, astate, "--witness-policy", policyFile)
	if k := slices.Compact(findings(arep.Findings)); code != exitFailure || !slices.Equal(k, []audit.Kind{audit.KindWitnessQuorum}) {
		t.Errorf("vigie audit with one cosignature: exit %d, findings %v\n%s", code, arep.Findings, errOut)
	}

	// All three up: the quorum is met, every verifier agrees.
	for i := 1; i < 3; i++ {
		witnesses[i] = startAgain(t, witnesses[i])
	}
	check()
	r = served(3, r.Checkpoint.Size+1)
	if !r.Met {
		t.Fatalf("not met with three witnesses: %+v", r)
	}
	for _, stateDir := range []string{vstate, t.TempDir()} {
		if code, vrep, errOut := w.verify(e2ePatient, stateDir, "--witness-policy", policyFile); code != exitOK {
			t.Errorf("vigie verify with three cosignatures: exit %d, findings %v\n%s", code, vrep.Findings, errOut)
		}
	}
	if code, arep, errOut := w.audit(auth.RoleRegulator, astate, "--witness-policy", policyFile); code != exitOK {
		t.Errorf("vigie audit with three cosignatures: exit %d, findings %v\n%s", code, arep.Findings, errOut)
	}

	// One witness down: still met at the checkpoints signed since.
	witnesses[2].stop()
	check()
	r = servedWhen(func(r verify.CosignatureCheck) bool {
		return !slices.Contains(r.Cosigned, "witness.test/w3") && len(r.Cosigned) > 0
	})
	if !r.Met || len(r.Cosigned) != 2 {
		t.Errorf("one witness down: %+v", r)
	}
	if code, arep, errOut := w.audit(auth.RoleRegulator, astate, "--witness-policy", policyFile); code != exitOK {
		t.Errorf("vigie audit with one witness down: exit %d, findings %v\n%s", code, arep.Findings, errOut)
	}

	// A changed policy is refused unless the reader says so.
	other := filepath.Join(t.TempDir(), "other.txt")
	os.WriteFile(other, []byte(strings.Replace(policy.String(), "group witnesses 2", "group witnesses 1", 1)), 0o644)
	if code, _, errOut := w.verify(e2ePatient, vstate, "--witness-policy", other); code != exitUsage || !strings.Contains(errOut, "--accept-witness-policy-change") {
		t.Errorf("vigie verify with a changed policy: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := w.verify(e2ePatient, vstate, "--witness-policy", other, "--accept-witness-policy-change"); code != exitOK {
		t.Errorf("vigie verify accepting a changed policy: exit %d\n%s", code, errOut)
	}

	// A fork: a copy of the node's data, started as a second node (the
	// same keys, origin and tree), records other events. The witnesses
	// cosigned the first branch: they refuse the second (422, kept as
	// evidence by the second node), and readers who saw the first, once
	// shown the second at the same URL, find the fork.
	vfork := t.TempDir()
	if code, vrep, errOut := w.verify(e2ePatient, vfork, "--witness-policy", policyFile); code != exitOK {
		t.Fatalf("vigie verify before the fork: exit %d, %v\n%s", code, vrep.Findings, errOut)
	}
	w.stop()
	forkData := copyDir(t, data)
	w.start(data)
	check()
	r = served(2, r.Checkpoint.Size+1)
	if code, arep, errOut := w.audit(auth.RoleRegulator, astate, "--witness-policy", policyFile); code != exitOK {
		t.Fatalf("vigie audit before the fork: exit %d, %v\n%s", code, arep.Findings, errOut)
	}
	if code, vrep, errOut := w.verify(e2ePatient, vfork, "--witness-policy", policyFile); code != exitOK {
		t.Fatalf("vigie verify before the fork: exit %d, %v\n%s", code, vrep.Findings, errOut)
	}
	b := newWorld(t, forkData)
	b.args = []string{"--witness-policy", policyFile}
	b.restart(t, forkData)
	for i := range 3 {
		doCheck(t, b.e, fmt.Sprintf("fork-%d", i), e2ePatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(b.proxy.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if evidenceMetric.Match(m) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fork's node kept no evidence of a witness's refusal:\n%s", grepLines(string(m), "vigie_witness_"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.mu.Lock()
	w.target = b.target // the operator shows the other branch at the same URL
	w.mu.Unlock()
	forked := func(fs []audit.Finding) bool {
		k := findings(fs)
		return slices.Contains(k, audit.KindFork) || slices.Contains(k, audit.KindRollback)
	}
	if code, arep, errOut := w.audit(auth.RoleRegulator, astate, "--witness-policy", policyFile); code != exitFailure || !forked(arep.Findings) {
		t.Errorf("vigie audit shown the other branch: exit %d, findings %v\n%s", code, arep.Findings, errOut)
	}
	if code, vrep, errOut := w.verify(e2ePatient, vfork, "--witness-policy", policyFile); code != exitFailure || !forked(vrep.Findings) {
		t.Errorf("vigie verify shown the other branch: exit %d, findings %v\n%s", code, vrep.Findings, errOut)
	}
}

var evidenceMetric = regexp.MustCompile(`vigie_witness_submissions_total\{outcome="evidence",witness="[^"]+"\} [1-9]`)

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.Lines(s) {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// startAgain starts a stopped witness again on its database and key.
func startAgain(t *testing.T, lw *litewitness) *litewitness {
	t.Helper()
	args := lw.cmd.Args[1:]
	nw := &litewitness{name: lw.name, url: lw.url, key: lw.key, out: &bytes.Buffer{}}
	nw.cmd = exec.Command(lw.cmd.Path, args...)
	nw.cmd.Stdout, nw.cmd.Stderr = nw.out, nw.out
	if err := nw.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.stop)
	addr := strings.TrimPrefix(lw.url, "http://")
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nw
		}
		if i > 500 {
			t.Fatalf("litewitness %s does not listen again:\n%s", lw.name, nw.out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func kindsOf(fs []audit.Finding) []audit.Kind {
	out := []audit.Kind{}
	for _, f := range fs {
		out = append(out, f.Kind)
	}
	return out
}
