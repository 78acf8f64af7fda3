// Package scrutiny examines the decisions behind the events an audit of
// the whole log read (package ledger/audit, [audit.AuditLog]): it replays
// every access decision (package consent/replay) and looks for the signs
// of misuse (package consent/misuse), with the national rules each
// decision names, fetched by version and trusted only when their bytes
// hash to the hash the decision recorded.
//
// It is what `vigie audit` runs after the log and the events verify; it
// does no I/O of its own besides its rules source.
package scrutiny

import (
	"context"
	"errors"
	"slices"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/misuse"
	"github.com/vigie-sante/vigie/consent/replay"
	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/event"
)

// Config configures [Examine].
type Config struct {
	// Engine decides as the service does (consent/ladonpolicy). Required.
	Engine consent.Engine
	// Rules returns the exact bytes of a national rules version.
	// Required. Each version is asked for once.
	Rules replay.RulesSource
	// Misuse are the thresholds of the misuse signals. Its Rules is set
	// by Examine: the rules a decision names, or none when their bytes
	// cannot be had or do not hash to the decision's RulesHash.
	Misuse misuse.Config
}

// A Report is what [Examine] found.
type Report struct {
	// Replay is the replay of every decision read.
	Replay *replay.Report
	// Alerts are the signs of misuse among the accesses of the audit's
	// window (and the break-glass reviews of any time).
	Alerts []misuse.Alert
}

// Confirmed reports whether the replay confirmed every decision (true for
// a nil report: nothing was to replay). Alerts are for a human to review:
// they do not count.
func (r *Report) Confirmed() bool { return r == nil || len(r.Replay.Findings) == 0 }

// Examine replays the decisions of the events r read and looks for misuse
// among them. It returns nil for an audit that read no events. A
// regulator's events hold every consent change (the replay is complete);
// a DPO's do not (see package consent/replay). An error means the
// examination could not be done: an invalid configuration, a cancelled
// context, or a rules source that failed for another reason than
// [replay.ErrNoRules].
func Examine(ctx context.Context, cfg Config, r *audit.LogAuditReport) (*Report, error) {
	if r.Events == nil {
		return nil, nil
	}
	if cfg.Engine == nil || cfg.Rules == nil {
		return nil, errors.New("scrutiny: Engine and Rules are required")
	}
	src := NewRulesCache(cfg.Rules)
	rr, err := replay.Replay(ctx, replay.Config{Engine: cfg.Engine, Rules: src.fetch, Complete: r.Reader == audit.Regulator}, r.Logged)
	if err != nil {
		return nil, err
	}
	// The alerts judge the accesses of the window by their recorded time
	// (the server's search filters on its own column), and every review.
	window := slices.DeleteFunc(slices.Clone(r.Logged), func(e event.Logged) bool {
		return e.Body.Kind == event.KindAccess && (!r.From.IsZero() && e.Body.Time.Before(r.From) || !r.To.IsZero() && !e.Body.Time.Before(r.To))
	})
	mcfg := cfg.Misuse
	mcfg.Rules = func(d *consent.Decision) (*consent.Rules, error) { return src.Of(ctx, d), nil }
	res, err := misuse.Detect(window, mcfg)
	if err != nil {
		return nil, err
	}
	return &Report{Replay: rr, Alerts: res.Alerts}, nil
}

// A RulesCache finds the national rules a recorded decision was made
// with, asking its source for each version once (again after a failure
// other than [replay.ErrNoRules]). Examine and the readers of a history
// (vigie verify's labels and emergency flags) use it, so that a decision
// is read with the same rules everywhere. It is not safe for concurrent
// use.
type RulesCache struct {
	src    replay.RulesSource
	bytes  map[int64][]byte
	errs   map[int64]error
	parsed consent.RulesParser
}

// NewRulesCache returns a cache over src.
func NewRulesCache(src replay.RulesSource) *RulesCache {
	return &RulesCache{src: src, bytes: map[int64][]byte{}, errs: map[int64]error{}, parsed: consent.RulesParser{}}
}

func (c *RulesCache) fetch(ctx context.Context, v int64) ([]byte, error) {
	if b, ok := c.bytes[v]; ok {
		return b, nil
	}
	if err, ok := c.errs[v]; ok {
		return nil, err
	}
	b, err := c.src(ctx, v)
	if err != nil {
		if errors.Is(err, replay.ErrNoRules) {
			c.errs[v] = err
		}
		return nil, err
	}
	c.bytes[v] = b
	return b, nil
}

// Of returns the rules decision d was made with, if the source serves the
// very version it names (its bytes hash to d.RulesHash, checked for every
// decision); nil otherwise: the rules cannot be had, are another version
// under that number, or do not parse.
func (c *RulesCache) Of(ctx context.Context, d *consent.Decision) *consent.Rules {
	b, err := c.fetch(ctx, d.RulesVersion)
	if err != nil {
		return nil
	}
	return c.parsed.Of(b, d)
}
