package consentsql_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/consentsql"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/nationalrules"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// node is one Vigie node of a test: its ledger and consent store on the
// shared database, and its consent service.
type node struct {
	env   *ledgertest.Env
	store *consentsql.Store
	svc   *consent.Service
}

// twoNodes opens two nodes on ONE PostgreSQL database and one Trillian,
// with the same keys, as a cluster's nodes are; only the first runs the
// ledger's background work (sender, checkpointer). cfg adjusts each
// node's service config.
func twoNodes(t *testing.T, cfg func(*consent.Config, *consentsql.Store)) (a, b *node) {
	t.Helper()
	url := ledgertest.Postgres(t)
	open := func(first *node) *node {
		opts := ledgertest.Options{PostgreSQL: url, Migrations: consentsql.Migrations, EraseAlso: consentsql.EraseRows}
		if first != nil {
			opts.Share, opts.NoStart = first.env, true
		}
		env := ledgertest.New(t, opts)
		n := &node{env: env, store: consentsql.New(env.DB, env.Ledger)}
		c := consent.Config{Store: n.store, Recorder: n.store, Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}), Rules: nationalrules.Illustrative()}
		if cfg != nil {
			cfg(&c, n.store)
		}
		svc, err := consent.NewService(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(svc.Close)
		n.svc = svc
		return n
	}
	a = open(nil)
	return a, open(a)
}

// rulesV returns the illustrative rules under another version number.
func rulesV(t *testing.T, v int64) *consent.Rules {
	t.Helper()
	d := nationalrules.Illustrative().Data()
	d.Version = v
	r, err := consent.NewRules(d)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// accessRulesInLogOrder returns, in log order, the rules version of every
// rules-change event (as -version) and of every access decision.
func accessRulesInLogOrder(t *testing.T, env *ledgertest.Env) []int64 {
	t.Helper()
	var out []int64
	for after := int64(-1); ; {
		rows, err := env.Ledger.Search(ctx, ledger.SearchFilter{}, after, 500)
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range rows {
			after = int64(row.Index)
			if row.Kind != event.KindAccess && row.Kind != event.KindRulesChange {
				continue
			}
			_, body, err := env.Ledger.OpenEvent(ctx, row)
			if err != nil {
				t.Fatal(err)
			}
			b, err := event.Parse(body)
			if err != nil {
				t.Fatal(err)
			}
			if row.Kind == event.KindRulesChange {
				r, err := consent.ParseRulesChangeRecord(b.Payload)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, -r.Version)
				continue
			}
			_, d, err := consent.ParseAccessRecord(b.Payload)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, d.RulesVersion)
		}
		if len(rows) < 500 {
			return out
		}
	}
}

// checkRulesOrder fails t if an access event after a rules-change event
// in the log names an older rules version.
func checkRulesOrder(t *testing.T, versions []int64) {
	t.Helper()
	var inForce int64
	for i, v := range versions {
		switch {
		case v < 0:
			inForce = -v
		case v != inForce:
			t.Errorf("log position %d of %d: an access decided under rules version %d recorded while version %d was in force", i, len(versions), v, inForce)
		}
	}
}

// TestRulesCheckedAtRecordTime: node A publishes national rules version 2
// while node B, which has not heard of it, decides under version 1. B
// never records a decision under version 1 once version 2 committed: its
// recorder refuses it in the recording transaction, and B reads the rules
// and decides again under version 2. Then, with B deciding in a loop while
// A publishes version 3, every access event after a rules-change event in
// the log names that version.
func TestRulesCheckedAtRecordTime(t *testing.T) {
	a, b := twoNodes(t, nil)
	if d, _, err := b.svc.Check(ctx, request("b-before")); err != nil || d.RulesVersion != 1 {
		t.Fatalf("Check on b = rules version %d, %v; want 1", d.RulesVersion, err)
	}
	if err := a.svc.PublishRules(ctx, rulesV(t, 2), "admin:test"); err != nil {
		t.Fatal(err)
	}
	d, _, err := b.svc.Check(ctx, request("b-after"))
	if err != nil || d.RulesVersion != 2 {
		t.Fatalf("Check on b after a published version 2 = rules version %d, %v; want decided again under 2", d.RulesVersion, err)
	}
	if got := b.svc.Rules().Version(); got != 2 {
		t.Errorf("b decides with rules version %d, want 2", got)
	}

	// Concurrently: b's checks race a's publication of version 3.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := b.svc.Check(ctx, request(fmt.Sprintf("race-%d-%d", w, i))); err != nil {
					t.Errorf("Check on b during the publication: %v", err)
					return
				}
			}
		}()
	}
	for _, v := range []int64{3, 4, 5} {
		if err := a.svc.PublishRules(ctx, rulesV(t, v), "admin:test"); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	checkRulesOrder(t, accessRulesInLogOrder(t, a.env))
}

