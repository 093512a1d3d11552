#!/usr/bin/env bash
# Starts mmo-webhooks on http://127.0.0.1:8000 against a local MongoDB, installing and starting that
# MongoDB first if needed (scripts/mongodb.sh). Uses config/local.toml (MMO_ENV=local) unless MMO_ENV is set.
# Stop with Ctrl-C: the service shuts down gracefully and the MongoDB this script started is stopped.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

source scripts/common.sh
ensure_local_mongodb
trap stop_mongodb_if_started EXIT

export MMO_ENV="${MMO_ENV:-local}"
export MMO_CONFIG_DIR="$root/config"
cargo run --release --bin mmo-webhooks
