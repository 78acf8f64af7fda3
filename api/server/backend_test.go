package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/consentsql"
	"github.com/vigie-sante/vigie/consent/directory"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/nationalrules"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
)

// live is a Server with the real handlers on a real Backend (ledger and
// consent on SQLite in a temporary directory), over bufconn. Its ledger
// store has a fault hook.
type live struct {
	t      *testing.T
	env    *ledgertest.Env
	store  *faultyStore
	issuer *auth.Issuer
	conn   *grpc.ClientConn
}

// faultyStore fails every write with err while it is set, before the
// write reaches the database (failed, not persisted), as a full disk does.
type faultyStore struct {
	ledger.Store
	mu  sync.Mutex
	err error
}

func (f *faultyStore) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *faultyStore) ReadWrite(ctx context.Context, fn func(context.Context, ledger.StoreTx) error) error {
	f.mu.Lock()
	err := f.err
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.Store.ReadWrite(ctx, fn)
}

// liveOptions change a live server.
type liveOptions struct {
	// Rules are the national rules (default: the illustrative ones).
	Rules *consent.Rules
	// Alerts configures ListAlerts (default: none).
	Alerts *AlertsConfig
	// Now is the backend's clock (default: time.Now).
	Now func() time.Time
}

func newLive(t *testing.T, opts liveOptions) *live {
	t.Helper()
	l := &live{t: t, store: &faultyStore{}, issuer: newTestIssuer(t)}
	l.env = ledgertest.New(t, ledgertest.Options{
		Migrations: slices.Concat(consentsql.Migrations, directory.Migrations),
		EraseAlso:  consentsql.EraseRows,
		WrapStore:  func(s ledger.Store) ledger.Store { l.store.Store = s; return l.store },
	})
	if opts.Rules == nil {
		opts.Rules = nationalrules.Illustrative()
	}
	consents := consentsql.New(l.env.DB, l.env.Ledger)
	svc, err := consent.NewService(context.Background(), consent.Config{
		Store: consents, Recorder: consents, Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}), Rules: opts.Rules,
	})
	if err != nil {
		t.Fatal(err)
	}
	pages, err := NewPageTokens(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	b := &Backend{Consent: svc, Consents: consents, Reviews: consents, Ledger: l.env.Ledger, Pages: pages,
		Directory: directory.New(l.env.DB), Alerts: opts.Alerts, Now: opts.Now, Logger: slog.New(slog.DiscardHandler)}
	unlimited := map[auth.Role]Limit{}
	for _, r := range append(auth.Roles, "") {
		unlimited[r] = Unlimited
	}
	srv, err := New(Config{
		Authenticator: newTestAuthenticator(t, l.issuer),
		Logger:        slog.New(slog.DiscardHandler),
		Registerer:    prometheus.NewRegistry(),
		RateLimits:    unlimited,
	}, b.Services())
	if err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(1 << 20)
	go srv.Serve(lis)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
	})
	l.conn, err = grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.conn.Close() })
	return l
}

// as returns a context whose calls carry a token for role and subject,
// bound to orgs.
func (l *live) as(role auth.Role, subject string, orgs ...string) context.Context {
	l.t.Helper()
	tok, err := l.issuer.Mint(auth.TokenRequest{Role: role, Subject: subject, Organizations: orgs})
	if err != nil {
		l.t.Fatal(err)
	}
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

// TestUpdateConsentStorageFailure: a database that cannot write makes
// UpdateConsent UNAVAILABLE (retry), as every other recording call, never
// INTERNAL; a stale expected version stays ABORTED.
func TestUpdateConsentStorageFailure(t *testing.T) {
	l := newLive(t, liveOptions{})
	c := vigiev1.NewConsentServiceClient(l.conn)
	ctx := l.as(auth.RolePatient, testINS)
	block := []*vigiev1.Directive{{Id: "d1", Kind: &vigiev1.Directive_BlockProfessional{BlockProfessional: &vigiev1.BlockProfessional{Rpps: "10002727377"}}}}

	l.store.fail(errors.New("database or disk is full (13)"))
	_, err := c.UpdateConsent(ctx, &vigiev1.UpdateConsentRequest{ExpectedVersion: 0, Directives: block})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("UpdateConsent with the disk full = %v, want Unavailable", err)
	}
	l.store.fail(nil)
	// Nothing was stored: the retry gets version 1.
	resp, err := c.UpdateConsent(ctx, &vigiev1.UpdateConsentRequest{ExpectedVersion: 0, Directives: block})
	if err != nil || resp.Version != 1 {
		t.Fatalf("UpdateConsent retried = %v, %v; want version 1", resp, err)
	}
	_, err = c.UpdateConsent(ctx, &vigiev1.UpdateConsentRequest{ExpectedVersion: 0, Directives: block})
	if status.Code(err) != codes.Aborted {
		t.Errorf("UpdateConsent(stale version) = %v, want Aborted", err)
	}
}

