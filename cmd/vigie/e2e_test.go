package main

import (
	"context"
	"encoding/json"
	"fmt"
	"google.golang.org/protobuf/proto"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/vigie-sante/vigie/api/apiserver"
	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// e2e is a vigie serve process and gRPC clients of it over TCP.
type e2e struct {
	t       testing.TB
	proc    *serveProc
	conn    *grpc.ClientConn
	issuer  *auth.Issuer
	cpKey   note.Verifier
	rcptKey note.Verifier
}

var (
	grpcLine = regexp.MustCompile(`gRPC API:\s+(\S+)`)
	httpLine = regexp.MustCompile(`HTTP API:\s+(\S+)`)
	keyLine  = regexp.MustCompile(`(checkpoint|receipt) key:\s+(\S+)`)
)

func startE2E(t *testing.T, args ...string) *e2e {
	t.Helper()
	return startE2EAt(t, filepath.Join(t.TempDir(), "data"), args...)
}

// startE2EAt starts vigie serve on dataDir (new or not) and connects to it.
func startE2EAt(t testing.TB, dataDir string, args ...string) *e2e {
	t.Helper()
	proc := startServe(t, append([]string{"--data-dir", dataDir, "--checkpoint-interval", "100ms", "--sequencer-interval", "20ms"}, args...)...)
	proc.waitReady(t)
	m := grpcLine.FindStringSubmatch(proc.output())
	if m == nil {
		t.Fatalf("no gRPC address in the output:\n%s", proc.output())
	}
	conn, err := grpc.NewClient(m[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	issuer, err := apiserver.EmbeddedIssuer(filepath.Join(dataDir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	e := &e2e{t: t, proc: proc, conn: conn, issuer: issuer}
	// The keys printed at start are the ones a patient's tool trusts; the
	// API's GetPublicKey must say the same.
	for _, k := range keyLine.FindAllStringSubmatch(proc.output(), -1) {
		v, err := note.NewVerifier(k[2])
		if err != nil {
			t.Fatalf("%s key %q: %v", k[1], k[2], err)
		}
		if k[1] == "checkpoint" {
			e.cpKey = v
		} else {
			e.rcptKey = v
		}
	}
	if e.cpKey == nil || e.rcptKey == nil {
		t.Fatalf("keys not in the output:\n%s", proc.output())
	}
	keys, err := vigiev1.NewLogServiceClient(conn).GetPublicKey(context.Background(), &vigiev1.GetPublicKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(proc.output(), keys.CheckpointKey) || !strings.Contains(proc.output(), keys.ReceiptKey) {
		t.Errorf("GetPublicKey = %+v, not the keys printed at start", keys)
	}
	return e
}

// as returns a context carrying a token of role and subject.
func (e *e2e) as(role auth.Role, sub string, orgs ...string) context.Context {
	e.t.Helper()
	tok, err := e.issuer.Mint(auth.TokenRequest{Role: role, Subject: sub, Organizations: orgs, TTL: time.Hour})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	e.t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

const (
	e2ePatient  = "279035121518989"
	e2eHospital = "750712184"
	e2eDoctor   = "10000000001"
)

func checkRequest(id string) *vigiev1.CheckRequest {
	return &vigiev1.CheckRequest{
		RequestId:    id,
		PatientIns:   e2ePatient,
		Actor:        &vigiev1.Actor{Rpps: e2eDoctor, Profession: "10", Organization: e2eHospital, Sector: "care", CareTeam: true},
		Action:       vigiev1.Action_ACTION_READ,
		Resource:     &vigiev1.Resource{Kind: &vigiev1.Resource_Record{Record: &vigiev1.WholeRecord{}}},
		PurposeOfUse: vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT,
	}
}

// verifiedEvent is an event of a patient's history, verified.
type verifiedEvent struct {
	body       *event.Body
	commitment event.Hash
	index      uint64
	erased     bool
}

// listAndVerify lists the patient's whole history, page by page, and
// verifies it as a patient's tool does, with ledger/verify only and the
// keys printed at start: the checkpoint's signature, each body against its
// commitment, each inclusion proof against the checkpoint (or the receipt
// of an event newer than it), and the chain from the first event to the
// last, without holes.
func (e *e2e) listAndVerify(ctx context.Context, pageSize int32) []verifiedEvent {
	e.t.Helper()
	client := vigiev1.NewHistoryServiceClient(e.conn)
	var out []verifiedEvent
	var links []verify.Link
	var pinned []byte
	token := ""
	for {
		resp, err := client.ListAccesses(ctx, &vigiev1.ListAccessesRequest{PageSize: pageSize, PageToken: token})
		if err != nil {
			e.t.Fatalf("ListAccesses: %v", err)
		}
		if pinned == nil {
			pinned = resp.Checkpoint
		} else if string(resp.Checkpoint) != string(pinned) {
			e.t.Fatalf("page %d is proved against another checkpoint than the first page", len(out)/int(pageSize))
		}
		cp, err := verify.OpenCheckpoint(resp.Checkpoint, e.cpKey)
		if err != nil {
			e.t.Fatalf("checkpoint: %v", err)
		}
		for _, ev := range resp.Events {
			c, err := event.ParseHash(ev.Commitment)
			if err != nil {
				e.t.Fatal(err)
			}
			v := verifiedEvent{commitment: c, index: ev.LeafIndex, erased: ev.Erased}
			switch {
			case ev.Erased && ev.LeafIndex >= cp.Size:
				// An erased event lost its time, hence its receipt: it is
				// proved once a checkpoint covers it.
				e.t.Fatalf("erased event %d is beyond the checkpoint: wait for one first", ev.Sequence)
			case ev.LeafIndex < cp.Size:
				if err := verify.VerifyInclusion(ev.LeafIndex, cp.Size, verify.MerkleLeafHash(c), ev.InclusionProof, cp.Hash); err != nil {
					e.t.Fatalf("event %d: inclusion: %v", ev.Sequence, err)
				}
			default:
				r, err := verify.OpenReceipt(ev.Receipt, e.rcptKey)
				if err != nil || r.Commitment != c || r.Index != ev.LeafIndex {
					e.t.Fatalf("event %d beyond the checkpoint: receipt %+v, %v", ev.Sequence, r, err)
				}
			}
			if ev.Erased {
				// Nothing to check but its place in the log (above).
				out = append(out, v)
				continue
			}
			{
				var salt [verify.SaltSize]byte
				copy(salt[:], ev.Salt)
				b, err := verify.VerifyEvent(ev.Body, salt, c)
				if err != nil {
					e.t.Fatalf("event %d: %v", ev.Sequence, err)
				}
				v.body = b
				links = append(links, verify.LinkOf(b, c))
			}
			out = append(out, v)
		}
		if resp.NextPageToken == "" {
			break
		}
		token = resp.NextPageToken
	}
	if len(links) == len(out) {
		if err := verify.VerifyChain(links); err != nil {
			e.t.Fatalf("chain: %v", err)
		}
	}
	return out
}

func kinds(evs []verifiedEvent) []string {
	var out []string
	for _, v := range evs {
		if v.erased {
			out = append(out, "erased")
		} else {
			out = append(out, string(v.body.Kind))
		}
	}
	return out
}

// TestEndToEnd runs the story of the API over real TCP against a vigie
// serve process: a hospital's service checks an access; the patient lists
// and verifies their history; a regulator searches the events; the patient
// then sees the regulator's read in their own, verified, history. Along the
// way: a retry records nothing, a consent change is followed, a stale
// consent version is refused, and the log's proofs verify.
func TestEndToEnd(t *testing.T) {
	e := startE2E(t)
	access := vigiev1.NewAccessServiceClient(e.conn)
	service := e.as(auth.RoleService, "hospital-his", e2eHospital)

	first, err := access.Check(service, checkRequest("visit-1"))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if first.Decision != vigiev1.Decision_DECISION_ALLOW || first.Event == nil || first.Event.Commitment == "" {
		t.Fatalf("Check = %+v, want ALLOW with an event", first)
	}
	r, err := verify.OpenReceipt(first.Event.Receipt, e.rcptKey)
	if err != nil || r.Index != first.Event.LeafIndex || r.Commitment.String() != first.Event.Commitment {
		t.Fatalf("receipt of Check = %+v, %v", r, err)
	}
	retry, err := access.Check(service, checkRequest("visit-1"))
	if err != nil || retry.Event.LeafIndex != first.Event.LeafIndex || retry.Event.Commitment != first.Event.Commitment {
		t.Fatalf("retry = %+v, %v; want the first event again", retry, err)
	}

	// The same request_id for another patient, or another assertion: not a
	// retry. Refused naming request_id; nothing recorded; the first
	// answer is not handed out.
	otherPatient := checkRequest("visit-1")
	otherPatient.PatientIns = "180127512345642"
	otherActor := checkRequest("visit-1")
	otherActor.Actor.CareTeam = false
	for _, reused := range []*vigiev1.CheckRequest{otherPatient, otherActor} {
		if got, err := access.Check(service, reused); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "request_id") {
			t.Errorf("Check reusing a request_id for another request = %v, %v; want InvalidArgument naming request_id", got, err)
		}
	}
	if n := len(e.listAndVerify(e.as(auth.RolePatient, "180127512345642"), 10)); n != 0 {
		t.Errorf("the other patient's chain has %d events after a refused reuse", n)
	}

	// Another organisation's actor: refused, nothing recorded.
	other := checkRequest("visit-x")
	other.Actor.Organization = "130000011"
	if _, err := access.Check(service, other); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Check for another organisation = %v, want PermissionDenied", err)
	}

	// The patient blocks the physician; the next Check is denied.
	patient := e.as(auth.RolePatient, e2ePatient)
	consents := vigiev1.NewConsentServiceClient(e.conn)
	block := []*vigiev1.Directive{{Id: "no-dr-x", Kind: &vigiev1.Directive_BlockProfessional{BlockProfessional: &vigiev1.BlockProfessional{Rpps: e2eDoctor}}}}
	upd, err := consents.UpdateConsent(patient, &vigiev1.UpdateConsentRequest{ExpectedVersion: 0, Directives: block})
	if err != nil || upd.Version != 1 {
		t.Fatalf("UpdateConsent = %+v, %v", upd, err)
	}
	if _, err := consents.UpdateConsent(patient, &vigiev1.UpdateConsentRequest{ExpectedVersion: 0}); status.Code(err) != codes.Aborted {
		t.Errorf("UpdateConsent from a stale version = %v, want Aborted", err)
	}
	denied, err := access.Check(service, checkRequest("visit-2"))
	if err != nil || denied.Decision != vigiev1.Decision_DECISION_DENY || denied.ConsentVersion != 1 {
		t.Fatalf("Check after the block = %+v, %v; want DENY under consent 1", denied, err)
	}

	// The patient's history: access, consent change, access. Verified.
	evs := e.listAndVerify(patient, 2)
	if got := strings.Join(kinds(evs), ","); got != "access,consent_change,access" {
		t.Fatalf("history = %s, want access,consent_change,access", got)
	}
	if evs[0].commitment.String() != first.Event.Commitment || evs[2].commitment.String() != denied.Event.Commitment {
		t.Errorf("history's accesses are not the events Check returned")
	}

	// A regulator searches the patient's events, with their bodies.
	audit := vigiev1.NewAuditServiceClient(e.conn)
	regulator := e.as(auth.RoleRegulator, "cnil")
	found, err := audit.SearchEvents(regulator, &vigiev1.SearchEventsRequest{PatientIns: e2ePatient, Kind: vigiev1.EventKind_EVENT_KIND_ACCESS})
	if err != nil {
		t.Fatalf("SearchEvents: %v", err)
	}
	if len(found.Events) != 2 {
		t.Fatalf("SearchEvents found %d accesses, want 2", len(found.Events))
	}
	for _, ev := range found.Events {
		var salt [verify.SaltSize]byte
		copy(salt[:], ev.Salt)
		c, _ := event.ParseHash(ev.Commitment)
		if _, err := verify.VerifyEvent(ev.Body, salt, c); err != nil {
			t.Errorf("searched event %d: %v", ev.LeafIndex, err)
		}
	}
	// An auditor reads the log, not the bodies.
	if _, err := audit.SearchEvents(e.as(auth.RoleAuditor, "asso-patients"), &vigiev1.SearchEventsRequest{PatientIns: e2ePatient}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("SearchEvents as an auditor = %v, want PermissionDenied", err)
	}

	// The patient sees their own listing (two calls, two reads) and the
	// regulator's read.
	evs = e.listAndVerify(patient, 100)
	want := "access,consent_change,access,ledger_read,ledger_read,ledger_read"
	if got := strings.Join(kinds(evs), ","); got != want {
		t.Fatalf("history = %s, want %s", got, want)
	}
	var readers []string
	for _, ev := range evs[3:] {
		var read struct {
			Format, Reader, Method string
			Events                 int
		}
		if err := json.Unmarshal(ev.body.Payload, &read); err != nil {
			t.Fatal(err)
		}
		if read.Format != "vigie.ledger-read.v2" {
			t.Errorf("read record format %q", read.Format)
		}
		readers = append(readers, fmt.Sprintf("%s %s %d", read.Reader, read.Method, read.Events))
	}
	if got, want := strings.Join(readers, "; "), "patient ListAccesses 2; patient ListAccesses 1; regulator:cnil SearchEvents 2"; got != want {
		t.Errorf("reads = %s, want %s", got, want)
	}

	// The log: the checkpoint grows consistently.
	e.waitCheckpoint(4)
	logs := vigiev1.NewLogServiceClient(e.conn)
	body, err := logs.GetCheckpoint(context.Background(), &vigiev1.GetCheckpointRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := verify.OpenCheckpoint(body.Data, e.cpKey)
	if err != nil {
		t.Fatalf("GET /checkpoint: %v", err)
	}
	if cp.Size > 2 {
		proof, err := logs.GetConsistencyProof(context.Background(), &vigiev1.GetConsistencyProofRequest{First: 2, Second: cp.Size})
		if err != nil {
			t.Fatal(err)
		}
		leaves, err := logs.GetLeaves(context.Background(), &vigiev1.GetLeavesRequest{Start: 0, End: 2})
		if err != nil || len(leaves.LeafValues) != 2 {
			t.Fatalf("GetLeaves = %v, %v", leaves, err)
		}
		// The tree of the first two leaves, rebuilt from them, is
		// consistent with the latest checkpoint.
		var hashes []event.Hash
		for _, v := range leaves.LeafValues {
			c, err := verify.ParseLeafValue(v)
			if err != nil {
				t.Fatal(err)
			}
			hashes = append(hashes, verify.MerkleLeafHash(c))
		}
		var rb verify.RootBuilder
		for _, h := range hashes {
			rb.Append(h)
		}
		old := verify.Checkpoint{Origin: cp.Origin, Size: 2, Hash: rb.Root()}
		if err := verify.VerifyConsistency(old, cp, proof.Hashes); err != nil {
			t.Errorf("consistency 2→%d: %v", cp.Size, err)
		}
	}
	// The history of checkpoints, over HTTP: each signed, each consistent
	// with the one before by the proof that comes with it, up to the
	// latest.
	code, b := e.http().do("GET", "/v1/log/checkpoints?max_count=5", "", "")
	var history struct {
		Checkpoints []struct {
			Note             []byte    `json:"note"`
			Size             uint64    `json:"size,string"`
			SignedAt         time.Time `json:"signed_at"`
			ConsistencyProof [][]byte  `json:"consistency_proof"`
		} `json:"checkpoints"`
	}
	if err := json.Unmarshal(b, &history); code != 200 || err != nil || len(history.Checkpoints) == 0 || len(history.Checkpoints) > 5 {
		t.Fatalf("GET /v1/log/checkpoints = %d %s (%v); latest %d", code, b, err, cp.Size)
	}
	var prev verify.Checkpoint
	for i, h := range history.Checkpoints {
		c, err := verify.OpenCheckpoint(h.Note, e.cpKey)
		if err != nil || c.Size != h.Size || h.SignedAt.IsZero() {
			t.Fatalf("checkpoint %d of the history: size %d, signed at %v: %v", i, h.Size, h.SignedAt, err)
		}
		if i > 0 {
			if err := verify.VerifyConsistency(prev, c, h.ConsistencyProof); err != nil {
				t.Errorf("history %d→%d: %v", prev.Size, c.Size, err)
			}
		}
		prev = c
	}
	if prev.Size < cp.Size {
		t.Errorf("the history ends at %d, before the checkpoint of size %d", prev.Size, cp.Size)
	}

	if code := e.proc.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit code %d after SIGTERM\n%s", code, e.proc.stderr)
	}
	if strings.Contains(e.proc.stderr.String(), e2ePatient) {
		t.Errorf("the server's log holds the patient's INS:\n%s", e.proc.stderr)
	}
}

// TestBreakGlassReviewAndErasure: an emergency access, found by the
// hospital's DPO (who sees only their organisation's events) and reviewed
// as justified, the review recorded in the patient's chain; a DPO of
// another organisation may neither see nor review it. Then the patient
// closes their account: their history becomes placeholders, still proved,
// and the erasure is itself in the chain.
func TestBreakGlassReviewAndErasure(t *testing.T) {
	e := startE2E(t)
	access := vigiev1.NewAccessServiceClient(e.conn)
	audit := vigiev1.NewAuditServiceClient(e.conn)
	service := e.as(auth.RoleService, "hospital-his", e2eHospital)

	req := checkRequest("er-1")
	req.PurposeOfUse = vigiev1.PurposeOfUse_PURPOSE_OF_USE_BTG
	req.BreakGlassJustification = "unconscious patient, emergency room"
	bg, err := access.Check(service, req)
	if err != nil || bg.Decision != vigiev1.Decision_DECISION_ALLOW {
		t.Fatalf("break-glass Check = %+v, %v", bg, err)
	}

	dpo := e.as(auth.RoleDPO, "dpo-a", e2eHospital)
	found, err := audit.SearchEvents(dpo, &vigiev1.SearchEventsRequest{Organization: e2eHospital, BreakGlassOnly: true})
	if err != nil || len(found.Events) != 1 || found.Events[0].Commitment != bg.Event.Commitment {
		t.Fatalf("the DPO's break-glass search = %v, %v; want the one access", found, err)
	}
	other := e.as(auth.RoleDPO, "dpo-b", "130000011")
	if found, err := audit.SearchEvents(other, &vigiev1.SearchEventsRequest{Organization: "130000011", BreakGlassOnly: true}); err != nil || len(found.Events) != 0 {
		t.Errorf("another organisation's DPO found %v, %v; want nothing", found, err)
	}
	if _, err := audit.SearchEvents(other, &vigiev1.SearchEventsRequest{Organization: e2eHospital}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a DPO searching another organisation = %v, want PermissionDenied", err)
	}
	review := &vigiev1.ReviewBreakGlassRequest{RequestId: "rv-1", EventCommitment: bg.Event.Commitment, Verdict: vigiev1.BreakGlassVerdict_BREAK_GLASS_VERDICT_JUSTIFIED, Comment: "checked with the ER"}
	// Another organisation's DPO learns nothing of the event: the answer
	// is the one for a commitment that names no event.
	_, errOther := audit.ReviewBreakGlass(other, review)
	unknown := &vigiev1.ReviewBreakGlassRequest{RequestId: "rv-0", EventCommitment: strings.Repeat("ab", 32), Verdict: vigiev1.BreakGlassVerdict_BREAK_GLASS_VERDICT_JUSTIFIED}
	_, errUnknown := audit.ReviewBreakGlass(other, unknown)
	if status.Code(errOther) != codes.NotFound || status.Convert(errOther).Message() != status.Convert(errUnknown).Message() {
		t.Errorf("review by another organisation's DPO = %v, want what an unknown event gets (%v)", errOther, errUnknown)
	}
	rv, err := audit.ReviewBreakGlass(dpo, review)
	if err != nil {
		t.Fatalf("ReviewBreakGlass: %v", err)
	}
	again, err := audit.ReviewBreakGlass(dpo, review)
	if err != nil || again.Event.LeafIndex != rv.Event.LeafIndex {
		t.Errorf("the same review again = %v, %v; want the first event", again, err)
	}
	// The same request_id for another verdict: not a retry, refused.
	changed := proto.Clone(review).(*vigiev1.ReviewBreakGlassRequest)
	changed.Verdict = vigiev1.BreakGlassVerdict_BREAK_GLASS_VERDICT_UNJUSTIFIED
	if _, err := audit.ReviewBreakGlass(dpo, changed); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "request_id") {
		t.Errorf("another review under a used request_id = %v, want InvalidArgument naming request_id", err)
	}
	notBG := checkRequest("er-2")
	plain, err := access.Check(service, notBG)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.ReviewBreakGlass(dpo, &vigiev1.ReviewBreakGlassRequest{RequestId: "rv-2", EventCommitment: plain.Event.Commitment, Verdict: vigiev1.BreakGlassVerdict_BREAK_GLASS_VERDICT_UNJUSTIFIED}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("review of an ordinary access = %v, want InvalidArgument", err)
	}

	patient := e.as(auth.RolePatient, e2ePatient)
	evs := e.listAndVerify(patient, 100)
	if got := strings.Join(kinds(evs), ","); got != "access,ledger_read,break_glass_review,access" {
		t.Fatalf("history = %s", got)
	}

	// The patient closes their account (erasure delay 0: at once).
	consents := vigiev1.NewConsentServiceClient(e.conn)
	if _, err := consents.RequestErasure(patient, &vigiev1.RequestErasureRequest{Confirm: true}); err != nil {
		t.Fatalf("RequestErasure: %v", err)
	}
	e.waitCheckpoint(rv.Event.LeafIndex + 4)
	evs = e.listAndVerify(patient, 100)
	got := strings.Join(kinds(evs), ",")
	if !strings.HasPrefix(got, "erased,erased,erased,erased,erased,erased,erasure") {
		t.Fatalf("history after erasure = %s; want the listing's events erased, then the erasure", got)
	}
	if found, err := audit.SearchEvents(e.as(auth.RoleRegulator, "cnil"), &vigiev1.SearchEventsRequest{PatientIns: e2ePatient, Kind: vigiev1.EventKind_EVENT_KIND_ACCESS}); err != nil || len(found.Events) != 0 {
		t.Errorf("a search for the erased patient's accesses = %v, %v; want nothing", found, err)
	}
	// Retries of requests recorded before the erasure: known, refused,
	// never decided or recorded again.
	if _, err := access.Check(service, req); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "erased") {
		t.Errorf("retry of a Check after the erasure = %v, want FailedPrecondition (erased)", err)
	}
	// (A review's retry finds the reviewed access erased first.)
	if _, err := audit.ReviewBreakGlass(dpo, review); status.Code(err) != codes.NotFound {
		t.Errorf("retry of a review after the erasure = %v, want NotFound", err)
	}
	if after := e.listAndVerify(patient, 100); len(after) != len(evs)+1 || kinds(after)[len(after)-1] != "ledger_read" {
		t.Errorf("history after the retries = %s; want only the previous listing's read added", strings.Join(kinds(after), ","))
	}
	if strings.Contains(e.proc.stderr.String(), "unconscious") || strings.Contains(e.proc.stderr.String(), "checked with the ER") {
		t.Errorf("the server's log holds a justification or a review's comment:\n%s", e.proc.stderr)
	}
}

// waitCheckpoint waits for a signed checkpoint of at least size leaves.
func (e *e2e) waitCheckpoint(size uint64) {
	e.t.Helper()
	logs := vigiev1.NewLogServiceClient(e.conn)
	deadline := time.Now().Add(time.Minute)
	for {
		body, err := logs.GetCheckpoint(context.Background(), &vigiev1.GetCheckpointRequest{})
		if err == nil {
			cp, err := verify.OpenCheckpoint(body.Data, e.cpKey)
			if err != nil {
				e.t.Fatal(err)
			}
			if cp.Size >= size {
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no checkpoint of %d leaves within a minute", size)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMisuseAlerts: the dashboard's alerts, computed by the server with
// the rules of `vigie audit`, within each reader's scope: an unreviewed
// emergency access shows for the regulator and the hospital's DPO, not
// for another organisation's DPO nor for a patient; once reviewed, it
// does not show any more.
func TestMisuseAlerts(t *testing.T) {
	e := startE2E(t, "--alerts-cache", "0")
	c := e.http()
	req := checkRequest("al-1")
	req.PurposeOfUse = vigiev1.PurposeOfUse_PURPOSE_OF_USE_BTG
	req.BreakGlassJustification = "cardiac arrest"
	bg, err := vigiev1.NewAccessServiceClient(e.conn).Check(e.as(auth.RoleService, "hospital-his", e2eHospital), req)
	if err != nil || bg.Decision != vigiev1.Decision_DECISION_ALLOW {
		t.Fatalf("Check = %v, %v", bg, err)
	}
	alerts := func(token string) (int, []string) {
		code, b := c.do("GET", "/v1/audit/alerts", token, "")
		var resp struct {
			Alerts []struct {
				Kind     string    `json:"kind"`
				Count    int       `json:"count"`
				Patients int       `json:"patients"`
				From     time.Time `json:"start_time"`
				Events   []struct {
					Commitment string `json:"commitment"`
				} `json:"events"`
			} `json:"alerts"`
		}
		if code == 200 {
			if err := json.Unmarshal(b, &resp); err != nil {
				t.Fatalf("alerts: %s: %v", b, err)
			}
		}
		var got []string
		for _, a := range resp.Alerts {
			// The figures the dashboard builds its sentences from.
			if a.Count != len(a.Events) || a.Patients < 1 || a.From.IsZero() {
				t.Errorf("alert %s: count %d, patients %d, from %v; want the count of its %d events, patients, a time", a.Kind, a.Count, a.Patients, a.From, len(a.Events))
			}
			for _, ev := range a.Events {
				got = append(got, a.Kind+" "+ev.Commitment)
			}
		}
		if strings.Contains(string(b), e2ePatient) {
			t.Errorf("the alerts hold the INS: %s", b)
		}
		return code, got
	}
	want := "break-glass-unreviewed " + bg.Event.Commitment
	if code, got := alerts(e.token(auth.RoleRegulator, "cnil")); code != 200 || !slices.Contains(got, want) {
		t.Errorf("the regulator's alerts = %d %v, want %s", code, got, want)
	}
	if code, got := alerts(e.token(auth.RoleDPO, "dpo-a", e2eHospital)); code != 200 || !slices.Contains(got, want) {
		t.Errorf("the hospital DPO's alerts = %d %v, want %s", code, got, want)
	}
	if code, got := alerts(e.token(auth.RoleDPO, "dpo-b", "130000011")); code != 200 || len(got) != 0 {
		t.Errorf("another organisation's DPO's alerts = %d %v, want none", code, got)
	}
	if code, _ := alerts(e.token(auth.RolePatient, e2ePatient)); code != 403 {
		t.Errorf("a patient's alerts = %d, want 403", code)
	}
	// Each answer naming the patient's event was recorded in their chain:
	// the regulator's and the hospital DPO's (two scopes), not the other
	// DPO's.
	if got, want := strings.Join(alertReads(e), "; "), "regulator:cnil 1; dpo:dpo-a 1"; got != want {
		t.Errorf("the patient's chain records alert reads %q, want %q", got, want)
	}
	if _, err := vigiev1.NewAuditServiceClient(e.conn).ReviewBreakGlass(e.as(auth.RoleDPO, "dpo-a", e2eHospital), &vigiev1.ReviewBreakGlassRequest{
		RequestId: "al-rv", EventCommitment: bg.Event.Commitment, Verdict: vigiev1.BreakGlassVerdict_BREAK_GLASS_VERDICT_JUSTIFIED,
	}); err != nil {
		t.Fatal(err)
	}
	if code, got := alerts(e.token(auth.RoleRegulator, "cnil")); code != 200 || slices.Contains(got, want) {
		t.Errorf("after the review, the regulator's alerts = %d %v, want no %s", code, got, want)
	}
}

// TestMisuseAlertsRecordedOncePerPeriod: the alerts of a scope, shown
// again within the cache period, to the same reader or another, record
// nothing more: their read is recorded with their computation.
func TestMisuseAlertsRecordedOncePerPeriod(t *testing.T) {
	e := startE2E(t, "--alerts-cache", "10m")
	req := checkRequest("once-1")
	req.PurposeOfUse = vigiev1.PurposeOfUse_PURPOSE_OF_USE_BTG
	req.BreakGlassJustification = "cardiac arrest"
	if _, err := vigiev1.NewAccessServiceClient(e.conn).Check(e.as(auth.RoleService, "hospital-his", e2eHospital), req); err != nil {
		t.Fatal(err)
	}
	c := e.http()
	for _, token := range []string{e.token(auth.RoleRegulator, "cnil"), e.token(auth.RoleRegulator, "cnil"), e.token(auth.RoleRegulator, "cnil-2")} {
		if code, b := c.do("GET", "/v1/audit/alerts", token, ""); code != 200 || !strings.Contains(string(b), "break-glass-unreviewed") {
			t.Fatalf("alerts = %d %s", code, b)
		}
	}
	if got, want := strings.Join(alertReads(e), "; "), "regulator:cnil 1"; got != want {
		t.Errorf("alert reads recorded: %q, want %q", got, want)
	}
}
