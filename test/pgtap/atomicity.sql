-- pgTAP: a refused statement leaves nothing behind: no rows, no history,
-- no override record; a rolled-back savepoint takes its history with it.
BEGIN;
SELECT * FROM no_plan();
\ir fixtures/plant.sql

CREATE TEMP TABLE counts AS
SELECT (SELECT count(*) FROM plantsync.production_order) AS orders,
       (SELECT count(*) FROM plantsync.state_change) AS history,
       (SELECT count(*) FROM plantsync.ownership_override) AS overrides,
       (SELECT count(*) FROM plantsync.material_movement) AS movements;

SET LOCAL plantsync.source_system = 'erp';
SELECT throws_ok($$INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, due_date)
                   SELECT 'T100', 'O-' || g, id, CASE WHEN g = 3 THEN -1 ELSE 5 END, 'EA', '2027-01-01'
                     FROM plantsync.material, generate_series(1, 3) g
                    WHERE site_id = 'T100' AND material_number = 'FG' AND g > 1$$,
                 '23514', NULL, 'a multi-row insert with one bad row fails');
SELECT throws_ok($$INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
                   SELECT 'T100', 'O-' || g, id, 5, 'EA', CASE WHEN g = 3 THEN 'completed' ELSE 'draft' END, '2027-01-01'
                     FROM plantsync.material, generate_series(2, 3) g
                    WHERE site_id = 'T100' AND material_number = 'FG'$$,
                 'PS002', NULL, 'a multi-row insert with one bad state fails');
SET LOCAL plantsync.source_system = 'mes';
SELECT throws_ok($$UPDATE plantsync.production_order SET status = 'in_progress' WHERE order_number = 'O-1'$$,
                 'PS001', NULL, 'draft -> in_progress is refused');
SELECT throws_ok($$SELECT plantsync.override_ownership('test'); UPDATE plantsync.production_order SET quantity = -1 WHERE order_number = 'O-1'$$,
                 '23514', NULL, 'an overridden write that fails a check fails');
SELECT throws_ok($$INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id)
                   SELECT 'T100', 'goods_receipt', m.id, NULL, 1, 'KG', s.id, 'mes', 'X-1'
                     FROM plantsync.material m, plantsync.storage_location s
                    WHERE m.material_number = 'RM' AND s.location_code = 'L1'$$,
                 '23502', NULL, 'a movement of a lot-tracked material without its lot fails');
SELECT throws_ok($$INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, quantity, uom, to_location_id, source_system, external_id)
                   SELECT 'T100', 'goods_receipt', plantsync.uuid_v7(), 1, 'EA', s.id, 'mes', 'X-2'
                     FROM plantsync.storage_location s WHERE s.location_code = 'L1'$$,
                 '23503', NULL, 'a movement of an unknown material fails with a foreign key violation');

SELECT results_eq($$SELECT (SELECT count(*) FROM plantsync.production_order), (SELECT count(*) FROM plantsync.state_change),
                           (SELECT count(*) FROM plantsync.ownership_override), (SELECT count(*) FROM plantsync.material_movement)$$,
                  $$SELECT orders, history, overrides, movements FROM counts$$,
                  'nothing was left behind by the refused statements');

-- Savepoints: a rolled-back state change takes its history along.
SAVEPOINT before_release;
SET LOCAL plantsync.source_system = 'erp';
UPDATE plantsync.production_order SET status = 'released' WHERE order_number = 'O-1';
SELECT is((SELECT count(*) FROM plantsync.state_change WHERE entity_key = 'O-1' AND to_state = 'released'), 1::bigint,
          'the release is recorded inside the savepoint');
ROLLBACK TO SAVEPOINT before_release;
SELECT is((SELECT count(*) FROM plantsync.state_change WHERE entity_key = 'O-1' AND to_state = 'released'), 0::bigint,
          'the rolled-back release left no record');
SELECT is((SELECT status FROM plantsync.production_order WHERE order_number = 'O-1'), 'draft', 'the order is still a draft');

SELECT * FROM finish();
ROLLBACK;
