#!/usr/bin/env bash
# Installs what Runstream needs on a fresh machine (Debian 12 with Python 3.11, Node 20, npm).
#   scripts/setup.sh demo   .venv with the package alone: enough for `runstream demo` and `serve`
#   scripts/setup.sh web    the demo install plus Envoy (the envoy extra): `runstream dashboard`;
#                           the dashboard's page is prebuilt inside the package, so no Node
#   scripts/setup.sh test   .venv with the dev, redis, envoy, observability and
#                           agent-framework (langchain, openai-agents, agui) extras, the
#                           pinned Node tooling
#                           (buf) from package-lock.json, the web client's packages from
#                           src/clients/web/package-lock.json, Chromium for the browser
#                           tests, and Debian's Go and Java gRPC packages for the Go and Java
#                           clients' tests: everything the test suite needs
#
# Idempotent and quiet: each step is skipped when what it installs is already there and its
# inputs (pyproject.toml, package-lock.json) have not changed since; a failing step prints its
# full output and stops the script with a non-zero exit.
#
# Environment: PYTHON (default python3) is the interpreter the venv is made from.
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${1:-demo}"
case "$profile" in
  demo | web | test) ;;
  *)
    echo "usage: scripts/setup.sh [demo|web|test]" >&2
    exit 2
    ;;
esac

PYTHON="${PYTHON:-python3}"
VENV=.venv
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

say() { echo "setup: $*"; }

die() {
  echo "setup: ERROR: $*" >&2
  exit 1
}

# Runs a command with its output captured; prints the output only when the command fails,
# followed by $HINT when set.
HINT=""
quiet() {
  local log status=0
  log="$(mktemp)"
  "$@" >"$log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    echo "setup: FAILED (exit $status): $*" >&2
    sed 's/^/  | /' "$log" >&2
    [ -z "$HINT" ] || echo "setup: hint: $HINT" >&2
    rm -f "$log"
    exit "$status"
  fi
  rm -f "$log"
}

# A fingerprint of the files a step installs from; the step reruns when it changes.
fingerprint() {
  cat "$@" | sha256sum | cut -d' ' -f1
}

# --- Debian packages ---------------------------------------------------------------------
# Later features bring system binaries (redis-server for the Redis store, chromium for the
# browser tests); they are declared as "package:binary" pairs and installed through
# apt_require, which runs `apt-get update` at most once and only when a binary is missing.
APT_UPDATED=0
apt_install() {
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to apt-get install $*"
    sudo=(sudo)
  fi
  if [ "$APT_UPDATED" -eq 0 ]; then
    quiet "${sudo[@]}" apt-get update
    APT_UPDATED=1
  fi
  say "apt-get install $*"
  quiet "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "$@"
}

# A pair without a binary ("package:") is a library, checked with dpkg.
apt_require() {
  local pair binary missing=()
  for pair in "$@"; do
    binary="${pair#*:}"
    if [ -n "$binary" ]; then
      command -v "$binary" >/dev/null 2>&1 || missing+=("${pair%%:*}")
    else
      dpkg-query -W -f='${Status}' "${pair%%:*}" 2>/dev/null | grep -q ' installed$' ||
        missing+=("${pair%%:*}")
    fi
  done
  [ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}"
}

# Debian packages per profile. The demo needs none: the embedded store is SQLite, and grpcurl
# and Envoy come as wheels. The browser tests drive Debian's Chromium (Playwright cannot
# download its own browser builds here); the replica tests run real redis-server processes.
# The Go client's test (tests/e2e/test_go_client.py) generates stubs with protoc and builds
# against Debian's Go libraries: golang/protobuf 1.5 named, as apt would otherwise pick 1.3,
# whose types genproto's errdetails cannot use (and not golang-goprotobuf-dev, which
# conflicts with protoc-gen-go).
# The Java client's test (tests/e2e/test_java_client.py) compiles against Debian's jars:
# libgrpc-java depends on neither netty nor perfmark, and the stubs' @javax.annotation.Generated
# comes from geronimo-annotation (the JDK dropped it in 11).
DEMO_APT=()
WEB_APT=()
GO_APT=(golang-go:go protobuf-compiler:protoc protoc-gen-go:protoc-gen-go
  protoc-gen-go-grpc:protoc-gen-go-grpc golang-google-grpc-dev: golang-google-protobuf-dev:
  golang-github-golang-protobuf-1-5-dev: golang-google-genproto-dev:)
