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

psql_q -d postgres -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_cron'"
restart_cluster
trap restore EXIT

psql_q -d postgres -c "DROP DATABASE IF EXISTS e2e_preload" -c "CREATE DATABASE e2e_preload"
out=$(psql -X -d e2e_preload -c "CREATE EXTENSION plantsync" 2>&1 || true)
echo "$out"
check "CREATE EXTENSION without preloading is refused" grep -q 'ERROR:  plantsync must be loaded via shared_preload_libraries' <<<"$out"
check "the refusal hints at the fix" grep -q 'HINT:  Add plantsync to the shared_preload_libraries setting' <<<"$out"
check "nothing was installed" test "$(psql -X -At -d e2e_preload -c "SELECT count(*) FROM pg_extension WHERE extname = 'plantsync'")" = 0
out=$(psql -X -d e2e_preload -c "LOAD 'plantsync'" 2>&1 || true)
check "LOAD is refused too" grep -q 'must be loaded via shared_preload_libraries' <<<"$out"

trap - EXIT
restore
psql_q -d e2e_preload -c "CREATE EXTENSION plantsync"
check "preloaded again, it installs" test "$(psql -X -At -d e2e_preload -c "SELECT extversion FROM pg_extension WHERE extname = 'plantsync'")" = 0.1.0
psql_q -d postgres -c "DROP DATABASE e2e_preload WITH (FORCE)"
counts_ok
