#!/usr/bin/env bash
# API fuzzing of a running depot with schemathesis: a demo data directory is prepared, `depot
# serve` runs over it on a free loopback port, and `st run` drives every operation of
# /openapi.json with the admin token, bounded in examples and time. Fails on any 5xx or any
# response that does not match its schema.
#
# Usage: scripts/schemathesis.sh [MAX_EXAMPLES] [MAX_SECONDS]   (defaults 20 and 240)
# Env:   DEPOT_BIN (default: target/debug/depot, built when missing), ST_SEED (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."

max_examples=${1:-20}
max_seconds=${2:-240}

if ! command -v st >/dev/null 2>&1; then
  echo "installing schemathesis"
  python3 -m pip install --quiet 'schemathesis>=4,<5'
fi

bin=${DEPOT_BIN:-target/debug/depot}
if [ ! -x "$bin" ]; then
  cargo build --quiet
fi

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
addr=127.0.0.1:$port
demo=$work/demo

"$bin" demo --dir "$demo" --no-serve --listen "$addr" --payload-mib 1 >"$work/demo.txt"
admin=$(awk '$1 == "admin" { print $2; exit }' "$work/demo.txt")
if [ -z "$admin" ]; then
  echo "no admin token in the demo summary:" >&2
  cat "$work/demo.txt" >&2
  exit 1
fi

RUST_LOG=warn "$bin" --data-dir "$demo/artifacts" --templates "$demo/installer-templates" \
  --signing-key "$demo/keys/depot.key" serve --listen "$addr" >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  curl -fsS "http://$addr/healthz" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done

# Publishing builds every org's packages: schemathesis may call it, so give it room, but the
# whole run stays inside max_seconds (plus a margin for the last requests).
status=0
timeout --kill-after=10 $((max_seconds + 60)) \
  st run "http://$addr/openapi.json" \
  --header "Authorization: Bearer $admin" \
  --checks not_a_server_error,response_schema_conformance \
  --max-examples "$max_examples" \
  --max-time "$max_seconds" \
  --request-timeout 30 \
  --seed "${ST_SEED:-1}" \
  --workers 2 \
  --no-shrink \
  --warnings off \
  --report junit --report-dir "$work/report" || status=$?

if [ "$status" -ne 0 ]; then
  echo "schemathesis found problems (exit $status); server log:" >&2
  tail -n 50 "$work/serve.log" >&2
fi
exit "$status"
