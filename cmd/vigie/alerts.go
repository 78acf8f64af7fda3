package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/vigie-sante/vigie/api/gateway/portal"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/misuse"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
)

// ledgerAlerts is the auditor dashboard's source of misuse alerts: the
// rules of consent/misuse (those of `vigie audit`) run by the server on
// the events of the last window, within the reader's scope.
//
// The server reads the events' bodies to compute the alerts; what it
// returns names professionals and events (leaf index, commitment), never
// a patient nor a body. But an alert says something of the events it
// names (an emergency access at that time, unreviewed), so every answer
// is recorded, before it goes out, as a ledger-read event ("Alerts") in
// the chain of each patient whose events it names, as the audit search
// records its reads (once per reader while the answer is cached); opening
// an event goes through the audit search.
type ledgerAlerts struct {
	ledger *ledger.Ledger
	// rules returns the national rules a decision was made with.
	rules func(ctx context.Context, d *consent.Decision) (*consent.Rules, error)
	// window is how far back events are read; maxEvents bounds how many
	// (the most recent are kept).
	window    time.Duration
	maxEvents int
	cacheTTL  time.Duration
	config    misuse.Config
	now       func() time.Time
	// detect is misuse.Detect (a test counts its calls).
	detect func([]event.Logged, misuse.Config) (*misuse.Result, error)

	mu    sync.Mutex
	cache map[string]cachedAlerts
	// flight computes the alerts of a scope once however many readers
	// ask while they are computed: the dashboards that reload when the
	// cache expires share one computation.
	flight singleflight.Group
}

type cachedAlerts struct {
	at     time.Time
	alerts []portal.Alert
	// patients are the pseudonyms of the patients of the events named
	// by alerts, by commitment (hex).
	patients map[string]event.Hash
	// recorded are the readers whose read of these alerts is recorded:
	// the same answer again, while it is cached, records nothing more
	// (reloading the dashboard must not flood patients' chains).
	// recording makes concurrent requests of one reader record once.
	recorded  *sync.Map
	recording *singleflight.Group
}

// computeTimeout bounds a computation of alerts, which goes on when the
// reader who started it leaves: the others wait for it.
const computeTimeout = 2 * time.Minute

// shared runs f once for every concurrent caller of g with key, and
// returns its result to each, or ctx's error to a caller that leaves
// first. f runs with a context of its own (ctx's values, not its
// cancellation, bounded by computeTimeout): the first caller leaving must
// not fail the others.
func shared[T any](ctx context.Context, g *singleflight.Group, key string, f func(ctx context.Context) (T, error)) (T, error) {
	ch := g.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), computeTimeout)
		defer cancel()
		return f(fctx)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			var zero T
			return zero, r.Err
		}
		return r.Val.(T), nil
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// alertsReadMethod names the dashboard's alerts in ledger-read records.
const alertsReadMethod = "Alerts"

func newLedgerAlerts(l *ledger.Ledger, rules func(context.Context, *consent.Decision) (*consent.Rules, error), window, cacheTTL time.Duration) *ledgerAlerts {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		paris = time.UTC
	}
	return &ledgerAlerts{
		ledger: l, rules: rules, window: window, maxEvents: 200_000, cacheTTL: cacheTTL,
		config: misuse.Config{Location: paris}, now: time.Now, detect: misuse.Detect, cache: map[string]cachedAlerts{},
	}
}

