#!/usr/bin/env bash
# End-to-end: plantsync.schedule_jobs() installs the partition maintenance
# and purge jobs in pg_cron idempotently (run twice: still two jobs), in the
# database pg_cron runs in (cron.database_name).
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"

cron_db=$(psql -X -At -d postgres -c "SHOW cron.database_name")
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -d "$cron_db" "$@"; }
cleanup() { psql -X -q -d "$cron_db" -c "DROP EXTENSION IF EXISTS plantsync" -c "DROP EXTENSION IF EXISTS pg_cron" >/dev/null 2>&1 || true; }
trap cleanup EXIT

psql_q -c "CREATE EXTENSION IF NOT EXISTS pg_cron" -c "CREATE EXTENSION plantsync"
psql_q -c "SELECT * FROM plantsync.schedule_jobs()"
psql_q -c "SELECT * FROM plantsync.schedule_jobs('14 days', 3)"
jobs=$(psql -X -At -d "$cron_db" -c "SELECT count(*) FROM cron.job WHERE jobname LIKE 'plantsync-%'")
purge=$(psql -X -At -d "$cron_db" -c "SELECT command FROM cron.job WHERE jobname = 'plantsync-purge-$cron_db'")
check "two jobs after scheduling twice" test "$jobs" = 2
check "the second call updated the purge job" test "$purge" = "SELECT plantsync.purge('14 days'::interval)"
check "the jobs run in this database" \
    test "$(psql -X -At -d "$cron_db" -c "SELECT DISTINCT database FROM cron.job WHERE jobname LIKE 'plantsync-%'")" = "$cron_db"
# The commands the jobs run work.
psql_q -c "SELECT plantsync.maintain_partitions(3)" -c "SELECT * FROM plantsync.purge('14 days')"
check "the scheduled commands run" true
psql_q -c "SELECT cron.unschedule(jobname) FROM cron.job WHERE jobname LIKE 'plantsync-%'"
counts_ok
