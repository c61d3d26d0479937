-- The plantsync demo: a syrup plant, one production order from ERP release
-- to quality release, with every refusal plantsync makes along the way.
-- Played by test/demo/run.sh; the output is the demo.
\set QUIET on
\pset footer off
\set SHOW_CONTEXT never

\echo
\echo '== 1. Install: CREATE EXTENSION plantsync'
CREATE EXTENSION plantsync;
SELECT extname AS extension, extversion AS version,
       (SELECT count(*) FROM pg_class WHERE relnamespace = 'plantsync'::regnamespace AND relkind = 'r') AS tables
  FROM pg_extension WHERE extname = 'plantsync';

\echo
\echo '== 2. The plant (written by the hub: plant configuration is the hub''s)'
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name, enterprise, time_zone, erp_plant_code)
VALUES ('P100', 'Syrup plant', 'ACME', 'Europe/Berlin', '1000');
INSERT INTO plantsync.equipment (site_id, equipment_code, name, equipment_level) VALUES ('P100', 'AREA-1', 'Liquids', 'Area');
INSERT INTO plantsync.equipment (site_id, equipment_code, name, equipment_level, parent_id)
SELECT 'P100', 'LINE-1', 'Filling line 1', 'ProductionLine', id FROM plantsync.equipment WHERE equipment_code = 'AREA-1';
INSERT INTO plantsync.equipment (site_id, equipment_code, name, equipment_level, parent_id)
SELECT 'P100', c.code, c.name, 'WorkCenter', e.id FROM plantsync.equipment e,
       (VALUES ('WC-MIX', 'Mixer'), ('WC-FILL', 'Filler')) AS c(code, name) WHERE e.equipment_code = 'LINE-1';
INSERT INTO plantsync.storage_location (site_id, location_code, name, is_quarantine) VALUES
    ('P100', 'RM01', 'Raw materials', false), ('P100', 'FG01', 'Finished goods', false), ('P100', 'QI01', 'Quarantine', true);
WITH RECURSIVE tree AS (
    SELECT id, equipment_code, name, equipment_level, 0 AS depth FROM plantsync.equipment WHERE parent_id IS NULL
    UNION ALL
    SELECT e.id, e.equipment_code, e.name, e.equipment_level, t.depth + 1 FROM plantsync.equipment e JOIN tree t ON e.parent_id = t.id)
SELECT repeat('  ', depth) || equipment_code AS equipment, equipment_level, name FROM tree ORDER BY depth, equipment_code;

\echo
\echo '== 3. ERP master data: materials, BOM, routing (ERP owns them)'
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, material_type, base_uom, lot_tracked) VALUES
    ('P100', 'RM-SUGAR', 'Sugar', 'raw', 'KG', true),
    ('P100', 'RM-WATER', 'Purified water', 'raw', 'L', true),
    ('P100', 'PK-BOTTLE', 'Bottle 1 l', 'packaging', 'EA', false),
    ('P100', 'FG-SYRUP', 'Syrup 1 l', 'finished', 'EA', true);
INSERT INTO plantsync.bom (site_id, material_id, base_quantity, base_uom)
SELECT 'P100', id, 1, 'EA' FROM plantsync.material WHERE material_number = 'FG-SYRUP';
INSERT INTO plantsync.bom_item (site_id, bom_id, item_number, component_material_id, quantity, uom)
SELECT 'P100', b.id, i.item, m.id, i.qty, i.uom
  FROM plantsync.bom b, plantsync.material m,
       (VALUES ('0010', 'RM-SUGAR', 500, 'G'), ('0020', 'RM-WATER', 0.75, 'L'), ('0030', 'PK-BOTTLE', 1, 'EA')) AS i(item, mat, qty, uom)
 WHERE m.material_number = i.mat;
