#!/usr/bin/env bash
# Update-check throughput (issue: pushed client updates).
#
# DEVICES devices enroll; `wrk -t2 -c64` POSTs update checks with their tokens, picked at random,
# against `depot serve`, beside nginx serving a static JSON file of the same size as depot's
# answer (GET: nginx serves no POST to static files), in the same run, in ROUNDS alternating
# rounds. Prints both request rates, the ratio, depot's p99 latency, that every device's
# check-in was recorded, and the server's RSS with BIG_DEVICES enrolled devices.
#   bash benches/update_check.sh          # 5,000 devices, 5 rounds of 5 s each, RSS at 100,000
#   DEVICES=200 DURATION=2s ROUNDS=1 BIG_DEVICES=2000 bash benches/update_check.sh   # smoke
set -euo pipefail
cd "$(dirname "$0")/.."
checks_lua=$PWD/benches/update_checks.lua
DEVICES=${DEVICES:-5000}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-5}
BIG_DEVICES=${BIG_DEVICES:-100000}
DEPOT_PORT=${DEPOT_PORT:-18180}
NGINX_PORT=${NGINX_PORT:-18181}
for tool in wrk curl python3; do command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }; done
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
if [ -n "${DEPOT_BIN:-}" ]; then
  depot=$(cd "$(dirname "$DEPOT_BIN")" && pwd)/$(basename "$DEPOT_BIN")
else
  cargo build --release --quiet
  depot=$PWD/target/release/depot
fi

