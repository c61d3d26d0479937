#!/usr/bin/env bash
# Benchmark: the cost of the outbox. The same canonical write (a goods
# receipt in the movement ledger, with its checks and guard) is run with
# pgbench with and without the outbox trigger, in the same cluster and the
# same run, alternating so that machine noise hits both; the figure is the
# ratio of the two rates (target: <= 1.5). The write with the outbox also
# creates one delivery (one real-time route matches).
#
#   bash test/bench/outbox_cost.sh            (PLANTSYNC_BENCH_SECONDS=20 per run)
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

SECONDS_PER_RUN=${PLANTSYNC_BENCH_SECONDS:-20}
CLIENTS=${PLANTSYNC_BENCH_CLIENTS:-2}
ROUNDS=${PLANTSYNC_BENCH_ROUNDS:-3}

ensure_packages || die "could not install the required packages"
build_and_install || die "make or make install failed"
start_cluster || die "the throwaway cluster did not start"
DB=bench_outbox
WORK=$(mktemp -d)
remove_work() { rm -rf "$WORK"; }
on_exit remove_work

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $DB"
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" <<'SQL'
CREATE EXTENSION plantsync;
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('P1', 'Plant');
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('P1', 'L1', 'Store');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url) VALUES ('erp', 'erp', 'http://127.0.0.1:9/');
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('erp-stock', 'material_movement.*', 'erp');
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) VALUES ('P1', 'RM', 'Raw', 'KG');
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
SELECT 'P1', m.id, 'LOT-' || g, 'unrestricted' FROM plantsync.material m, generate_series(1, 1000) g;
SELECT count(*) FROM plantsync.maintain_partitions(2);
ALTER DATABASE bench_outbox SET plantsync.source_system = 'mes';
SQL
cat >"$WORK/write.sql" <<'SQL'
\set lot random(1, 1000)
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id)
SELECT 'P1', 'goods_receipt', l.material_id, l.id, 1, 'KG', s.id, 'mes', gen_random_uuid()::text
  FROM plantsync.lot l, plantsync.storage_location s
 WHERE l.site_id = 'P1' AND l.lot_number = 'LOT-' || :lot AND s.site_id = 'P1' AND s.location_code = 'L1';
SQL

run() {   # run LABEL -> prints tps
    pgbench -n -c "$CLIENTS" -j "$CLIENTS" -T "$SECONDS_PER_RUN" -f "$WORK/write.sql" "$DB" 2>&1 |
        sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}
set_outbox() {
    psql -X -q -d "$DB" -c "ALTER TABLE plantsync.material_movement $1 TRIGGER plantsync_outbox"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
results=()
# With synchronous_commit on, the WAL flush at commit dominates both sides;
# with it off, the figure shows what the trigger itself costs in CPU.
for sync in on off; do
    psql -X -q -d "$DB" -c "ALTER DATABASE $DB SET synchronous_commit = $sync"
    log_section "outbox cost, synchronous_commit=$sync: $ROUNDS rounds of ${SECONDS_PER_RUN}s, $CLIENTS clients"
    with=() without=()
    for ((r = 1; r <= ROUNDS; r++)); do
        set_outbox ENABLE;  w=$(run); with+=("$w")
        set_outbox DISABLE; wo=$(run); without+=("$wo")
        log_info "round $r: with outbox $w tps, without $wo tps"
    done
    set_outbox ENABLE
    mw=$(median "${with[@]}")
    mwo=$(median "${without[@]}")
    ratio=$(awk -v a="$mwo" -v b="$mw" 'BEGIN {printf "%.2f", a / b}')
    results+=("synchronous_commit=$sync: without outbox $(printf '%.0f' "$mwo") tps, with outbox $(printf '%.0f' "$mw") tps -> cost ratio $ratio (target <= 1.5)")
done
events=$(psql -X -At -d "$DB" -c "SELECT count(*) FROM plantsync.event")
deliveries=$(psql -X -At -d "$DB" -c "SELECT count(*) FROM plantsync.delivery")
echo
echo "outbox cost, median of $ROUNDS rounds of ${SECONDS_PER_RUN}s, $CLIENTS clients, $(nproc) cores:"
printf '  %s\n' "${results[@]}"
echo "  events written: $events, deliveries written: $deliveries (one per event with the outbox on)"
