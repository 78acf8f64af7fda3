package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

const (
	rppsTestFile   = "../../consent/directory/testdata/PS_LibreAcces_Personne_activite_test.txt"
	finessTestFile = "../../consent/directory/testdata/etalab-cs1100507-stock-test.csv"
)

// directoryFiles writes, for the end-to-end tests, directory extracts in
// the published formats naming the e2e tests' doctor and hospital, beside
// the test files' entries.
func directoryFiles(t testing.TB) (rpps, finess string) {
	t.Helper()
	dir := t.TempDir()
	r, err := os.ReadFile(rppsTestFile)
	if err != nil {
		t.Fatal(err)
	}
	header, _, _ := strings.Cut(string(r), "\r\n")
	fields := make([]string, strings.Count(header, "|")+1)
	names := strings.Split(header, "|")
	set := func(col, v string) {
		for i, n := range names {
			if n == col {
				fields[i] = v
				return
			}
		}
		t.Fatalf("no column %q", col)
	}
	set("Type d'identifiant PP", "8")
	set("Identifiant PP", e2eDoctor)
	set("Libellé civilité d'exercice", "Docteur")
	set("Nom d'exercice", "ESSAI")
	set("Prénom d'exercice", "MARIE")
	set("Libellé profession", "Médecin")
	set("Libellé savoir-faire", "Cardiologie")
	rpps = filepath.Join(dir, "PS_LibreAcces_Personne_activite_e2e.txt")
	if err := os.WriteFile(rpps, append(r, strings.Join(fields, "|")+"\r\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.ReadFile(finessTestFile)
	if err != nil {
		t.Fatal(err)
	}
	line := "structureet;" + e2eHospital + ";;HOPITAL E2E;HÔPITAL DES ESSAIS;;;1;RUE;DES TESTS;;;056;75;PARIS;75013 PARIS;;;355;;;;;;;;;;;;;\n"
	finess = filepath.Join(dir, "etalab-cs1100507-stock-e2e.csv")
	if err := os.WriteFile(finess, append(f, line...), 0o600); err != nil {
		t.Fatal(err)
	}
	return rpps, finess
}

// importDirectories imports directoryFiles into the data directory dir,
// before vigie serve starts on it.
func importDirectories(t testing.TB, dir string) {
	t.Helper()
	rpps, finess := directoryFiles(t)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"directory", "import", "--data-dir", dir, "--rpps", rpps, "--finess", finess}, &out, &errOut); code != exitOK {
		t.Fatalf("vigie directory import: exit %d: %s", code, errOut.String())
	}
}

func TestDirectoryImport(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	vigie := func(args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		code := run(ctx, append([]string{"directory", "import", "--data-dir", dataDir}, args...), &out, &errOut)
		return out.String(), errOut.String(), code
	}
	rpps, finess := directoryFiles(t)
	out, errOut, code := vigie("--rpps", rpps, "--finess", finess)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"professionals: 4 (lines of ADELI numbers skipped: 1)", "establishments: 4", "bad lines: 7"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	// Bad lines by file, line and field; never their content.
	if !strings.Contains(errOut, `rpps: line 7: field "Identifiant PP"`) || !strings.Contains(errOut, `finess: line 4: field "nofinesset"`) {
		t.Errorf("stderr %q does not name the bad lines", errOut)
	}
	for _, content := range []string{"1234", "SANSNOM", "MAUVAIS", "750000000"} {
		if strings.Contains(errOut, content) {
			t.Errorf("stderr quotes a bad line's content %q:\n%s", content, errOut)
		}
	}

	// A file in another format: exit 1, the directories unchanged.
	_, errOut, code = vigie("--rpps", finess)
	if code != exitFailure || !strings.Contains(errOut, "not in the published format") || !strings.Contains(errOut, "unchanged") {
		t.Errorf("importing a FINESS file as RPPS: exit %d, %q", code, errOut)
	}
	if _, errOut, code = vigie(); code != exitUsage {
		t.Errorf("no file: exit %d, %q; want %d", code, errOut, exitUsage)
	}
	if _, errOut, code = vigie("--finess", filepath.Join(dataDir, "absent.csv")); code != exitFailure || !strings.Contains(errOut, "--finess") {
		t.Errorf("absent file: exit %d, %q", code, errOut)
	}
}

