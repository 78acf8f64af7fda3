package main

import (
	"context"
	"flag"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
)

// TestVerifyEscapesRecordedText records, straight into the ledger as an
// older version could (before the free-text rule), a break-glass review
// whose comment and reviewer hold ESC, CR, LF, TAB, BEL and bidirectional
// overrides and isolates, the comment laid out as a row of the report.
// The patient's vigie verify shows them escaped: no raw control or
// bidirectional character, no forged row, and the report still ends
// VERIFIED (the event is genuine: only its text is hostile).
func TestVerifyEscapesRecordedText(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	w := newWorld(t, dir)
	bg := doCheck(t, w.e, "esc-1", e2ePatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_ETREAT, false)
	w.stop()

	var cfg nodeConfig
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	cfg.flags(fs)
	if err := fs.Parse([]string{"--data-dir", dir}); err != nil {
		t.Fatal(err)
	}
	n, err := openNode(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	const forgedRow = "7  2026-01-01 09:00  forged-doctor  read: record  care  allowed"
	comment := "fine\x1b[2K\x1b[1G\r\n" + forgedRow + "\n\tVERIFIED\a \u202edeifitsuj\u202c \u2066x\u2069\u2028end"
	payload, err := consent.FormatReviewRecord(consent.ReviewRecord{Event: bg.Event.Commitment, LeafIndex: bg.Event.LeafIndex,
		Verdict: consent.VerdictJustified, Comment: comment, Reviewer: "regulator:cnil\x1b[8m\u202e"})
	if err != nil {
		t.Fatal(err)
	}
	ins, err := ident.ParseINS(e2ePatient)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := n.Ledger.Record(ctx, ledger.Entry{Kind: event.KindBreakGlassReview, Patient: ins, Service: "regulator:cnil",
		Payload: payload, Organization: e2eHospital})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := n.Close(cctx); err != nil {
		t.Fatal(err)
	}

	w.start(dir)
	waitCheckpoint(t, w, rec.Index+1)
	code, out, errOut := w.cli("verify", "--lang", "en", "--state-dir", filepath.Join(t.TempDir(), "state"), "--token", w.token(auth.RolePatient, e2ePatient))
	if code != exitOK || !strings.Contains(out, "VERIFIED: ") {
		t.Fatalf("vigie verify: exit %d\n%s\n%s", code, out, errOut)
	}
	for i, r := range out + errOut {
		if r != '\n' && consent.UnsafeRune(r) || r == utf8.RuneError {
			t.Fatalf("vigie verify prints %U at byte %d:\n%q", r, i, out)
		}
	}
	// The comment is one cell of the review's row, its characters shown
	// as escapes.
	lines := strings.Split(out, "\n")
	var rows []string
	for _, l := range lines {
		if strings.Contains(l, "forged-doctor") {
			rows = append(rows, l)
		}
	}
	if len(rows) != 1 || !strings.Contains(rows[0], `fine\x1b[2K\x1b[1G\r\n7  2026`) || !strings.Contains(rows[0], `\u202edeifitsuj`) ||
		!strings.Contains(rows[0], `regulator:cnil\x1b[8m\u202e`) {
		t.Errorf("the review's row: %q, want one row with the comment escaped\n%s", rows, out)
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "7 ") || strings.HasPrefix(strings.TrimSpace(l), "VERIFIED") && !strings.HasPrefix(l, "VERIFIED: ") {
			t.Errorf("a forged line: %q\n%s", l, out)
		}
	}
	// vigie audit reads the same events.
	code, out, errOut = w.cli("audit", "--lang", "en", "--state-dir", filepath.Join(t.TempDir(), "audit"), "--token", w.token(auth.RoleRegulator, "cnil"),
		"--alert-odd-hours-min", "1000000")
	if code == exitUsage {
		t.Fatalf("vigie audit: exit %d\n%s\n%s", code, out, errOut)
	}
	for i, r := range out + errOut {
		if r != '\n' && consent.UnsafeRune(r) || r == utf8.RuneError {
			t.Fatalf("vigie audit prints %U at byte %d:\n%q", r, i, out)
		}
	}
}
