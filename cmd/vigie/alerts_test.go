package main

import (
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/api/gateway/portal"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/misuse"
	"github.com/vigie-sante/vigie/ledger/event"
)

// TestAlertsConcurrentReaders: readers who ask together when the cache
// has expired share one computation, and each reader's view is recorded
// once in the patient's chain, whatever the number of its requests.
func TestAlertsConcurrentReaders(t *testing.T) {
	ctx := context.Background()
	var cfg nodeConfig
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	cfg.flags(fs)
	if err := fs.Parse([]string{"--data-dir", filepath.Join(t.TempDir(), "data")}); err != nil {
		t.Fatal(err)
	}
	n, err := openNode(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(context.Background()) })

	// An unreviewed break-glass access: an alert naming the patient's event.
	ins, _ := ident.ParseINS(e2ePatient)
	rpps, _ := ident.ParseRPPS(e2eDoctor)
	org, _ := ident.ParseFINESS(e2eHospital)
	d, _, err := n.Consent.Check(ctx, consent.Request{ID: "al-1", Service: "hospital-his", Patient: ins,
		Actor:  consent.Actor{RPPS: rpps, Profession: "10", Sector: "care", Organization: org, CareTeam: true},
		Action: consent.ActionRead, Resource: consent.Resource{Kind: consent.ResourceRecord},
		Purpose: consent.PurposeBreakGlass, Justification: "cardiac arrest"})
	if err != nil || d.Effect != consent.Allow {
		t.Fatalf("Check = %v, %v", d.Effect, err)
	}

	a := newLedgerAlerts(n.Ledger, n.Consents.RulesOf, 24*time.Hour, 30*time.Second)
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	a.now = func() time.Time { return time.Unix(0, clock.Load()) }
	var computed atomic.Int32
	a.detect = func(events []event.Logged, cfg misuse.Config) (*misuse.Result, error) {
		computed.Add(1)
		time.Sleep(50 * time.Millisecond) // the readers all arrive meanwhile
		return misuse.Detect(events, cfg)
	}
	chain := func() uint64 {
		t.Helper()
		l, err := n.Ledger.ChainLength(ctx, ins)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}

	const readers = 20
	ask := func(reader func(i int) string) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, readers)
		for i := range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := a.Alerts(ctx, portal.Scope{Reader: reader(i)})
				if err == nil && len(got) == 0 {
					t.Errorf("reader %d: no alert", i)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	oneReader := func(int) string { return "regulator:cnil" }

	before := chain()
	ask(oneReader)
	if c, grew := computed.Load(), chain()-before; c != 1 || grew != 1 {
		t.Errorf("%d concurrent requests of one reader: %d computations, %d read records; want 1 and 1", readers, c, grew)
	}
	// Within the cache period: nothing computed nor recorded again.
	ask(oneReader)
	if c, grew := computed.Load(), chain()-before; c != 1 || grew != 1 {
		t.Errorf("again within the cache period: %d computations, %d read records; want 1 and 1", c, grew)
	}
	// The cache expired: one computation more, one record more.
	clock.Add(int64(time.Minute))
	ask(oneReader)
	if c, grew := computed.Load(), chain()-before; c != 2 || grew != 2 {
		t.Errorf("after the cache expired: %d computations, %d read records; want 2 and 2", c, grew)
	}
	// Several readers at once: one computation, one record per reader.
	clock.Add(int64(time.Minute))
	ask(func(i int) string { return []string{"regulator:cnil", "regulator:cnil-2"}[i%2] })
	if c, grew := computed.Load(), chain()-before; c != 3 || grew != 4 {
		t.Errorf("two readers: %d computations, %d read records; want 3 and 4", c, grew)
	}
}

// TestAlertsRateLimited: the alerts route takes from the caller's API rate
// limit.
func TestAlertsRateLimited(t *testing.T) {
	e := startE2E(t, "--rate-limit", "regulator=0.001:3")
	c := e.http()
	token := e.token(auth.RoleRegulator, "cnil")
	if code, b := c.do("GET", "/v1/log/key", token, ""); code != 200 {
		t.Fatalf("GET /v1/log/key = %d %s", code, b)
	}
	for i := range 2 {
		if code, b := c.do("GET", "/portal/api/alerts", token, ""); code != 200 {
			t.Fatalf("alerts call %d = %d %s, want 200", i+1, code, b)
		}
	}
	code, b := c.do("GET", "/portal/api/alerts", token, "")
	var st struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(b, &st); err != nil || code != 429 || st.Code != 8 {
		t.Errorf("alerts beyond the rate = %d %s, want 429 RESOURCE_EXHAUSTED", code, b)
	}
	// Another regulator has a bucket of its own.
	if code, b := c.do("GET", "/portal/api/alerts", e.token(auth.RoleRegulator, "cnil-2"), ""); code != 200 {
		t.Errorf("another regulator's alerts = %d %s, want 200", code, b)
	}
}
