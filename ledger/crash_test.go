package ledger_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
	"github.com/vigie-sante/vigie/ledger/verify"
)

const (
	recorderCrashDir   = "VIGIE_RECORDER_CRASH_DIR"
	recorderCrashCycle = "VIGIE_RECORDER_CRASH_CYCLE"
	crashPatients      = 40
	crashCycles        = 20
)

type ack struct {
	index      uint64
	commitment event.Hash
}

// TestRecorderCrash kills, with SIGKILL at random moments, a child process
// that records events from many goroutines (and sends and checkpoints them
// in the background). After each kill the ledger is reopened and checked:
// every acknowledged event is present exactly once with its index and
// commitment, everything recorded reaches the log and a signed checkpoint,
// the log's leaves are exactly the ledger's commitments (no duplicate
// leaf), every patient's chain is unbroken, and the checkpoints stay
// consistent across the crashes.
func TestRecorderCrash(t *testing.T) {
	if dir := os.Getenv(recorderCrashDir); dir != "" {
		recorderCrashChild(t, dir)
		return
	}
	if testing.Short() {
		t.Skip("crash test is not short")
	}
	dir := t.TempDir()
	acked := map[string]ack{}
	var checkpoints []verify.Checkpoint
	for cycle := range crashCycles {
		for k, a := range runRecorderChild(t, dir, cycle) {
			acked[k] = a
		}
		checkpoints = append(checkpoints, checkAfterCrash(t, dir, acked, checkpoints, cycle))
	}
	if len(acked) < 100 {
		t.Fatalf("only %d events acknowledged in 20 cycles: the child did not get to work", len(acked))
	}
}

func runRecorderChild(t *testing.T, dir string, cycle int) map[string]ack {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRecorderCrash$")
	cmd.Env = append(os.Environ(), recorderCrashDir+"="+dir, recorderCrashCycle+"="+strconv.Itoa(cycle))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acks := map[string]ack{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 4 || f[0] != "ack" {
				continue
			}
			index, err1 := strconv.ParseUint(f[2], 10, 64)
			c, err2 := event.ParseHash(f[3])
			if err1 != nil || err2 != nil {
				continue // a line cut by the kill
			}
			acks[f[1]] = ack{index, c}
		}
	}()
	time.Sleep(400*time.Millisecond + rand.N(800*time.Millisecond))
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
	cmd.Wait()
	return acks
}

func recorderCrashChild(t *testing.T, dir string) {
	env := ledgertest.New(t, ledgertest.Options{Dir: dir})
	cycle := os.Getenv(recorderCrashCycle)
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	for g := range 32 {
		go func() {
			for i := 0; ; i++ {
				e := access(fmt.Sprint("patient-", (g*31+i)%crashPatients), i)
				e.Key = ledger.Key{Service: "crash", RequestID: fmt.Sprintf("c%s-g%d-i%d", cycle, g, i)}
				r, err := env.Ledger.Record(context.Background(), e)
				if err != nil {
					continue
				}
				mu.Lock()
				fmt.Fprintf(w, "ack %s %d %s\n", e.Key.RequestID, r.Index, hex.EncodeToString(r.Commitment[:]))
				w.Flush()
				mu.Unlock()
			}
		}()
	}
	select {} // until killed
}