// waitFor waits until cond holds, at most limit, and returns how long it
// took (or fails t).
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not after %v", what, limit)
		}
		time.Sleep(200 * time.Microsecond)
	}
	return time.Since(start)
}

// blockOrNot is the consent of change i: a block, then none, in turn.
func blockOrNot(i int) []consent.Directive {
	if i%2 == 0 {
		return []consent.Directive{{ID: fmt.Sprint("b", i), Kind: consent.BlockProfessional, Professional: physician}}
	}
	return nil
}

// propagation makes n consent changes and n rules publications on a and
// measures how long each takes to reach b's service (its cache of the
// patient's consent, the rules it decides with), from the moment a's
// call returned (committed). Each change waits a random time below jitter
// first, so that changes do not follow the polls' rhythm.
func propagation(t *testing.T, a, b *node, n int, jitter, limit time.Duration) (consents, rules []time.Duration) {
	t.Helper()
	// b keeps the patient: a's first change makes b's next decision read
	// the store (ErrConsentChanged), which keeps what it read.
	rec, err := a.svc.UpdateConsent(ctx, patient, 0, blockOrNot(0), "patient")
	if err != nil {
		t.Fatal(err)
	}
	if d, _, err := b.svc.Check(ctx, request("keep")); err != nil || d.ConsentVersion != rec.Version {
		t.Fatalf("Check on b = consent version %d, %v; want %d", d.ConsentVersion, err, rec.Version)
	}
	version := rec.Version
	pause := func() {
		if jitter > 0 {
			time.Sleep(rand.N(jitter))
		}
	}
	for i := 1; i <= n; i++ {
		pause()
		rec, err := a.svc.UpdateConsent(ctx, patient, version, blockOrNot(i), "patient")
		if err != nil {
			t.Fatal(err)
		}
		version = rec.Version
		consents = append(consents, waitFor(t, limit, fmt.Sprintf("consent version %d on b", version), func() bool {
			v, ok := b.svc.CachedConsentVersion(patient)
			return ok && v == version
		}))
		rv := a.svc.Rules().Version() + 1
		pause()
		if err := a.svc.PublishRules(ctx, rulesV(t, rv), "admin:test"); err != nil {
			t.Fatal(err)
		}
		rules = append(rules, waitFor(t, limit, fmt.Sprintf("rules version %d on b", rv), func() bool {
			return b.svc.Rules().Version() == rv
		}))
	}
	// b decides with both at once, without a retry.
	d, _, err := b.svc.Check(ctx, request("after-propagation"))
	if err != nil || d.ConsentVersion != version || d.RulesVersion != a.svc.Rules().Version() {
		t.Errorf("Check on b = consent %d rules %d, %v; want %d and %d", d.ConsentVersion, d.RulesVersion, err, version, a.svc.Rules().Version())
	}
	return consents, rules
}

// quantiles returns the median and the 99th percentile of ds.
func quantiles(ds []time.Duration) (median, p99 time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)]
}

// propagationRuns is how many changes the propagation tests make:
// PROPAGATION_RUNS for a measurement (docs/operations.md), a few
// otherwise.
func propagationRuns(def int) int {
	if n, err := strconv.Atoi(os.Getenv("PROPAGATION_RUNS")); err == nil && n > 0 {
		return n
	}
	return def
}

