#!/usr/bin/env bash
# Runs the benchmarks of docs/performance.md with a throwaway PostgreSQL
# cluster, several times each, and summarises them with benchstat (medians).
# Results go to bench-results/. Arguments replace the default -bench pattern.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
. scripts/pg.sh

pattern=${1:-.}
count=${BENCH_COUNT:-5}
pg_start || { echo "bench.sh: PostgreSQL is required for the side-by-side figures" >&2; exit 1; }
mkdir -p bench-results
out="bench-results/$(date -u +%Y%m%dT%H%M%SZ).txt"
{
	echo "# $(go version) on $(nproc) CPUs, $(uname -srm)"
	go test -run '^$' -bench "$pattern" -benchtime "${BENCH_TIME:-10000x}" -count "$count" -timeout 60m ./...
} | tee "$out"
go tool benchstat "$out" | tee "${out%.txt}.stat"
