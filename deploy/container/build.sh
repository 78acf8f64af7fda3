#!/usr/bin/env bash
# Builds Vigie's container image (deploy/container/Containerfile) with
# podman, from a context this script prepares: the static binary
# (CGO_ENABLED=0, version from scripts/version.sh), the host's CA bundle
# (Debian's ca-certificates), /etc/passwd and /etc/group naming the user,
# and the empty /data. Installs podman and ca-certificates from Debian's
# packages when missing (as root).
#
#	deploy/container/build.sh [podman global flags...]
#
# prints the image's ID on its last line, tagged vigie:<version>. Flags go
# to podman before "build" (the tests give --root, --runroot and
# --storage-driver vfs). BUILD_CONTEXT, if set, keeps the context there.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/env.sh
. scripts/deps.sh

need_command podman podman
bundle=/etc/ssl/certs/ca-certificates.crt
if [ ! -s "$bundle" ]; then
	need_command update-ca-certificates ca-certificates
fi
[ -s "$bundle" ] || { echo "build.sh: no CA bundle at $bundle" >&2; exit 1; }

version=$(scripts/version.sh)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
ctx=${BUILD_CONTEXT:-$(mktemp -d)}
[ -n "${BUILD_CONTEXT:-}" ] || trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/data"

CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$version" -o "$ctx/vigie" ./cmd/vigie
cp "$bundle" "$ctx/ca-certificates.crt"
printf 'root:x:0:0:root:/:/sbin/nologin\nvigie:x:65532:65532:vigie:/data:/sbin/nologin\n' >"$ctx/passwd"
printf 'root:x:0:\nvigie:x:65532:\n' >"$ctx/group"

iidfile=$ctx/iid
podman "$@" build --quiet --file deploy/container/Containerfile \
	--build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
	--tag "vigie:$version" --iidfile "$iidfile" "$ctx" >&2
cat "$iidfile"
echo
