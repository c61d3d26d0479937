-- Genealogy as users see it: a small plant's links, the traces and their
-- JSON, the recall scope, and every refusal with its SQLSTATE.
\set SHOW_CONTEXT never
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('RG', 'Regress genealogy');
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('RG', 'WH', 'Store');
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, material_type, base_uom)
VALUES ('RG', 'FLOUR', 'Flour', 'raw', 'KG'), ('RG', 'DOUGH', 'Dough', 'semi_finished', 'KG'), ('RG', 'BREAD', 'Bread', 'finished', 'KG');
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
SELECT 'RG', o.n, m.id, 100, 'KG', 'released', '2027-01-01'
  FROM (VALUES ('MIX-1', 'DOUGH'), ('BAKE-1', 'BREAD')) o (n, mat) JOIN plantsync.material m ON m.material_number = o.mat AND m.site_id = 'RG';
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
SELECT 'RG', m.id, l.n, 'unrestricted'
  FROM (VALUES ('FL-1', 'FLOUR'), ('FL-2', 'FLOUR'), ('DG-1', 'DOUGH'), ('BR-1', 'BREAD'), ('BR-2', 'BREAD')) l (n, mat)
  JOIN plantsync.material m ON m.material_number = l.mat AND m.site_id = 'RG';
CREATE FUNCTION regress.glot(text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM plantsync.lot WHERE lot_number = $1 $$;
CREATE FUNCTION regress.move(p_type text, p_lot text, p_qty numeric, p_order text, p_ext text, p_at timestamptz) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, to_location_id,
                                             order_id, source_system, external_id, posted_at)
    SELECT 'RG', p_type, l.material_id, l.id, p_qty, 'KG',
           CASE WHEN p_type = 'consumption' THEN s.id END, CASE WHEN p_type <> 'consumption' THEN s.id END,
           (SELECT id FROM plantsync.production_order WHERE order_number = p_order), 'mes', p_ext, p_at
      FROM plantsync.lot l, plantsync.storage_location s WHERE l.lot_number = p_lot AND s.site_id = 'RG' $$;
SELECT regress.move('goods_receipt', 'FL-1', 500, NULL, 'RG-1', '2026-05-01 06:00+00'),
       regress.move('goods_receipt', 'FL-2', 500, NULL, 'RG-2', '2026-05-01 06:00+00'),
       regress.move('consumption', 'FL-1', 60, 'MIX-1', 'RG-3', '2026-05-01 07:00+00'),
       regress.move('consumption', 'FL-2', 40, 'MIX-1', 'RG-4', '2026-05-01 07:05+00'),
       regress.move('production_receipt', 'DG-1', 160, 'MIX-1', 'RG-5', '2026-05-01 07:30+00'),
       regress.move('consumption', 'DG-1', 160, 'BAKE-1', 'RG-6', '2026-05-01 08:00+00'),
       regress.move('production_receipt', 'BR-1', 70, 'BAKE-1', 'RG-7', '2026-05-01 09:00+00'),
       regress.move('production_receipt', 'BR-2', 70, 'BAKE-1', 'RG-8', '2026-05-01 09:10+00');

-- The links the ledger implies.
SELECT parent_number, child_number, link_type, quantity, uom, linked_at FROM plantsync.genealogy_link WHERE site_id = 'RG' ORDER BY 1, 2;
-- Where did BR-2 come from; where did FL-1 go; as of 09:05 only BR-1 existed.
SELECT node_kind, node_number, depth, quantity, uom,
       array(SELECT l.lot_number FROM unnest(path) WITH ORDINALITY p (id, k) JOIN plantsync.lot l ON l.id = p.id ORDER BY k) AS path
  FROM plantsync.trace_backward(regress.glot('BR-2')) ORDER BY depth, node_number;
