# shellcheck shell=bash
# Installs the Debian packages the tests need when their commands are
# missing (as root; otherwise it says what is missing and the tests that
# need it skip, or fail under CI=true).
#
#	need_command curl curl
#	need_command node nodejs

apt_updated=
need_command() {
	local cmd=$1 pkg=$2
	command -v "$cmd" >/dev/null 2>&1 && return 0
	if [ "$(id -u)" != 0 ]; then
		echo "deps.sh: $cmd is missing (Debian package $pkg) and this is not root" >&2
		return 1
	fi
	echo "deps.sh: installing $pkg from Debian's packages" >&2
	export DEBIAN_FRONTEND=noninteractive
	if [ -z "$apt_updated" ]; then
		apt-get update -qq >&2 || return 1
		apt_updated=1
	fi
	apt-get install -y -qq --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		"$pkg" >&2 || return 1
	command -v "$cmd" >/dev/null 2>&1
}
