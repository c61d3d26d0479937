-- The plant the dialect golden files are written from: site DX with its
-- ERPNext and SAP names, an order released through the process API with two
-- operations, a lot received, consumed, produced, moved between stock types,
-- scrapped and reversed, two confirmations, an inspection with a usage
-- decision and a nonconformance. Times are fixed so the documents are too.
\set ON_ERROR_STOP 1
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('DX', 'Dialect plant');
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('DX', 'RM01', 'Raw'), ('DX', 'FG01', 'Finished');
INSERT INTO plantsync.equipment (site_id, equipment_code, name, equipment_level)
VALUES ('DX', 'MIXER-1', 'Mixer 1', 'WorkCenter'), ('DX', 'FILLER-1', 'Filler 1', 'WorkCenter');
INSERT INTO plantsync.dialect_mapping VALUES
    ('DX', 'erpnext', 'company', '*', 'ACME Syrups'),
    ('DX', 'erpnext', 'quarantine_warehouse', '*', 'Quarantine - ACME'),
    ('DX', 'erpnext', 'quality_procedure', '*', 'QP-0001 Nonconforming product'),
    ('DX', 'erpnext', 'warehouse', 'RM01', 'Stores - ACME'),
    ('DX', 'erpnext', 'warehouse', 'FG01', 'Finished Goods - ACME'),
    ('DX', 'erpnext', 'item', 'SUGAR', 'RM-SUGAR-25KG'),
    ('DX', 'erpnext', 'item', 'SYRUP', 'FG-SYRUP'),
    ('DX', 'erpnext', 'uom', 'KG', 'Kg'),
    ('DX', 'erpnext', 'work_center', 'MIXER-1', 'Mixer 1 - ACME'),
    ('DX', 'erpnext', 'work_center', 'FILLER-1', 'Filler 1 - ACME'),
    ('DX', 'sap', 'plant', '*', '1010'),
    ('DX', 'sap', 'warehouse', 'RM01', '0001'),
    ('DX', 'sap', 'warehouse', 'FG01', '0002'),
    ('DX', 'sap', 'item', 'SUGAR', 'RM-100'),
    ('DX', 'sap', 'item', 'SYRUP', 'FG-200'),
    ('DX', 'sap', 'uom', 'KG', 'KG'),
    ('DX', 'sap', 'work_center', 'MIXER-1', 'MIX01'),
    ('DX', 'sap', 'work_center', 'FILLER-1', 'FIL01');
RESET plantsync.source_system;
SELECT plantsync.erp_material('DX-M1', '{"site": "DX", "material": "SUGAR", "description": "Sugar", "base_uom": "KG"}') IS NOT NULL AS sugar,
       plantsync.erp_material('DX-M2', '{"site": "DX", "material": "SYRUP", "description": "Syrup", "base_uom": "KG", "material_type": "finished"}') IS NOT NULL AS syrup;
-- a bill of materials and the mixer's parameters, for the MES work package
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.bom (site_id, material_id, base_quantity, base_uom)
SELECT 'DX', id, 1, 'KG' FROM plantsync.material WHERE site_id = 'DX' AND material_number = 'SYRUP';
INSERT INTO plantsync.bom_item (site_id, bom_id, item_number, component_material_id, quantity, uom, scrap_percent, operation_number)
SELECT 'DX', b.id, '0010', c.id, 0.6, 'KG', 2, '0010' FROM plantsync.bom b, plantsync.material c
 WHERE b.site_id = 'DX' AND c.site_id = 'DX' AND c.material_number = 'SUGAR';
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.work_center_parameter (site_id, work_center_id, material_id, parameter_name, parameter_value, uom)
SELECT 'DX', w.id, m.id, p.name, p.value, p.uom FROM plantsync.equipment w
  CROSS JOIN (VALUES ('mix_minutes', '40', 'MIN', false), ('mix_minutes', '45', 'MIN', true), ('agitator', 'paddle', NULL, false)) p (name, value, uom, own)
  LEFT JOIN plantsync.material m ON p.own AND m.site_id = 'DX' AND m.material_number = 'SYRUP'
 WHERE w.site_id = 'DX' AND w.equipment_code = 'MIXER-1';
