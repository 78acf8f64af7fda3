package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	_ "time/tzdata" // odd hours are in Europe/Paris even where the system has no time zones

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/term"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/api/client"
	"github.com/vigie-sante/vigie/api/server"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/misuse"
	"github.com/vigie-sante/vigie/consent/replay"
	"github.com/vigie-sante/vigie/consent/scrutiny"
	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/event"
)

// auditConfig are the flags of vigie audit beyond those it shares with
// vigie verify.
type auditConfig struct {
	logOnly      bool
	organization string
	since, until string
	fromZero     bool
	noProgress   bool
	batch        uint64
	batchSet     bool
	tiles        bool
	waitCP       time.Duration
	oddHours     string
	timezone     string
	misuse       misuse.Config
	previousKey  string
}

func (a *auditConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&a.previousKey, "previous-key", "", "the checkpoint key (name+hash+key) of the closed log this log succeeds, as you pinned it: a succession naming another key is a finding")
	fs.BoolVar(&a.logOnly, "log-only", false, "check the log only, even with a regulator's or DPO's token (no event bodies read, no replay, no alerts)")
	fs.StringVar(&a.organization, "organization", "", "for a DPO: the organisation (FINESS) whose events to audit")
	fs.StringVar(&a.since, "since", "", "replay and alert on the accesses from this time on: RFC 3339 (2026-11-01T00:00:00Z) or a duration back from now (720h)")
	fs.StringVar(&a.until, "until", "", "replay and alert on the accesses before this time (same forms as --since)")
	fs.BoolVar(&a.fromZero, "from-zero", false, "fetch every leaf from index 0 even with a saved state (always done when events are read)")
	fs.BoolVar(&a.noProgress, "no-progress", false, "no progress bar (there is none when standard error is not a terminal)")
	a.batch = 1000
	fs.Func("batch", "leaves asked per call: default 1000, the most the server gives; with --tiles, default 16384, at most 65536", func(v string) error {
		n, err := strconv.ParseUint(v, 10, 64)
		a.batch, a.batchSet = n, true
		return err
	})
	fs.BoolVar(&a.tiles, "tiles", false, "read the leaves from the log's C2SP tlog-tiles entry bundles (/tile/entries/...), which any HTTP cache can serve, instead of /v1/log/leaves")
	fs.DurationVar(&a.waitCP, "wait-checkpoint", 30*time.Second, "how long to wait for a checkpoint that covers the events read (the log signs them within its merge delay); those it does not cover are left to the next run")
	fs.IntVar(&a.misuse.BreakGlassPerActor, "alert-break-glass", 3, "alert on a professional with at least this many emergency accesses")
	fs.DurationVar(&a.misuse.ReviewDelay, "alert-review-delay", 0, "alert on an emergency access not reviewed this long after it (0: every unreviewed one)")
	fs.IntVar(&a.misuse.BurstPatients, "alert-burst-patients", 20, "alert on a professional accessing at least this many distinct patients within --alert-burst-window")
	fs.DurationVar(&a.misuse.BurstWindow, "alert-burst-window", 10*time.Minute, "window of --alert-burst-patients")
	fs.StringVar(&a.oddHours, "alert-odd-hours", "22-6", "odd hours, start-end in local hours (0-23), across midnight when start > end")
	fs.IntVar(&a.misuse.OddHoursMin, "alert-odd-hours-min", 1, "alert on a professional with at least this many accesses at odd hours outside emergencies")
	fs.StringVar(&a.timezone, "timezone", "Europe/Paris", "time zone of odd hours")
	fs.IntVar(&a.misuse.Denials, "alert-denials", 5, "alert on a professional denied at least this many times within --alert-denial-window")
	fs.DurationVar(&a.misuse.DenialWindow, "alert-denial-window", time.Hour, "window of --alert-denials")
	fs.IntVar(&a.misuse.NoCareMin, "alert-no-care", 1, "alert on a professional with at least this many accesses or attempts without care relationship")
	fs.IntVar(&a.misuse.OutsideMatrixMin, "alert-outside-matrix", 1, "alert on a professional with at least this many attempts outside the access matrix")
}