INSERT INTO plantsync.routing (site_id, material_id, description)
SELECT 'P100', id, 'Mix and fill' FROM plantsync.material WHERE material_number = 'FG-SYRUP';
INSERT INTO plantsync.routing_operation (site_id, routing_id, operation_number, process_segment, work_center_id, run_minutes_per_unit)
SELECT 'P100', r.id, o.num, o.seg, e.id, 0.1 FROM plantsync.routing r, plantsync.equipment e,
       (VALUES ('0010', 'MIX', 'WC-MIX'), ('0020', 'FILL', 'WC-FILL')) AS o(num, seg, wc) WHERE e.equipment_code = o.wc;
SELECT m.material_number AS component, bi.quantity, bi.uom, cm.base_uom AS base_unit,
       plantsync.to_base_quantity(cm.id, bi.quantity, bi.uom) AS per_bottle_in_base_unit
  FROM plantsync.bom_item bi JOIN plantsync.material cm ON cm.id = bi.component_material_id
  JOIN plantsync.material m ON m.id = bi.component_material_id ORDER BY bi.item_number;

\echo
\echo '== 4. ERP releases production order PO-1001 (1000 bottles) with its two operations'
INSERT INTO plantsync.production_order (site_id, order_number, material_id, bom_id, routing_id, line_id, quantity, uom, status, due_date, erp_ref)
SELECT 'P100', 'PO-1001', m.id, b.id, r.id, l.id, 1000, 'EA', 'released', '2026-12-15', '4711'
  FROM plantsync.material m, plantsync.bom b, plantsync.routing r, plantsync.equipment l
 WHERE m.material_number = 'FG-SYRUP' AND l.equipment_code = 'LINE-1';
INSERT INTO plantsync.production_operation (site_id, order_id, operation_number, routing_operation_id, work_center_id, process_segment, status, planned_quantity)
SELECT 'P100', o.id, ro.operation_number, ro.id, ro.work_center_id, ro.process_segment,
       CASE ro.operation_number WHEN '0010' THEN 'ready' ELSE 'waiting' END, 1000
  FROM plantsync.production_order o, plantsync.routing_operation ro;
SELECT order_number, status, quantity, uom, due_date, erp_ref FROM plantsync.production_order;

\echo
\echo '== 5. Goods receipt of raw material lots (MES owns lots and the movement ledger)'
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition, supplier_lot)
SELECT 'P100', id, l.lot, l.disp, l.sup FROM plantsync.material m,
       (VALUES ('RM-SUGAR', 'S-001', 'unrestricted', 'SUP-77'), ('RM-SUGAR', 'S-002', 'restricted', 'SUP-78'),
               ('RM-WATER', 'W-001', 'unrestricted', NULL)) AS l(mat, lot, disp, sup)
 WHERE m.material_number = l.mat;
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id)
SELECT 'P100', 'goods_receipt', m.id, l.id, g.qty, g.uom, s.id, 'mes', g.ext
  FROM (VALUES ('RM-SUGAR', 'S-001', 800, 'KG', 'GR-1'), ('RM-SUGAR', 'S-002', 200, 'KG', 'GR-2'),
               ('RM-WATER', 'W-001', 1000, 'L', 'GR-3'), ('PK-BOTTLE', NULL, 2000, 'EA', 'GR-4')) AS g(mat, lot, qty, uom, ext)
  JOIN plantsync.material m ON m.material_number = g.mat
  LEFT JOIN plantsync.lot l ON l.lot_number = g.lot
  JOIN plantsync.storage_location s ON s.location_code = 'RM01';

\echo
\echo '== 6. MES starts the order and consumes material'
BEGIN;
SET LOCAL plantsync.change_reason = 'shift A, line 1';
UPDATE plantsync.production_order SET status = 'in_progress' WHERE order_number = 'PO-1001';
UPDATE plantsync.production_operation SET status = 'dispatched' WHERE operation_number = '0010';
UPDATE plantsync.production_operation SET status = 'running', actual_start = now() WHERE operation_number = '0010';
COMMIT;
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, order_id, source_system, external_id)
SELECT 'P100', 'consumption', m.id, l.id, c.qty, c.uom, s.id, o.id, 'mes', c.ext
  FROM (VALUES ('RM-SUGAR', 'S-001', 500000, 'G', 'C-1'), ('RM-WATER', 'W-001', 750, 'L', 'C-2'), ('PK-BOTTLE', NULL, 1000, 'EA', 'C-3')) AS c(mat, lot, qty, uom, ext)
  JOIN plantsync.material m ON m.material_number = c.mat
  LEFT JOIN plantsync.lot l ON l.lot_number = c.lot
  JOIN plantsync.storage_location s ON s.location_code = 'RM01'
  JOIN plantsync.production_order o ON o.order_number = 'PO-1001';

