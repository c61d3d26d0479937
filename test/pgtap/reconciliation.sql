-- pgTAP: reconciliation. Inventory, orders and postings against ERP
-- snapshots: every kind of discrepancy with its remediation, as of the
-- snapshot's time, tolerances and units; runs that find the same
-- discrepancy again do not duplicate it and resolve what is gone; stale
-- snapshots; remediations through the outbox; bad snapshots refused whole.
BEGIN;
SELECT * FROM no_plan();

SET LOCAL plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('R1', 'Reconciled plant');
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('R1', 'WH', 'Store'), ('R1', 'QA', 'Quality');
INSERT INTO plantsync.equipment (site_id, equipment_code, name, equipment_level) VALUES ('R1', 'WC', 'Work center', 'WorkCenter');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http) VALUES ('r-erp', 'erp', 'http://127.0.0.1:9/erp', true);
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('r-moves', 'material_movement.*', 'r-erp');
SET LOCAL plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) VALUES ('R1', 'RM', 'Raw', 'KG'), ('R1', 'FG', 'Finished', 'KG');
SET LOCAL plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
SELECT 'R1', m.id, 'L-' || g, 'unrestricted' FROM plantsync.material m, generate_series(1, 7) g WHERE m.site_id = 'R1' AND m.material_number = 'RM';
CREATE TEMP VIEW r1 AS
SELECT (SELECT id FROM plantsync.material WHERE site_id = 'R1' AND material_number = 'RM') AS rm,
       (SELECT id FROM plantsync.storage_location WHERE site_id = 'R1' AND location_code = 'WH') AS wh;
CREATE FUNCTION pg_temp.receive(p_lot text, p_qty numeric, p_uom text, p_ext text, p_at timestamptz) RETURNS void LANGUAGE sql AS $$
    INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id, posted_at)
    SELECT 'R1', 'goods_receipt', l.material_id, l.id, p_qty, p_uom, (SELECT wh FROM r1), 'mes', p_ext, p_at
      FROM plantsync.lot l WHERE l.site_id = 'R1' AND l.lot_number = p_lot $$;
SELECT pg_temp.receive(l, q, 'KG', 'R1-GR-' || l, now() - interval '2 hours')
  FROM (VALUES ('L-1', 100), ('L-2', 50), ('L-3', 30), ('L-4', 20), ('L-5', 10), ('L-6', 2), ('L-7', 100)) v (l, q);
-- after the snapshot's time: not counted
SELECT pg_temp.receive('L-1', 7, 'KG', 'R1-GR-L-1-late', now() - interval '10 minutes');
SET LOCAL plantsync.source_system = 'qms';
UPDATE plantsync.lot SET disposition = 'blocked' WHERE site_id = 'R1' AND lot_number = 'L-5';
-- L-3's receipt never reached the ERP: its delivery is dead
SELECT is((SELECT count(*) FROM plantsync.claim_deliveries('r-erp', 100)), 7::bigint, 'the receipts are claimed for the ERP (the late one of L-1 waits for the first)');
SELECT is((SELECT plantsync.settle_deliveries(array_agg(d.id), array_agg(d.created_at), array_agg(CASE WHEN ev.lot_number = 'L-3' THEN 'dead' ELSE 'delivered' END),
                                   array_agg(CASE WHEN ev.lot_number = 'L-3' THEN 400 ELSE 201 END), array_agg(CASE WHEN ev.lot_number = 'L-3' THEN 'HTTP 400: unknown batch' END),
                                   array_agg(NULL::timestamptz), array_agg(now()), array_agg(5), array_agg('{}'::text))
  FROM plantsync.delivery d JOIN plantsync.event ev ON ev.id = d.event_id WHERE d.endpoint_id = 'r-erp' AND d.status = 'in_flight'), 7,
  'and settled');
SELECT is((SELECT count(*) FROM plantsync.delivery WHERE endpoint_id = 'r-erp' AND status = 'dead'), 1::bigint, 'one receipt is a dead letter');

