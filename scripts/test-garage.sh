#!/usr/bin/env bash
# A throwaway single-node Garage (S3-compatible object store) on loopback, for tests and CI.
#
#   eval "$(scripts/test-garage.sh start)"   # prints: export DEPOT_TEST_S3_ENDPOINT=... AWS_...
#   scripts/test-garage.sh stop
#
# State lives under ${DEPOT_TEST_DIR:-/tmp/depot-test-services}/garage. `start` is idempotent: a
# running node is reused and its export line printed again. The binary is $GARAGE_BIN, else
# `garage` on PATH, else /tmp/garage-install/bin/garage (`cargo install garage --locked --root
# /tmp/garage-install`). The access key may create buckets; tests create their own.
set -euo pipefail

base="${DEPOT_TEST_DIR:-/tmp/depot-test-services}/garage"
conf="$base/garage.toml"
pidfile="$base/garage.pid"
envfile="$base/env"
log="$base/garage.log"

garage_bin() {
    if [[ -n "${GARAGE_BIN:-}" ]]; then
        echo "$GARAGE_BIN"
    elif command -v garage >/dev/null 2>&1; then
        command -v garage
    elif [[ -x /tmp/garage-install/bin/garage ]]; then
        echo /tmp/garage-install/bin/garage
    else
        echo "test-garage.sh: no garage binary (set GARAGE_BIN, or cargo install garage --locked)" >&2
        exit 1
    fi
}

running() {
    [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

g() {
    "$GARAGE" -c "$conf" "$@"
}

start() {
    GARAGE="$(garage_bin)"
    if running && [[ -f "$envfile" ]]; then
        cat "$envfile"
        return
    fi
    stop_node
    rm -rf "$base"
    mkdir -p "$base/meta" "$base/data"
    local rpc s3 admin
    rpc="$(free_port)"
    s3="$(free_port)"
    admin="$(free_port)"
    cat >"$conf" <<EOF
metadata_dir = "$base/meta"
data_dir = "$base/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(openssl rand -hex 32)"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
admin_token = "$(openssl rand -hex 32)"
metrics_token = "$(openssl rand -hex 32)"
EOF
    chmod 600 "$conf"
    RUST_LOG=warn nohup "$GARAGE" -c "$conf" server >"$log" 2>&1 &
    echo $! >"$pidfile"

    # `node id` answers from the key file before the RPC port listens; `status` needs both.
    local node=""
    for _ in $(seq 1 100); do
        if g status >/dev/null 2>&1 && node="$(g node id -q 2>/dev/null)"; then
            break
        fi
        running || { echo "test-garage.sh: garage exited; see $log" >&2; tail -20 "$log" >&2; exit 1; }
        sleep 0.1
    done
    [[ -n "$node" ]] || { echo "test-garage.sh: garage did not answer; see $log" >&2; exit 1; }
    g layout assign -z dc1 -c 1G "${node%%@*}" >/dev/null
    g layout apply --version 1 >/dev/null

    local key_info key_id secret
    key_info="$(g key create depot-test)"
    key_id="$(awk -F': *' '/^Key ID/ {print $2}' <<<"$key_info")"
    secret="$(awk -F': *' '/^Secret key/ {print $2}' <<<"$key_info")"
    if [[ -z "$key_id" || -z "$secret" ]]; then
        echo "test-garage.sh: cannot read the new key from: $key_info" >&2
        exit 1
    fi
    g key allow --create-bucket "$key_id" >/dev/null

    # The S3 API answers once the layout is applied; wait for it before handing it out.
    for _ in $(seq 1 100); do
        if curl -s -o /dev/null "http://127.0.0.1:$s3/"; then
            break
        fi
        sleep 0.1
    done
    echo "export DEPOT_TEST_S3_ENDPOINT=http://127.0.0.1:$s3 AWS_ACCESS_KEY_ID=$key_id AWS_SECRET_ACCESS_KEY=$secret AWS_REGION=garage GARAGE_CONFIG_FILE=$conf" >"$envfile"
    cat "$envfile"
}

stop_node() {
    if running; then
        local pid
        pid="$(cat "$pidfile")"
        kill "$pid"
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$pidfile"
}

case "${1:-}" in
start) start ;;
stop)
    stop_node
    rm -rf "$base"
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
