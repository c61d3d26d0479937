#!/usr/bin/env bash
# Benchmark: genealogy traces on a large generated genealogy, in one run:
#   1. a genealogy of 1M lots and ~5M links (5k raw, 45k intermediate,
#      250k semi-finished, 700k finished lots; 6 inputs per lot, mostly
#      from a window of 64 neighbouring lots of the level below, as in
#      campaigns: wide enough that a raw lot feeds about 10,000 finished
#      lots, the recall the targets are set for);
#   2. backward traces of random finished lots: p50/p95 of the C trace and of
#      the recursive-CTE reference, the two taking turns (target: C p95 < 5 ms, >= 5x faster);
#   3. forward traces (recall) of random raw lots, each feeding about ten
#      thousand finished lots: p50/p95 of both (target: C < 100 ms, >= 5x faster).
# Times are measured inside the server (clock_timestamp around each call), so
# both sides are timed the same way; each trace is timed REPEATS times and
# its median counts (see time_traces below).
#
#   bash test/bench/genealogy.sh   (PLANTSYNC_BENCH_LEVELS=5000,45000,250000,700000,
#                                   PLANTSYNC_BENCH_FANIN=6,
#                                   PLANTSYNC_BENCH_WINDOW=64, PLANTSYNC_BENCH_SAMPLES=200,
#                                   PLANTSYNC_BENCH_REPEATS=7)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

LEVELS=${PLANTSYNC_BENCH_LEVELS:-5000,45000,250000,700000}
FANIN=${PLANTSYNC_BENCH_FANIN:-6}
WINDOW=${PLANTSYNC_BENCH_WINDOW:-64}
SAMPLES=${PLANTSYNC_BENCH_SAMPLES:-200}
REPEATS=${PLANTSYNC_BENCH_REPEATS:-7}
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

ensure_packages || die "could not install the required packages"
build_and_install || die "make or make install failed"
start_cluster || die "the throwaway cluster did not start"
# shared_buffers as a production server would have it (a quarter of the
# memory, capped here): the genealogy (about 1.5 GB with its indexes) is
# read from the buffer cache, not from the kernel's page cache
psql -X -q -d postgres -c "ALTER SYSTEM SET plantsync.delivery_enabled = off" -c "ALTER SYSTEM SET shared_buffers = '4GB'" >/dev/null
restart_cluster || die "the cluster did not restart"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE bench_genealogy"
DB=bench_genealogy
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "CREATE EXTENSION plantsync" -f "$TOP/test/genealogy/generator.sql"

log_section "1. generating a genealogy: lots per level {$LEVELS}, $FANIN inputs per lot, campaign window $WINDOW"
gen_start=$(date +%s)
links=$(psql -X -At -q -v ON_ERROR_STOP=1 -d "$DB" <<SQL
SET session_replication_role = replica;
SELECT plantsync_test.generate_link_graph(0.42, 'BG', '{$LEVELS}', $FANIN, $WINDOW);
SQL
)
psql -X -q -d "$DB" -c "VACUUM ANALYZE plantsync.genealogy_link" -c "VACUUM ANALYZE plantsync.lot"
lots=$(psql -X -At -d "$DB" -c "SELECT count(*) FROM plantsync.lot")
log_info "$lots lots, $links links in $(($(date +%s) - gen_start)) s"

