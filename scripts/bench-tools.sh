#!/usr/bin/env bash
# Builds the external load generators of the api-load benchmark, once per
# version and Go toolchain, and prints the directory that holds them:
#
#	dir=$(scripts/bench-tools.sh)   # then $dir/vegeta, $dir/ghz
#
# vegeta (HTTP) and ghz (gRPC) are tools, not Vigie's dependencies: each is
# built with its own go.mod (go install module@version), outside Vigie's
# module graph, as scripts/trillian-bin.sh builds Trillian. ghz v0.93.0 is
# the only version the module proxy serves here.
#
# The cache is $VIGIE_CACHE_DIR (default $XDG_CACHE_HOME/vigie or
# ~/.cache/vigie), under bench-tools/<versions>-<go version>-<os>_<arch>.
# A build in progress holds a lock.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
. scripts/env.sh

vegeta=github.com/tsenart/vegeta/v12@v12.13.0
ghz=github.com/bojand/ghz/cmd/ghz@v0.93.0
goversion=$(go env GOVERSION)
platform=$(go env GOOS)_$(go env GOARCH)
cache=${VIGIE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigie}
dir="$cache/bench-tools/vegeta-v12.13.0-ghz-v0.93.0-$goversion-$platform"

complete() { [ -x "$dir/vegeta" ] && [ -x "$dir/ghz" ]; }

if ! complete; then
	mkdir -p "$cache/bench-tools"
	exec 9>"$cache/bench-tools/.lock"
	flock 9
	if ! complete; then
		echo "bench-tools.sh: building $vegeta and $ghz with $goversion into $dir" >&2
		tmp=$(mktemp -d "$cache/bench-tools/.build.XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		# Outside the module: go install module@version uses the tool's go.mod.
		for tool in "$vegeta" "$ghz"; do
			(cd "$tmp" && GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS= go install -trimpath "$tool") >&2
		done
		rm -rf "$dir"
		mv "$tmp" "$dir"
		trap - EXIT
	fi
	exec 9>&-
fi
echo "$dir"
