package enrolment_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent/enrolment"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
)

var ctx = context.Background()

const (
	fc    = "https://fc.example"
	subA  = "b6048e95bb134ec5b1d1e1fa69f287172e91722b9354d637a1bcf2ebb0fd2ef5v1"
	subB  = "0d8e3b4a6c1f2e5d7a9b8c0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5"
	insOf = "1 84 12 76 451 089 46"
)

var patient, other = mustINS(insOf), mustINS("2 79 03 51 215 189 89")

func mustINS(s string) ident.INS {
	ins, err := ident.NormalizeINS(s)
	if err != nil {
		panic(err)
	}
	return ins
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

func open(t *testing.T, backend string) (*enrolment.Store, *ledgertest.Env, *clock) {
	t.Helper()
	opts := ledgertest.Options{Migrations: enrolment.Migrations, EraseAlso: enrolment.EraseRows}
	if backend == "PostgreSQL" {
		opts.PostgreSQL = ledgertest.Postgres(t)
	}
	env := ledgertest.New(t, opts)
	c := &clock{t: time.Now()}
	return enrolment.New(env.DB, env.Ledger, c.now), env, c
}

func issue(t *testing.T, env *ledgertest.Env, c *clock, p ident.INS, ttl time.Duration) string {
	t.Helper()
	code, err := enrolment.Issue(ctx, env.DB, p, enrolment.IssueOptions{TTL: ttl, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	if len(code.Text) != 19 || strings.Count(code.Text, "-") != 3 {
		t.Fatalf("code %q: want XXXX-XXXX-XXXX-XXXX", code.Text)
	}
	return code.Text
}

func TestEnrolment(t *testing.T) {
	for _, backend := range []string{"SQLite", "PostgreSQL"} {
		t.Run(backend, func(t *testing.T) {
			s, env, c := open(t, backend)
			if _, err := s.Patient(ctx, fc, subA); !errors.Is(err, enrolment.ErrNotEnrolled) {
				t.Fatalf("Patient before enrolment: %v, want ErrNotEnrolled", err)
			}
			code := issue(t, env, c, patient, time.Hour)
			// Typed by a person: lower case, spaces for dashes, O for 0.
			typed := strings.ReplaceAll(strings.ToLower(code), "-", " ")
			typed = strings.ReplaceAll(typed, "0", "o")
			rec, err := s.Redeem(ctx, typed, fc, subA)
			if err != nil {
				t.Fatalf("Redeem: %v", err)
			}
			got, err := s.Patient(ctx, fc, subA)
			if err != nil || got != patient {
				t.Fatalf("Patient after enrolment: %v, want the patient", err)
			}
			if _, err := s.Patient(ctx, "https://other.example", subA); !errors.Is(err, enrolment.ErrNotEnrolled) {
				t.Errorf("Patient at another issuer: %v, want ErrNotEnrolled", err)
			}
			// The event: kind enrolment in the patient's chain, with the
			// keyed hash of the sub, never the sub.
			b, err := event.Parse(rec.Body)
			if err != nil {
				t.Fatal(err)
			}
			if b.Kind != event.KindEnrolment || b.Patient != env.Ledger.Pseudonym(patient) {
				t.Errorf("event kind %s, patient %s: want enrolment in the patient's chain", b.Kind, b.Patient)
			}
			if bytes.Contains(rec.Body, []byte(subA)) || bytes.Contains(rec.Body, []byte(patient.Canonical())) {
				t.Errorf("the event holds the sub or the INS: %s", rec.Body)
			}
			r, err := enrolment.ParseRecord(b.Payload)
			if err != nil || r.Action != enrolment.ActionLink || r.Issuer != fc || r.Subject != env.Ledger.SubjectHash(fc, subA) {
				t.Errorf("ParseRecord = %+v, %v", r, err)
			}

			// Refusals, each with its error, changing nothing.
			expired := issue(t, env, c, other, time.Minute)
			second := issue(t, env, c, other, time.Hour)
			again := issue(t, env, c, patient, time.Hour)
			c.add(2 * time.Minute)
			for _, tc := range []struct {
				name, code, sub string
				want            error
			}{
				{"code used", code, subB, enrolment.ErrCodeUsed},
				{"code expired", expired, subB, enrolment.ErrCodeExpired},
				{"code unknown", "ABCD-EFGH-JKMN-PQRS", subB, enrolment.ErrCodeUnknown},
				{"not a code", "hello", subB, enrolment.ErrCodeUnknown},
				{"sign-in enrolled already", second, subA, enrolment.ErrAlreadyEnrolled},
				{"patient enrolled at this issuer already", again, subB, enrolment.ErrPatientEnrolled},
			} {
				_, err := s.Redeem(ctx, tc.code, fc, tc.sub)
				if !errors.Is(err, tc.want) {
					t.Errorf("%s: Redeem = %v, want %v", tc.name, err, tc.want)
				}
				if err != nil && (strings.Contains(err.Error(), tc.sub) || strings.Contains(err.Error(), strings.ReplaceAll(tc.code, "-", ""))) {
					t.Errorf("%s: the error quotes the sub or the code: %v", tc.name, err)
				}
			}
			// A refusal does not use the code: it still enrols another
			// sign-in.
			if _, err := s.Redeem(ctx, second, fc, subB); err != nil {
				t.Fatalf("Redeem of a code refused before: %v", err)
			}
			if got, err := s.Patient(ctx, fc, subB); err != nil || got != other {
				t.Fatalf("Patient(subB) = %v, want the other patient", err)
			}

			// Revoke: the link goes, recorded; the sign-in is refused.
			if _, err := s.Revoke(ctx, patient, "https://other.example", "operator"); !errors.Is(err, enrolment.ErrNotEnrolled) {
				t.Errorf("Revoke at an issuer without link: %v, want ErrNotEnrolled", err)
			}
			n, err := s.Revoke(ctx, patient, "", "operator")
			if err != nil || n != 1 {
				t.Fatalf("Revoke = %d, %v; want 1", n, err)
			}
			if _, err := s.Patient(ctx, fc, subA); !errors.Is(err, enrolment.ErrNotEnrolled) {
				t.Errorf("Patient after revocation: %v, want ErrNotEnrolled", err)
			}
			p := env.Ledger.Pseudonym(patient)
			rows, err := env.Ledger.Search(ctx, ledger.SearchFilter{Pseudonym: &p, Kind: event.KindEnrolment}, -1, 10)
			if err != nil {
				t.Fatal(err)
			}
			var actions []string
			for _, row := range rows {
				_, body, err := env.Ledger.OpenEvent(ctx, row)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := event.Parse(body)
				r, err := enrolment.ParseRecord(b.Payload)
				if err != nil {
					t.Fatal(err)
				}
				actions = append(actions, r.Action+" by "+b.Service)
			}
			if want := "link by vigie-enrolment,unlink by operator"; strings.Join(actions, ",") != want {
				t.Errorf("the patient's enrolment events: %v, want %s", actions, want)
			}
			// After the revocation, the patient enrols again.
			if _, err := s.Redeem(ctx, again, fc, subA); err != nil {
				t.Errorf("Redeem after revocation: %v", err)
			}

			// An erasure takes the link with the patient's data.
			if _, err := env.Ledger.Erase(ctx, other); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Patient(ctx, fc, subB); !errors.Is(err, enrolment.ErrNotEnrolled) {
				t.Errorf("Patient after erasure: %v, want ErrNotEnrolled", err)
			}
		})
	}
}

func TestConcurrentRedeem(t *testing.T) {
	s, env, c := open(t, "SQLite")
	code := issue(t, env, c, patient, time.Hour)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = s.Redeem(ctx, code, fc, subA+string(rune('a'+i)))
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, enrolment.ErrCodeUsed):
			t.Errorf("Redeem: %v, want nil or ErrCodeUsed", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d redemptions of one code succeeded, want 1", ok)
	}
}

func TestIssueRefuses(t *testing.T) {
	_, env, c := open(t, "SQLite")
	for _, tc := range []struct {
		name string
		p    ident.INS
		ttl  time.Duration
		want string
	}{
		{"no patient", ident.INS{}, time.Hour, "no patient"},
		{"ttl too long", patient, enrolment.MaxTTL + time.Hour, "ttl"},
		{"negative ttl", patient, -time.Hour, "ttl"},
	} {
		_, err := enrolment.Issue(ctx, env.DB, tc.p, enrolment.IssueOptions{TTL: tc.ttl, Now: c.now})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Issue = %v, want an error about %s", tc.name, err, tc.want)
		}
	}
}

func TestRecordFormat(t *testing.T) {
	r := enrolment.Record{Action: enrolment.ActionLink, Issuer: fc, Subject: event.Hash{1, 2, 3}}
	b, err := enrolment.FormatRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"format":"vigie.enrolment.v1","action":"link","issuer":"https://fc.example","subject":"0102030000000000000000000000000000000000000000000000000000000000"}`
	if string(b) != want {
		t.Errorf("FormatRecord = %s, want %s", b, want)
	}
	for _, bad := range []string{
		`{"format":"vigie.enrolment.v2","action":"link","issuer":"https://fc.example","subject":"0102030000000000000000000000000000000000000000000000000000000000"}`,
		`{"format":"vigie.enrolment.v1","action":"relink","issuer":"https://fc.example","subject":"0102030000000000000000000000000000000000000000000000000000000000"}`,
		`{"format":"vigie.enrolment.v1","action":"link","issuer":"https://fc.example","subject":"0102"}`,
		`{"format":"vigie.enrolment.v1","action":"link","issuer":"https://fc.example","subject":"0102030000000000000000000000000000000000000000000000000000000000","sub":"x"}`,
		`{"action":"link","format":"vigie.enrolment.v1","issuer":"https://fc.example","subject":"0102030000000000000000000000000000000000000000000000000000000000"}`,
		`{"format":"vigie.enrolment.v1","action":"link","issuer":"","subject":"0102030000000000000000000000000000000000000000000000000000000000"}`,
	} {
		if _, err := enrolment.ParseRecord([]byte(bad)); err == nil {
			t.Errorf("ParseRecord(%s) accepted", bad)
		}
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`{"format":"vigie.enrolment.v1","action":"unlink","issuer":"https://fc.example","subject":"0102030000000000000000000000000000000000000000000000000000000000"}`))
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := enrolment.ParseRecord(p)
		if err != nil {
			return
		}
		b, err := enrolment.FormatRecord(r)
		if err != nil || !bytes.Equal(b, p) {
			t.Fatalf("FormatRecord(ParseRecord(%q)) = %q, %v", p, b, err)
		}
	})
}
