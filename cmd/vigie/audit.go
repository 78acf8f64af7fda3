package main

import (
	"bytes"
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

	"golang.org/x/term"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigie-sante/vigie/api/client"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/misuse"
	"github.com/vigie-sante/vigie/consent/replay"
	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
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
	waitCP       time.Duration
	oddHours     string
	timezone     string
	misuse       misuse.Config
}

func (a *auditConfig) flags(fs *flag.FlagSet) {
	fs.BoolVar(&a.logOnly, "log-only", false, "check the log only, even with a regulator's or DPO's token (no event bodies read, no replay, no alerts)")
	fs.StringVar(&a.organization, "organization", "", "for a DPO: the organisation (FINESS) whose events to audit")
	fs.StringVar(&a.since, "since", "", "replay and alert on the accesses from this time on: RFC 3339 (2026-11-01T00:00:00Z) or a duration back from now (720h)")
	fs.StringVar(&a.until, "until", "", "replay and alert on the accesses before this time (same forms as --since)")
	fs.BoolVar(&a.fromZero, "from-zero", false, "fetch every leaf from index 0 even with a saved state (always done when events are read)")
	fs.BoolVar(&a.noProgress, "no-progress", false, "no progress bar (there is none when standard error is not a terminal)")
	fs.Uint64Var(&a.batch, "batch", 1000, "leaves asked per call (the server gives at most 1000)")
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

// validate checks the flags and fills in the misuse configuration.
func (a *auditConfig) validate(now time.Time) (from, to time.Time, err error) {
	if a.batch == 0 || a.batch > 1000 {
		return from, to, usagef("--batch: want 1 to 1000")
	}
	if a.waitCP < 0 {
		return from, to, usagef("--wait-checkpoint must not be negative")
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
	Evidence string           `json:"evidence_file,omitempty"`

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
	l := rep.lang

	// Events first (reading them is recorded in the log, which grows):
	// then the log, up to a checkpoint that covers them.
	role, orgs := tokenClaims(c.token)
	var logged []event.Logged
	expect := map[uint64]event.Hash{}
	if !a.logOnly && role == "dpo" && a.organization == "" {
		// A DPO names the organisation it audits; with one, it is that.
		if len(orgs) != 1 {
			return nil, usagef("--organization: required for a DPO acting for %d organisations", len(orgs))
		}
		a.organization = orgs[0]
	}
	// The search is bounded by the checkpoint served before it: the events
	// below its size, which a log growing faster than the audit reads
	// cannot push out of reach (the search itself records reads, after
	// it). A regulator's audit of the whole log accounts for every leaf
	// of that checkpoint: each is an event the search served or an erased
	// placeholder. Follow checks the checkpoint like the others
	// (signature, no older than the previous audit's, so that a server
	// going back in time to hide recent events is caught by the next
	// audit at the latest; consistent with the log; its root rebuilt from
	// the leaves); the count runs only if the log holds together.
	readEvents := !a.logOnly && (role == "regulator" || role == "dpo")
	complete := readEvents && role == "regulator" && from.IsZero() && to.IsZero() && a.organization == ""
	var boundNote []byte
	var bound uint64
	if readEvents {
		if boundNote, err = cl.Checkpoint(ctx); err != nil {
			return nil, err
		}
		// A checkpoint that does not open is Follow's finding; nothing
		// is read below it.
		if cp, err := verify.OpenCheckpoint(boundNote, keys.Keys.Checkpoint); err == nil {
			bound = cp.Size
		}
	}
	// accounted are the leaves the search served something for that is
	// already a finding (a malformed event or placeholder): not withheld.
	accounted := map[uint64]bool{}
	if readEvents {
		rep.Events = &eventsSummary{Role: role, Organization: a.organization, ByKind: map[string]int{}}
		// Each page is folded in as it arrives, and dropped.
		var found []audit.Finding
		take := func(e *vigiev1.LedgerEvent) {
			env := envelope(e)
			if env.Erased {
				// An erased placeholder: its commitment is still checked
				// against the leaf at its index.
				c, err := event.ParseHash(env.Commitment)
				if err != nil {
					found = append(found, audit.Finding{Kind: audit.KindMalformed, Index: &env.Index, Message: "an erased placeholder without a valid commitment"})
					accounted[env.Index] = true
					return
				}
				rep.Events.Erased++
				expect[env.Index] = c
				return
			}
			lg, f := audit.CheckEvent(&env)
			if f != nil {
				found = append(found, *f)
				accounted[env.Index] = true
				return
			}
			rep.Events.Read++
			rep.Events.ByKind[string(lg.Body.Kind)]++
			expect[lg.Index] = lg.Commitment
			if lg.Body.Kind != event.KindLedgerRead {
				// Neither the replay nor the misuse rules read the reads,
				// the bulk of a busy log: their commitments are enough.
				logged = append(logged, lg)
			}
		}
		err := searchEvents(ctx, cl, role, a.organization, from, to, complete, bound, take)
		if f, ok := unreadableEvent(err); ok {
			// The server cannot read one of its own events: a finding
			// (its store was altered), nothing to replay, nothing to
			// count.
			rep.Events = &eventsSummary{Role: role, Organization: a.organization, ByKind: map[string]int{}}
			found, logged, expect, accounted, err, complete = []audit.Finding{f}, nil, map[uint64]event.Hash{}, map[uint64]bool{}, nil, false
		}
		if err != nil {
			return nil, err
		}
		rep.Findings = append(rep.Findings, found...)
	}

	opts := audit.FollowOptions{Keys: keys.Keys, FromZero: a.fromZero || len(expect) > 0, Expect: expect, Batch: a.batch, MinSizeWait: a.waitCP,
		Before: boundNote}
	for i := range expect {
		opts.MinSize = max(opts.MinSize, i+1)
	}
	if st.Audit != nil {
		rng, err := hexToHashes(st.Audit.Range)
		if err != nil {
			return nil, fmt.Errorf("state %s: %w", st.path, err)
		}
		opts.State = &audit.LogState{Checkpoint: []byte(st.Audit.Checkpoint), Range: rng}
	}
	var bar *progressBar
	if f, ok := stderr.(*os.File); ok && !a.noProgress && term.IsTerminal(int(f.Fd())) {
		bar = newProgressBar(f, l)
		opts.Progress = bar.update
	}
	start := time.Now()
	fr, err := audit.Follow(ctx, cl, opts)
	bar.done()
	if err != nil {
		return nil, err
	}
	rep.Log = auditLogSummary{Pairs: fr.Pairs, First: fr.First, Fetched: fr.Fetched, Seconds: time.Since(start).Seconds()}
	if rep.Log.Pairs == nil {
		rep.Log.Pairs = []audit.Pair{}
	}
	for _, s := range fr.Seen {
		rep.Log.Checkpoints = append(rep.Log.Checkpoints, seenSummary{Size: s.Size, Root: s.Hash, Saved: s.Saved, RootChecked: s.RootChecked})
		rep.notes = append(rep.notes, s.Note)
	}
	rep.Findings = append(rep.Findings, fr.Findings...)
	if complete && rep.Events != nil && len(fr.Findings) == 0 {
		for _, seen := range fr.Seen {
			if bytes.Equal(seen.Note, boundNote) {
				if f := withheld(expect, accounted, seen.Size); f != nil {
					rep.Findings = append(rep.Findings, *f)
				}
				rep.Events.Complete = true
				break
			}
		}
	}

	if rep.Events != nil {
		rep.Events.Compared = fr.Expected
		rep.Events.NotYetInLog = len(fr.Beyond)
		// Events no checkpoint covers yet (the reads this audit caused,
		// mostly) are left to the next run.
		beyond := map[uint64]bool{}
		for _, i := range fr.Beyond {
			beyond[i] = true
		}
		logged = slices.DeleteFunc(logged, func(e event.Logged) bool { return beyond[e.Index] })
		rr, err := replay.Replay(ctx, replay.Config{Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}), Rules: rulesSource(cl), Complete: role == "regulator"}, logged)
		if err != nil {
			return nil, err
		}
		rep.Replay = &replaySummary{Accesses: rr.Accesses, Replayed: rr.Replayed, Agreed: rr.Agreed, NotReplayable: rr.NotReplayable, Rules: rr.Rules}
		rep.Replayed = append(rep.Replayed, rr.Findings...)
		window := slices.DeleteFunc(slices.Clone(logged), func(e event.Logged) bool {
			return e.Body.Kind == event.KindAccess && (!from.IsZero() && e.Body.Time.Before(from) || !to.IsZero() && !e.Body.Time.Before(to))
		})
		mcfg := a.misuse
		mcfg.Now = now()
		lb := newLabels(cl)
		mcfg.Rules = func(d *consent.Decision) (*consent.Rules, error) { return lb.of(ctx, d), nil }
		res, err := misuse.Detect(window, mcfg)
		if err != nil {
			return nil, usagef("%v", err)
		}
		rep.Alerts = append(rep.Alerts, res.Alerts...)
	}

	if len(rep.Findings)+len(rep.Replayed) > 0 {
		rep.Verdict = "failed"
		return rep, nil
	}
	rep.Verdict = "verified"
	keys.pin(st, now())
	if fr.State != nil {
		st.Audit = &auditState{Checkpoint: string(fr.State.Checkpoint), SeenAt: now().UTC(), Range: hashesToHex(fr.State.Range)}
	}
	if err := st.save(); err != nil {
		return nil, err
	}
	return rep, nil
}

