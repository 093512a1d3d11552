#!/usr/bin/env bash
# Fault report: runs the fault proofs of tests/faults.rs (SIGKILL under load, SIGTERM under load, a 30 s
# MongoDB outage) against release builds and a real MongoDB, and prints their report lines: callbacks sent,
# acknowledged, stored, lost (must be 0), duplicates, and the time until MongoDB held every acknowledged one.
# The same tests run (in debug builds) as part of scripts/test.sh.
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
cargo test --release --test faults -- --nocapture --test-threads 1 2>&1 | tee /dev/stderr | grep -E '^fault report' || true