SELECT node_number, depth FROM plantsync.trace_forward(regress.glot('FL-1')) ORDER BY depth, node_number;
SELECT node_number, depth FROM plantsync.trace_forward(regress.glot('FL-1'), 100, '2026-05-01 09:05+00') ORDER BY depth, node_number;
SELECT node_number, depth FROM plantsync.trace_forward(regress.glot('FL-1'), 1) ORDER BY depth, node_number;
SELECT jsonb_pretty(plantsync.trace_json(regress.glot('DG-1'), 'backward', 5, '2026-06-01 00:00+00') #- '{node_id}' #- '{nodes,0,node_id}' #- '{nodes,0,path}'
                    #- '{nodes,0,material_id}' #- '{nodes,0,order_id}' #- '{nodes,1,node_id}' #- '{nodes,1,path}' #- '{nodes,1,material_id}' #- '{nodes,1,order_id}');
-- Once VACUUM has marked the links' pages all visible, the walk reads links
-- from its index alone and the heap only for lots it has not reached: the
-- same answers, paths, quantities and times, now and as of a past moment.
CREATE TEMP VIEW rg_traces AS
SELECT d, t.* FROM (VALUES ('forward'), ('backward')) v (d), plantsync.lot l,
       LATERAL (SELECT * FROM plantsync.trace_forward(l.id) WHERE v.d = 'forward'
                UNION ALL SELECT * FROM plantsync.trace_forward(l.id, 100, '2026-05-01 09:05+00') WHERE v.d = 'forward'
                UNION ALL SELECT * FROM plantsync.trace_backward(l.id) WHERE v.d = 'backward'
                UNION ALL SELECT * FROM plantsync.trace_backward(l.id, 1, '2026-05-01 09:05+00') WHERE v.d = 'backward') t
 WHERE l.site_id = 'RG';
CREATE TEMP TABLE traces_before AS TABLE rg_traces;
VACUUM plantsync.genealogy_link;
SELECT relallvisible > 0 AS links_all_visible FROM pg_class WHERE oid = 'plantsync.genealogy_link'::regclass;
SELECT (SELECT count(*) FROM traces_before) AS rows_traced,
       (SELECT count(*) FROM (TABLE traces_before EXCEPT ALL TABLE rg_traces) x)
     + (SELECT count(*) FROM (TABLE rg_traces EXCEPT ALL TABLE traces_before) y) AS differences;
-- Rows of every shape, each column compared with the link that reached the
-- lot: a chain deeper than a path array with a one-byte header holds, a lot
-- number too long to stay in the table's row (stored out of line there,
-- whole in the walk index), another long enough to be compressed, links
-- without quantity, unit or order; from the table, then from the index.
SET session_replication_role = replica;
INSERT INTO plantsync.site (site_id, name) VALUES ('RC', 'Regress row shapes');
INSERT INTO plantsync.material (site_id, material_number, description, material_type, base_uom) VALUES ('RC', 'M', 'Chain', 'semi_finished', 'KG');
INSERT INTO plantsync.lot (id, site_id, material_id, lot_number, disposition)
SELECT ('01900000-0000-7000-8000-0000000001' || lpad(i::text, 2, '0'))::uuid, 'RC', m.id,
       CASE i WHEN 4 THEN (SELECT string_agg(md5(k::text), '') FROM generate_series(1, 68) k)
              WHEN 6 THEN repeat('compressible-', 300) ELSE 'RC-' || i END, 'unrestricted'
  FROM generate_series(0, 9) i, plantsync.material m WHERE m.site_id = 'RC';
INSERT INTO plantsync.genealogy_link (site_id, parent_kind, parent_id, parent_number, parent_material_id, child_kind, child_id,
                                      child_number, child_material_id, link_type, order_id, quantity, uom, linked_at)
SELECT 'RC', 'lot', p.id, p.lot_number, p.material_id, 'lot', c.id, c.lot_number, c.material_id, 'consumed_into',
       CASE WHEN i % 3 <> 0 THEN ('01900000-0000-7000-8000-0000000002' || lpad(i::text, 2, '0'))::uuid END,
       CASE WHEN i % 2 = 0 THEN i * 1.5 END, CASE WHEN i % 4 <> 1 THEN 'KG' END, '2026-05-02 00:00+00'::timestamptz + i * interval '1 minute'
  FROM generate_series(1, 9) i
  JOIN plantsync.lot p ON p.id = ('01900000-0000-7000-8000-0000000001' || lpad((i - 1)::text, 2, '0'))::uuid
  JOIN plantsync.lot c ON c.id = ('01900000-0000-7000-8000-0000000001' || lpad(i::text, 2, '0'))::uuid;