// defaultTileBatch is --batch with --tiles: bundles of 256, fetched
// several at once.
const defaultTileBatch = 16384

// validate checks the flags and fills in the misuse configuration.
func (a *auditConfig) validate(now time.Time) (from, to time.Time, err error) {
	if a.tiles && !a.batchSet {
		a.batch = defaultTileBatch
	}
	maxBatch := uint64(1000) // the JSON route's page
	if a.tiles {
		maxBatch = 65536
	}
	if a.batch == 0 || a.batch > maxBatch {
		return from, to, usagef("--batch: want 1 to %d", maxBatch)
	}
	if a.waitCP < 0 {
		return from, to, usagef("--wait-checkpoint must not be negative")
	}
	if a.previousKey != "" {
		if _, err := note.NewVerifier(a.previousKey); err != nil {
			return from, to, usagef("--previous-key: not a note verifier key (name+hash+key)")
		}
	}
	start, end, ok := strings.Cut(a.oddHours, "-")
	s, err1 := strconv.Atoi(start)
	e, err2 := strconv.Atoi(end)
	if !ok || err1 != nil || err2 != nil || s < 0 || s > 23 || e < 0 || e > 23 || s == e {
		return from, to, usagef("--alert-odd-hours: want start-end, two different hours from 0 to 23, not %q", a.oddHours)
	}
	a.misuse.OddHoursStart, a.misuse.OddHoursEnd = s, e
	if a.misuse.Location, err = time.LoadLocation(a.timezone); err != nil {
		return from, to, usagef("--timezone: %v", err)
	}
	if from, err = parseWhen("--since", a.since, now); err != nil {
		return from, to, err
	}
	if to, err = parseWhen("--until", a.until, now); err != nil {
		return from, to, err
	}
	if !from.IsZero() && !to.IsZero() && !to.After(from) {
		return from, to, usagef("--until must be after --since")
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"--alert-break-glass", int64(a.misuse.BreakGlassPerActor)}, {"--alert-review-delay", int64(a.misuse.ReviewDelay)},
		{"--alert-burst-patients", int64(a.misuse.BurstPatients)}, {"--alert-burst-window", int64(a.misuse.BurstWindow)},
		{"--alert-odd-hours-min", int64(a.misuse.OddHoursMin)}, {"--alert-denials", int64(a.misuse.Denials)},
		{"--alert-denial-window", int64(a.misuse.DenialWindow)}, {"--alert-no-care", int64(a.misuse.NoCareMin)},
		{"--alert-outside-matrix", int64(a.misuse.OutsideMatrixMin)}} {
		if f.v < 0 {
			return from, to, usagef("%s must not be negative", f.name)
		}
	}
	return from, to, nil
}

// parseWhen parses a time flag: RFC 3339, or a duration back from now.
func parseWhen(name, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, usagef("%s: want an RFC 3339 time (2026-11-01T00:00:00Z) or a positive duration (720h), not %q", name, s)
}

func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("audit", stderr)
	var c remoteConfig
	c.flags(fs)
	var a auditConfig
	a.flags(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	rep, err := auditCommand(ctx, &c, &a, time.Now, stderr)
	return finish(&c, "audit", rep, err, stdout, stderr)
}

// auditReport is what vigie audit prints.
type auditReport struct {
	Verdict  string           `json:"verdict"` // "verified" or "failed"
	Server   string           `json:"server"`
	Origin   string           `json:"origin"`
	FirstUse bool             `json:"key_pinned_now,omitempty"`
	Log      auditLogSummary  `json:"log"`
	Events   *eventsSummary   `json:"events,omitempty"`
	Replay   *replaySummary   `json:"replay,omitempty"`
	Findings []audit.Finding  `json:"findings"`
	Replayed []replay.Finding `json:"replay_findings"`
	Alerts   []misuse.Alert   `json:"alerts"`
	// Names are the public directories' entries of the numbers above
	// (the alerts' professionals and organisations, the organisation
	// audited), looked up after the audit: never part of what is checked.
	Names    *directoryNames `json:"names,omitempty"`
	Evidence string          `json:"evidence_file,omitempty"`

	// Succession is what the log's first event says of the closed log
	// it succeeds, checked (a regulator's audit).
	Succession *successionSummary `json:"succession,omitempty"`
	// OriginChanged says the server now serves another log than the one
	// whose key the state pinned.
	OriginChanged *originChange `json:"origin_changed,omitempty"`

	lang  lang
	notes [][]byte
}

