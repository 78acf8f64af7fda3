package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/encoding/protojson"

	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// The external load benchmark (scripts/bench-load.sh) runs `vigie serve`,
// the anchors of `vigie bench anchor` and the load generators vegeta
// (HTTP) and ghz (gRPC), each in its own process; `vigie bench
// load-inputs` writes the generators' requests and `vigie bench gate`
// reads their reports and prints the gate table.

// benchLoadCommands are the benchmark's helpers, beside record and api.
var benchLoadCommands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) int{
	"anchor":      runBenchAnchor,
	"load-inputs": runBenchLoadInputs,
	"gate":        runBenchGate,
}

// anchorKeys is what both anchors answer: the shape and size of GET
// /v1/log/key.
var anchorKeys = &vigiev1.PublicKeys{
	Origin:        "vigie.localhost/log/0123456789abcdef",
	CheckpointKey: "vigie.localhost/log/0123456789abcdef+0123abcd+AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=",
	ReceiptKey:    "vigie.localhost/log/0123456789abcdef/receipts+89abcdef+AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=",
}

// anchorLog answers GetPublicKey with anchorKeys, and nothing else.
type anchorLog struct {
	vigiev1.UnimplementedLogServiceServer
}

func (anchorLog) GetPublicKey(context.Context, *vigiev1.GetPublicKeyRequest) (*vigiev1.PublicKeys, error) {
	return anchorKeys, nil
}

// runBenchAnchor serves the anchors until ctx is done: a bare net/http
// handler that writes anchorKeys' JSON for any request, and a bare gRPC
// server (no interceptor, no TLS) of LogService.GetPublicKey, with
// reflection for ghz.
func runBenchAnchor(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench anchor", stderr)
	httpAddr := fs.String("http-addr", "127.0.0.1:0", "address of the bare HTTP handler")
	grpcAddr := fs.String("grpc-addr", "127.0.0.1:0", "address of the bare gRPC server")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	body, err := json.Marshal(map[string]string{"origin": anchorKeys.Origin, "checkpoint_key": anchorKeys.CheckpointKey, "receipt_key": anchorKeys.ReceiptKey})
	if err != nil {
		fmt.Fprintf(stderr, "vigie bench anchor: %v\n", err)
		return exitFailure
	}
	hl, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		fmt.Fprintf(stderr, "vigie bench anchor: %v\n", err)
		return exitFailure
	}
	gl, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		fmt.Fprintf(stderr, "vigie bench anchor: %v\n", err)
		return exitFailure
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}), ReadHeaderTimeout: 10 * time.Second}
	gs := grpc.NewServer()
	vigiev1.RegisterLogServiceServer(gs, anchorLog{})
	reflection.Register(gs)
	go hs.Serve(hl)
	go gs.Serve(gl)
	fmt.Fprintf(stdout, "http %s\ngrpc %s\n", hl.Addr(), gl.Addr())
	<-ctx.Done()
	gs.Stop()
	hs.Close()
	return exitOK
}

// vegetaTarget is a target of vegeta's JSON format (vegeta attack
// -format=json).
type vegetaTarget struct {
	Method string              `json:"method"`
	URL    string              `json:"url"`
	Body   string              `json:"body,omitempty"` // base64
	Header map[string][]string `json:"header,omitempty"`
}

