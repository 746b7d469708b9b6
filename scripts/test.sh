#!/usr/bin/env bash
# The test suite, run against both storage backends: every test on embedded SQLite, then every
# integration test again on PostgreSQL (each test server gets a fresh database). The Redis,
# several-instance and outage tests use PostgreSQL and Redis in both passes.
# Needs PostgreSQL and Redis as scripts/setup-services.sh leaves them (or set
# LTI2_TEST_POSTGRES_URL to a role with CREATEDB, and LTI2_TEST_REDIS_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== tests on SQLite"
LTI2_TEST_BACKEND=sqlite cargo test "$@"
echo "== integration tests on PostgreSQL"
LTI2_TEST_BACKEND=postgres cargo test --test '*' "$@"
