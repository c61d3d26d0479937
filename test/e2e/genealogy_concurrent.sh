#!/usr/bin/env bash
# End-to-end: genealogy traces stay exact while the genealogy changes under
# them. The traces read the leaf pages of the walk indexes themselves, so
# this is where page splits, killed and vacuumed index tuples and pages
# turning all-visible (or not) meet the walk: for 20 seconds a writer adds
# links next to the ones the traces read (splitting those pages), unlinks
# (a non-HOT update: new index tuples) and deletes some, while VACUUM runs
# in a loop; meanwhile traces from random lots are compared, each in one
# statement (one snapshot), with the recursive-CTE reference.
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"

db=plantsync_genealogy_concurrent
seconds=${PLANTSYNC_CONCURRENT_SECONDS:-20}
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -d "$db" "$@"; }

psql_q -c "CREATE EXTENSION plantsync" -f "$PLANTSYNC_TOP/test/genealogy/generator.sql"
psql_q -c "SET session_replication_role = replica" \
    -c "SELECT plantsync_test.generate_link_graph(0.5, 'CC', '{100,1000,4000,10000}', 6, 16) > 0 AS generated"
psql_q -c "VACUUM ANALYZE plantsync.genealogy_link"
pages_before=$(psql -X -At -d "$db" -c "SELECT pg_relation_size('plantsync.genealogy_link_child_idx') / 8192 + pg_relation_size('plantsync.genealogy_link_parent_idx') / 8192")

# The writer: small committed transactions until the time is up. New links
# go from raw lots to finished and semi-finished lots (changing what traces
# find, and inserted among those lots' links in both walk indexes).
psql -X -q -v ON_ERROR_STOP=1 -d "$db" >"$tmp/writer.out" 2>&1 <<SQL &
SET session_replication_role = replica;
DO \$\$
DECLARE
    raw uuid[] := ARRAY(SELECT id FROM plantsync.lot WHERE lot_number LIKE 'CC-L0-%');
    made uuid[] := ARRAY(SELECT id FROM plantsync.lot WHERE lot_number ~ '^CC-L[23]-');
    stop timestamptz := clock_timestamp() + interval '$seconds seconds';
BEGIN
    WHILE clock_timestamp() < stop LOOP
        INSERT INTO plantsync.genealogy_link (site_id, parent_kind, parent_id, parent_number, parent_material_id,
                                              child_kind, child_id, child_number, child_material_id, link_type,
                                              quantity, uom, linked_at)
        SELECT 'CC', 'lot', p.id, p.lot_number, p.material_id, 'lot', c.id, c.lot_number, c.material_id,
               'consumed_into', 1, 'KG', '2030-01-01'
          FROM generate_series(1, 40) g
          CROSS JOIN LATERAL (SELECT raw[1 + floor(random() * cardinality(raw))::integer] AS p,
                                     made[1 + floor(random() * cardinality(made))::integer] AS c
                               WHERE g > 0) pick
          JOIN plantsync.lot p ON p.id = pick.p
          JOIN plantsync.lot c ON c.id = pick.c;
        UPDATE plantsync.genealogy_link SET unlinked_at = '2030-01-02'
         WHERE id IN (SELECT id FROM plantsync.genealogy_link
                       WHERE linked_at = '2030-01-01' AND unlinked_at IS NULL AND random() < 0.1 LIMIT 5);
        DELETE FROM plantsync.genealogy_link
         WHERE id IN (SELECT id FROM plantsync.genealogy_link WHERE linked_at = '2030-01-01' AND random() < 0.05 LIMIT 5);
        COMMIT;
    END LOOP;
END
\$\$;
SQL
pids+=($!)
writer=$!
(
    end=$((SECONDS + seconds))
    while ((SECONDS < end)); do
        psql -X -q -d "$db" -c "VACUUM plantsync.genealogy_link" >/dev/null 2>&1 || true
        sleep 0.5
    done
) &
pids+=($!)

