package trillian_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tpb "github.com/google/trillian"
	"github.com/google/trillian/types"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	vtrillian "github.com/vigie-sante/vigie/ledger/trillian"
	"github.com/vigie-sante/vigie/ledger/trillian/sqlite"
)

const (
	crashChildEnv = "VIGIE_CRASH_CHILD_DB"
	crashCycleEnv = "VIGIE_CRASH_CYCLE"
	crashCycles   = 20
	crashWriters  = 32
)

var crashTree = vtrillian.TreeSpec{DisplayName: "crash", Type: tpb.TreeType_LOG}

// TestCrashRecovery kills, with SIGKILL at random moments, a child process
// that queues leaves from many goroutines while the sequencer integrates
// them. After each kill the database is reopened and checked: every leaf
// whose QueueLeaf call returned is in the log exactly once, and the new root
// is consistent with every root observed before the kill.
//
// A SIGKILL test cannot prove that fsync reaches the disk (the page cache
// survives the process); Open's checks of WAL and synchronous=FULL cover
// that, see TestCheckDurableRefuses.
func TestCrashRecovery(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(t, path)
		return
	}
	if testing.Short() {
		t.Skip("crash test is not short")
	}
	path := filepath.Join(t.TempDir(), "trillian.db")
	acked := map[string]bool{}
	var roots []types.LogRootV1
	for cycle := range crashCycles {
		newAcks, newRoots := runCrashChild(t, path, cycle)
		for _, a := range newAcks {
			acked[a] = true
		}
		roots = append(roots, newRoots...)
		roots = append(roots, verifyAfterCrash(t, path, acked, roots, cycle))
		t.Logf("cycle %d: %d leaves acknowledged in all, %d roots observed", cycle, len(acked), len(roots))
	}
	if len(acked) < crashCycles {
		t.Fatalf("only %d leaves were acknowledged in %d cycles: the child did not get to work", len(acked), crashCycles)
	}
}

// runCrashChild runs the child until a random moment, kills it, and returns
// the leaves it acknowledged and the roots it saw (complete lines only).
func runCrashChild(t *testing.T, path string, cycle int) (acks []string, roots []types.LogRootV1) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashRecovery$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path, crashCycleEnv+"="+strconv.Itoa(cycle))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = nil
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "ack "):
				acks = append(acks, strings.TrimPrefix(line, "ack "))
			case strings.HasPrefix(line, "root "):
				var size uint64
				var h string
				if _, err := fmt.Sscanf(line, "root %d %s", &size, &h); err != nil {
					continue // a line cut by the kill
				}
				hash, err := hex.DecodeString(h)
				if err != nil || len(hash) != 32 {
					continue
				}
				roots = append(roots, types.LogRootV1{TreeSize: size, RootHash: hash})
			}
		}
	}()
	// Let it start (opening, creating the tree), then kill it at a random
	// moment of its work.
	time.Sleep(300*time.Millisecond + rand.N(700*time.Millisecond))
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	_ = cmd.Wait()
	return acks, roots
}

