#!/usr/bin/env bash
# What a synchronous standby costs recording: a PostgreSQL primary and a
# streaming standby on loopback, and vigie bench record on the primary
# with synchronous_commit = on (each commit waits for the standby's
# flush) and = local (it does not), alternated (docs/performance.md).
#
#	go build -o /tmp/vigie ./cmd/vigie
#	VIGIE=/tmp/vigie RUNS=2 SECONDS_EACH=30 scripts/record-standby.sh
set -euo pipefail
VIGIE=${VIGIE:-vigie}
B=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
R=$(mktemp -d "${TMPDIR:-/tmp}/vigie-standby.XXXXXX")
chmod 755 "$R"
as() { "$@"; }
if [ "$(id -u)" = 0 ]; then
	id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
	chown postgres "$R"
	as() { runuser -u postgres -- "$@"; }
fi
P1=$((20000 + RANDOM % 30000))
P2=$((P1 + 1))
as "$B/initdb" -D "$R/p" -U postgres -A trust -E UTF8 >/dev/null
as tee -a "$R/p/postgresql.conf" >/dev/null <<CONF
port = $P1
listen_addresses = '127.0.0.1'
unix_socket_directories = '$R'
wal_level = replica
max_wal_senders = 4
synchronous_standby_names = '*'
max_connections = 200
default_transaction_isolation = 'serializable'
shared_buffers = 256MB
CONF
echo "host replication postgres 127.0.0.1/32 trust" | as tee -a "$R/p/pg_hba.conf" >/dev/null
as "$B/pg_ctl" -D "$R/p" -l "$R/p.log" -w start >/dev/null
trap 'as "$B/pg_ctl" -D "$R/s" -m immediate stop >/dev/null 2>&1; as "$B/pg_ctl" -D "$R/p" -m immediate stop >/dev/null 2>&1; rm -rf "$R"' EXIT
as "$B/pg_basebackup" -h 127.0.0.1 -p "$P1" -U postgres -D "$R/s" -R >/dev/null
as sed -i "s/^port = .*/port = $P2/" "$R/s/postgresql.conf"
as "$B/pg_ctl" -D "$R/s" -l "$R/s.log" -w start >/dev/null
echo "standby: $(psql -h 127.0.0.1 -p "$P1" -U postgres -Atc "SELECT sync_state FROM pg_stat_replication")"
k=0
for i in $(seq 1 "${RUNS:-2}"); do
	for mode in on local; do
		k=$((k + 1))
		psql -h 127.0.0.1 -p "$P1" -U postgres -qc "CREATE DATABASE b$k" -c "ALTER DATABASE b$k SET synchronous_commit = $mode"
		echo "== synchronous_commit = $mode, run $i"
		"$VIGIE" bench record --duration "${SECONDS_EACH:-30}s" \
			--db "postgres://postgres@127.0.0.1:$P1/b$k?sslmode=disable" --data-dir "$R/vigie-$k"
	done
done
