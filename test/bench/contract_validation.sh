#!/usr/bin/env bash
# Benchmark: contract validation. (1) Validations per second of a typical
# production confirmation event (the row as JSON, 16 fields) against its
# contract, in one backend, next to a reference in the same run: the same
# loop computing the JSON without validating it. (2) The cost of validation
# on the write itself: pgbench inserting confirmations with and without the
# event type's contract registered, alternating, as a ratio.
#
#   bash test/bench/contract_validation.sh    (PLANTSYNC_BENCH_SECONDS, _ROUNDS, _CLIENTS)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_start bench_contract
N=${PLANTSYNC_BENCH_VALIDATIONS:-200000}
psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DB" <<'SQL'
SET plantsync.source_system = 'hub';
SELECT plantsync.register_contract('production_confirmation.recorded', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["id", "site_id", "order_id", "operation_id", "yield_quantity", "scrap_quantity", "uom", "is_final",
               "confirmed_at", "source_system", "external_id"],
  "properties": {
    "id": {"type": "string", "format": "uuid"},
    "site_id": {"type": "string", "pattern": "^[A-Z0-9][A-Z0-9_-]{0,19}$"},
    "order_id": {"type": "string", "format": "uuid"},
    "operation_id": {"type": "string", "format": "uuid"},
    "yield_quantity": {"type": "number", "minimum": 0},
    "scrap_quantity": {"type": "number", "minimum": 0},
    "rework_quantity": {"type": "number", "minimum": 0},
    "uom": {"enum": ["EA", "KG", "L", "M", "PC"]},
    "labour_minutes": {"type": "number", "minimum": 0},
    "machine_minutes": {"type": "number", "minimum": 0},
    "is_final": {"type": "boolean"},
    "confirmed_at": {"type": "string", "format": "date-time"},
    "source_system": {"enum": ["erp", "mes", "qms", "hub"]},
    "external_id": {"type": "string", "minLength": 1, "maxLength": 64},
    "erp_document": {"type": ["string", "null"]}
  },
  "additionalProperties": false}', 'event');
SQL
cat >"$BENCH_WORK/confirm.sql" <<'SQL'
INSERT INTO plantsync.production_confirmation (site_id, order_id, operation_id, yield_quantity, scrap_quantity, uom, labour_minutes, machine_minutes, source_system, external_id)
SELECT 'P1', o.id, op.id, 10, 1, 'KG', 5, 6, 'mes', gen_random_uuid()::text
  FROM plantsync.production_order o JOIN plantsync.production_operation op ON op.order_id = o.id
 WHERE o.site_id = 'P1' AND o.order_number = 'O-1';
SQL
# One real confirmation, whose event is the instance validated below.
pgbench -n -t 1 -f "$BENCH_WORK/confirm.sql" "$BENCH_DB" >/dev/null

log_section "validations per second, $N validations in one backend"
timing() {   # timing SQL -> milliseconds
    psql -X -q -d "$BENCH_DB" <<SQL | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1
\\timing on
$1
SQL
}
instance="(SELECT data FROM plantsync.event WHERE type = 'production_confirmation.recorded' LIMIT 1)"
schema="(SELECT schema FROM plantsync.contract WHERE subject = 'production_confirmation.recorded')"
valid=$(psql -X -At -d "$BENCH_DB" -c "SELECT plantsync.json_schema_valid($schema, $instance, true)")
[[ $valid == t ]] || die "the benchmark instance is not valid against its contract"
# Each row validates a different instance (its quantity is the row number),
# so nothing is computed once for all rows; the reference does the same
# work but for the validation.
vary="jsonb_set(i.d, '{yield_quantity}', to_jsonb(g))"
ref_ms=$(timing "SELECT count(*) FROM generate_series(1, $N) g, (SELECT $instance AS d, $schema AS s) i WHERE jsonb_typeof($vary) = 'object';")
val_ms=$(timing "SELECT count(*) FROM generate_series(1, $N) g, (SELECT $instance AS d, $schema AS s) i WHERE plantsync.json_schema_valid(i.s, $vary, true);")
chk_ms=$(timing "SELECT count(*) FROM generate_series(1, $N) g, (SELECT $instance AS d) i WHERE plantsync.check_contract('production_confirmation.recorded', $vary) IS NOT NULL;")
per_s() { awk -v n="$N" -v ms="$1" -v ref="$ref_ms" 'BEGIN {printf "%.0f", n / ((ms - ref) / 1000)}'; }

log_section "validation cost on the write, $BENCH_ROUNDS rounds of ${BENCH_SECONDS}s, $BENCH_CLIENTS clients"
results=()
for sync in on off; do
    psql -X -q -d "$BENCH_DB" -c "ALTER DATABASE $BENCH_DB SET synchronous_commit = $sync"
    bench_ab "synchronous_commit=$sync" "$BENCH_WORK/confirm.sql" \
        "SET plantsync.source_system = 'hub'; SELECT plantsync.set_contract_status('production_confirmation.recorded', 1, 'retired', 'benchmark: without')" \
        "SET plantsync.source_system = 'hub'; SELECT plantsync.set_contract_status('production_confirmation.recorded', 1, 'active', 'benchmark: with')"
    results+=("synchronous_commit=$sync: without contract $(printf '%.0f' "$BENCH_A") tps, with contract $(printf '%.0f' "$BENCH_B") tps -> cost ratio $(awk -v r="$BENCH_RATIO" 'BEGIN {printf "%.2f", 1 / r}')")
done
checked=$(psql -X -At -d "$BENCH_DB" -c "SELECT count(*) FROM plantsync.event WHERE dataschema IS NOT NULL")

echo
echo "contract validation, $(nproc) cores:"
echo "  plantsync.json_schema_valid(): $(per_s "$val_ms") validations/s of a 16-field production confirmation against its 15-property contract (one backend; reference loop without validation subtracted: $N rows in ${ref_ms} ms)"
echo "  plantsync.check_contract() (registry lookup + cached compiled schema): $(per_s "$chk_ms") validations/s"
printf '  %s\n' "${results[@]}"
echo "  events checked against the contract during the runs: $checked"