// crashChild queues unique leaves from many goroutines and prints a line
// for each acknowledged one, and for each root it sees, until killed.
func crashChild(t *testing.T, path string) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path, sqlite.Options{SkipIntegrityCheck: true})
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	e, err := vtrillian.Start(ctx, vtrillian.Config{LogStorage: s.LogStorage(), AdminStorage: s.AdminStorage(), SequencerInterval: 10 * time.Millisecond, BatchSize: 200})
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	tree, err := vtrillian.EnsureTree(ctx, e.Clients, crashTree)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	emit := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format, args...)
		out.Flush()
	}
	cycle := os.Getenv(crashCycleEnv)
	for g := range crashWriters {
		go func() {
			for i := 0; ; i++ {
				value := fmt.Sprintf("cycle %s writer %d leaf %d", cycle, g, i)
				_, err := e.Log.QueueLeaf(ctx, &tpb.QueueLeafRequest{LogId: tree.TreeId, Leaf: &tpb.LogLeaf{LeafValue: []byte(value)}})
				if err != nil {
					emit("error %v\n", err)
					continue
				}
				emit("ack %s\n", hex.EncodeToString([]byte(value)))
			}
		}()
	}
	for {
		resp, err := e.Log.GetLatestSignedLogRoot(ctx, &tpb.GetLatestSignedLogRootRequest{LogId: tree.TreeId})
		if err == nil {
			var root types.LogRootV1
			if root.UnmarshalBinary(resp.SignedLogRoot.LogRoot) == nil {
				emit("root %d %x\n", root.TreeSize, root.RootHash)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// verifyAfterCrash reopens the database, waits until every acknowledged
// leaf is integrated, and checks the log against them and against every
// root seen before. It returns the current root.
func verifyAfterCrash(t *testing.T, path string, acked map[string]bool, roots []types.LogRootV1, cycle int) types.LogRootV1 {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatalf("cycle %d: reopen after SIGKILL: %v", cycle, err)
	}
	defer s.Close()
	e, err := vtrillian.Start(ctx, vtrillian.Config{LogStorage: s.LogStorage(), AdminStorage: s.AdminStorage(), SequencerInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	tree, err := vtrillian.EnsureTree(ctx, e.Clients, crashTree)
	if err != nil {
		t.Fatalf("cycle %d: %v", cycle, err)
	}

	// The sequencer integrates what the child queued; wait until the tree
	// holds at least every acknowledged leaf and stops growing, or has not
	// grown for two seconds (then the checks below name what is missing).
	var root types.LogRootV1
	stable := 0
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := e.Log.GetLatestSignedLogRoot(ctx, &tpb.GetLatestSignedLogRootRequest{LogId: tree.TreeId})
		if err != nil {
			t.Fatal(err)
		}
		var r types.LogRootV1
		if err := r.UnmarshalBinary(resp.SignedLogRoot.LogRoot); err != nil {
			t.Fatal(err)
		}
		if r.TreeSize == root.TreeSize {
			stable++
		} else {
			stable = 0
		}
		root = r
		if (stable > 0 && r.TreeSize >= uint64(len(acked))) || stable >= 20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Read every leaf: no duplicates, every acknowledged leaf present, and
	// the root recomputed from the leaves equals the log's.
	seen := make(map[string]int64, root.TreeSize)
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	cr := rf.NewEmptyRange(0)
	for start := int64(0); start < int64(root.TreeSize); {
		resp, err := e.Log.GetLeavesByRange(ctx, &tpb.GetLeavesByRangeRequest{LogId: tree.TreeId, StartIndex: start, Count: min(1000, int64(root.TreeSize)-start)})
		if err != nil {
			t.Fatalf("cycle %d: GetLeavesByRange(%d): %v", cycle, start, err)
		}
		for _, leaf := range resp.Leaves {
			if leaf.LeafIndex != start {
				t.Fatalf("cycle %d: leaf at %d has index %d", cycle, start, leaf.LeafIndex)
			}
			k := hex.EncodeToString(leaf.LeafValue)
			if prev, dup := seen[k]; dup {
				t.Errorf("cycle %d: leaf %q at %d and %d", cycle, leaf.LeafValue, prev, start)
			}
			seen[k] = start
			if err := cr.Append(rfc6962.DefaultHasher.HashLeaf(leaf.LeafValue), nil); err != nil {
				t.Fatal(err)
			}
			start++
		}
	}
	for k := range acked {
		if _, ok := seen[k]; !ok {
			v, _ := hex.DecodeString(k)
			t.Errorf("cycle %d: acknowledged leaf %q is missing", cycle, v)
		}
	}
	if got, err := cr.GetRootHash(nil); err != nil || string(got) != string(root.RootHash) {
		t.Fatalf("cycle %d: root recomputed from the leaves = %x (%v), log says %x", cycle, got, err, root.RootHash)
	}

	// Every earlier root is a prefix of this one.
	for _, old := range roots {
		if old.TreeSize > root.TreeSize {
			t.Fatalf("cycle %d: tree shrank from %d to %d", cycle, old.TreeSize, root.TreeSize)
		}
		if old.TreeSize == 0 || old.TreeSize == root.TreeSize {
			if old.TreeSize == root.TreeSize && string(old.RootHash) != string(root.RootHash) {
				t.Fatalf("cycle %d: two roots of size %d: %x and %x", cycle, old.TreeSize, old.RootHash, root.RootHash)
			}
			continue
		}
		resp, err := e.Log.GetConsistencyProof(ctx, &tpb.GetConsistencyProofRequest{LogId: tree.TreeId, FirstTreeSize: int64(old.TreeSize), SecondTreeSize: int64(root.TreeSize)})
		if err != nil {
			t.Fatalf("cycle %d: GetConsistencyProof(%d, %d): %v", cycle, old.TreeSize, root.TreeSize, err)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, old.TreeSize, root.TreeSize, resp.Proof.GetHashes(), old.RootHash, root.RootHash); err != nil {
			t.Fatalf("cycle %d: root %d %x is not consistent with root %d %x: %v", cycle, old.TreeSize, old.RootHash, root.TreeSize, root.RootHash, err)
		}
	}
	return root
}
