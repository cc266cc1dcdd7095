# Shared by the scripts: toolchain checks and the one build every script uses.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_toolchain() {
  if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
      export PATH="$HOME/.cargo/bin:$PATH"
    else
      echo "cargo not found: install Rust from rustup first" >&2
      exit 1
    fi
  fi
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    log "installing the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
  fi
  # scripts/test checks the format and the lints (a minimal rustup profile has neither).
  local c
  for c in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$c"; then
      log "installing the $c component"
      rustup component add "$c"
    fi
  done
}

# Test tools from PyPI: openapi-spec-validator checks the OpenAPI document;
# standardwebhooks verifies the subscriptions' webhook signatures in the
# test receiver (tests/src/receiver.rs), a verifier nobody here wrote.
ensure_python_tools() {
  if ! python3 -c "import openapi_spec_validator" >/dev/null 2>&1; then
    log "installing openapi-spec-validator"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "openapi-spec-validator>=0.7,<1"
  fi
  if ! python3 -c "import standardwebhooks" >/dev/null 2>&1; then
    log "installing standardwebhooks"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "standardwebhooks==1.3.0"
  fi
}

# Browser tests (tests/browser): Debian's chromium, driven by playwright-core
# from npm (pinned in tests/browser/package-lock.json; node 20+ is on the machine).
ensure_browser_tools() {
  if [ ! -x /usr/bin/chromium ]; then
    log "installing chromium (Debian package)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "node and npm (node 20 or newer) are needed for the browser tests" >&2
    exit 1
  fi
  local dir="$ROOT/tests/browser"
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
    log "installing the browser tests' npm packages"
    (cd "$dir" && npm ci --no-audit --no-fund)
    touch "$dir/node_modules"
  fi
}

# The runner's service tests (tests/e2e/runner_services.rs) start their own
# PostgreSQL cluster and Redis server on free ports: Debian's packages provide
# the binaries. The packages' own services are stopped and kept from starting
# at boot: nothing relies on them.
ensure_services() {
  local missing=()
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  # `ip netns` for the replicas in network namespaces (tests/e2e/replicas.rs).
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing ${missing[*]} (Debian packages) for the service and replica tests"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # Keep the packages' services from starting during the installation.
  local policy=/usr/sbin/policy-rc.d added_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    added_policy=1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  [ -z "$added_policy" ] || $sudo rm -f "$policy"
  # Whatever did start (a cluster, a redis-server on 6379) is not needed.
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    local v name
    while read -r v name _; do
      [ -n "$v" ] && [ "$v" != Ver ] && $sudo pg_ctlcluster "$v" "$name" stop >/dev/null 2>&1 || true
    done < <(pg_lsclusters 2>/dev/null || true)
  fi
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now postgresql redis-server >/dev/null 2>&1 || true
  else
    $sudo service redis-server stop >/dev/null 2>&1 || true
    $sudo service postgresql stop >/dev/null 2>&1 || true
  fi
}

# Real Spin for the Spin suite (tests/e2e/spin.rs): SPIN_BIN if set, else
# `spin` on PATH, else ../shared/tools/spin/install.sh beside the project (it
# unpacks Spin 4.0.2 and the spin-trigger-cron plugin and prints the exports).
# Exports SPIN_BIN (and SPIN_DATA_DIR from install.sh); returns 1 if none.
find_spin() {
  if [ -n "${SPIN_BIN:-}" ]; then
    [ -x "$SPIN_BIN" ] || { echo "SPIN_BIN=$SPIN_BIN is not an executable" >&2; exit 1; }
    export SPIN_BIN
    return 0
  fi
  if command -v spin >/dev/null 2>&1; then
    SPIN_BIN="$(command -v spin)"
    export SPIN_BIN
    return 0
  fi
  local install="$ROOT/../shared/tools/spin/install.sh"
  [ -f "$install" ] || return 1
  local exports
  exports="$(bash "$install")" || { echo "$install failed" >&2; exit 1; }
  eval "$exports"
  export SPIN_BIN SPIN_DATA_DIR
}

# The Wasm components: every workspace member under components/ and tests/components/.
wasm_packages() {
  local dir
  for dir in components/*/ tests/components/*/; do
    [ -f "$dir/Cargo.toml" ] || continue
    sed -n 's/^name *= *"\(.*\)"/\1/p' "$dir/Cargo.toml" | head -n 1
  done
}

# Builds the runner (native, release) and every component (wasm32-wasip2, release), once.
build_all() {
  ensure_toolchain
  log "building the runner"
  cargo build --release --locked -p stepwise-host
  build_components
}

# Lints the workspace's own crates while they compile, as `cargo clippy`
# does but in the real build: cargo runs each of them through clippy-driver
# (RUSTC_WORKSPACE_WRAPPER, the variable `cargo clippy` sets; CLIPPY_ARGS
# carries clippy's arguments, here `-D warnings`), and dependencies through
# plain rustc. Every warning fails the build, and no second, check-only
# build of every dependency is needed. Builds with and without it compile the
# workspace's crates again; scripts/test exports it for all of its builds.
lint_while_building() {
  RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver)"
  export RUSTC_WORKSPACE_WRAPPER
  export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
}

# The native packages that have tests: the runner, the engine, the end-to-end
# suites, the store, the stepper, the web crate and the components' pure
# logic. Every test build names this one selection, so features resolve once
# and no crate is compiled twice.
native_test_packages() {
  local p
  for p in stepwise-host stepwise-engine stepwise-e2e stepwise-store stepwise-stepper stepwise-web sandbox tick console webhook; do
    printf -- '-p\n%s\n' "$p"
  done
}

# Builds the runner and every native test with one feature resolution (the
# test build's: the runner's integration tests make it build
# target/release/stepwise), the real-Spin suite (the same build, with the
# end-to-end crate's `spin` feature), then the components. A separate
# `cargo build -p stepwise-host` would resolve fewer features and compile
# wasmtime a second time.
build_for_tests() {
  ensure_toolchain
  log "building the runner and the native tests"
  local packages
  mapfile -t packages < <(native_test_packages)
  cargo test --release --locked --no-run "${packages[@]}"
  cargo test --release --locked --no-run "${packages[@]}" --features stepwise-e2e/spin --test spin
  build_components
}

# Prints each test executable of the native test build as
# `package<TAB>target<TAB>path<TAB>package directory` (target: an integration test's name, or
# `lib:NAME` or `bin:NAME` for the tests inside a library or a program), building nothing new; arguments are added to the build's.
test_executables() {
  local packages
  mapfile -t packages < <(native_test_packages)
  cargo test --release --locked --no-run --message-format=json "${packages[@]}" "$@" | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable") or not m["profile"]["test"]:
        continue
    t = m["target"]
    target = t["name"] if "test" in t["kind"] else t["kind"][0] + ":" + t["name"]
    # path+file:///dir#name@version, or path+file:///name#version
    url, _, version = m["package_id"].partition("#")
    package = version.split("@")[0] if "@" in version else url.rstrip("/").split("/")[-1]
    directory = m["manifest_path"].rsplit("/", 1)[0]
    print("\t".join((package, target, m["executable"], directory)))
'
}

# Builds every component (wasm32-wasip2, release).
build_components() {
  local args=()
  local p
  for p in $(wasm_packages); do args+=(-p "$p"); done
  log "building the components: $(wasm_packages | tr '\n' ' ')"
  cargo build --release --locked --target wasm32-wasip2 "${args[@]}"
}
