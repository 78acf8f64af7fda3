// Package misuse finds, in the access events of a Vigie ledger, the signs
// of misuse that auditors look for: the events that deserve a human look,
// never a verdict.
//
// The input is decoded events ([event.Logged]: a verified body with its
// leaf index and commitment), in any order: access events (payload
// consent.AccessRecordFormat) and break-glass reviews (payload
// consent.ReviewRecordFormat, or its version 1); other kinds are ignored.
// The output is [Alert]s, each naming the events behind it by [event.Ref] (leaf index
// and commitment), so that anyone can fetch and verify them.
//
// The signals, each with thresholds in [Config]:
//
//   - [KindBreakGlassRate]: a professional who broke the glass (a purpose
//     among the emergency purposes of the rules the decision was made
//     with: BTG and ETREAT in the illustrative rules) many times;
//   - [KindBreakGlassUnreviewed]: an emergency access allowed and not yet
//     reviewed (no break-glass review that counts names it:
//     consent.FinalReview);
//   - [KindNoCareRelationship]: accesses or attempts by a professional
//     the calling service did not put in the patient's care team, outside
//     an emergency, and whom no directive of the patient names (treating
//     physician, extended rights, express consent);
//   - [KindBurst]: one professional, many distinct patients in a short
//     window;
//   - [KindOddHours]: accesses at night, outside emergencies;
//   - [KindRepeatedDenials]: one professional denied again and again in
//     a short window (probing);
//   - [KindOutsideMatrix]: attempts to read or write a document type the
//     access matrix does not permit to the professional's profession.
//
// Not covered, for want of data in the events: self-access, the same
// surname or address as the patient, VIP patients.
//
// Detect is a pure function of its input: the API (AuditService.ListAlerts)
// and `vigie audit` call it on the events they fetched.
package misuse

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/ledger/event"
)

// A Kind names a misuse signal. The values are stable.
type Kind string

const (
	KindBreakGlassRate       Kind = "break-glass-rate"
	KindBreakGlassUnreviewed Kind = "break-glass-unreviewed"
	KindNoCareRelationship   Kind = "no-care-relationship"
	KindBurst                Kind = "burst"
	KindOddHours             Kind = "odd-hours"
	KindRepeatedDenials      Kind = "repeated-denials"
	KindOutsideMatrix        Kind = "outside-matrix"
)

// Severity orders alerts for review: high first.
type Severity int

const (
	Low Severity = iota + 1
	Medium
	High
)