JAVA_APT=(default-jdk-headless:javac protobuf-compiler-grpc-java-plugin:grpc_java_plugin
  libgrpc-java: libprotobuf-java: libgoogle-common-protos-java: libnetty-java: libperfmark-java:
  libgeronimo-annotation-1.3-spec-java:)
TEST_APT=(chromium:chromium redis-server:redis-server "${GO_APT[@]}" "${JAVA_APT[@]}")

# --- Python ------------------------------------------------------------------------------
python_setup() {
  local extras="$1" stamp="$VENV/.runstream-setup-$profile" want done_stamp
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found; Python 3.11 or newer is needed"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "$PYTHON is $("$PYTHON" -V 2>&1); Python 3.11 or newer is needed"

  if [ ! -x "$VENV/bin/python" ]; then
    # Debian's own python3 leaves venv's pip bootstrap to a separate package.
    if ! "$PYTHON" -c 'import ensurepip' >/dev/null 2>&1; then
      case "$(command -v "$PYTHON")" in
        /usr/bin/*) apt_install python3-venv ;;
        *) die "$PYTHON cannot create virtual environments (no ensurepip)" ;;
      esac
    fi
    say "creating $VENV with $("$PYTHON" -V 2>&1)"
    quiet "$PYTHON" -m venv "$VENV"
  fi

  want="$(fingerprint pyproject.toml)"
  # Each install is a superset of the one before (demo < web < test), so a later profile's
  # stamp satisfies an earlier profile.
  local candidates=(test)
  case "$profile" in
    demo) candidates=(demo web test) ;;
    web) candidates=(web test) ;;
  esac
  for done_stamp in "${candidates[@]/#/$VENV/.runstream-setup-}"; do
    if [ -f "$done_stamp" ] && [ "$(cat "$done_stamp")" = "$want" ] &&
      "$VENV/bin/python" -c 'import runstream, runstream_server' >/dev/null 2>&1; then
      return 0
    fi
  done

  say "installing Runstream into $VENV (pip install -e '.$extras')"
  rm -f "$stamp"
  quiet "$VENV/bin/python" -m pip install -e ".$extras"
  echo "$want" >"$stamp"
}

# --- Node tooling (buf) ------------------------------------------------------------------
node_setup() {
  local stamp=node_modules/.runstream-setup want
  command -v npm >/dev/null 2>&1 || die "npm not found; Node 20 with npm is needed for buf"
  [ -f package-lock.json ] || die "package-lock.json is missing; it pins the Node tooling"
  want="$(fingerprint package.json package-lock.json)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x node_modules/.bin/buf ]; then
    return 0
  fi
  say "installing pinned Node tooling (npm ci)"
  HINT="if npm says the lock file is out of sync, regenerate it with scripts/npm-lock.sh"
  quiet npm ci --no-audit --no-fund
  HINT=""
  [ -x node_modules/.bin/buf ] || die "npm ci finished but node_modules/.bin/buf is missing"
  echo "$want" >"$stamp"
}

# --- The web client (src/clients/web): dashboard sources, Node client test, Playwright ----
web_setup() {
  local dir=src/clients/web want
  local stamp="$dir/node_modules/.runstream-setup"
  want="$(fingerprint "$dir/package.json" "$dir/package-lock.json")"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] ||
    [ ! -x "$dir/node_modules/.bin/esbuild" ]; then
    say "installing the web client's pinned packages (npm ci in $dir)"
    HINT="if npm says the lock file is out of sync, run scripts/npm-lock.sh $dir"
    quiet npm ci --prefix "$dir" --no-audit --no-fund
    HINT=""
    echo "$want" >"$stamp"
  fi
  # The bundle is committed (tests/contract/test_web.py keeps it current); build it only
  # when it is missing, e.g. deleted by hand.
  if [ ! -f src/clients/python/runstream/dashboard/static/index.html ]; then
    say "building the dashboard bundle"
    quiet node "$dir/scripts/build.mjs"
  fi
}

case "$profile" in
  demo)
    [ "${#DEMO_APT[@]}" -eq 0 ] || apt_require "${DEMO_APT[@]}"
    python_setup ""
    ;;
  web)
    [ "${#WEB_APT[@]}" -eq 0 ] || apt_require "${WEB_APT[@]}"
    python_setup "[envoy]"
    ;;
  test)
    [ "${#TEST_APT[@]}" -eq 0 ] || apt_require "${TEST_APT[@]}"
    python_setup "[dev,redis,envoy,observability,langchain,openai-agents,agui]"
    node_setup
    web_setup
    ;;
esac
say "ready ($profile)"
