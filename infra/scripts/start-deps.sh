#!/usr/bin/env bash
# Starts the local PostgreSQL and NATS (JetStream) the tests and distributed mode use, when they
# are installed but not running. Tests fall back to throwaway servers when neither is available.
set -euo pipefail
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! up 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && ls /etc/postgresql >/dev/null 2>&1; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort | tail -n1)" main start || true
  else
    echo "PostgreSQL not running and not installed as a cluster; tests will try a throwaway one" >&2
  fi
fi
if ! up 4222; then
  if command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; then
    echo "starting nats-server with JetStream"
    bin=$(command -v nats-server || echo /usr/sbin/nats-server)
    mkdir -p /var/lib/nats-server 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec "$bin" -- \
      -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log \
      || nohup "$bin" -a 127.0.0.1 -p 4222 -js -sd "${TMPDIR:-/tmp}/nats-js" >/dev/null 2>&1 &
  else
    echo "nats-server not installed; tests will try a throwaway one or fail with a clear message" >&2
  fi
fi
# The test suite runs two distributed-mode platforms at once, each service with its own pools
# (its main pool, the urgent lane's, the council readers'): ~40 connections apiece. PostgreSQL's
# default of 100 leaves too little room (a refused connection surfaces as an INTERNAL error), so a
# local cluster this script manages is given 300, restarted once to take it.
raise_connections() {
  command -v psql >/dev/null 2>&1 && command -v pg_ctlcluster >/dev/null 2>&1 || return 0
  local have
  have=$(psql -h 127.0.0.1 -U postgres -Atc "SHOW max_connections" 2>/dev/null) || return 0
  if [ "${have:-0}" -lt 300 ]; then
    echo "raising PostgreSQL max_connections from $have to 300 (restarting it)"
    psql -h 127.0.0.1 -U postgres -qc "ALTER SYSTEM SET max_connections = 300" \
      && pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort | tail -n1)" main restart \
      || echo "warning: could not raise max_connections; the full suite may run short of connections" >&2
  fi
}
for _ in $(seq 1 50); do up 5432 && break; sleep 0.2; done
up 5432 && raise_connections
for _ in $(seq 1 50); do up 5432 && up 4222 && exit 0; sleep 0.2; done
up 5432 || echo "warning: PostgreSQL still not reachable on 127.0.0.1:5432" >&2
up 4222 || echo "warning: NATS still not reachable on 127.0.0.1:4222" >&2
