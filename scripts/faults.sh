#!/usr/bin/env bash
# Fault report: runs the fault proofs of tests/faults.rs (SIGKILL under load, SIGTERM under load, a 30 s
# MongoDB outage) against release builds and a real MongoDB, and prints their report lines: callbacks sent,
# acknowledged, stored, lost (must be 0), duplicates, and the time until MongoDB held every acknowledged one.
# The same tests run (in debug builds) as part of scripts/test.sh.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

source scripts/common.sh
use_test_mongodb
cargo test --release --test faults -- --nocapture --test-threads 1 2>&1 | tee /dev/stderr | grep -E '^fault report' || true