// TestVerifyShowsNames: vigie verify shows the names the imported
// directories give beside the numbers, a number they lack as the number
// alone (the report still verified), and the names are in no event body.
func TestVerifyShowsNames(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	importDirectories(t, dir)
	w := newWorld(t, dir)
	const unknownDoctor = "10000000099"
	doCheck(t, w.e, "names-1", e2ePatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
	doCheck(t, w.e, "names-2", e2ePatient, unknownDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)

	code, rep, stderr := w.verify(e2ePatient, filepath.Join(t.TempDir(), "state"), "--lang", "fr")
	if code != exitOK || rep.Verdict != "verified" {
		t.Fatalf("vigie verify: exit %d, verdict %q: %s", code, rep.Verdict, stderr)
	}
	var named, bare bool
	for _, r := range rep.Events {
		if r.Access == nil {
			continue
		}
		switch r.Access.ActorRPPS {
		case e2eDoctor:
			named = true
			if !strings.Contains(r.Who, "MARIE ESSAI (Médecin, Cardiologie), RPPS "+e2eDoctor) || !strings.Contains(r.Who, "HÔPITAL DES ESSAIS (PARIS), FINESS "+e2eHospital) {
				t.Errorf("row of the known doctor: who %q", r.Who)
			}
			if r.Access.Actor == nil || r.Access.Actor.Name != "MARIE ESSAI" || r.Access.OrganizationEntry == nil || r.Access.OrganizationEntry.Town != "PARIS" {
				t.Errorf("row of the known doctor: access %+v", r.Access)
			}
		case unknownDoctor:
			bare = true
			if !strings.Contains(r.Who, "RPPS "+unknownDoctor) || r.Access.Actor != nil {
				t.Errorf("row of a doctor the directory lacks: who %q, actor %+v", r.Who, r.Access.Actor)
			}
		}
	}
	if !named || !bare {
		t.Fatalf("rows of both doctors not found in %+v", rep.Events)
	}
	// The names are looked up, never recorded.
	ctx := w.e.as(auth.RolePatient, e2ePatient)
	resp, err := vigiev1.NewHistoryServiceClient(w.e.conn).ListAccesses(ctx, &vigiev1.ListAccessesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range resp.Events {
		if bytes.Contains(e.Body, []byte("ESSAI")) {
			t.Errorf("event %d's body holds a name: %s", e.Sequence, e.Body)
		}
	}
}

// TestAuditShowsNames: vigie audit names, beside their numbers, the
// professionals and establishments of its alerts and the organisation
// audited, through the lookup vigie verify uses; a number the directory
// lacks shows as the number (issue 19).
func TestAuditShowsNames(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	importDirectories(t, dir)
	w := newWorld(t, dir)
	const unknownDoctor = "10000000099"
	// Unreviewed emergency accesses: one alert per professional.
	doCheck(t, w.e, "names-bg-1", e2ePatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_BTG, false)
	doCheck(t, w.e, "names-bg-2", e2ePatient, unknownDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_BTG, false)
	w.e.waitCheckpoint(3) // the rules' event and the two accesses

	code, rep, stderr := w.audit(auth.RoleRegulator, t.TempDir())
	if code != exitOK || rep.Verdict != "verified" {
		t.Fatalf("vigie audit: exit %d, verdict %q: %s", code, rep.Verdict, stderr)
	}
	if rep.Names == nil || rep.Names.Professionals[e2eDoctor] == nil || rep.Names.Professionals[e2eDoctor].Name != "MARIE ESSAI" ||
		rep.Names.Establishments[e2eHospital] == nil || rep.Names.Establishments[e2eHospital].Town != "PARIS" || rep.Names.Professionals[unknownDoctor] != nil {
		t.Errorf("names of the JSON report: %+v (events %+v, alerts %+v)", rep.Names, rep.Events, rep.Alerts)
	}

	// The table, as an auditor reads it.
	dpo := w.token(auth.RoleDPO, "dpo-a", e2eHospital)
	code, out, errOut := w.cli("audit", "--state-dir", t.TempDir(), "--token", dpo, "--lang", "fr", "--alert-odd-hours-min", "1000000")
	if code != exitOK {
		t.Fatalf("vigie audit as a DPO: exit %d: %s%s", code, out, errOut)
	}
	for _, want := range []string{
		"Établissement audité : HÔPITAL DES ESSAIS (PARIS), FINESS " + e2eHospital,
		"MARIE ESSAI (Médecin, Cardiologie), RPPS " + e2eDoctor + ", HÔPITAL DES ESSAIS (PARIS), FINESS " + e2eHospital,
		"  " + unknownDoctor + ", HÔPITAL DES ESSAIS (PARIS), FINESS " + e2eHospital,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("vigie audit's table lacks %q:\n%s", want, out)
		}
	}
}