\echo
\echo '== 7. What plantsync refuses (each refusal changes nothing)'
\set ON_ERROR_STOP 0
\echo '-- MES tries to consume the restricted sugar lot S-002 (a quality hold, enforced in the database):'
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, order_id, source_system, external_id)
SELECT 'P100', 'consumption', m.id, l.id, 10, 'KG', s.id, o.id, 'mes', 'C-9'
  FROM plantsync.material m, plantsync.lot l, plantsync.storage_location s, plantsync.production_order o
 WHERE m.material_number = 'RM-SUGAR' AND l.lot_number = 'S-002' AND s.location_code = 'RM01' AND o.order_number = 'PO-1001';
\echo '-- MES tries to change the order quantity, which the ERP owns:'
UPDATE plantsync.production_order SET quantity = 1200 WHERE order_number = 'PO-1001';
\echo '-- MES tries to close the order straight from in_progress:'
UPDATE plantsync.production_order SET status = 'closed' WHERE order_number = 'PO-1001';
\echo '-- Someone tries to edit the movement ledger:'
UPDATE plantsync.material_movement SET quantity = 1 WHERE external_id = 'C-1';
\echo '-- MES reports water in kilograms, which do not convert to litres:'
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, order_id, source_system, external_id)
SELECT 'P100', 'consumption', m.id, l.id, 5, 'KG', s.id, o.id, 'mes', 'C-10'
  FROM plantsync.material m, plantsync.lot l, plantsync.storage_location s, plantsync.production_order o
 WHERE m.material_number = 'RM-WATER' AND l.lot_number = 'W-001' AND s.location_code = 'RM01' AND o.order_number = 'PO-1001';
\set ON_ERROR_STOP 1

\echo
\echo '== 8. MES completes: the produced lot enters restricted (quality inspection) stock'
BEGIN;
UPDATE plantsync.production_operation SET status = 'completed', actual_end = now() WHERE operation_number = '0010';
UPDATE plantsync.production_operation SET status = 'ready' WHERE operation_number = '0020';
UPDATE plantsync.production_operation SET status = 'dispatched' WHERE operation_number = '0020';
UPDATE plantsync.production_operation SET status = 'running' WHERE operation_number = '0020';
UPDATE plantsync.production_operation SET status = 'completed' WHERE operation_number = '0020';
INSERT INTO plantsync.production_confirmation (site_id, order_id, operation_id, yield_quantity, scrap_quantity, uom, labour_minutes, machine_minutes, is_final, source_system, external_id)
SELECT 'P100', o.id, op.id, 990, 10, 'EA', 95, 100, true, 'mes', 'CONF-1'
  FROM plantsync.production_order o JOIN plantsync.production_operation op ON op.order_id = o.id AND op.operation_number = '0020';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition, production_order_id, manufactured_at)
SELECT 'P100', material_id, 'FG-0001', 'in_process', id, now() FROM plantsync.production_order WHERE order_number = 'PO-1001';
UPDATE plantsync.lot SET disposition = 'restricted' WHERE lot_number = 'FG-0001';
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, order_id, source_system, external_id)
SELECT 'P100', 'production_receipt', l.material_id, l.id, 990, 'EA', s.id, l.production_order_id, 'mes', 'PR-1'
  FROM plantsync.lot l, plantsync.storage_location s WHERE l.lot_number = 'FG-0001' AND s.location_code = 'FG01';
UPDATE plantsync.production_order SET status = 'completed' WHERE order_number = 'PO-1001';
COMMIT;

