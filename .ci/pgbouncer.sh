#!/usr/bin/env bash
# Starts Debian's PgBouncer in transaction mode on 127.0.0.1:6432 in front of the local PostgreSQL,
# the way Supabase's and most hosted poolers are used, so the money tests can run through it
# (vitest.config.ts: the "pgbouncer" project, when TEST_PGBOUNCER_URL is set). Idempotent.
set -euo pipefail
port="${PGBOUNCER_PORT:-6432}"
dir="${PGBOUNCER_DIR:-/tmp/tally-pgbouncer}"
if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then
  echo "installing pgbouncer (Debian's package)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq pgbouncer >/dev/null
fi
if pg_isready -q -h 127.0.0.1 -p "$port" -t 1; then exit 0; fi
mkdir -p "$dir"
cat > "$dir/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=5432
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/users.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 1000
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
echo '"postgres" ""' > "$dir/users.txt"
chown -R postgres "$dir"
# PgBouncer refuses to run as root.
/usr/sbin/pgbouncer -d -u postgres "$dir/pgbouncer.ini"
for _ in $(seq 1 20); do pg_isready -q -h 127.0.0.1 -p "$port" && exit 0; sleep 0.5; done
echo "pgbouncer did not start; see $dir/pgbouncer.log" >&2
exit 1
