package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vigie-sante/vigie/api/client"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/scrutiny"
	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/event"
)

// runVerify is vigie verify: a patient fetches their history from the
// public API and verifies everything (package ledger/audit), with the log's
// key pinned on first use; or a receipt is checked against the log.
func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("verify", stderr)
	var c remoteConfig
	c.flags(fs)
	c.anonymousPublic = true
	receipt := fs.String("receipt", "", "file holding a receipt (its signed note, or the base64 the API returns) to check against the log once its merge delay has passed")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	rep, err := verifyCommand(ctx, &c, *receipt, time.Now, stderr)
	return finish(&c, "verify", rep, err, stdout, stderr)
}

// verifyReport is what vigie verify prints, as JSON or as a table.
type verifyReport struct {
	Verdict  string          `json:"verdict"` // "verified" or "failed"
	Server   string          `json:"server"`
	Log      *logSummary     `json:"log,omitempty"`
	Previous *uint64         `json:"previous_checkpoint_size,omitempty"`
	FirstUse bool            `json:"key_pinned_now,omitempty"`
	Events   []eventRow      `json:"events"`
	Erased   int             `json:"erased,omitempty"`
	Pending  int             `json:"pending,omitempty"`
	Receipt  *receiptSummary `json:"receipt,omitempty"`
	Findings []audit.Finding `json:"findings"`
	Evidence string          `json:"evidence_file,omitempty"`

	// OriginChanged says the server now serves another log than the one
	// whose key the state pinned: a new log, which succeeds the old one.
	OriginChanged *originChange `json:"origin_changed,omitempty"`

	lang  lang
	notes [][]byte // the checkpoints seen, for the evidence
}

type originChange struct {
	Pinned    string `json:"pinned_origin"`
	Served    string `json:"served_origin"`
	ServedKey string `json:"served_checkpoint_key"`
	State     string `json:"state_file"`
}

type logSummary struct {
	Origin         string     `json:"origin"`
	CheckpointSize uint64     `json:"checkpoint_size"`
	Root           event.Hash `json:"root"`
	Key            string     `json:"checkpoint_key"`
}

type receiptSummary struct {
	LeafIndex  uint64     `json:"leaf_index"`
	Commitment event.Hash `json:"commitment"`
	Time       time.Time  `json:"time"`
	Deadline   time.Time  `json:"deadline"`
	Status     string     `json:"status"`
}

