#!/usr/bin/env bash
# Runs the tests several times while stress-ng keeps the CPUs busy, as on a
# shared CI machine, and reports the runs and failures of each package and
# test. A test that fails here depends on timing, not on an event.
#
#	scripts/stress-test.sh                       # the whole suite, 3 times, stress-ng --cpu 2
#	scripts/stress-test.sh -n 5 ./ledger/... ./consent/...
#	scripts/stress-test.sh -n 10 -cpu 4 ./ledger/ -run TestCheckpointHistory
#
# Arguments after the options go to go test (packages, -run...); the
# default is ./... . stress-ng (and jq, to read go test -json) are installed
# from Debian's packages if missing; PostgreSQL's tests get a throwaway
# cluster, as in scripts/test.sh. The output of every run is kept under
# stress-results/<time>/. Exit status 1 if any run failed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
. scripts/pg.sh
. scripts/chromium.sh
. scripts/deps.sh

runs=3
cpu=2
while [ $# -gt 0 ]; do
	case $1 in
	-n) runs=$2; shift 2 ;;
	-cpu) cpu=$2; shift 2 ;;
	-h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) break ;;
	esac
done
case $runs$cpu in *[!0-9]* | '') echo "stress-test.sh: -n and -cpu take a number" >&2; exit 2 ;; esac
[ $# -gt 0 ] || set -- ./...

need_command stress-ng stress-ng || exit 1
need_command jq jq || exit 1
chromium_install || echo "stress-test.sh: chromium unavailable: the portal's browser tests will skip" >&2
pg_start || echo "stress-test.sh: PostgreSQL unavailable: its tests will skip" >&2

out=stress-results/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
# Build the tests once, unloaded, so that the runs measure the tests.
go test -count=1 "$@" -run '^$' >/dev/null # last: the caller's own -run must not win

stress-ng --cpu "$cpu" --timeout 0 --quiet &
stress_pid=$!
trap 'kill "$stress_pid" 2>/dev/null; wait "$stress_pid" 2>/dev/null || true; pg_stop 2>/dev/null || true' EXIT

for i in $(seq 1 "$runs"); do
	echo "stress-test.sh: run $i of $runs (stress-ng --cpu $cpu, load $(cut -d' ' -f1 /proc/loadavg))" >&2
	go test -count=1 -timeout 30m -json "$@" >"$out/run-$i.json" 2>"$out/run-$i.stderr" || true
done

# One line per package and per test that ended, with its verdict.
cat "$out"/run-*.json | jq -r 'select(.Action == "pass" or .Action == "fail") | [.Package, (.Test // "-"), .Action] | @tsv' >"$out/verdicts.tsv"
# A package whose test binary did not build or crashed may report nothing
# as JSON: count its stderr too.
failed_builds=$(cat "$out"/run-*.stderr | grep -c '^FAIL' || true)

echo "== $runs runs under stress-ng --cpu $cpu: $* (results in $out)"
echo "-- packages: runs, failures"
awk -F'\t' '$2 == "-" { n[$1]++; if ($3 == "fail") f[$1]++ }
	END { for (p in n) printf "%-60s %3d runs %3d failed\n", p, n[p], f[p] }' "$out/verdicts.tsv" | sort
echo "-- tests that failed: failures of runs"
awk -F'\t' '$2 != "-" { n[$1" "$2]++; if ($3 == "fail") f[$1" "$2]++ }
	END { for (k in f) printf "%s: failed %d of %d runs\n", k, f[k], n[k] }' "$out/verdicts.tsv" | sort
total=$(awk -F'\t' '$2 == "-"' "$out/verdicts.tsv" | wc -l)
fails=$(awk -F'\t' '$2 == "-" && $3 == "fail"' "$out/verdicts.tsv" | wc -l)
echo "$((total - fails)) passed, $fails failed (package runs); $failed_builds build failures"
[ "$fails" -eq 0 ] && [ "$failed_builds" -eq 0 ]