RESET session_replication_role;
SELECT reltoastrelid::regclass AS link_toast FROM pg_class WHERE oid = 'plantsync.genealogy_link'::regclass \gset
SELECT count(DISTINCT chunk_id) AS values_out_of_line FROM :link_toast;
CREATE TEMP VIEW rc_rows AS
SELECT d, count(*) AS rows, max(t.depth) AS deepest, max(length(t.node_number)) AS longest_number,
       count(*) FILTER (WHERE t.node_kind = 'lot' AND t.node_number = n.lot_number AND t.material_id = n.material_id
                          AND t.quantity IS NOT DISTINCT FROM l.quantity AND t.uom IS NOT DISTINCT FROM l.uom
                          AND t.order_id IS NOT DISTINCT FROM l.order_id AND t.linked_at = l.linked_at
                          AND t.path = (SELECT array_agg(x.id ORDER BY CASE d WHEN 'forward' THEN x.id END, x.id DESC)
                                          FROM plantsync.lot x
                                         WHERE x.site_id = 'RC' AND x.id BETWEEN least(t.node_id, s.id) AND greatest(t.node_id, s.id))) AS equal,
       count(DISTINCT t) AS distinct_rows
  FROM (VALUES ('forward', '01900000-0000-7000-8000-000000000100'::uuid), ('backward', '01900000-0000-7000-8000-000000000109')) s (d, id)
       CROSS JOIN LATERAL (SELECT * FROM plantsync.trace_forward(s.id) WHERE d = 'forward' UNION ALL SELECT * FROM plantsync.trace_backward(s.id) WHERE d = 'backward') t
  JOIN plantsync.lot n ON n.id = t.node_id
  JOIN plantsync.genealogy_link l ON l.site_id = 'RC' AND CASE d WHEN 'forward' THEN l.child_id = t.node_id ELSE l.parent_id = t.node_id END
                                 AND CASE d WHEN 'forward' THEN l.parent_id = t.path[t.depth] ELSE l.child_id = t.path[t.depth] END
 GROUP BY d ORDER BY d;
SELECT * FROM rc_rows;
VACUUM plantsync.genealogy_link;
SELECT * FROM rc_rows;
-- A trace starts only from a lot or serial that exists for its snapshot,
-- however many versions of it the primary key holds (updated a few times,
-- updated more often than the probe keeps versions of, then deleted while
-- its links stay), read from the table and, after VACUUM, from the key.
CREATE FUNCTION pg_temp.rc_versions(p_updates integer) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    FOR k IN 1 .. p_updates LOOP
        -- the number is indexed: every update adds a version to the key
        UPDATE plantsync.lot SET lot_number = 'RC-5-' || k WHERE id = '01900000-0000-7000-8000-000000000105';
    END LOOP;
    RETURN (SELECT count(*) FROM plantsync.trace_backward('01900000-0000-7000-8000-000000000105'));
