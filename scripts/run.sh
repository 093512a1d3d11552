#!/usr/bin/env bash
# Starts mmo-webhooks on http://127.0.0.1:8000 against a local MongoDB, installing and starting that
# MongoDB first if needed (scripts/mongodb.sh; MMO_MONGODB_PORT picks its port, 27057 by default). Uses
# config/local.toml (MMO_ENV=local) unless MMO_ENV is set; the MongoDB's URI is handed to the service.
# Stop with Ctrl-C, or SIGTERM/SIGINT to this script's pid: the signal is passed on to the service, which
# finishes in-flight requests, drains its journal and exits; only then is the MongoDB this script started
# stopped (also when the service fails to start).
set -euo pipefail
# A shell started in the background inherits SIGINT ignored, and bash cannot trap a signal ignored on
# entry: run again with SIGINT and SIGTERM at their defaults, so both always reach the trap below.
if [ -z "${MMO_RUN_SIGNALS_RESET:-}" ]; then
  export MMO_RUN_SIGNALS_RESET=1
  exec env --default-signal=INT,TERM "$0" "$@"
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

source scripts/common.sh
trap stop_mongodb_if_started EXIT
ensure_local_mongodb

export MMO_ENV="${MMO_ENV:-local}"
export MMO_CONFIG_DIR="$root/config"
export MMO__MONGODB__URI="${MMO__MONGODB__URI:-$(scripts/mongodb.sh uri)}"
echo "MongoDB: $MMO__MONGODB__URI (log: ${MMO_MONGODB_HOME:-$root/.tools/mongodb-data}/mongod.log)"
if [ ! -x target/release/mmo-webhooks ]; then
  echo "Building the release binary: about five minutes the first time on two cores (cargo prints progress)."
fi
cargo build --release --bin mmo-webhooks
# Not exec'd: when the service ends (a signal, or a failed start), the EXIT trap stops MongoDB — after it.
# Run in the background and waited for, so that this shell can pass SIGTERM/SIGINT on: a foreground child
# would leave a signal to the script's pid waiting until the child exits on its own.
target/release/mmo-webhooks serve &
service=$!
trap 'kill -TERM "$service" 2>/dev/null || true' TERM INT
status=0
wait "$service" || status=$?
# A trapped signal interrupts `wait`: wait again until the service has really exited.
while kill -0 "$service" 2>/dev/null; do wait "$service" || status=$?; done
exit "$status"
