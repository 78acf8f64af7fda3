#!/usr/bin/env bash
# Builds Trillian's trillian_log_server and trillian_log_signer from the
# module version pinned in go.mod, once per version and Go toolchain, and
# prints the directory that holds them:
#
#	dir=$(scripts/trillian-bin.sh)   # then $dir/trillian_log_server ...
#
# Build tags: postgresql (the storage Vigie uses) and etcd (the signer's
# mastership election of the cluster mode); see Trillian's
# cmd/internal/provider. The binaries are built with Trillian's own go.mod
# (go install module@version), as Trillian's releases are, statically
# (CGO_ENABLED=0).
#
# The cache is $VIGIE_CACHE_DIR (default $XDG_CACHE_HOME/vigie or
# ~/.cache/vigie), under trillian/<version>-<go version>-<os>_<arch>: a new
# pin in go.mod or a new toolchain builds again, nothing else does. A build
# in progress holds a lock, so that tests starting together build once.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
. scripts/env.sh

version=$(go list -m -f '{{.Version}}' github.com/google/trillian)
goversion=$(go env GOVERSION)
platform=$(go env GOOS)_$(go env GOARCH)
tags=postgresql,etcd
cache=${VIGIE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigie}
dir="$cache/trillian/$version-$goversion-$platform"

complete() {
	[ -x "$dir/trillian_log_server" ] && [ -x "$dir/trillian_log_signer" ] && [ -f "$dir/tags" ] &&
		[ "$(cat "$dir/tags")" = "$tags" ]
}

if ! complete; then
	mkdir -p "$cache/trillian"
	exec 9>"$cache/trillian/.lock"
	flock 9
	if ! complete; then
		echo "trillian-bin.sh: building Trillian $version ($tags) with $goversion into $dir" >&2
		tmp=$(mktemp -d "$cache/trillian/.build.XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		# Outside the module: go install module@version uses Trillian's go.mod.
		(cd "$tmp" && GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS= go install -trimpath -tags "$tags" \
			"github.com/google/trillian/cmd/trillian_log_server@$version" \
			"github.com/google/trillian/cmd/trillian_log_signer@$version") >&2
		echo "$tags" >"$tmp/tags"
		rm -rf "$dir"
		mv "$tmp" "$dir"
		trap - EXIT
	fi
	exec 9>&-
fi
echo "$dir"
