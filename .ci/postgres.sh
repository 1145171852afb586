#!/usr/bin/env bash
# A throwaway PostgreSQL server for the distributed-search test (tests/test_search.py).
#
#   .ci/postgres.sh start DIR   install Debian's postgresql if missing, create a cluster in
#                               DIR (must be empty or absent), start it on 127.0.0.1 at a
#                               free port, create a database, wait until it accepts
#                               connections, and print its SQLAlchemy URL on stdout
#                               (postgresql+psycopg://...; psycopg 3 is in the test extra)
#   .ci/postgres.sh stop DIR    stop that server and delete DIR
#
# Everything but the URL goes to stderr, so `URL=$(.ci/postgres.sh start DIR)` works.
# initdb and postgres refuse to run as root; as root the server runs as the `postgres`
# user that the Debian package creates (a throwaway cluster never touches the package's
# own "main" cluster or port 5432). Trust authentication is safe only because the
# server listens on loopback and a socket directory inside DIR, and lives for one run.
set -euo pipefail

DB_NAME=costsim_test
DB_USER=costsim

log() { echo "postgres.sh: $*" >&2; }

pg_bindir() {
    # newest installed server version
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$dir" && -x "$dir/initdb" ]]; then
        echo "$dir"
    fi
}

ensure_installed() {
    if [[ -n "$(pg_bindir)" ]]; then
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        log "PostgreSQL is not installed and this is not root; cannot apt-get install it"
        return 1
    fi
    log "installing Debian's postgresql"
    export DEBIAN_FRONTEND=noninteractive
    timeout 900 apt-get update -q >&2
    timeout 900 apt-get install -y -q --no-install-recommends postgresql </dev/null >&2
    [[ -n "$(pg_bindir)" ]]
}

# Run a command as the cluster's owner: the `postgres` user when we are root, else us.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir=$1 bin port
    ensure_installed
    bin=$(pg_bindir)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ $(id -u) -eq 0 ]]; then
        getent passwd postgres >/dev/null || { log "no 'postgres' user to run the server as"; return 1; }
        chown postgres: "$dir"
        # the server must be able to reach DIR through its parents (mktemp -d makes 0700 dirs)
        chmod 0755 "$dir"
    fi
    as_owner "$bin/initdb" -D "$dir/data" -U "$DB_USER" --auth=trust --encoding=UTF8 --no-sync >&2
    port=$(free_port)
    echo "$port" >"$dir/port"
    # fsync off: a throwaway cluster need not survive a power cut, and tests run faster
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$dir' -c fsync=off \
            -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" >&2 \
        || { log "server did not start:"; cat "$dir/server.log" >&2 || true; return 1; }
    for _ in $(seq 1 60); do
        if as_owner "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U "$DB_USER"; then
            break
        fi
        sleep 0.5
    done
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U "$DB_USER" "$DB_NAME" >&2
    log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') ready on 127.0.0.1:$port (data in $dir)"
    echo "postgresql+psycopg://$DB_USER@127.0.0.1:$port/$DB_NAME"
}

stop() {
    local dir=$1 bin
    bin=$(pg_bindir)
    if [[ -n "$bin" && -f "$dir/data/postmaster.pid" ]]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >&2 || true
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    start) start "${2:?usage: postgres.sh start DIR}" ;;
    stop) stop "${2:?usage: postgres.sh stop DIR}" ;;
    *) echo "usage: $0 start DIR | stop DIR" >&2; exit 2 ;;
esac
