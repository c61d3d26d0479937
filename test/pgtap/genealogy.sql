-- pgTAP: genealogy. Links derived from the ledger (consumption and receipt
-- in either order, reversals, serials); the C traces give the same sets as
-- the recursive-CTE reference on generated genealogies (every start lot, both
-- directions, depth limits, as-of times); paths are real paths; cycles,
-- unknown lots and bad arguments; the recall scope.
BEGIN;
SELECT * FROM no_plan();
\ir ../genealogy/generator.sql

-- ---------- links from the ledger, by hand ----------
SET LOCAL plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('G1', 'Genealogy by hand');
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('G1', 'WH', 'Store');
SET LOCAL plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, material_type, base_uom)
VALUES ('G1', 'RAW', 'Raw', 'raw', 'KG'), ('G1', 'FG', 'Finished', 'finished', 'KG');
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
SELECT 'G1', 'GO-1', id, 100, 'KG', 'released', '2027-01-01' FROM plantsync.material WHERE site_id = 'G1' AND material_number = 'FG';
SET LOCAL plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
SELECT 'G1', m.id, x.n, 'unrestricted' FROM plantsync.material m
  JOIN (VALUES ('RAW', 'R-1'), ('RAW', 'R-2'), ('FG', 'F-1'), ('FG', 'F-2')) x (mat, n) ON x.mat = m.material_number
 WHERE m.site_id = 'G1';
CREATE TEMP VIEW g1 AS
SELECT (SELECT id FROM plantsync.lot WHERE lot_number = 'R-1') AS r1, (SELECT id FROM plantsync.lot WHERE lot_number = 'R-2') AS r2,
       (SELECT id FROM plantsync.lot WHERE lot_number = 'F-1') AS f1, (SELECT id FROM plantsync.lot WHERE lot_number = 'F-2') AS f2,
       (SELECT id FROM plantsync.production_order WHERE order_number = 'GO-1') AS o,
       (SELECT id FROM plantsync.storage_location WHERE site_id = 'G1') AS loc,
       (SELECT id FROM plantsync.material WHERE site_id = 'G1' AND material_number = 'RAW') AS raw,
       (SELECT id FROM plantsync.material WHERE site_id = 'G1' AND material_number = 'FG') AS fg;
-- R-1 received and consumed before the receipt of F-1; R-2 consumed after it
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id, posted_at)
SELECT 'G1', 'goods_receipt', raw, r, 100, 'KG', loc, 'mes', 'G1-GR-' || n, '2026-03-01 08:00+00' FROM g1, LATERAL (VALUES (r1, 1), (r2, 2)) v (r, n);
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, order_id, source_system, external_id, posted_at)
SELECT 'G1', 'consumption', raw, r1, 30, 'KG', loc, o, 'mes', 'G1-C-1', '2026-03-01 09:00+00' FROM g1;
SELECT is((SELECT count(*) FROM plantsync.genealogy_link WHERE site_id = 'G1'), 0::bigint, 'a consumption before any receipt links nothing yet');
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, order_id, source_system, external_id, posted_at)
SELECT 'G1', 'production_receipt', fg, f1, 50, 'KG', loc, o, 'mes', 'G1-R-1', '2026-03-01 10:00+00' FROM g1;
SELECT results_eq($$SELECT parent_number, child_number, quantity, uom, linked_at FROM plantsync.genealogy_link WHERE site_id = 'G1' ORDER BY 1, 2$$,
                  $$VALUES ('R-1', 'F-1', 30::numeric, 'KG', '2026-03-01 10:00+00'::timestamptz)$$,
                  'the receipt links the input consumed before it, at the later posting time');
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, order_id, source_system, external_id, posted_at)
SELECT 'G1', 'consumption', raw, r2, 20, 'KG', loc, o, 'mes', 'G1-C-2', '2026-03-01 11:00+00' FROM g1;
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, order_id, source_system, external_id, posted_at)
SELECT 'G1', 'production_receipt', fg, f2, 40, 'KG', loc, o, 'mes', 'G1-R-2', '2026-03-01 12:00+00' FROM g1;
SELECT results_eq($$SELECT parent_number, child_number, quantity, linked_at FROM plantsync.genealogy_link WHERE site_id = 'G1' ORDER BY 1, 2$$,
                  $$VALUES ('R-1', 'F-1', 30::numeric, '2026-03-01 10:00+00'::timestamptz), ('R-1', 'F-2', 30, '2026-03-01 12:00+00'),
                           ('R-2', 'F-1', 20, '2026-03-01 11:00+00'), ('R-2', 'F-2', 20, '2026-03-01 12:00+00')$$,
                  'consumptions and receipts of one order link every input to every output, in whichever order they are posted');
