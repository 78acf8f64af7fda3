# shellcheck shell=bash
# Common environment of the project's scripts: Go on the PATH.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null 2>&1 || {
	echo "Go is not installed (https://go.dev/dl/); Vigie needs Go 1.26 or newer" >&2
	exit 1
}
# The toolchain: go.mod's toolchain line is its one home. Go installations
# that set GOTOOLCHAIN=local (this machine's does, in $GOROOT/go.env) ignore
# that line silently, so the scripts ask for it by name; the go command
# fetches it once from the module proxy.
GOTOOLCHAIN=$(awk '$1 == "toolchain" { print $2 }' "$(dirname "${BASH_SOURCE[0]}")/../go.mod")
export GOTOOLCHAIN