# The reader: one statement per comparison, so the trace and the reference
# see the same snapshot; both directions.
result=$(psql -X -At -v ON_ERROR_STOP=1 -d "$db" <<SQL
CREATE TEMP TABLE compared (direction text, differences bigint, nodes bigint);
-- STABLE: the queries inside see the calling statement's snapshot
CREATE FUNCTION pg_temp.traced(p_ref boolean, p_forward boolean, x uuid) RETURNS TABLE (node_id uuid, depth integer)
LANGUAGE plpgsql STABLE AS \$\$
BEGIN
    IF p_ref AND p_forward THEN
        RETURN QUERY SELECT t.node_id, t.depth FROM plantsync_test.ref_forward(x) t;
    ELSIF p_ref THEN
        RETURN QUERY SELECT t.node_id, t.depth FROM plantsync_test.ref_backward(x) t;
    ELSIF p_forward THEN
        RETURN QUERY SELECT t.node_id, t.depth FROM plantsync.trace_forward(x) t;
    ELSE
        RETURN QUERY SELECT t.node_id, t.depth FROM plantsync.trace_backward(x) t;
    END IF;
END
\$\$;
DO \$\$
DECLARE
    finished uuid[] := ARRAY(SELECT id FROM plantsync.lot WHERE lot_number ~ '^CC-L[23]-');
    middle uuid[] := ARRAY(SELECT id FROM plantsync.lot WHERE lot_number LIKE 'CC-L1-%');
    stop timestamptz := clock_timestamp() + interval '$seconds seconds';
    fwd boolean;
    x uuid;
BEGIN
    WHILE clock_timestamp() < stop LOOP
        FOREACH fwd IN ARRAY ARRAY[false, true] LOOP
            x := CASE WHEN fwd THEN middle[1 + floor(random() * cardinality(middle))::integer]
                      ELSE finished[1 + floor(random() * cardinality(finished))::integer] END;
            INSERT INTO compared
            SELECT CASE WHEN fwd THEN 'forward' ELSE 'backward' END,
                   (SELECT count(*) FROM ((SELECT * FROM pg_temp.traced(false, fwd, x) EXCEPT ALL SELECT * FROM pg_temp.traced(true, fwd, x))
                                          UNION ALL
                                          (SELECT * FROM pg_temp.traced(true, fwd, x) EXCEPT ALL SELECT * FROM pg_temp.traced(false, fwd, x))) d),
                   (SELECT count(*) FROM pg_temp.traced(false, fwd, x));
        END LOOP;
        COMMIT;
    END LOOP;
END
\$\$;
SELECT direction, count(*), sum(differences), sum(nodes) FROM compared GROUP BY direction ORDER BY direction;
SQL
)
result=$(grep '|' <<<"$result" || true)
wait "$writer" || true
log_info "compared (direction|traces|differences|lots reached): $(tr '\n' ' ' <<<"$result")"
if [[ -s "$tmp/writer.out" ]]; then log_info "writer: $(cat "$tmp/writer.out")"; fi

read -r b_traces b_diff < <(awk -F'|' '$1 == "backward" {print $2, $3}' <<<"$result")
read -r f_traces f_diff < <(awk -F'|' '$1 == "forward" {print $2, $3}' <<<"$result")
check "backward traces were compared under the writes (${b_traces:-0})" test "${b_traces:-0}" -ge 50
check "forward traces were compared under the writes (${f_traces:-0})" test "${f_traces:-0}" -ge 50
check "backward traces equal the reference in the same snapshot (differences: ${b_diff:-?})" test "${b_diff:-1}" = 0
check "forward traces equal the reference in the same snapshot (differences: ${f_diff:-?})" test "${f_diff:-1}" = 0

stats=$(psql -X -At -F ' ' -d "$db" -c "SELECT count(*) FILTER (WHERE linked_at = '2030-01-01'), count(*) FILTER (WHERE unlinked_at = '2030-01-02') FROM plantsync.genealogy_link")
read -r added unlinked <<<"$stats"
pages_after=$(psql -X -At -d "$db" -c "SELECT pg_relation_size('plantsync.genealogy_link_child_idx') / 8192 + pg_relation_size('plantsync.genealogy_link_parent_idx') / 8192")
log_info "links added and still there: $added, unlinked: $unlinked; walk index pages: $pages_before -> $pages_after"
check "the writer added and unlinked links meanwhile" test "$added" -gt 1000 -a "$unlinked" -gt 10
check "the walk index pages split meanwhile" test "$pages_after" -gt "$pages_before"
counts_ok
