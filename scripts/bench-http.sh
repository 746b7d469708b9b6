#!/usr/bin/env bash
# HTTP load benchmark of the authorize endpoint on embedded SQLite.
# The server is pinned to core 0 and the load generator to core 1 (taskset).
# Usage: scripts/bench-http.sh [REQUESTS] [CONCURRENCY] [DURABILITY normal|full]
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-300000}
CONCURRENCY=${2:-32}
DURABILITY=${3:-normal}
PORT=${PORT:-3999}
SECRET=bench-secret-0123456789abcdef0123456789
# BIN=path/to/lti2 benchmarks another build (for A/B comparisons) instead of building.
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin lti2
  BIN=target/release/lti2
fi
DIR=$(mktemp -d)
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$DIR"' EXIT
DB="sqlite://$DIR/bench.db"
"$BIN" admin --database-url "$DB" --data-dir "$DIR" tool-proxy create --guid bench-tp --secret "$SECRET" >/dev/null
RUST_LOG=warn taskset -c 0 "$BIN" serve --database-url "$DB" --data-dir "$DIR" \
  --listen "127.0.0.1:$PORT" --sqlite-durability "$DURABILITY" &
SERVER=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done
taskset -c 1 "$BIN" bench --url "http://127.0.0.1:$PORT/api/lti/accounts/1/authorize" \
  --sub bench-tp --secret "$SECRET" --requests "$REQUESTS" --concurrency "$CONCURRENCY"
