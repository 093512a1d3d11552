#!/usr/bin/env bash
# Runs the whole test suite against a real MongoDB. When MMO_TEST_MONGODB_URI is not set, installs and
# starts a throw-away MongoDB on its own port (scripts/mongodb.sh) and stops it afterwards. Installs the
# OpenAPI validator and, when chromedriver is missing, Debian's chromium and chromium-driver (apt-get).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

source scripts/common.sh
ensure_openapi_validator
ensure_chromedriver
use_test_mongodb

# The tests' temporary files (journals, fault proofs' MongoDB data, OpenAPI documents) go under
# target/test-tmp, emptied at each run, instead of piling up in /tmp: a few hundred directories a run.
export TMPDIR="$root/target/test-tmp"
rm -rf "$TMPDIR"
mkdir -p "$TMPDIR"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
