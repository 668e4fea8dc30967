#!/usr/bin/env bash
# PgBouncer in transaction mode in front of the local PostgreSQL, for running the test suite
# through a pooler (CI does, see .ci/run).
#
#   scripts/pgbouncer.sh start [DIR]   installs Debian's pgbouncer if it is missing, writes its own
#                                      config into DIR (a fresh temp dir when omitted), starts it as
#                                      the postgres user on a free loopback port and prints the URL
#                                      of its server, postgres://postgres@127.0.0.1:PORT (any
#                                      database name works after it)
#   scripts/pgbouncer.sh stop DIR      stops that pgbouncer and removes what start wrote in DIR
#
# The system's pgbouncer service, if any, is never used: this one has its own config, pid and log.
#
# Server-side timeouts: node-postgres sends the app's statement_timeout and
# idle_in_transaction_session_timeout as startup parameters, which PgBouncer 1.18 refuses unless
# told to ignore them, and which could not follow the client anyway (one server connection serves
# many clients in turn). So they are ignored, and pgbouncer sets them on every server connection
# it opens instead (connect_query), to PGBOUNCER_STATEMENT_TIMEOUT_MS and
# PGBOUNCER_IDLE_IN_TRANSACTION_TIMEOUT_MS (10 s each, the app's defaults).
set -euo pipefail

PG_HOST="${PG_HOST:-127.0.0.1}"
PG_PORT="${PG_PORT:-5432}"
STATEMENT_TIMEOUT_MS="${PGBOUNCER_STATEMENT_TIMEOUT_MS:-10000}"
IDLE_IN_TRANSACTION_TIMEOUT_MS="${PGBOUNCER_IDLE_IN_TRANSACTION_TIMEOUT_MS:-$STATEMENT_TIMEOUT_MS}"
PGBOUNCER=/usr/sbin/pgbouncer
# Files this script writes in DIR, and only these are removed by stop.
FILES=(pgbouncer.ini userlist.txt pgbouncer.log pgbouncer.pid)

say() { printf 'pgbouncer.sh: %s\n' "$*" >&2; }

# Whether something accepts TCP connections on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Runs a command as the postgres user (pgbouncer refuses to run as root), with room for many
# client connections (the soft limit of open files is 1024 under runuser).
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- sh -c 'ulimit -n 8192 2>/dev/null || true; exec "$@"' sh "$@"
  else
    "$@"
  fi
}

install_pgbouncer() {
  [ -x "$PGBOUNCER" ] && return 0
  say "installing Debian's pgbouncer"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null
  # Where the package's own service started on install (a machine with an init that allows it),
  # stop it: nothing asked for it, and it would hold port 6432.
  if [ -r /run/postgresql/pgbouncer.pid ] && kill -0 "$(cat /run/postgresql/pgbouncer.pid)" 2>/dev/null; then
    say "stopping the pgbouncer service the package started"
    service pgbouncer stop >/dev/null 2>&1 || kill "$(cat /run/postgresql/pgbouncer.pid)" 2>/dev/null || true
  fi
}

start() {
  local dir="${1:-}"
  [ -n "$dir" ] || dir=$(mktemp -d "${TMPDIR:-/tmp}/tasks-pgbouncer.XXXXXX")
  mkdir -p "$dir"
  install_pgbouncer
  pg_isready -q -h "$PG_HOST" -p "$PG_PORT" || { say "PostgreSQL is not accepting connections on $PG_HOST:$PG_PORT"; return 1; }

  local port=6432
  while port_busy "$port"; do
    port=$((port + 1))
    [ "$port" -lt 6532 ] || { say "no free port in 6432-6531"; return 1; }
  done

  # trust still needs the user in auth_file; PostgreSQL on loopback trusts it too.
  printf '"postgres" ""\n' >"$dir/userlist.txt"
  cat >"$dir/pgbouncer.ini" <<EOF
; Written by scripts/pgbouncer.sh; removed by its stop.
[databases]
; Any database name, on the local PostgreSQL, each server connection with the server-side timeouts.
* = host=$PG_HOST port=$PG_PORT connect_query='SET statement_timeout = $STATEMENT_TIMEOUT_MS; SET idle_in_transaction_session_timeout = $IDLE_IN_TRANSACTION_TIMEOUT_MS'

[pgbouncer]
pool_mode = transaction
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
admin_users = postgres
; The suite opens many pools (servers, worker processes, scratch databases), each of up to 10.
max_client_conn = 2000
default_pool_size = 20
; Sent by node-postgres when configured (src/db/database.ts); applied by connect_query above.
ignore_startup_parameters = statement_timeout,idle_in_transaction_session_timeout
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
EOF
  if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$dir"; fi

  as_postgres "$PGBOUNCER" -d "$dir/pgbouncer.ini"
  local url="postgres://postgres@127.0.0.1:$port"
  for _ in $(seq 1 50); do
    if psql "$url/postgres" -Atqc 'select 1' >/dev/null 2>&1; then
      say "PgBouncer $("$PGBOUNCER" --version | head -n 1 | awk '{print $2}') in transaction mode on 127.0.0.1:$port (config in $dir; stop with: $0 stop $dir)"
      echo "$url"
      return 0
    fi
    sleep 0.2
  done
  say "pgbouncer did not accept connections on 127.0.0.1:$port"
  tail -n 20 "$dir/pgbouncer.log" >&2 2>/dev/null || true
  stop "$dir"
  return 1
}

stop() {
  local dir="${1:?usage: $0 stop DIR}"
  [ -f "$dir/pgbouncer.ini" ] || { say "no pgbouncer config in $dir"; return 0; }
  local pid
  pid=$(cat "$dir/pgbouncer.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  for file in "${FILES[@]}"; do rm -f "${dir:?}/$file"; done
  rmdir "$dir" 2>/dev/null || true
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 start [DIR] | stop DIR" >&2; exit 2 ;;
esac