work=$(mktemp -d /tmp/depot-bench-checks.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
base="http://127.0.0.1:$DEPOT_PORT"
export DEPOT_PUBLIC_URL=$base
"$depot" init > /dev/null
"$depot" org add physics --name Physics --seats "$DEVICES" > /dev/null
head -c 1048576 /dev/urandom > client.tgz
"$depot" release add 1.0.0 --payload linux-x86_64=client.tgz > /dev/null
"$depot" release publish 1.0.0 --channel stable > /dev/null 2>&1
head -c 1048576 /dev/urandom > client2.tgz
"$depot" release add 1.1.0 --payload linux-x86_64=client2.tgz > /dev/null
"$depot" release publish 1.1.0 --channel stable --rollout 30 > /dev/null 2>&1
key=$("$depot" org show physics --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["registration_key"])')
RUST_LOG=warn "$depot" serve --listen "127.0.0.1:$DEPOT_PORT" > depot.log 2>&1 &
pids+=($!); depot_pid=$!
for _ in $(seq 100); do curl -fs "$base/healthz" > /dev/null && break; sleep 0.1; done

# Enroll the fleet over HTTP (keep-alive), writing one token a line.
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

first=$(head -1 tokens.txt)
curl -fs -H "Authorization: Bearer $first" -H 'content-type: application/json' \
  -d '{"platform":"linux-x86_64","current_version":"1.0.0"}' "$base/v1/update-check" > answer.json
mkdir -p www nginx-tmp && cp answer.json www/answer.json && chmod a+rx "$work" www && chmod a+r www/answer.json
cat > nginx.conf <<NGINX
worker_processes auto; daemon off; pid $work/nginx.pid; error_log $work/nginx-error.log;
events { worker_connections 4096; }
http { access_log off; types { application/json json; }
  client_body_temp_path $work/nginx-tmp/b; proxy_temp_path $work/nginx-tmp/p; fastcgi_temp_path $work/nginx-tmp/f;
  uwsgi_temp_path $work/nginx-tmp/u; scgi_temp_path $work/nginx-tmp/s;
  server { listen 127.0.0.1:$NGINX_PORT; root $work/www; } }
NGINX
"$nginx_bin" -p "$work" -e "$work/nginx-error.log" -c "$work/nginx.conf" & pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$NGINX_PORT/answer.json" > /dev/null && break; sleep 0.1; done

cat > static.lua <<'LUA'
done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %.1f %.3f %d\n", summary.requests / (summary.duration / 1e6), latency:percentile(99) / 1000, bad))
end
LUA
# Rounds alternate, so that the machine's other load (a shared VM's neighbours) falls on both.
nginx_rps=0; depot_rps=0; depot_p99=0; nginx_bad=0; depot_bad=0
for round in $(seq "$ROUNDS"); do
  read -r _ n_rps _ n_bad < <(wrk -t2 -c64 -d"$DURATION" -s static.lua "http://127.0.0.1:$NGINX_PORT/answer.json" | grep RESULT)
  read -r _ d_rps d_p99 d_bad < <(wrk -t2 -c64 -d"$DURATION" -s "$checks_lua" "$base/v1/update-check" | grep RESULT)
  printf 'round %d: nginx %8.0f req/s   depot %8.0f req/s, p99 %.2f ms   ratio %.2f\n' \
    "$round" "$n_rps" "$d_rps" "$d_p99" "$(echo "$d_rps / $n_rps" | bc -l)"
  nginx_rps=$(echo "$nginx_rps + $n_rps / $ROUNDS" | bc -l); depot_rps=$(echo "$depot_rps + $d_rps / $ROUNDS" | bc -l)
  depot_p99=$(echo "if ($d_p99 > $depot_p99) $d_p99 else $depot_p99" | bc -l)
  nginx_bad=$((nginx_bad + n_bad)); depot_bad=$((depot_bad + d_bad))
done
sleep 0.5
rss_5k=$(awk '/VmRSS/ {print $2}' /proc/$depot_pid/status)
kill "$depot_pid"; wait "$depot_pid" 2>/dev/null || true   # a clean shutdown flushes check-ins
seen=$(python3 -c "
import sqlite3; c = sqlite3.connect('artifacts/depot.db')
print(c.execute('select count(*) from devices where last_seen_at is not null').fetchone()[0])")

# RSS with BIG_DEVICES enrolled devices: rows written straight into the database.
python3 - "$BIG_DEVICES" <<'PY'
import hashlib, sqlite3, sys, time
n = int(sys.argv[1]); c = sqlite3.connect("artifacts/depot.db"); now = int(time.time())
c.executemany("insert into devices (id, org, hostname, platform, os_version, user, token_hash, enrolled_at) values (?,?,?,?,?,?,?,?)",
  ((f"dev_big{i:08d}", "physics", f"big-{i}", "linux-x86_64", "Debian 12", f"u{i}",
    hashlib.sha256(f"depot_dev_big{i}".encode()).hexdigest(), now) for i in range(n)))
c.execute("update meta set value = value + 1 where key = 'changes'"); c.commit()
PY
RUST_LOG=warn "$depot" serve --listen "127.0.0.1:$DEPOT_PORT" > depot2.log 2>&1 &
pids+=($!); big_pid=$!
for _ in $(seq 100); do curl -fs "$base/healthz" > /dev/null && break; sleep 0.1; done
curl -fs "$base/healthz" > /dev/null || { echo "depot did not start:" >&2; cat depot2.log >&2; exit 1; }
curl -fsS -o /dev/null -H "Authorization: Bearer depot_dev_big1" -H "content-type: application/json" \
  -d "{\"platform\":\"linux-x86_64\",\"current_version\":\"1.0.0\"}" "$base/v1/update-check"
rss_big=$(awk '/VmRSS/ {print $2}' /proc/$big_pid/status)

python3 - "$nginx_rps" "$depot_rps" "$depot_p99" "$depot_bad" "$nginx_bad" "$seen" "$DEVICES" "$rss_5k" "$rss_big" "$BIG_DEVICES" <<'PY'
import sys
nginx, depot, p99, bad, nbad, seen, devices, rss5, rssbig, big = sys.argv[1:]
print(f"nginx static JSON (GET)      : {float(nginx):10.0f} req/s, mean of the rounds ({nbad} errors)")
print(f"depot update checks (POST)   : {float(depot):10.0f} req/s, mean of the rounds ({bad} errors), worst p99 {float(p99):.2f} ms (target <= 10 ms)")
print(f"ratio depot/nginx            : {float(depot) / float(nginx):10.2f} (target >= 0.8)")
print(f"devices with a recorded check-in: {seen} of {devices}")
print(f"server RSS after the run, {devices} devices: {int(rss5) / 1024:.0f} MiB; with {big} devices: {int(rssbig) / 1024:.0f} MiB (target <= 150 MB)")
PY
