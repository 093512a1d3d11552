#!/usr/bin/env bash
# Runs the whole test suite against a real MongoDB. When MMO_TEST_MONGODB_URI is not set, installs and
# starts a throw-away MongoDB on its own port (scripts/mongodb.sh) and stops it afterwards.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if [ -z "${MMO_TEST_MONGODB_URI:-}" ]; then
  export MMO_MONGODB_PORT="${MMO_MONGODB_PORT:-27058}"
  export MMO_MONGODB_HOME="${MMO_MONGODB_HOME:-$root/.tools/mongodb-test}"
  MMO_TEST_MONGODB_URI=$(scripts/mongodb.sh start)
  export MMO_TEST_MONGODB_URI
  trap 'scripts/mongodb.sh stop' EXIT
fi

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
