#!/bin/sh
# Prints the version of this checkout, for
# go build -ldflags "-X main.version=$(scripts/version.sh)": the nearest
# tag (v1.2.3, or v1.2.3-4-gabcdef0 past it), else the commit, with
# "-dirty" for uncommitted changes; "devel" outside a git checkout. Go's
# own VCS stamping is off on machines that build with -buildvcs=false.
cd "$(dirname "$0")/.." || exit 1
git describe --tags --always --dirty 2>/dev/null || echo devel