RESET plantsync.source_system;
SELECT plantsync.erp_release_order('DX-R1', '{"site": "DX", "order": "WO-0001", "erp_ref": "MFG-WO-2026-00001", "material": "SYRUP",
    "quantity": 100, "uom": "KG", "due_date": "2026-12-01", "priority": 3,
    "operations": [{"operation": "0010", "work_center": "MIXER-1", "segment": "MIX", "quantity": 100},
                   {"operation": "0020", "work_center": "FILLER-1", "segment": "FILL", "quantity": 100}]}') IS NOT NULL AS released;

SET plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
SELECT 'DX', id, 'S-1', 'unrestricted' FROM plantsync.material WHERE site_id = 'DX' AND material_number = 'SUGAR';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition, production_order_id, manufactured_at, expires_on)
SELECT 'DX', m.id, 'Y-1', 'restricted', o.id, '2026-11-20 12:00+00', '2027-11-20'
  FROM plantsync.material m, plantsync.production_order o WHERE m.site_id = 'DX' AND m.material_number = 'SYRUP' AND o.order_number = 'WO-0001';
CREATE FUNCTION pg_temp.mv(p_type text, p_mat text, p_lot text, p_qty numeric, p_from text, p_to text, p_ext text,
                           p_at timestamptz, p_op text DEFAULT NULL, p_from_st text DEFAULT NULL, p_to_st text DEFAULT NULL,
                           p_reverses text DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, to_location_id,
                                             from_stock_type, to_stock_type, order_id, operation_id, reverses_movement_id,
                                             source_system, external_id, posted_at)
    SELECT 'DX', p_type, m.id, l.id, p_qty, 'KG', f.id, t.id, p_from_st, p_to_st,
           CASE WHEN p_op IS NOT NULL THEN o.id END, op.id, (SELECT r.id FROM plantsync.material_movement r WHERE r.external_id = p_reverses),
           'mes', p_ext, p_at
      FROM plantsync.material m JOIN plantsync.lot l ON l.material_id = m.id
      JOIN plantsync.production_order o ON o.order_number = 'WO-0001'
      LEFT JOIN plantsync.production_operation op ON op.order_id = o.id AND op.operation_number = p_op
      LEFT JOIN plantsync.storage_location f ON f.site_id = 'DX' AND f.location_code = p_from
      LEFT JOIN plantsync.storage_location t ON t.site_id = 'DX' AND t.location_code = p_to
     WHERE m.site_id = 'DX' AND m.material_number = p_mat AND l.lot_number = p_lot $$;
UPDATE plantsync.production_order SET status = 'in_progress' WHERE order_number = 'WO-0001';
SELECT pg_temp.mv('goods_receipt', 'SUGAR', 'S-1', 500, NULL, 'RM01', 'DX-1', '2026-11-20 06:00+00'),
       pg_temp.mv('consumption', 'SUGAR', 'S-1', 60, 'RM01', NULL, 'DX-2', '2026-11-20 08:00+00', '0010'),
       pg_temp.mv('consumption', 'SUGAR', 'S-1', 5, 'RM01', NULL, 'DX-3', '2026-11-20 08:30+00', '0010'),
       pg_temp.mv('reversal', 'SUGAR', 'S-1', 5, NULL, NULL, 'DX-4', '2026-11-20 08:45+00', NULL, NULL, NULL, 'DX-3'),
       pg_temp.mv('production_receipt', 'SYRUP', 'Y-1', 100, NULL, 'FG01', 'DX-5', '2026-11-20 12:00+00', '0020'),
       pg_temp.mv('transfer', 'SUGAR', 'S-1', 40, 'RM01', 'FG01', 'DX-6', '2026-11-20 13:00+00'),
       pg_temp.mv('scrap', 'SUGAR', 'S-1', 2, 'RM01', NULL, 'DX-7', '2026-11-20 13:30+00');
INSERT INTO plantsync.production_confirmation (site_id, order_id, operation_id, yield_quantity, scrap_quantity, uom, labour_minutes,
                                               machine_minutes, is_final, confirmed_at, source_system, external_id)
SELECT 'DX', o.id, op.id, c.y, c.s, 'KG', c.lab, c.mach, c.fin, c.at, 'mes', c.ext
  FROM plantsync.production_order o JOIN plantsync.production_operation op ON op.order_id = o.id
  JOIN (VALUES ('0010', 100, 0, 45, 30, false, '2026-11-20 10:00+00'::timestamptz, 'DX-C1'),
               ('0020', 100, 2, 60, 90, true, '2026-11-20 12:30+00'::timestamptz, 'DX-C2')) c (op, y, s, lab, mach, fin, at, ext)
    ON c.op = op.operation_number
 WHERE o.order_number = 'WO-0001'
 ORDER BY c.at;
