#!/usr/bin/env bash
# HTTP load benchmark of the authorize endpoint.
# Usage: scripts/bench-http.sh [REQUESTS] [CONCURRENCY] [DURABILITY normal|full]
#
# Backend (environment):
#   default                 embedded SQLite in a fresh temporary file
#   BACKEND=postgres        a fresh PostgreSQL database on PG_ADMIN_URL
#                           (default postgres://lti2:lti2@127.0.0.1:5432/postgres)
#   INSTANCES=2             with BACKEND=postgres: two `lti2 serve` on one database behind one
#                           public URL; the load generator spreads its connections over both
#   REDIS_URL=redis://…     jtis claimed in Redis instead of the database
#   BIN=path/to/lti2        benchmark another build (A/B comparisons) instead of building
#   LOADGEN=path/to/lti2    the build that runs `lti2 bench` (default: BIN)
#
# The server(s) are pinned to core 0 and the load generator to core 1 (taskset); PostgreSQL and
# Redis are not pinned.
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-300000}
CONCURRENCY=${2:-32}
DURABILITY=${3:-normal}
PORT=${PORT:-3999}
BACKEND=${BACKEND:-sqlite}
INSTANCES=${INSTANCES:-1}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://lti2:lti2@127.0.0.1:5432/postgres}
SECRET=bench-secret-0123456789abcdef0123456789
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin lti2
  BIN=target/release/lti2
fi
LOADGEN=${LOADGEN:-$BIN}
DIR=$(mktemp -d)
SERVERS=()
DBNAME=""
cleanup() {
  for s in "${SERVERS[@]}"; do kill "$s" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$DBNAME" ]; then psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DBNAME WITH (FORCE)" || true; fi
  rm -rf "$DIR"
}
trap cleanup EXIT
if [ "$BACKEND" = postgres ]; then
  DBNAME="lti2_bench_$$"
  psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $DBNAME"
  DB="${PG_ADMIN_URL%/*}/$DBNAME"
else
  DB="sqlite://$DIR/bench.db"
  INSTANCES=1
fi
"$BIN" admin --database-url "$DB" --data-dir "$DIR" tool-proxy create --guid bench-tp --secret "$SECRET" >/dev/null
EXTRA=()
if [ -n "${REDIS_URL:-}" ]; then EXTRA+=(--redis-url "$REDIS_URL"); fi
CONNECT=()
for i in $(seq 0 $((INSTANCES - 1))); do
  P=$((PORT + i))
  RUST_LOG=warn taskset -c 0 "$BIN" serve --database-url "$DB" --data-dir "$DIR" \
    --listen "127.0.0.1:$P" --base-url "http://127.0.0.1:$PORT" --sqlite-durability "$DURABILITY" \
    "${EXTRA[@]}" &
  SERVERS+=($!)
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$P/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
  CONNECT+=(--connect "127.0.0.1:$P")
done
taskset -c 1 "$LOADGEN" bench --url "http://127.0.0.1:$PORT/api/lti/accounts/1/authorize" \
  --sub bench-tp --secret "$SECRET" --requests "$REQUESTS" --concurrency "$CONCURRENCY" \
  "${CONNECT[@]}"
