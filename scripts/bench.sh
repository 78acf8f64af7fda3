#!/usr/bin/env bash
# Runs the benchmarks of docs/performance.md with a throwaway PostgreSQL
# cluster, and writes the results to bench-results/<time>/.
#
#   scripts/bench.sh [suite...]      suites: gate go record api verify
#                                    (default: go record api verify)
#
#   gate    the gate table of docs/performance.md, in a few minutes
#           (`make bench`): scripts/bench-load.sh, the external HTTP and
#           gRPC load (vegeta, ghz) beside bare anchors and vigie bench api
#           in process, LOAD_SECONDS and API_SECONDS a phase (default 10),
#           and vigie bench record (SQLite), RECORD_SECONDS (default 60)
#   go      the Go benchmarks of every package (go test -bench), BENCH_COUNT
#           runs each (default 5), summarised by benchstat (medians);
#           BENCH_PATTERN restricts them (default all)
#   record  vigie bench record, sustained recording for RECORD_SECONDS
#           (default 60) on SQLite and on PostgreSQL, RECORD_RUNS times
#           each (default 3)
#   api     vigie bench api: Check over gRPC beside a no-op call and Record
#           alone, API_SECONDS a phase (default 20), API_RUNS times
#           (default 3), embedded mode
#   verify  the verification and audit figures of docs/performance.md:
#           root recomputation on one core beside raw SHA-256, vigie verify
#           of a 1,000-event patient, vigie audit through the API (these
#           benchmarks are whole runs, skipped by the go suite)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
. scripts/pg.sh

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(go record api verify)
if [[ " ${suites[*]} " =~ \ (go|record)\  ]]; then
	pg_start || { echo "bench.sh: PostgreSQL is required for the side-by-side figures" >&2; exit 1; }
fi
out="bench-results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
echo "# $(go version) on $(nproc) CPUs, $(uname -srm), $(date -u)" | tee "$out/machine.txt"

for suite in "${suites[@]}"; do
	case "$suite" in
	gate)
		scripts/bench-load.sh "$out/gate"
		;;
	go)
		VIGIE_BENCH_SUITE=go go test -run '^$' -bench "${BENCH_PATTERN:-.}" -benchtime "${BENCH_TIME:-10000x}" \
			-count "${BENCH_COUNT:-5}" -timeout 120m ./... | tee "$out/go.txt"
		go tool benchstat "$out/go.txt" | tee "$out/go.stat"
		;;
	record)
		go build -o "$out/vigie" ./cmd/vigie
		for run in $(seq 1 "${RECORD_RUNS:-3}"); do
			"$out/vigie" bench record --duration "${RECORD_SECONDS:-60}s" | tee -a "$out/record-sqlite.txt"
			db="${VIGIE_TEST_POSTGRES%/postgres*}/bench_$run?sslmode=disable"
			psql "$VIGIE_TEST_POSTGRES" -qc "CREATE DATABASE bench_$run" >/dev/null
			"$out/vigie" bench record --duration "${RECORD_SECONDS:-60}s" --db "$db" \
				--data-dir "$(mktemp -d)" | tee -a "$out/record-postgresql.txt"
		done
		;;
	api)
		go build -o "$out/vigie" ./cmd/vigie
		for run in $(seq 1 "${API_RUNS:-3}"); do
			"$out/vigie" bench api --duration "${API_SECONDS:-20}s" | tee -a "$out/api.txt"
		done
		;;
	verify)
		go test -run '^$' -bench RootRecompute -cpu 1 -count 10 ./ledger/audit/ | tee "$out/verify.txt"
		go test -run '^$' -bench Verify1000 -benchtime 30x -count 5 ./cmd/vigie/ | tee -a "$out/verify.txt"
		go test -run '^$' -bench AuditThroughAPI -benchtime 3x -count 5 -timeout 60m ./cmd/vigie/ | tee -a "$out/verify.txt"
		go tool benchstat "$out/verify.txt" | tee "$out/verify.stat"
		;;
	*)
		echo "bench.sh: unknown suite $suite (gate, go, record, api, verify)" >&2
		exit 2
		;;
	esac
done
echo "bench.sh: results in $out"