type auditLogSummary struct {
	Checkpoints []seenSummary `json:"checkpoints"`
	Pairs       []audit.Pair  `json:"consistency"`
	First       uint64        `json:"first_leaf"`
	Fetched     uint64        `json:"leaves_fetched"`
	Seconds     float64       `json:"seconds"`
}

type seenSummary struct {
	Size        uint64     `json:"size"`
	Root        event.Hash `json:"root"`
	Saved       bool       `json:"saved,omitempty"`
	RootChecked bool       `json:"root_recomputed"`
}

type eventsSummary struct {
	Role         string         `json:"role"`
	Organization string         `json:"organization,omitempty"`
	Read         int            `json:"read"`
	ByKind       map[string]int `json:"by_kind"`
	Compared     int            `json:"compared_with_leaves"`
	NotYetInLog  int            `json:"not_yet_in_a_checkpoint"`
	// Erased counts the erased placeholders served; Complete says the
	// count of every leaf ran (a regulator's whole audit, on a log that
	// holds together): withheld leaves, if any, are a finding.
	Erased   int  `json:"erased"`
	Complete bool `json:"every_leaf_accounted_for"`
}

type successionSummary struct {
	Origin string `json:"origin"`
	Size   uint64 `json:"size"`
	Key    string `json:"key"`
	// Pinned: the key is the one --previous-key gave.
	Pinned bool `json:"key_matches_pinned"`
}

type replaySummary struct {
	Accesses      int                   `json:"accesses"`
	Replayed      int                   `json:"replayed"`
	Agreed        int                   `json:"agreed"`
	NotReplayable map[string]int        `json:"not_replayable"`
	Rules         []replay.RulesVersion `json:"rules"`
}