// searchEvents reads the events an audit needs, below leaf index bound,
// and gives them to take in log order for each kind, a page at a time:
// for a regulator, every consent change, rules change and erasure (to fold
// consents), and the accesses and break-glass reviews; for a DPO, the
// accesses and reviews of its organisation. The accesses are those of
// [from, to) when set. With complete (a regulator's audit of the whole
// log), the ledger reads and the erased placeholders too: every leaf.
// The search of a kind stops at the first event at or past bound (events
// come in log order), however fast the log grows.
func searchEvents(ctx context.Context, cl *client.Client, role, org string, from, to time.Time, complete bool, bound uint64, take func(*vigiev1.LedgerEvent)) error {
	type query struct {
		kind   vigiev1.EventKind
		window bool
		erased bool
	}
	qs := []query{{kind: vigiev1.EventKind_EVENT_KIND_ACCESS, window: true}, {kind: vigiev1.EventKind_EVENT_KIND_BREAK_GLASS_REVIEW}}
	if role == "regulator" {
		qs = append(qs, query{kind: vigiev1.EventKind_EVENT_KIND_CONSENT_CHANGE}, query{kind: vigiev1.EventKind_EVENT_KIND_RULES_CHANGE},
			query{kind: vigiev1.EventKind_EVENT_KIND_ERASURE})
	}
	if complete {
		// Every other leaf too: the reads, and the erased placeholders.
		qs = append(qs, query{kind: vigiev1.EventKind_EVENT_KIND_LEDGER_READ}, query{erased: true})
	}
	if bound == 0 {
		return nil
	}
	for _, q := range qs {
		req := &vigiev1.SearchEventsRequest{Kind: q.kind, Organization: org, PageSize: searchPageSize, ErasedOnly: q.erased}
		if q.window && !from.IsZero() {
			req.StartTime = timestamppb.New(from)
		}
		if q.window && !to.IsZero() {
			req.EndTime = timestamppb.New(to)
		}
	pages:
		for {
			resp, err := cl.SearchEvents(ctx, req)
			if err != nil {
				return err
			}
			for _, e := range resp.Events {
				if e.LeafIndex >= bound {
					break pages
				}
				take(e)
			}
			if resp.NextPageToken == "" {
				break
			}
			req.PageToken = resp.NextPageToken
		}
	}
	return nil
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
	fmt.Fprintln(w, l.f(msg{"Audit du journal %s (%s)", "Audit of the log %s (%s)"}, esc(r.Origin), esc(r.Server)))
	var cps []string
	for _, s := range r.Log.Checkpoints {
		x := strconv.FormatUint(s.Size, 10)
		if s.Saved {
			x += l.f(msg{" (enregistré)", " (saved)"})
		}
		if s.RootChecked {
			x += " ✓"
		}
		cps = append(cps, x)
	}
	fmt.Fprintln(w, l.f(msg{"  points de contrôle vus (✓ : racine recalculée à partir des entrées) : %s", "  checkpoints seen (✓: root recomputed from the leaves): %s"}, strings.Join(cps, ", ")))
	if len(r.Log.Pairs) > 0 {
		var ps []string
		for _, p := range r.Log.Pairs {
			mark := "✓"
			if !p.OK {
				mark = "✗"
			}
			ps = append(ps, fmt.Sprintf("%d→%d %s", p.Old, p.New, mark))
		}
		fmt.Fprintln(w, l.f(msg{"  cohérence : %s", "  consistency: %s"}, strings.Join(ps, ", ")))
	}
	fmt.Fprintln(w, l.f(msg{"  entrées récupérées : %d, à partir de l'entrée %d, en %.1f s", "  leaves fetched: %d, from leaf %d, in %.1f s"}, r.Log.Fetched, r.Log.First, r.Log.Seconds))
	if e := r.Events; e != nil {
		var kinds []string
		for k, n := range e.ByKind {
			kinds = append(kinds, fmt.Sprintf("%s %d", esc(string(k)), n))
		}
		slices.Sort(kinds)
		fmt.Fprintln(w, l.f(msg{"\nÉvénements lus (rôle %s) : %d (%s) ; %d comparés à leur entrée du journal, %d pas encore dans un point de contrôle",
			"\nEvents read (role %s): %d (%s); %d compared with their leaf, %d not in a checkpoint yet"}, esc(string(e.Role)), e.Read, strings.Join(kinds, ", "), e.Compared, e.NotYetInLog))
	}
	if rp := r.Replay; rp != nil {
		line := l.f(msg{"Rejeu des décisions : %d accès, %d rejoués, %d identiques", "Replay of decisions: %d accesses, %d replayed, %d identical"}, rp.Accesses, rp.Replayed, rp.Agreed)
		if n := rp.Accesses - rp.Replayed; n > 0 {
			var nr []string
			for k, n := range rp.NotReplayable {
				nr = append(nr, fmt.Sprintf("%s: %d", esc(k), n))
			}
			slices.Sort(nr)
			line += l.f(msg{" ; non rejouables : %d (%s)", "; not replayable: %d (%s)"}, n, strings.Join(nr, ", "))
		}
		fmt.Fprintln(w, line)
		for _, v := range rp.Rules {
			ev := l.f(msg{"aucun événement de changement de règles vu", "no rules-change event seen"})
			if v.Event != nil {
				ev = l.f(msg{"événement de changement de règles à l'entrée %d", "rules-change event at leaf %d"}, v.Event.Index)
			}
			fmt.Fprintln(w, l.f(msg{"  règles nationales version %d, sha256 %s (%s)", "  national rules version %d, sha256 %s (%s)"}, v.Version, esc(v.Hash), ev))
		}
	}
	if len(r.Findings) > 0 {
		fmt.Fprintln(w, l.f(msg{"\nProblèmes trouvés dans le journal et les événements :", "\nProblems found in the log and the events:"}))
		printFindings(w, l, r.Findings)
	}
	if len(r.Replayed) > 0 {
		fmt.Fprintln(w, l.f(msg{"\nDécisions que le rejeu ne confirme pas :\n", "\nDecisions the replay does not confirm:\n"}))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, l.f(msg{"gravité\tproblème\tentrée\tpatient\tenregistré\trejoué\tdétail", "severity\tproblem\tleaf\tpatient\trecorded\treplayed\tdetail"}))
		for _, f := range r.Replayed {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", f.Severity, title(l, replayTitles, f.Kind), f.Event.Index, short(f.Patient), esc(f.Recorded), esc(f.Replayed), esc(f.Message))
		}
		tw.Flush()
	}
	if len(r.Alerts) > 0 {
		fmt.Fprintln(w, l.f(msg{"\nAlertes (à examiner ; ce ne sont pas des preuves de faute) :\n", "\nAlerts (to review; not proofs of wrongdoing):\n"}))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, l.f(msg{"gravité\talerte\tprofessionnel\tpériode\tnombre\tpatients\tentrées du journal", "severity\talert\tprofessional\tperiod\tcount\tpatients\tlog entries"}))
		for _, a := range r.Alerts {
			period := a.From.Local().Format("2006-01-02 15:04")
			if !a.To.Equal(a.From) {
				period += " → " + a.To.Local().Format("2006-01-02 15:04")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", a.Severity, title(l, alertTitles, a.Kind), esc(a.Actor), period, a.Count, a.Patients, refs(a.Events))
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	switch {
	case r.failed():
		fmt.Fprintln(w, l.f(msg{"ÉCHEC DE L'AUDIT : %d problème(s) dans le journal, %d décision(s) non confirmée(s) ; les preuves sont dans %s",
			"AUDIT FAILED: %d problem(s) in the log, %d decision(s) not confirmed; the evidence is in %s"}, len(r.Findings), len(r.Replayed), r.Evidence))
	case r.Events != nil:
		fmt.Fprintln(w, l.f(msg{"VÉRIFIÉ : journal cohérent et racines recalculées identiques aux racines signées ; toutes les décisions rejouées confirmées ; %d alerte(s) à examiner.",
			"VERIFIED: log consistent and recomputed roots equal to the signed roots; every replayed decision confirmed; %d alert(s) to review."}, len(r.Alerts)))
	default:
		fmt.Fprintln(w, l.f(msg{"VÉRIFIÉ : journal cohérent et racines recalculées identiques aux racines signées.",
			"VERIFIED: log consistent and recomputed roots equal to the signed roots."}))
	}
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
		p.l.f(msg{"entrées (%.0f/s)", "leaves (%.0f/s)"}, rate))
	p.shown = true
}

// done ends the bar's line; a nil bar does nothing.
func (p *progressBar) done() {
	if p != nil && p.shown {
		fmt.Fprintln(p.w)
	}
}

// withheld returns the finding of the leaves below size that neither
// expect nor accounted accounts for (nil if none): the regulator's full
// search served neither an event nor an erased placeholder for them.
func withheld(expect map[uint64]event.Hash, accounted map[uint64]bool, size uint64) *audit.Finding {
	var missing []uint64
	n := 0
	for i := range size {
		if _, ok := expect[i]; !ok && !accounted[i] {
			n++
			if len(missing) < 10 {
				missing = append(missing, i)
			}
		}
	}
	if n == 0 {
		return nil
	}
	first := missing[0]
	return &audit.Finding{Kind: audit.KindWithheld, Index: &first,
		Message: fmt.Sprintf("%d of the %d leaves of the log were served by the search neither as events nor as erased placeholders (leaves %v%s): events withheld from the audit", n, size, missing, map[bool]string{true: ", …"}[n > len(missing)])}
}
