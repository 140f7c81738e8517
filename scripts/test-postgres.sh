#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on loopback for depot's tests.
#
#   eval "$(scripts/test-postgres.sh start [PORT])"   # prints: export DEPOT_TEST_POSTGRES=postgres://...
#   scripts/test-postgres.sh stop                       # shuts it down and removes its data
#
# The cluster lives under ${DEPOT_TEST_DIR:-/tmp/depot-test-services}/postgres, listens on
# 127.0.0.1 only (a random free port unless one is given), keeps its unix socket inside its own
# data directory and runs without fsync: it is for tests, never for data anyone keeps. It is made
# with initdb, not with the distribution's cluster tools, so it works the same on a developer's
# machine and on a fresh Debian CI runner after `apt-get install -y postgresql`. `start` reuses a
# running cluster. initdb refuses to run as root, so as root the cluster runs as `postgres`.
# Only the export line goes to stdout; progress and errors go to stderr.
set -euo pipefail

base="${DEPOT_TEST_DIR:-/tmp/depot-test-services}/postgres"
data="$base/data"
user=depot

die() { echo "test-postgres: $*" >&2; exit 1; }

bin_dir() {
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return
    fi
    local newest
    newest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$newest" ] || die "initdb not found on PATH or in /usr/lib/postgresql/*/bin (apt-get install -y postgresql)"
    echo "$newest"
}

# Runs a command as the cluster's owner.
as_owner() {
    if [ "$(id -u)" -ne 0 ]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- "$@"
    else
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
}

port_is_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

random_free_port() {
    local port
    for _ in $(seq 50); do
        port=$((20000 + RANDOM % 30000))
        if port_is_free "$port"; then
            echo "$port"
            return
        fi
    done
    die "no free port found"
}

is_running() {
    [ -f "$data/PG_VERSION" ] && as_owner "$bin/pg_ctl" status -D "$data" >/dev/null 2>&1
}

print_export() {
    local port password
    port=$(cat "$base/port")
    password=$(cat "$base/password")
    echo "export DEPOT_TEST_POSTGRES=postgres://$user:$password@127.0.0.1:$port/postgres"
}

create_cluster() {
    local port=$1 password
    mkdir -p "$base"
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || die "running as root needs the postgres user (apt-get install -y postgresql)"
        chown postgres: "$base"
        # The owner must be able to reach its data directory through every parent.
        chmod o+x "$(dirname "$base")"
    fi
    password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    echo "$password" >"$base/password"
    echo "$port" >"$base/port"
    chmod 600 "$base/password"
    local pwfile="$base/initdb-password"
    echo "$password" >"$pwfile"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$base/password" "$base/port" "$pwfile"
    as_owner "$bin/initdb" -D "$data" --username="$user" --pwfile="$pwfile" \
        --auth-host=scram-sha-256 --auth-local=trust --encoding=UTF8 --locale=C.UTF-8 \
        >"$base/initdb.log" 2>&1 || { cat "$base/initdb.log" >&2; die "initdb failed"; }
    rm -f "$pwfile"
    as_owner tee -a "$data/postgresql.conf" >/dev/null <<EOF

# depot test cluster
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$data'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
}

start() {
    local port=${1:-}
    if is_running; then
        print_export
        return
    fi
    if [ ! -f "$data/PG_VERSION" ]; then
        rm -rf "$base"
        create_cluster "${port:-$(random_free_port)}"
    elif [ -n "$port" ] && [ "$port" != "$(cat "$base/port")" ]; then
        die "the cluster in $data uses port $(cat "$base/port"); stop it first to use $port"
    fi
    as_owner "$bin/pg_ctl" start -D "$data" -l "$base/server.log" -w -t 60 >/dev/null ||
        { tail -n 20 "$base/server.log" >&2; die "the server did not start (log: $base/server.log)"; }
    echo "test-postgres: running on 127.0.0.1:$(cat "$base/port"), data in $data" >&2
    print_export
}

stop() {
    if is_running; then
        as_owner "$bin/pg_ctl" stop -D "$data" -m fast -w >/dev/null
    fi
    rm -rf "$base"
    echo "test-postgres: stopped; $base removed" >&2
}

bin=$(bin_dir)
case "${1:-}" in
    start) start "${2:-}" ;;
    stop) stop ;;
    *) die "usage: $0 start [PORT] | stop" ;;
esac
