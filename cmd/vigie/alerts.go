package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigie-sante/vigie/api/gateway/portal"
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
// a patient nor a body. Opening an event goes through the audit search,
// which records the read in the patient's chain.
type ledgerAlerts struct {
	ledger *ledger.Ledger
	// window is how far back events are read; maxEvents bounds how many
	// (the most recent are kept).
	window    time.Duration
	maxEvents int
	cacheTTL  time.Duration
	config    misuse.Config
	now       func() time.Time

	mu    sync.Mutex
	cache map[string]cachedAlerts
}

type cachedAlerts struct {
	at     time.Time
	alerts []portal.Alert
}

func newLedgerAlerts(l *ledger.Ledger, window, cacheTTL time.Duration) *ledgerAlerts {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		paris = time.UTC
	}
	return &ledgerAlerts{
		ledger: l, window: window, maxEvents: 200_000, cacheTTL: cacheTTL,
		config: misuse.Config{Location: paris}, now: time.Now, cache: map[string]cachedAlerts{},
	}
}

// Alerts implements portal.AlertSource.
func (a *ledgerAlerts) Alerts(ctx context.Context, scope portal.Scope) ([]portal.Alert, error) {
	key := strings.Join(slices.Sorted(slices.Values(scope.Organisations)), ",")
	now := a.now()
	a.mu.Lock()
	if c, ok := a.cache[key]; ok && now.Sub(c.at) < a.cacheTTL {
		a.mu.Unlock()
		return c.alerts, nil
	}
	a.mu.Unlock()

	orgs := scope.Organisations
	if len(orgs) == 0 {
		orgs = []string{""} // every organisation
	}
	var events []event.Logged
	for _, org := range orgs {
		got, err := a.events(ctx, org, now)
		if err != nil {
			return nil, err
		}
		events = append(events, got...)
	}
	cfg := a.config
	cfg.Now = now
	res, err := misuse.Detect(events, cfg)
	if err != nil {
		return nil, err
	}
	out := make([]portal.Alert, 0, len(res.Alerts))
	for _, m := range res.Alerts {
		if len(scope.Organisations) > 0 && !slices.Contains(scope.Organisations, m.Organization) {
			continue
		}
		pa := portal.Alert{
			Kind: string(m.Kind), Severity: severity(m.Severity), Professional: m.Actor, Organisation: m.Organization,
			Detail: m.Message, Time: m.To,
		}
		for _, r := range m.Events {
			pa.Events = append(pa.Events, portal.EventRef{LeafIndex: r.Index, Commitment: r.Commitment.String()})
		}
		out = append(out, pa)
	}
	a.mu.Lock()
	a.cache[key] = cachedAlerts{at: now, alerts: out}
	a.mu.Unlock()
	return out, nil
}

// events reads the access and review events of an organisation ("" for
// all) in the window, newest kept when there are too many.
func (a *ledgerAlerts) events(ctx context.Context, org string, now time.Time) ([]event.Logged, error) {
	f := ledger.SearchFilter{Organisation: org, FromNanos: now.Add(-a.window).UnixNano()}
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
			if err != nil {
				continue // erased meanwhile
			}
			b, err := event.Parse(body)
			if err != nil {
				return nil, fmt.Errorf("misuse alerts: event %d: %w", r.Index, err)
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
