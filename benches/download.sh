#!/usr/bin/env bash
# Download throughput: depot against nginx (sendfile on) serving the same package on loopback.
#
# Builds depot (release), makes a release with one 256 MiB payload, publishes it (which builds the
# default org's package), exports that package as a plain file for nginx, then runs
# `wrk -t2 -c8 -d10s` against both servers, alternating, in the same run. Prints each
# throughput and the ratio depot/nginx. Target: >= 1.2.
#
# Environment: SIZE_MIB (256), DURATION (10s), THREADS (2), CONNECTIONS (8), ROUNDS (2),
# DEPOT_BIN (skip the build and use this binary), KEEP=1 (keep the work directory).
set -euo pipefail

SIZE_MIB=${SIZE_MIB:-256}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-8}
ROUNDS=${ROUNDS:-2}
DEPOT_PORT=${DEPOT_PORT:-18080}
NGINX_PORT=${NGINX_PORT:-18081}
VERSION=1.0.0
PLATFORM=linux-x86_64
FILE="default-${VERSION}-${PLATFORM}.zip"

repo=$(cd "$(dirname "$0")/.." && pwd)

need() {
    local tool=$1 package=$2
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        echo "installing $package (needed: $tool)" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo apt-get install -y "$package" >&2
    fi
}
need wrk wrk
need nginx nginx-light
need curl curl
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

if [ -z "${DEPOT_BIN:-}" ]; then
    (cd "$repo" && cargo build --release --quiet --bin depot)
    DEPOT_BIN="$repo/target/release/depot"
fi
DEPOT_BIN=$(cd "$(dirname "$DEPOT_BIN")" && pwd)/$(basename "$DEPOT_BIN")

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

cd "$work"
mkdir -p payload www nginx-tmp
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom > payload/client-linux.tgz
depot() { "$DEPOT_BIN" --data-dir "$work/artifacts" "$@"; }
depot init >/dev/null
depot release add "$VERSION" --payload "$PLATFORM=payload/client-linux.tgz" >/dev/null
depot release publish "$VERSION" --channel stable >/dev/null 2>&1
depot export --org default --release "$VERSION" --out "$work/www" >/dev/null
[ -f "www/$FILE" ] || { echo "depot export did not write www/$FILE" >&2; exit 1; }
# nginx workers drop privileges (to nobody when started as root): let them read the file.
chmod a+rx "$work" "$work/www"
chmod a+r "www/$FILE"

for port in "$DEPOT_PORT" "$NGINX_PORT"; do
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
        echo "port $port is already in use; set DEPOT_PORT / NGINX_PORT" >&2
        exit 1
    fi
done
# Started directly (not through the function) so that $! is the server itself.
"$DEPOT_BIN" --data-dir "$work/artifacts" serve --listen "127.0.0.1:$DEPOT_PORT" >"$work/depot.log" 2>&1 &
pids+=($!)

cat > nginx.conf <<EOF
worker_processes auto;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    types { application/zip zip; }
    client_body_temp_path $work/nginx-tmp/body;
    proxy_temp_path $work/nginx-tmp/proxy;
    fastcgi_temp_path $work/nginx-tmp/fastcgi;
    uwsgi_temp_path $work/nginx-tmp/uwsgi;
    scgi_temp_path $work/nginx-tmp/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $work/www;
    }
}
EOF
"$nginx_bin" -p "$work" -e "$work/nginx-error.log" -c "$work/nginx.conf" &
pids+=($!)

depot_url="http://127.0.0.1:$DEPOT_PORT/v1/download/default/$VERSION/$FILE"
nginx_url="http://127.0.0.1:$NGINX_PORT/$FILE"
for url in "$depot_url" "$nginx_url"; do
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "$url" 2>/dev/null && break
        sleep 0.1
    done
    # Both files end up in the page cache: the runs compare serving, not disk reads.
    curl -fsS -o /dev/null "$url" || { echo "cannot download $url" >&2; cat "$work/depot.log" >&2; exit 1; }
done
cmp <(curl -fsS "$depot_url") "www/$FILE" || { echo "depot and nginx serve different bytes" >&2; exit 1; }

cat > report.lua <<'EOF'
done = function(summary, latency, requests)
    io.write(string.format("BYTES_PER_SEC %.0f ERRORS %d\n",
        summary.bytes / (summary.duration / 1e6),
        summary.errors.connect + summary.errors.read + summary.errors.write
            + summary.errors.status + summary.errors.timeout))
end
EOF

measure() {
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s report.lua "$1" | awk '/^BYTES_PER_SEC/ { print $2, $4 }'
}

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, ${SIZE_MIB} MiB package, $(nproc) CPUs"
depot_total=0
nginx_total=0
for round in $(seq "$ROUNDS"); do
    read -r nginx_bps nginx_errors < <(measure "$nginx_url")
    read -r depot_bps depot_errors < <(measure "$depot_url")
    printf 'round %d: nginx %8.1f MiB/s (%d errors)   depot %8.1f MiB/s (%d errors)\n' "$round" \
        "$(echo "$nginx_bps / 1048576" | bc -l)" "$nginx_errors" \
        "$(echo "$depot_bps / 1048576" | bc -l)" "$depot_errors"
    nginx_total=$(echo "$nginx_total + $nginx_bps" | bc -l)
    depot_total=$(echo "$depot_total + $depot_bps" | bc -l)
done
printf 'nginx (sendfile) %8.1f MiB/s\n' "$(echo "$nginx_total / $ROUNDS / 1048576" | bc -l)"
printf 'depot            %8.1f MiB/s\n' "$(echo "$depot_total / $ROUNDS / 1048576" | bc -l)"
printf 'ratio depot/nginx %.2f (target >= 1.20)\n' "$(echo "$depot_total / $nginx_total" | bc -l)"
