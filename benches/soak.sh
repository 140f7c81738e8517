#!/usr/bin/env bash
# Load and soak (issue 6): AGENTS simulated agents (examples/soak_agents.rs) enroll, then check
# for updates every INTERVAL seconds +-50% jitter for DURATION seconds, reporting `downloaded` and
# `installed` when offered an update. Meanwhile an admin, over the HTTP API, uploads release
# 1.1.0 and publishes it at 10% (at 10% of the run), widens the rollout to 50% (20%) and 100%
# (30%), so that the fleet has updated by mid-run and the second half shows the steady state.
# The server's RSS is sampled every SAMPLE seconds.
#
# Prints the RSS series, requests by endpoint and status, update-check latency, the rollout
# counts, and the check-ins the server recorded against the agents that checked in. Exits
# non-zero on any error (any non-2xx answer or transport error, an admin call that fails, an
# ERROR line in the server log), when the server's check-ins differ from the agents', or when
# the RSS grows by more than RSS_GROWTH_MIB (16) MiB during the second half of the run.
#
# Loopback only (the generator refuses any other address) and bounded: enrollment, then DURATION
# seconds, then the summary.
#   bash benches/soak.sh                             # 10,000 agents, 120 s (release build)
#   AGENTS=200 DURATION=10 bash benches/soak.sh      # smoke, as CI runs it
# Environment: AGENTS (10000), DURATION (120), INTERVAL (10, at most DURATION/4), SAMPLE (5,
# at most DURATION/10), ORGS (4), RSS_GROWTH_MIB (16), DEPOT_PORT (18190), DEPOT_BIN and
# SOAK_AGENTS_BIN (skip the build; SOAK_AGENTS_BIN defaults to examples/soak_agents beside
# DEPOT_BIN when it is there), KEEP=1 (keep the work directory), ADMIN=0 (no release during the
# run: the check-in path alone).
set -euo pipefail
cd "$(dirname "$0")/.."
AGENTS=${AGENTS:-10000}
DURATION=${DURATION:-120}
ORGS=${ORGS:-4}
RSS_GROWTH_MIB=${RSS_GROWTH_MIB:-16}
DEPOT_PORT=${DEPOT_PORT:-18190}
INTERVAL=${INTERVAL:-$(python3 -c "print(min(10.0, $DURATION / 4))")}
SAMPLE=${SAMPLE:-$(python3 -c "print(min(5.0, $DURATION / 10))")}
for tool in curl python3; do command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }; done

if [ -n "${DEPOT_BIN:-}" ]; then
  depot=$(cd "$(dirname "$DEPOT_BIN")" && pwd)/$(basename "$DEPOT_BIN")
  if [ -z "${SOAK_AGENTS_BIN:-}" ] && [ -x "$(dirname "$depot")/examples/soak_agents" ]; then
    SOAK_AGENTS_BIN=$(dirname "$depot")/examples/soak_agents
  fi
else
  cargo build --release --quiet --bin depot
  depot=$PWD/target/release/depot
fi
if [ -n "${SOAK_AGENTS_BIN:-}" ]; then
  agents_bin=$(cd "$(dirname "$SOAK_AGENTS_BIN")" && pwd)/$(basename "$SOAK_AGENTS_BIN")
else
  cargo build --release --quiet --example soak_agents
  agents_bin=$PWD/target/release/examples/soak_agents
fi

