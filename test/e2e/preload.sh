#!/usr/bin/env bash
# End-to-end: plantsync refuses to run unless it is in
# shared_preload_libraries, with a hint saying how to fix it; once preloaded
# again it installs and works. Restarts the shared test cluster twice.
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"

psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
restore() {
    psql_q -d postgres -c "ALTER SYSTEM RESET shared_preload_libraries" || true
    restart_cluster || true
}
reset_settings() {
    psql_q -d postgres -c "ALTER SYSTEM RESET plantsync.claim_batch" -c "ALTER SYSTEM RESET plantsync.workers_per_database" \
        -c "SELECT pg_reload_conf()" >/dev/null
}

# Settings of the delivery workers in the configuration files must hold from
# the start, not only after a reload (checked after the last restart).
psql_q -d postgres -c "ALTER SYSTEM SET plantsync.claim_batch = 77" -c "ALTER SYSTEM SET plantsync.workers_per_database = 3"
psql_q -d postgres -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_cron'"
restart_cluster
trap 'restore; reset_settings' EXIT

psql_q -d postgres -c "DROP DATABASE IF EXISTS e2e_preload" -c "CREATE DATABASE e2e_preload"
out=$(psql -X -d e2e_preload -c "CREATE EXTENSION plantsync" 2>&1 || true)
echo "$out"
check "CREATE EXTENSION without preloading is refused" grep -q 'ERROR:  plantsync must be loaded via shared_preload_libraries' <<<"$out"
check "the refusal hints at the fix" grep -q 'HINT:  Add plantsync to the shared_preload_libraries setting' <<<"$out"
check "nothing was installed" test "$(psql -X -At -d e2e_preload -c "SELECT count(*) FROM pg_extension WHERE extname = 'plantsync'")" = 0
out=$(psql -X -d e2e_preload -c "LOAD 'plantsync'" 2>&1 || true)
check "LOAD is refused too" grep -q 'must be loaded via shared_preload_libraries' <<<"$out"

trap reset_settings EXIT
log_lines=$(wc -l <"$PLANTSYNC_SERVER_LOG")
restore
psql_q -d e2e_preload -c "CREATE EXTENSION plantsync"
check "preloaded again, it installs" test "$(psql -X -At -d e2e_preload -c "SELECT extversion FROM pg_extension WHERE extname = 'plantsync'")" = 0.1.0
check "plantsync.claim_batch from the configuration holds from the start" \
    test "$(psql -X -At -d postgres -c "SHOW plantsync.claim_batch")" = 77
check "plantsync.workers_per_database too" test "$(psql -X -At -d postgres -c "SHOW plantsync.workers_per_database")" = 3
check "and the server did not drop a plantsync setting as it started" \
    test "$(tail -n +"$((log_lines + 1))" "$PLANTSYNC_SERVER_LOG" | grep -c 'invalid configuration parameter name "plantsync\.')" = 0
trap - EXIT
reset_settings
psql_q -d postgres -c "DROP DATABASE e2e_preload WITH (FORCE)"
counts_ok