\echo
\echo '== 9. QMS inspects and accepts the lot: it becomes unrestricted; ERP closes the order'
SET plantsync.source_system = 'qms';
INSERT INTO plantsync.inspection_lot (site_id, inspection_lot_number, lot_id, production_order_id, inspection_type, quantity, uom)
SELECT 'P100', 'IL-1', l.id, l.production_order_id, 'final', 990, 'EA' FROM plantsync.lot l WHERE lot_number = 'FG-0001';
UPDATE plantsync.inspection_lot SET status = 'released';
UPDATE plantsync.inspection_lot SET status = 'results_recorded';
INSERT INTO plantsync.usage_decision (site_id, inspection_lot_id, decision, decision_code, decided_by)
SELECT 'P100', id, 'accept', 'A1', 'QA: J. Doe' FROM plantsync.inspection_lot;
UPDATE plantsync.inspection_lot SET status = 'accepted';
UPDATE plantsync.lot SET disposition = 'unrestricted' WHERE lot_number = 'FG-0001';
SET plantsync.source_system = 'erp';
UPDATE plantsync.inspection_lot SET status = 'stock_posted';
UPDATE plantsync.production_order SET status = 'closed' WHERE order_number = 'PO-1001';

\echo
\echo '== 10. The same, as the systems send it: business messages through the process APIs'
\echo '-- the MES reports a consumption for PO-1002 before the ERP has released it: parked, not refused'
SELECT plantsync.mes_consume('MES-7001', '{"site": "P100", "order": "PO-1002", "material": "RM-SUGAR", "lot": "S-001",
                                           "quantity": 100, "uom": "KG", "location": "RM01"}') AS outcome;
\echo '-- the release arrives; the parked consumption is applied with it'
SELECT plantsync.erp_release_order('ERP-4712', '{"site": "P100", "order": "PO-1002", "material": "FG-SYRUP", "quantity": 200,
  "uom": "EA", "due_date": "2026-12-20", "operations": [{"operation": "0010", "work_center": "WC-MIX", "segment": "MIX", "quantity": 200}]}')
       - 'order_id' AS outcome;
\echo '-- the ERP sends the release again (a retry): the first answer, nothing changed'
SELECT plantsync.erp_release_order('ERP-4712', '{"site": "P100", "order": "PO-1002", "material": "FG-SYRUP", "quantity": 200,
  "uom": "EA", "due_date": "2026-12-20", "operations": [{"operation": "0010", "work_center": "WC-MIX", "segment": "MIX", "quantity": 200}]}')
       ->> 'message' AS outcome;
SELECT plantsync.mes_complete('MES-7002', '{"site": "P100", "order": "PO-1002", "lot": "FG-0002", "quantity": 200, "uom": "EA", "location": "FG01"}')
       - 'lot_id' - 'movement_id' AS outcome;
\echo '-- QMS rejects FG-0002; the MES then tries to use it:'
SELECT plantsync.qms_usage_decision('QMS-9001', '{"site": "P100", "lot": "FG-0002", "decision": "reject", "decided_by": "QA: J. Doe", "comment": "viscosity"}')
       - 'lot_id' - 'inspection_lot_id' AS outcome;
\set ON_ERROR_STOP 0
SELECT plantsync.mes_consume('MES-7003', '{"site": "P100", "order": "PO-1002", "material": "FG-SYRUP", "lot": "FG-0002",
                                           "quantity": 1, "uom": "EA", "location": "FG01"}');
\echo '-- a message that breaks its contract:'
SELECT plantsync.mes_confirm('MES-7004', '{"site": "P100", "order": "PO-1002", "operation": "0010", "yield": -5, "uom": "EA"}');
\set ON_ERROR_STOP 1
SELECT system_code AS system, message_id, message_type, status, to_char(received_at, 'HH24:MI:SS.MS') AS received,
       to_char(applied_at, 'HH24:MI:SS.MS') AS applied
  FROM plantsync.inbox ORDER BY received_at;

