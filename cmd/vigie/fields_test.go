package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/audit/audittest"
)

// TestVerifyFieldsReportedNotShown: vigie verify reports the server's
// kind, RPPS or FINESS that disagree with an event's body, and shows who
// acted from the verified body only (issue 19).
func TestVerifyFieldsReportedNotShown(t *testing.T) {
	cases, err := audittest.LoadCorpus()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(cases, func(c audittest.Case) bool { return c.Name == "fields-disagree" })
	if i < 0 {
		t.Fatal("no case fields-disagree in the corpus")
	}
	c := cases[i]
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	for _, asJSON := range []bool{true, false} {
		var stdout, stderr bytes.Buffer
		args := []string{"--server", srv.URL, "--token", "corpus-patient-token", "--log-key", c.Keys.CheckpointKey, "--receipt-key", c.Keys.ReceiptKey,
			"--state-dir", dir, "--evidence", filepath.Join(dir, "evidence.json"), "--lang", "en"}
		if asJSON {
			args = append(args, "--json")
		}
		if code := runVerify(context.Background(), args, &stdout, &stderr); code != exitFailure {
			t.Fatalf("vigie verify exit %d, want %d: %s", code, exitFailure, stderr.String())
		}
		out := stdout.String() + stderr.String()
		for _, served := range []string{c.Listing.Events[0].ActorRPPS, c.Listing.Events[2].Organization} {
			if strings.Contains(out, served) {
				t.Errorf("json %v: the output shows the server's %s:\n%s", asJSON, served, out)
			}
		}
		if !asJSON {
			if !strings.Contains(out, "10000000003") {
				t.Errorf("the output does not show the body's RPPS:\n%s", out)
			}
			continue
		}
		var rep struct {
			Events   []eventRow      `json:"events"`
			Findings []audit.Finding `json:"findings"`
		}
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		if got := audittest.Kinds(rep.Findings); !slices.Equal(got, c.Want) {
			t.Errorf("findings %v, want %v", rep.Findings, c.Want)
		}
		if len(rep.Events) == 0 || rep.Events[0].Access == nil || rep.Events[0].Access.ActorRPPS != "10000000003" || rep.Events[0].Access.Organization != "750712184" {
			t.Errorf("the access row %+v, want the body's professional and establishment", rep.Events)
		}
	}
}
