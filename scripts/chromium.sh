# shellcheck shell=bash
# Chromium for the portal's browser tests (cmd/vigie/portal_test.go), from
# Debian's packages. Source this file, then call chromium_install: as root,
# it installs chromium if it is missing. Without it the browser tests skip,
# unless CI=true (then they fail).

chromium_install() {
	if command -v chromium >/dev/null 2>&1; then
		return 0
	fi
	if [ "$(id -u)" != 0 ]; then
		echo "chromium.sh: chromium is not installed and this is not root: the browser tests will skip" >&2
		return 1
	fi
	echo "chromium.sh: installing chromium from Debian's packages" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2 || return 1
	apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2 || return 1
	command -v chromium >/dev/null 2>&1
}
