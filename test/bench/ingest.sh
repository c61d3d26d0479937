#!/usr/bin/env bash
# Benchmark: batch ingest of shop-floor signals, in one run:
#   the reference, a plain COPY of the rows into an unindexed table, and
#   plantsync.mes_ingest_signals() taking the same rows as JSON batches of
#   10,000 (checked, deduplicated, stored with its key and foreign key),
#   both sent from files by psql; and the COPY way, COPY into
#   the session's staging table (plantsync.mes_signal_staging()) and
#   mes_drain_signals() in one transaction;
#   3 rounds alternating, medians.
#   Target: ingest >= 25 % of the COPY rate.
#
#   bash test/bench/ingest.sh   (PLANTSYNC_BENCH_SIGNALS=200000)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SIGNALS=${PLANTSYNC_BENCH_SIGNALS:-200000}
BATCH=10000
bench_start bench_ingest
psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DB" <<SQL
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.equipment (site_id, equipment_code, name, equipment_level)
SELECT 'P1', 'M-' || g, 'Machine ' || g, 'WorkCenter' FROM generate_series(1, 100) g;
CREATE TABLE copy_target (site_id text, equipment text, signal text, at timestamptz, state text, value numeric);
SQL

# the same rows for both: CSV for COPY, JSON batches for the ingest (per round,
# fresh times, so that nothing is a duplicate)
make_round() {
    local round=$1
    psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DB" <<SQL
\copy (SELECT 'P1', 'M-' || (1 + g % 100), CASE WHEN g % 3 = 0 THEN 'state' ELSE 'counter' END, timestamptz '2025-01-01' + make_interval(secs => $round * 10000000 + g), CASE WHEN g % 3 = 0 THEN 'running' END, CASE WHEN g % 3 <> 0 THEN g END FROM generate_series(1, $SIGNALS) g) TO '$BENCH_WORK/round$round.csv' WITH (FORMAT csv)
SQL
    psql -X -At -v ON_ERROR_STOP=1 -d "$BENCH_DB" >"$BENCH_WORK/round$round.sql" <<SQL
SELECT format('SELECT plantsync.mes_ingest_signals(%L, %L);', 'bench-$round-' || b,
              jsonb_build_object('site', 'P1', 'signals', jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                  'equipment', 'M-' || (1 + g % 100), 'signal', CASE WHEN g % 3 = 0 THEN 'state' ELSE 'counter' END,
                  'at', timestamptz '2025-01-01' + make_interval(secs => $round * 10000000 + g),
                  'state', CASE WHEN g % 3 = 0 THEN 'running' END, 'value', CASE WHEN g % 3 <> 0 THEN g END)))))
  FROM generate_series(1, $SIGNALS) g, LATERAL (SELECT (g - 1) / $BATCH AS b) x
 GROUP BY b ORDER BY b;
SQL
}
# stage_and_drain FILE MESSAGE_ID: the COPY way, one transaction; prints the outcome
stage_and_drain() {
    psql -X -q -At -v ON_ERROR_STOP=1 -d "$BENCH_DB" <<SQL | tail -n 1
BEGIN;
SELECT plantsync.mes_signal_staging() \\g /dev/null
\\copy pg_temp.plantsync_signal_staging (site, equipment, signal, at, state, value) FROM '$1' WITH (FORMAT csv)
SELECT plantsync.mes_drain_signals('$2');
COMMIT;
SQL
}
copy_rates=()
ingest_rates=()
staged_rates=()
for round in 1 2 3; do
    make_round "$round"
    t0=$(date +%s.%N)
    psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DB" -c "\\copy copy_target FROM '$BENCH_WORK/round$round.csv' WITH (FORMAT csv)"
    t1=$(date +%s.%N)
    psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DB" -f "$BENCH_WORK/round$round.sql" >/dev/null
    t2=$(date +%s.%N)
    # the COPY way: the same rows at other times, staged and drained in one transaction
    psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DB" -c "\copy (SELECT site_id, equipment, signal, at + interval '100 days', state, value FROM copy_target WHERE at >= timestamptz '2025-01-01' + make_interval(secs => $round * 10000000) AND at < timestamptz '2025-01-01' + make_interval(secs => ($round + 1) * 10000000)) TO '$BENCH_WORK/staged$round.csv' WITH (FORMAT csv)"
    t3=$(date +%s.%N)
    stage_and_drain "$BENCH_WORK/staged$round.csv" "staged-$round" >/dev/null
    t4=$(date +%s.%N)
    st=$(awk -v n="$SIGNALS" -v a="$t3" -v b="$t4" 'BEGIN {printf "%.0f", n / (b - a)}')
    staged_rates+=("$st")
    c=$(awk -v n="$SIGNALS" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", n / (b - a)}')
    i=$(awk -v n="$SIGNALS" -v a="$t1" -v b="$t2" 'BEGIN {printf "%.0f", n / (b - a)}')
    copy_rates+=("$c")
    ingest_rates+=("$i")
    log_info "round $round: COPY $c rows/s, mes_ingest_signals $i signals/s, COPY to staging + mes_drain_signals $st signals/s"
done
# a batch sent again: every signal a duplicate, found by the key's own check
# and the move made again with ON CONFLICT
t5=$(date +%s.%N)
again=$(stage_and_drain "$BENCH_WORK/staged3.csv" "staged-3-again")
t6=$(date +%s.%N)
again_rate=$(awk -v n="$SIGNALS" -v a="$t5" -v b="$t6" 'BEGIN {printf "%.0f", n / (b - a)}')
stored=$(psql -X -At -d "$BENCH_DB" -c "SELECT count(*) FROM plantsync.machine_signal")
copy_rate=$(bench_median "${copy_rates[@]}")
ingest_rate=$(bench_median "${ingest_rates[@]}")
staged_rate=$(bench_median "${staged_rates[@]}")
echo
echo "shop-floor signal ingest, $(nproc) cores, $SIGNALS signals a round in batches of $BATCH, 3 rounds ($stored stored):"
echo "  plain COPY into an unindexed table: median $copy_rate rows/s"
echo "  plantsync.mes_ingest_signals() (JSON batches): median $ingest_rate signals/s -> $(awk -v a="$ingest_rate" -v b="$copy_rate" 'BEGIN {printf "%.0f", 100 * a / b}')% of COPY (target >= 25%)"
echo "  COPY into the session's staging table + mes_drain_signals(), one transaction: median $staged_rate signals/s -> $(awk -v a="$staged_rate" -v b="$copy_rate" 'BEGIN {printf "%.0f", 100 * a / b}')% of COPY (target >= 25%)"
echo "  the last staged batch sent again (all $SIGNALS duplicates, stored once): $again_rate signals/s -> $(awk -v a="$again_rate" -v b="$copy_rate" 'BEGIN {printf "%.0f", 100 * a / b}')% of COPY; outcome $again"
