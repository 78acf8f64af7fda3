package server

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/misuse"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
)

// alertsLive is a live server with alerts, a clock the test moves
// forward, and a count of the computations.
type alertsLive struct {
	*live
	ahead    atomic.Int64 // how far the backend's clock is ahead
	computed atomic.Int32
}

func newAlertsLive(t *testing.T, ttl time.Duration) *alertsLive {
	t.Helper()
	a := &alertsLive{}
	a.live = newLive(t, liveOptions{
		Now: func() time.Time { return time.Now().Add(time.Duration(a.ahead.Load())) },
		Alerts: &AlertsConfig{CacheTTL: ttl, detect: func(events []event.Logged, cfg misuse.Config) (*misuse.Result, error) {
			a.computed.Add(1)
			time.Sleep(50 * time.Millisecond) // the callers all arrive meanwhile
			return misuse.Detect(events, cfg)
		}},
	})
	return a
}

// breakGlass records an allowed, unreviewed break-glass access to
// patient by a professional of org: an alert naming the patient's event.
func (a *alertsLive) breakGlass(id, patient, org string) string {
	a.t.Helper()
	req := checkRequest()
	req.RequestId, req.PatientIns, req.Actor.Organization = id, patient, org
	resp, err := vigiev1.NewAccessServiceClient(a.conn).Check(a.as(auth.RoleService, "his", org), req)
	if err != nil || resp.Decision != vigiev1.Decision_DECISION_ALLOW {
		a.t.Fatalf("Check(%s) = %v, %v; want ALLOW", id, resp, err)
	}
	return resp.Event.Commitment
}

// alertReads returns the readers of the alerts reads recorded in the
// patient's chain, from the ledger's events.
func (a *alertsLive) alertReads(patient string) []string {
	a.t.Helper()
	ctx := context.Background()
	ins, err := ident.ParseINS(patient)
	if err != nil {
		a.t.Fatal(err)
	}
	p := a.env.Ledger.Pseudonym(ins)
	rows, err := a.env.Ledger.Search(ctx, ledger.SearchFilter{Pseudonym: &p, Kind: event.KindLedgerRead}, -1, 1000)
	if err != nil {
		a.t.Fatal(err)
	}
	var out []string
	for _, r := range rows {
		e, err := a.env.Ledger.OpenForAudit(ctx, r)
		if err != nil {
			a.t.Fatal(err)
		}
		rd, err := consent.ParseReadRecord(e.Parsed.Payload)
		if err != nil {
			a.t.Fatal(err)
		}
		if rd.Method == alertsReadMethod {
			// The reader, and the organisations it read for (issue 19).
			out = append(out, strings.Join(append([]string{rd.Reader}, rd.Organizations...), " for "))
		}
	}
	return out
}

// askAll has n callers ask for alerts at once, caller i with ctxs[i%len],
// and returns the kinds and events of one answer.
func (a *alertsLive) askAll(n int, ctxs ...context.Context) []string {
	a.t.Helper()
	client := vigiev1.NewAuditServiceClient(a.conn)
	var wg sync.WaitGroup
	answers := make([]*vigiev1.ListAlertsResponse, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i], errs[i] = client.ListAlerts(ctxs[i%len(ctxs)], &vigiev1.ListAlertsRequest{})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			a.t.Fatalf("caller %d: %v", i, err)
		}
	}
	return alertKeys(answers[0])
}

func alertKeys(r *vigiev1.ListAlertsResponse) []string {
	var out []string
	for _, al := range r.Alerts {
		for _, e := range al.Events {
			out = append(out, al.Kind+" "+e.Commitment)
		}
	}
	return out
}

// TestListAlertsConcurrent: N callers of one scope asking at once get one
// computation, and each patient whose events the alerts name gets exactly
// one read record for the cache period, not one per caller; the next
// period, one more of each.
func TestListAlertsConcurrent(t *testing.T) {
	a := newAlertsLive(t, 30*time.Second)
	ev1 := a.breakGlass("bg-1", testINS, ourOrg)
	ev2 := a.breakGlass("bg-2", otherINS, ourOrg)
	regulators := []context.Context{a.as(auth.RoleRegulator, "cnil"), a.as(auth.RoleRegulator, "cnil-2")}
	const callers = 20

	got := strings.Join(a.askAll(callers, regulators...), "\n")
	for _, ev := range []string{ev1, ev2} {
		if !strings.Contains(got, "break-glass-unreviewed "+ev) {
			t.Errorf("alerts:\n%s\nwant break-glass-unreviewed %s", got, ev)
		}
	}
	check := func(when string, computations, reads int) {
		t.Helper()
		if c := a.computed.Load(); c != int32(computations) {
			t.Errorf("%s: %d computations, want %d", when, c, computations)
		}
		for _, p := range []string{testINS, otherINS} {
			if r := a.alertReads(p); len(r) != reads {
				t.Errorf("%s: a patient's chain has %d alerts reads %v, want %d", when, len(r), r, reads)
			}
		}
	}
	check("20 concurrent callers", 1, 1)

	a.askAll(callers, regulators...)
	check("again within the cache period", 1, 1)

	a.ahead.Add(int64(time.Minute))
	a.askAll(callers, regulators...)
	check("after the cache period", 2, 2)

	// A DPO's scope is computed and recorded on its own.
	a.askAll(callers, a.as(auth.RoleDPO, "dpo-a", ourOrg), a.as(auth.RoleDPO, "dpo-b", ourOrg))
	check("the DPOs of the organisation", 3, 3)
}

