package main

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"google.golang.org/protobuf/encoding/protojson"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/trillian/storage/storagepb"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/replay"
	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

const (
	otherPatient = "184127645108946" // a made-up INS, as e2ePatient
	otherDoctor  = "10000000019"
)

// story is the ledger the tamper tests start from, built once: its data
// directories (stopped) and the verifiers' state directories.
type story struct {
	w        *world // its proxy's URL is the one the verifiers pinned
	early    string // the data directory after the first events
	final    string // the data directory at the end
	state    string // vigie verify at the end, vigie audit after the first events
	endState string // vigie audit at the end
	clean    *verifyReport
	// verified is the size of the checkpoint vigie verify saved last;
	// audited, that of the checkpoint the audit saved in endState.
	verified, audited uint64
	// receipt is the receipt of the last access, as the API returns it.
	receipt []byte
}

func (s *story) row(t *testing.T, kind string, nth int) eventRow {
	t.Helper()
	for _, r := range s.clean.Events {
		if r.Kind == kind {
			if nth == 0 {
				return r
			}
			nth--
		}
	}
	t.Fatalf("no %s event number %d in the history", kind, nth)
	return eventRow{}
}

func doCheck(t *testing.T, e *e2e, id, ins, rpps string, purpose vigiev1.PurposeOfUse, careTeam bool) *vigiev1.CheckResponse {
	t.Helper()
	req := checkRequest(id)
	req.PatientIns = ins
	req.Actor.Rpps = rpps
	req.Actor.CareTeam = careTeam
	req.PurposeOfUse = purpose
	if purpose == vigiev1.PurposeOfUse_PURPOSE_OF_USE_ETREAT || purpose == vigiev1.PurposeOfUse_PURPOSE_OF_USE_BTG {
		req.BreakGlassJustification = "patient unconscious, admitted to the emergency room"
	}
	r, err := vigiev1.NewAccessServiceClient(e.conn).Check(e.as(auth.RoleService, "hospital-his", e2eHospital), req)
	if err != nil {
		t.Fatalf("Check %s: %v", id, err)
	}
	return r
}