END
$$;
SET session_replication_role = replica;
SELECT pg_temp.rc_versions(10) AS traced_after_10_updates, pg_temp.rc_versions(100) AS traced_after_110_updates;
VACUUM plantsync.lot;
SELECT pg_temp.rc_versions(0) AS traced_all_visible;
DELETE FROM plantsync.lot WHERE id = '01900000-0000-7000-8000-000000000105';
RESET session_replication_role;
SELECT count(*) FROM plantsync.trace_backward('01900000-0000-7000-8000-000000000105');
VACUUM plantsync.lot;
SELECT count(*) FROM plantsync.trace_backward('01900000-0000-7000-8000-000000000105');
-- The same on a generated genealogy with reversals and rework cycles, all
-- visible: the (lot, depth) sets of the recursive-CTE reference, now and as
-- of past moments.
\set ECHO none
\i test/genealogy/generator.sql
\set ECHO all
CREATE TEMP TABLE rv AS SELECT * FROM plantsync_test.generate_genealogy(0.55, 'RV', 30, 4, 15, 3, 3, 2, 3);
VACUUM plantsync.genealogy_link;
SELECT count(*) AS traces, sum(x.nodes) > 1000 AS over_a_thousand_nodes, sum(x.differences) AS differences
  FROM rv, plantsync.lot l, (VALUES ('forward'), ('backward')) v (d),
       LATERAL (VALUES (NULL::timestamptz), (rv.first_posting + (rv.last_posting - rv.first_posting) / 2)) a (as_of),
       LATERAL (SELECT (SELECT count(*) FROM plantsync_test.ref_forward(l.id, 100, a.as_of) WHERE v.d = 'forward')
                     + (SELECT count(*) FROM plantsync_test.ref_backward(l.id, 100, a.as_of) WHERE v.d = 'backward') AS nodes,
                       (SELECT count(*) FROM ((SELECT node_id, depth FROM plantsync.trace_forward(l.id, 100, a.as_of) WHERE v.d = 'forward'
                                               UNION ALL SELECT node_id, depth FROM plantsync.trace_backward(l.id, 100, a.as_of) WHERE v.d = 'backward')
                                              EXCEPT ALL
                                              (SELECT node_id, depth FROM plantsync_test.ref_forward(l.id, 100, a.as_of) WHERE v.d = 'forward'
                                               UNION ALL SELECT node_id, depth FROM plantsync_test.ref_backward(l.id, 100, a.as_of) WHERE v.d = 'backward')) d)
                     + (SELECT count(*) FROM ((SELECT node_id, depth FROM plantsync_test.ref_forward(l.id, 100, a.as_of) WHERE v.d = 'forward'
                                               UNION ALL SELECT node_id, depth FROM plantsync_test.ref_backward(l.id, 100, a.as_of) WHERE v.d = 'backward')
                                              EXCEPT ALL
                                              (SELECT node_id, depth FROM plantsync.trace_forward(l.id, 100, a.as_of) WHERE v.d = 'forward'
                                               UNION ALL SELECT node_id, depth FROM plantsync.trace_backward(l.id, 100, a.as_of) WHERE v.d = 'backward')) e) AS differences) x
 WHERE l.site_id = 'RV';
SELECT count(*) > 0 AS has_reversed_links FROM plantsync.genealogy_link WHERE site_id = 'RV' AND unlinked_at IS NOT NULL;
-- Wide levels whose lots feed lots of a campaign window of 8 neighbours
-- (frontiers dense in the index) or of 400 (sparse), or of 8 with random
-- ids (scattered over the index), a fifth of the inputs from anywhere
-- below: the walk reads each level's frontier in key order
-- with range scans, and gives the reference's sets, reading links from the
-- heap and, once VACUUM has run, from the index alone.
SET session_replication_role = replica;
SELECT plantsync_test.generate_link_graph(0.31, 'WD', '{40,300,1500,3000}', 4, 8) > 0 AS generated;
SELECT plantsync_test.generate_link_graph(0.32, 'WS', '{40,300,1500,3000}', 4, 400) > 0 AS generated;
SELECT plantsync_test.generate_link_graph(0.33, 'WR', '{40,300,1500,3000}', 4, 8, true) > 0 AS generated;
RESET session_replication_role;
CREATE FUNCTION pg_temp.wide_differences(p_site text, OUT traces bigint, OUT nodes bigint, OUT differences bigint)
LANGUAGE sql AS $$
    WITH starts AS (
        SELECT l.id, 'forward' AS d FROM plantsync.lot l WHERE l.site_id = p_site AND l.lot_number LIKE '%-L0-%'
        UNION ALL
        SELECT l.id, 'backward' FROM plantsync.lot l
         WHERE l.site_id = p_site AND (l.lot_number LIKE '%-L3-%' OR l.lot_number LIKE '%-L2-%')
           AND hashtext(l.lot_number) % 20 = 0
    ), c AS (
        SELECT s.d, s.id, t.node_id, t.depth FROM starts s, plantsync.trace_forward(s.id) t WHERE s.d = 'forward'
        UNION ALL
        SELECT s.d, s.id, t.node_id, t.depth FROM starts s, plantsync.trace_backward(s.id) t WHERE s.d = 'backward'
    ), r AS (
        SELECT s.d, s.id, t.node_id, t.depth FROM starts s, plantsync_test.ref_forward(s.id) t WHERE s.d = 'forward'
        UNION ALL
        SELECT s.d, s.id, t.node_id, t.depth FROM starts s, plantsync_test.ref_backward(s.id) t WHERE s.d = 'backward'
    )
    SELECT (SELECT count(*) FROM starts), (SELECT count(*) FROM r),
           (SELECT count(*) FROM (TABLE c EXCEPT ALL TABLE r) x) + (SELECT count(*) FROM (TABLE r EXCEPT ALL TABLE c) y)