-- ---------- inventory ----------
SELECT lives_ok($$SELECT plantsync.load_erp_snapshot('R1', 'inventory', now() - interval '1 hour', '[
    {"material": "RM", "lot": "L-1", "location": "WH", "quantity": 100, "uom": "KG"},
    {"material": "RM", "lot": "L-2", "location": "WH", "quantity": 45, "uom": "KG"},
    {"material": "RM", "lot": "L-4", "location": "WH", "quantity": 20, "uom": "KG"},
    {"material": "RM", "lot": "L-4", "location": "QA", "quantity": 5, "uom": "KG", "stock_type": "quality"},
    {"material": "RM", "lot": "L-5", "location": "WH", "quantity": 10, "uom": "KG", "stock_type": "unrestricted"},
    {"material": "RM", "lot": "L-6", "location": "WH", "quantity": 2000, "uom": "G"},
    {"material": "RM", "lot": "L-7", "location": "WH", "quantity": 100.05, "uom": "KG"},
    {"material": "RM", "lot": "L-9", "location": "WH", "quantity": 10, "uom": "KG"},
    {"material": "XX", "location": "WH", "quantity": 1, "uom": "EA"}]')$$, 'an inventory snapshot loads');
SELECT is((SELECT row_count FROM plantsync.erp_snapshot WHERE site_id = 'R1' AND kind = 'inventory'), 9, 'its rows are counted');
SELECT is((SELECT base_quantity FROM plantsync.erp_inventory i JOIN plantsync.erp_snapshot s ON s.id = i.snapshot_id
            WHERE s.site_id = 'R1' AND i.lot_number = 'L-6'), 2.000::numeric, 'ERP quantities are converted to the base unit');

CREATE TEMP TABLE run1 AS SELECT plantsync.reconcile_inventory('R1') AS id;
SELECT results_eq($$SELECT kind, subject_key, remediation, plant_quantity, erp_quantity FROM plantsync.discrepancy
                     WHERE run_id = (SELECT id FROM run1) ORDER BY subject_key, kind$$,
                  $$VALUES ('quantity_mismatch', 'RM/L-2/WH', 'post_correction', 50::numeric, 45::numeric),
                           ('missing_in_erp', 'RM/L-3/WH', 'replay_delivery', 30, NULL),
                           ('missing_in_plant', 'RM/L-4/QA', 'ask_person', NULL, 5),
                           ('status_mismatch', 'RM/L-5/WH', 'post_correction', 10, 10),
                           ('quantity_mismatch', 'RM/L-7/WH', 'post_correction', 100, 100.05),
                           ('missing_in_plant', 'RM/L-9/WH', 'ask_person', NULL, 10),
                           ('missing_in_plant', 'XX/WH', 'ask_person', NULL, NULL)$$,
                  'every difference classified, with its remediation; the late receipt and the unit conversion cause none');
SELECT is((SELECT plant_status || ' / ' || erp_status FROM plantsync.discrepancy WHERE subject_key = 'RM/L-5/WH'), 'blocked / unrestricted',
          'a hold that did not reach the ERP is a status mismatch');
SELECT is((SELECT jsonb_array_length(detail -> 'dead_deliveries') FROM plantsync.discrepancy WHERE subject_key = 'RM/L-3/WH'), 1,
          'the missing stock names the dead delivery that explains it');
SELECT is((SELECT detail ->> 'unknown' FROM plantsync.discrepancy WHERE subject_key = 'RM/L-9/WH'), 'lot', 'an unknown lot is named as such');
SELECT results_eq($$SELECT compared, matched, discrepancies, accuracy_percent FROM plantsync.reconciliation_kpi WHERE run_id = (SELECT id FROM run1)$$,
                  $$VALUES (10, 3, 7, 30.00)$$, 'the run: 10 keys compared, 3 matched, 7 discrepancies, 30 % accuracy');
SELECT is((SELECT count(*) FROM plantsync.event WHERE type = 'discrepancy.open' AND site_id = 'R1'), 7::bigint,
          'each discrepancy is an event in the outbox');

-- a tolerance of 0.1 KG absorbs L-7; running again does not duplicate
SET LOCAL plantsync.source_system = 'hub';
INSERT INTO plantsync.reconciliation_tolerance (uom, absolute) VALUES ('KG', 0.1);
CREATE TEMP TABLE run2 AS SELECT plantsync.reconcile_inventory('R1') AS id;
SELECT results_eq($$SELECT discrepancies, resolved_since FROM plantsync.reconciliation_run WHERE id = (SELECT id FROM run2)$$,
                  $$VALUES (6, 1)$$, 'the second run finds 6 again and no longer finds the one within tolerance');
SELECT is((SELECT count(*) FROM plantsync.discrepancy WHERE site_id = 'R1'), 7::bigint, 'nothing found twice is recorded twice');
SELECT is((SELECT status || ': ' || resolution FROM plantsync.discrepancy WHERE subject_key = 'RM/L-7/WH'),
          'resolved: no longer found by run ' || (SELECT id FROM run2), 'the one no longer found is resolved by the run');

-- remediations
SELECT throws_ok($$SELECT plantsync.apply_remediation((SELECT id FROM plantsync.discrepancy WHERE subject_key = 'RM/L-3/WH'), '')$$,
                 '22023', 'a reason is required', 'a remediation needs a reason');
SELECT is(plantsync.apply_remediation((SELECT id FROM plantsync.discrepancy WHERE subject_key = 'RM/L-3/WH'), 'ERP batch created, INC-7'),
          'replay_delivery', 'the suggested remediation is applied');
SELECT is((SELECT count(*) FROM plantsync.delivery WHERE replay_of IS NOT NULL AND endpoint_id = 'r-erp' AND status = 'pending'), 1::bigint,
          'replaying puts a new delivery in the outbox');
SELECT results_eq($$SELECT status, remediation_note FROM plantsync.discrepancy WHERE subject_key = 'RM/L-3/WH'$$,
                  $$VALUES ('remediating', 'ERP batch created, INC-7')$$, 'the discrepancy is being remediated, with the reason');
SELECT is((SELECT count(*) FROM plantsync.event WHERE type = 'discrepancy.remediating' AND site_id = 'R1'), 1::bigint,
          'the remediation is an event too');
SELECT is(plantsync.apply_remediation((SELECT id FROM plantsync.discrepancy WHERE subject_key = 'RM/L-5/WH'), 'post 344 in the ERP'),
          'post_correction', 'a correction is posted through the outbox (discrepancy.remediating carries it)');
SELECT throws_ok($$SELECT plantsync.apply_remediation((SELECT id FROM plantsync.discrepancy WHERE subject_key = 'RM/L-5/WH'), 'again')$$,
                 'PS001', 'discrepancy "RM/L-5/WH" is remediating, not open', 'a discrepancy is remediated once');
SELECT throws_ok($$SELECT plantsync.apply_remediation((SELECT id FROM plantsync.discrepancy WHERE subject_key = 'RM/L-9/WH'), 'x', 'replay_delivery')$$,
                 '22023', 'discrepancy "RM/L-9/WH" names no delivery to replay', 'nothing to replay is refused');
SELECT throws_ok($$SELECT plantsync.apply_remediation((SELECT id FROM plantsync.discrepancy WHERE subject_key = 'RM/L-9/WH'), 'x', 'pray')$$,
                 '22023', 'remediation "pray" is not valid', 'an unknown remediation is refused');
SELECT throws_ok($$SELECT plantsync.apply_remediation('01900000-0000-7000-8000-000000000000', 'x')$$,
                 'P0002', 'discrepancy "01900000-0000-7000-8000-000000000000" does not exist', 'an unknown discrepancy is refused');
SELECT lives_ok($$SELECT plantsync.resolve_discrepancy((SELECT id FROM plantsync.discrepancy WHERE subject_key = 'XX/WH'), 'not a plant material', true)$$,
                'a discrepancy can be accepted as is');
SELECT throws_ok($$SELECT plantsync.resolve_discrepancy((SELECT id FROM plantsync.discrepancy WHERE subject_key = 'XX/WH'), 'twice')$$,
                 'PS001', NULL, 'an ignored discrepancy stays ignored');

-- the ERP catches up: the next run resolves what is gone
SELECT isnt(plantsync.load_erp_snapshot('R1', 'inventory', now() - interval '30 minutes', '[
    {"material": "RM", "lot": "L-1", "location": "WH", "quantity": 100, "uom": "KG"},
    {"material": "RM", "lot": "L-2", "location": "WH", "quantity": 50, "uom": "KG"},
    {"material": "RM", "lot": "L-3", "location": "WH", "quantity": 30, "uom": "KG"},
    {"material": "RM", "lot": "L-4", "location": "WH", "quantity": 20, "uom": "KG"},
    {"material": "RM", "lot": "L-5", "location": "WH", "quantity": 10, "uom": "KG", "stock_type": "blocked"},
    {"material": "RM", "lot": "L-6", "location": "WH", "quantity": 2, "uom": "KG"},
    {"material": "RM", "lot": "L-7", "location": "WH", "quantity": 100, "uom": "KG"}]'), NULL, 'a snapshot loads');
CREATE TEMP TABLE run3 AS SELECT plantsync.reconcile_inventory('R1') AS id;
SELECT results_eq($$SELECT compared, matched, discrepancies, resolved_since FROM plantsync.reconciliation_run WHERE id = (SELECT id FROM run3)$$,
                  $$VALUES (7, 7, 0, 5)$$, 'all agree: the five still open or remediating are resolved by the run');
SELECT results_eq($$SELECT open, resolved, ignored, manual_touches FROM plantsync.discrepancy_kpi WHERE site_id = 'R1' AND scope = 'inventory'$$,
                  $$VALUES (0::bigint, 6::bigint, 1::bigint, 2::bigint)$$, 'the KPIs: none open, 6 resolved, 1 ignored, 2 touched by people');

-- a snapshot too old is not compared, and resolves nothing
SET LOCAL plantsync.source_system = 'mes';
SELECT pg_temp.receive('L-2', 1, 'KG', 'R1-GR-L-2-extra', now() - interval '1 minute');
SELECT isnt(plantsync.load_erp_snapshot('R1', 'inventory', now() - interval '2 days', '[]'), NULL, 'a snapshot loads');
CREATE TEMP TABLE run4 AS SELECT plantsync.reconcile_inventory('R1') AS id;
SELECT results_eq($$SELECT outcome, discrepancies FROM plantsync.reconciliation_run WHERE id = (SELECT id FROM run4)$$,
                  $$VALUES ('compared', 0)$$, 'the latest snapshot by time taken is used, and a receipt after that time is no difference');
CREATE TEMP TABLE run5 AS SELECT plantsync.reconcile_inventory('R1', (SELECT id FROM plantsync.erp_snapshot WHERE site_id = 'R1' AND row_count = 0), '1 day') AS id;
SELECT results_eq($$SELECT outcome, compared, discrepancies, resolved_since FROM plantsync.reconciliation_run WHERE id = (SELECT id FROM run5)$$,
                  $$VALUES ('stale_snapshot', 0, 1, 0)$$, 'a two-day-old snapshot: not compared, one stale_snapshot discrepancy, nothing resolved');
SELECT is((SELECT remediation FROM plantsync.discrepancy WHERE run_id = (SELECT id FROM run5)), 'reload_snapshot', 'the remedy is a new snapshot');

-- ---------- orders ----------
SET LOCAL plantsync.source_system = 'erp';
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date, created_at)
SELECT 'R1', o, (SELECT id FROM plantsync.material WHERE site_id = 'R1' AND material_number = 'FG'), q, 'KG', 'released', '2027-01-01', now() - interval '3 hours'
  FROM (VALUES ('O-1', 100), ('O-2', 50), ('O-4', 10), ('O-5', 10)) v (o, q);
INSERT INTO plantsync.production_operation (site_id, order_id, operation_number, work_center_id, process_segment, planned_quantity)
SELECT 'R1', o.id, op, (SELECT id FROM plantsync.equipment WHERE site_id = 'R1'), 'MIX', 50
  FROM plantsync.production_order o, (VALUES ('0010'), ('0020')) v (op) WHERE o.order_number = 'O-2' AND o.site_id = 'R1';
SET LOCAL plantsync.source_system = 'mes';
UPDATE plantsync.production_order SET status = 'in_progress' WHERE site_id = 'R1' AND order_number IN ('O-2', 'O-5');
INSERT INTO plantsync.production_confirmation (site_id, order_id, operation_id, yield_quantity, uom, source_system, external_id, confirmed_at)
SELECT 'R1', op.order_id, op.id, CASE op.operation_number WHEN '0010' THEN 25 ELSE 20 END, 'KG', 'mes', 'R1-CF-' || op.operation_number, now() - interval '2 hours'
  FROM plantsync.production_operation op WHERE op.site_id = 'R1';
UPDATE plantsync.production_order SET status = 'completed' WHERE site_id = 'R1' AND order_number = 'O-5';
SELECT isnt(plantsync.load_erp_snapshot('R1', 'orders', now() - interval '1 hour', '[
    {"order": "O-1", "status": "released", "quantity": 100000, "uom": "G"},
    {"order": "O-2", "status": "in_progress", "quantity": 50, "confirmed_quantity": 15, "uom": "KG"},
    {"order": "O-3", "status": "released", "quantity": 30, "uom": "KG"},
    {"order": "O-6", "status": "cancelled", "quantity": 30, "uom": "KG"},
    {"order": "O-5", "status": "in_progress", "quantity": 10, "uom": "KG"}]'), NULL, 'a snapshot loads');
CREATE TEMP TABLE orun AS SELECT plantsync.reconcile_orders('R1') AS id;
SELECT results_eq($$SELECT kind, subject_key, remediation, plant_quantity, erp_quantity, plant_status, erp_status FROM plantsync.discrepancy
                     WHERE run_id = (SELECT id FROM orun) ORDER BY subject_key$$,
                  $$VALUES ('quantity_mismatch', 'O-2', 'post_correction', 20::numeric, 15::numeric, 'in_progress', 'in_progress'),
                           ('missing_in_plant', 'O-3', 'ask_person', NULL, 30, NULL, 'released'),
                           ('missing_in_erp', 'O-4', 'ask_person', 10, NULL, 'released', NULL),
                           ('status_mismatch', 'O-5', 'ask_person', 10, 10, 'completed', 'in_progress')$$,
                  'orders: confirmed yield of the last operation, a release that never arrived, an order the ERP lacks, a status (O-1 in grams agrees)');
SELECT results_eq($$SELECT compared, matched FROM plantsync.reconciliation_run WHERE id = (SELECT id FROM orun)$$,
                  $$VALUES (6, 2)$$, 'six orders compared (the cancelled ERP order counts as agreeing), two agree');
-- a unit that does not convert is a difference, not a failed run
SELECT isnt(plantsync.load_erp_snapshot('R1', 'orders', now() - interval '50 minutes', '[
    {"order": "O-1", "status": "released", "quantity": 100, "uom": "EA"}]'), NULL, 'a snapshot with O-1 in EA');
CREATE TEMP TABLE orun2 AS SELECT plantsync.reconcile_orders('R1') AS id;
SELECT results_eq($$SELECT kind, plant_quantity, erp_quantity, uom, detail ->> 'problem' FROM plantsync.discrepancy
                     WHERE site_id = 'R1' AND scope = 'orders' AND subject_key = 'O-1' AND status = 'open'$$,
                  $$VALUES ('quantity_mismatch', 100::numeric, NULL::numeric, 'KG', 'the ERP''s unit EA does not convert to KG')$$,
                  'O-1 in EA: a quantity mismatch saying the units do not convert');

-- ---------- postings ----------
SELECT isnt(plantsync.load_erp_snapshot('R1', 'postings', now() - interval '1 hour', '[
    {"reference": "R1-GR-L-1", "document": "4900000001"},
    {"reference": "R1-GR-L-2", "document": "4900000002"},
    {"reference": "R1-GR-L-4", "document": "4900000004"},
    {"reference": "R1-GR-L-5", "document": "4900000005"},
    {"reference": "R1-GR-L-6", "document": "4900000006"}]'), NULL, 'a snapshot loads');
CREATE TEMP TABLE prun AS SELECT plantsync.reconcile_postings('R1') AS id;
SELECT results_eq($$SELECT kind, subject_key, plant_status, remediation FROM plantsync.discrepancy WHERE run_id = (SELECT id FROM prun) ORDER BY subject_key$$,
                  $$VALUES ('posting_not_acknowledged', 'R1-GR-L-7', 'delivered', 'replay_delivery')$$,
                  'postings: the delivered movement the ERP never posted (L-3''s dead letter, replayed by the stock remediation above, is on its way again)');
SELECT is((SELECT compared FROM plantsync.reconciliation_run WHERE id = (SELECT id FROM prun)), 7,
          'movements still on their way (the late receipts, the replay) are not counted against the ERP');
-- the replay is refused too: now L-3's movement is a dead letter again, and reported
SELECT is((SELECT plantsync.settle_deliveries(array_agg(c.delivery_id), array_agg(c.created_at), array_agg('dead'::text), array_agg(400),
                                              array_agg('HTTP 400: unknown batch'::text), array_agg(NULL::timestamptz), array_agg(now()),
                                              array_agg(5), array_agg('{}'::text))
             FROM plantsync.claim_deliveries('r-erp', 100) c WHERE c.lot_number = 'L-3'), 1, 'L-3''s replay is refused again');
SELECT lives_ok($$SELECT plantsync.reconcile_postings('R1')$$, 'postings are reconciled again');
SELECT results_eq($$SELECT subject_key, plant_status, remediation FROM plantsync.discrepancy
                     WHERE site_id = 'R1' AND kind = 'posting_not_acknowledged' AND status = 'open' ORDER BY subject_key$$,
                  $$VALUES ('R1-GR-L-3', 'dead', 'replay_delivery'), ('R1-GR-L-7', 'delivered', 'replay_delivery')$$,
                  'the dead replay is reported (once), beside the movement still not posted');

-- all at once, as pg_cron runs it
SELECT results_eq($$SELECT kind FROM plantsync.reconcile('R1') ORDER BY 1$$, $$VALUES ('inventory'), ('orders'), ('postings')$$,
                  'plantsync.reconcile runs every kind that has a snapshot');

-- ---------- bad snapshots and calls ----------
SELECT throws_ok($$SELECT plantsync.load_erp_snapshot('R1', 'inventory', now(), '[{"material": "RM", "location": "WH", "quantity": 1, "uom": "KG"},
                                                                                 {"material": "RM", "location": "WH", "uom": "KG"}]')$$,
                 '22023', 'inventory row 2 is not valid: {"uom": "KG", "location": "WH", "material": "RM"}', 'a row without quantity is refused, by number');
SELECT throws_ok($$SELECT plantsync.load_erp_snapshot('R1', 'inventory', now(), '[{"material": "RM", "location": "WH", "quantity": "7", "uom": "KG"}]')$$,
                 '22023', NULL, 'a quantity that is not a number is refused');
SELECT throws_ok($$SELECT plantsync.load_erp_snapshot('R1', 'inventory', now(), '[{"material": "RM", "location": "WH", "quantity": 7, "uom": "KG", "stock_type": "free"}]')$$,
                 '22023', NULL, 'an unknown stock type is refused');
SELECT throws_ok($$SELECT plantsync.load_erp_snapshot('R1', 'stock', now(), '[]')$$, '22023', 'snapshot kind "stock" is not valid', 'an unknown kind is refused');
SELECT throws_ok($$SELECT plantsync.load_erp_snapshot('R9', 'inventory', now(), '[]')$$, '23503', 'site "R9" does not exist', 'an unknown site is refused');
SELECT throws_ok($$SELECT plantsync.load_erp_snapshot('R1', 'orders', now(), '{"order": "O-1"}')$$, '22023', 'p_rows must be a JSON array of rows, not object', 'rows must be an array');
SELECT throws_ok($$SELECT plantsync.load_erp_snapshot('R1', 'orders', now() + interval '1 day', '[]')$$, '22023', NULL, 'a snapshot from the future is refused');
SELECT throws_ok($$SELECT plantsync.load_erp_snapshot('R1', 'orders', now(), '[{"order": "O-1", "status": "released", "quantity": 1}]')$$,
                 '22023', NULL, 'an order row without unit is refused');
SELECT is((SELECT count(*) FROM plantsync.erp_snapshot WHERE site_id = 'R1'), 6::bigint, 'a refused snapshot leaves nothing behind (six loaded above)');
SELECT throws_ok($$SELECT plantsync.reconcile_orders('T9')$$, 'P0002', 'no orders snapshot of site "T9"', 'no snapshot, no run');
SELECT throws_ok($$SELECT plantsync.reconcile_inventory('R1', (SELECT id FROM plantsync.erp_snapshot WHERE kind = 'orders' LIMIT 1))$$,
                 '22023', NULL, 'a snapshot of another kind is refused');
SELECT throws_ok($$SELECT plantsync.reconcile_inventory('R1', NULL, '-1 day')$$, '22023', 'p_max_age must be positive, not -1 days', 'a negative age is refused');
SELECT throws_ok($$SELECT * FROM plantsync.schedule_reconciliation('R1')$$, '42704', NULL, 'without pg_cron in this database, scheduling says so');
SELECT throws_ok($$SET LOCAL plantsync.source_system = 'erp'; UPDATE plantsync.discrepancy SET erp_status = 'x' WHERE status = 'open'$$, 'PS003', NULL,
                 'only the hub changes discrepancies');

-- ---------- the stock balance the inventory reconciliation reads ----------
CREATE TEMP VIEW ledger_stock AS
SELECT legs.site_id, legs.material_id, legs.lot_id, legs.location_id, sum(legs.q) AS q
  FROM (SELECT site_id, material_id, lot_id, to_location_id AS location_id, base_quantity AS q FROM plantsync.material_movement WHERE to_location_id IS NOT NULL
        UNION ALL
        SELECT site_id, material_id, lot_id, from_location_id, -base_quantity FROM plantsync.material_movement WHERE from_location_id IS NOT NULL) legs
 GROUP BY 1, 2, 3, 4 HAVING sum(legs.q) <> 0;
SET LOCAL plantsync.source_system = 'erp';
-- every kind of leg: a transfer, a consumption and its reversal, a status change in place, scrap, two movements in one statement
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
SELECT 'R1', 'R1-PO', m.id, 1, 'KG', 'released', '2027-01-01' FROM plantsync.material m WHERE m.site_id = 'R1' AND m.material_number = 'FG';
SET LOCAL plantsync.source_system = 'mes';
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, to_location_id,
                                         from_stock_type, to_stock_type, order_id, source_system, external_id)
SELECT 'R1', v.t, l.material_id, l.id, v.q, 'KG', f.id, t.id, v.fs, v.ts, CASE WHEN v.t = 'consumption' THEN o.id END, 'mes', v.ext
  FROM (VALUES ('transfer', 'L-1', 30, 'WH', 'QA', NULL, NULL, 'R1-TR-1'), ('consumption', 'L-2', 10, 'WH', NULL, NULL, NULL, 'R1-CO-1'),
               ('status_change', 'L-7', 100, 'WH', 'WH', 'unrestricted', 'blocked', 'R1-SC-1'), ('scrap', 'L-4', 20, 'WH', NULL, NULL, NULL, 'R1-SCRAP-1'))
       v (t, lot, q, fl, tl, fs, ts, ext)
  JOIN plantsync.lot l ON l.site_id = 'R1' AND l.lot_number = v.lot
  JOIN plantsync.production_order o ON o.order_number = 'R1-PO'
  LEFT JOIN plantsync.storage_location f ON f.site_id = 'R1' AND f.location_code = v.fl
  LEFT JOIN plantsync.storage_location t ON t.site_id = 'R1' AND t.location_code = v.tl;
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, reverses_movement_id, source_system, external_id)
SELECT 'R1', 'reversal', m.material_id, m.lot_id, m.quantity, m.uom, m.id, 'mes', 'R1-REV-1' FROM plantsync.material_movement m WHERE m.external_id = 'R1-CO-1';
SELECT set_eq($$SELECT site_id, material_id, lot_id, storage_location_id, base_quantity FROM plantsync.stock_balance WHERE base_quantity <> 0$$,
              $$SELECT * FROM ledger_stock$$,
              'the stock balance is what the ledger sums to, after transfers, consumptions, reversals, status changes and scrap');
SELECT is((SELECT base_quantity FROM plantsync.stock_balance b JOIN plantsync.lot l ON l.id = b.lot_id JOIN plantsync.storage_location s ON s.id = b.storage_location_id
            WHERE l.lot_number = 'L-4' AND s.location_code = 'WH'), 0::numeric, 'stock that left is kept as zero, not forgotten');
SELECT is(plantsync.rebuild_stock_balance('R1'), (SELECT count(*) FROM ledger_stock WHERE site_id = 'R1'), 'the balance can be rebuilt from the ledger');
SELECT set_eq($$SELECT site_id, material_id, lot_id, storage_location_id, base_quantity FROM plantsync.stock_balance$$,
              $$SELECT * FROM ledger_stock$$, 'and the rebuilt balance is the same');
SELECT throws_ok($$SELECT plantsync.rebuild_stock_balance('R9')$$, '23503', 'site "R9" does not exist', 'rebuilding an unknown site is refused');
SELECT ok(NOT has_function_privilege('public', 'plantsync.rebuild_stock_balance(text)', 'EXECUTE'), 'only administrators rebuild the balance');
-- a snapshot taken before the transfer: L-1 still all in WH then, whatever the balance says now
SELECT lives_ok($$SELECT plantsync.load_erp_snapshot('R1', 'inventory', now() - interval '1 hour', '[
    {"material": "RM", "lot": "L-1", "location": "WH", "quantity": 100, "uom": "KG"}]')$$, 'a snapshot from before the transfer');
CREATE TEMP TABLE run9 AS SELECT plantsync.reconcile_inventory('R1', (SELECT id FROM plantsync.erp_snapshot WHERE site_id = 'R1' AND kind = 'inventory'
                                                                      ORDER BY received_at DESC LIMIT 1)) AS id;
SELECT is((SELECT count(*) FROM plantsync.discrepancy WHERE run_id = (SELECT id FROM run9) AND subject_key LIKE 'RM/L-1/%'), 0::bigint,
          'movements after the snapshot''s time are taken back out of the balance: L-1 matches where it was then');

-- a remediation that did not work: open again, once a snapshot taken after it still shows the difference
SELECT lives_ok($$SELECT plantsync.load_erp_snapshot('R1', 'inventory', now() - interval '10 minutes', '[
    {"material": "RM", "lot": "L-1", "location": "WH", "quantity": 999, "uom": "KG"}]')$$, 'a snapshot where the ERP has 999 kg of L-1 in WH');
CREATE TEMP TABLE run10 AS SELECT plantsync.reconcile_inventory('R1') AS id;
CREATE TEMP TABLE l1 AS SELECT id FROM plantsync.discrepancy WHERE site_id = 'R1' AND scope = 'inventory' AND subject_key = 'RM/L-1/WH' AND status = 'open';
SELECT is((SELECT count(*) FROM l1), 1::bigint, 'a discrepancy for L-1 in WH');
SELECT is(plantsync.apply_remediation((SELECT id FROM l1), 'count it, INC-9', 'ask_person'), 'ask_person', 'someone is asked to count it');
SELECT lives_ok($$SELECT plantsync.reconcile_inventory('R1', (SELECT snapshot_id FROM plantsync.reconciliation_run WHERE id = (SELECT id FROM run10)))$$,
                'a run on the snapshot from before the remediation');
SELECT is((SELECT status FROM plantsync.discrepancy WHERE id = (SELECT id FROM l1)), 'remediating', 'cannot tell whether it worked: still remediating');
SELECT lives_ok($$SELECT plantsync.load_erp_snapshot('R1', 'inventory', now(), '[
    {"material": "RM", "lot": "L-1", "location": "WH", "quantity": 999, "uom": "KG"}]')$$, 'a snapshot taken after it, still 999 kg');
CREATE TEMP TABLE run11 AS SELECT plantsync.reconcile_inventory('R1') AS id;
SELECT is((SELECT status FROM plantsync.discrepancy WHERE id = (SELECT id FROM l1)), 'open',
          'the remediation did not work: open again, so it can be remediated again');
SELECT is((SELECT reason FROM plantsync.state_change WHERE entity = 'discrepancy' AND entity_id = (SELECT id FROM l1) AND to_state = 'open' AND from_state = 'remediating'),
          'still found by run ' || (SELECT id FROM run11) || ' after the remediation', 'the history says why');

SELECT * FROM finish();
ROLLBACK;