// checkAfterCrash reopens the ledger and checks it; it returns the latest
// checkpoint.
func checkAfterCrash(t *testing.T, dir string, acked map[string]ack, earlier []verify.Checkpoint, cycle int) verify.Checkpoint {
	t.Helper()
	env := ledgertest.New(t, ledgertest.Options{Dir: dir})
	defer env.Close()
	err := env.Store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
		for key, a := range acked {
			row, err := tx.EventByKey(ctx, env.Pseudonyms.RequestHash(ledger.Key{Service: "crash", RequestID: key}))
			if err != nil {
				return fmt.Errorf("acknowledged event %s: %w", key, err)
			}
			if row.Index != a.index || row.Commitment != a.commitment {
				return fmt.Errorf("event %s is at %d (%s), was acknowledged at %d (%s)", key, row.Index, row.Commitment, a.index, a.commitment)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("cycle %d: %v", cycle, err)
	}
	st := state(t, env)
	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if st.NextIndex == 0 {
		// Killed before it recorded anything (a loaded machine is slow to
		// start the child): no checkpoint is due, nothing else to check.
		if len(acked) > 0 {
			t.Fatalf("cycle %d: %d events acknowledged, none recorded", cycle, len(acked))
		}
		t.Logf("cycle %d: nothing recorded yet", cycle)
		return verify.Checkpoint{}
	}
	if err := env.Ledger.WaitCheckpoint(waitCtx, st.NextIndex-1); err != nil {
		t.Fatalf("cycle %d: %d events recorded, not all in a checkpoint: %v (ready: %v)", cycle, st.NextIndex, err, env.Ledger.Ready())
	}
	note, size, err := env.Ledger.LatestCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := verify.OpenCheckpoint(note, env.CheckpointKey)
	if err != nil {
		t.Fatal(err)
	}
	// The log's leaves are the ledger's commitments, each once.
	var rb verify.RootBuilder
	seen := map[event.Hash]bool{}
	for start := uint64(0); start < size; start += ledger.MaxLeaves {
		leaves, err := env.Ledger.Leaves(ctx, start, size)
		if err != nil {
			t.Fatal(err)
		}
		for _, lv := range leaves {
			c, err := verify.ParseLeafValue(lv)
			if err != nil {
				t.Fatal(err)
			}
			if seen[c] {
				t.Fatalf("cycle %d: commitment %s twice in the log", cycle, c)
			}
			seen[c] = true
			rb.Append(verify.MerkleLeafHash(c))
		}
	}
	if rb.Size() != cp.Size || rb.Root() != cp.Hash {
		t.Fatalf("cycle %d: the ledger's leaves make root %x of size %d, the checkpoint says %x of size %d", cycle, rb.Root(), rb.Size(), cp.Hash, cp.Size)
	}
	// Chains: a few patients each cycle (History proves every event, which
	// the root check above already covers), all of them at the end.
	patients := []int{rand.N(crashPatients), rand.N(crashPatients)}
	if cycle == crashCycles-1 {
		patients = patients[:0]
		for p := range crashPatients {
			patients = append(patients, p)
		}
	}
	for _, p := range patients {
		h, err := env.Ledger.History(ctx, ledgertest.Patient(fmt.Sprint("patient-", p)), 1, 1<<20, 0)
		if err != nil {
			t.Fatal(err)
		}
		var links []verify.Link
		for _, e := range h.Events {
			b, err := verify.VerifyEvent(e.Body, e.Salt, e.Commitment)
			if err != nil {
				t.Fatalf("cycle %d: event %d: %v", cycle, e.Index, err)
			}
			links = append(links, verify.LinkOf(b, e.Commitment))
		}
		if err := verify.VerifyChain(links); err != nil {
			t.Fatalf("cycle %d: chain of patient-%d: %v", cycle, p, err)
		}
	}
	for _, old := range earlier {
		if old.Size == 0 || old.Size > cp.Size {
			if old.Size > cp.Size {
				t.Fatalf("cycle %d: checkpoint shrank from %d to %d", cycle, old.Size, cp.Size)
			}
			continue
		}
		proof, err := env.Ledger.ConsistencyProof(ctx, old.Size, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := verify.VerifyConsistency(old, cp, proof); err != nil {
			t.Fatalf("cycle %d: checkpoint %d inconsistent with %d: %v", cycle, old.Size, cp.Size, err)
		}
	}
	t.Logf("cycle %d: %d events acknowledged in all, %d recorded, checkpoint %d", cycle, len(acked), st.NextIndex, cp.Size)
	return cp
}
