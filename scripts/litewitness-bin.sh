#!/usr/bin/env bash
# Builds torchwood's litewitness and witnessctl (the C2SP tlog-witness
# witness the witness tests run, three at a time), from the module proxy,
# once per version and Go toolchain, and prints the directory that holds
# them:
#
#	dir=$(scripts/litewitness-bin.sh)   # then $dir/litewitness ...
#
# torchwood is not a dependency of Vigie: it is built with its own go.mod
# (go install module@version), outside Vigie's module, like
# scripts/trillian-bin.sh builds Trillian's binaries. The cache is
# $VIGIE_CACHE_DIR (default $XDG_CACHE_HOME/vigie or ~/.cache/vigie), under
# litewitness/<version>-<go version>-<os>_<arch>. A build in progress holds
# a lock, so that tests starting together build once.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
. scripts/env.sh

version=v0.6.1
goversion=$(go env GOVERSION)
platform=$(go env GOOS)_$(go env GOARCH)
cache=${VIGIE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigie}
dir="$cache/litewitness/$version-$goversion-$platform"

complete() { [ -x "$dir/litewitness" ] && [ -x "$dir/witnessctl" ]; }

if ! complete; then
	mkdir -p "$cache/litewitness"
	exec 9>"$cache/litewitness/.lock"
	flock 9
	if ! complete; then
		echo "litewitness-bin.sh: building filippo.io/torchwood $version with $goversion into $dir" >&2
		tmp=$(mktemp -d "$cache/litewitness/.build.XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		(cd "$tmp" && GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS= go install -trimpath \
			"filippo.io/torchwood/cmd/litewitness@$version" \
			"filippo.io/torchwood/cmd/witnessctl@$version") >&2
		rm -rf "$dir"
		mv "$tmp" "$dir"
		trap - EXIT
	fi
	exec 9>&-
fi
echo "$dir"
