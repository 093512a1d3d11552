#!/usr/bin/env bash
# Fault report: runs the fault proofs of tests/faults.rs (SIGKILL, SIGTERM and SIGINT under load, a MongoDB
# outage, and a three-member replica set losing its primary) against release builds and a real MongoDB,
# and prints their report lines: callbacks sent, acknowledged, stored, lost (must be 0), duplicates, and
# the time until MongoDB held every acknowledged one. Exits non-zero when any proof fails.
# The same tests run (in debug builds) as part of scripts/test.sh.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

source scripts/common.sh
use_test_mongodb
mkdir -p target
output=target/faults.log
status=0
cargo test --release --test faults -- --nocapture --test-threads 1 >"$output" 2>&1 || status=$?
grep -E '^fault report' "$output" || true
if [ "$status" -ne 0 ]; then
  echo "faults.sh: a fault proof failed (cargo test exited $status):" >&2
  grep -E 'panicked|FAILED|assertion' "$output" >&2 || tail -40 "$output" >&2
  echo "faults.sh: the whole output is in $output" >&2
fi
exit "$status"
