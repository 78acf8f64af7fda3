package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"

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