func verifyCommand(ctx context.Context, c *remoteConfig, receiptFile string, now func() time.Time, stderr io.Writer) (*verifyReport, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if c.token == "" && receiptFile == "" {
		return nil, usagef("a patient's token is needed to verify their history (--token, --token-file or VIGIE_TOKEN), or a receipt to check (--receipt)")
	}
	var receipt []byte
	if receiptFile != "" {
		b, err := os.ReadFile(receiptFile)
		if err != nil {
			return nil, usagef("--receipt: %v", err)
		}
		if receipt, err = audit.ReadReceipt(b); err != nil {
			return nil, usagef("--receipt: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cl, st, keys, err := c.connect(ctx, "verify", stderr)
	if err != nil {
		return nil, err
	}
	rep := &verifyReport{Server: cl.BaseURL(), FirstUse: keys.firstUse, lang: langOf(c.lang), Events: []eventRow{}, Findings: []audit.Finding{}}
	saved := st.savedState()
	newest := saved.Checkpoint
	var hr *audit.HistoryReport
	if c.token != "" {
		opts := saved.Options(&audit.Pinning{Keys: keys.Keys})
		opts.Now = now
		hr, err = audit.VerifyHistory(ctx, historySource{cl}, opts)
		if err != nil {
			return nil, err
		}
		rep.Findings = append(rep.Findings, hr.Findings...)
		rep.OriginChanged = originChanged(ctx, cl, st, keys, hr.Findings)
		rep.Erased = hr.Erased
		if len(hr.CheckpointNote) > 0 {
			rep.notes = append(rep.notes, hr.CheckpointNote)
		}
		if hr.LatestNote != nil {
			rep.notes = append(rep.notes, hr.LatestNote)
		}
		switch {
		case hr.Latest != nil:
			rep.Log = &logSummary{Origin: keys.origin, CheckpointSize: hr.Latest.Size, Root: hr.Latest.Hash, Key: keys.checkpoint}
		case len(hr.CheckpointNote) > 0:
			rep.Log = &logSummary{Origin: keys.origin, CheckpointSize: hr.Checkpoint.Size, Root: hr.Checkpoint.Hash, Key: keys.checkpoint}
		}
		if hr.Previous != nil {
			rep.Previous = &hr.Previous.Size
		}
		seqOf := map[event.Hash]uint64{}
		for _, e := range hr.Events {
			seqOf[e.Commitment] = e.Seq
		}
		// The rules each decision was made with (for labels and emergency
		// flags), found as vigie audit finds them.
		rules := scrutiny.NewRulesCache(rulesSource(cl))
		finals := finalReviews(hr.Events)
		for i := range hr.Events {
			row := describe(ctx, rep.lang, rules, &hr.Events[i], seqOf, finals)
			if row.Proof == audit.Pending {
				rep.Pending++
			}
			rep.Events = append(rep.Events, row)
		}
		nameRows(ctx, cl, rep.lang, rep.Events)
		if n := hr.NewestNote(); len(n) > 0 {
			newest = n
		}
	}
	if receipt != nil {
		rr, err := audit.CheckReceipt(ctx, cl, keys.Keys, receipt, newest, now, 500*time.Millisecond)
		if err != nil {
			return nil, err
		}
		rep.Findings = append(rep.Findings, rr.Findings...)
		rep.Receipt = &receiptSummary{LeafIndex: rr.Receipt.Index, Commitment: rr.Receipt.Commitment, Time: rr.Receipt.Time, Deadline: rr.Receipt.Deadline, Status: rr.Status}
		if rr.LatestNote != nil {
			rep.notes = append(rep.notes, rr.LatestNote)
			newest = rr.LatestNote
			if rep.Log == nil {
				rep.Log = &logSummary{Origin: keys.origin, CheckpointSize: rr.Latest.Size, Root: rr.Latest.Hash, Key: keys.checkpoint}
			}
		}
	}
	if len(rep.Findings) > 0 {
		rep.Verdict = "failed"
		return rep, nil
	}
	rep.Verdict = "verified"
	// Save what was verified: the next run checks the log against it.
	keys.pin(st, now())
	next := saved
	if hr != nil {
		next = saved.Next(hr)
	}
	if len(newest) > 0 {
		next.Checkpoint = newest // the receipt's checkpoint may be newer
	}
	st.setSavedState(next, now())
	if err := st.save(); err != nil {
		return nil, err
	}
	return rep, nil
}

// reporter is a report vigie verify or vigie audit prints.
type reporter interface {
	failed() bool
	evidence() any
	setEvidence(path string)
	table(w io.Writer)
}

func (r *verifyReport) failed() bool            { return r.Verdict != "verified" }
func (r *verifyReport) setEvidence(path string) { r.Evidence = path }
func (r *verifyReport) evidence() any {
	return map[string]any{"command": "vigie verify", "server": r.Server, "log": r.Log, "findings": r.Findings, "checkpoints": r.notes, "receipt": r.Receipt}
}

// finish prints a report and returns the exit code: 0 verified, 1 a
// verification failure (with the evidence written to a file it names), 2
// a usage, network or server error.
func finish[R reporter](c *remoteConfig, command string, rep R, err error, stdout, stderr io.Writer) int {
	if err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "vigie %s: %v\n", command, err)
			return exitUsage
		}
		// The error may quote the server's words.
		var ae *client.Error
		if errors.As(err, &ae) || errors.Is(err, context.DeadlineExceeded) {
			fmt.Fprintf(stderr, "vigie %s: the server could not be asked: %s\n", command, esc(err.Error()))
		} else {
			fmt.Fprintf(stderr, "vigie %s: %s\n", command, esc(err.Error()))
		}
		return exitUsage
	}
	code := exitOK
	if rep.failed() {
		code = exitFailure
		path, err := c.writeEvidence(command, time.Now(), rep.evidence())
		if err != nil {
			fmt.Fprintf(stderr, "vigie %s: %v\n", command, err)
		} else {
			rep.setEvidence(path)
		}
	}
	if c.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "vigie %s: %v\n", command, err)
			return exitUsage
		}
		return code
	}
	rep.table(stdout)
	return code
}

// originChanged returns, when the log's checkpoints do not verify under
// the key pinned before, whether the server names another log than the
// pinned one now (GET /v1/log/key): a log under a new origin, not a
// forgery of the old one. Nil otherwise.
func originChanged(ctx context.Context, cl *client.Client, st *stateFile, keys *logKeys, fs []audit.Finding) *originChange {
	if keys.firstUse || !slices.ContainsFunc(fs, func(f audit.Finding) bool { return f.Kind == audit.KindSignature }) {
		return nil
	}
	pub, err := cl.PublicKeys(ctx)
	if err != nil || pub.Origin == "" || pub.Origin == keys.origin {
		return nil
	}
	return &originChange{Pinned: keys.origin, Served: pub.Origin, ServedKey: pub.CheckpointKey, State: st.path}
}

