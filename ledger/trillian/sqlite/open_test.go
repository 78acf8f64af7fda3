package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenRefusesOtherVersions checks the schema version guard: a file of
// this application with another schema version is refused, unchanged.
func TestOpenRefusesOtherVersions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "trillian.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", SchemaVersion+1)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before, _ := os.ReadFile(path)
	if s, err := Open(ctx, path, Options{}); !errors.Is(err, ErrSchemaVersion) || !strings.Contains(err.Error(), "refusing to migrate") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open of a version %d file = %v, want ErrSchemaVersion", SchemaVersion+1, err)
	}
	if after, _ := os.ReadFile(path); string(before) != string(after) {
		t.Errorf("Open changed a file it refused")
	}
}

// TestOpenNamesWhatItRefuses checks that a foreign file's error says what
// the file should have been.
func TestOpenNamesWhatItRefuses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trillian.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("garbage ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), path, Options{})
	if !errors.Is(err, ErrForeignFile) || !strings.Contains(err.Error(), "Vigie Trillian database") {
		t.Fatalf("Open = %v, want ErrForeignFile naming a Vigie Trillian database", err)
	}
}
