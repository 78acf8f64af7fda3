package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/misuse"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
)

// AlertsConfig configures AuditService.ListAlerts: the misuse rules of
// consent/misuse run by the server on the events of the last Window,
// within the caller's scope.
type AlertsConfig struct {
	// Window is how far back events are read. Default 7 days.
	Window time.Duration
	// CacheTTL is how long computed alerts are served again. 0: every
	// call computes them (concurrent calls still share one computation).
	CacheTTL time.Duration
	// MaxEvents bounds the events read for one organisation (or for all):
	// the most recent are kept. Default 200,000.
	MaxEvents int
	// Misuse holds the rules' thresholds. Its Rules is the consent
	// store's RulesOf (any value given is replaced); its Location
	// defaults to Europe/Paris (UTC if the system has no time zone
	// database).
	Misuse misuse.Config

	// detect is misuse.Detect; a test counts its calls.
	detect func([]event.Logged, misuse.Config) (*misuse.Result, error)
}

// alertsReadMethod names the alerts in ledger-read records
// (consent.ReadRecord.Method).
const alertsReadMethod = "Alerts"

// computeTimeout bounds a computation of alerts, which goes on when the
// caller who started it leaves: the others wait for it.
const computeTimeout = 2 * time.Minute

// errNoAlerts: the server has no alert rules (NOT_FOUND).
var errNoAlerts = fmt.Errorf("%w: no alert rules configured", ErrNotFound)

// alerter computes the alerts of a scope once per cache period, however
// many callers ask, and records their reads with each computation.
type alerter struct {
	b   *Backend
	cfg AlertsConfig

	mu    sync.Mutex
	cache map[string]cachedAlerts // by scope key
	// flight computes the alerts of a scope once however many callers
	// ask while they are computed: the dashboards that reload when the
	// cache expires share one computation, and one record of its reads.
	flight singleflight.Group
}

type cachedAlerts struct {
	at   time.Time
	resp *vigiev1.ListAlertsResponse // never modified once cached
}

func newAlerter(b *Backend, cfg AlertsConfig) *alerter {
	if cfg.Window <= 0 {
		cfg.Window = 7 * 24 * time.Hour
	}
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = 200_000
	}
	if cfg.Misuse.Location == nil {
		paris, err := time.LoadLocation("Europe/Paris")
		if err != nil {
			paris = time.UTC
		}
		cfg.Misuse.Location = paris
	}
	if cfg.detect == nil {
		cfg.detect = misuse.Detect
	}
	return &alerter{b: b, cfg: cfg, cache: map[string]cachedAlerts{}}
}

// ListAlerts returns the misuse alerts of the caller's scope: a DPO's
// organisations, every organisation for a regulator.
func (s *auditService) ListAlerts(ctx context.Context, _ *vigiev1.ListAlertsRequest) (*vigiev1.ListAlertsResponse, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, err
	}
	if s.alerts == nil {
		return nil, errNoAlerts
	}
	var orgs []string
	switch id.Role() {
	case auth.RoleRegulator: // every organisation
	case auth.RoleDPO:
		// The matrix lets DPOs in; their scope is theirs. A DPO bound to
		// no organisation sees nothing, never everything.
		if orgs = id.Organizations(); len(orgs) == 0 {
			return nil, ErrPermissionDenied
		}
	default:
		return nil, ErrPermissionDenied // the second lock of the matrix's door
	}
	resp, err := s.alerts.get(ctx, orgs, id.Principal())
	if err != nil {
		return nil, unavailable(err)
	}
	AddLogAttrs(ctx, slog.Int("alerts", len(resp.Alerts)))
	return proto.Clone(resp).(*vigiev1.ListAlertsResponse), nil
}

// get returns the alerts of orgs (all if empty), cached or computed for
// reader, their reads recorded first.
func (a *alerter) get(ctx context.Context, orgs []string, reader string) (*vigiev1.ListAlertsResponse, error) {
	key := strings.Join(slices.Sorted(slices.Values(orgs)), ",")
	if c, ok := a.cached(key); ok {
		return c.resp, nil
	}
	ch := a.flight.DoChan(key, func() (any, error) {
		if c, ok := a.cached(key); ok { // computed by the flight just before
			return c.resp, nil
		}
		// The computation is the callers', not the first one's: it goes
		// on when that one leaves (its values, not its cancellation).
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), computeTimeout)
		defer cancel()
		return a.compute(fctx, key, orgs, reader)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*vigiev1.ListAlertsResponse), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// cached returns the alerts of key if they are fresh.
func (a *alerter) cached(key string) (cachedAlerts, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.cache[key]
	return c, ok && a.b.Now().Sub(c.at) < a.cfg.CacheTTL
}

