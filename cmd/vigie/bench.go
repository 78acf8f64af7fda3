package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigie-sante/vigie/cmd/vigie/internal/node"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
)

// benchPatient is a synthetic patient identifier for the benchmarks.
type benchPatient string

func (p benchPatient) Canonical() string { return string(p) }

// benchUsage lists the benchmarks.
const benchUsage = `Usage: vigie bench <benchmark> [flags]

Benchmarks:
  record   sustained Record throughput, latency, and time to a signed checkpoint
  api      Check over gRPC, side by side with a no-op call behind the same
           interceptors and with the ledger's Record alone
  anchor, load-inputs, gate
           the external load benchmark's anchors, inputs and gate table
           (scripts/bench-load.sh)
`

// runBench runs a benchmark: vigie bench record|api [flags].
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && benchLoadCommands[args[0]] != nil {
		return benchLoadCommands[args[0]](ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || (args[0] != "record" && args[0] != "api") {
		fmt.Fprint(stderr, benchUsage)
		return exitUsage
	}
	which := args[0]
	fs := newFlagSet("bench "+which, stderr)
	var cfg nodeConfig
	cfg.flags(fs)
	duration := fs.Duration("duration", 60*time.Second, "how long to run (each phase, for api)")
	workers := fs.Int("concurrency", 64, "concurrent callers")
	patients := fs.Int("patients", 100000, "distinct patients")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	phases := fs.String("phases", "noop,record,check", "api: the phases to run, in order")
	if code, done := parseFlags(fs, args[1:]); done {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "vigie bench: %v\n", err)
		return exitFailure
	}
	if *workers < 1 || *patients < 1 || *duration <= 0 {
		return fail(errors.New("--concurrency, --patients and --duration must be positive"))
	}
	if !isFlagSet(fs, "data-dir") && cfg.db == "" {
		dir, err := os.MkdirTemp("", "vigie-bench-")
		if err != nil {
			return fail(err)
		}
		defer os.RemoveAll(dir)
		cfg.dataDir = dir
	}
	logger := newLogger(stderr, slog.LevelWarn)
	n, err := openNode(ctx, cfg, logger)
	if err != nil {
		return fail(err)
	}
	defer n.Close(context.Background())
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	backend := "SQLite"
	if cfg.db != "" {
		backend = n.DB.Dialect().String()
	}
	var res interface{ print(io.Writer) }
	switch which {
	case "record":
		r, err := benchRecord(ctx, n, *duration, *workers, *patients)
		if err != nil {
			return fail(err)
		}
		r.Backend = backend
		res = r
	case "api":
		r, err := benchAPI(ctx, n, logger, *duration, *workers, *patients, strings.Split(*phases, ","))
		if err != nil {
			return fail(err)
		}
		r.Backend = backend
		res = r
	}
	if *asJSON {
		json.NewEncoder(stdout).Encode(res)
	} else {
		res.print(stdout)
	}
	return exitOK
}

func isFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

type recordResult struct {
	Backend             string  `json:"backend"`
	Workers             int     `json:"workers"`
	Seconds             float64 `json:"seconds"`
	Events              int64   `json:"events"`
	EventsPerSecond     float64 `json:"events_per_second"`
	RecordP50Ms         float64 `json:"record_p50_ms"`
	RecordP99Ms         float64 `json:"record_p99_ms"`
	MaxOutbox           uint64  `json:"max_outbox"`
	FinalOutbox         uint64  `json:"final_outbox"`
	ToCheckpointP50Ms   float64 `json:"record_to_checkpoint_p50_ms"`
	ToCheckpointP99Ms   float64 `json:"record_to_checkpoint_p99_ms"`
	ToCheckpointSamples int     `json:"record_to_checkpoint_samples"`
}