func auditCommand(ctx context.Context, c *remoteConfig, a *auditConfig, now func() time.Time, stderr io.Writer) (*auditReport, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	from, to, err := a.validate(now())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cl, st, keys, err := c.connect(ctx, "audit", stderr)
	if err != nil {
		return nil, err
	}
	rep := &auditReport{Server: cl.BaseURL(), Origin: keys.origin, FirstUse: keys.firstUse, lang: langOf(c.lang),
		Findings: []audit.Finding{}, Replayed: []replay.Finding{}, Alerts: []misuse.Alert{}}

	// The token's role only chooses what to ask (it is not verified
	// here): the server checks it.
	opts := audit.LogAuditOptions{Organization: a.organization, From: from, To: to,
		Follow: audit.FollowOptions{Keys: keys.Keys, FromZero: a.fromZero, Batch: a.batch, MinSizeWait: a.waitCP}}
	role, orgs := auth.PeekClaims(c.token)
	if !a.logOnly {
		opts.Reader = server.AuditReader(role)
	}
	if a.previousKey != "" {
		opts.PreviousKey, _ = note.NewVerifier(a.previousKey) // checked by validate
	}
	if opts.Reader == audit.DPO && a.organization == "" {
		// A DPO names the organisation it audits; with one, it is that.
		if len(orgs) != 1 {
			return nil, usagef("--organization: required for a DPO acting for %d organisations", len(orgs))
		}
		opts.Organization = orgs[0]
	}
	if st.Audit != nil {
		opts.Follow.State = &audit.LogState{Checkpoint: []byte(st.Audit.Checkpoint), Range: st.Audit.Range}
	}
	var bar *progressBar
	if f, ok := stderr.(*os.File); ok && !a.noProgress && term.IsTerminal(int(f.Fd())) {
		bar = newProgressBar(f, rep.lang)
		opts.Follow.Progress = bar.update
	}
	start := time.Now()
	var src audit.EventSource = searchSource{cl}
	if a.tiles {
		src = &tileSource{searchSource: searchSource{cl}}
	}
	lr, err := audit.AuditLog(ctx, src, opts)
	bar.done()
	if err != nil {
		return nil, err
	}
	fr := lr.Follow
	rep.Log = auditLogSummary{Pairs: fr.Pairs, First: fr.First, Fetched: fr.Fetched, Seconds: time.Since(start).Seconds()}
	if rep.Log.Pairs == nil {
		rep.Log.Pairs = []audit.Pair{}
	}
	for _, s := range fr.Seen {
		rep.Log.Checkpoints = append(rep.Log.Checkpoints, seenSummary{Size: s.Size, Root: s.Hash, Saved: s.Saved, RootChecked: s.RootChecked})
		rep.notes = append(rep.notes, s.Note)
	}
	rep.Findings = append(rep.Findings, lr.Findings...)
	rep.OriginChanged = originChanged(ctx, cl, st, keys, lr.Findings)
	if sc := lr.Succession; sc != nil {
		rep.Succession = &successionSummary{Origin: sc.Origin, Size: sc.Previous.Size, Key: sc.KeyID, Pinned: opts.PreviousKey != nil}
	}
	if e := lr.Events; e != nil {
		rep.Events = &eventsSummary{Role: string(role), Organization: opts.Organization, Read: e.Read, ByKind: map[string]int{}, Compared: e.Compared,
			NotYetInLog: e.NotYetInLog, Erased: e.Erased, Complete: e.Complete}
		for k, n := range e.ByKind {
			rep.Events.ByKind[string(k)] = n
		}
	}

	mcfg := a.misuse
	mcfg.Now = now()
	sr, err := scrutiny.Examine(ctx, scrutiny.Config{Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}), Rules: rulesSource(cl), Misuse: mcfg}, lr)
	if err != nil {
		return nil, err
	}
	if sr != nil {
		rr := sr.Replay
		rep.Replay = &replaySummary{Accesses: rr.Accesses, Replayed: rr.Replayed, Agreed: rr.Agreed, NotReplayable: rr.NotReplayable, Rules: rr.Rules}
		rep.Replayed = append(rep.Replayed, rr.Findings...)
		rep.Alerts = append(rep.Alerts, sr.Alerts...)
	}

	var rpps, finess []string
	for _, a := range rep.Alerts {
		rpps, finess = append(rpps, a.Actor), append(finess, a.Organization)
	}
	if rep.Events != nil {
		finess = append(finess, rep.Events.Organization)
	}
	if len(rpps)+len(finess) > 0 {
		names := lookupNames(ctx, cl, rpps, finess)
		rep.Names = &names
	}

	if !lr.Verified() || !sr.Confirmed() {
		rep.Verdict = "failed"
		return rep, nil
	}
	rep.Verdict = "verified"
	keys.pin(st, now())
	if fr.State != nil {
		st.Audit = &auditState{Checkpoint: string(fr.State.Checkpoint), SeenAt: now().UTC(), Range: append([]event.Hash{}, fr.State.Range...)}
	}
	if err := st.save(); err != nil {
		return nil, err
	}
	return rep, nil
}

// searchSource is an auditor's search over the API.
type searchSource struct{ *client.Client }

func (s searchSource) SearchEvents(ctx context.Context, q audit.EventQuery, token string) (*audit.EventPage, error) {
	kind, ok := server.EventKind(q.Kind)
	if !ok {
		return nil, fmt.Errorf("search events: the API has no name for the kind %q", q.Kind)
	}
	req := &vigiev1.SearchEventsRequest{Kind: kind, Organization: q.Organization, PageSize: searchPageSize, ErasedOnly: q.Erased, PageToken: token}
	if !q.From.IsZero() {
		req.StartTime = timestamppb.New(q.From)
	}
	if !q.To.IsZero() {
		req.EndTime = timestamppb.New(q.To)
	}
	resp, err := s.Client.SearchEvents(ctx, req)
	if err != nil {
		return nil, historyError(err)
	}
	p := &audit.EventPage{Next: resp.NextPageToken}
	for _, e := range resp.Events {
		p.Events = append(p.Events, envelope(e))
	}
	return p, nil
}

