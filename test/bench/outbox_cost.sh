#!/usr/bin/env bash
# Benchmark: the cost of the outbox. The same canonical write (a goods
# receipt in the movement ledger, with its checks and guard) is run with
# pgbench with and without the outbox trigger, in the same cluster and the
# same run, alternating; the figure is the ratio of the two rates (target:
# <= 1.5). The write with the outbox also creates one delivery (one
# real-time route matches). The same is done for the stock balance trigger.
#
#   bash test/bench/outbox_cost.sh    (PLANTSYNC_BENCH_SECONDS, _ROUNDS, _CLIENTS)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_start bench_outbox
psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DB" -c "SET plantsync.source_system = 'hub'" \
    -c "INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('erp-stock', 'material_movement.*', 'erp')"
cat >"$BENCH_WORK/write.sql" <<'SQL'
\set lot random(1, 1000)
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id)
SELECT 'P1', 'goods_receipt', l.material_id, l.id, 1, 'KG', s.id, 'mes', gen_random_uuid()::text
  FROM plantsync.lot l, plantsync.storage_location s
 WHERE l.site_id = 'P1' AND l.lot_number = 'LOT-' || :lot AND s.site_id = 'P1' AND s.location_code = 'L1';
SQL

results=()
# With synchronous_commit on, the WAL flush at commit dominates both sides;
# with it off, the figure shows what the trigger itself costs in CPU.
for sync in on off; do
    psql -X -q -d "$BENCH_DB" -c "ALTER DATABASE $BENCH_DB SET synchronous_commit = $sync"
    log_section "outbox cost, synchronous_commit=$sync: $BENCH_ROUNDS rounds of ${BENCH_SECONDS}s, $BENCH_CLIENTS clients"
    bench_ab "synchronous_commit=$sync" "$BENCH_WORK/write.sql" \
        "ALTER TABLE plantsync.material_movement DISABLE TRIGGER plantsync_outbox" \
        "ALTER TABLE plantsync.material_movement ENABLE TRIGGER plantsync_outbox"
    results+=("synchronous_commit=$sync: without outbox $(printf '%.0f' "$BENCH_A") tps, with outbox $(printf '%.0f' "$BENCH_B") tps -> cost ratio $(awk -v r="$BENCH_RATIO" 'BEGIN {printf "%.2f", 1 / r}') (target <= 1.5)")
done
# The stock balance the ledger keeps (plantsync.stock_balance) is the other
# trigger of this write: its own cost, measured the same way (CPU view).
log_section "stock balance cost, synchronous_commit=off: $BENCH_ROUNDS rounds of ${BENCH_SECONDS}s, $BENCH_CLIENTS clients"
bench_ab "stock balance" "$BENCH_WORK/write.sql" \
    "ALTER TABLE plantsync.material_movement DISABLE TRIGGER plantsync_stock_balance" \
    "ALTER TABLE plantsync.material_movement ENABLE TRIGGER plantsync_stock_balance"
results+=("stock balance kept by the ledger (synchronous_commit=off): without $(printf '%.0f' "$BENCH_A") tps, with $(printf '%.0f' "$BENCH_B") tps -> cost ratio $(awk -v r="$BENCH_RATIO" 'BEGIN {printf "%.2f", 1 / r}')")
events=$(psql -X -At -d "$BENCH_DB" -c "SELECT count(*) FROM plantsync.event")
deliveries=$(psql -X -At -d "$BENCH_DB" -c "SELECT count(*) FROM plantsync.delivery")
echo
echo "outbox cost, median of $BENCH_ROUNDS rounds of ${BENCH_SECONDS}s, $BENCH_CLIENTS clients, $(nproc) cores:"
printf '  %s\n' "${results[@]}"
echo "  events written: $events, deliveries written: $deliveries (one per event with the outbox on)"