func (r *verifyReport) table(w io.Writer) {
	l := r.lang
	if oc := r.OriginChanged; oc != nil {
		fmt.Fprintln(w, l.t("cli.verify.originChanged", "pinned", esc(oc.Pinned), "served", esc(oc.Served), "key", esc(oc.ServedKey), "state", esc(oc.State)))
	}
	if r.Log != nil {
		fmt.Fprintln(w, l.t("cli.verify.log", "origin", esc(r.Log.Origin), "size", r.Log.CheckpointSize, "key", esc(r.Log.Key)))
	}
	if len(r.Events) > 0 {
		fmt.Fprintf(w, "\n%s\n\n", l.t("cli.verify.history"))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, l.t("cli.verify.columns"))
		for _, e := range r.Events {
			date := ""
			if e.Time != nil {
				date = e.Time.Local().Format("2006-01-02 15:04")
			}
			outcome := e.Outcome
			if e.Proof == audit.Pending {
				outcome = strings.TrimSpace(outcome + " " + l.t("cli.verify.promised"))
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Seq, date, esc(e.Who), esc(e.What), esc(e.Why), esc(outcome))
		}
		tw.Flush()
	}
	if r.Receipt != nil {
		fmt.Fprintln(w, "\n"+l.t("cli.verify.receipt", "index", r.Receipt.LeafIndex, "commitment", r.Receipt.Commitment,
			"deadline", r.Receipt.Deadline.Local().Format(time.DateTime), "status", receiptStatus(l, r.Receipt.Status)))
	}
	for _, f := range r.Findings {
		switch {
		case f.Kind == audit.KindUnreadable && f.Seq != 0:
			fmt.Fprintln(w, "\n"+l.t("cli.verify.unreadableSeq", "seq", f.Seq))
		case f.Kind == audit.KindUnreadable:
			fmt.Fprintln(w, "\n"+l.t("cli.verify.unreadable"))
		}
	}
	if len(r.Findings) > 0 {
		fmt.Fprintln(w, "\n"+l.t("cli.verify.problems"))
		printFindings(w, l, r.Findings)
	}
	fmt.Fprintln(w)
	if r.failed() {
		fmt.Fprintln(w, l.t("cli.verify.failed", "n", len(r.Findings), "evidence", r.Evidence))
		return
	}
	var parts []string
	if r.Log != nil && len(r.Events) > 0 {
		parts = append(parts, l.t("cli.verify.events", "n", len(r.Events)))
		if r.Pending > 0 {
			parts[0] = l.t("cli.verify.eventsPending", "n", len(r.Events), "pending", r.Pending)
		}
		parts = append(parts, l.t("cli.verify.chain"))
		if r.Erased > 0 {
			parts = append(parts, l.t("cli.verify.erased", "n", r.Erased))
		}
	}
	if r.Previous != nil {
		parts = append(parts, l.t("cli.verify.consistent", "previous", *r.Previous, "size", r.Log.CheckpointSize))
	} else if r.Log != nil {
		parts = append(parts, l.t("cli.verify.firstUse"))
	}
	if r.Receipt != nil {
		parts = append(parts, receiptStatus(l, r.Receipt.Status))
	}
	fmt.Fprintln(w, l.t("cli.verify.verified", "parts", strings.Join(parts, " ; ")))
}

func receiptStatus(l lang, s string) string {
	switch s {
	case audit.Included:
		return l.t("cli.receipt.included")
	case audit.Pending:
		return l.t("cli.receipt.pending")
	}
	return l.t("cli.receipt.notHonoured")
}

// printFindings lists findings, each with its title and details.
func printFindings(w io.Writer, l lang, fs []audit.Finding) {
	for _, f := range fs {
		where := ""
		switch {
		case f.Seq != 0 && f.Index != nil:
			where = l.t("cli.finding.eventAndLeaf", "seq", f.Seq, "index", *f.Index)
		case f.Seq != 0:
			where = l.t("cli.finding.event", "seq", f.Seq)
		case f.Index != nil:
			where = l.t("cli.finding.leaf", "index", *f.Index)
		}
		fmt.Fprintf(w, "  ✗ %s%s [%s]\n      %s\n", title(l, findingTitles, f.Kind), where, esc(string(f.Kind)), esc(f.Message))
	}
}

// esc is how a report shows text that comes from the server or the
// ledger (names, comments, justifications, labels, messages): an event
// recorded before the free-text rule, or a hostile server, must not move
// the cursor, start a line or a row, or reorder what follows.
func esc(s string) string { return consent.EscapeText(s) }
