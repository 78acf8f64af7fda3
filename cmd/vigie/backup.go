package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/vigie-sante/vigie/cmd/vigie/internal/node"
)

// runBackup asks the embedded node running on --data-dir for a
// consistent copy of its two SQLite files and writes the archive to
// --out, checked before it is kept.
func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("backup", stderr)
	dataDir := fs.String("data-dir", "vigie-data", "data directory of the running embedded node (vigie serve) to back up")
	out := fs.String("out", "", "file to write the archive to (gzip-compressed tar with a manifest); must not exist. Required")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if *out == "" {
		fmt.Fprintln(stderr, "vigie backup: --out is required")
		return exitUsage
	}
	m, err := backup(ctx, *dataDir, *out)
	if err != nil {
		fmt.Fprintf(stderr, "vigie backup: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "Backup of the log %s written to %s: latest checkpoint of size %d.\n", m.Origin, *out, m.CheckpointSize)
	fmt.Fprintf(stdout, "The keys are not in it: keep a copy of %s apart from the backups.\n", node.KeysDir(*dataDir))
	return exitOK
}

// backup writes the archive to a temporary file beside out, checks it,
// then moves it to out.
func backup(ctx context.Context, dataDir, out string) (node.Manifest, error) {
	if _, err := os.Lstat(out); err == nil {
		return node.Manifest{}, errors.New("--out: the file exists")
	}
	f, err := os.CreateTemp(filepath.Dir(out), ".vigie-backup-")
	if err != nil {
		return node.Manifest{}, fmt.Errorf("--out: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := f.Chmod(0o600); err != nil {
		return node.Manifest{}, err
	}
	if err := node.RequestBackup(ctx, dataDir, f); err != nil {
		return node.Manifest{}, err
	}
	if err := f.Sync(); err != nil {
		return node.Manifest{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return node.Manifest{}, err
	}
	m, err := node.CheckArchive(f)
	if err != nil {
		return node.Manifest{}, fmt.Errorf("the archive received is damaged: %w", err)
	}
	if err := os.Link(f.Name(), out); err != nil {
		return node.Manifest{}, fmt.Errorf("--out: %w", err)
	}
	return m, nil
}

// runRestore checks an archive of vigie backup and writes its files into
// a new data directory.
func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("restore", stderr)
	dataDir := fs.String("data-dir", "", "new data directory to restore into: absent or empty. Required")
	if len(args) == 0 || len(args[0]) > 0 && args[0][0] == '-' {
		if code, done := parseFlags(fs, args); done {
			return code
		}
		fmt.Fprintln(stderr, "usage: vigie restore ARCHIVE --data-dir NEW")
		return exitUsage
	}
	archive := args[0]
	if code, done := parseFlags(fs, args[1:]); done {
		return code
	}
	if *dataDir == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: vigie restore ARCHIVE --data-dir NEW")
		return exitUsage
	}
	f, err := os.Open(archive)
	if err != nil {
		fmt.Fprintf(stderr, "vigie restore: %v\n", err)
		return exitFailure
	}
	defer f.Close()
	m, err := node.Restore(f, *dataDir)
	if err != nil {
		fmt.Fprintf(stderr, "vigie restore: %v\n", err)
		return exitFailure
	}
	marker := filepath.Join(*dataDir, node.RestoredCheckpoint)
	fmt.Fprintf(stdout, "Restored the log %s (backup of %s, latest checkpoint of size %d) into %s.\n", m.Origin, m.Created.Format("2006-01-02 15:04:05 UTC"), m.CheckpointSize, *dataDir)
	fmt.Fprintf(stdout, "Before starting it:\n  1. copy the keys directory kept apart to %s;\n", node.KeysDir(*dataDir))
	fmt.Fprintf(stdout, "  2. start it with --published-checkpoint FILE, the latest checkpoint the log published\n     (%s if none was published after the backup).\n", marker)
	return exitOK
}
