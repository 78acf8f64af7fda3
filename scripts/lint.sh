#!/usr/bin/env bash
# gofmt, go vet, staticcheck and govulncheck over the whole module, under
# the toolchain named in go.mod (scripts/env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

unformatted=$(gofmt -l $(git ls-files '*.go' | grep -v '\.pb\.'))
if [ -n "$unformatted" ]; then
	echo "lint.sh: gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
go tool staticcheck ./...
scripts/vulncheck.sh
