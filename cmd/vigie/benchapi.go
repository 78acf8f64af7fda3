package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/vigie-sante/vigie/api/apiserver"
	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/api/server"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/cmd/vigie/internal/node"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
)

// phaseResult is one phase of the API benchmark.
type phaseResult struct {
	Calls     int64   `json:"calls"`
	PerSecond float64 `json:"per_second"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	// CPUus is the process's CPU time (user and system, every goroutine:
	// callers, server, background work) per call: a figure that other
	// load on the machine disturbs less than throughput.
	CPUus float64 `json:"cpu_us_per_call"`
}

type apiResult struct {
	Backend string      `json:"backend"`
	Workers int         `json:"workers"`
	Seconds float64     `json:"seconds_per_phase"`
	NoOp    phaseResult `json:"noop"`
	Check   phaseResult `json:"check"`
	Record  phaseResult `json:"record"`
	// CheckVsRecord and CheckVsNoOp are the throughput ratios.
	CheckVsRecord float64 `json:"check_vs_record"`
	CheckVsNoOp   float64 `json:"check_vs_noop"`
	Allowed       int64   `json:"allowed"`
	Denied        int64   `json:"denied"`
}

func (r apiResult) print(w io.Writer) {
	fmt.Fprintf(w, "API, %s, durable, %d concurrent callers over gRPC on loopback TCP, %.0f s a phase:\n", r.Backend, r.Workers, r.Seconds)
	row := func(name string, p phaseResult) {
		fmt.Fprintf(w, "  %-38s %8.0f calls/s   p50 %6.2f ms   p99 %6.2f ms   CPU %5.0f µs/call\n", name, p.PerSecond, p.P50Ms, p.P99Ms, p.CPUus)
	}
	row("no-op call, same interceptors", r.NoOp)
	row("Record alone (ledger, in process)", r.Record)
	row("Check (decide + record, over gRPC)", r.Check)
	fmt.Fprintf(w, "  Check / Record = %.0f %%, Check / no-op = %.0f %% (%d ALLOW, %d DENY)\n", 100*r.CheckVsRecord, 100*r.CheckVsNoOp, r.Allowed, r.Denied)
}

// benchINS returns n made-up INS numbers with valid control keys.
func benchINS(n int) []string {
	out := make([]string, n)
	for i := range out {
		v := uint64(1_800_000_000_000 + i*7919)
		out[i] = fmt.Sprintf("%013d%02d", v, 97-v%97)
	}
	return out
}

// benchOrg is the organisation the benchmarks' service acts for.
const benchOrg = "750712184"

// benchCheckRequest is the Check of the benchmarks: a member of the care
// team reads a document of patient, for care.
func benchCheckRequest(id, patient string) *vigiev1.CheckRequest {
	return &vigiev1.CheckRequest{
		RequestId: id, PatientIns: patient,
		Actor:        &vigiev1.Actor{Rpps: "10000000001", Profession: "10", Organization: benchOrg, Sector: "care", CareTeam: true},
		Action:       vigiev1.Action_ACTION_READ,
		Resource:     &vigiev1.Resource{Kind: &vigiev1.Resource_Document{Document: &vigiev1.Document{Id: "doc-1", Type: "discharge-summary"}}},
		PurposeOfUse: vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT,
	}
}

// benchAPI runs three phases of d each, with workers callers: a no-op call
// (GetPublicKey with a service's token: authentication, authorization,
// rate limit, metrics and the log line, and nothing else), the ledger's
// Record alone with the payload a Check records, and Check over gRPC.
func benchAPI(ctx context.Context, n *node.Node, logger *slog.Logger, d time.Duration, workers, patients int, only []string) (apiResult, error) {
	res := apiResult{Workers: workers, Seconds: d.Seconds()}
	unlimited := map[auth.Role]server.Limit{}
	for _, r := range append(auth.Roles, "") {
		unlimited[r] = server.Unlimited
	}
	// The server logs one line per call, as in production, formatted and
	// discarded.
	callLog := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := apiserver.Start(ctx, apiserver.Config{
		GRPCAddr: "127.0.0.1:0", DefaultTimeout: 10 * time.Second, MaxTimeout: time.Minute,
		RateLimits: unlimited, Version: versionString(), Logger: callLog,
	}, apiNode(n))
	if err != nil {
		return res, err
	}
	defer a.Stop(context.Background())
	a.MarkReady()
	issuer, err := apiserver.EmbeddedIssuer(node.KeysDir(n.DataDir))
	if err != nil {
		return res, err
	}
	tok, err := issuer.Mint(auth.TokenRequest{Role: auth.RoleService, Subject: "bench", Organizations: []string{benchOrg}, TTL: time.Hour})
	if err != nil {
		return res, err
	}
	callCtx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	// One connection per 16 callers, as a few client processes would.
	conns := make([]*grpc.ClientConn, (workers+15)/16)
	for i := range conns {
		if conns[i], err = grpc.NewClient(a.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			return res, err
		}
		defer conns[i].Close()
	}
	ins := benchINS(patients)
	checkReq := benchCheckRequest
	var allowed, denied atomic.Int64

	// The payload Record records in its phase: the access record of a real
	// decision.
	req0, err := server.ValidateCheck(checkReq("bench-payload", ins[0]))
	if err != nil {
		return res, err
	}
	req0.Service = "service:bench-record"
	dec0, _, err := n.Consent.Check(ctx, req0)
	if err != nil {
		return res, err
	}
	payload, err := consent.FormatAccessRecord(&req0, &dec0)
	if err != nil {
		return res, err
	}

	type phase struct {
		name string
		out  *phaseResult
		call func(g, i int, r *rand.Rand) error
	}
	phases := []phase{
		{"noop", &res.NoOp, func(g, i int, r *rand.Rand) error {
			_, err := vigiev1.NewLogServiceClient(conns[g%len(conns)]).GetPublicKey(callCtx, &vigiev1.GetPublicKeyRequest{})
			return err
		}},
		{"record", &res.Record, func(g, i int, r *rand.Rand) error {
			patient, _ := ident.ParseINS(ins[r.IntN(len(ins))])
			_, err := n.Ledger.Record(ctx, ledger.Entry{
				Kind: event.KindAccess, Patient: patient, Service: "service:bench-record", Payload: payload,
				Key:          ledger.Key{Service: "service:bench-record", RequestID: fmt.Sprintf("r-%d-%d", g, i)},
				CheckConsent: true, Actor: "10000000001", Organization: benchOrg,
			})
			return err
		}},
		{"check", &res.Check, func(g, i int, r *rand.Rand) error {
			resp, err := vigiev1.NewAccessServiceClient(conns[g%len(conns)]).Check(callCtx, checkReq(fmt.Sprintf("c-%d-%d", g, i), ins[r.IntN(len(ins))]))
			if err == nil {
				if resp.Decision == vigiev1.Decision_DECISION_ALLOW {
					allowed.Add(1)
				} else {
					denied.Add(1)
				}
			}
			return err
		}},
	}
	for _, name := range only {
		i := slices.IndexFunc(phases, func(p phase) bool { return p.name == name })
		if i < 0 {
			return res, fmt.Errorf("--phases: unknown phase %q (noop, record, check)", name)
		}
		p := phases[i]
		out, err := runPhase(ctx, d, workers, p.call)
		if err != nil {
			return res, err
		}
		*p.out = out
	}
	res.Allowed, res.Denied = allowed.Load(), denied.Load()
	if res.Record.PerSecond > 0 {
		res.CheckVsRecord = res.Check.PerSecond / res.Record.PerSecond
	}
	if res.NoOp.PerSecond > 0 {
		res.CheckVsNoOp = res.Check.PerSecond / res.NoOp.PerSecond
	}
	return res, nil
}

// runPhase calls call from workers goroutines for d and returns the
// throughput and latencies. The first error stops the phase.
func runPhase(ctx context.Context, d time.Duration, workers int, call func(g, i int, r *rand.Rand) error) (phaseResult, error) {
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu       sync.Mutex
		lat      []time.Duration
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	cpu0 := processCPU()
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 7))
			mine := make([]time.Duration, 0, 1024)
			var err error
			for i := 0; runCtx.Err() == nil; i++ {
				t0 := time.Now()
				if err = call(g, i, r); err != nil {
					break
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, mine...)
			if err != nil && firstErr == nil {
				firstErr = err
				cancel()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	if firstErr != nil {
		return phaseResult{}, firstErr
	}
	out := phaseResult{Calls: int64(len(lat)), PerSecond: float64(len(lat)) / elapsed.Seconds()}
	if len(lat) > 0 {
		out.CPUus = float64(cpu.Microseconds()) / float64(len(lat))
	}
	out.P50Ms, out.P99Ms = percentilesMs(lat)
	return out, nil
}

// processCPU returns the CPU time the process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
