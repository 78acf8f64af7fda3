#!/usr/bin/env bash
# The external load benchmark of docs/performance.md ("The API under
# external load"), and the gate table:
#
#   scripts/bench-load.sh OUT_DIR
#
# In one run, each in its own process on this machine: `vigie serve`
# (embedded SQLite, durable, rate limits off, one log line per call at
# info, discarded), the anchors of `vigie bench anchor` (a bare net/http
# handler, a bare gRPC server of LogService.GetPublicKey), and the load
# generators vegeta (HTTP/1.1, keep-alive) and ghz (gRPC), both built by
# scripts/bench-tools.sh. LOAD_SECONDS (default 10) a phase, then
# LOAD_PAUSE (default 5) for the server's background work, LOAD_CALLERS
# (default 64) concurrent callers, over 4 gRPC connections:
#
#   http-bare  http-noop (GET /v1/log/key)  http-check (POST /v1/access:check)
#   grpc-bare  grpc-noop (GetPublicKey)     grpc-check (Check)
#
# then `vigie bench api --json` in process (API_SECONDS a phase, default
# 10, phases noop and check), and `vigie bench gate`, which prints the
# table. Each Check has its own request_id (vegeta: 200,000 distinct
# requests; ghz: a UUID per call), on 100,000 patients. The server's CPU
# time in each phase is read from /proc.
#
# VIGIE_SERVER_BIN runs another build as the server and for `bench api`
# (the baseline: a build of main); the anchors and the table always come
# from this tree.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

out=${1:?usage: scripts/bench-load.sh OUT_DIR}
mkdir -p "$out"
seconds=${LOAD_SECONDS:-10}
callers=${LOAD_CALLERS:-64}
tools=$(scripts/bench-tools.sh)
bin="$out/vigie"
[ -x "$bin" ] || go build -o "$bin" ./cmd/vigie
server=${VIGIE_SERVER_BIN:-$bin}

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

# wait_line FILE PATTERN: the first line of FILE matching PATTERN, waiting
# for it up to 120 s.
wait_line() {
	for _ in $(seq 1200); do
		if grep -m1 "$2" "$1" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "bench-load.sh: no '$2' in $1:" >&2
	cat "$1" >&2
	return 1
}

"$bin" bench anchor >"$work/anchor.out" 2>&1 &
anchor_pid=$!
pids+=("$anchor_pid")
bare_http=$(wait_line "$work/anchor.out" '^http ' | awk '{print $2}')
bare_grpc=$(wait_line "$work/anchor.out" '^grpc ' | awk '{print $2}')

"$server" serve --data-dir "$work/data" --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
	--rate-limit off --log-level info >"$work/serve.out" 2>/dev/null &
serve_pid=$!
pids+=("$serve_pid")
vigie_http=$(wait_line "$work/serve.out" 'HTTP API:' | awk '{print $3}')
vigie_grpc=$(wait_line "$work/serve.out" 'gRPC API:' | awk '{print $3}')
for _ in $(seq 600); do
	curl -fsS "$vigie_http/readyz" >/dev/null 2>&1 && break
	sleep 0.1
done
"$server" token --data-dir "$work/data" --role service --sub bench --org 750712184 --ttl 2h >"$work/token"
"$bin" bench load-inputs --dir "$work" --http "$vigie_http" --bare "http://$bare_http" --token-file "$work/token"
token=$(cat "$work/token")

# cpu PID: the process's CPU time so far, in seconds.
cpu() {
	awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

# phase NAME PID COMMAND...: runs COMMAND (a load generator writing its
# JSON report on standard output) into $out/NAME.json, and the CPU time
# of PID (the server: Vigie or the anchors) during it into $out/NAME.cpu.
phase() {
	local name=$1 pid=$2
	shift 2
	local c0=0
	[ "$pid" = 0 ] || c0=$(cpu "$pid")
	"$@" >"$out/$name.json"
	# The server's background work for the phase (sending the events
	# recorded to the log, sequencing, signing) ends in the pause: it is
	# the phase's CPU, and does not weigh on the next phase.
	sleep "${LOAD_PAUSE:-5}"
	[ "$pid" = 0 ] || awk -v a="$c0" -v b="$(cpu "$pid")" 'BEGIN { print b - a }' >"$out/$name.cpu"
	echo "bench-load.sh: $name done" >&2
}

vegeta() {
	"$tools/vegeta" attack -format=json -targets="$work/$1" -rate=0 -workers="$callers" -max-workers="$callers" \
		-duration="${seconds}s" -timeout=30s | "$tools/vegeta" report -type=json
}
ghz() {
	"$tools/ghz" --insecure -c "$callers" --connections 4 -z "${seconds}s" --timeout 30s -O json "$@"
}

phase http-bare "$anchor_pid" vegeta bare.targets
phase http-noop "$serve_pid" vegeta noop.targets
phase http-check "$serve_pid" vegeta check.targets
phase grpc-bare "$anchor_pid" ghz --call vigie.v1.LogService.GetPublicKey "$bare_grpc"
phase grpc-noop "$serve_pid" ghz --call vigie.v1.LogService.GetPublicKey -m "{\"authorization\":\"Bearer $token\"}" "$vigie_grpc"
phase grpc-check "$serve_pid" ghz --call vigie.v1.AccessService.Check -m "{\"authorization\":\"Bearer $token\"}" \
	-D "$work/check.ghz.json" "$vigie_grpc"

cleanup
pids=()
trap - EXIT
"$server" bench api --duration "${API_SECONDS:-10}s" --phases noop,check --json >"$out/api.json"
# Recording, sustained (SQLite, durable; no anchor: its rows end the
# table). RECORD_SECONDS a run (default 60, the issue's sustained minute).
"$server" bench record --duration "${RECORD_SECONDS:-60}s" >"$out/record.txt"
{
	"$bin" bench gate --dir "$out"
	grep -E '^\| (Record|outbox)' "$out/record.txt"
} | tee "$out/gate.md"