\echo
\echo '== 11. Genealogy: where FG-0001 came from, and the recall scope of sugar lot S-001'
SELECT node_kind AS kind, node_number AS lot, depth, quantity, uom
  FROM plantsync.trace_backward((SELECT id FROM plantsync.lot WHERE lot_number = 'FG-0001'));
SELECT category, object_number, quantity, uom, depth
  FROM plantsync.recall_scope((SELECT id FROM plantsync.lot WHERE lot_number = 'S-001')) ORDER BY category, object_number;

\echo
\echo '== 12. Reconciliation: the ERP''s stock snapshot against the plant'
\echo '-- the ERP still has the rejected lot FG-0002 as free stock, and misses 5 kg of sugar:'
SELECT plantsync.load_erp_snapshot('P100', 'inventory', now(), '[
  {"material": "RM-SUGAR", "lot": "S-001", "location": "RM01", "quantity": 195, "uom": "KG"},
  {"material": "RM-SUGAR", "lot": "S-002", "location": "RM01", "quantity": 200, "uom": "KG", "stock_type": "quality"},
  {"material": "RM-WATER", "lot": "W-001", "location": "RM01", "quantity": 250, "uom": "L"},
  {"material": "PK-BOTTLE", "location": "RM01", "quantity": 1000, "uom": "EA"},
  {"material": "FG-SYRUP", "lot": "FG-0001", "location": "FG01", "quantity": 990, "uom": "EA"},
  {"material": "FG-SYRUP", "lot": "FG-0002", "location": "FG01", "quantity": 200, "uom": "EA"}]') IS NOT NULL AS snapshot_loaded;
SELECT plantsync.reconcile_inventory('P100') IS NOT NULL AS reconciled;
SELECT kind, subject_key, plant_quantity, erp_quantity, plant_status, erp_status, remediation
  FROM plantsync.discrepancy ORDER BY subject_key;
SELECT kind, compared, matched, accuracy_percent, discrepancies FROM plantsync.reconciliation_kpi;

\echo
\echo '== 13. The timeline: every state change, by system, in order'
SELECT to_char(changed_at, 'HH24:MI:SS.MS') AS at, source_system AS system, entity, entity_key AS key,
       coalesce(from_state, '(new)') AS from_state, to_state, coalesce(reason, '') AS reason
  FROM plantsync.state_change ORDER BY id;

\echo
\echo '== 14. Stock on hand, derived from the ledger'
SELECT m.material_number, coalesce(l.lot_number, '') AS lot, s.location_code AS location, b.stock_type, b.base_quantity, b.base_uom
  FROM plantsync.inventory_balance b
  JOIN plantsync.material m ON m.id = b.material_id
  JOIN plantsync.storage_location s ON s.id = b.storage_location_id
  LEFT JOIN plantsync.lot l ON l.id = b.lot_id
 ORDER BY 1, 2;

\echo
\echo '== 15. Final states'
SELECT 'production_order' AS entity, order_number AS key, status AS state FROM plantsync.production_order
UNION ALL SELECT 'lot', lot_number, disposition FROM plantsync.lot
UNION ALL SELECT 'inspection_lot', inspection_lot_number, status FROM plantsync.inspection_lot
UNION ALL SELECT 'production_operation', operation_number, status FROM plantsync.production_operation
ORDER BY 1, 2;
\echo
\echo '== 16. The outbox: each change above became a CloudEvents event in the same transaction'
\echo '-- the order''s whole story, read back by its correlation id (the order''s id):'
SELECT e.aggregate_type || ' #' || e.aggregate_seq AS seq, e.type, e.subject, e.source_system AS system, coalesce(e.lot_number, '') AS lot
  FROM plantsync.event e
 WHERE e.correlation_id = (SELECT id FROM plantsync.production_order WHERE order_number = 'PO-1001')
 ORDER BY e.recorded_at, e.time;
\echo '-- all events by type:'
SELECT type, count(*) AS events FROM plantsync.event GROUP BY type ORDER BY type;
\echo
\echo 'Routes send these events to ERP and QMS endpoints (plantsync.route, plantsync.endpoint);'
\echo 'the delivery workers deliver them. See README.md.'