# plantsync_test.time_traces(DIRECTION, IDS, REPEATS): the C trace and the
# recursive-CTE reference, each REPEATS times per id after one warm-up pass
# (static SQL, so each call is planned once, the same way for both sides).
# The two sides take turns by chunks of ten ids, the chunk's first side
# alternating, so that both run under the same conditions of a shared
# machine (its speed was seen to change by half within a minute). A trace's
# time is the median of its repeats: shared machines of this kind stall for
# ~40 us about every millisecond, which lands in about one 50 us trace of
# 15 at random, so over single calls the p95 measures the stalls rather
# than the traces (the same trace's calls differ by 2x).
# One row per side: p50, p95 and max over the ids of those medians, the
# same over every single call, and the average number of rows.
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" <<'SQL'
CREATE FUNCTION plantsync_test.time_traces(p_direction text, p_ids uuid[], p_repeats integer DEFAULT 5)
RETURNS TABLE (side text, p50 numeric, p95 numeric, max_ms numeric, all_p50 numeric, all_p95 numeric, avg_rows numeric)
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    c_ms float8[] := '{}';
    r_ms float8[] := '{}';
    c_id integer[] := '{}';
    r_id integer[] := '{}';
    c_rows bigint[] := '{}';
    r_rows bigint[] := '{}';
    n bigint;
    pass integer;
    chunk integer;
    turn integer;
    i integer;
    is_c boolean;
BEGIN
    FOR pass IN 0 .. p_repeats LOOP
        FOR chunk IN 0 .. (cardinality(p_ids) - 1) / 10 LOOP
            FOR turn IN 0 .. 1 LOOP
                is_c := (turn + chunk + pass) % 2 = 0;
                FOR i IN chunk * 10 + 1 .. least(chunk * 10 + 10, cardinality(p_ids)) LOOP
                    t0 := clock_timestamp();
                    IF p_direction = 'backward' AND is_c THEN
                        SELECT count(*) INTO n FROM plantsync.trace_backward(p_ids[i]);
                    ELSIF p_direction = 'backward' THEN
                        SELECT count(*) INTO n FROM plantsync_test.ref_backward(p_ids[i]);
                    ELSIF is_c THEN
                        SELECT count(*) INTO n FROM plantsync.trace_forward(p_ids[i]);
                    ELSE
                        SELECT count(*) INTO n FROM plantsync_test.ref_forward(p_ids[i]);
                    END IF;
                    IF pass > 0 AND is_c THEN
                        c_ms := c_ms || extract(epoch FROM clock_timestamp() - t0) * 1000;
                        c_id := c_id || i;
                        c_rows := c_rows || n;
                    ELSIF pass > 0 THEN
                        r_ms := r_ms || extract(epoch FROM clock_timestamp() - t0) * 1000;
                        r_id := r_id || i;
                        r_rows := r_rows || n;
                    END IF;
                END LOOP;
            END LOOP;
        END LOOP;
    END LOOP;
    RETURN QUERY
    WITH calls AS (
        SELECT 'c' AS side, m, id FROM unnest(c_ms, c_id) u (m, id)
        UNION ALL
        SELECT 'cte', m, id FROM unnest(r_ms, r_id) u (m, id)
    ), traces AS (
        SELECT calls.side, percentile_cont(0.5) WITHIN GROUP (ORDER BY m) AS m
          FROM calls GROUP BY calls.side, id
    ), per_trace AS (
        SELECT traces.side, percentile_cont(0.5) WITHIN GROUP (ORDER BY m) AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY m) AS p95, max(m) AS mx
          FROM traces GROUP BY traces.side
    ), per_call AS (
        SELECT calls.side, percentile_cont(0.5) WITHIN GROUP (ORDER BY m) AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY m) AS p95
          FROM calls GROUP BY calls.side
    )
    SELECT t.side, round(t.p50::numeric, 3), round(t.p95::numeric, 3), round(t.mx::numeric, 3),
           round(c.p50::numeric, 3), round(c.p95::numeric, 3),
           round((SELECT avg(r) FROM unnest(CASE t.side WHEN 'c' THEN c_rows ELSE r_rows END) r), 0)
      FROM per_trace t JOIN per_call c USING (side)
     ORDER BY t.side;
END
$$;
SQL

# measure DIRECTION SAMPLE: two lines, "c ..." and "cte ..."
measure() {
    psql -X -At -F ' ' -d "$DB" -c "SET statement_timeout = '30min'" \
        -c "SELECT * FROM plantsync_test.time_traces('$1', ($2), $REPEATS)" | tail -n 2
}

