package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/google/trillian/integration/storagetest"
	"github.com/google/trillian/storage"
	"github.com/google/trillian/storage/testonly"
)

func openTemp(t testing.TB) *Storage {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "trillian.db"), Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestLogStorageSuite runs Trillian's own log storage conformance suite.
func TestLogStorageSuite(t *testing.T) {
	storagetest.RunLogStorageTests(t, func(ctx context.Context, t *testing.T) (storage.LogStorage, storage.AdminStorage) {
		s := openTemp(t)
		return s.LogStorage(), s.AdminStorage()
	})
}

// TestAdminStorageSuite runs Trillian's own admin storage conformance suite.
func TestAdminStorageSuite(t *testing.T) {
	tester := &testonly.AdminStorageTester{NewAdminStorage: func() storage.AdminStorage {
		return openTemp(t).AdminStorage()
	}}
	tester.RunAllTests(t)
}
