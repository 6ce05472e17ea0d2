# Shared by the scripts in this folder: installs what Mercato needs, reusing what is
# already installed. Sourced, not run.
# SPDX-License-Identifier: AGPL-3.0-only

UV_VERSION=0.13.8
VENV=.venv
UV="$VENV/bin/uv"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

python311() {
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
            echo "$candidate"
            return
        fi
    done
    echo "Mercato needs Python 3.11 on PATH" >&2
    exit 1
}

ensure_uv() {
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating $VENV"
        "$(python311)" -m venv "$VENV"
    fi
    if ! "$UV" --version 2>/dev/null | grep -q "$UV_VERSION"; then
        log "installing uv $UV_VERSION"
        "$VENV/bin/python" -m pip install --quiet "uv==$UV_VERSION"
    fi
}

apt_install() {
    log "installing Debian packages: $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Debian packages, installed only when a command they provide is missing.
ensure_apt() {  # usage: ensure_apt COMMAND PACKAGE...
    local command=$1
    shift
    command -v "$command" >/dev/null 2>&1 || apt_install "$@"
}

# The index tests start a throwaway PostgreSQL server; Debian keeps its server binaries
# outside PATH, in /usr/lib/postgresql/<version>/bin.
ensure_postgres() {
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || apt_install postgresql
}

ensure_python_deps() {
    ensure_uv
    local stamp="$VENV/.requirements.sha256"
    local want
    want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing Python packages from requirements.lock"
        "$UV" pip sync --quiet --python "$VENV/bin/python" --require-hashes requirements.lock
        "$UV" pip install --quiet --python "$VENV/bin/python" --no-deps -e .
        echo "$want" >"$stamp"
    fi
}

ensure_node_deps() {
    ensure_apt npm nodejs npm
    local stamp=node_modules/.package-lock.sha256
    local want
    want=$(sha256sum package-lock.json | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing npm packages from package-lock.json"
        npm ci --no-audit --no-fund --loglevel=error
        echo "$want" >"$stamp"
    fi
}

# The web marketplace's wallet bundle, rebuilt when missing or package-lock.json changed.
ensure_web_bundle() {
    local stamp=src/mercato/gateway/static/.bundle.sha256
    local want
    want=$(cat package-lock.json web/*.js web/*.mjs | sha256sum | cut -d' ' -f1)
    if [ ! -f src/mercato/gateway/static/wallet.js ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "building the web wallet bundle"
        npm run --silent build:web >/dev/null
        echo "$want" >"$stamp"
    fi
}

bootstrap() {
    ensure_python_deps
    ensure_node_deps
    ensure_apt chromium chromium
    ensure_postgres
    ensure_web_bundle
}
