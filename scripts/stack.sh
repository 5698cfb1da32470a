# What scripts/run does (sourced, not run): build the release binaries, bring up PostgreSQL,
# seed, start both servers and stop them on exit. Expects `say` and `die`. (The benchmark and the
# chaos scenarios do the same in Rust: `cargo xtask bench`, `cargo xtask chaos`.)

profile=release
bin=target/release
tcp_port=${GATEHOUSE_TCP_PORT:-7070}
http_port=${GATEHOUSE_HTTP_PORT:-8080}
admin_port=${GATEHOUSE_ADMIN_PORT:-9080}
tcp_admin_port=${GATEHOUSE_TCP_ADMIN_PORT:-9070}

url=http://127.0.0.1:$http_port
pids=()
pg_started=false

# Builds the binaries; `stack_build debug` builds (or reuses) the debug ones instead.
stack_build() {
    profile=${1:-release}
    say "building ($profile)"
    if [ "$profile" = debug ]; then
        bin=target/debug
        if [ -n "${GATEHOUSE_USE_BUILT:-}" ]; then
            # scripts/test's own build made them (see there); building again here would make a
            # second set of dependencies with this package selection's features.
            for binary in tcp-server http-server loadtest; do
                [ -x "$bin/$binary" ] || die "GATEHOUSE_USE_BUILT is set, but $bin/$binary is missing"
            done
            return
        fi
        cargo build --locked -p tcp-server -p http-server -p loadtest >&2
    else
        bin=target/release
        cargo build --release --locked -p tcp-server -p http-server -p loadtest >&2
    fi
}

# PostgreSQL up, DATABASE_URL exported, and the users 1..$1 seeded (skipped when already there).
stack_database() {
    if [ -z "${DATABASE_URL:-}" ] && ! scripts/postgres status >/dev/null 2>&1; then
        pg_started=true
    fi
    DATABASE_URL=$(scripts/postgres start)
    export DATABASE_URL
    say "seeding $1 users (skipped when already there; 10 million take about 3 minutes)"
    "$bin/tcp-server" seed --users "$1" --dev >&2
}

# Starts tcp-server and http-server (logs in $1) and waits until http-server is ready.
stack_start() {
    local logs=$1
    mkdir -p "$logs"
    for port in "$tcp_port" "$tcp_admin_port" "$http_port" "$admin_port"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            die "port $port is in use (set GATEHOUSE_TCP_PORT / GATEHOUSE_TCP_ADMIN_PORT / GATEHOUSE_HTTP_PORT / GATEHOUSE_ADMIN_PORT)"
        fi
    done
    "$bin/tcp-server" serve --migrate --dev --listen "127.0.0.1:$tcp_port" \
        --admin-listen "127.0.0.1:$tcp_admin_port" 2>"$logs/tcp-server.log" &
    tcp_pid=$!
    pids+=("$tcp_pid")
    "$bin/http-server" --dev --listen "127.0.0.1:$http_port" --admin-listen "127.0.0.1:$admin_port" \
        --backend "127.0.0.1:$tcp_port" 2>"$logs/http-server.log" &
    http_pid=$!
    pids+=("$http_pid")
    for _ in $(seq 1 150); do
        stack_ready && break
        kill -0 "$tcp_pid" 2>/dev/null || die "tcp-server exited: $(tail -3 "$logs/tcp-server.log")"
        kill -0 "$http_pid" 2>/dev/null || die "http-server exited: $(tail -3 "$logs/http-server.log")"
        sleep 0.2
    done
    stack_ready || die "the servers did not become ready (logs in $logs)"
    say "serving: $url (metrics: http://127.0.0.1:$admin_port/metrics; tcp-server pid $tcp_pid," \
        "http-server pid $http_pid; logs in $logs)"
}

# Whether http-server answers 200 on /readyz (bash's /dev/tcp: no HTTP client needed).
stack_ready() {
    timeout 2 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" >&3
        head -c 12 <&3 | grep -q " 200"
    ' _ "$http_port" 2>/dev/null
}

# Stops what was started here: the servers (by pid, gracefully, waiting for them), and the
# PostgreSQL cluster if it was not running before.
stack_stop() {
    local pid waited
    for pid in ${pids[@]+"${pids[@]}"}; do kill "$pid" 2>/dev/null || true; done
    # The servers finish what they received (http-server's grace is 10 s); past 20 s, kill.
    for pid in ${pids[@]+"${pids[@]}"}; do
        waited=0
        while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 200 ]; do
            sleep 0.1
            waited=$((waited + 1))
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    pids=()
    if $pg_started; then
        scripts/postgres stop || true
        pg_started=false
    fi
}