$$;
SELECT 'WD' AS site, traces, nodes > 10000 AS over_ten_thousand_nodes, differences FROM pg_temp.wide_differences('WD')
UNION ALL
SELECT 'WS', traces, nodes > 10000, differences FROM pg_temp.wide_differences('WS')
UNION ALL
SELECT 'WR', traces, nodes > 10000, differences FROM pg_temp.wide_differences('WR');
VACUUM plantsync.genealogy_link;
SELECT 'WD' AS site, traces, nodes > 10000 AS over_ten_thousand_nodes, differences FROM pg_temp.wide_differences('WD')
UNION ALL
SELECT 'WS', traces, nodes > 10000, differences FROM pg_temp.wide_differences('WS')
UNION ALL
SELECT 'WR', traces, nodes > 10000, differences FROM pg_temp.wide_differences('WR');
-- Trace rows are built in memory the session keeps between traces, up to
-- plantsync.trace_memory_kept; results held at the same time (a join, an
-- open cursor) stay intact while other traces come and go, and a query an
-- error stopped gives its rows back.
CREATE TEMP VIEW trace_memory AS
SELECT sum(total_bytes) AS bytes FROM pg_backend_memory_contexts WHERE name = 'plantsync trace results';
CREATE FUNCTION pg_temp.wd(p_number text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM plantsync.lot WHERE lot_number = p_number $$;
CREATE FUNCTION pg_temp.held_trace(p_start uuid, p_other uuid, OUT held bigint, OUT others bigint, OUT same boolean)
LANGUAGE plpgsql AS $$
DECLARE
    c refcursor;
    r record;
    got uuid[] := '{}';
BEGIN
    OPEN c FOR SELECT t.node_id FROM plantsync.trace_forward(p_start) t;
    FETCH c INTO r;
    got := got || r.node_id;
    -- while the cursor holds its rows: another trace, and one an error stops
    SELECT count(*) INTO others FROM plantsync.trace_forward(p_other);
    BEGIN
        PERFORM count(*) FROM plantsync.trace_forward(p_other) t WHERE 1 / (t.depth - 1) > 0;
    EXCEPTION WHEN division_by_zero THEN
        NULL;
    END;
    LOOP
        FETCH c INTO r;
        EXIT WHEN NOT FOUND;
        got := got || r.node_id;
    END LOOP;
    CLOSE c;
    held := cardinality(got);
    same := (SELECT array_agg(x ORDER BY x) FROM unnest(got) x)
          = (SELECT array_agg(t.node_id ORDER BY t.node_id) FROM plantsync.trace_forward(p_start) t);
END
$$;
SELECT count(*) > 300 AS big_enough FROM plantsync.trace_forward(pg_temp.wd('WD-L0-7'));
SELECT bytes > 65536 AS kept FROM trace_memory;
SELECT (SELECT count(*) FROM plantsync.trace_forward(pg_temp.wd('WD-L0-7'))) * (SELECT count(*) FROM plantsync.trace_backward(pg_temp.wd('WD-L3-70'))) AS product,
       (SELECT count(*) FROM plantsync.trace_forward(pg_temp.wd('WD-L0-7')) f, plantsync.trace_backward(pg_temp.wd('WD-L3-70')) b) AS joined;
SELECT held > 300 AS held_rows, others > 300 AS other_rows, same FROM pg_temp.held_trace(pg_temp.wd('WD-L0-7'), pg_temp.wd('WD-L0-8'));
SET plantsync.trace_memory_kept = 0;
SELECT held > 300 AS held_rows, others > 300 AS other_rows, same FROM pg_temp.held_trace(pg_temp.wd('WD-L0-7'), pg_temp.wd('WD-L0-8'));
SELECT bytes <= 16384 AS given_back FROM trace_memory;
SELECT count(*) FROM plantsync.trace_forward(pg_temp.wd('WD-L0-9')) t WHERE 1 / (t.depth - 1) > 0;
SELECT bytes <= 16384 AS given_back_after_an_error FROM trace_memory;
RESET plantsync.trace_memory_kept;
SET client_min_messages = warning;
DROP SCHEMA plantsync_test CASCADE;
RESET client_min_messages;
-- Recall of FL-2.
SELECT category, object_number, quantity, uom, depth FROM plantsync.recall_scope(regress.glot('FL-2')) ORDER BY 1, 2;

-- Refusals.
SELECT * FROM plantsync.trace_backward('01900000-0000-7000-8000-000000000000');
\echo :SQLSTATE
SELECT * FROM plantsync.trace_forward(NULL);
\echo :SQLSTATE
SELECT * FROM plantsync.trace_forward(regress.glot('FL-1'), -2);
\echo :SQLSTATE
SELECT * FROM plantsync.trace_forward(regress.glot('FL-1'), 10001);
\echo :SQLSTATE
SELECT plantsync.trace_json(regress.glot('FL-1'), 'upstream');
\echo :SQLSTATE
SELECT * FROM plantsync.recall_scope('01900000-0000-7000-8000-000000000000');
\echo :SQLSTATE
-- The link table is derived: nobody but its owner writes it.
-- Traces read as the caller: without SELECT on the links, no trace.
SELECT regress.glot('FL-1') AS fl1 \gset
CREATE ROLE regress_genealogy_user;
GRANT USAGE ON SCHEMA plantsync TO regress_genealogy_user;
GRANT SELECT ON plantsync.genealogy_link, plantsync.lot, plantsync.serial TO regress_genealogy_user;
SET ROLE regress_genealogy_user;
DELETE FROM plantsync.genealogy_link;
\echo :SQLSTATE
SELECT count(*) FROM plantsync.trace_forward(:'fl1');
RESET ROLE;
REVOKE SELECT ON plantsync.genealogy_link FROM regress_genealogy_user;
SET ROLE regress_genealogy_user;
SELECT count(*) FROM plantsync.trace_forward(:'fl1');
\echo :SQLSTATE
RESET ROLE;
REVOKE ALL ON plantsync.lot, plantsync.serial FROM regress_genealogy_user;
REVOKE ALL ON SCHEMA plantsync FROM regress_genealogy_user;
DROP ROLE regress_genealogy_user;
-- The walk reads index pages itself: they are counted in the statistics as
-- ReadBuffer counts them, each a read, a hit or not (idx_blks_read is
-- reads minus hits, and went below zero when hits alone were counted).
SELECT pg_stat_reset_single_table_counters(i) FROM unnest(ARRAY['plantsync.genealogy_link_parent_idx'::regclass,
    'plantsync.genealogy_link_child_idx'::regclass, 'plantsync.lot_pkey'::regclass]) i;
SELECT count(*) > 0 AS rows_traced
  FROM (SELECT id FROM plantsync.lot ORDER BY id LIMIT 300) l,
       LATERAL (SELECT * FROM plantsync.trace_backward(l.id) UNION ALL SELECT * FROM plantsync.trace_forward(l.id)) t;
SELECT pg_stat_force_next_flush();
SELECT indexrelname, idx_blks_hit > 0 AS hits_counted, idx_blks_read >= 0 AS reads_not_negative
  FROM pg_statio_all_indexes
 WHERE indexrelid IN ('plantsync.genealogy_link_parent_idx'::regclass, 'plantsync.genealogy_link_child_idx'::regclass,
                      'plantsync.lot_pkey'::regclass)
 ORDER BY indexrelname;