// Alerts implements portal.AlertSource: computed (or cached) alerts, the
// reads recorded first.
func (a *ledgerAlerts) Alerts(ctx context.Context, scope portal.Scope) ([]portal.Alert, error) {
	key := strings.Join(slices.Sorted(slices.Values(scope.Organizations)), ",")
	c, ok := a.cached(key)
	if !ok {
		var err error
		c, err = shared(ctx, &a.flight, key, func(ctx context.Context) (cachedAlerts, error) {
			if c, ok := a.cached(key); ok { // computed by the flight just before
				return c, nil
			}
			return a.compute(ctx, scope, key)
		})
		if err != nil {
			return nil, err
		}
	}
	if _, done := c.recorded.Load(scope.Reader); !done {
		_, err := shared(ctx, c.recording, scope.Reader, func(ctx context.Context) (bool, error) {
			if _, done := c.recorded.Load(scope.Reader); done { // by the flight just before
				return true, nil
			}
			if err := a.recordReads(ctx, scope.Reader, c); err != nil {
				return false, err
			}
			c.recorded.Store(scope.Reader, true)
			return true, nil
		})
		if err != nil {
			return nil, err
		}
	}
	return c.alerts, nil
}

// cached returns the alerts of key if they are fresh.
func (a *ledgerAlerts) cached(key string) (cachedAlerts, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.cache[key]
	return c, ok && a.now().Sub(c.at) < a.cacheTTL
}

// compute computes the alerts of scope, whose cache key is key, and
// caches them.
func (a *ledgerAlerts) compute(ctx context.Context, scope portal.Scope, key string) (cachedAlerts, error) {
	now := a.now()

	orgs := scope.Organizations
	if len(orgs) == 0 {
		orgs = []string{""} // every organisation
	}
	var events []event.Logged
	for _, org := range orgs {
		got, err := a.events(ctx, org, now)
		if err != nil {
			return cachedAlerts{}, err
		}
		events = append(events, got...)
	}
	patientOf := make(map[event.Hash]event.Hash, len(events))
	for _, e := range events {
		patientOf[e.Ref.Commitment] = e.Body.Patient
	}
	cfg := a.config
	cfg.Rules = func(d *consent.Decision) (*consent.Rules, error) { return a.rules(ctx, d) }
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return cachedAlerts{}, err
	}
	cfg.Now = now
	res, err := a.detect(events, cfg)
	if err != nil {
		return cachedAlerts{}, err
	}
	c := cachedAlerts{at: now, alerts: make([]portal.Alert, 0, len(res.Alerts)), patients: map[string]event.Hash{},
		recorded: &sync.Map{}, recording: &singleflight.Group{}}
	for _, m := range res.Alerts {
		if len(scope.Organizations) > 0 && !slices.Contains(scope.Organizations, m.Organization) {
			continue
		}
		pa := portal.Alert{
			Kind: string(m.Kind), Severity: severity(m.Severity), Professional: m.Actor, Organization: m.Organization,
			Detail: m.Message, Count: m.Count, Patients: m.Patients, From: m.From, Time: m.To,
		}
		fillThreshold(&pa, m.Kind, cfg)
		for _, r := range m.Events {
			ref := portal.EventRef{LeafIndex: r.Index, Commitment: r.Commitment.String()}
			pa.Events = append(pa.Events, ref)
			if p, ok := patientOf[r.Commitment]; ok {
				c.patients[ref.Commitment] = p
			}
		}
		c.alerts = append(c.alerts, pa)
	}
	a.mu.Lock()
	a.cache[key] = c
	a.mu.Unlock()
	return c, nil
}

// recordReads records that reader was shown alerts naming these events:
// one ledger-read event per patient, with how many of their events the
// alerts name. Any failure fails the answer (fail closed).
func (a *ledgerAlerts) recordReads(ctx context.Context, reader string, c cachedAlerts) error {
	perPatient := map[event.Hash]int{}
	var order []event.Hash
	named := map[string]bool{} // an event may be named by several alerts
	for _, al := range c.alerts {
		for _, r := range al.Events {
			p, ok := c.patients[r.Commitment]
			if !ok || p == event.SystemChain || named[r.Commitment] {
				continue
			}
			named[r.Commitment] = true
			if perPatient[p] == 0 {
				order = append(order, p)
			}
			perPatient[p]++
		}
	}
	if len(order) > 0 && reader == "" {
		return fmt.Errorf("misuse alerts: no reader to record the read of %d patients' events", len(order))
	}
	// Concurrent Records share the ledger's group commits.
	sem := make(chan struct{}, 32)
	errs := make(chan error, len(order))
	for _, p := range order {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			payload, err := consent.FormatReadRecord(consent.ReadRecord{Reader: reader, Method: alertsReadMethod, Events: perPatient[p]})
			if err == nil {
				_, err = a.ledger.Record(ctx, ledger.Entry{Kind: event.KindLedgerRead, Pseudonym: p, Service: reader, Payload: payload})
			}
			errs <- err
		}()
	}
	for range order {
		if err := <-errs; err != nil {
			return fmt.Errorf("misuse alerts: record the read: %w", err)
		}
	}
	return nil
}

