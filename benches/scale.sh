#!/usr/bin/env bash
# Scale-out cost (issue 7): the same workload on SQLite + files and on PostgreSQL + Garage, in
# one run.
#
# For each backend: ORGS orgs; `depot release add` of three MIB MiB payloads and
# `depot release publish` of it ((ORGS + 1) x 3 packages, timed); then DEVICES devices enroll
# and `wrk -t2 -c64` POSTs their update checks for DURATION against one `depot serve` (as
# benches/update_check.sh does). Prints each figure, the PostgreSQL + Garage / SQLite + files
# ratios, and what the difference costs.
#
# PostgreSQL and Garage come from DEPOT_TEST_POSTGRES and DEPOT_TEST_S3_ENDPOINT (with
# AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, GARAGE_CONFIG_FILE) when set, else
# they are started with scripts/test-postgres.sh and scripts/test-garage.sh and stopped after.
# The benchmark makes its own database (dropped after) and bucket (left in the throwaway Garage
# node, which `scripts/test-garage.sh stop` wipes: S3 deletes a bucket only once it is empty).
#   bash benches/scale.sh                          # 100 orgs, 64 MiB payloads, 2,000 devices, 10 s
#   SMOKE=1 DEPOT_BIN=target/debug/depot bash benches/scale.sh   # what CI runs
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
ORGS=${ORGS:-100}
MIB=${MIB:-64}            # payload parts of 5 MiB and more are composed by the store (UploadPartCopy)
DEVICES=${DEVICES:-2000}
DURATION=${DURATION:-10s}
if [ -n "${SMOKE:-}" ]; then ORGS=5; MIB=6; DEVICES=50; DURATION=2s; fi
PORT=${PORT:-18190}

for tool in wrk curl python3 psql; do
  command -v "$tool" >/dev/null || { echo "benches/scale.sh needs $tool" >&2; exit 1; }
done
if [ -n "${DEPOT_BIN:-}" ]; then
  depot=$(cd "$(dirname "$DEPOT_BIN")" && pwd)/$(basename "$DEPOT_BIN")
else
  cargo build --release --quiet
  depot=$repo/target/release/depot
fi

work=$(mktemp -d /tmp/depot-bench-scale.XXXXXX)
started=()
database=""
cleanup() {
  [ -n "$database" ] && psql "$DEPOT_TEST_POSTGRES" -qAtc "drop database if exists $database with (force)" >/dev/null 2>&1
  for s in "${started[@]}"; do bash "$repo/scripts/test-$s.sh" stop >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

if [ -z "${DEPOT_TEST_POSTGRES:-}" ]; then
  eval "$(bash scripts/test-postgres.sh start)"; started+=(postgres)
fi
if [ -z "${DEPOT_TEST_S3_ENDPOINT:-}" ]; then
  eval "$(bash scripts/test-garage.sh start)"; started+=(garage)
fi
garage=${GARAGE_BIN:-$(command -v garage || echo /tmp/garage-install/bin/garage)}
[ -n "${GARAGE_CONFIG_FILE:-}" ] && [ -x "$garage" ] \
  || { echo "benches/scale.sh makes its bucket with the garage CLI: needs GARAGE_CONFIG_FILE and garage" >&2; exit 1; }

suffix=$(python3 -c 'import secrets; print(secrets.token_hex(6))')
database=depot_bench_$suffix
bucket=depot-bench-$suffix
psql "$DEPOT_TEST_POSTGRES" -qAtc "create database $database" >/dev/null
"$garage" -c "$GARAGE_CONFIG_FILE" bucket create "$bucket" >/dev/null
"$garage" -c "$GARAGE_CONFIG_FILE" bucket allow --read --write --owner "$bucket" --key "$AWS_ACCESS_KEY_ID" >/dev/null

mkdir -p "$work/payloads"
payload_args=()
for p in windows-x86_64:msi macos-aarch64:dmg linux-x86_64:tgz; do
  f="$work/payloads/client-1.0.0-${p%%:*}.${p##*:}"
  head -c $((MIB * 1024 * 1024)) /dev/urandom > "$f"
  payload_args+=(--payload "${p%%:*}=$f")
done
head -c 1048576 /dev/urandom > "$work/payloads/client-1.1.0.tgz"
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }

