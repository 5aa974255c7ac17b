#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests, then the black-box
# Python interop tests (tests/python) and the JavaScript client's tests
# (clients/js/test, Node and headless Chromium) against the real server
# binary.
#
#   tests/run-all.sh            # from anywhere; runs from the repo root
#
# WEBROCKET_SERVER: the server binary the Python tests start
# (default target/debug/webrocket-server, built here).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=.venv
requirements=tests/python/requirements.txt

make_venv() {
    rm -rf "$venv"
    if python3 -m venv "$venv" 2>/dev/null && "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
        return 0
    fi
    # Debian and Ubuntu ship venv/ensurepip separately (python3-venv).
    rm -rf "$venv"
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "run-all: python3 -m venv failed; installing python3-venv" >&2
        local minor
        minor=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq python3-venv >/dev/null ||
            apt-get install -y -qq "python${minor}-venv" >/dev/null
        python3 -m venv "$venv"
    else
        echo "run-all: python3 -m venv failed; install python3-venv (or python3 with ensurepip)" >&2
        return 1
    fi
}

# A venv copied from elsewhere or left half-made has no working python/pip.
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    make_venv
fi
# Reinstall only when the requirements changed.
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
    echo "$want" >"$stamp"
fi

# The Node `ws` client of the MonoRail tests (tests/js), from the npm
# registry at the versions package-lock.json pins; skipped when current.
if command -v npm >/dev/null 2>&1; then
    lock_stamp=tests/js/node_modules/.package-lock.sha256
    want_js=$(sha256sum tests/js/package-lock.json | cut -d' ' -f1)
    if [ "$(cat "$lock_stamp" 2>/dev/null || true)" != "$want_js" ]; then
        (cd tests/js && npm ci --no-audit --no-fund --silent)
        echo "$want_js" >"$lock_stamp"
    fi
else
    echo "run-all: npm not found; the Node ws client tests are skipped" >&2
fi

# RabbitMQ for the amqp resource test (tests/python/test_monorail_amqp.py),
# the Debian package; without it that test is skipped and says why.
if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && ! command -v rabbitmq-server >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null; } ||
            echo "run-all: rabbitmq-server could not be installed; the amqp test is skipped" >&2
    else
        echo "run-all: rabbitmq-server is missing (installing it needs root and apt-get); the amqp test is skipped" >&2
    fi
fi

cargo build --workspace --all-targets

# Run every suite even when one fails, so a run reports all failures; the
# exit status is non-zero if any failed.
status=0
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast || status=1
    # nextest does not run doctests.
    cargo test --workspace --doc || status=1
else
    cargo test --workspace --no-fail-fast || status=1
fi

export WEBROCKET_SERVER="${WEBROCKET_SERVER:-$PWD/target/debug/webrocket-server}"
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/python || status=1

# The JavaScript client's tests (clients/js/test): Node against the real
# server, and headless Chromium loading the chat example from it.
apt_updated=
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "$apt_updated" ]; then
        apt-get update -qq && apt_updated=1
    fi
    apt-get install -y -qq "$@" >/dev/null
}
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "run-all: installing nodejs and npm" >&2
    apt_install nodejs npm || echo "run-all: cannot install nodejs/npm (needs root and apt-get)" >&2
fi
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
    echo "run-all: installing chromium for the browser test" >&2
    apt_install chromium ||
        echo "run-all: no chromium and no way to install it: the browser test will be skipped" >&2
fi
if command -v node >/dev/null 2>&1; then
    js=clients/js
    js_stamp="$js/node_modules/.package-lock.sha256"
    js_want=$(sha256sum "$js/package-lock.json" | cut -d' ' -f1)
    if [ "$(cat "$js_stamp" 2>/dev/null || true)" != "$js_want" ]; then
        (cd "$js" && npm ci --no-audit --no-fund --loglevel=error) && echo "$js_want" >"$js_stamp" || status=1
    fi
    # Node 20 has a global WebSocket behind a flag (22 by default); the
    # client is tested with it where it exists.
    node_flags=()
    if node --experimental-websocket -e 0 >/dev/null 2>&1; then
        node_flags+=(--experimental-websocket)
    fi
    node "${node_flags[@]}" --test "$js/test/" || status=1
else
    echo "run-all: node not found: the JavaScript client tests did not run" >&2
    status=1
fi
exit "$status"
