package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/ledger/event"
)

// TestAuditFinishesUnderLoad: a regulator's audit of the whole log
// finishes, and passes, while the log grows faster than the audit reads:
// a goroutine records Checks all along, and each page of the search waits
// until it has recorded more events than a page holds. Without a bound,
// the search of the accesses never reaches its last page.
func TestAuditFinishesUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts vigie serve")
	}
	defer func(n int32) { searchPageSize = n }(searchPageSize)
	searchPageSize = 10
	const perPage = 15 // events recorded while a page is served

	w := newWorld(t, t.TempDir())
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(),
		"authorization", "Bearer "+w.token(auth.RoleService, "hospital-his", e2eHospital)))
	defer cancel()
	access := vigiev1.NewAccessServiceClient(w.e.conn)
	var (
		mu       sync.Mutex
		cond     = sync.NewCond(&mu)
		recorded int
		stopped  bool
	)
	var last uint64 // the leaf index of the last access recorded before the audit
	check := func(i int) error {
		req := checkRequest(fmt.Sprintf("load-%d", i))
		if i < 3*int(searchPageSize) && i%2 == 1 {
			req.PatientIns = otherPatient // two patients on each page of the accesses read
		}
		resp, err := access.Check(ctx, req)
		if err == nil && i < 3*int(searchPageSize) {
			last = resp.Event.LeafIndex
		}
		return err
	}
	for i := range 3 * int(searchPageSize) {
		if err := check(i); err != nil {
			t.Fatal(err)
		}
	}
	// The audit reads up to the checkpoint it starts from: one that covers
	// every access above (the log holds other events too, so their count
	// is not the size to wait for).
	w.e.waitCheckpoint(last + 1)
	loaderDone := make(chan error, 1)
	go func() {
		for i := 3 * int(searchPageSize); ; i++ {
			if err := check(i); err != nil {
				loaderDone <- err
				return
			}
			mu.Lock()
			recorded++
			stop := stopped
			cond.Broadcast()
			mu.Unlock()
			if stop {
				loaderDone <- nil
				return
			}
		}
	}()
	stop := func() {
		mu.Lock()
		stopped = true
		cond.Broadcast()
		mu.Unlock()
	}
	defer stop()
	w.setEdit(func(path string, body []byte) []byte {
		if path != "/v1/audit/events:search" {
			return body
		}
		mu.Lock()
		defer mu.Unlock()
		for target := recorded + perPage; recorded < target && !stopped; {
			cond.Wait()
		}
		return body
	})

	code, rep, errOut := w.audit(auth.RoleRegulator, t.TempDir(), "--timeout", "60s")
	stop()
	w.setEdit(nil)
	if err := <-loaderDone; err != nil {
		t.Errorf("a Check of the load failed: %v", err)
	}
	if code != exitOK || rep.Verdict != "verified" || rep.Events == nil || !rep.Events.Complete {
		t.Fatalf("vigie audit under load: exit %d, report %+v\n%s", code, rep, errOut)
	}
	if n := rep.Events.ByKind["access"]; n < 3*int(searchPageSize) {
		t.Errorf("the audit read %d accesses, want at least the %d recorded before it", n, 3*searchPageSize)
	}
	mu.Lock()
	defer mu.Unlock()
	if recorded < perPage {
		t.Errorf("%d events recorded during the audit: no load", recorded)
	}
	t.Logf("%d accesses read, %d events recorded during the audit", rep.Events.ByKind["access"], recorded)

	// The reads of a page are recorded in one transaction: each read of
	// the second patient has a read of the first at the same time.
	reads := func(ins string) map[time.Time]bool {
		t.Helper()
		resp, err := vigiev1.NewAuditServiceClient(w.e.conn).SearchEvents(w.e.as(auth.RoleRegulator, "cnil"),
			&vigiev1.SearchEventsRequest{PatientIns: ins, Kind: vigiev1.EventKind_EVENT_KIND_LEDGER_READ, PageSize: 500})
		if err != nil {
			t.Fatal(err)
		}
		times := map[time.Time]bool{}
		for _, e := range resp.Events {
			b, err := event.Parse(e.Body)
			if err != nil {
				t.Fatal(err)
			}
			r, err := consent.ParseReadRecord(b.Payload)
			if err != nil {
				t.Fatal(err)
			}
			if r.Method == "SearchEvents" {
				times[b.Time] = true
			}
		}
		return times
	}
	first, second := reads(e2ePatient), reads(otherPatient)
	if len(second) == 0 {
		t.Fatal("no read of the second patient recorded")
	}
	for at := range second {
		if !first[at] {
			t.Errorf("the second patient's read at %s has no read of the first in its transaction: a page's reads were recorded one by one", at.Format(time.RFC3339Nano))
		}
	}
}
