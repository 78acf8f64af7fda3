#!/usr/bin/env bash
# Runs the consent engine benchmarks of docs/performance.md: the
# engine on 1,000 and 1,000,000 patients and stock ladon on 10,000 and
# 100,000 policies, in one go test process per run (so that each run's
# peak RSS is its own), RUNS times (default 5), and prints every result
# line; the medians are computed from them. Results also go to
# bench-results/consent-<date>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-5}
mkdir -p bench-results
out=bench-results/consent-$(date -u +%Y%m%dT%H%M%SZ).txt
go test -c -o bench-results/ladonpolicy.test ./consent/ladonpolicy/
for i in $(seq "$runs"); do
	echo "# run $i, load average: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
	bench-results/ladonpolicy.test -test.run='^$' -test.bench='Decide|StockLadon|DenyLoop' \
		-test.benchtime=10s -test.timeout=60m | tee -a "$out"
done
echo "results in $out"
