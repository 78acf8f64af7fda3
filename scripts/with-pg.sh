#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL cluster: VIGIE_TEST_POSTGRES is
# set for it, and the cluster is gone when it returns.
#
#	scripts/with-pg.sh go test -count=1 ./consent/consentsql/
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
. scripts/env.sh
# shellcheck source=scripts/pg.sh
. scripts/pg.sh
pg_start
"$@"
