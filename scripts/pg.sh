# shellcheck shell=bash
# Throwaway PostgreSQL cluster for tests and benchmarks. Source this file,
# then call pg_start; it exports VIGIE_TEST_POSTGRES (a postgres:// URL) and
# VIGIE_TEST_PGDATA (the cluster's data directory, which tests of data at
# rest scan), and arranges for pg_stop to run when the calling script exits, whatever happens.
#
# PostgreSQL comes from Debian's packages: as root, pg_start installs it if it
# is missing. The cluster runs as a non-root user (postgres, or the caller if
# not root), in a temporary directory, on a free port of 127.0.0.1 only, and
# at SERIALIZABLE isolation by default, as CockroachDB runs.

pg_bindir() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[ -n "$d" ] && [ -x "$d/pg_ctl" ] && echo "$d"
}

pg_install() {
	if pg_bindir >/dev/null; then
		return 0
	fi
	if [ "$(id -u)" != 0 ]; then
		echo "pg.sh: PostgreSQL is not installed and this is not root: skipping PostgreSQL" >&2
		return 1
	fi
	echo "pg.sh: installing PostgreSQL from Debian's packages" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2 || return 1
	# The package's own cluster is not used: don't let it start.
	mkdir -p /etc/postgresql-common
	[ -f /etc/postgresql-common/createcluster.conf ] ||
		echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
	apt-get install -y -qq --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		postgresql >&2 || return 1
	pg_bindir >/dev/null
}

pg_free_port() {
	local port
	for _ in $(seq 1 50); do
		port=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return 0
		fi
	done
	return 1
}

pg_as_owner() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u "$PG_OWNER" -- "$@"
	else
		"$@"
	fi
}

pg_start() {
	pg_install || return 1
	local bin
	bin=$(pg_bindir)
	PG_OWNER=$(id -un)
	if [ "$(id -u)" = 0 ]; then
		PG_OWNER=postgres
		id "$PG_OWNER" >/dev/null 2>&1 || useradd --system --no-create-home "$PG_OWNER"
	fi
	PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/vigie-pg.XXXXXX")
	chmod 755 "$PG_DIR"
	[ "$(id -u)" = 0 ] && chown "$PG_OWNER" "$PG_DIR"
	PG_BIN=$bin
	trap pg_stop EXIT
	pg_as_owner "$bin/initdb" -D "$PG_DIR/data" -U vigie -A trust --no-sync -E UTF8 >"$PG_DIR/initdb.log" 2>&1 || {
		cat "$PG_DIR/initdb.log" >&2
		return 1
	}
	cat >>"$PG_DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_DIR'
default_transaction_isolation = 'serializable'
max_connections = 300
fsync = on
synchronous_commit = on
shared_buffers = 256MB
# Segments no longer needed are removed, not renamed for reuse with their
# old content: tests of data at rest scan pg_wal after a switch and a
# checkpoint.
wal_recycle = off
CONF
	local try port
	for try in 1 2 3 4 5; do
		port=$(pg_free_port) || return 1
		if pg_as_owner "$bin/pg_ctl" -D "$PG_DIR/data" -o "-p $port" -l "$PG_DIR/server.log" -w -t 60 start >/dev/null 2>&1; then
			export VIGIE_TEST_POSTGRES="postgres://vigie@127.0.0.1:$port/postgres?sslmode=disable"
			export VIGIE_TEST_PGDATA="$PG_DIR/data"
			echo "pg.sh: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($PG_DIR)" >&2
			return 0
		fi
	done
	cat "$PG_DIR/server.log" >&2
	return 1
}

pg_stop() {
	if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
		pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	[ -n "${PG_DIR:-}" ] && rm -rf "$PG_DIR"
	PG_DIR=
}
