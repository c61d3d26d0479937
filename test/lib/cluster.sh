# shellcheck shell=bash disable=SC2119,SC2120
# test/lib/cluster.sh: a throwaway PostgreSQL cluster for tests and the demo.
#
# Sourced by common.sh (source that, not this file). Relies on its logging,
# on_exit and PLANTSYNC_PG_* variables.
#
#   start_cluster [--fsync-off]   initdb + start in a fresh temp dir; exports
#                                 PGHOST PGPORT PGUSER PGDATABASE and
#                                 PLANTSYNC_CLUSTER_DIR PLANTSYNC_SERVER_LOG
#                                 PLANTSYNC_PG_OS_USER; stops and removes it
#                                 on exit
#   stop_cluster [--show-log]     stop and remove it now (idempotent)
#   restart_cluster               e.g. after changing a preloaded setting
#   cluster_pg_ctl ARGS...        pg_ctl on the cluster, as its owner
#   print_server_log [LINES]      tail of the server log
#
# PLANTSYNC_KEEP_CLUSTER=1 leaves the cluster running at exit and prints how
# to connect to it and how to get rid of it.
#
# Why it looks like this:
# - PostgreSQL refuses to run as root and CI runs as root, so the server runs
#   as the `postgres` OS user (created by the postgresql-15 package) when we
#   are root, and as the invoking user otherwise. Client tools keep running
#   as the invoking user and connect as the `postgres` database role.
# - The server never reads the repo (root's clone may not even be traversable
#   by `postgres`): it needs only the installed extension files. Commands run
#   as `postgres` start from / for the same reason.
# - No TCP: the socket lives in the private temp dir, so two clusters (ours,
#   or another developer's) can never collide on a socket or lock file even
#   if they pick the same port number. The port is still chosen free so that
#   `ss` output and log lines stay unambiguous.
# - The temp dir is made under /tmp, not $TMPDIR, because the `postgres`
#   user must reach it and a Unix socket path must stay under ~100 bytes.

_PLANTSYNC_CLUSTER_DIR=""

_cluster_os_user() {
    if [[ $EUID -eq 0 ]]; then
        echo "${PLANTSYNC_PG_OS_USER:-postgres}"
    else
        id -un
    fi
}

# Run a command as the cluster's OS owner.
_as_cluster_owner() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u "$PLANTSYNC_PG_OS_USER" -- "$@")
    else
        "$@"
    fi
}

cluster_pg_ctl() {
    _as_cluster_owner "$PLANTSYNC_PG_BINDIR/pg_ctl" -D "$PLANTSYNC_CLUSTER_DIR/data" "$@"
}