UPDATE plantsync.production_order SET status = 'completed' WHERE order_number = 'WO-0001';

-- quality: the final inspection of Y-1, accepted; stock to unrestricted, then held and released
SET plantsync.source_system = 'qms';
INSERT INTO plantsync.inspection_plan (site_id, plan_code, material_id, inspection_type)
SELECT 'DX', 'QP-SYRUP', id, 'final' FROM plantsync.material WHERE site_id = 'DX' AND material_number = 'SYRUP';
INSERT INTO plantsync.inspection_characteristic (site_id, plan_id, characteristic_number, name, kind, target_value, lower_limit, upper_limit, uom)
SELECT 'DX', p.id, c.n, c.name, 'quantitative', c.t, c.lo, c.hi, 'KG' FROM plantsync.inspection_plan p,
       (VALUES ('10', 'Brix', 65, 63, 67), ('20', 'Viscosity', 120, 100, 140)) c (n, name, t, lo, hi) WHERE p.plan_code = 'QP-SYRUP';
INSERT INTO plantsync.inspection_lot (site_id, inspection_lot_number, lot_id, plan_id, production_order_id, inspection_type, quantity, uom, erp_ref)
SELECT 'DX', 'IL-Y-1', l.id, p.id, l.production_order_id, 'final', 5, 'KG', '010000000042'
  FROM plantsync.lot l, plantsync.inspection_plan p WHERE l.lot_number = 'Y-1' AND p.plan_code = 'QP-SYRUP';
UPDATE plantsync.inspection_lot SET status = 'released' WHERE inspection_lot_number = 'IL-Y-1';
INSERT INTO plantsync.inspection_result (site_id, inspection_lot_id, characteristic_id, measured_value, uom, is_conforming, recorded_by, source_system, external_id)
SELECT 'DX', il.id, c.id, v.val, 'KG', v.ok, 'lab', 'qms', 'R-' || c.characteristic_number
  FROM plantsync.inspection_lot il, plantsync.inspection_characteristic c
  JOIN (VALUES ('10', 65.4, true), ('20', 131, true)) v (n, val, ok) ON v.n = c.characteristic_number
 WHERE il.inspection_lot_number = 'IL-Y-1';
UPDATE plantsync.inspection_lot SET status = 'results_recorded' WHERE inspection_lot_number = 'IL-Y-1';
INSERT INTO plantsync.usage_decision (site_id, inspection_lot_id, decision, decision_code, decided_by, comment, decided_at)
SELECT 'DX', id, 'accept', 'A1', 'QA: J. Doe', 'within limits', '2026-11-21 09:00+00' FROM plantsync.inspection_lot WHERE inspection_lot_number = 'IL-Y-1';
UPDATE plantsync.lot SET disposition = 'unrestricted' WHERE lot_number = 'Y-1';
SET plantsync.source_system = 'mes';
SELECT pg_temp.mv('status_change', 'SYRUP', 'Y-1', 100, 'FG01', 'FG01', 'DX-8', '2026-11-21 09:05+00', NULL, 'quality', 'unrestricted'),
       pg_temp.mv('status_change', 'SYRUP', 'Y-1', 100, 'FG01', 'FG01', 'DX-9', '2026-11-22 07:00+00', NULL, 'unrestricted', 'blocked'),
       pg_temp.mv('status_change', 'SYRUP', 'Y-1', 100, 'FG01', 'FG01', 'DX-10', '2026-11-22 15:00+00', NULL, 'blocked', 'unrestricted');
SET plantsync.source_system = 'qms';
INSERT INTO plantsync.nonconformance (site_id, nc_number, severity, title, description, material_id, lot_id, production_order_id, qms_ref)
SELECT 'DX', 'NC-7', 'major', 'Viscosity drift on filler', 'Two samples near the upper limit.', l.material_id, l.id, l.production_order_id, 'QA-NC-2026-0007'
  FROM plantsync.lot l WHERE l.lot_number = 'Y-1';
RESET plantsync.source_system;
