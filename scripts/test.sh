#!/usr/bin/env bash
# Runs every test of Vigie: starts a throwaway PostgreSQL cluster (installing
# PostgreSQL from Debian's packages if needed), runs go test over the whole
# module, and stops the cluster whatever happens. Under CI (CI=true) a test
# that cannot reach PostgreSQL fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

if ! pg_start; then
	if [ "${CI:-}" = true ]; then
		echo "test.sh: PostgreSQL could not be started, and CI=true" >&2
		exit 1
	fi
	echo "test.sh: PostgreSQL unavailable: its tests will skip" >&2
fi

go test -count=1 -timeout 20m "$@" ./...