# A port is taken if anything listens on it over TCP (v4 or v6) or any
# PostgreSQL Unix socket with that number exists anywhere. Read from /proc so
# as not to depend on iproute2 being installed.
_port_in_use() {
    local port=$1 hex files=() f
    hex=$(printf ':%04X' "$port")
    for f in /proc/net/tcp /proc/net/tcp6; do
        [[ -r $f ]] && files+=("$f")
    done
    if ((${#files[@]})) &&
        awk -v p="$hex" 'FNR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { found = 1 }
                         END { exit !found }' "${files[@]}"; then
        return 0
    fi
    grep -q "/\.s\.PGSQL\.$port\$" /proc/net/unix 2>/dev/null
}

_find_free_port() {
    local port=${PLANTSYNC_PORT_BASE:-54329} last
    last=$((port + 200))
    for ((; port < last; port++)); do
        if ! _port_in_use "$port"; then
            echo "$port"
            return 0
        fi
    done
    log_error "no free port in ${PLANTSYNC_PORT_BASE:-54329}..$last"
    return 1
}

print_server_log() {
    local lines=${1:-${PLANTSYNC_LOG_TAIL:-80}} log=${PLANTSYNC_SERVER_LOG:-}
    if [[ -n $log && -s $log ]]; then
        printf -- '----- last %s lines of the server log (%s) -----\n' "$lines" "$log" >&2
        tail -n "$lines" "$log" >&2
        printf -- '----- end of server log -----\n' >&2
    fi
}

start_cluster() {
    local fsync=on initdb_extra=() dir port
    while (($#)); do
        case $1 in
            --fsync-off) fsync=off ;;
            *) log_error "start_cluster: unknown option $1"; return 1 ;;
        esac
        shift
    done
    if [[ -n $_PLANTSYNC_CLUSTER_DIR ]]; then
        log_error "start_cluster: this shell already runs a cluster in $_PLANTSYNC_CLUSTER_DIR"
        return 1
    fi
    if [[ ! -x $PLANTSYNC_PG_BINDIR/initdb ]]; then
        log_error "no initdb in $PLANTSYNC_PG_BINDIR: is postgresql-$PLANTSYNC_PG_MAJOR installed?"
        return 1
    fi
    PLANTSYNC_PG_OS_USER=$(_cluster_os_user)
    if ! id -u "$PLANTSYNC_PG_OS_USER" >/dev/null 2>&1; then
        log_error "OS user '$PLANTSYNC_PG_OS_USER' does not exist (the postgresql-$PLANTSYNC_PG_MAJOR package creates it)"
        return 1
    fi

    dir=$(mktemp -d /tmp/plantsync-pg.XXXXXX) || return 1
    # Register cleanup before anything else can fail half-way.
    _PLANTSYNC_CLUSTER_DIR=$dir
    if [[ -z ${_PLANTSYNC_CLUSTER_HOOKED:-} ]]; then
        on_exit _cluster_exit_hook
        _PLANTSYNC_CLUSTER_HOOKED=1
    fi
    PLANTSYNC_CLUSTER_DIR=$dir
    PLANTSYNC_SERVER_LOG=$dir/server.log
    if [[ $EUID -eq 0 ]]; then
        chown "$PLANTSYNC_PG_OS_USER:" "$dir" || return 1
    fi
    chmod 0700 "$dir" || return 1

    # Durability is pointless for a throwaway cluster's initdb when the suite
    # itself runs without fsync; the demo keeps the defaults.
    [[ $fsync == off ]] && initdb_extra+=(--no-sync)
    # C.UTF-8 so that sort order and messages do not depend on the machine's
    # locale settings (pg_regress compares output byte for byte).
    if ! _as_cluster_owner "$PLANTSYNC_PG_BINDIR/initdb" -D "$dir/data" \
            --auth=trust -U postgres --encoding=UTF8 --locale=C.UTF-8 \
            --no-instructions "${initdb_extra[@]}" >"$dir/initdb.log" 2>&1; then
        log_error "initdb failed:"
        cat "$dir/initdb.log" >&2
        return 1
    fi

    port=$(_find_free_port) || return 1
    cat >>"$dir/data/postgresql.conf" <<EOF || return 1

# ---- added by the plantsync test harness ----
listen_addresses = ''
port = $port
unix_socket_directories = '$dir'
shared_preload_libraries = '$PLANTSYNC_EXTENSION,pg_cron'
cron.database_name = 'postgres'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
max_worker_processes = 32
fsync = $fsync
log_line_prefix = '%m [%p] %q%u@%d '
EOF

    log_info "cluster: starting PostgreSQL $PLANTSYNC_PG_MAJOR in $dir (port $port, fsync $fsync, OS user $PLANTSYNC_PG_OS_USER)"
    if ! _as_cluster_owner "$PLANTSYNC_PG_BINDIR/pg_ctl" -D "$dir/data" -l "$PLANTSYNC_SERVER_LOG" \
            -w -t 60 start >"$dir/pg_ctl.log" 2>&1; then
        # The server log itself is shown by stop_cluster --show-log (the
        # exit hook does that on failure), not here, to show it only once.
        log_error "the server did not start:"
        cat "$dir/pg_ctl.log" >&2
        return 1
    fi

    # Connection settings inherited from the caller's shell would point the
    # clients somewhere else.
    unset PGHOSTADDR PGSERVICE PGSERVICEFILE PGOPTIONS PGCLUSTER PGSSLMODE
    export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
    export PLANTSYNC_CLUSTER_DIR PLANTSYNC_SERVER_LOG PLANTSYNC_PG_OS_USER
    if ! "$PLANTSYNC_PG_BINDIR/pg_isready" -q -t 30; then
        log_error "the server started but does not accept connections"
        return 1
    fi
    log_info "cluster: ready (PGHOST=$PGHOST PGPORT=$PGPORT PGUSER=$PGUSER)"
}

restart_cluster() {
    cluster_pg_ctl -l "$PLANTSYNC_SERVER_LOG" -m fast -w -t 60 restart >/dev/null || {
        log_error "restart failed"
        print_server_log
        return 1
    }
}

_print_keep_instructions() {
    local dir=$1 stop_cmd
    stop_cmd="$PLANTSYNC_PG_BINDIR/pg_ctl -D $dir/data stop"
    [[ $EUID -eq 0 ]] && stop_cmd="cd / && runuser -u $PLANTSYNC_PG_OS_USER -- $stop_cmd"
    cat >&2 <<EOF
cluster kept running (PLANTSYNC_KEEP_CLUSTER=1):
  connect:  psql -h $dir -p $PGPORT -U postgres -d ${PGDATABASE:-postgres}
  or:       export PGHOST=$dir PGPORT=$PGPORT PGUSER=postgres PGDATABASE=${PGDATABASE:-postgres}
  log:      $dir/server.log
  remove:   $stop_cmd && rm -rf $dir
EOF
}

# stop_cluster [--show-log]: stop the server and delete its directory.
stop_cluster() {
    local show_log=0 dir=$_PLANTSYNC_CLUSTER_DIR pid
    [[ ${1:-} == --show-log ]] && show_log=1
    [[ -n $dir ]] || return 0
    # Cleared first: a second call (the exit hook after an explicit stop)
    # must be a no-op.
    _PLANTSYNC_CLUSTER_DIR=""
    ((show_log)) && print_server_log
    if [[ ${PLANTSYNC_KEEP_CLUSTER:-0} == 1 && -f $dir/data/postmaster.pid ]]; then
        _print_keep_instructions "$dir"
        return 0
    fi
    if [[ -f $dir/data/postmaster.pid ]]; then
        if ! _as_cluster_owner "$PLANTSYNC_PG_BINDIR/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 &&
            ! _as_cluster_owner "$PLANTSYNC_PG_BINDIR/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1; then
            # Last resort, aimed only at the postmaster we started.
            pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)
            if [[ $pid =~ ^[0-9]+$ ]]; then
                log_warn "pg_ctl could not stop the server; killing postmaster $pid"
                kill -KILL "$pid" 2>/dev/null || true
                sleep 1
            fi
        fi
    fi
    rm -rf "$dir"
    log_info "cluster: stopped and removed $dir"
}

_cluster_exit_hook() {
    if ((PLANTSYNC_EXIT_STATUS != 0)); then
        stop_cluster --show-log
    else
        stop_cluster
    fi
}
