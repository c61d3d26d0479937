#!/usr/bin/env bash
# End-to-end: per-aggregate event order equals commit order under 4
# concurrent writers, and CDC consumers see every committed event (and no
# rolled-back one) through pg_recvlogical with the test_decoding plugin.
#
# Four pgbench clients post movements on two lots at once. The events are
# also written into the WAL (plantsync.emit_wal_messages); pg_recvlogical
# reads them back in commit order, and for each lot the aggregate sequence
# numbers must come out as 1, 2, 3, ... without gap or inversion.
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"

DB=e2e_outbox_cdc
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

psql_q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
psql_q -d "$DB" <<'SQL'
CREATE EXTENSION plantsync;
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('P1', 'Plant');
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('P1', 'L1', 'Store');
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) VALUES ('P1', 'RM', 'Raw', 'KG');
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
SELECT 'P1', id, l, 'unrestricted' FROM plantsync.material, (VALUES ('A'), ('B')) v(l);
ALTER DATABASE e2e_outbox_cdc SET plantsync.emit_wal_messages = on;
ALTER DATABASE e2e_outbox_cdc SET plantsync.source_system = 'mes';
SQL
pg_recvlogical -d "$DB" --slot plantsync_e2e --create-slot -P test_decoding

cat >"$WORK/movement.sql" <<'SQL'
\set lot random(1, 2)
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id)
SELECT 'P1', 'goods_receipt', l.material_id, l.id, 1, 'KG', s.id, 'mes', gen_random_uuid()::text
  FROM plantsync.lot l, plantsync.storage_location s
 WHERE l.lot_number = CASE WHEN :lot = 1 THEN 'A' ELSE 'B' END AND s.location_code = 'L1';
SQL
pgbench -n -c 4 -j 4 -t 250 -f "$WORK/movement.sql" "$DB" >"$WORK/pgbench.log" 2>&1 || { cat "$WORK/pgbench.log"; exit 1; }
# Rolled-back changes must leave neither an event nor a WAL message.
psql_q -d "$DB" <<'SQL'
BEGIN;
SET LOCAL plantsync.source_system = 'qms';
UPDATE plantsync.lot SET disposition = 'blocked' WHERE lot_number = 'B';
ROLLBACK;
SQL
endpos=$(psql -X -At -d "$DB" -c "SELECT pg_current_wal_lsn()")
pg_recvlogical -d "$DB" --slot plantsync_e2e --start --no-loop --endpos="$endpos" -f "$WORK/cdc.txt"
pg_recvlogical -d "$DB" --slot plantsync_e2e --drop-slot

# The decoded stream, in commit order, back into the database to check it.
grep '^message: transactional: 1 prefix: plantsync' "$WORK/cdc.txt" | sed 's/^.*content:[[:space:]]*//' >"$WORK/events.json"
psql_q -d "$DB" -c "CREATE TABLE cdc (pos serial, ev jsonb)"
psql_q -d "$DB" -c "\\copy cdc (ev) FROM '$WORK/events.json' WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')"

result() { psql -X -At -d "$DB" -c "$1"; }
movements=$(result "SELECT count(*) FROM plantsync.material_movement")
events=$(result "SELECT count(*) FROM plantsync.event WHERE type = 'material_movement.recorded'")
cdc=$(result "SELECT count(*) FROM cdc WHERE ev->>'type' = 'material_movement.recorded'")
log_info "movements committed: $movements, outbox events: $events, CDC messages: $cdc"
check "1000 movements committed by 4 concurrent writers" test "$movements" = 1000
check "exactly one outbox event per committed movement" test "$events" = "$movements"
check "pg_recvlogical received every committed event" test "$cdc" = "$events"
check "no rolled-back change reached the outbox or the WAL" \
    test "$(result "SELECT count(*) FROM cdc WHERE ev->>'type' = 'lot.blocked'") $(result "SELECT count(*) FROM plantsync.event WHERE type = 'lot.blocked'")" = "0 0"
# Per lot: sequence numbers in commit order are exactly 1..n.
bad=$(result "SELECT count(*) FROM (
                SELECT ev->>'lot_number' AS lot, (ev->>'aggregate_seq')::bigint AS seq,
                       row_number() OVER (PARTITION BY ev->>'lot_number' ORDER BY pos) AS n
                  FROM cdc WHERE ev->>'aggregate_type' = 'lot') s WHERE seq <> n + 1")
check "per-lot sequence numbers follow commit order without gaps (lot.unrestricted is 1)" test "$bad" = 0
check "both lots were written concurrently" \
    test "$(result "SELECT count(DISTINCT ev->>'lot_number') FROM cdc WHERE ev->>'type' = 'material_movement.recorded'")" = 2
check "the outbox table agrees: sequences 1..n per lot" \
    test "$(result "SELECT count(*) FROM (SELECT aggregate_id, max(aggregate_seq) m, count(*) c, count(DISTINCT aggregate_seq) d
                     FROM plantsync.event WHERE aggregate_type = 'lot' GROUP BY aggregate_id) s WHERE m <> c OR c <> d")" = 0

psql_q -d postgres -c "DROP DATABASE $DB WITH (FORCE)"
counts_ok
