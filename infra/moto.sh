#!/usr/bin/env bash
# The local AWS emulator: a pinned moto in <repo>/.venv, served by infra/moto_server.py
# (DynamoDB linearizable, cheap transaction rollback; see infra/README.md).
#
#   infra/moto.sh install        create .venv with the pinned moto and Schemathesis (quick when
#                                already there; Schemathesis fuzzes the local API, infra/fuzz.sh)
#   infra/moto.sh start PORT     start on 127.0.0.1:PORT in the background, wait until it answers
#   infra/moto.sh stop PORT      stop the one we started on PORT (TERM, then KILL)
#   infra/moto.sh status PORT
set -euo pipefail

MOTO_VERSION=5.2.5
SCHEMATHESIS_VERSION=4.32.5
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
PY="$VENV/bin/python"
RUN_DIR="$REPO/.local"
START_TIMEOUT_SECONDS=30

usage() {
    sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

installed_version() {
    [[ -x "$PY" ]] || return 0
    "$PY" -c "import importlib.metadata as m; print(m.version('${1:-moto}'))" 2>/dev/null || true
}

cmd_install() {
    if [[ "$(installed_version)" == "$MOTO_VERSION" && "$(installed_version schemathesis)" == "$SCHEMATHESIS_VERSION" ]]; then
        echo "moto $MOTO_VERSION and schemathesis $SCHEMATHESIS_VERSION already installed in $VENV"
        return
    fi
    if [[ ! -x "$PY" ]]; then
        python3 -m venv "$VENV"
    fi
    # The constraints pin moto's own dependencies (boto3, Werkzeug, ...) to the set the
    # launcher's patch and the fidelity tests were run with; Schemathesis shares this venv
    # (its dependencies fit moto's) under its own pins for the rest.
    "$PY" -m pip install --quiet --disable-pip-version-check \
        -c "$REPO/infra/moto-constraints.txt" -c "$REPO/infra/fuzz-constraints.txt" \
        "moto[server]==$MOTO_VERSION" "schemathesis==$SCHEMATHESIS_VERSION"
    echo "moto $(installed_version) and schemathesis $(installed_version schemathesis) installed in $VENV"
}

require_port() {
    [[ "${1:-}" =~ ^[0-9]+$ ]] || usage
}

pid_file() { echo "$RUN_DIR/moto-$1.pid"; }
log_file() { echo "$RUN_DIR/moto-$1.log"; }

# The PID from our PID file, if that process is still alive and is our launcher (a stale file
# could name an unrelated process that reused the PID).
running_pid() {
    local file pid
    file="$(pid_file "$1")"
    [[ -f "$file" ]] || return 1
    pid="$(cat "$file")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    ps -p "$pid" -o args= 2>/dev/null | grep -q "moto_server.py" || return 1
    echo "$pid"
}

# moto's config endpoint: cheap, unlike /moto-api/data.json which dumps every resource.
answers() {
    curl --silent --fail --max-time 2 --output /dev/null "http://127.0.0.1:$1/moto-api/config"
}

cmd_start() {
    local port=$1 pid log
    if pid="$(running_pid "$port")"; then
        echo "moto already running on 127.0.0.1:$port (pid $pid)"
        return
    fi
    if [[ "$(installed_version)" != "$MOTO_VERSION" ]]; then
        echo "moto $MOTO_VERSION is not installed in $VENV: run infra/moto.sh install" >&2
        exit 1
    fi
    if answers "$port"; then
        echo "port $port already answers but not from our PID file: refusing to start a second emulator" >&2
        exit 1
    fi
    mkdir -p "$RUN_DIR"
    log="$(log_file "$port")"
    nohup "$PY" "$REPO/infra/moto_server.py" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
    pid=$!
    echo "$pid" >"$(pid_file "$port")"
    local deadline=$((SECONDS + START_TIMEOUT_SECONDS))
    until answers "$port"; do
        if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
            echo "moto did not come up on 127.0.0.1:$port; last lines of $log:" >&2
            tail -n 20 "$log" >&2 || true
            kill "$pid" 2>/dev/null || true
            rm -f "$(pid_file "$port")"
            exit 1
        fi
        sleep 0.2
    done
    echo "moto running on http://127.0.0.1:$port (pid $pid, log $log)"
}

cmd_stop() {
    local port=$1 pid
    if ! pid="$(running_pid "$port")"; then
        rm -f "$(pid_file "$port")"
        echo "moto not running on port $port"
        return
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$(pid_file "$port")"
    echo "moto stopped on port $port (pid $pid)"
}

cmd_status() {
    local port=$1 pid
    if pid="$(running_pid "$port")"; then
        echo "moto running on http://127.0.0.1:$port (pid $pid, log $(log_file "$port"))"
    else
        echo "moto not running on port $port"
        return 1
    fi
}

case "${1:-}" in
install) cmd_install ;;
start) require_port "${2:-}" && cmd_start "$2" ;;
stop) require_port "${2:-}" && cmd_stop "$2" ;;
status) require_port "${2:-}" && cmd_status "$2" ;;
*) usage ;;
esac