func (r recordResult) print(w io.Writer) {
	fmt.Fprintf(w, "Record, %s, %d concurrent callers, %.0f s:\n", r.Backend, r.Workers, r.Seconds)
	fmt.Fprintf(w, "  %d events, %.0f events/s\n", r.Events, r.EventsPerSecond)
	fmt.Fprintf(w, "  Record latency: p50 %.2f ms, p99 %.2f ms\n", r.RecordP50Ms, r.RecordP99Ms)
	fmt.Fprintf(w, "  outbox (recorded, not yet in the log): max %d, at the end %d\n", r.MaxOutbox, r.FinalOutbox)
	fmt.Fprintf(w, "  Record to signed checkpoint (%d samples): p50 %.0f ms, p99 %.0f ms\n", r.ToCheckpointSamples, r.ToCheckpointP50Ms, r.ToCheckpointP99Ms)
	fmt.Fprintf(w, "\n| metric | value | anchor ratio | target | met |\n|---|---|---|---|---|\n")
	r.gateRows(w)
}

// benchRecord records access events from workers goroutines for d, and
// measures the throughput, the latency of Record, the outbox depth, and
// the time from Record to a signed checkpoint covering the event.
func benchRecord(ctx context.Context, n *node.Node, d time.Duration, workers, patients int) (recordResult, error) {
	res := recordResult{Workers: workers}
	payload := json.RawMessage(`{"decision":"allow","rule":"care-team","actor":{"rpps":"10000000001","profession":"10"},"resource":{"type":"11488-4"},"purpose":"TREAT"}`)
	type sample struct {
		index uint64
		at    time.Time
	}
	var (
		mu        sync.Mutex
		lat       []time.Duration
		samples   []sample
		toCP      []time.Duration
		count     atomic.Int64
		firstErr  error
		errOnce   sync.Once
		maxOutbox atomic.Uint64
	)
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()

	// The watcher turns samples into Record-to-checkpoint latencies, and
	// tracks the outbox.
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			_, size, err := n.Ledger.LatestCheckpoint(ctx)
			now := time.Now()
			if err == nil {
				mu.Lock()
				kept := samples[:0]
				for _, s := range samples {
					if s.index < size {
						toCP = append(toCP, now.Sub(s.at))
					} else {
						kept = append(kept, s)
					}
				}
				samples = kept
				pending := len(samples)
				mu.Unlock()
				if runCtx.Err() != nil && pending == 0 {
					return
				}
			}
			var st ledger.State
			n.Store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
				var err error
				st, err = tx.State(ctx)
				return err
			})
			if depth := st.NextIndex - st.SentSize; depth > maxOutbox.Load() {
				maxOutbox.Store(depth)
			}
			if ctx.Err() != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()

	start := time.Now()
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 42))
			var mine []time.Duration
			for i := 0; runCtx.Err() == nil; i++ {
				e := ledger.Entry{
					Kind:    event.KindAccess,
					Patient: benchPatient(fmt.Sprint("patient-", r.IntN(patients))),
					Service: "bench",
					Payload: payload,
					Actor:   "10000000001",
				}
				t0 := time.Now()
				rec, err := n.Ledger.Record(ctx, e)
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				mine = append(mine, time.Since(t0))
				count.Add(1)
				if i%50 == 0 {
					mu.Lock()
					samples = append(samples, sample{rec.Index, t0})
					mu.Unlock()
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return res, firstErr
	}
	// Let the last samples reach a checkpoint (bounded by the merge delay's
	// spirit: a minute at most).
	select {
	case <-watchDone:
	case <-time.After(time.Minute):
	}
	var st ledger.State
	n.Store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
		var err error
		st, err = tx.State(ctx)
		return err
	})
	res.Seconds = elapsed.Seconds()
	res.Events = count.Load()
	res.EventsPerSecond = float64(res.Events) / elapsed.Seconds()
	res.RecordP50Ms, res.RecordP99Ms = percentilesMs(lat)
	res.MaxOutbox = maxOutbox.Load()
	res.FinalOutbox = st.NextIndex - st.SentSize
	mu.Lock()
	res.ToCheckpointP50Ms, res.ToCheckpointP99Ms = percentilesMs(toCP)
	res.ToCheckpointSamples = len(toCP)
	mu.Unlock()
	return res, nil
}

func percentilesMs(d []time.Duration) (p50, p99 float64) {
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	at := func(p float64) float64 {
		return float64(d[min(len(d)-1, int(p*float64(len(d))))].Microseconds()) / 1000
	}
	return at(0.50), at(0.99)
}
