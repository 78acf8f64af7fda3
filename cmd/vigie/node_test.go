package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/ledger/ledgersql"
)

// dbApplicationID is the SQLite application_id of Vigie's database, for
// the tests that open it themselves.
const dbApplicationID = ledgersql.ApplicationID

// TestNodeRulesFileBounded: the node reads at most consent.MaxRulesSize+1
// bytes of --national-rules, as consent.LoadRulesFile does, and refuses a
// larger file without waiting for its end (here a pipe that never ends).
func TestNodeRulesFileBounded(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "rules.json")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer w.Close()
		w.Write(make([]byte, consent.MaxRulesSize+1)) // fails once the reader is gone
		<-done                                        // the pipe stays open: no end of file
	}()

	var cfg nodeConfig
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	cfg.flags(fs)
	if err := fs.Parse([]string{"--data-dir", filepath.Join(dir, "data"), "--national-rules", fifo}); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		n, err := openNode(context.Background(), cfg, slog.New(slog.DiscardHandler))
		if err == nil {
			n.Close(context.Background())
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "larger") {
			t.Errorf("openNode(--national-rules endless pipe) = %v, want a size error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("openNode still reading --national-rules after 30 s: it must stop at consent.MaxRulesSize+1 bytes")
	}
}
