package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/ledger/event"
)

// alertsReadMethod names the misuse alerts in ledger-read records.
const alertsReadMethod = "Alerts"

// alertReads returns the reader and count of each alerts read recorded in
// the e2e patient's chain, in chain order.
func alertReads(e *e2e) []string {
	var out []string
	for _, ev := range e.listAndVerify(e.as(auth.RolePatient, e2ePatient), 100) {
		var rd struct {
			Reader string `json:"reader"`
			Method string `json:"method"`
			Events int    `json:"events"`
		}
		if ev.body.Kind == event.KindLedgerRead && json.Unmarshal(ev.body.Payload, &rd) == nil && rd.Method == alertsReadMethod {
			out = append(out, fmt.Sprintf("%s %d", rd.Reader, rd.Events))
		}
	}
	return out
}

// TestAlertsConcurrentReaders: readers who ask together, through the
// JSON gateway, share one computation, and its read is recorded once in
// the patient's chain for the cache period, whatever the number of
// readers and requests.
func TestAlertsConcurrentReaders(t *testing.T) {
	e := startE2E(t, "--alerts-cache", "10m")
	req := checkRequest("al-1")
	req.PurposeOfUse = vigiev1.PurposeOfUse_PURPOSE_OF_USE_BTG
	req.BreakGlassJustification = "cardiac arrest"
	if _, err := vigiev1.NewAccessServiceClient(e.conn).Check(e.as(auth.RoleService, "hospital-his", e2eHospital), req); err != nil {
		t.Fatal(err)
	}
	base := e.http().base
	tokens := []string{e.token(auth.RoleRegulator, "cnil"), e.token(auth.RoleRegulator, "cnil-2")}
	const readers = 20
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _ := http.NewRequest("GET", base+"/v1/audit/alerts", nil)
			r.Header.Set("Authorization", "Bearer "+tokens[i%2])
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || !strings.Contains(string(b), "break-glass-unreviewed") {
				errs <- fmt.Errorf("reader %d: %d %s", i, resp.StatusCode, b)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	reads := alertReads(e)
	if len(reads) != 1 || (reads[0] != "regulator:cnil 1" && reads[0] != "regulator:cnil-2 1") {
		t.Errorf("%d concurrent requests of two regulators recorded %q in the patient's chain, want one read of 1 event", readers, reads)
	}
}

// TestAlertsRateLimited: the alerts take from the caller's API rate limit,
// as every method.
func TestAlertsRateLimited(t *testing.T) {
	e := startE2E(t, "--rate-limit", "regulator=0.001:3")
	c := e.http()
	token := e.token(auth.RoleRegulator, "cnil")
	if code, b := c.do("GET", "/v1/log/key", token, ""); code != 200 {
		t.Fatalf("GET /v1/log/key = %d %s", code, b)
	}
	for i := range 2 {
		if code, b := c.do("GET", "/v1/audit/alerts", token, ""); code != 200 {
			t.Fatalf("alerts call %d = %d %s, want 200", i+1, code, b)
		}
	}
	code, b := c.do("GET", "/v1/audit/alerts", token, "")
	var st struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(b, &st); err != nil || code != 429 || st.Code != 8 {
		t.Errorf("alerts beyond the rate = %d %s, want 429 RESOURCE_EXHAUSTED", code, b)
	}
	// Another regulator has a bucket of its own.
	if code, b := c.do("GET", "/v1/audit/alerts", e.token(auth.RoleRegulator, "cnil-2"), ""); code != 200 {
		t.Errorf("another regulator's alerts = %d %s, want 200", code, b)
	}
	if code, b := c.do("GET", "/portal/api/alerts", e.token(auth.RoleRegulator, "cnil-3"), ""); code != 404 {
		t.Errorf("GET /portal/api/alerts = %d %s, want 404: the side door is closed", code, b)
	}
}