cat > "$work/checks.lua" <<'LUA'
local tokens = {}
for line in io.lines("tokens.txt") do tokens[#tokens + 1] = line end
math.randomseed(os.time())
wrk.method = "POST"
wrk.body = '{"platform":"linux-x86_64","current_version":"1.0.0"}'
wrk.headers["Content-Type"] = "application/json"
request = function()
  wrk.headers["Authorization"] = "Bearer " .. tokens[math.random(#tokens)]
  return wrk.format()
end
done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %.1f %.3f %d\n", summary.requests / (summary.duration / 1e6), latency:percentile(99) / 1000, bad))
end
LUA

# One backend, in a subshell: prints "add_s publish_s checks_per_s p99_ms errors".
run() { # name
  local dir="$work/$1" base="http://127.0.0.1:$PORT"
  server=""
  trap '[ -z "$server" ] || { kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; }' EXIT
  mkdir -p "$dir" && cd "$dir"
  export DEPOT_PUBLIC_URL=$base
  "$depot" init > /dev/null
  for i in $(seq 1 "$ORGS"); do "$depot" org add "dept$i" --name "Department $i" --seats "$DEVICES" > /dev/null; done
  local a0 a1 p1
  a0=$(now); "$depot" release add 1.0.0 "${payload_args[@]}" > /dev/null
  a1=$(now); "$depot" release publish 1.0.0 --channel stable > /dev/null 2>&1
  p1=$(now)
  "$depot" release add 1.1.0 --payload "linux-x86_64=$work/payloads/client-1.1.0.tgz" > /dev/null
  "$depot" release publish 1.1.0 --channel stable --rollout 30 > /dev/null 2>&1
  local key
  key=$("$depot" org show dept1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["registration_key"])')
  RUST_LOG=warn "$depot" serve --listen "127.0.0.1:$PORT" > serve.log 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -fs "$base/healthz" > /dev/null && break; sleep 0.1; done
  curl -fs "$base/healthz" > /dev/null || { echo "$1: depot did not start:" >&2; cat serve.log >&2; exit 1; }
  python3 - "$base" "$key" "$DEVICES" > tokens.txt <<'PY'
import http.client, json, sys, urllib.parse
base, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = urllib.parse.urlparse(base)
c = http.client.HTTPConnection(u.hostname, u.port)
for i in range(n):
    body = json.dumps({"registration_key": key, "hostname": f"host-{i:05d}", "platform": "linux-x86_64",
                       "os_version": "Debian 12", "user": f"user{i}"})
    c.request("POST", "/v1/devices/enroll", body, {"content-type": "application/json"})
    r = c.getresponse(); data = r.read()
    if r.status != 201: sys.exit(f"enroll {i}: {r.status} {data[:200]!r}")
    print(json.loads(data)["device_token"])
PY
  local rps p99 bad
  read -r _ rps p99 bad < <(wrk -t2 -c64 -d"$DURATION" -s "$work/checks.lua" "$base/v1/update-check" | grep RESULT)
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
  echo "$(elapsed "$a0" "$a1") $(elapsed "$a1" "$p1") $rps $p99 $bad"
}

echo "orgs: $ORGS (+ default), payloads: 3 x $MIB MiB, devices: $DEVICES, checks: wrk -t2 -c64 for $DURATION"
(unset DEPOT_DATABASE DEPOT_ARTIFACTS; run sqlite-files) > "$work/sqlite-files.result"
(export DEPOT_DATABASE="${DEPOT_TEST_POSTGRES%/*}/$database" DEPOT_ARTIFACTS="s3://$bucket" \
        DEPOT_S3_ENDPOINT="$DEPOT_TEST_S3_ENDPOINT"
 run postgres-garage) > "$work/postgres-garage.result"
read -r lite_add lite_pub lite_rps lite_p99 lite_bad < "$work/sqlite-files.result"
read -r pg_add pg_pub pg_rps pg_p99 pg_bad < "$work/postgres-garage.result"

python3 - "$ORGS" "$MIB" "$lite_add" "$lite_pub" "$lite_rps" "$lite_p99" "$lite_bad" \
  "$pg_add" "$pg_pub" "$pg_rps" "$pg_p99" "$pg_bad" <<'PY'
import sys
orgs, mib = int(sys.argv[1]), int(sys.argv[2])
la, lp, lr, l99, lbad, pa, pp, pr, p99, pbad = map(float, sys.argv[3:])
packages = (orgs + 1) * 3
print(f"{'':24}{'SQLite + files':>16}{'PostgreSQL + Garage':>22}{'ratio':>8}")
print(f"{'release add (3 payloads)':24}{la:>15.2f}s{pa:>21.2f}s{pa / la:>8.2f}")
print(f"{'release publish':24}{lp:>15.2f}s{pp:>21.2f}s{pp / lp:>8.2f}   ({packages} packages)")
print(f"{'update checks':24}{lr:>13.0f}/s {pr:>19.0f}/s {pr / lr:>8.2f}   (errors {lbad:.0f} / {pbad:.0f})")
print(f"{'update-check p99':24}{l99:>14.2f}ms{p99:>20.2f}ms")
per_package = (pp - lp) / packages * 1000
upload = 3 * mib / pa if pa > 0 else 0
print(f"what the difference costs: publishing spends {per_package:+.1f} ms per package on PostgreSQL + Garage: each "
      f"package becomes an object composed inside the store (HEAD, CreateMultipartUpload, UploadPartCopy of the "
      f"shared payload part, UploadPart of the tail, CompleteMultipartUpload: five requests, a few packages in flight "
      f"at once, no payload bytes through depot) and its records are committed over the network, where SQLite + files appends the tail "
      f"to a local pack file; `release add` copies each payload over the network into the store once "
      f"({upload:.0f} MiB/s here, against a write to the local disk). Update checks are answered from memory on both: "
      f"their rate differs only by the check-ins written once a second, one transaction either way.")
if lbad or pbad:
    sys.exit("update checks failed")
PY