work=$(mktemp -d /tmp/depot-soak.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
cd "$work"
base="http://127.0.0.1:$DEPOT_PORT"
export DEPOT_PUBLIC_URL=$base

# The depot as an admin leaves it: orgs, release 1.0.0 on stable, an admin token.
"$depot" init > /dev/null
keys=()
for i in $(seq "$ORGS"); do
  "$depot" org add "dept$i" --name "Department $i" --seats "$AGENTS" > /dev/null
  keys+=(--registration-key "$("$depot" org show "dept$i" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["registration_key"])')")
done
head -c 1048576 /dev/urandom > client-1.0.0.tgz
head -c 1048576 /dev/urandom > client-1.1.0.tgz
"$depot" release add 1.0.0 --payload linux-x86_64=client-1.0.0.tgz > /dev/null
"$depot" release publish 1.0.0 --channel stable > /dev/null 2>&1
admin=$("$depot" token create --role admin --name soak-admin 2> /dev/null)

RUST_LOG=warn "$depot" serve --listen "127.0.0.1:$DEPOT_PORT" > depot.log 2>&1 &
pids+=($!); depot_pid=$!
for _ in $(seq 100); do curl -fs "$base/healthz" > /dev/null && break; sleep 0.1; done
curl -fs "$base/healthz" > /dev/null || { echo "depot did not start:" >&2; cat depot.log >&2; exit 1; }

"$agents_bin" --server "$base" "${keys[@]}" --agents "$AGENTS" --duration "$DURATION" \
  --interval "$INTERVAL" --progress "$(python3 -c "print(max(1.0, $DURATION / 12))")" > agents.out 2> agents.err &
pids+=($!); agents_pid=$!
while ! grep -qs '^READY' agents.out; do
  kill -0 "$agents_pid" 2>/dev/null || { echo "the agents did not start:" >&2; cat agents.err >&2; exit 1; }
  sleep 0.2
done
start=$(date +%s.%N)
elapsed() { python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')"; }

# The admin's timeline, over the API, beside the fleet.
api() { # METHOD PATH [curl args...]: fails on any non-2xx
  local method=$1 path=$2; shift 2
  curl -fsS -o /dev/null -X "$method" -H "Authorization: Bearer $admin" "$@" "$base$path"
}
at() { python3 -c "import time; time.sleep(max(0.0, $start + $1 * $DURATION - time.time()))"; }
(
  set -e
  [ "${ADMIN:-1}" = 1 ] || { echo "admin: ADMIN=0, no release during the run"; exit 0; }
  at 0.10
  api POST /v1/releases -F version=1.1.0 -F notes=soak -F linux-x86_64=@client-1.1.0.tgz
  api POST /v1/releases/1.1.0/publish -H 'content-type: application/json' -d '{"channel":"stable","rollout_percent":10}'
  echo "t=$(elapsed)s admin: uploaded and published 1.1.0 at 10%"
  for step in "0.20 50" "0.30 100"; do
    set -- $step
    at "$1"
    api PUT /v1/releases/1.1.0/rollout -H 'content-type: application/json' -d "{\"channel\":\"stable\",\"percent\":$2,\"paused\":false}"
    echo "t=$(elapsed)s admin: rollout of 1.1.0 at $2%"
  done
) > admin.log 2>&1 &
admin_pid=$!; pids+=($admin_pid)

# RSS of the server every SAMPLE seconds, until the fleet is done.
: > rss.txt
while kill -0 "$agents_pid" 2>/dev/null; do
  echo "$(elapsed) $(awk '/VmRSS/ {print $2}' "/proc/$depot_pid/status")" >> rss.txt
  sleep "$SAMPLE"
done
agents_status=0; wait "$agents_pid" || agents_status=$?
admin_status=0; wait "$admin_pid" || admin_status=$?
sleep 1 # check-ins are written in batches every 250 ms

# The server's own view. An overloaded server may still be working off queued requests: a few
# tries, then `null`, which the summary reports as a failure.
query() {
  local try
  for try in 1 2 3; do
    curl -fsS --max-time 90 -H "Authorization: Bearer $admin" "$base$1" && return
    sleep 5
  done
  echo null
}
for i in $(seq "$ORGS"); do query "/v1/orgs/dept$i/usage"; echo; done > usage.jsonl
query /v1/rollouts > rollouts.json

echo "--- progress"
cat agents.err
echo "--- admin"
cat admin.log
echo "--- fleet"
grep -v '^READY\|^RESULT' agents.out
python3 - "$RSS_GROWTH_MIB" "$DURATION" "$agents_status" "$admin_status" "$AGENTS" <<'PY'
import json, sys
growth_bound, duration, agents_status, admin_status, agents = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
failures = []
result = json.loads(next(l for l in open("agents.out") if l.startswith("RESULT "))[7:])
samples = [(float(t), int(kib)) for t, kib in (l.split() for l in open("rss.txt") if len(l.split()) == 2)]
usage = [json.loads(l) for l in open("usage.jsonl") if l.strip()]
rollouts = json.load(open("rollouts.json")) or []
if None in usage:
    failures.append("the server did not answer the usage query")
    usage = [u for u in usage if u]
log_errors = [l for l in open("depot.log") if " ERROR " in l or '"level":"ERROR"' in l]

print("--- server RSS (MiB)")
print(" ".join(f"{t:.0f}s:{kib / 1024:.1f}" for t, kib in samples))
second = [kib for t, kib in samples if t >= duration / 2]
if len(second) >= 2:
    growth = (max(second) - second[0]) / 1024
    print(f"second half: {second[0] / 1024:.1f} -> max {max(second) / 1024:.1f} MiB, growth {growth:.1f} MiB (bound {growth_bound:g} MiB)")
    if growth > growth_bound:
        failures.append(f"RSS grew {growth:.1f} MiB in the second half")
else:
    failures.append("too few RSS samples in the second half")

print("--- server")
enrolled = sum(u["enrolled"] for u in usage)
active = sum(u["active_30d"] for u in usage)
versions = {}
for u in usage:
    for v, n in u["by_version"].items():
        versions[v] = versions.get(v, 0) + n
print(f"devices enrolled: {enrolled} (agents {agents}); with a recorded check-in: {active} (agents that checked in: {result['checked_in']})")
print("last reported versions: " + ", ".join(f"{v}: {n}" for v, n in sorted(versions.items())))
for r in rollouts:
    print(f"rollout {r['version']} on {r['channel']}: {r['percent']}% paused={r['paused']} offered={r['offered']} downloaded={r['downloaded']} installed={r['installed']} failed={r['failed']}")
print(f"server log: {len(log_errors)} ERROR lines")

print("--- verdict")
if result["errors"]:
    failures.append(f"{result['errors']} failed requests")
if agents_status or admin_status:
    failures.append(f"exit status: agents {agents_status}, admin {admin_status}")
if enrolled != agents:
    failures.append(f"{enrolled} devices enrolled, not {agents}")
if active != result["checked_in"]:
    failures.append(f"the server recorded {active} check-ins, the agents made {result['checked_in']}")
if log_errors:
    failures.append(f"{len(log_errors)} ERROR lines in the server log, first: {log_errors[0].strip()}")
print(f"{result['requests']} requests, {result['errors']} errors, {result['checks']} update checks "
      f"({result['checks'] / result['run_seconds']:.0f}/s), p99 {result['p99_ms']:.2f} ms, {result['offers']} updates taken")
for f in failures:
    print("FAIL:", f)
print("OK" if not failures else "FAILED")
sys.exit(1 if failures else 0)
PY