// searchPageSize is the page size of the audit's searches (the server's
// largest); tests make it smaller.
var searchPageSize int32 = 500

func (r *auditReport) failed() bool            { return r.Verdict != "verified" }
func (r *auditReport) setEvidence(path string) { r.Evidence = path }
func (r *auditReport) evidence() any {
	return map[string]any{"command": "vigie audit", "server": r.Server, "origin": r.Origin, "log": r.Log,
		"findings": r.Findings, "replay_findings": r.Replayed, "checkpoints": r.notes}
}

func (r *auditReport) table(w io.Writer) {
	l := r.lang
	fmt.Fprintln(w, l.t("cli.audit.title", "origin", esc(r.Origin), "server", esc(r.Server)))
	if oc := r.OriginChanged; oc != nil {
		fmt.Fprintln(w, l.t("cli.audit.originChanged", "pinned", esc(oc.Pinned), "served", esc(oc.Served), "key", esc(oc.ServedKey), "state", esc(oc.State)))
	}
	var cps []string
	for _, s := range r.Log.Checkpoints {
		x := strconv.FormatUint(s.Size, 10)
		if s.Saved {
			x += l.t("cli.audit.saved")
		}
		if s.RootChecked {
			x += " ✓"
		}
		cps = append(cps, x)
	}
	fmt.Fprintln(w, "  "+l.t("cli.audit.checkpoints", "list", strings.Join(cps, ", ")))
	if len(r.Log.Pairs) > 0 {
		var ps []string
		for _, p := range r.Log.Pairs {
			mark := "✓"
			if !p.OK {
				mark = "✗"
			}
			ps = append(ps, fmt.Sprintf("%d→%d %s", p.Old, p.New, mark))
		}
		fmt.Fprintln(w, "  "+l.t("cli.audit.consistency", "pairs", strings.Join(ps, ", ")))
	}
	fmt.Fprintln(w, "  "+l.t("cli.audit.fetched", "n", r.Log.Fetched, "first", r.Log.First, "seconds", strconv.FormatFloat(r.Log.Seconds, 'f', 1, 64)))
	if sc := r.Succession; sc != nil {
		fmt.Fprintln(w, "  "+l.t("cli.audit.succession", "origin", esc(sc.Origin), "size", sc.Size, "key", esc(sc.Key)))
		if sc.Pinned {
			fmt.Fprintln(w, "  "+l.t("cli.audit.successionPinned"))
		}
	}
	if e := r.Events; e != nil {
		var kinds []string
		for k, n := range e.ByKind {
			kinds = append(kinds, fmt.Sprintf("%s %d", esc(string(k)), n))
		}
		slices.Sort(kinds)
		fmt.Fprintln(w, "\n"+l.t("cli.audit.events", "role", esc(string(e.Role)), "n", e.Read, "kinds", strings.Join(kinds, ", "), "compared", e.Compared, "pending", e.NotYetInLog))
		if e.Organization != "" {
			fmt.Fprintln(w, "  "+l.t("cli.audit.organisation", "org", r.names().establishmentName(l, esc(e.Organization))))
		}
	}
	if rp := r.Replay; rp != nil {
		line := l.t("cli.audit.replay", "accesses", rp.Accesses, "replayed", rp.Replayed, "agreed", rp.Agreed)
		if n := rp.Accesses - rp.Replayed; n > 0 {
			var nr []string
			for k, n := range rp.NotReplayable {
				nr = append(nr, fmt.Sprintf("%s: %d", esc(k), n))
			}
			slices.Sort(nr)
			line += l.t("cli.audit.notReplayable", "n", n, "kinds", strings.Join(nr, ", "))
		}
		fmt.Fprintln(w, line)
		for _, v := range rp.Rules {
			ev := l.t("cli.audit.noRulesEvent")
			if v.Event != nil {
				ev = l.t("cli.audit.rulesEvent", "index", v.Event.Index)
			}
			fmt.Fprintln(w, "  "+l.t("cli.audit.rules", "version", v.Version, "hash", esc(v.Hash), "event", ev))
		}
	}
	if len(r.Findings) > 0 {
		fmt.Fprintln(w, "\n"+l.t("cli.audit.problems"))
		printFindings(w, l, r.Findings)
	}
	if len(r.Replayed) > 0 {
		fmt.Fprintf(w, "\n%s\n\n", l.t("cli.audit.notConfirmed"))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, l.t("cli.audit.replayColumns"))
		for _, f := range r.Replayed {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", f.Severity, title(l, replayTitles, f.Kind), f.Event.Index, short(f.Patient), esc(f.Recorded), esc(f.Replayed), esc(f.Message))
		}
		tw.Flush()
	}
	if len(r.Alerts) > 0 {
		fmt.Fprintf(w, "\n%s\n\n", l.t("cli.audit.alerts"))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, l.t("cli.audit.alertColumns"))
		for _, a := range r.Alerts {
			period := a.From.Local().Format("2006-01-02 15:04")
			if !a.To.Equal(a.From) {
				period += " → " + a.To.Local().Format("2006-01-02 15:04")
			}
			who := r.names().professionalName(l, esc(a.Actor), "")
			if a.Organization != "" {
				who += ", " + r.names().establishmentName(l, esc(a.Organization))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", a.Severity, title(l, alertTitles, a.Kind), who, period, a.Count, a.Patients, refs(a.Events))
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	switch {
	case r.failed():
		fmt.Fprintln(w, l.t("cli.audit.failed", "problems", len(r.Findings), "decisions", len(r.Replayed), "evidence", r.Evidence))
	case r.Events != nil:
		fmt.Fprintln(w, l.t("cli.audit.verifiedReplay", "alerts", len(r.Alerts)))
	default:
		fmt.Fprintln(w, l.t("cli.audit.verified"))
	}
}

// names returns the names looked up (none when the audit looked up none).
func (r *auditReport) names() directoryNames {
	if r.Names == nil {
		return directoryNames{}
	}
	return *r.Names
}

// short abbreviates a pseudonym for a table.
func short(h event.Hash) string {
	if h.IsZero() {
		return "-"
	}
	return h.String()[:12]
}

// refs lists leaf indices, the first ten.
func refs(rs []event.Ref) string {
	var b strings.Builder
	for i, r := range rs {
		if i == 10 {
			fmt.Fprintf(&b, " …(+%d)", len(rs)-10)
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatUint(r.Index, 10))
	}
	return b.String()
}

// progressBar shows the leaves fetched on a terminal.
type progressBar struct {
	w     *os.File
	l     lang
	start time.Time
	last  time.Time
	shown bool
}

func newProgressBar(w *os.File, l lang) *progressBar {
	return &progressBar{w: w, l: l, start: time.Now()}
}

func (p *progressBar) update(done, total uint64) {
	if now := time.Now(); now.Sub(p.last) < 100*time.Millisecond && done < total {
		return
	}
	p.last = time.Now()
	const width = 30
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	n := int(frac * width)
	rate := float64(done) / max(time.Since(p.start).Seconds(), 1e-3)
	fmt.Fprintf(p.w, "\r[%s%s] %3.0f%% %d/%d %s", strings.Repeat("=", n), strings.Repeat(" ", width-n), 100*frac, done, total,
		p.l.t("cli.audit.progress", "rate", strconv.FormatFloat(rate, 'f', 0, 64)))
	p.shown = true
}

// done ends the bar's line; a nil bar does nothing.
func (p *progressBar) done() {
	if p != nil && p.shown {
		fmt.Fprintln(p.w)
	}
}