// TestConsistencyFromEmptyTree: the proof from the empty tree to any
// signed size is empty (RFC 9162 section 2.1.4: every tree extends the
// empty one), which witnesses ask for; the other bounds still hold.
func TestConsistencyFromEmptyTree(t *testing.T) {
	l := newLive(t, liveOptions{})
	ctx := context.Background()
	log := vigiev1.NewLogServiceClient(l.conn)
	c := vigiev1.NewConsentServiceClient(l.conn)
	for v := range int64(3) {
		if _, err := c.UpdateConsent(l.as(auth.RolePatient, testINS), &vigiev1.UpdateConsentRequest{ExpectedVersion: v}); err != nil {
			t.Fatal(err)
		}
	}
	size := waitCheckpoint(t, l, 3)
	for _, second := range []uint64{0, 1, size} {
		p, err := log.GetConsistencyProof(ctx, &vigiev1.GetConsistencyProofRequest{First: 0, Second: second})
		if err != nil || p.First != 0 || p.Second != second || len(p.Hashes) != 0 {
			t.Errorf("GetConsistencyProof(0, %d) = %v, %v; want an empty proof", second, p, err)
		}
	}
	for _, tc := range []struct {
		name          string
		first, second uint64
		field         string
	}{
		{"second below first", 2, 1, "second"},
		{"second beyond the log", 0, size + 1, "second"},
	} {
		_, err := log.GetConsistencyProof(ctx, &vigiev1.GetConsistencyProofRequest{First: tc.first, Second: tc.second})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.field) {
			t.Errorf("%s: GetConsistencyProof(%d, %d) = %v, want INVALID_ARGUMENT naming %s", tc.name, tc.first, tc.second, err, tc.field)
		}
	}
}

// waitCheckpoint waits for a signed checkpoint of at least size leaves and
// returns its size.
func waitCheckpoint(t *testing.T, l *live, size uint64) uint64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, got, err := l.env.Ledger.LatestCheckpoint(context.Background())
		if err == nil && got >= size {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of size %d after 30s (last: %d, %v)", size, got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReviewRule: the first review of a break-glass access decides; a
// regulator may overrule a DPO, never the reverse; no reviewer of equal
// standing reviews again; a retry gets its first answer. Every review
// that counted is an event, and the final verdict is the regulator's.
func TestReviewRule(t *testing.T) {
	l := newLive(t, liveOptions{})
	access := vigiev1.NewAccessServiceClient(l.conn)
	audit := vigiev1.NewAuditServiceClient(l.conn)
	resp, err := access.Check(l.as(auth.RoleService, "his", ourOrg), checkRequest())
	if err != nil || resp.Decision != vigiev1.Decision_DECISION_ALLOW {
		t.Fatalf("break-glass Check = %v, %v; want ALLOW", resp, err)
	}
	c := resp.Event.Commitment
	dpoA, dpoB := l.as(auth.RoleDPO, "dpo-a", ourOrg), l.as(auth.RoleDPO, "dpo-b", ourOrg)
	cnil, cnil2 := l.as(auth.RoleRegulator, "cnil"), l.as(auth.RoleRegulator, "cnil-2")
	const (
		justified   = vigiev1.BreakGlassVerdict_BREAK_GLASS_VERDICT_JUSTIFIED
		unjustified = vigiev1.BreakGlassVerdict_BREAK_GLASS_VERDICT_UNJUSTIFIED
	)
	var first *vigiev1.RecordedEvent
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		id      string
		verdict vigiev1.BreakGlassVerdict
		want    codes.Code
	}{
		{"the first review, by a DPO", dpoA, "rv-1", justified, codes.OK},
		{"the same DPO again", dpoA, "rv-2", unjustified, codes.FailedPrecondition},
		{"another DPO of the organisation", dpoB, "rv-3", unjustified, codes.FailedPrecondition},
		{"the DPO's retry", dpoA, "rv-1", justified, codes.OK},
		{"a regulator overrules the DPO", cnil, "rv-4", unjustified, codes.OK},
		{"the DPO after the regulator", dpoA, "rv-5", justified, codes.FailedPrecondition},
		{"another regulator", cnil2, "rv-6", justified, codes.FailedPrecondition},
		{"the same regulator again", cnil, "rv-7", justified, codes.FailedPrecondition},
	} {
		r, err := audit.ReviewBreakGlass(tc.ctx, &vigiev1.ReviewBreakGlassRequest{RequestId: tc.id, EventCommitment: c, Verdict: tc.verdict})
		if status.Code(err) != tc.want {
			t.Errorf("%s: ReviewBreakGlass = %v, want %v", tc.name, err, tc.want)
			continue
		}
		switch {
		case err == nil && tc.id == "rv-1" && first == nil:
			first = r.Event
		case err == nil && tc.id == "rv-1" && r.Event.LeafIndex != first.LeafIndex:
			t.Errorf("%s: event %d, want the first one, %d", tc.name, r.Event.LeafIndex, first.LeafIndex)
		}
	}

	// The ledger holds both reviews that counted, in the patient's chain;
	// the final verdict is the regulator's.
	var reviews []consent.ReviewRecord
	rows, err := l.env.Ledger.Search(context.Background(), ledger.SearchFilter{Kind: event.KindBreakGlassReview}, -1, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		_, body, err := l.env.Ledger.OpenEvent(context.Background(), row)
		if err != nil {
			t.Fatal(err)
		}
		b, err := event.Parse(body)
		if err != nil {
			t.Fatal(err)
		}
		r, err := consent.ParseReviewRecord(b.Payload)
		if err != nil {
			t.Fatal(err)
		}
		reviews = append(reviews, r)
	}
	if len(reviews) != 2 || reviews[0].Reviewer != "dpo:dpo-a" || reviews[1].Reviewer != "regulator:cnil" {
		t.Fatalf("recorded reviews = %+v, want the DPO's then the regulator's", reviews)
	}
	// Each names the organisation its reviewer acted for (issue 19): the
	// DPO's, none for the regulator.
	if reviews[0].Organization != ourOrg || reviews[1].Organization != "" {
		t.Errorf("reviewers' organisations %q, %q; want %q, none", reviews[0].Organization, reviews[1].Organization, ourOrg)
	}
	if final, ok := consent.FinalReview(reviews); !ok || final.Reviewer != "regulator:cnil" || final.Verdict != consent.VerdictUnjustified {
		t.Errorf("FinalReview = %+v, %v; want the regulator's unjustified", final, ok)
	}
}
