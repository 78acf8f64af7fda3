#!/usr/bin/env bash
# The node-kill test (make test-nodes; also run by scripts/test.sh): Vigie
# as a cluster on loopback, as processes (PostgreSQL, Trillian's log server
# and signer from scripts/trillian-bin.sh, three vigie serve nodes), nodes
# killed with SIGKILL under load (internal/nodekill). Prints the test's
# figures, its wall time, and last its summary line:
#	nodes: <kills> kills, <acknowledged> acknowledged, <lost> lost, <duplicated> duplicated, audit ok
# Uses the PostgreSQL cluster of $VIGIE_TEST_POSTGRES if set (scripts/test.sh
# starts one), else starts a throwaway one; the vigie binary of
# $VIGIE_TEST_BIN if set, else builds one.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
. scripts/env.sh
if [ -z "${VIGIE_TEST_POSTGRES:-}" ]; then
	# shellcheck source=scripts/pg.sh
	. scripts/pg.sh
	pg_start
fi
VIGIE_TRILLIAN_BIN=$(scripts/trillian-bin.sh)
export VIGIE_TRILLIAN_BIN VIGIE_TEST_NODES=1
log=$(mktemp "${TMPDIR:-/tmp}/vigie-test-nodes.XXXXXX")
trap 'rm -f "$log"' EXIT
start=$(date +%s)
status=0
go test -count=1 -v -timeout 10m -run '^TestNodeKill$' ./internal/nodekill/ >"$log" 2>&1 || status=$?
end=$(date +%s)
summary=$(grep -E '^nodes: ' "$log" | tail -n 1 || true)
grep -vE '^nodes: ' "$log"
echo "test-nodes: wall time $((end - start)) s"
if [ "$status" != 0 ]; then
	[ -z "$summary" ] || echo "$summary"
	echo "test-nodes: FAILED" >&2
	exit "$status"
fi
if [ -z "$summary" ]; then
	echo "test-nodes: no summary line (skipped?)" >&2
	[ "${CI:-}" != true ] || exit 1
	exit 0
fi
echo "$summary"