SELECT results_eq($$SELECT node_number, depth, quantity, order_id = (SELECT o FROM g1) FROM plantsync.trace_backward((SELECT f1 FROM g1)) ORDER BY 1$$,
                  $$VALUES ('R-1', 1, 30::numeric, true), ('R-2', 1, 20::numeric, true)$$, 'backward from F-1: both raw lots');
SELECT results_eq($$SELECT node_number FROM plantsync.trace_backward((SELECT f1 FROM g1), 100, '2026-03-01 10:30+00') ORDER BY 1$$,
                  $$VALUES ('R-1')$$, 'as of 10:30, F-1 came from R-1 only');
SELECT is_empty($$SELECT * FROM plantsync.trace_forward((SELECT r1 FROM g1), 100, '2026-03-01 09:30+00')$$,
                'as of 09:30, R-1 had gone nowhere yet');
-- the reversal of R-2's consumption ends its links at the reversal's time
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, reverses_movement_id, source_system, external_id, posted_at)
SELECT 'G1', 'reversal', raw, r2, 20, 'KG', (SELECT id FROM plantsync.material_movement WHERE external_id = 'G1-C-2'), 'mes', 'G1-C-2-REV', '2026-03-01 13:00+00' FROM g1;
SELECT results_eq($$SELECT node_number FROM plantsync.trace_backward((SELECT f1 FROM g1)) ORDER BY 1$$,
                  $$VALUES ('R-1')$$, 'after the reversal, F-1 came from R-1 only');
SELECT results_eq($$SELECT node_number FROM plantsync.trace_backward((SELECT f1 FROM g1), 100, '2026-03-01 12:30+00') ORDER BY 1$$,
                  $$VALUES ('R-1'), ('R-2')$$, 'as of before the reversal, from both');
SELECT is((SELECT count(*) FROM plantsync.genealogy_link WHERE site_id = 'G1'), 4::bigint, 'a reversal ends links, it deletes none');
-- serialized units: F-1 goes into device D-SN-1 of device lot D-1
SET LOCAL plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, material_type, base_uom, serial_tracked)
VALUES ('G1', 'DEV', 'Device', 'finished', 'EA', true);
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
SELECT 'G1', 'GO-3', id, 1, 'EA', 'released', '2027-01-01' FROM plantsync.material WHERE site_id = 'G1' AND material_number = 'DEV';
SET LOCAL plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
SELECT 'G1', id, 'D-1', 'unrestricted' FROM plantsync.material WHERE site_id = 'G1' AND material_number = 'DEV';
INSERT INTO plantsync.serial (site_id, material_id, serial_number, lot_id)
SELECT 'G1', l.material_id, 'D-SN-1', l.id FROM plantsync.lot l WHERE l.lot_number = 'D-1';
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, order_id, source_system, external_id, posted_at)
SELECT 'G1', 'consumption', fg, f1, 5, 'KG', loc, (SELECT id FROM plantsync.production_order WHERE order_number = 'GO-3'), 'mes', 'G1-C-4', '2026-03-01 14:00+00' FROM g1;
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, serial_id, quantity, uom, to_location_id, order_id, source_system, external_id, posted_at)
SELECT 'G1', 'production_receipt', s.material_id, s.lot_id, s.id, 1, 'EA', (SELECT loc FROM g1),
       (SELECT id FROM plantsync.production_order WHERE order_number = 'GO-3'), 'mes', 'G1-R-4', '2026-03-01 15:00+00'
  FROM plantsync.serial s WHERE s.serial_number = 'D-SN-1';
