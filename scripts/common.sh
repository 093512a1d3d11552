# Shared by the scripts in this folder (sourced, not run). Expects the working directory to be the repository.

# Starts the local MongoDB (scripts/mongodb.sh) unless it already runs; remembers whether it did, so that
# stop_mongodb_if_started stops only what this script started.
ensure_local_mongodb() {
  STARTED_MONGODB=false
  if ! scripts/mongodb.sh status >/dev/null 2>&1; then
    STARTED_MONGODB=true
    scripts/mongodb.sh start >/dev/null
  fi
}

stop_mongodb_if_started() {
  if [ "${STARTED_MONGODB:-false}" = true ]; then scripts/mongodb.sh stop; fi
}

# Unless MMO_TEST_MONGODB_URI names one already, starts a throw-away MongoDB for tests on its own port and
# data directory, exports its URI, and stops it when the script exits.
use_test_mongodb() {
  if [ -n "${MMO_TEST_MONGODB_URI:-}" ]; then return 0; fi
  export MMO_MONGODB_PORT="${MMO_MONGODB_PORT:-27058}"
  export MMO_MONGODB_HOME="${MMO_MONGODB_HOME:-$PWD/.tools/mongodb-test}"
  export MMO_MONGODB_TEST_COMMANDS=1
  MMO_TEST_MONGODB_URI=$(scripts/mongodb.sh start)
  export MMO_TEST_MONGODB_URI
  trap 'scripts/mongodb.sh stop' EXIT
}

# The OpenAPI validator the tests run against /openapi.json (openapi-spec-validator, from PyPI), under
# .tools/validator.
ensure_openapi_validator() {
  if [ -d .tools/validator/openapi_spec_validator ]; then return 0; fi
  echo "installing openapi-spec-validator into .tools/validator" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --target .tools/validator 'openapi-spec-validator==0.7.1'
}

# Headless Chromium and its WebDriver for the browser test (tests/api/browser.rs): Debian's chromium and
# chromium-driver, installed with apt-get when chromedriver is missing (as root, or through sudo). Without
# them the browser test is skipped, except when CI is set, where it fails.
ensure_chromedriver() {
  if command -v chromedriver >/dev/null 2>&1; then return 0; fi
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "chromedriver is missing and cannot be installed (not root, no sudo): the browser test is skipped unless CI is set" >&2
      return 0
    fi
    sudo=(sudo)
  fi
  echo "installing chromium and chromium-driver (apt-get) for the browser test" >&2
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
    chromium chromium-driver >/dev/null
}
