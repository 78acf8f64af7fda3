package node

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// archiveOf makes an archive of two files of the given contents.
func archiveOf(t *testing.T, edit func(m *Manifest)) []byte {
	t.Helper()
	dir := t.TempDir()
	m := Manifest{Format: BackupFormat, Version: "test", Created: time.Unix(0, 0).UTC(), Origin: "test.example/vigie/1", Checkpoint: "a note\n", CheckpointSize: 1}
	for i, name := range backupFiles {
		if err := os.WriteFile(filepath.Join(dir, name), bytes.Repeat([]byte{byte(i + 1)}, 1000), 0o600); err != nil {
			t.Fatal(err)
		}
		f := BackupFile{Name: name}
		var err error
		if f.Size, f.SHA256, err = hashFile(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		m.Files = append(m.Files, f)
	}
	if edit != nil {
		edit(&m)
	}
	var buf bytes.Buffer
	if err := writeArchive(&buf, m, dir); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRestore(t *testing.T) {
	good := archiveOf(t, nil)
	nd := filepath.Join(t.TempDir(), "new")
	m, err := Restore(bytes.NewReader(good), nd)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if m.Origin != "test.example/vigie/1" {
		t.Errorf("manifest %+v", m)
	}
	for _, name := range append(backupFiles, RestoredCheckpoint) {
		if fi, err := os.Stat(filepath.Join(nd, name)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", name, fi, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(nd, RestoredCheckpoint)); string(b) != "a note\n" {
		t.Errorf("%s = %q", RestoredCheckpoint, b)
	}
	if _, err := Restore(bytes.NewReader(good), nd); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Restore into a non-empty directory = %v", err)
	}

	for name, tc := range map[string]struct {
		archive []byte
		want    string
	}{
		"checksum":       {archiveOf(t, func(m *Manifest) { m.Files[1].SHA256 = strings.Repeat("0", 64) }), "trillian.db: its SHA-256 is not the manifest's"},
		"format":         {archiveOf(t, func(m *Manifest) { m.Format = "vigie-backup/9" }), "format: want vigie-backup/1"},
		"a file missing": {archiveOf(t, func(m *Manifest) { m.Files = m.Files[:1] }), "files: want 2"},
		"truncated":      {good[:len(good)/2], "archive: "},
		"not gzip":       {[]byte("hello"), "not a gzip file"},
	} {
		t.Run(name, func(t *testing.T) {
			nd := filepath.Join(t.TempDir(), "new")
			_, err := Restore(bytes.NewReader(tc.archive), nd)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Restore = %v, want %q", err, tc.want)
			}
			if _, serr := os.Stat(nd); !os.IsNotExist(serr) {
				t.Errorf("a failed restore left %s", nd)
			}
			// An empty directory given is left empty.
			empty := t.TempDir()
			if _, err := Restore(bytes.NewReader(tc.archive), empty); err == nil {
				t.Fatal("Restore succeeded")
			}
			if entries, _ := os.ReadDir(empty); len(entries) != 0 {
				t.Errorf("a failed restore left %d files", len(entries))
			}
		})
	}
}