SELECT results_eq($$SELECT node_kind, node_number, depth FROM plantsync.trace_forward((SELECT r1 FROM g1)) ORDER BY 3, 2$$,
                  $$VALUES ('lot', 'F-1', 1), ('lot', 'F-2', 1), ('serial', 'D-SN-1', 2)$$,
                  'forward from R-1: the finished lots and the device made from F-1');
SELECT results_eq($$SELECT node_kind, node_number, depth FROM plantsync.trace_backward((SELECT id FROM plantsync.serial WHERE serial_number = 'D-SN-1')) ORDER BY 3, 2$$,
                  $$VALUES ('lot', 'D-1', 1), ('lot', 'F-1', 1), ('lot', 'R-1', 2)$$,
                  'backward from the device: its lot, the finished lot it was made of, and the raw lot behind it');
SELECT results_eq($$SELECT path FROM plantsync.trace_forward((SELECT r1 FROM g1)) WHERE node_kind = 'serial'$$,
                  $$SELECT ARRAY[r1, f1, (SELECT id FROM plantsync.serial WHERE serial_number = 'D-SN-1')] FROM g1$$,
                  'the path runs from the start to the node');

-- ---------- recall scope ----------
SET LOCAL plantsync.source_system = 'erp';
INSERT INTO plantsync.shipment (site_id, shipment_number, customer_code, customer_name, status) VALUES ('G1', 'SH-1', 'CUST-9', 'Customer Nine', 'planned');
INSERT INTO plantsync.shipment_line (site_id, shipment_id, line_number, material_id, lot_id, quantity, uom)
SELECT 'G1', (SELECT id FROM plantsync.shipment WHERE shipment_number = 'SH-1'), 1, fg, f2, 15, 'KG' FROM g1;
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
SELECT 'G1', 'GO-2', fg, 10, 'KG', 'released', '2027-01-01' FROM g1;
SET LOCAL plantsync.source_system = 'mes';
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, order_id, source_system, external_id, posted_at)
SELECT 'G1', 'consumption', fg, f1, 5, 'KG', loc, (SELECT id FROM plantsync.production_order WHERE order_number = 'GO-2'), 'mes', 'G1-C-3', '2026-03-02 08:00+00' FROM g1;
SELECT results_eq($$SELECT category, object_number, quantity, depth FROM plantsync.recall_scope((SELECT r1 FROM g1))
                     ORDER BY 1, 2, 3$$,
                  $$VALUES ('customer', 'CUST-9', NULL::numeric, 1),
                           ('finished_lot', 'F-1', NULL, 1), ('finished_lot', 'F-2', NULL, 1),
                           ('finished_serial', 'D-SN-1', NULL, 2),
                           ('open_order', 'GO-1', 30, 0), ('open_order', 'GO-2', 5, 1), ('open_order', 'GO-3', 5, 1),
                           ('shipment', 'SH-1', 15, 1),
                           ('stock', 'D-SN-1', 1, NULL), ('stock', 'F-1', 40, NULL), ('stock', 'F-2', 40, NULL), ('stock', 'R-1', 70, NULL),
                           ('suspect_lot', 'R-1', NULL, 0)$$,
                  'recall scope of R-1: finished lots and device, shipment and customer, open orders, stock on hand');
SELECT is((SELECT detail ->> 'customer_name' FROM plantsync.recall_scope((SELECT r1 FROM g1)) WHERE category = 'shipment'),
          'Customer Nine', 'the shipment names its customer');