// TestChangesReachEveryNode: consent changes and rules publications made
// on node A reach node B's service within the feed's bound, on
// PostgreSQL by LISTEN/NOTIFY and by polling alone (as on CockroachDB),
// and on SQLite by polling. It logs the propagation times' median and
// 99th percentile (docs/operations.md).
func TestChangesReachEveryNode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   consentsql.FeedOptions
		runs   int
		jitter time.Duration
	}{
		{"PostgreSQL/listen", consentsql.FeedOptions{}, 20, 0},
		{"PostgreSQL/poll", consentsql.FeedOptions{NoListen: true}, 3, time.Second},
		{"SQLite/poll", consentsql.FeedOptions{}, 3, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a, b *node
			if strings.HasPrefix(tc.name, "SQLite") {
				// One process holds a SQLite file: two services on one
				// store, one following the store's feed.
				store, env := open(t, "SQLite")
				mk := func(feed consent.ChangeFeed) *node {
					svc, err := consent.NewService(ctx, consent.Config{Store: store, Recorder: store, Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}), Rules: nationalrules.Illustrative(), Changes: feed})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(svc.Close)
					return &node{env: env, store: store, svc: svc}
				}
				a, b = mk(nil), mk(store.Changes(tc.opts))
			} else {
				a, b = twoNodes(t, func(c *consent.Config, s *consentsql.Store) { c.Changes = s.Changes(tc.opts) })
			}
			limit := time.Second + 5*time.Second // the default Poll, and slack for a loaded machine
			cs, rs := propagation(t, a, b, propagationRuns(tc.runs), tc.jitter, limit)
			cm, c99 := quantiles(cs)
			rm, r99 := quantiles(rs)
			t.Logf("%s: %d consent changes: median %v, p99 %v; %d rules publications: median %v, p99 %v", tc.name, len(cs), cm, c99, len(rs), rm, r99)
		})
	}
}

// listeners returns the backend ids of the LISTEN connections of the
// feeds on env's database.
func listeners(t *testing.T, env *ledgertest.Env) []int64 {
	t.Helper()
	var pids []int64
	if err := env.DB.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		pids = nil
		rows, err := tx.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1", sqldb.ListenerName)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var pid int64
			if err := rows.Scan(&pid); err != nil {
				return err
			}
			pids = append(pids, pid)
		}
		return rows.Err()
	}); err != nil {
		t.Fatal(err)
	}
	return pids
}

// TestChangesAfterListenerKilled: the nodes' LISTEN connections are
// killed (pg_terminate_backend); the changes A makes while nobody listens
// reach B after its feed reconnects, because a feed reads the changes
// again after every connection (and does not poll otherwise in this test:
// its Poll is an hour, its reconnection waits at least half a second).
func TestChangesAfterListenerKilled(t *testing.T) {
	opts := consentsql.FeedOptions{Poll: time.Hour, Listen: sqldb.ListenOptions{MinBackoff: time.Second, MaxBackoff: time.Second}}
	a, b := twoNodes(t, func(c *consent.Config, s *consentsql.Store) { c.Changes = s.Changes(opts) })
	waitFor(t, time.Minute, "both nodes listening", func() bool { return len(listeners(t, a.env)) == 2 })
	// Notifications work: a change reaches b without a poll.
	propagation(t, a, b, 1, 0, 30*time.Second)

	killed := listeners(t, a.env)
	if err := a.env.DB.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		for _, pid := range killed {
			var ok bool
			// The timeout makes it wait until the backend is gone.
			if err := tx.QueryRow(ctx, "SELECT pg_terminate_backend($1, 5000)", pid).Scan(&ok); err != nil || !ok {
				return fmt.Errorf("pg_terminate_backend(%d) = %v, %v", pid, ok, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cur, err := a.store.Consent(ctx, patient)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := a.svc.UpdateConsent(ctx, patient, cur.Version, blockOrNot(int(cur.Version)), "patient")
	if err != nil {
		t.Fatal(err)
	}
	rv := a.svc.Rules().Version() + 1
	if err := a.svc.PublishRules(ctx, rulesV(t, rv), "admin:test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the change made while b was not listening", func() bool {
		v, ok := b.svc.CachedConsentVersion(patient)
		return ok && v == rec.Version && b.svc.Rules().Version() == rv
	})
	t.Logf("changes made while not listening reached b %v after the kill", time.Since(start))
	// Both nodes listen again, on new connections (each after its own
	// backoff).
	var again []int64
	waitFor(t, time.Minute, "both nodes listening again", func() bool { again = listeners(t, a.env); return len(again) == 2 })
	if slices.Contains(killed, again[0]) || slices.Contains(killed, again[1]) {
		t.Errorf("listeners after the kill: %v (killed %v), want two new ones", again, killed)
	}
}