// runBenchLoadInputs writes the load generators' requests into --dir:
// check.targets (vegeta: POST /v1/access:check, each with its own
// request_id, patients drawn from benchINS), noop.targets (GET
// /v1/log/key with the token), bare.targets (the same URL path on the
// anchor), and check.ghz.json (ghz: the same Checks, round robin, the
// request_id made unique per call by ghz's {{.UUID}}).
func runBenchLoadInputs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench load-inputs", stderr)
	dir := fs.String("dir", "", "directory to write the inputs to (required)")
	vigieURL := fs.String("http", "", "base URL of Vigie's HTTP API (required)")
	bareURL := fs.String("bare", "", "base URL of the bare HTTP anchor (required)")
	tokenFile := fs.String("token-file", "", "file of a service's bearer token, for organisation "+benchOrg+" (required)")
	n := fs.Int("requests", 200000, "distinct Check requests for vegeta")
	patients := fs.Int("patients", 100000, "distinct patients")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "vigie bench load-inputs: %v\n", err)
		return exitFailure
	}
	if *dir == "" || *vigieURL == "" || *bareURL == "" || *tokenFile == "" || *n < 1 || *patients < 1 {
		return fail(errors.New("--dir, --http, --bare and --token-file are required; --requests and --patients must be positive"))
	}
	tok, err := os.ReadFile(*tokenFile)
	if err != nil {
		return fail(err)
	}
	auth := map[string][]string{"Authorization": {"Bearer " + string(bytes.TrimSpace(tok))}}
	ins := benchINS(*patients)
	write := func(name string, each func(enc *json.Encoder) error) error {
		f, err := os.Create(filepath.Join(*dir, name))
		if err != nil {
			return err
		}
		if err := each(json.NewEncoder(f)); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	err = write("check.targets", func(enc *json.Encoder) error {
		h := map[string][]string{"Authorization": auth["Authorization"], "Content-Type": {"application/json"}}
		for i := range *n {
			b, err := benchCheckJSON(fmt.Sprintf("v-%d", i), ins[(i*7919)%len(ins)])
			if err != nil {
				return err
			}
			if err := enc.Encode(vegetaTarget{Method: "POST", URL: *vigieURL + "/v1/access:check", Body: base64.StdEncoding.EncodeToString(b), Header: h}); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = write("noop.targets", func(enc *json.Encoder) error {
			return enc.Encode(vegetaTarget{Method: "GET", URL: *vigieURL + "/v1/log/key", Header: auth})
		})
	}
	if err == nil {
		err = write("bare.targets", func(enc *json.Encoder) error {
			return enc.Encode(vegetaTarget{Method: "GET", URL: *bareURL + "/v1/log/key", Header: auth})
		})
	}
	if err == nil {
		err = write("check.ghz.json", func(enc *json.Encoder) error {
			reqs := make([]json.RawMessage, min(len(ins), 1000))
			for i := range reqs {
				var err error
				if reqs[i], err = benchCheckJSON("{{.UUID}}", ins[(i*7919)%len(ins)]); err != nil {
					return err
				}
			}
			return enc.Encode(reqs)
		})
	}
	if err != nil {
		return fail(err)
	}
	return exitOK
}

// benchCheckJSON is the JSON of the Check that vigie bench api sends
// (benchCheckRequest), as the gateway reads it.
func benchCheckJSON(id, patient string) (json.RawMessage, error) {
	return protojson.MarshalOptions{UseProtoNames: true}.Marshal(benchCheckRequest(id, patient))
}

// loadReport is a load generator's result, from vegeta's (report
// -type=json) or ghz's (-O json) report, with the server's CPU time
// during the run (server_cpu_seconds, written by scripts/bench-load.sh).
type loadReport struct {
	Calls     float64
	PerSecond float64
	P99Ms     float64
	Errors    float64
	CPUus     float64 // the server process's, per call; 0 if unknown
}

// readLoadReport reads dir/name.json (vegeta's or ghz's report) and
// dir/name.cpu (the server's CPU seconds during the run, if any).
func readLoadReport(dir, name string) (loadReport, error) {
	var r loadReport
	b, err := os.ReadFile(filepath.Join(dir, name+".json"))
	if err != nil {
		return r, err
	}
	var v struct {
		// vegeta
		Requests   float64            `json:"requests"`
		Throughput float64            `json:"throughput"`
		Latencies  map[string]float64 `json:"latencies"`
		Success    float64            `json:"success"`
		// ghz
		Count        float64            `json:"count"`
		Total        float64            `json:"total"` // ns
		StatusCodes  map[string]float64 `json:"statusCodeDistribution"`
		ErrorDistr   map[string]float64 `json:"errorDistribution"`
		LatencyDistr []struct {
			Percentage int     `json:"percentage"`
			Latency    float64 `json:"latency"`
		} `json:"latencyDistribution"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return r, fmt.Errorf("%s: %w", name, err)
	}
	if v.Latencies != nil { // vegeta: latencies in ns, success a ratio
		r.Calls, r.PerSecond, r.P99Ms = v.Requests, v.Throughput, v.Latencies["99th"]/1e6
		r.Errors = v.Requests - v.Success*v.Requests
	} else if v.Total > 0 { // ghz: durations in ns
		// The calls in flight when the time is up end with "the client
		// connection is closing" or "transport is closing": not counted.
		r.Calls = v.StatusCodes["OK"]
		r.PerSecond = r.Calls / (v.Total / 1e9)
		for msg, n := range v.ErrorDistr {
			if !strings.Contains(msg, "is closing") {
				r.Errors += n
			}
		}
		for _, l := range v.LatencyDistr {
			if l.Percentage == 99 {
				r.P99Ms = l.Latency / 1e6
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, name+".cpu")); err == nil && r.Calls > 0 {
		var cpu float64
		if _, err := fmt.Sscan(string(b), &cpu); err != nil {
			return r, fmt.Errorf("%s.cpu: %w", name, err)
		}
		r.CPUus = cpu * 1e6 / r.Calls
	}
	return r, nil
}

// runBenchGate prints the gate table of docs/performance.md from the
// results in --dir: api.json (vigie bench api --json), and the reports of
// scripts/bench-load.sh (http-bare, http-noop, http-check, grpc-bare,
// grpc-noop, grpc-check). A row whose figures are missing says so. The
// exit status is 0 whether targets are met or not: the table is what
// later changes report against.
func runBenchGate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench gate", stderr)
	dir := fs.String("dir", "", "directory of the results (required)")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "vigie bench gate: --dir is required")
		return exitUsage
	}
	var api apiResult
	apiErr := func() error {
		b, err := os.ReadFile(filepath.Join(*dir, "api.json"))
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &api)
	}()
	reports := map[string]loadReport{}
	for _, name := range []string{"http-bare", "http-noop", "http-check", "grpc-bare", "grpc-noop", "grpc-check"} {
		if r, err := readLoadReport(*dir, name); err == nil {
			reports[name] = r
		} else {
			fmt.Fprintf(stderr, "vigie bench gate: %v\n", err)
		}
	}
	w := stdout
	fmt.Fprintf(w, "| metric | value | ratio | target | met |\n|---|---|---|---|---|\n")
	row := func(metric, value, ratio, target string, met, known bool) {
		m := "✗"
		switch {
		case !known:
			m, value = "?", "missing"
		case target == "":
			m = ""
		case met:
			m = "✓"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", metric, value, ratio, target, m)
	}
	pct := func(x float64) string { return fmt.Sprintf("%.0f %%", 100*x) }
	rate := func(r loadReport) string {
		s := fmt.Sprintf("%.0f/s, p99 %.1f ms", r.PerSecond, r.P99Ms)
		if r.Errors > 0 {
			s += fmt.Sprintf(", %.0f errors", r.Errors)
		}
		return s
	}
	ratio := func(a, b string) (float64, bool) {
		ra, oka := reports[a]
		rb, okb := reports[b]
		if !oka || !okb || rb.PerSecond == 0 {
			return 0, false
		}
		return ra.PerSecond / rb.PerSecond, true
	}
	// ok: the report is there; clean: and no call failed (a target is
	// met only then).
	ok := func(name string) bool { _, ok := reports[name]; return ok }
	clean := func(names ...string) bool {
		for _, n := range names {
			if r, ok := reports[n]; !ok || r.Errors > 0 {
				return false
			}
		}
		return true
	}

	inProc := apiErr == nil && api.NoOp.PerSecond > 0 && api.Check.PerSecond > 0
	row("in process: no-op call (gRPC, every interceptor)", fmt.Sprintf("%.0f/s, %.0f µs CPU", api.NoOp.PerSecond, api.NoOp.CPUus), "", "", false, inProc)
	row("in process: Check", fmt.Sprintf("%.0f/s, p99 %.1f ms", api.Check.PerSecond, api.Check.P99Ms), pct(api.CheckVsNoOp)+" of no-op", "≥ 25 %", api.CheckVsNoOp >= 0.25, inProc)
	row("in process: CPU per Check, all goroutines", fmt.Sprintf("%.0f µs", api.Check.CPUus), "", "≤ 150 µs", api.Check.CPUus <= 150, inProc)
	row("in process: Check p99, 64 callers", fmt.Sprintf("%.1f ms", api.Check.P99Ms), "", "≤ 25 ms", api.Check.P99Ms <= 25, inProc)

	r := reports["grpc-bare"]
	row("gRPC: bare no-op server (anchor)", rate(r)+fmt.Sprintf(", %.0f µs server CPU", r.CPUus), "1", "", false, ok("grpc-bare"))
	x, known := ratio("grpc-noop", "grpc-bare")
	r = reports["grpc-noop"]
	row("gRPC: Vigie no-op (GetPublicKey)", rate(r)+fmt.Sprintf(", %.0f µs server CPU", r.CPUus), pct(x)+" of bare", "", false, known)
	x, known = ratio("grpc-check", "grpc-noop")
	r = reports["grpc-check"]
	row("gRPC: Check", rate(r), pct(x)+" of no-op", "≥ 25 %", x >= 0.25 && clean("grpc-check", "grpc-noop"), known)
	row("gRPC: server CPU per Check, all goroutines", fmt.Sprintf("%.0f µs", r.CPUus), "", "≤ 150 µs", r.CPUus <= 150 && clean("grpc-check"), ok("grpc-check") && r.CPUus > 0)
	row("gRPC: Check p99, 64 callers", fmt.Sprintf("%.1f ms", r.P99Ms), "", "≤ 25 ms", r.P99Ms <= 25 && clean("grpc-check"), ok("grpc-check"))

	r = reports["http-bare"]
	row("HTTP: bare net/http handler (anchor)", rate(r)+fmt.Sprintf(", %.0f µs server CPU", r.CPUus), "1", "", false, ok("http-bare"))
	x, known = ratio("http-noop", "http-bare")
	r = reports["http-noop"]
	row("HTTP: Vigie no-op (GET /v1/log/key)", rate(r)+fmt.Sprintf(", %.0f µs server CPU", r.CPUus), pct(x)+" of bare", "≥ 70 %", x >= 0.70 && clean("http-noop", "http-bare"), known)
	x, known = ratio("http-check", "http-bare")
	r = reports["http-check"]
	row("HTTP: Check (POST /v1/access:check)", rate(r)+fmt.Sprintf(", %.0f µs server CPU", r.CPUus), pct(x)+" of bare", "≥ 30 %", x >= 0.30 && clean("http-check", "http-bare"), known)
	x, known = ratio("http-check", "grpc-check")
	row("HTTP: Check over HTTP / over gRPC", "", pct(x), "≥ 60 %", x >= 0.60 && clean("http-check", "grpc-check"), known)
	return exitOK
}
