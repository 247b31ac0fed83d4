#!/usr/bin/env bash
# The API contract under fuzzing: starts the seeded local platform on its own emulator and
# port, then runs Schemathesis against GET /openapi.json once per role with that role's demo
# token. Fails on any server error or any answer that breaks the document (an undocumented
# status or content type, or a body outside its schema).
#
#   infra/fuzz.sh [MAX_EXAMPLES]     (default 40 test cases per operation and role)
#
# Needs target/debug/loyalty-local (cargo build -p loyalty-local) and infra/moto.sh install.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# Ports of their own, so fuzzing runs beside ./dev up (4566, 3000) and the tests (4567).
MOTO_PORT="${FUZZ_MOTO_PORT:-4578}"
API_PORT="${FUZZ_API_PORT:-3010}"
MAX_EXAMPLES="${1:-40}"
LOG="$REPO/.local/fuzz-platform.log"
BASE="http://127.0.0.1:$API_PORT"

platform_pid=""
stop_all() {
    if [[ -n "$platform_pid" ]]; then
        kill "$platform_pid" 2>/dev/null || true
        wait "$platform_pid" 2>/dev/null || true
    fi
    infra/moto.sh stop "$MOTO_PORT" >/dev/null 2>&1 || true
}
trap stop_all EXIT

if curl --silent --max-time 2 --output /dev/null "$BASE/openapi.json"; then
    echo "port $API_PORT already answers: refusing to fuzz someone else's server" >&2
    exit 1
fi
infra/moto.sh start "$MOTO_PORT"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export LOCAL_AWS_ENDPOINT="http://127.0.0.1:$MOTO_PORT" AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"
mkdir -p "$(dirname "$LOG")"
# Emptied here, not by the background job's redirection, which may come after the first
# look below and leave a previous run's tokens in sight.
: >"$LOG"
target/debug/loyalty-local up --port "$API_PORT" >"$LOG" 2>&1 &
platform_pid=$!

# The seed prints the demo tokens once the programme exists (batch generated, partner set).
deadline=$((SECONDS + 120))
until grep -q '^export SELLER_TOKEN=' "$LOG" &&
    curl --silent --fail --max-time 2 --output /dev/null "$BASE/openapi.json"; do
    if ! kill -0 "$platform_pid" 2>/dev/null || ((SECONDS >= deadline)); then
        echo "the local platform did not come up on $BASE; last lines of $LOG:" >&2
        tail -n 30 "$LOG" >&2
        exit 1
    fi
    sleep 0.5
done
token() { sed -n "s/^export $1_TOKEN=//p" "$LOG" | tail -n 1; }

failed=0
# participant: the demo outlet's owner; rep and admin: the demo rep and admin.
for role in participant:OWNER rep:REP admin:ADMIN; do
    name="${role%%:*}"
    echo "--> schemathesis as $name ($MAX_EXAMPLES cases per operation)"
    # Checks: no 5xx; every answer has a status the operation documents, that status's
    # content type, and matches its schema. The examples, coverage and fuzzing phases only:
    # the stateful phase needs links the document does not declare. A fixed seed, so a
    # failure reproduces; one worker, as the emulator is one process on a small machine.
    "$REPO/.venv/bin/schemathesis" run "$BASE/openapi.json" \
        --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
        --phases examples,coverage,fuzzing \
        --max-examples "$MAX_EXAMPLES" \
        --workers 1 \
        --seed 1 \
        --no-color \
        --header "Authorization: Bearer $(token "${role##*:}")" \
        --generation-database none \
        --suppress-health-check all \
        --request-timeout 10 || failed=1
done
if ((failed)); then
    echo "schemathesis found failures; the platform's log is $LOG" >&2
    exit 1
fi
