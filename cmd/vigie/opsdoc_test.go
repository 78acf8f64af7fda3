package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestOperationsDocListsEveryFlag: docs/operations.md's configuration
// reference has a table row for every flag of every command, with its
// VIGIE_ variable, and nothing else; and the document (but for its
// Monitoring section, written elsewhere) names no flag or variable that
// no command has.
func TestOperationsDocListsEveryFlag(t *testing.T) {
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	ref := mdSection(t, doc, "## Configuration reference")

	// The commands an operator runs, by the heading of their table.
	headings := map[string][][]string{"vigie bench": {{"bench", "record"}, {"bench", "api"}}, "vigie directory import": {{"directory", "import"}},
		"vigie enrol": {{"enrol", "issue"}, {"enrol", "revoke"}}}
	for name := range commands {
		if name != "bench" && name != "directory" && name != "enrol" {
			headings["vigie "+name] = [][]string{{name}}
		}
	}
	known := map[string]bool{"--help": true, "--version": true}
	for heading, cmds := range headings {
		var flags []string
		for _, args := range cmds {
			got := helpFlags(t, args)
			if flags != nil && !slices.Equal(flags, got) {
				t.Errorf("%s: the flags of %q differ from its sibling's; the doc has one table", heading, args)
			}
			flags = got
		}
		for _, f := range flags {
			known[f] = true
		}
		sec := mdSection(t, ref, "### `"+heading+"`")
		var rows []string
		for _, m := range docRow.FindAllStringSubmatch(sec, -1) {
			if want := envName(strings.TrimPrefix(m[1], "--")); m[2] != want {
				t.Errorf("%s: %s's variable is %s in the doc, want %s", heading, m[1], m[2], want)
			}
			rows = append(rows, m[1])
		}
		slices.Sort(rows)
		for _, f := range flags {
			if _, ok := slices.BinarySearch(rows, f); !ok {
				t.Errorf("%s: %s (%s) is missing from docs/operations.md's configuration reference", heading, f, envName(strings.TrimPrefix(f, "--")))
			}
		}
		for i, f := range rows {
			if !slices.Contains(flags, f) {
				t.Errorf("%s: the doc has a row for %s, which the command does not have", heading, f)
			}
			if i > 0 && rows[i-1] == f {
				t.Errorf("%s: two rows for %s", heading, f)
			}
		}
	}

	// The whole document, but for the Monitoring section.
	mon := mdSection(t, doc, "## Monitoring")
	rest := strings.Replace(doc, mon, "", 1)
	for _, m := range docFlag.FindAllStringSubmatch(rest, -1) {
		if !known[m[1]] {
			t.Errorf("docs/operations.md names %s, which no command has", m[1])
		}
	}
	for _, v := range docVar.FindAllString(rest, -1) {
		if !known["--"+strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(v, "VIGIE_")), "_", "-")] {
			t.Errorf("docs/operations.md names %s, the variable of no flag", v)
		}
	}
}

var (
	docRow  = regexp.MustCompile("(?m)^\\| `(--[a-z0-9-]+)` \\| `(VIGIE_[A-Z0-9_]+)` \\|")
	docFlag = regexp.MustCompile(`(?:^|[^A-Za-z0-9-])(--[a-z][a-z0-9-]*)`)
	docVar  = regexp.MustCompile(`VIGIE_[A-Z0-9_]*[A-Z0-9]`)
	// helpLine is a flag's line in "vigie <command> --help".
	helpLine = regexp.MustCompile(`(?m)^  (--[a-z0-9-]+) \[(VIGIE_[A-Z0-9_]+)\]$`)
)

// helpFlags returns the flags "vigie <args> --help" lists, sorted.
func helpFlags(t *testing.T, args []string) []string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), append(slices.Clone(args), "--help"), &stdout, &stderr); code != exitOK {
		t.Fatalf("vigie %s --help: exit %d\n%s", strings.Join(args, " "), code, stderr.String())
	}
	var flags []string
	for _, m := range helpLine.FindAllStringSubmatch(stderr.String(), -1) {
		if want := envName(strings.TrimPrefix(m[1], "--")); m[2] != want {
			t.Errorf("vigie %s --help: %s's variable is %s, want %s", strings.Join(args, " "), m[1], m[2], want)
		}
		flags = append(flags, m[1])
	}
	slices.Sort(flags)
	return flags
}

// mdSection returns the section of a Markdown text under heading (a line
// of its own), up to the next heading of the same level or above.
func mdSection(t *testing.T, text, heading string) string {
	t.Helper()
	i := strings.Index(text, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("docs/operations.md has no heading %q", heading)
	}
	level := strings.Index(heading, " ")
	body := text[i+1+len(heading)+1:]
	for j := 0; j < len(body); {
		k := strings.Index(body[j:], "\n#")
		if k < 0 {
			break
		}
		line := body[j+k+1:]
		if n := len(line) - len(strings.TrimLeft(line, "#")); n <= level && strings.HasPrefix(line[n:], " ") {
			return text[i+1 : i+1+len(heading)+1+j+k]
		}
		j += k + 1
	}
	return text[i+1:]
}