# samples in a stable pseudo-random order
finished_sample="SELECT array_agg(id) FROM (SELECT id FROM plantsync.lot WHERE lot_number LIKE 'BG-L3-%' ORDER BY md5(lot_number) LIMIT $SAMPLES) s"
raw_sample="SELECT array_agg(id) FROM (SELECT id FROM plantsync.lot WHERE lot_number LIKE 'BG-L0-%' ORDER BY md5(lot_number) LIMIT $((SAMPLES / 10))) s"

log_section "2. backward traces of $SAMPLES finished lots, C and reference taking turns"
both=$(measure backward "$finished_sample")
read -r _ b_c50 b_c95 b_cmax b_ca50 b_ca95 b_rows <<<"$(grep '^c ' <<<"$both")"
read -r _ b_r50 b_r95 b_rmax b_ra50 b_ra95 b_rrows <<<"$(grep '^cte ' <<<"$both")"
log_info "C:         per trace p50 $b_c50 ms, p95 $b_c95 ms, max $b_cmax ms; per call p50 $b_ca50 ms, p95 $b_ca95 ms; $b_rows lots reached on average"
log_info "reference: per trace p50 $b_r50 ms, p95 $b_r95 ms, max $b_rmax ms; per call p50 $b_ra50 ms, p95 $b_ra95 ms; $b_rrows lots reached on average"

log_section "3. forward traces (recall) of $((SAMPLES / 10)) raw lots, C and reference taking turns"
both=$(measure forward "$raw_sample")
read -r _ f_c50 f_c95 f_cmax f_ca50 f_ca95 f_rows <<<"$(grep '^c ' <<<"$both")"
read -r _ f_r50 f_r95 f_rmax f_ra50 f_ra95 f_rrows <<<"$(grep '^cte ' <<<"$both")"
log_info "C:         per trace p50 $f_c50 ms, p95 $f_c95 ms, max $f_cmax ms; per call p50 $f_ca50 ms, p95 $f_ca95 ms; $f_rows lots reached on average"
log_info "reference: per trace p50 $f_r50 ms, p95 $f_r95 ms, max $f_rmax ms; per call p50 $f_ra50 ms, p95 $f_ra95 ms; $f_rrows lots reached on average"
finished_reached=$(psql -X -At -d "$DB" -c "SELECT round(avg(n)) FROM (SELECT (SELECT count(*) FROM plantsync.trace_forward(id) t JOIN plantsync.lot l ON l.id = t.node_id WHERE l.lot_number LIKE 'BG-L3-%') AS n FROM unnest(($raw_sample)) id) s")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", a / b}'; }
echo
echo "genealogy traces, $(nproc) cores, $lots lots and $links links:"
echo "  (a trace's time is the median of its $REPEATS calls; the same over single calls in brackets)"
echo "  backward (finished lot, $b_rows lots reached): C p50 $b_c50 ms, p95 $b_c95 ms (target p95 < 5 ms); recursive CTE p50 $b_r50 ms, p95 $b_r95 ms -> $(ratio "$b_r50" "$b_c50")x at p50, $(ratio "$b_r95" "$b_c95")x at p95 (target >= 5x) [single calls: $(ratio "$b_ra50" "$b_ca50")x, $(ratio "$b_ra95" "$b_ca95")x]"
echo "  forward recall (raw lot, $f_rows lots reached, $finished_reached of them finished): C p50 $f_c50 ms, p95 $f_c95 ms (target < 100 ms); recursive CTE p50 $f_r50 ms, p95 $f_r95 ms -> $(ratio "$f_r50" "$f_c50")x at p50, $(ratio "$f_r95" "$f_c95")x at p95 (target >= 5x) [single calls: $(ratio "$f_ra50" "$f_ca50")x, $(ratio "$f_ra95" "$f_ca95")x]"
