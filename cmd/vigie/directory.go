package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/vigie-sante/vigie/cmd/vigie/internal/node"
	"github.com/vigie-sante/vigie/consent/directory"
	"github.com/vigie-sante/vigie/ledger/ledgersql"
)

// runDirectory is "vigie directory import": the public directories of
// professionals and establishments into Vigie's database, read from
// files (no network access), replacing the directories in force at once.
func runDirectory(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "import" {
		fmt.Fprintln(stderr, "usage: vigie directory import --rpps FILE --finess FILE [--data-dir DIR | --db URL]")
		return exitUsage
	}
	fs := newFlagSet("directory import", stderr)
	dataDir := fs.String("data-dir", "vigie-data", "directory of Vigie's files (the SQLite database in embedded mode)")
	db := fs.String("db", "", "database URL: empty for the SQLite database in the data directory, or postgres://...")
	rpps := fs.String("rpps", "", "the RPPS extract of the Annuaire Santé (PS_LibreAcces_Personne_activite_*.txt): replaces the professionals' directory")
	finess := fs.String("finess", "", "the FINESS extract of establishments (etalab-cs1100507-stock-*.csv): replaces the establishments' directory")
	if code, done := parseFlags(fs, args[1:]); done {
		return code
	}
	if *rpps == "" && *finess == "" {
		fmt.Fprintln(stderr, "vigie directory import: give --rpps, --finess or both")
		fs.Usage()
		return exitUsage
	}
	var files directory.Files
	for _, f := range []struct {
		flag, path string
		to         *func() (io.ReadCloser, error)
	}{{"--rpps", *rpps, &files.RPPS}, {"--finess", *finess, &files.FINESS}} {
		if f.path == "" {
			continue
		}
		// Refuse an unreadable file before touching the database.
		r, err := os.Open(f.path)
		if err != nil {
			fmt.Fprintf(stderr, "vigie directory import: %s: %v\n", f.flag, err)
			return exitFailure
		}
		r.Close()
		path := f.path
		*f.to = func() (io.ReadCloser, error) { return os.Open(path) }
	}

	cfg := ledgersql.DBConfig{PostgreSQL: *db, Also: node.Migrations()}
	if *db == "" {
		dir, err := node.PrepareDataDir(*dataDir)
		if err != nil {
			fmt.Fprintf(stderr, "vigie directory import: %v\n", err)
			return exitFailure
		}
		cfg.SQLite = filepath.Join(dir, "vigie.db")
	}
	sdb, _, err := ledgersql.Open(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "vigie directory import: %v\n", err)
		return exitFailure
	}
	defer sdb.Close()
	rep, err := directory.New(sdb).Import(ctx, files)
	printBadLines(stderr, rep)
	if err != nil {
		fmt.Fprintf(stderr, "vigie directory import: %v (the directories in force are unchanged)\n", err)
		return exitFailure
	}
	if files.RPPS != nil {
		fmt.Fprintf(stdout, "professionals: %d (lines of ADELI numbers skipped: %d)\n", rep.Professionals, rep.SkippedNotRPPS)
	}
	if files.FINESS != nil {
		fmt.Fprintf(stdout, "establishments: %d\n", rep.Establishments)
	}
	fmt.Fprintf(stdout, "bad lines: %d\n", rep.BadLines)
	return exitOK
}

// printBadLines lists the bad lines by file, line and field, never their
// content.
func printBadLines(w io.Writer, rep directory.Report) {
	for _, b := range rep.Bad {
		fmt.Fprintf(w, "%s: %v\n", b.File, b.LineError)
	}
	if more := rep.BadLines - len(rep.Bad); more > 0 {
		fmt.Fprintf(w, "... and %d more bad lines\n", more)
	}
}
