#!/usr/bin/env bash
# Installs (Debian/Ubuntu packages) and starts PostgreSQL and Redis on this machine, and creates
# the PostgreSQL role and database the tests and the README's examples use:
#   role lti2 (password lti2, CREATEDB), database lti2, on 127.0.0.1:5432; Redis on 127.0.0.1:6379.
# Run as root (or with sudo). Safe to run again: what exists is kept.
# `lti2 serve` on embedded SQLite needs none of this; the test suite and several-instance mode do.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

if ! command -v pg_ctlcluster >/dev/null || ! command -v redis-server >/dev/null; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql redis-server >/dev/null
fi

# PostgreSQL: the first cluster of the installed version (created by the package).
VERSION=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! $SUDO pg_lsclusters -h | grep -q .; then
  $SUDO pg_createcluster "$VERSION" main >/dev/null
fi
CLUSTER=$($SUDO pg_lsclusters -h | head -1 | awk '{print $1" "$2}')
if ! $SUDO pg_lsclusters -h | head -1 | grep -q online; then
  # shellcheck disable=SC2086
  $SUDO pg_ctlcluster $CLUSTER start
fi
for _ in $(seq 1 50); do
  as_postgres psql -qAtc "SELECT 1" >/dev/null 2>&1 && break
  sleep 0.2
done
# The test suite runs many servers at once, each with its own pool: allow more connections
# than the default 100 (takes effect at the restart below).
if [ "$(as_postgres psql -qAtc "SHOW max_connections")" -lt 400 ]; then
  as_postgres psql -qc "ALTER SYSTEM SET max_connections = 400" >/dev/null
  # shellcheck disable=SC2086
  $SUDO pg_ctlcluster $CLUSTER restart
  for _ in $(seq 1 50); do
    as_postgres psql -qAtc "SELECT 1" >/dev/null 2>&1 && break
    sleep 0.2
  done
fi
if [ "$(as_postgres psql -qAtc "SELECT 1 FROM pg_roles WHERE rolname = 'lti2'")" != "1" ]; then
  as_postgres psql -qc "CREATE ROLE lti2 LOGIN PASSWORD 'lti2' CREATEDB"
fi
if [ "$(as_postgres psql -qAtc "SELECT 1 FROM pg_database WHERE datname = 'lti2'")" != "1" ]; then
  as_postgres createdb -O lti2 lti2
fi

# Redis.
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --appendonly yes \
    --dir /tmp >/dev/null
  for _ in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
    sleep 0.2
  done
fi

psql "postgres://lti2:lti2@127.0.0.1:5432/lti2" -qAtc "SELECT 'PostgreSQL ' || current_setting('server_version') || ' ready at postgres://lti2:lti2@127.0.0.1:5432/lti2'"
echo "Redis $(redis-cli -h 127.0.0.1 -p 6379 info server | awk -F: '/^redis_version/{print $2}' | tr -d '\r') ready at redis://127.0.0.1:6379"
