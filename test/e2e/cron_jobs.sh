#!/usr/bin/env bash
# End-to-end: plantsync.schedule_jobs() installs the partition maintenance
# and purge jobs in pg_cron idempotently (run twice: still two jobs), in the
# database pg_cron runs in (cron.database_name); schedule_reconciliation()
# does the same for a plant's reconciliation job.
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
check "three jobs after scheduling twice" test "$jobs" = 3
check "the second call updated the purge job" test "$purge" = "SELECT plantsync.purge('14 days'::interval)"
check "the jobs run in this database" \
    test "$(psql -X -At -d "$cron_db" -c "SELECT DISTINCT database FROM cron.job WHERE jobname LIKE 'plantsync-%'")" = "$cron_db"
# The commands the jobs run work.
psql_q -c "SELECT plantsync.maintain_partitions(3)" -c "SELECT * FROM plantsync.purge('14 days')" -c "SELECT * FROM plantsync.check_slas()"
check "the scheduled commands run" true
# Reconciliation of a plant: one job per plant, scheduled by name.
psql_q -c "SET plantsync.source_system = 'hub'" -c "INSERT INTO plantsync.site (site_id, name) VALUES ('C1', 'Cron plant')"
psql_q -c "SELECT * FROM plantsync.schedule_reconciliation('C1')"
psql_q -c "SELECT * FROM plantsync.schedule_reconciliation('C1', '*/15 * * * *', '2 hours')"
check "one reconciliation job after scheduling twice" \
    test "$(psql -X -At -d "$cron_db" -c "SELECT count(*) FROM cron.job WHERE jobname = 'plantsync-reconcile-$cron_db-C1'")" = 1
check "the second call updated its schedule" \
    test "$(psql -X -At -d "$cron_db" -c "SELECT schedule FROM cron.job WHERE jobname = 'plantsync-reconcile-$cron_db-C1'")" = "*/15 * * * *"
psql_q -c "$(psql -X -At -d "$cron_db" -c "SELECT command FROM cron.job WHERE jobname = 'plantsync-reconcile-$cron_db-C1'")"
check "the reconciliation command runs (no snapshot yet: nothing to do)" true
psql_q -c "SELECT cron.unschedule(jobname) FROM cron.job WHERE jobname LIKE 'plantsync-%'"
counts_ok