// events reads the access and review events of an organisation ("" for
// all) in the window, newest kept when there are too many.
func (a *ledgerAlerts) events(ctx context.Context, org string, now time.Time) ([]event.Logged, error) {
	f := ledger.SearchFilter{Organization: org, FromNanos: now.Add(-a.window).UnixNano()}
	var out []event.Logged
	after := int64(-1)
	for {
		rows, err := a.ledger.Search(ctx, f, after, 1000)
		if err != nil {
			return nil, fmt.Errorf("misuse alerts: %w", err)
		}
		for _, r := range rows {
			after = int64(r.Index)
			if r.Kind != event.KindAccess && r.Kind != event.KindBreakGlassReview {
				continue
			}
			_, body, err := a.ledger.OpenEvent(ctx, r)
			if errors.Is(err, ledger.ErrErased) {
				continue // erased meanwhile
			}
			if err != nil { // an altered event is not left out silently
				return nil, fmt.Errorf("misuse alerts: %w", err)
			}
			b, err := event.Parse(body)
			if err != nil {
				return nil, fmt.Errorf("misuse alerts: event %d: %w", r.Index, err)
			}
			if b.Kind != r.Kind || b.Patient != r.Pseudonym {
				return nil, fmt.Errorf("misuse alerts: event %d: %w: its searchable columns are not its body's", r.Index, ledger.ErrCorrupt)
			}
			out = append(out, event.Logged{Ref: event.Ref{Index: r.Index, Commitment: r.Commitment}, Body: b})
			if len(out) >= 2*a.maxEvents {
				out = slices.Delete(out, 0, len(out)-a.maxEvents) // keep memory bounded
			}
		}
		if len(rows) < 1000 {
			break
		}
	}
	if len(out) > a.maxEvents {
		out = out[len(out)-a.maxEvents:]
	}
	return out, nil
}

func severity(s misuse.Severity) portal.Severity {
	switch s {
	case misuse.High:
		return portal.SeverityCritical
	case misuse.Medium:
		return portal.SeverityWarning
	}
	return portal.SeverityInfo
}

// fillThreshold sets the threshold, window and hours of the rule of kind
// k under cfg (with its defaults), for the dashboard to say them.
func fillThreshold(pa *portal.Alert, k misuse.Kind, cfg misuse.Config) {
	switch k {
	case misuse.KindBreakGlassRate:
		pa.Threshold = cfg.BreakGlassPerActor
	case misuse.KindBurst:
		pa.Threshold, pa.WindowSeconds = cfg.BurstPatients, int64(cfg.BurstWindow/time.Second)
	case misuse.KindRepeatedDenials:
		pa.Threshold, pa.WindowSeconds = cfg.Denials, int64(cfg.DenialWindow/time.Second)
	case misuse.KindOddHours:
		pa.Threshold = cfg.OddHoursMin
		pa.OddHours = &portal.HourRange{From: cfg.OddHoursStart, To: cfg.OddHoursEnd, Zone: cfg.Location.String()}
	case misuse.KindNoCareRelationship:
		pa.Threshold = cfg.NoCareMin
	case misuse.KindOutsideMatrix:
		pa.Threshold = cfg.OutsideMatrixMin
	}
}