// compute computes the alerts of orgs (all if empty), records their read
// by reader in the chain of each patient whose events they name, then
// caches them under key. Any failure fails the answer, nothing cached
// (fail closed).
func (a *alerter) compute(ctx context.Context, key string, orgs []string, reader string) (*vigiev1.ListAlertsResponse, error) {
	now := a.b.Now()
	from := now.Add(-a.cfg.Window)
	scopes := orgs
	if len(scopes) == 0 {
		scopes = []string{""} // every organisation
	}
	var events []event.Logged
	for _, org := range scopes {
		got, err := a.events(ctx, org, from)
		if err != nil {
			return nil, err
		}
		events = append(events, got...)
	}
	patientOf := make(map[event.Hash]event.Hash, len(events))
	for _, e := range events {
		patientOf[e.Ref.Commitment] = e.Body.Patient
	}
	cfg := a.cfg.Misuse
	cfg.Rules = func(d *consent.Decision) (*consent.Rules, error) { return a.b.Consents.RulesOf(ctx, d) }
	cfg.Now = now
	res, err := a.cfg.detect(events, cfg)
	if err != nil {
		return nil, fmt.Errorf("misuse alerts: %w", err)
	}
	resp := &vigiev1.ListAlertsResponse{Alerts: []*vigiev1.Alert{}, ComputeTime: timestamppb.New(now), WindowStartTime: timestamppb.New(from)}
	var reads ledger.ReadSet
	named := map[event.Hash]bool{} // an event may be named by several alerts
	for _, m := range res.Alerts {
		if len(orgs) > 0 && !slices.Contains(orgs, m.Organization) {
			continue
		}
		al, err := alertOf(m, cfg)
		if err != nil {
			return nil, err
		}
		resp.Alerts = append(resp.Alerts, al)
		for _, r := range m.Events {
			if p, ok := patientOf[r.Commitment]; ok && !named[r.Commitment] {
				named[r.Commitment] = true
				reads.Add(p)
			}
		}
	}
	// An alert says something of the events it names: recorded before
	// anyone is shown it, once for the period.
	if err := a.b.recordReads(ctx, &reads, reader, orgs, alertsReadMethod); err != nil {
		return nil, err
	}
	if a.cfg.CacheTTL > 0 { // else nothing is served again
		a.mu.Lock()
		a.cache[key] = cachedAlerts{at: now, resp: resp}
		a.mu.Unlock()
	}
	return resp, nil
}

// events reads the access and review events of an organisation ("" for
// all) from from on, the most recent kept when there are too many.
func (a *alerter) events(ctx context.Context, org string, from time.Time) ([]event.Logged, error) {
	const page = 1000
	f := ledger.SearchFilter{Organization: org, FromNanos: from.UnixNano()}
	var out []event.Logged
	after := int64(-1)
	for {
		rows, err := a.b.Ledger.Search(ctx, f, after, page)
		if err != nil {
			return nil, fmt.Errorf("misuse alerts: %w", err)
		}
		for _, r := range rows {
			after = int64(r.Index)
			if r.Kind != event.KindAccess && r.Kind != event.KindBreakGlassReview {
				continue
			}
			e, err := a.b.Ledger.OpenForAudit(ctx, r)
			if errors.Is(err, ledger.ErrErased) {
				continue // erased meanwhile
			}
			if err != nil { // an altered event is not left out silently
				return nil, fmt.Errorf("misuse alerts: %w", err)
			}
			out = append(out, event.Logged{Ref: event.Ref{Index: r.Index, Commitment: r.Commitment}, Body: e.Parsed})
			if len(out) >= 2*a.cfg.MaxEvents {
				out = slices.Delete(out, 0, len(out)-a.cfg.MaxEvents) // keep memory bounded
			}
		}
		if len(rows) < page {
			break
		}
	}
	if len(out) > a.cfg.MaxEvents {
		out = out[len(out)-a.cfg.MaxEvents:]
	}
	return out, nil
}

// alertOf converts an alert, with the threshold of its rule under cfg.
func alertOf(m misuse.Alert, cfg misuse.Config) (*vigiev1.Alert, error) {
	th, err := cfg.Threshold(m.Kind)
	if err != nil {
		return nil, fmt.Errorf("misuse alerts: %w", err)
	}
	al := &vigiev1.Alert{
		Kind: string(m.Kind), Severity: severities[m.Severity], ActorRpps: m.Actor, Organization: m.Organization,
		Detail: m.Message, Count: int32(m.Count), Patients: int32(m.Patients),
		Threshold: int32(th.Min), WindowSeconds: int64(th.Window / time.Second),
		StartTime: timestamppb.New(m.From), EndTime: timestamppb.New(m.To),
	}
	if th.Location != nil {
		al.OddHours = &vigiev1.HourRange{StartHour: int32(th.OddHoursStart), EndHour: int32(th.OddHoursEnd), TimeZone: th.Location.String()}
	}
	for _, r := range m.Events {
		al.Events = append(al.Events, &vigiev1.EventRef{LeafIndex: r.Index, Commitment: r.Commitment.String()})
	}
	return al, nil
}

var severities = map[misuse.Severity]vigiev1.AlertSeverity{
	misuse.Low:    vigiev1.AlertSeverity_ALERT_SEVERITY_LOW,
	misuse.Medium: vigiev1.AlertSeverity_ALERT_SEVERITY_MEDIUM,
	misuse.High:   vigiev1.AlertSeverity_ALERT_SEVERITY_HIGH,
}
