#!/usr/bin/env bash
# End-to-end: a trace on a hot standby sees what the standby's snapshot sees.
# The walk reads index pages itself; an index item marked dead (LP_DEAD) on
# the primary is dead to every transaction there, but the mark can reach a
# standby in a full-page image (with wal_log_hints or checksums, the first
# hint after a checkpoint is logged as one) while a standby transaction
# still sees the version. BI tools read standbys: there a killed item must
# be read like the others, as nbtree's own scans do in recovery.
#
# A repeatable-read transaction on the standby takes its snapshot; on the
# primary the lot is updated (a new primary-key entry), a checkpoint passes
# and an index scan kills the old entry; once the standby has replayed
# that, the old transaction traces the lot: it exists for that snapshot.
# Restarts the shared test cluster twice (wal_log_hints on, then reset).
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"

db=e2e_genealogy_standby
standby=$PLANTSYNC_CLUSTER_DIR/standby
tmp=$(mktemp -d)
chmod 0755 "$tmp"
psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
standby_port=""
cleanup() {
    if [[ -f $standby/postmaster.pid ]]; then
        _as_cluster_owner "$PLANTSYNC_PG_BINDIR/pg_ctl" -D "$standby" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$standby" "$tmp"
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    psql -X -q -d postgres -c "ALTER SYSTEM RESET wal_log_hints" >/dev/null 2>&1 || true
    restart_cluster || true
}
trap cleanup EXIT

psql_q -d postgres -c "ALTER SYSTEM SET wal_log_hints = on"
restart_cluster
psql_q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
psql_q -d "$db" <<'SQL'
CREATE EXTENSION plantsync;
CREATE EXTENSION pageinspect;
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('P1', 'Plant');
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) VALUES ('P1', 'RM', 'Raw', 'KG');
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
SELECT 'P1', m.id, 'LOT-1', 'unrestricted' FROM plantsync.material m;
SQL
lot=$(psql -X -At -d "$db" -c "SELECT id FROM plantsync.lot WHERE lot_number = 'LOT-1'")

# the standby: a base backup of the shared cluster on a port of its own
standby_port=$(_find_free_port)
_as_cluster_owner "$PLANTSYNC_PG_BINDIR/pg_basebackup" -h "$PGHOST" -p "$PGPORT" -U postgres -D "$standby" \
    -R -X stream -c fast >"$tmp/basebackup.log" 2>&1 || { cat "$tmp/basebackup.log" >&2; die "pg_basebackup failed"; }
printf '\nport = %s\nhot_standby = on\nhot_standby_feedback = off\n' "$standby_port" >>"$standby/postgresql.conf"
_as_cluster_owner "$PLANTSYNC_PG_BINDIR/pg_ctl" -D "$standby" -l "$standby/standby.log" -w -t 60 start >/dev/null ||
    { cat "$standby/standby.log" >&2; die "the standby did not start"; }
standby_sql() { psql -X -At -p "$standby_port" -d "$db" "$@"; }
for _ in $(seq 1 100); do
    [[ $(standby_sql -c "SELECT count(*) FROM plantsync.lot" 2>/dev/null) == 1 ]] && break
    sleep 0.1
done
check "the standby is in recovery and has the lot" \
    test "$(standby_sql -c "SELECT pg_is_in_recovery() AND count(*) = 1 FROM plantsync.lot")" = t

# What the primary does while the standby's transaction is open.
cat >"$tmp/primary.sh" <<EOF
set -euo pipefail
psql() { command psql -X -q -At -v ON_ERROR_STOP=1 -h '$PGHOST' -p '$PGPORT' -U postgres -d '$db' "\$@"; }
# a non-HOT update (an indexed column): a second primary-key entry
psql -c "SET session_replication_role = replica" -c "UPDATE plantsync.lot SET disposition = 'blocked' WHERE id = '$lot'"
psql -c "CHECKPOINT"
# an index scan kills the entry of the old version, dead to all here (the
# standby sends no feedback): the first hint after the checkpoint, logged
# as a full-page image
dead=f
for _ in \$(seq 1 50); do
    psql -c "SET enable_seqscan = off" -c "SET enable_bitmapscan = off" -c "SELECT count(*) FROM plantsync.lot WHERE id = '$lot'" >/dev/null
    dead=\$(psql -c "SELECT bool_or(dead) FROM bt_page_items('plantsync.lot_pkey', 1)")
    [[ \$dead == t ]] && break
    sleep 0.1
done
echo "primary: old entry killed: \$dead" >&2
# a commit flushes the WAL; wait until the standby has replayed it
lsn=\$(psql -c "CREATE TABLE flush_mark ()" -c "SELECT pg_current_wal_flush_lsn()")
for _ in \$(seq 1 100); do
    [[ \$(command psql -X -At -h '$PGHOST' -p '$standby_port' -U postgres -d '$db' -c "SELECT pg_last_wal_replay_lsn() >= '\$lsn'") == t ]] && exit 0
    sleep 0.1
done
echo "the standby did not replay up to \$lsn" >&2
exit 1
EOF
chmod 0755 "$tmp/primary.sh"

out=$(standby_sql -v ON_ERROR_STOP=0 -v lot="$lot" 2>&1 <<SQL
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT 'before: ' || disposition FROM plantsync.lot WHERE id = :'lot';
\\! bash $tmp/primary.sh
SELECT 'killed on the standby: ' || bool_or(dead) FROM bt_page_items('plantsync.lot_pkey', 1);
SELECT 'snapshot still sees: ' || disposition FROM plantsync.lot WHERE id = :'lot';
SELECT 'backward rows: ' || count(*) FROM plantsync.trace_backward(:'lot');
SELECT 'forward rows: ' || count(*) FROM plantsync.trace_forward(:'lot');
SELECT 'json: ' || plantsync.trace_json(:'lot', 'backward')::text;
COMMIT;
SELECT 'new snapshot sees: ' || disposition FROM plantsync.lot WHERE id = :'lot';
SELECT 'backward rows now: ' || count(*) FROM plantsync.trace_backward(:'lot');
SQL
)
echo "$out"
check "the standby received the primary's kill mark on the old version's entry (the case this test is about)" \
    grep -qx 'killed on the standby: true' <<<"$out"
check "the old snapshot still sees the old version" grep -qx 'snapshot still sees: unrestricted' <<<"$out"
check "a backward trace in the old snapshot finds the lot (it has no links: no rows, no error)" \
    grep -qx 'backward rows: 0' <<<"$out"
check "a forward trace too" grep -qx 'forward rows: 0' <<<"$out"
check "and the JSON trace" grep -q '^json: ' <<<"$out"
check "no trace said the lot does not exist" bash -c "! grep -q 'does not exist' <<<\"\$1\"" _ "$out"
check "a new snapshot sees the new version and traces it" \
    bash -c "grep -qx 'new snapshot sees: blocked' <<<\"\$1\" && grep -qx 'backward rows now: 0' <<<\"\$1\"" _ "$out"
echo "genealogy standby test: $(counts_line)"
counts_ok
