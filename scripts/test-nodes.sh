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
#
# scripts/test-nodes.sh ha is the failover test (make test-ha) on the same
# harness: etcd, three PostgreSQL under Patroni, two Trillian log servers
# and two signers elected through etcd, three nodes; one of each killed
# (internal/nodekill/ha_test.go). It installs etcd and Patroni from
# Debian's packages if missing (as root). Its summary line starts "ha: ".
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
. scripts/env.sh
which=${1:-nodes}
case $which in
nodes)
	run=TestNodeKill
	export VIGIE_TEST_NODES=1
	if [ -z "${VIGIE_TEST_POSTGRES:-}" ]; then
		# shellcheck source=scripts/pg.sh
		. scripts/pg.sh
		pg_start
	fi
	;;
ha)
	run=TestHA
	export VIGIE_TEST_HA=1
	# shellcheck source=scripts/pg.sh
	. scripts/pg.sh
	# shellcheck source=scripts/deps.sh
	. scripts/deps.sh
	pg_install || true
	need_command patroni patroni || true
	need_command etcd etcd-server || true
	;;
*)
	echo "usage: scripts/test-nodes.sh [nodes|ha]" >&2
	exit 2
	;;
esac
VIGIE_TRILLIAN_BIN=$(scripts/trillian-bin.sh)
export VIGIE_TRILLIAN_BIN
log=$(mktemp "${TMPDIR:-/tmp}/vigie-test-$which.XXXXXX")
trap 'rm -f "$log"' EXIT
start=$(date +%s)
status=0
go test -count=1 -v -timeout 10m -run "^$run\$" ./internal/nodekill/ >"$log" 2>&1 || status=$?
end=$(date +%s)
summary=$(grep -E "^$which: " "$log" | tail -n 1 || true)
grep -vE "^$which: " "$log"
echo "test-$which: wall time $((end - start)) s"
if [ "$status" != 0 ]; then
	[ -z "$summary" ] || echo "$summary"
	echo "test-$which: FAILED" >&2
	exit "$status"
fi
if [ -z "$summary" ]; then
	echo "test-$which: no summary line (skipped?)" >&2
	[ "${CI:-}" != true ] || exit 1
	exit 0
fi
echo "$summary"