// buildStory runs the story: accesses, a consent change, a denial, an
// emergency access and its review, with an audit in the middle and a
// verification at the end; each verifier reports nothing.
func buildStory(t *testing.T) *story {
	s := &story{state: filepath.Join(t.TempDir(), "state")}
	w := newWorld(t, filepath.Join(t.TempDir(), "data"))
	s.w = w
	doCheck(t, w.e, "s-1", e2ePatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
	doCheck(t, w.e, "s-2", otherPatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
	block := []*vigiev1.Directive{{Id: "no-dr-b", Kind: &vigiev1.Directive_BlockProfessional{BlockProfessional: &vigiev1.BlockProfessional{Rpps: otherDoctor}}}}
	if _, err := vigiev1.NewConsentServiceClient(w.e.conn).UpdateConsent(w.e.as(auth.RolePatient, e2ePatient), &vigiev1.UpdateConsentRequest{Directives: block}); err != nil {
		t.Fatal(err)
	}
	if r := doCheck(t, w.e, "s-3", e2ePatient, otherDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true); r.Decision != vigiev1.Decision_DECISION_DENY {
		t.Fatalf("a blocked professional: %v", r.Decision)
	}
	w.stop() // signs a last checkpoint
	s.early = copyDir(t, w.dir)
	w.start(w.dir)

	if code, rep, errOut := w.audit(auth.RoleRegulator, s.state); code != exitOK || len(rep.Findings)+len(rep.Replayed)+len(rep.Alerts) != 0 {
		t.Fatalf("first audit: exit %d, %+v\n%s", code, rep, errOut)
	}
	bg := doCheck(t, w.e, "s-4", e2ePatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_ETREAT, false)
	if bg.Decision != vigiev1.Decision_DECISION_ALLOW {
		t.Fatalf("emergency access: %v", bg.Decision)
	}
	_, err := vigiev1.NewAuditServiceClient(w.e.conn).ReviewBreakGlass(w.e.as(auth.RoleRegulator, "cnil"), &vigiev1.ReviewBreakGlassRequest{
		RequestId: "review-1", EventCommitment: bg.Event.Commitment, Verdict: vigiev1.BreakGlassVerdict_BREAK_GLASS_VERDICT_JUSTIFIED, Comment: "admitted unconscious"})
	if err != nil {
		t.Fatalf("ReviewBreakGlass: %v", err)
	}
	var last *vigiev1.CheckResponse
	for i := range 3 {
		last = doCheck(t, w.e, fmt.Sprint("s-5-", i), e2ePatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
	}
	doCheck(t, w.e, "s-6", otherPatient, otherDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
	s.receipt = []byte(base64.StdEncoding.EncodeToString(last.Event.Receipt))
	// The other patient has their events erased, then is seen again.
	if _, err := vigiev1.NewConsentServiceClient(w.e.conn).RequestErasure(w.e.as(auth.RolePatient, otherPatient), &vigiev1.RequestErasureRequest{Confirm: true}); err != nil {
		t.Fatalf("RequestErasure: %v", err)
	}
	r6 := doCheck(t, w.e, "s-7", otherPatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
	// The verification's saved checkpoint covers the whole story: a backup
	// from its first part is then older.
	waitCheckpoint(t, w, r6.Event.LeafIndex+1)

	// The clean runs: nothing to report.
	code, rep, errOut := w.verify(e2ePatient, s.state)
	if code != exitOK || rep.Verdict != "verified" || len(rep.Findings) != 0 || rep.Previous != nil {
		t.Fatalf("clean verify: exit %d, %+v\n%s", code, rep, errOut)
	}
	if got := len(rep.Events); got < 9 {
		t.Fatalf("clean verify: %d events", got)
	}
	s.clean = rep
	// Erased events are placeholders: their place is proven, and the
	// history still verifies.
	code, rep, errOut = w.verify(otherPatient, s.state)
	if code != exitOK || len(rep.Findings) != 0 || rep.Erased < 3 || rep.Events[0].Kind != "erased" || rep.Events[len(rep.Events)-1].Kind != "access" {
		t.Fatalf("verify after an erasure: exit %d, %d erased, %+v\n%s", code, rep.Erased, rep, errOut)
	}
	s.verified = rep.Log.CheckpointSize
	s.endState = copyDir(t, s.state)
	code, arep, errOut := w.audit(auth.RoleRegulator, s.endState)
	if code != exitOK || len(arep.Findings)+len(arep.Replayed)+len(arep.Alerts) != 0 || arep.Replay.Agreed != arep.Replay.Accesses || arep.Replay.Accesses < 7 || arep.Events.NotYetInLog != 0 {
		t.Fatalf("clean audit: exit %d, %+v, replay %+v\n%s", code, arep, arep.Replay, errOut)
	}
	if !arep.Events.Complete || arep.Events.Erased < 3 {
		t.Fatalf("clean audit: every leaf accounted for %v, %d erased placeholders; want true, at least 3", arep.Events.Complete, arep.Events.Erased)
	}
	for _, c := range arep.Log.Checkpoints {
		s.audited = max(s.audited, c.Size)
	}
	w.stop()
	s.final = w.dir
	return s
}

// TestVerifyAndAuditFindTampering builds a ledger through the API, checks
// that vigie verify and vigie audit report nothing on it, then changes
// the stores or the answers, one way at a time, and checks that each is
// detected, with the finding that names it, exit code 1 and an evidence
// file.
func TestVerifyAndAuditFindTampering(t *testing.T) {
	if testing.Short() {
		t.Skip("starts vigie serve a dozen times")
	}
	s := buildStory(t)

	wantFinding := func(t *testing.T, code int, findings []audit.Finding, evidence string, kind audit.Kind, seq uint64) {
		t.Helper()
		if code != exitFailure {
			t.Errorf("exit %d, want %d", code, exitFailure)
		}
		found := false
		for _, f := range findings {
			found = found || f.Kind == kind && (seq == 0 || f.Seq == seq)
		}
		if !found {
			t.Fatalf("findings %v, want %s at seq %d", findings, kind, seq)
		}
		if b, err := os.ReadFile(evidence); err != nil || !bytes.Contains(b, []byte(kind)) {
			t.Errorf("evidence file %q: %v", evidence, err)
		}
	}

	t.Run("the reports", func(t *testing.T) {
		w := s.w.restart(t, copyDir(t, s.final))
		code, out, errOut := w.cli("verify", "--state-dir", copyDir(t, s.state), "--token", w.token(auth.RolePatient, e2ePatient))
		w.noINS(out + errOut)
		for _, want := range []string{"Historique des accès à votre dossier", "⚠ URGENCE autorisé", "REFUSÉ", "le patient a bloqué ce professionnel",
			"revue de l'accès en urgence n°", "justifié", "consentement modifié : version 1, 1 directive(s)", "VÉRIFIÉ : ", "journal cohérent avec la vérification précédente"} {
			if code != exitOK || !strings.Contains(out, want) {
				t.Errorf("vigie verify: exit %d, no %q in:\n%s\n%s", code, want, out, errOut)
			}
		}
		code, out, errOut = w.cli("verify", "--lang", "en", "--state-dir", copyDir(t, s.state), "--token", w.token(auth.RolePatient, otherPatient))
		for _, want := range []string{"erased event", "erasure done", "VERIFIED: ", "erased events (their place is proven, their link can no longer be checked)"} {
			if code != exitOK || !strings.Contains(out, want) {
				t.Errorf("vigie verify --lang en: exit %d, no %q in:\n%s\n%s", code, want, out, errOut)
			}
		}
		// A DPO: the events of its organisation; without the consent
		// changes, only the decisions under consent version 0 replay.
		dpo := &auditReport{}
		code, errOut = w.runJSON(dpo, "audit", "--json", "--state-dir", copyDir(t, s.endState), "--token", w.token(auth.RoleDPO, "dpo", e2eHospital), "--alert-odd-hours-min", "1000000")
		if code != exitOK || len(dpo.Findings)+len(dpo.Replayed) != 0 || dpo.Events.Role != "dpo" || dpo.Replay.Replayed == 0 || dpo.Replay.NotReplayable["consent not visible"] == 0 {
			t.Errorf("a DPO's audit: exit %d, %+v, replay %+v\n%s", code, dpo, dpo.Replay, errOut)
		}
		code, out, errOut = w.cli("audit", "--lang", "en", "--state-dir", copyDir(t, s.endState), "--token", w.token(auth.RoleRegulator, "cnil"))
		for _, want := range []string{"Audit of the log", "consistency:", "Replay of decisions:", "every replayed decision confirmed", "VERIFIED: "} {
			if code != exitOK || !strings.Contains(out, want) {
				t.Errorf("vigie audit: exit %d, no %q in:\n%s\n%s", code, want, out, errOut)
			}
		}
	})

	t.Run("several servers, the first down", func(t *testing.T) {
		w := s.w.restart(t, copyDir(t, s.final))
		down := httptest.NewServer(http.NotFoundHandler())
		down.Close() // its port now refuses connections
		servers := down.URL + "," + w.proxy.URL
		code, rep, errOut := w.verify(e2ePatient, t.TempDir(), "--server", servers)
		if code != exitOK || rep.Verdict != "verified" || len(rep.Findings) != 0 || rep.Server != down.URL {
			t.Errorf("vigie verify --server %s: exit %d, server %q, %+v\n%s", servers, code, rep.Server, rep, errOut)
		}
		code, arep, errOut := w.audit(auth.RoleRegulator, t.TempDir(), "--server", servers)
		if code != exitOK || len(arep.Findings) != 0 || !arep.Events.Complete {
			t.Errorf("vigie audit --server %s: exit %d, %+v\n%s", servers, code, arep, errOut)
		}
	})

	t.Run("an outbox row deleted after acknowledgement", func(t *testing.T) {
		r := s.row(t, "access", 3)
		dir := copyDir(t, s.final)
		db := openDB(t, filepath.Join(dir, "vigie.db"))
		var sent uint64
		if err := db.QueryRow("SELECT size FROM ledger_sent").Scan(&sent); err != nil || sent <= r.Index {
			t.Fatalf("sent size %d, %v: the event is not acknowledged", sent, err)
		}
		execOne(t, db, "DELETE FROM events WHERE leaf_index = ?", r.Index)
		w := s.w.restart(t, dir)
		code, rep, _ := w.verify(e2ePatient, copyDir(t, s.state))
		wantFinding(t, code, rep.Findings, rep.Evidence, audit.KindMissingEvent, r.Seq)
	})

	t.Run("one byte of a stored body", func(t *testing.T) {
		r := s.row(t, "access", 3)
		// Naively: the ciphertext no longer opens, the server refuses to
		// serve the history (it fails closed, DATA_LOSS naming the
		// event), and the patient's verification fails on it, with
		// evidence.
		dir := copyDir(t, s.final)
		db := openDB(t, filepath.Join(dir, "vigie.db"))
		var sealed []byte
		if err := db.QueryRow("SELECT sealed FROM events WHERE leaf_index = ?", r.Index).Scan(&sealed); err != nil {
			t.Fatal(err)
		}
		sealed[20] ^= 1
		execOne(t, db, "UPDATE events SET sealed = ? WHERE leaf_index = ?", sealed, r.Index)
		w := s.w.restart(t, dir)
		code, rep, _ := w.verify(e2ePatient, copyDir(t, s.state))
		wantFinding(t, code, rep.Findings, rep.Evidence, audit.KindUnreadable, r.Seq)
		if f := rep.Findings[0]; f.Index == nil || *f.Index != r.Index {
			t.Errorf("finding %+v, want leaf index %d", f, r.Index)
		}
		code, out, errOut := w.cli("verify", "--state-dir", copyDir(t, s.state), "--token", w.token(auth.RolePatient, e2ePatient))
		w.noINS(out + errOut)
		for _, want := range []string{fmt.Sprintf("le serveur ne peut plus lire l'événement n° %d : son stockage a été altéré", r.Seq), "ÉCHEC DE LA VÉRIFICATION"} {
			if code != exitFailure || !strings.Contains(strings.ToLower(out), strings.ToLower(want)) {
				t.Errorf("a body that does not open: exit %d, no %q in:\n%s\n%s", code, want, out, errOut)
			}
		}
		code, out, errOut = w.cli("verify", "--lang", "en", "--state-dir", copyDir(t, s.state), "--token", w.token(auth.RolePatient, e2ePatient))
		if want := fmt.Sprintf("The server can no longer read event no. %d: its storage has been altered.", r.Seq); code != exitFailure || !strings.Contains(out, want) {
			t.Errorf("a body that does not open, in English: exit %d, no %q in:\n%s\n%s", code, want, out, errOut)
		}
		// The regulator's audit, whose search meets the same event.
		reg := &auditReport{}
		code, errOut = w.runJSON(reg, "audit", "--json", "--state-dir", copyDir(t, s.endState), "--token", w.token(auth.RoleRegulator, "cnil"), "--alert-odd-hours-min", "1000000")
		w.noINS(errOut)
		wantFinding(t, code, reg.Findings, reg.Evidence, audit.KindUnreadable, 0)
		w.stop()

		// As an operator with the keys: the body changed by one byte,
		// sealed again under a new commitment. The log still holds the
		// old one: the event's proof fails, and so does the next link.
		dir = copyDir(t, s.final)
		db = openDB(t, filepath.Join(dir, "vigie.db"))
		var pseudonym, wrapped []byte
		if err := db.QueryRow("SELECT e.pseudonym, p.wrapped_key, e.sealed FROM events e JOIN patients p ON p.pseudonym = e.pseudonym WHERE e.leaf_index = ?", r.Index).Scan(&pseudonym, &wrapped, &sealed); err != nil {
			t.Fatal(err)
		}
		dk, plain := openSealed(t, dir, wrapped, pseudonym, sealed, r.Commitment[:])
		salt, body := [32]byte(plain[:32]), changeTime(t, plain[32:])
		c := verify.Commitment(salt, body)
		nonce := make([]byte, dk.NonceSize())
		rand.Read(nonce)
		resealed := dk.Seal(nonce, nonce, append(salt[:], body...), c[:])
		execOne(t, db, "UPDATE events SET commitment = ?, sealed = ? WHERE leaf_index = ?", c[:], resealed, r.Index)
		w.restart(t, dir)
		code, rep, _ = w.verify(e2ePatient, copyDir(t, s.state))
		wantFinding(t, code, rep.Findings, rep.Evidence, audit.KindProof, r.Seq)
		wantFinding(t, code, rep.Findings, rep.Evidence, audit.KindWrongLink, r.Seq+1)
		w.stop()

		// Served with one byte changed (a compromised server, or on the
		// way): the body does not match its commitment.
		w.restart(t, copyDir(t, s.final))
		w.setEdit(editHistory(func(resp *vigiev1.ListAccessesResponse) {
			for _, e := range resp.Events {
				if e.Sequence == r.Seq {
					e.Body = changeTime(t, e.Body)
				}
			}
		}))
		code, rep, _ = w.verify(e2ePatient, copyDir(t, s.state))
		wantFinding(t, code, rep.Findings, rep.Evidence, audit.KindModifiedBody, r.Seq)

		// Served as an erased placeholder, to hide it: no erasure explains
		// an erased event after readable ones.
		w.setEdit(editHistory(func(resp *vigiev1.ListAccessesResponse) {
			for _, e := range resp.Events {
				if e.Sequence == r.Seq {
					e.Erased, e.Body, e.Salt = true, nil, nil
				}
			}
		}))
		code, rep, _ = w.verify(e2ePatient, copyDir(t, s.state))
		wantFinding(t, code, rep.Findings, rep.Evidence, audit.KindUnexplainedErasure, r.Seq)
	})

	t.Run("a leaf rewritten in Trillian's storage", func(t *testing.T) {
		// One among the first leaves, one among the last: a consistency
		// proof from a tree of 2^k leaves holds no node of that tree, so
		// the auditor needs a rewritten leaf beyond its saved checkpoint.
		first := s.row(t, "access", 0)
		last := s.clean.Events[len(s.clean.Events)-1]
		dir := copyDir(t, s.final)
		rewriteTrillianLeaf(t, filepath.Join(dir, "trillian.db"), first.Index, first.Commitment)
		rewriteTrillianLeaf(t, filepath.Join(dir, "trillian.db"), last.Index, last.Commitment)
		w := s.w.restart(t, dir)
		code, rep, _ := w.verify(e2ePatient, copyDir(t, s.state))
		wantFinding(t, code, rep.Findings, rep.Evidence, audit.KindProof, 0)
		// The auditor, from the checkpoint of its first run: the
		// consistency proof fails, though the leaves rebuild both roots.
		acode, arep, _ := w.audit(auth.RoleAuditor, copyDir(t, s.state))
		if saved := arep.Log.Checkpoints[0]; !saved.Saved || last.Index < saved.Size {
			t.Fatalf("the last event (leaf %d) is not beyond the auditor's saved checkpoint %+v: the story changed", last.Index, saved)
		}
		wantFinding(t, acode, arep.Findings, arep.Evidence, audit.KindProof, 0)
	})

	t.Run("an older checkpoint served", func(t *testing.T) {
		// The operator restores a backup from before the last verification.
		w := s.w.restart(t, copyDir(t, s.early))
		code, rep, _ := w.verify(e2ePatient, copyDir(t, s.state))
		wantFinding(t, code, rep.Findings, rep.Evidence, audit.KindRollback, 0)
		if rep.Findings[0].Kind != audit.KindRollback {
			t.Errorf("first finding %s, want the rollback", rep.Findings[0].Kind)
		}
		acode, arep, _ := w.audit(auth.RoleAuditor, copyDir(t, s.endState))
		wantFinding(t, acode, arep.Findings, arep.Evidence, audit.KindRollback, 0)
	})

	t.Run("a fork", func(t *testing.T) {
		// The backup restored, then other events: a tree as large as the
		// one verified, with another history.
		// It must outgrow both the checkpoint verify saved and the one
		// the audit saved (the audit's own reads made that one larger).
		w := s.w.restart(t, copyDir(t, s.early))
		size := max(s.verified, s.audited)
		for i := 0; uint64(i) < size; i++ {
			doCheck(t, w.e, fmt.Sprint("fork-", i), otherPatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
		}
		waitCheckpoint(t, w, size+1)
		code, rep, _ := w.verify(e2ePatient, copyDir(t, s.state))
		wantFinding(t, code, rep.Findings, rep.Evidence, audit.KindFork, 0)
		acode, arep, _ := w.audit(auth.RoleAuditor, copyDir(t, s.endState))
		wantFinding(t, acode, arep.Findings, arep.Evidence, audit.KindFork, 0)
	})

	t.Run("a checkpoint signed with another key", func(t *testing.T) {
		dir := copyDir(t, s.final)
		db := openDB(t, filepath.Join(dir, "vigie.db"))
		var size uint64
		var n []byte
		if err := db.QueryRow("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1").Scan(&size, &n); err != nil {
			t.Fatal(err)
		}
		cp, err := verify.ParseCheckpoint(n[:bytes.Index(n, []byte("\n\n"))+1])
		if err != nil {
			t.Fatal(err)
		}
		skey, _, err := note.GenerateKey(rand.Reader, cp.Origin)
		if err != nil {
			t.Fatal(err)
		}
		signer, _ := note.NewSigner(skey)
		forged, err := verify.SignCheckpoint(cp, signer)
		if err != nil {
			t.Fatal(err)
		}
		execOne(t, db, "UPDATE checkpoints SET note = ? WHERE size = ?", forged, size)
		w := s.w.restart(t, dir)
		acode, arep, _ := w.audit(auth.RoleAuditor, copyDir(t, s.endState))
		wantFinding(t, acode, arep.Findings, arep.Evidence, audit.KindSignature, 0)
		code, rep, _ := w.verify(e2ePatient, copyDir(t, s.state))
		wantFinding(t, code, rep.Findings, rep.Evidence, audit.KindSignature, 0)
	})

	t.Run("an event dropped from a response", func(t *testing.T) {
		r := s.row(t, "break_glass_review", 0)
		w := s.w.restart(t, copyDir(t, s.final))
		w.setEdit(editHistory(func(resp *vigiev1.ListAccessesResponse) {
			resp.Events = slices.DeleteFunc(resp.Events, func(e *vigiev1.LedgerEvent) bool { return e.Sequence == r.Seq })
		}))
		code, rep, _ := w.verify(e2ePatient, copyDir(t, s.state))
		wantFinding(t, code, rep.Findings, rep.Evidence, audit.KindMissingEvent, r.Seq)

		// An access withheld from the regulator's search: the leaf at
		// its index is accounted for by nothing the search served.
		access := s.row(t, "access", 2)
		w.setEdit(func(path string, body []byte) []byte {
			if path != "/v1/audit/events:search" {
				return body
			}
			var resp vigiev1.SearchEventsResponse
			if err := protojson.Unmarshal(body, &resp); err != nil {
				return body
			}
			resp.Events = slices.DeleteFunc(resp.Events, func(e *vigiev1.LedgerEvent) bool { return e.LeafIndex == access.Index })
			b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(&resp)
			if err != nil {
				return body
			}
			return b
		})
		acode, arep, _ := w.audit(auth.RoleRegulator, copyDir(t, s.endState))
		wantFinding(t, acode, arep.Findings, arep.Evidence, audit.KindWithheld, 0)
		if f := arep.Findings[0]; f.Kind != audit.KindWithheld || f.Index == nil || *f.Index != access.Index {
			t.Errorf("findings %+v, want the withheld leaf %d first", arep.Findings, access.Index)
		}
		withhold := w.edit
		w.stop()

		// The same, behind the first checkpoint of the log served before
		// the search (so that the withheld access seems to come after
		// it): that checkpoint is older than the one the previous audit
		// reached, and the server is caught going back in time.
		dir := copyDir(t, s.final)
		var oldest []byte
		if err := openDB(t, filepath.Join(dir, "vigie.db")).QueryRow("SELECT note FROM checkpoints ORDER BY size LIMIT 1").Scan(&oldest); err != nil {
			t.Fatal(err)
		}
		w.restart(t, dir)
		var served atomic.Bool
		w.setEdit(func(path string, body []byte) []byte {
			if path == "/checkpoint" && served.CompareAndSwap(false, true) {
				return oldest
			}
			return withhold(path, body)
		})
		acode, arep, _ = w.audit(auth.RoleRegulator, copyDir(t, s.endState))
		wantFinding(t, acode, arep.Findings, arep.Evidence, audit.KindRollback, 0)
		if arep.Events.Complete {
			t.Error("every leaf claimed accounted for behind an old checkpoint")
		}
	})

	t.Run("a search that serves what it should not", func(t *testing.T) {
		// The regulator's search serves an erased placeholder with a body,
		// and a copy of an access at the leaf of a consent change (served
		// later, as itself): vigie verify's rules hold for the audit too,
		// and a leaf served twice is a finding, not the last one served.
		access, change := s.row(t, "access", 0), s.row(t, "consent_change", 0)
		editSearch := func(f func(resp *vigiev1.SearchEventsResponse)) func(string, []byte) []byte {
			return func(path string, body []byte) []byte {
				var resp vigiev1.SearchEventsResponse
				if path != "/v1/audit/events:search" || protojson.Unmarshal(body, &resp) != nil {
					return body
				}
				f(&resp)
				b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(&resp)
				if err != nil {
					return body
				}
				return b
			}
		}
		for _, tc := range []struct {
			name string
			edit func(resp *vigiev1.SearchEventsResponse)
			want audit.Kind
		}{
			{"an erased placeholder with a body", func(resp *vigiev1.SearchEventsResponse) {
				if len(resp.Events) > 0 && resp.Events[0].Erased {
					resp.Events[0].Body, resp.Events[0].Salt = []byte(`{}`), make([]byte, 32)
				}
			}, audit.KindMalformed},
			{"one leaf served twice", func(resp *vigiev1.SearchEventsResponse) {
				for _, e := range resp.Events {
					if e.LeafIndex == access.Index {
						c := proto.Clone(e).(*vigiev1.LedgerEvent)
						c.LeafIndex = change.Index
						resp.Events = append(resp.Events, c)
						slices.SortStableFunc(resp.Events, func(a, b *vigiev1.LedgerEvent) int { return cmp.Compare(a.LeafIndex, b.LeafIndex) })
						return
					}
				}
			}, audit.KindDuplicate},
		} {
			t.Run(tc.name, func(t *testing.T) {
				w := s.w.restart(t, copyDir(t, s.final))
				w.setEdit(editSearch(tc.edit))
				code, rep, _ := w.audit(auth.RoleRegulator, copyDir(t, s.endState))
				wantFinding(t, code, rep.Findings, rep.Evidence, tc.want, 0)
			})
		}
	})

	t.Run("an access recorded as ALLOW that the consent in force denied", func(t *testing.T) {
		// The operator, who holds the KEK, lifts the patient's block in
		// the consent store (sealed as the store seals it), without a
		// consent-change event, and the blocked professional is let in
		// under the consent version that blocks them.
		dir := copyDir(t, s.final)
		db := openDB(t, filepath.Join(dir, "vigie.db"))
		lifted, err := consent.FormatConsent(consent.Consent{Version: 1})
		if err != nil {
			t.Fatal(err)
		}
		var pseudonym, wrapped []byte
		if err := db.QueryRow("SELECT c.pseudonym, p.wrapped_key FROM consents c JOIN patients p ON p.pseudonym = c.pseudonym WHERE c.version = 1").Scan(&pseudonym, &wrapped); err != nil {
			t.Fatal(err)
		}
		execOne(t, db, "UPDATE consents SET consent = ? WHERE version = 1", sealConsentAsOperator(t, dir, pseudonym, wrapped, 1, lifted))
		w := s.w.restart(t, dir)
		r := doCheck(t, w.e, "after-tamper", e2ePatient, otherDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
		if r.Decision != vigiev1.Decision_DECISION_ALLOW || r.ConsentVersion != 1 {
			t.Fatalf("after the tamper: %v under consent %d", r.Decision, r.ConsentVersion)
		}
		waitCheckpoint(t, w, r.Event.LeafIndex+1)
		code, rep, _ := w.audit(auth.RoleRegulator, copyDir(t, s.endState))
		if code != exitFailure || len(rep.Replayed) == 0 {
			t.Fatalf("audit: exit %d, replay findings %v", code, rep.Replayed)
		}
		f := rep.Replayed[0]
		if f.Kind != replay.KindAllowDenied || f.Severity != replay.Critical || f.Event.Index != r.Event.LeafIndex || f.Recorded != "ALLOW" || f.Replayed != "DENY" {
			t.Errorf("first replay finding %+v, want the ALLOW at leaf %d denied by the replay", f, r.Event.LeafIndex)
		}
		if len(rep.Findings) != 0 {
			t.Errorf("log findings %v: the log itself is sound", rep.Findings)
		}
	})

	t.Run("a receipt", func(t *testing.T) {
		w := s.w.restart(t, copyDir(t, s.final))
		file := filepath.Join(t.TempDir(), "receipt")
		os.WriteFile(file, s.receipt, 0o600)
		code, out, errOut := w.cli("verify", "--json", "--state-dir", copyDir(t, s.state), "--receipt", file)
		if code != exitOK || !strings.Contains(out, `"status": "included"`) {
			t.Fatalf("a receipt kept: exit %d\n%s\n%s", code, out, errOut)
		}
		// A receipt the log signed for an event it never logged, past its
		// deadline: the promise is broken.
		signer := receiptSigner(t, w.dir)
		r := verify.Receipt{Origin: s.clean.Log.Origin, Index: s.clean.Log.CheckpointSize + 1000, Commitment: event.Hash{7},
			Time: time.Now().Add(-time.Minute), Deadline: time.Now().Add(-50 * time.Second)}
		broken, err := verify.SignReceipt(r, signer)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(file, broken, 0o600)
		code, out, errOut = w.cli("verify", "--json", "--state-dir", copyDir(t, s.state), "--receipt", file)
		if code != exitFailure || !strings.Contains(out, string(audit.KindReceiptOverdue)) {
			t.Errorf("a broken promise: exit %d\n%s\n%s", code, out, errOut)
		}
		// And one for another commitment at a leaf the log holds.
		r.Index = 1
		other, _ := verify.SignReceipt(r, signer)
		os.WriteFile(file, other, 0o600)
		code, out, _ = w.cli("verify", "--json", "--state-dir", copyDir(t, s.state), "--receipt", file)
		if code != exitFailure || !strings.Contains(out, string(audit.KindNotInLog)) {
			t.Errorf("another commitment: exit %d\n%s", code, out)
		}
	})
}

// changeTime changes one byte of an event body, the last digit of its
// time's nanoseconds, so that it stays a valid body.
func changeTime(t *testing.T, body []byte) []byte {
	t.Helper()
	i := bytes.Index(body, []byte(`Z","kind"`)) - 1
	if i < 0 {
		t.Fatal("no time in the body")
	}
	b := bytes.Clone(body)
	b[i] = '0' + (b[i]-'0'+1)%10
	return b
}

// waitCheckpoint waits until a signed checkpoint covers size leaves.
func waitCheckpoint(t *testing.T, w *world, size uint64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		b, err := vigiev1.NewLogServiceClient(w.e.conn).GetCheckpoint(w.e.as(auth.RoleAuditor, "x"), &vigiev1.GetCheckpointRequest{})
		if err == nil {
			if cp, err := verify.OpenCheckpoint(b.Data, w.e.cpKey); err == nil && cp.Size >= size {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no checkpoint of %d leaves within a minute", size)
}

func receiptSigner(t *testing.T, dataDir string) note.Signer {
	b, err := os.ReadFile(filepath.Join(dataDir, "keys", "receipt.key"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rewriteTrillianLeaf rewrites, in Trillian's SQLite storage, the leaf at
// index (whose commitment is old) with another, coherently: the leaf's row
// and its tile, whose internal nodes are recomputed, as someone who meant
// to replace an event would.
func rewriteTrillianLeaf(t *testing.T, path string, index uint64, old event.Hash) {
	t.Helper()
	db := openDB(t, path)
	forged := event.Hash(sha256.Sum256([]byte("forged event")))
	value, leafHash := verify.LeafValue(forged), verify.MerkleLeafHash(forged)
	execOne(t, db, "UPDATE sequenced_leaves SET leaf_value = ?, merkle_leaf_hash = ? WHERE sequence_number = ?", value, leafHash[:], int64(index))

	// A tile's nodes are keyed by their suffix within it, as Trillian's
	// storage/cache writes them: base64 of the depth below the tile's root
	// and of the path's byte.
	key := func(level, i uint64) string {
		d := 8 - level
		return base64.StdEncoding.EncodeToString([]byte{byte(d), byte((i % (1 << d)) << (8 - d))})
	}
	rows, err := db.Query("SELECT subtree_id, nodes FROM subtrees")
	if err != nil {
		t.Fatal(err)
	}
	var id, nodes []byte
	var tile *storagepb.SubtreeProto
	oldHash := verify.MerkleLeafHash(old)
	for rows.Next() {
		var i, n []byte
		if err := rows.Scan(&i, &n); err != nil {
			t.Fatal(err)
		}
		var st storagepb.SubtreeProto
		if err := proto.Unmarshal(n, &st); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(st.Leaves[key(0, index)], oldHash[:]) && len(st.Prefix) == 7 && binary.BigEndian.Uint64(append(bytes.Clone(st.Prefix), 0)) == index&^255 {
			id, nodes, tile = i, n, &st
		}
	}
	rows.Close()
	if tile == nil {
		t.Fatalf("no tile holds leaf %d", index)
	}
	tile.Leaves[key(0, index)] = leafHash[:]
	// Recompute the internal nodes the tile stores (a partial tile keeps
	// them), from its leaves.
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	cr := rf.NewEmptyRange(0)
	for i := uint64(0); i < uint64(len(tile.Leaves)); i++ {
		err := cr.Append(tile.Leaves[key(0, i)], func(n compact.NodeID, h []byte) {
			if k := key(uint64(n.Level), n.Index); n.Level > 0 && tile.InternalNodes[k] != nil {
				tile.InternalNodes[k] = h
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	b, err := proto.Marshal(tile)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(b, nodes) {
		t.Fatal("the tile did not change")
	}
	execOne(t, db, "UPDATE subtrees SET nodes = ? WHERE subtree_id = ?", b, id)
}
