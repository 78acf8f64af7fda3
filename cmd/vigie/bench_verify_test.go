package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// BenchmarkVerify1000 measures vigie verify of a patient with 1,000 events,
// end to end: through the HTTP API of a vigie serve process on this
// machine (the listing, with an inclusion proof per event computed by the
// server, is part of the time), every check of ledger/audit, the report
// (the French table). The state saved by each patient's first run makes
// every later run check consistency with it too. Each run adds one event
// (its own read) to the patient's history.
//
// The runs rotate among three patients of 1,000 events each: a patient's
// rate limit (5 calls/s, bursts of 20) would otherwise pace back-to-back
// runs, and the figure is the time one run takes.
//
//	go test -run '^$' -bench Verify1000 -benchtime 30x -count 5 ./cmd/vigie/
func BenchmarkVerify1000(b *testing.B) {
	skipInGoSuite(b)
	const events = 1000
	patients := []string{e2ePatient, otherPatient, "269054958815780"}
	w := newWorld(b, filepath.Join(b.TempDir(), "data"))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := vigiev1.NewAccessServiceClient(w.e.conn)
			ctx := w.e.as(auth.RoleService, "hospital-his", e2eHospital)
			for i := g; i < events*len(patients); i += 8 {
				req := checkRequest(fmt.Sprint("bench-", i))
				req.PatientIns = patients[i%len(patients)]
				if _, err := client.Check(ctx, req); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	state := b.TempDir()
	var toks []string
	for _, p := range patients {
		toks = append(toks, w.token(auth.RolePatient, p))
	}
	n := 0
	verifyOnce := func() {
		tok := toks[n%len(toks)]
		n++
		code := run(context.Background(), []string{"verify", "--server", w.target.String(), "--token", tok, "--state-dir", state}, io.Discard, io.Discard)
		if code != exitOK {
			b.Fatalf("vigie verify: exit %d", code)
		}
	}
	for range toks {
		verifyOnce() // pins the key, saves the state
	}
	for b.Loop() {
		verifyOnce()
	}
}

// BenchmarkAuditThroughAPI measures vigie audit --log-only from scratch
// through the HTTP API of a vigie serve process on this machine: every
// leaf fetched (GET /v1/log/leaves, 1,000 a call), the root rebuilt and
// compared with the signed root, with an auditor's token. The log is
// filled first by vigie bench record for VIGIE_BENCH_AUDIT_SECONDS
// (default 30, about 100,000 leaves here). The auditor's rate limit (100
// calls/s, bursts of 200) caps it near 100,000 leaves/s. In the same run,
// on the same log, the audit reads the leaves from the entry bundles
// instead (--tiles: not limited per caller, served from the server's
// cache once read).
//
//	go test -run '^$' -bench AuditThroughAPI -benchtime 3x -count 5 ./cmd/vigie/
func BenchmarkAuditThroughAPI(b *testing.B) {
	skipInGoSuite(b)
	dir := filepath.Join(b.TempDir(), "data")
	secs := os.Getenv("VIGIE_BENCH_AUDIT_SECONDS")
	if secs == "" {
		secs = "30"
	}
	fill := exec.Command(vigieBin, "bench", "record", "--data-dir", dir, "--duration", secs+"s")
	if out, err := fill.CombinedOutput(); err != nil {
		b.Fatalf("vigie bench record: %v\n%s", err, out)
	}
	w := newWorld(b, dir)
	tok := w.token(auth.RoleAuditor, "bench")
	// The same log, read through the JSON route, then through the tiles.
	for _, route := range []struct {
		name string
		args []string
	}{{"json", nil}, {"tiles", []string{"--tiles"}}} {
		b.Run(route.name, func(b *testing.B) {
			var leaves uint64
			var took time.Duration
			for b.Loop() {
				var out bytes.Buffer
				start := time.Now()
				args := append([]string{"audit", "--server", w.target.String(), "--token", tok, "--state-dir", b.TempDir(), "--json", "--log-only"}, route.args...)
				code := run(context.Background(), args, &out, io.Discard)
				took += time.Since(start)
				if code != exitOK {
					b.Fatalf("vigie audit: exit %d\n%s", code, out.String())
				}
				var rep auditReport
				if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
					b.Fatal(err)
				}
				leaves += rep.Log.Fetched
			}
			b.ReportMetric(float64(leaves)/float64(b.N), "leaves")
			b.ReportMetric(float64(leaves)/took.Seconds(), "leaves/s")
		})
	}
}

// skipInGoSuite skips a benchmark whose iterations are whole runs in the
// go suite of scripts/bench.sh (10,000 iterations each); its verify suite
// runs them with their own settings.
func skipInGoSuite(b *testing.B) {
	if os.Getenv("VIGIE_BENCH_SUITE") == "go" {
		b.Skip("whole runs: scripts/bench.sh verify runs it")
	}
}
