// Command vulndb builds the offline Go vulnerability database that
// `make lint` hands to govulncheck (`govulncheck -db file:///...`), from the
// OSV entries of a pinned golang.org/x/vulndb module (its data/osv folder).
// scripts/vulncheck.sh names that version and runs it:
//
//	go run ./scripts/vulndb -osv $VULNDB/data/osv -out DIR [-modified TIME]
//
// It writes the layout of the [Go vulnerability database API] (v1), which
// govulncheck reads from a local folder: index/db.json, index/modules.json, index/vulns.json
// and ID/GO-YYYY-NNNN.json, one file per entry, holding the entry's bytes as
// published (compacted).
//
// [Go vulnerability database API]: https://go.dev/security/vuln/database#api
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/semver"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fset := flag.NewFlagSet("vulndb", flag.ContinueOnError)
	fset.SetOutput(stderr)
	osvDir := fset.String("osv", "", "folder of OSV entries (golang.org/x/vulndb's data/osv)")
	out := fset.String("out", "", "folder to write the database to (created; must not hold a database)")
	modified := fset.String("modified", "", "RFC 3339 time the database was last modified, when later than every entry's (for example the vulndb module version's time)")
	if err := fset.Parse(args); err != nil {
		return 2
	}
	if *osvDir == "" || *out == "" || fset.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: vulndb -osv DIR -out DIR [-modified TIME]")
		return 2
	}
	var floor time.Time
	if *modified != "" {
		t, err := time.Parse(time.RFC3339, *modified)
		if err != nil {
			fmt.Fprintln(stderr, "vulndb: -modified: not an RFC 3339 time")
			return 2
		}
		floor = t
	}
	db, err := Build(os.DirFS(*osvDir), floor)
	if err == nil {
		err = db.Write(*out)
	}
	if err != nil {
		fmt.Fprintf(stderr, "vulndb: %v\n", err)
		return 1
	}
	return 0
}

// Database is a Go vulnerability database in the v1 layout: the contents of
// each file, by slash-separated path relative to the database's root.
type Database map[string][]byte

// idPattern is the form of the Go vulnerability database's identifiers.
var idPattern = regexp.MustCompile(`^GO-[0-9]{4}-[0-9]{4,}$`)

// entry is the part of an OSV entry that the indexes need.
type entry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
	Affected []struct {
		Package struct {
			Name string `json:"name"`
		} `json:"package"`
		Ranges []osvRange `json:"ranges"`
	} `json:"affected"`
}

type osvRange struct {
	Type   string `json:"type"`
	Events []struct {
		Introduced string `json:"introduced,omitempty"`
		Fixed      string `json:"fixed,omitempty"`
	} `json:"events"`
}

type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Fixed    string    `json:"fixed,omitempty"`
}

type module struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

type vuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
}

// Build makes the database from the OSV entries at the root of osv, one
// GO-YYYY-NNNN.json file each (other files are ignored). The database's
// modification time is the latest of the entries' and floor.
//
// An entry that is not valid JSON, whose id is not its file's name, or that
// names no module is an error naming the file.
func Build(osv fs.FS, floor time.Time) (Database, error) {
	names, err := fs.Glob(osv, "GO-*.json")
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, errors.New("no GO-*.json entry in the OSV folder")
	}
	db := Database{}
	modules := map[string]*module{}
	var vulns []vuln
	latest := floor.UTC()
	for _, name := range names {
		b, err := fs.ReadFile(osv, name)
		if err != nil {
			return nil, err
		}
		var e entry
		if err := json.Unmarshal(b, &e); err != nil {
			return nil, fmt.Errorf("%s: not an OSV entry: %v", name, err)
		}
		if !idPattern.MatchString(e.ID) || e.ID+".json" != name {
			return nil, fmt.Errorf("%s: field id does not match the file name", name)
		}
		if len(e.Affected) == 0 {
			return nil, fmt.Errorf("%s: field affected is empty", name)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, b); err != nil {
			return nil, fmt.Errorf("%s: %v", name, err)
		}
		db[path.Join("ID", name)] = compact.Bytes()
		vulns = append(vulns, vuln{ID: e.ID, Modified: e.Modified.UTC(), Aliases: e.Aliases})
		if e.Modified.After(latest) {
			latest = e.Modified.UTC()
		}
		for _, a := range e.Affected {
			p := a.Package.Name
			if p == "" {
				return nil, fmt.Errorf("%s: field affected.package.name is empty", name)
			}
			m := modules[p]
			if m == nil {
				m = &module{Path: p, Vulns: []moduleVuln{}}
				modules[p] = m
			}
			m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified.UTC(), Fixed: latestFixed(a.Ranges)})
		}
	}
	// names is sorted, so vulns and each module's vulns are sorted by id.
	paths := make([]string, 0, len(modules))
	for p := range modules {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	index := make([]*module, 0, len(paths))
	for _, p := range paths {
		index = append(index, modules[p])
	}
	for file, v := range map[string]any{
		"index/db.json": struct {
			Modified time.Time `json:"modified"`
		}{latest},
		"index/modules.json": index,
		"index/vulns.json":   vulns,
	} {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		db[file] = b
	}
	return db, nil
}

// latestFixed is the version from which a module is no longer affected
// according to ranges, or "" when there is none (never fixed, or introduced
// again after the last fix): the "fixed" field of modules.json, which lets
// govulncheck skip entries that cannot affect the version it checks. It
// follows x/vulndb's osvutils.LatestFixed. OSV versions have no "v" prefix.
func latestFixed(ranges []osvRange) string {
	before := func(a, b string) bool { return semver.Compare("v"+a, "v"+b) < 0 }
	latest := ""
	for _, r := range ranges {
		if r.Type != "SEMVER" {
			continue
		}
		for _, e := range r.Events {
			if e.Fixed != "" && before(latest, e.Fixed) {
				latest = e.Fixed
			}
		}
		for _, e := range r.Events {
			if e.Introduced != "" && e.Introduced != "0" && before(latest, e.Introduced) {
				latest = ""
				break
			}
		}
	}
	return latest
}

// Write writes the database under dir, which it creates. It refuses a dir
// that already holds an index, so that a stale database is never mixed with
// a new one.
func (db Database) Write(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "index")); err == nil {
		return fmt.Errorf("%s already holds a database", dir)
	}
	names := make([]string, 0, len(db))
	for name := range db {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if strings.Contains(name, "..") {
			return fmt.Errorf("bad database path %q", name)
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, db[name], 0o644); err != nil {
			return err
		}
	}
	return nil
}
