// Package vigie reads, for the deploy tests, what the deploy files must
// agree with in vigie's own source.
package vigie

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// Root is the vigie repository's directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "../../..")
}

// DrainTimeout is vigie serve's default --drain-timeout, read from its
// one home, cmd/vigie: a grace period must exceed it.
func DrainTimeout(t testing.TB) time.Duration {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Root(), "cmd/vigie/api.go"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`"drain-timeout", (\d+) ?\* ?time\.Second`).FindSubmatch(b)
	if m == nil {
		t.Fatal("cmd/vigie/api.go: no --drain-timeout default in seconds found")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return time.Duration(n) * time.Second
}
