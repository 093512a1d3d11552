#!/usr/bin/env bash
# Load benchmark: starts a local MongoDB (if needed) and a release build of the service on port 8077 (rate
# limit lifted: the benchmark is one client; journal in a temporary directory), runs examples/load.rs
# against it (bounded in requests and time, loopback only), prints the figures, and stops the service by
# its pid (and MongoDB, when this script started it).
#   scripts/bench.sh [--requests N] [--concurrency C] [--repeat-percent P] [--max-seconds S]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

source scripts/common.sh
ensure_local_mongodb
journal=$(mktemp -d)
uri=$(scripts/mongodb.sh uri)
database="mmo_bench_$(date +%s)"
port=8077
token="bench-token-0123456789"

cargo build --release --bin mmo-webhooks --example load
MMO_CONFIG_DIR="$root/config" MMO__SERVER__HOST=127.0.0.1 MMO__SERVER__PORT=$port MMO__MONGODB__URI="$uri" \
  MMO__MONGODB__DATABASE="$database" MMO__AUTH__BEARER_TOKENS="$token" MMO__LOG__LEVEL=warn \
  MMO__RATE_LIMIT__WEBHOOKS_PER_MINUTE=100000000 MMO__JOURNAL__DIR="$journal" \
  target/release/mmo-webhooks &
service=$!
cleanup() {
  kill "$service" 2>/dev/null && wait "$service" 2>/dev/null || true
  rm -rf "$journal"
  stop_mongodb_if_started
}
trap cleanup EXIT

for _ in $(seq 1 100); do
  curl -sf -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:$port/v1/webhooks/mpesa/health" && break
  sleep 0.1
done

target/release/examples/load --url "http://127.0.0.1:$port" --token "$token" --mongodb-uri "$uri" \
  --database "$database" "$@"
