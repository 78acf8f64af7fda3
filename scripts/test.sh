#!/usr/bin/env bash
# Runs every test of Vigie (make test):
#   1. static checks: gofmt, go vet, a static (CGO_ENABLED=0) build, the
#      verifier's WebAssembly build and tests (scripts/check-wasm.sh),
#      govulncheck offline (scripts/vulncheck.sh, about 20 s);
#   2. Debian's chromium for the portal's browser tests (scripts/chromium.sh;
#      screenshots go to $VIGIE_TEST_ARTIFACTS, default test-artifacts/);
#   3. a throwaway PostgreSQL cluster (installed from Debian's packages if
#      needed, see scripts/pg.sh), stopped whatever happens;
#   4. go test over the whole module, then the node-kill test
#      (scripts/test-nodes.sh, its wall time printed).
# Commands the tests need (curl, Node.js, promtool) are installed from Debian's
# packages if missing (scripts/deps.sh).
# Under CI (CI=true) a test that cannot reach PostgreSQL or chromium fails
# instead of skipping. Extra arguments go to go test (e.g. scripts/test.sh -run Crash).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
. scripts/pg.sh
. scripts/chromium.sh
. scripts/deps.sh

# Commands some tests run: curl (the README's walk-through), Node.js (the
# verifier's tests under WebAssembly).
need_command curl curl || [ "${CI:-}" != true ] || exit 1
need_command node nodejs || [ "${CI:-}" != true ] || exit 1
# promtool (Debian's prometheus package, of which only promtool is used)
# checks /metrics and the alerting rules of docs/operations.md.
need_command promtool prometheus || [ "${CI:-}" != true ] || exit 1

unformatted=$(gofmt -l $(git ls-files '*.go' | grep -v '\.pb\.'))
if [ -n "$unformatted" ]; then
	echo "test.sh: gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
CGO_ENABLED=0 go build -o /dev/null ./...  # one static binary, no cgo
scripts/check-wasm.sh                       # the verifier runs in browsers
scripts/vulncheck.sh                        # no reachable known vulnerability (also in make lint)

if ! chromium_install; then
	if [ "${CI:-}" = true ]; then
		echo "test.sh: chromium could not be installed, and CI=true" >&2
		exit 1
	fi
	echo "test.sh: chromium unavailable: the portal's browser tests will skip" >&2
fi

if ! pg_start; then
	if [ "${CI:-}" = true ]; then
		echo "test.sh: PostgreSQL could not be started, and CI=true" >&2
		exit 1
	fi
	echo "test.sh: PostgreSQL unavailable: its tests will skip" >&2
fi

go test -count=1 -timeout 20m "$@" ./...

# The race detector on the packages with shared caches and concurrency of
# their own; not on everything (the pure-Go SQLite driver is slow under it).
if [ $# -eq 0 ]; then
	CGO_ENABLED=1 go test -race -count=1 -timeout 10m ./consent/ ./consent/ladonpolicy/ ./ledger/sqldb/
fi

# The node-kill test (make test-nodes): three nodes, Trillian's binaries,
# SIGKILLs under load; it prints its wall time and its summary line last.
if [ $# -eq 0 ] && [ -n "${VIGIE_TEST_POSTGRES:-}" ]; then
	scripts/test-nodes.sh
fi
