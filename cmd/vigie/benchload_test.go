package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vigie-sante/vigie/api/server"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// TestBenchLoadInputs checks the load generators' requests: valid Checks
// (as the gateway and ValidateCheck read them), each with its own
// request_id for vegeta, the request_id a ghz template for ghz.
func TestBenchLoadInputs(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if code := runBench(context.Background(), []string{"load-inputs", "--dir", dir, "--http", "http://127.0.0.1:1", "--bare", "http://127.0.0.1:2",
		"--token-file", tok, "--requests", "50", "--patients", "20"}, &bytes.Buffer{}, &stderr); code != exitOK {
		t.Fatalf("vigie bench load-inputs = %d: %s", code, &stderr)
	}
	f, err := os.Open(filepath.Join(dir, "check.targets"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var tg vegetaTarget
		if err := json.Unmarshal(sc.Bytes(), &tg); err != nil {
			t.Fatal(err)
		}
		if tg.Method != "POST" || tg.URL != "http://127.0.0.1:1/v1/access:check" || tg.Header["Authorization"][0] != "Bearer tok" {
			t.Errorf("target %+v", tg)
		}
		body, err := base64.StdEncoding.DecodeString(tg.Body)
		if err != nil {
			t.Fatal(err)
		}
		var req vigiev1.CheckRequest
		if err := protojson.Unmarshal(body, &req); err != nil {
			t.Fatalf("body %s: %v", body, err)
		}
		if _, err := server.ValidateCheck(&req); err != nil {
			t.Errorf("body %s: %v", body, err)
		}
		ids[req.RequestId] = true
	}
	if len(ids) != 50 {
		t.Errorf("%d distinct request_id in 50 targets", len(ids))
	}
	b, err := os.ReadFile(filepath.Join(dir, "check.ghz.json"))
	if err != nil {
		t.Fatal(err)
	}
	var reqs []json.RawMessage
	if err := json.Unmarshal(b, &reqs); err != nil || len(reqs) != 20 {
		t.Fatalf("check.ghz.json: %d requests, %v; want 20", len(reqs), err)
	}
	var req vigiev1.CheckRequest
	if err := protojson.Unmarshal(reqs[0], &req); err != nil || req.RequestId != "{{.UUID}}" {
		t.Errorf("ghz request %s: %v, want request_id {{.UUID}}", reqs[0], err)
	}
}

// TestBenchGate checks the gate table against reports of the shapes
// vegeta and ghz write: ratios, targets met or not, the calls cut by
// ghz's end of run not counted as errors, a missing report shown as such.
func TestBenchGate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	vegeta := func(rate float64, p99ms float64, success float64) string {
		b, _ := json.Marshal(map[string]any{"requests": rate * 10, "throughput": rate, "success": success,
			"latencies": map[string]float64{"99th": p99ms * 1e6}})
		return string(b)
	}
	ghz := func(ok float64, p99ms float64, cut float64) string {
		b, _ := json.Marshal(map[string]any{"count": ok + cut, "total": 10e9, "statusCodeDistribution": map[string]float64{"OK": ok, "Unavailable": cut},
			"errorDistribution":   map[string]float64{"rpc error: code = Unavailable desc = transport is closing": cut},
			"latencyDistribution": []map[string]float64{{"percentage": 50, "latency": 1e6}, {"percentage": 99, "latency": p99ms * 1e6}}})
		return string(b)
	}
	write("http-bare.json", vegeta(10000, 5, 1))
	write("http-noop.json", vegeta(8000, 10, 1))
	write("http-check.json", vegeta(2000, 30, 1))
	write("http-check.cpu", "2\n") // 2 s for 20,000 calls
	write("grpc-bare.json", ghz(150000, 3, 64))
	write("grpc-noop.json", ghz(100000, 4, 64))
	write("grpc-check.json", ghz(30000, 20, 64))
	write("grpc-check.cpu", "3.6\n") // 120 µs a call
	var out, stderr bytes.Buffer
	if code := runBench(context.Background(), []string{"gate", "--dir", dir}, &out, &stderr); code != exitOK {
		t.Fatalf("vigie bench gate = %d: %s", code, &stderr)
	}
	for _, want := range []string{
		"| in process: Check | missing |",
		"| gRPC: Check | 3000/s, p99 20.0 ms | 30 % of no-op | ≥ 25 % | ✓ |",
		"| gRPC: server CPU per Check, all goroutines | 120 µs |  | ≤ 150 µs | ✓ |",
		"| HTTP: Vigie no-op (GET /v1/log/key) | 8000/s, p99 10.0 ms, 0 µs server CPU | 80 % of bare | ≥ 70 % | ✓ |",
		"| HTTP: Check (POST /v1/access:check) | 2000/s, p99 30.0 ms, 100 µs server CPU | 20 % of bare | ≥ 30 % | ✗ |",
		"| HTTP: Check over HTTP / over gRPC |  | 67 % | ≥ 60 % | ✓ |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, &out)
		}
	}
	// A run with failed calls does not meet its target.
	write("http-noop.json", vegeta(8000, 10, 0.5))
	out.Reset()
	runBench(context.Background(), []string{"gate", "--dir", dir}, &out, &stderr)
	if want := "| HTTP: Vigie no-op (GET /v1/log/key) | 8000/s, p99 10.0 ms, 40000 errors, 0 µs server CPU | 80 % of bare | ≥ 70 % | ✗ |"; !strings.Contains(out.String(), want) {
		t.Errorf("with failed calls, the table lacks %q:\n%s", want, &out)
	}
}
