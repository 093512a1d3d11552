#!/usr/bin/env bash
# Starts mmo-webhooks on http://127.0.0.1:8000 against a local MongoDB, installing and starting that
# MongoDB first if needed (scripts/mongodb.sh). Uses config/local.toml (MMO_ENV=local) unless MMO_ENV is set.
# Stop with Ctrl-C: the service shuts down gracefully and the MongoDB this script started is stopped.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

started_mongodb=false
if ! scripts/mongodb.sh status >/dev/null 2>&1; then
  scripts/mongodb.sh start >/dev/null
  started_mongodb=true
fi
stop_mongodb() { if $started_mongodb; then scripts/mongodb.sh stop; fi; }
trap stop_mongodb EXIT

export MMO_ENV="${MMO_ENV:-local}"
export MMO_CONFIG_DIR="$root/config"
cargo run --release --bin mmo-webhooks