SELECT throws_ok($$SELECT * FROM plantsync.recall_scope('00000000-0000-0000-0000-000000000000')$$, 'P0002',
                 'lot or serial "00000000-0000-0000-0000-000000000000" does not exist', 'recall of an unknown lot is refused');
SELECT is((SELECT jsonb_array_length(plantsync.trace_json((SELECT f2 FROM g1), 'backward') -> 'nodes')), 1,
          'trace_json: the nodes as a JSON array');
SELECT is((SELECT plantsync.trace_json((SELECT f2 FROM g1), 'backward') #>> '{nodes,0,node_number}'), 'R-1',
          'trace_json: each node with its fields');

-- ---------- bad arguments ----------
SELECT throws_ok($$SELECT * FROM plantsync.trace_backward('00000000-0000-0000-0000-000000000001')$$, 'P0002',
                 'lot or serial "00000000-0000-0000-0000-000000000001" does not exist', 'an unknown lot is refused');
SELECT throws_ok($$SELECT * FROM plantsync.trace_forward(NULL)$$, '22004', 'p_node_id must not be null', 'a null start is refused');
SELECT throws_ok($$SELECT * FROM plantsync.trace_forward((SELECT r1 FROM g1), -1)$$, '22023',
                 'p_max_depth must be between 0 and 10000, not -1', 'a negative depth is refused');
SELECT is_empty($$SELECT * FROM plantsync.trace_forward((SELECT r1 FROM g1), 0)$$, 'depth 0: nothing');
SELECT throws_ok($$SELECT plantsync.trace_json((SELECT r1 FROM g1), 'sideways')$$, '22023',
                 'direction "sideways" is not valid', 'trace_json refuses an unknown direction');
SELECT throws_ok($$INSERT INTO plantsync.genealogy_link (site_id, parent_kind, parent_id, parent_number, parent_material_id, child_kind, child_id,
                                                         child_number, child_material_id, link_type, linked_at)
                   SELECT 'G1', 'lot', r1, 'R-1', raw, 'lot', r1, 'R-1', raw, 'consumed_into', now() FROM g1$$,
                 '23514', NULL, 'a lot is never its own input');

-- ---------- the C traces against the recursive-CTE reference ----------
CREATE TEMP TABLE graphs AS
SELECT g.seed, g.site, r.*
  FROM (VALUES (0.11::float8, 'GA', 30, 3, 15, 3, 3, 0, 2), (0.22, 'GB', 40, 4, 20, 4, 3, 2, 3),
               (0.33, 'GC', 25, 5, 12, 2, 4, 3, 3), (0.44, 'GD', 60, 3, 30, 5, 2, 1, 4))
       AS g (seed, site, raw, levels, orders, inputs, outputs, cycles, reversals),
       LATERAL plantsync_test.generate_genealogy(g.seed, g.site, g.raw, g.levels, g.orders, g.inputs, g.outputs, g.cycles, g.reversals) r;
SELECT ok(links > lots, format('generated genealogy %s: %s lots, %s orders, %s movements, %s links', site, lots, orders, movements, links))
  FROM graphs ORDER BY site;
SELECT ok((SELECT count(*) FROM plantsync.genealogy_link l
             JOIN plantsync.material pm ON pm.id = l.parent_material_id AND pm.material_type = 'finished'
             JOIN plantsync.material cm ON cm.id = l.child_material_id AND cm.material_type = 'semi_finished'
            WHERE l.site_id IN ('GB', 'GC')) > 0, 'the generated genealogies have rework links (finished back into an intermediate)');

CREATE TEMP TABLE cases AS
SELECT gr.site, l.id AS start, d.direction, x.max_depth, a.as_of
  FROM graphs gr
  JOIN plantsync.lot l ON l.site_id = gr.site
  CROSS JOIN (VALUES ('forward'), ('backward')) d (direction)
  CROSS JOIN (VALUES (1), (2), (100)) x (max_depth)
  CROSS JOIN LATERAL (VALUES (NULL::timestamptz), (gr.first_posting + (gr.last_posting - gr.first_posting) / 2),
                             (gr.last_posting - interval '2 minutes')) a (as_of);

CREATE TEMP TABLE mismatches AS
SELECT c.site, c.direction, c.max_depth, c.as_of IS NULL AS now, count(*) AS cases,
       sum((SELECT count(*) FROM ((SELECT node_id, depth FROM plantsync.trace_forward(c.start, c.max_depth, c.as_of) WHERE c.direction = 'forward'
                                   UNION ALL
                                   SELECT node_id, depth FROM plantsync.trace_backward(c.start, c.max_depth, c.as_of) WHERE c.direction = 'backward')
                                  EXCEPT ALL
                                  (SELECT node_id, depth FROM plantsync_test.ref_forward(c.start, c.max_depth, c.as_of) WHERE c.direction = 'forward'
                                   UNION ALL
                                   SELECT node_id, depth FROM plantsync_test.ref_backward(c.start, c.max_depth, c.as_of) WHERE c.direction = 'backward')) x)
         + (SELECT count(*) FROM ((SELECT node_id, depth FROM plantsync_test.ref_forward(c.start, c.max_depth, c.as_of) WHERE c.direction = 'forward'
                                   UNION ALL
                                   SELECT node_id, depth FROM plantsync_test.ref_backward(c.start, c.max_depth, c.as_of) WHERE c.direction = 'backward')
                                  EXCEPT ALL
                                  (SELECT node_id, depth FROM plantsync.trace_forward(c.start, c.max_depth, c.as_of) WHERE c.direction = 'forward'
                                   UNION ALL
                                   SELECT node_id, depth FROM plantsync.trace_backward(c.start, c.max_depth, c.as_of) WHERE c.direction = 'backward')) y)) AS differences,
       sum((SELECT count(*) FROM plantsync_test.ref_forward(c.start, c.max_depth, c.as_of) WHERE c.direction = 'forward')
         + (SELECT count(*) FROM plantsync_test.ref_backward(c.start, c.max_depth, c.as_of) WHERE c.direction = 'backward')) AS nodes
  FROM cases c
 GROUP BY 1, 2, 3, 4;
SELECT is(differences, 0::numeric,
          format('%s %s, depth <= %s, %s: %s start lots, %s nodes reached, same (node, depth) sets as the recursive CTE',
                 site, direction, max_depth, CASE WHEN now THEN 'now' ELSE 'as of a past time' END, cases, nodes))
  FROM mismatches ORDER BY site, direction, max_depth, now;
SELECT ok((SELECT sum(nodes) FROM mismatches WHERE max_depth = 100) > 1000, 'the comparison covers more than a thousand reached nodes');

-- every path is a real path: from the start, one valid link per step, ending at the node
SELECT is((SELECT count(*)
             FROM cases c
             CROSS JOIN LATERAL (SELECT * FROM plantsync.trace_forward(c.start, c.max_depth, c.as_of) WHERE c.direction = 'forward'
                                 UNION ALL
                                 SELECT * FROM plantsync.trace_backward(c.start, c.max_depth, c.as_of) WHERE c.direction = 'backward') t
            WHERE c.max_depth = 100
              AND (t.path[1] <> c.start OR t.path[t.depth + 1] <> t.node_id OR cardinality(t.path) <> t.depth + 1
                   OR EXISTS (SELECT 1 FROM generate_series(1, t.depth) s
                               WHERE NOT EXISTS (SELECT 1 FROM plantsync.genealogy_link l
                                                  WHERE (c.direction = 'forward' AND l.parent_id = t.path[s] AND l.child_id = t.path[s + 1]
                                                         OR c.direction = 'backward' AND l.child_id = t.path[s] AND l.parent_id = t.path[s + 1])
                                                    AND CASE WHEN c.as_of IS NULL THEN l.unlinked_at IS NULL
                                                             ELSE l.linked_at <= c.as_of AND (l.unlinked_at IS NULL OR l.unlinked_at > c.as_of) END)))),
          0::bigint, 'every path starts at the start, ends at the node and follows links valid at the time asked');

-- cycles: a rework loop makes the start reachable from itself; it is not reported, and the walk ends
SELECT ok(EXISTS (SELECT 1 FROM plantsync.lot l WHERE l.site_id IN ('GB', 'GC', 'GD')
                     AND EXISTS (SELECT 1 FROM plantsync_test.ref_forward(l.id) r
                                  JOIN plantsync.genealogy_link k ON k.parent_id = r.node_id AND k.child_id = l.id AND k.unlinked_at IS NULL)),
          'the generated genealogies contain cycles');
SELECT is((SELECT count(*) FROM plantsync.lot l CROSS JOIN LATERAL plantsync.trace_forward(l.id) t
            WHERE l.site_id IN ('GB', 'GC', 'GD') AND t.node_id = l.id), 0::bigint, 'no trace reports its own start, cycles or not');
SELECT is((SELECT count(*) FROM (SELECT t.node_id FROM plantsync.lot l CROSS JOIN LATERAL plantsync.trace_forward(l.id) t
                                  WHERE l.site_id = 'GC' GROUP BY l.id, t.node_id HAVING count(*) > 1) x),
          0::bigint, 'each node once per trace, however many paths reach it');

-- row-level security: the walk then reads through SPI, and the policies
-- decide which links exist
CREATE ROLE plantsync_tap_rls;
GRANT USAGE ON SCHEMA plantsync TO plantsync_tap_rls;
GRANT SELECT ON plantsync.genealogy_link, plantsync.lot, plantsync.serial TO plantsync_tap_rls;
ALTER TABLE plantsync.genealogy_link ENABLE ROW LEVEL SECURITY;
CREATE POLICY tap_not_ga ON plantsync.genealogy_link AS RESTRICTIVE FOR SELECT USING (site_id <> 'GA');
CREATE TEMP TABLE rls_starts AS SELECT DISTINCT site, start FROM cases WHERE site IN ('GA', 'GB');
CREATE TEMP TABLE rls_seen (site text, start uuid, node_id uuid, depth integer);
GRANT SELECT ON rls_starts TO plantsync_tap_rls;
GRANT INSERT ON rls_seen TO plantsync_tap_rls;
SET ROLE plantsync_tap_rls;
INSERT INTO rls_seen SELECT r.site, r.start, t.node_id, t.depth FROM rls_starts r CROSS JOIN LATERAL plantsync.trace_forward(r.start) t;
RESET ROLE;
SELECT is((SELECT count(*) FROM rls_seen WHERE site = 'GA'), 0::bigint, 'under a policy hiding a plant''s links, its traces are empty');
SELECT is((SELECT count(*) FROM ((SELECT start, node_id, depth FROM rls_seen WHERE site = 'GB')
                                 EXCEPT ALL
                                 (SELECT r.start, t.node_id, t.depth FROM rls_starts r CROSS JOIN LATERAL plantsync.trace_forward(r.start) t WHERE r.site = 'GB')) x)
          + (SELECT count(*) FROM ((SELECT r.start, t.node_id, t.depth FROM rls_starts r CROSS JOIN LATERAL plantsync.trace_forward(r.start) t WHERE r.site = 'GB')
                                   EXCEPT ALL
                                   (SELECT start, node_id, depth FROM rls_seen WHERE site = 'GB')) y),
          0::bigint, 'under row-level security, the visible plant''s traces are the same as without it');
SELECT ok((SELECT count(*) FROM rls_seen WHERE site = 'GB') > 100, 'and they are not empty');
DROP POLICY tap_not_ga ON plantsync.genealogy_link;

SELECT * FROM finish();
ROLLBACK;