// TestListAlertsScope: a DPO sees the alerts of its organisations' events
// only, and only those are recorded; a regulator sees all; the other
// roles are refused by the matrix; without alert rules, NOT_FOUND.
func TestListAlertsScope(t *testing.T) {
	a := newAlertsLive(t, 0)
	ours := a.breakGlass("bg-ours", testINS, ourOrg)
	theirs := a.breakGlass("bg-theirs", otherINS, theirOrg)
	client := vigiev1.NewAuditServiceClient(a.conn)
	tests := []struct {
		name string
		ctx  context.Context
		code codes.Code
		want []string
	}{
		{"regulator", a.as(auth.RoleRegulator, "cnil"), codes.OK, []string{ours, theirs}},
		{"dpo of ours", a.as(auth.RoleDPO, "dpo-a", ourOrg), codes.OK, []string{ours}},
		{"dpo of theirs", a.as(auth.RoleDPO, "dpo-b", theirOrg), codes.OK, []string{theirs}},
		{"dpo of neither", a.as(auth.RoleDPO, "dpo-c", "330781196"), codes.OK, nil},
		{"auditor", a.as(auth.RoleAuditor, "asso"), codes.PermissionDenied, nil},
		{"patient", a.as(auth.RolePatient, testINS), codes.PermissionDenied, nil},
		{"service", a.as(auth.RoleService, "his", ourOrg), codes.PermissionDenied, nil},
		{"admin", a.as(auth.RoleAdmin, "root"), codes.PermissionDenied, nil},
		{"anonymous", context.Background(), codes.Unauthenticated, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.ListAlerts(tt.ctx, &vigiev1.ListAlertsRequest{})
			if status.Code(err) != tt.code {
				t.Fatalf("ListAlerts = %v, want %v", err, tt.code)
			}
			if err != nil {
				return
			}
			var got []string
			for _, al := range resp.Alerts {
				if al.Kind == string(misuse.KindBreakGlassUnreviewed) {
					got = append(got, al.Events[0].Commitment)
				}
				if al.Severity == vigiev1.AlertSeverity_ALERT_SEVERITY_UNSPECIFIED || al.ActorRpps == "" || al.StartTime == nil || al.Count != int32(len(al.Events)) {
					t.Errorf("alert %v: severity, professional, time or count missing", al)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("unreviewed break-glass alerts of %v, want %v", got, tt.want)
			}
			if resp.ComputeTime == nil || resp.WindowStartTime == nil || !resp.WindowStartTime.AsTime().Before(resp.ComputeTime.AsTime()) {
				t.Errorf("compute_time %v, window_start_time %v", resp.ComputeTime, resp.WindowStartTime)
			}
		})
	}
	// Recorded: ours by the regulator and our DPO, theirs by the
	// regulator and their DPO.
	if got := strings.Join(a.alertReads(testINS), ","); got != "regulator:cnil,dpo:dpo-a for "+ourOrg {
		t.Errorf("reads of our patient's events: %s", got)
	}
	if got := strings.Join(a.alertReads(otherINS), ","); got != "regulator:cnil,dpo:dpo-b for "+theirOrg {
		t.Errorf("reads of their patient's events: %s", got)
	}

	none := newLive(t, liveOptions{})
	if _, err := vigiev1.NewAuditServiceClient(none.conn).ListAlerts(none.as(auth.RoleRegulator, "cnil"), &vigiev1.ListAlertsRequest{}); status.Code(err) != codes.NotFound {
		t.Errorf("ListAlerts without alert rules = %v, want NotFound", err)
	}
}

// TestListAlertsFailClosed: when the reads cannot be recorded, no alert
// is served (UNAVAILABLE), and nothing is cached: the next call computes
// and records again.
func TestListAlertsFailClosed(t *testing.T) {
	a := newAlertsLive(t, time.Hour)
	a.breakGlass("bg-1", testINS, ourOrg)
	client := vigiev1.NewAuditServiceClient(a.conn)
	ctx := a.as(auth.RoleRegulator, "cnil")
	a.store.fail(errors.New("database or disk is full (13)"))
	if resp, err := client.ListAlerts(ctx, &vigiev1.ListAlertsRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("ListAlerts with a store that cannot write = %v, %v; want Unavailable", resp, err)
	}
	a.store.fail(nil)
	if _, err := client.ListAlerts(ctx, &vigiev1.ListAlertsRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := a.alertReads(testINS); len(got) != 1 || a.computed.Load() != 2 {
		t.Errorf("after a failure then a success: reads %v, %d computations; want 1 read, 2 computations", got, a.computed.Load())
	}
}
