# shellcheck shell=bash
# Common environment of the project's scripts: Go on the PATH.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null 2>&1 || {
	echo "Go is not installed (https://go.dev/dl/); Vigie needs Go 1.26 or newer" >&2
	exit 1
}