func (s Severity) String() string {
	switch s {
	case High:
		return "high"
	case Medium:
		return "medium"
	case Low:
		return "low"
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// MarshalText returns "high", "medium" or "low".
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses what MarshalText returns.
func (s *Severity) UnmarshalText(b []byte) error {
	for _, v := range []Severity{High, Medium, Low} {
		if v.String() == string(b) {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("unknown severity %q", b)
}

// Config holds the thresholds. The zero value of a field means its
// default; a negative value is an error.
type Config struct {
	// Rules returns the national rules a decision was made with (its
	// RulesVersion, whose hash must be its RulesHash), or nil and no error
	// when they cannot be had. An access is an emergency (break-glass)
	// access when its purpose is an emergency purpose of those rules
	// (consent.Rules.Emergency); with no rules it is not (vigie audit's
	// replay reports the rules it cannot confirm). An error stops Detect.
	// Required.
	Rules func(d *consent.Decision) (*consent.Rules, error)
	// BreakGlassPerActor: a professional with at least this many
	// break-glass accesses (allowed or not) is reported. Default 3.
	BreakGlassPerActor int
	// ReviewDelay: an allowed break-glass access is reported as not
	// reviewed once it is older than this at Now without a review.
	// Default 0: every one without a review.
	ReviewDelay time.Duration
	// Now is the time the events are judged at. Default: the time of the
	// latest event.
	Now time.Time
	// BurstPatients and BurstWindow: one professional accessing at least
	// BurstPatients distinct patients within BurstWindow. Defaults 20 and
	// 10 minutes.
	BurstPatients int
	BurstWindow   time.Duration
	// OddHoursStart and OddHoursEnd are the local hours, 0 to 23, of the
	// odd period [start, end), across midnight when start > end. Defaults
	// 22 and 6. Both 0 (the zero value) means the defaults; to disable
	// the signal set OddHoursMin to a large value.
	OddHoursStart, OddHoursEnd int
	// OddHoursMin: a professional with at least this many accesses at odd
	// hours, outside emergencies, is reported. Default 1.
	OddHoursMin int
	// Location is the time zone of odd hours. Default UTC (vigie audit
	// passes Europe/Paris).
	Location *time.Location
	// Denials and DenialWindow: a professional denied at least Denials
	// times within DenialWindow. Defaults 5 and 1 hour.
	Denials      int
	DenialWindow time.Duration
	// NoCareMin: a professional with at least this many accesses or
	// attempts without a care relationship is reported. Default 1.
	NoCareMin int
	// OutsideMatrixMin: a professional with at least this many attempts
	// outside the access matrix is reported. Default 1.
	OutsideMatrixMin int
}

// WithDefaults returns c with its zero fields set to their defaults, or
// an error if c is invalid: the thresholds Detect applies, for a reader
// to show along with the alerts.
func (c Config) WithDefaults() (Config, error) { return c.withDefaults() }

// withDefaults checks c and fills in the defaults.
func (c Config) withDefaults() (Config, error) {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"BreakGlassPerActor", int64(c.BreakGlassPerActor)}, {"ReviewDelay", int64(c.ReviewDelay)},
		{"BurstPatients", int64(c.BurstPatients)}, {"BurstWindow", int64(c.BurstWindow)},
		{"OddHoursMin", int64(c.OddHoursMin)}, {"Denials", int64(c.Denials)}, {"DenialWindow", int64(c.DenialWindow)},
		{"NoCareMin", int64(c.NoCareMin)}, {"OutsideMatrixMin", int64(c.OutsideMatrixMin)},
	} {
		if f.v < 0 {
			return c, fmt.Errorf("misuse: %s must not be negative", f.name)
		}
	}
	if c.Rules == nil {
		return c, errors.New("misuse: Rules is required")
	}
	if c.OddHoursStart < 0 || c.OddHoursStart > 23 || c.OddHoursEnd < 0 || c.OddHoursEnd > 23 {
		return c, errors.New("misuse: OddHoursStart and OddHoursEnd must be hours from 0 to 23")
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.BreakGlassPerActor, 3)
	def(&c.BurstPatients, 20)
	def(&c.OddHoursMin, 1)
	def(&c.Denials, 5)
	def(&c.NoCareMin, 1)
	def(&c.OutsideMatrixMin, 1)
	if c.BurstWindow == 0 {
		c.BurstWindow = 10 * time.Minute
	}
	if c.DenialWindow == 0 {
		c.DenialWindow = time.Hour
	}
	if c.OddHoursStart == 0 && c.OddHoursEnd == 0 {
		c.OddHoursStart, c.OddHoursEnd = 22, 6
	}
	if c.Location == nil {
		c.Location = time.UTC
	}
	return c, nil
}

// Threshold is what the rule of a [Kind] measures against, under a
// Config, for a reader to say it beside the alerts.
type Threshold struct {
	// Min is the count the rule's alerts reach: events, or distinct
	// patients for a burst. 0 for a rule without one.
	Min int
	// Window is the width of the rule's window (bursts, repeated
	// denials); 0 for a rule without one.
	Window time.Duration
	// OddHoursStart, OddHoursEnd and Location are the odd hours, for
	// KindOddHours only (Location nil otherwise).
	OddHoursStart, OddHoursEnd int
	Location                   *time.Location
}

// Threshold returns the threshold of the rule of kind k under c with its
// defaults ([Config.WithDefaults]); the zero Threshold for a kind without
// one or unknown.
func (c Config) Threshold(k Kind) (Threshold, error) {
	c, err := c.withDefaults()
	if err != nil {
		return Threshold{}, err
	}
	switch k {
	case KindBreakGlassRate:
		return Threshold{Min: c.BreakGlassPerActor}, nil
	case KindBurst:
		return Threshold{Min: c.BurstPatients, Window: c.BurstWindow}, nil
	case KindRepeatedDenials:
		return Threshold{Min: c.Denials, Window: c.DenialWindow}, nil
	case KindOddHours:
		return Threshold{Min: c.OddHoursMin, OddHoursStart: c.OddHoursStart, OddHoursEnd: c.OddHoursEnd, Location: c.Location}, nil
	case KindNoCareRelationship:
		return Threshold{Min: c.NoCareMin}, nil
	case KindOutsideMatrix:
		return Threshold{Min: c.OutsideMatrixMin}, nil
	}
	return Threshold{}, nil
}

// An Alert is a sign of misuse, with the events behind it.
type Alert struct {
	Kind     Kind     `json:"kind"`
	Severity Severity `json:"severity"`
	// Actor is the professional's RPPS number, Organization the FINESS
	// number of the organisation of the first event.
	Actor        string `json:"actor_rpps"`
	Organization string `json:"organization,omitempty"`
	// Patient is the patient's pseudonym, for an alert about one access.
	Patient *event.Hash `json:"patient,omitempty"`
	// From and To bound the events' decision times.
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	Count int       `json:"count"`
	// Patients is the number of distinct patients among the events.
	Patients int         `json:"patients"`
	Events   []event.Ref `json:"events"`
	// Message says what was seen, in English, without identifiers of
	// patients.
	Message string `json:"message"`
}

// Result is what [Detect] found.
type Result struct {
	Alerts []Alert
	// Accesses and Reviews count the events read; Unreadable those of
	// their kinds whose payload did not decode (ignored).
	Accesses, Reviews, Unreadable int
}

// access is an access event, decoded.
type access struct {
	ref      event.Ref
	patient  event.Hash
	req      consent.Request
	dec      consent.Decision
	time     time.Time // decision time
	breakGls bool
}

// Detect computes the alerts of events under cfg. It fails for an
// invalid cfg, or when cfg.Rules does.
func Detect(events []event.Logged, cfg Config) (*Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	res := &Result{}
	var accesses []access
	type review struct {
		index uint64
		r     consent.ReviewRecord
	}
	reviews := map[event.Hash][]review{}
	var latest time.Time
	for _, e := range events {
		if e.Body == nil {
			continue
		}
		switch e.Body.Kind {
		case event.KindAccess:
			req, d, err := consent.ParseAccessRecord(e.Body.Payload)
			if err != nil {
				res.Unreadable++
				continue
			}
			res.Accesses++
			rules, err := cfg.Rules(&d)
			if err != nil {
				return nil, fmt.Errorf("misuse: national rules version %d: %w", d.RulesVersion, err)
			}
			a := access{ref: e.Ref, patient: e.Body.Patient, req: req, dec: d, time: d.Time,
				breakGls: rules != nil && rules.Emergency(req.Purpose)}
			accesses = append(accesses, a)
			if a.time.After(latest) {
				latest = a.time
			}
		case event.KindBreakGlassReview:
			r, err := consent.ParseReviewRecord(e.Body.Payload)
			if err != nil {
				res.Unreadable++
				continue
			}
			c, err := event.ParseHash(r.Event)
			if err != nil {
				res.Unreadable++
				continue
			}
			res.Reviews++
			reviews[c] = append(reviews[c], review{e.Index, r})
		}
		if e.Body.Time.After(latest) {
			latest = e.Body.Time
		}
	}
	if cfg.Now.IsZero() {
		cfg.Now = latest
	}
	slices.SortFunc(accesses, func(a, b access) int {
		return cmp.Or(a.time.Compare(b.time), cmp.Compare(a.ref.Index, b.ref.Index))
	})
	byActor := map[string][]access{}
	var actors []string
	for _, a := range accesses {
		k := a.req.Actor.RPPS.String()
		if byActor[k] == nil {
			actors = append(actors, k)
		}
		byActor[k] = append(byActor[k], a)
	}
	slices.Sort(actors)
	for _, k := range actors {
		as := byActor[k]
		res.Alerts = append(res.Alerts, perActor(as, cfg)...)
		res.Alerts = append(res.Alerts, windows(KindBurst, High, as, func(a *access) bool { return true }, cfg.BurstPatients, cfg.BurstWindow, true,
			func(n, patients int) string {
				return count(n, "access", "accesses") + " to " + count(patients, "distinct patient", "distinct patients") + " within " + cfg.BurstWindow.String()
			})...)
		res.Alerts = append(res.Alerts, windows(KindRepeatedDenials, Medium, as, func(a *access) bool { return a.dec.Effect == consent.Deny }, cfg.Denials, cfg.DenialWindow, false,
			func(n, patients int) string {
				return count(n, "denied access", "denied accesses") + " (" + count(patients, "patient", "patients") + ") within " + cfg.DenialWindow.String()
			})...)
	}
	for _, a := range accesses {
		rs := reviews[a.ref.Commitment]
		slices.SortFunc(rs, func(a, b review) int { return cmp.Compare(a.index, b.index) }) // log order
		var inOrder []consent.ReviewRecord
		for _, r := range rs {
			inOrder = append(inOrder, r.r)
		}
		_, reviewed := consent.FinalReview(inOrder)
		if a.breakGls && a.dec.Effect == consent.Allow && !reviewed && cfg.Now.Sub(a.time) >= cfg.ReviewDelay {
			al := newAlert(KindBreakGlassUnreviewed, High, []access{a})
			p := a.patient
			al.Patient = &p
			al.Message = fmt.Sprintf("an emergency (%s) access allowed on %s has not been reviewed", a.req.Purpose, a.time.UTC().Format(time.RFC3339))
			res.Alerts = append(res.Alerts, al)
		}
	}
	slices.SortStableFunc(res.Alerts, func(a, b Alert) int {
		return cmp.Or(cmp.Compare(b.Severity, a.Severity), a.From.Compare(b.From), cmp.Compare(a.Actor, b.Actor), cmp.Compare(a.Kind, b.Kind))
	})
	return res, nil
}

// newAlert returns an alert about the accesses as.
func newAlert(k Kind, s Severity, as []access) Alert {
	al := Alert{Kind: k, Severity: s, Actor: as[0].req.Actor.RPPS.String(), Organization: as[0].req.Actor.Organization.String(),
		From: as[0].time, To: as[0].time, Count: len(as)}
	patients := map[event.Hash]bool{}
	for _, a := range as {
		al.Events = append(al.Events, a.ref)
		patients[a.patient] = true
		if a.time.Before(al.From) {
			al.From = a.time
		}
		if a.time.After(al.To) {
			al.To = a.time
		}
	}
	al.Patients = len(patients)
	return al
}

// perActor returns the alerts that count one professional's accesses of
// a kind: break-glass, without care relationship, at odd hours, outside
// the matrix.
func perActor(as []access, cfg Config) []Alert {
	var bg, noCare, odd, matrix []access
	for _, a := range as {
		if a.breakGls {
			bg = append(bg, a)
		} else {
			if noCareRelationship(&a) {
				noCare = append(noCare, a)
			}
			if oddHour(a.time, cfg) {
				odd = append(odd, a)
			}
		}
		if a.dec.Effect == consent.Deny && hasGround(&a.dec, consent.SourceRule, consent.RuleMatrix, consent.Deny) {
			matrix = append(matrix, a)
		}
	}
	var out []Alert
	add := func(k Kind, s Severity, list []access, threshold int, what func(n int) string) {
		if len(list) == 0 || len(list) < threshold {
			return
		}
		al := newAlert(k, s, list)
		al.Message = what(len(list)) + " (" + count(al.Patients, "patient", "patients") + ")"
		out = append(out, al)
	}
	add(KindBreakGlassRate, Medium, bg, cfg.BreakGlassPerActor, func(n int) string {
		return count(n, "emergency (break-glass) access", "emergency (break-glass) accesses")
	})
	add(KindNoCareRelationship, Medium, noCare, cfg.NoCareMin, func(n int) string {
		return count(n, "access or attempt", "accesses or attempts") + " outside the care team, not named by the patient, outside an emergency"
	})
	add(KindOddHours, Low, odd, cfg.OddHoursMin, func(n int) string {
		return count(n, "access", "accesses") + fmt.Sprintf(" between %02d:00 and %02d:00 (%s), outside emergencies", cfg.OddHoursStart, cfg.OddHoursEnd, cfg.Location)
	})
	add(KindOutsideMatrix, Low, matrix, cfg.OutsideMatrixMin, func(n int) string {
		return count(n, "attempt", "attempts") + " on document types the access matrix does not permit to the profession"
	})
	return out
}

// noCareRelationship reports whether an access was made by a professional
// outside the care team, whom no directive of the patient names, and not
// as a SAMU regulator.
func noCareRelationship(a *access) bool {
	if a.req.Actor.CareTeam {
		return false
	}
	for _, g := range a.dec.Grounds {
		if g.Effect != consent.Allow {
			continue
		}
		switch {
		case g.Source == consent.SourceRule && g.Kind == consent.RuleSAMURegulator:
			return false
		case g.Source == consent.SourceDirective:
			switch consent.DirectiveKind(g.Kind) {
			case consent.TreatingPhysician, consent.ExtendedRights, consent.AllowProfessional:
				return false
			}
		}
	}
	return true
}

func hasGround(d *consent.Decision, src consent.GroundSource, kind string, eff consent.Effect) bool {
	for _, g := range d.Grounds {
		if g.Source == src && g.Kind == kind && g.Effect == eff {
			return true
		}
	}
	return false
}

// oddHour reports whether t falls in the odd hours of cfg.
func oddHour(t time.Time, cfg Config) bool {
	h := t.In(cfg.Location).Hour()
	if cfg.OddHoursStart <= cfg.OddHoursEnd {
		return h >= cfg.OddHoursStart && h < cfg.OddHoursEnd
	}
	return h >= cfg.OddHoursStart || h < cfg.OddHoursEnd
}

// windows finds, among one professional's accesses (sorted by time) that
// match keep, the windows of at most width holding at least threshold of
// them (of distinct patients when distinct), merges overlapping windows, and
// returns one alert per merged window.
func windows(k Kind, s Severity, all []access, keep func(*access) bool, threshold int, width time.Duration, distinct bool, message func(n, patients int) string) []Alert {
	var as []access
	for i := range all {
		if keep(&all[i]) {
			as = append(as, all[i])
		}
	}
	var out []Alert
	count := map[event.Hash]int{} // patients in the window
	lo := 0
	mergedLo, mergedHi := -1, -1 // the current merged window, [lo, hi]
	flush := func() {
		if mergedLo >= 0 {
			al := newAlert(k, s, as[mergedLo:mergedHi+1])
			al.Message = message(al.Count, al.Patients)
			out = append(out, al)
		}
		mergedLo, mergedHi = -1, -1
	}
	for hi := range as {
		count[as[hi].patient]++
		for as[hi].time.Sub(as[lo].time) > width {
			p := as[lo].patient
			if count[p]--; count[p] == 0 {
				delete(count, p)
			}
			lo++
		}
		n := hi - lo + 1
		if distinct {
			n = len(count)
		}
		if n >= threshold {
			if mergedLo >= 0 && lo > mergedHi {
				flush()
			}
			if mergedLo < 0 {
				mergedLo = lo
			}
			mergedHi = hi
		}
	}
	flush()
	return out
}

// count says "1 access" or "2 accesses".
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
