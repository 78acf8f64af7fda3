#!/usr/bin/env bash
# govulncheck (pinned in go.mod as a tool) over the whole module, offline,
# under the toolchain of scripts/env.sh, against a vulnerability database
# built from the golang.org/x/vulndb module version pinned below. Fails
# (exit 3) on any vulnerability the code reaches.
#
# The database module is fetched once through the Go module proxy into the
# module cache (checked against go.sum's checksum database like any module);
# govulncheck itself reads only the local copy (-db file://...).
#
# The main module only: deploy/ is a module of its own, whose dependencies
# (compose-go, kustomize, k8s.io/api) serve the deploy files' tests and
# never reach the vigie binary; ./... here does not enter it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

# The one home of the database's version: bump it to pick up new reports.
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018

info=$(go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION")
src=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
infofile=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Info": "\(.*\)",$/\1/p')
modified=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$infofile")
if [ -z "$src" ] || [ ! -d "$src/data/osv" ]; then
	echo "vulncheck.sh: golang.org/x/vulndb@$VULNDB_VERSION has no data/osv folder" >&2
	exit 1
fi

db=$(mktemp -d)
trap 'rm -rf "$db"' EXIT
go run ./scripts/vulndb -osv "$src/data/osv" -out "$db/db" ${modified:+-modified "$modified"}
echo "vulncheck.sh: $(go env GOVERSION), golang.org/x/vulndb@$VULNDB_VERSION" >&2
go tool govulncheck -db "file://$db/db" ./...
