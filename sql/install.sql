-- The extension as a user meets it: what CREATE EXTENSION made, its settings,
-- its identifiers; then the small plant the other tests use.
\set SHOW_CONTEXT never

SELECT extname, extversion, extrelocatable, n.nspname AS schema
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE extname = 'plantsync';

SELECT c.relname, c.relkind
  FROM pg_class c
 WHERE c.relnamespace = 'plantsync'::regnamespace AND c.relkind IN ('r', 'v', 'p')
 ORDER BY c.relkind, c.relname;

-- Every governed table carries the guard trigger.
SELECT e.entity, t.tgname IS NOT NULL AS guarded
  FROM plantsync.entity e
  LEFT JOIN pg_trigger t ON t.tgrelid = format('plantsync.%I', e.entity)::regclass AND t.tgname = 'plantsync_guard'
 WHERE t.tgname IS NULL;

-- Time-ordered UUIDs: version 7, RFC variant, increasing, carrying the time.
SELECT substr(u::text, 15, 1) AS version, substr(u::text, 20, 1) IN ('8', '9', 'a', 'b') AS rfc_variant
  FROM (SELECT plantsync.uuid_v7() AS u) s;
SELECT bool_and(a < b) AS increasing
  FROM (SELECT plantsync.uuid_v7() AS a, plantsync.uuid_v7() AS b FROM generate_series(1, 1000)) s;
SELECT abs(extract(epoch FROM now()) * 1000 - ('x' || substr(replace(u::text, '-', ''), 1, 12))::bit(48)::bigint) < 60000 AS carries_time
  FROM (SELECT plantsync.uuid_v7() AS u) s;

-- Settings.
SHOW plantsync.source_system;
SET plantsync.source_system = 'sap';
\echo :SQLSTATE
SET plantsync.no_such_setting = 'x';
\echo :SQLSTATE
RESET plantsync.source_system;

-- The plant used by the following tests. Helpers resolve codes to keys.
CREATE SCHEMA regress;
CREATE FUNCTION regress.mat(text) RETURNS uuid LANGUAGE sql STABLE
    AS $$ SELECT id FROM plantsync.material WHERE site_id = 'P100' AND material_number = $1 $$;
CREATE FUNCTION regress.loc(text) RETURNS uuid LANGUAGE sql STABLE
    AS $$ SELECT id FROM plantsync.storage_location WHERE site_id = 'P100' AND location_code = $1 $$;
CREATE FUNCTION regress.eq(text) RETURNS uuid LANGUAGE sql STABLE
    AS $$ SELECT id FROM plantsync.equipment WHERE site_id = 'P100' AND equipment_code = $1 $$;
CREATE FUNCTION regress.ord(text) RETURNS uuid LANGUAGE sql STABLE
    AS $$ SELECT id FROM plantsync.production_order WHERE site_id = 'P100' AND order_number = $1 $$;
CREATE FUNCTION regress.lot(text) RETURNS uuid LANGUAGE sql STABLE
    AS $$ SELECT id FROM plantsync.lot WHERE site_id = 'P100' AND lot_number = $1 $$;
CREATE FUNCTION regress.op(text, text) RETURNS uuid LANGUAGE sql STABLE
    AS $$ SELECT op.id FROM plantsync.production_operation op JOIN plantsync.production_order o ON o.id = op.order_id
           WHERE o.site_id = 'P100' AND o.order_number = $1 AND op.operation_number = $2 $$;
GRANT USAGE ON SCHEMA regress TO PUBLIC;

SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name, enterprise, time_zone, erp_plant_code) VALUES
    ('P100', 'Syrup plant', 'ACME', 'Europe/Berlin', '1000'),
    ('P200', 'Pump plant', 'ACME', 'America/Chicago', '2000');
INSERT INTO plantsync.equipment (site_id, equipment_code, name, equipment_level) VALUES
    ('P100', 'AREA-1', 'Liquid area', 'Area');
INSERT INTO plantsync.equipment (site_id, equipment_code, name, equipment_level, parent_id) VALUES
    ('P100', 'LINE-1', 'Filling line 1', 'ProductionLine', regress.eq('AREA-1'));
INSERT INTO plantsync.equipment (site_id, equipment_code, name, equipment_level, parent_id) VALUES
    ('P100', 'WC-MIX', 'Mixer', 'WorkCenter', regress.eq('LINE-1')),
    ('P100', 'WC-FILL', 'Filler', 'WorkCenter', regress.eq('LINE-1'));
INSERT INTO plantsync.storage_location (site_id, location_code, name, is_quarantine) VALUES
    ('P100', 'RM01', 'Raw materials', false),
    ('P100', 'FG01', 'Finished goods', false),
    ('P100', 'QI01', 'Quarantine', true);

SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, material_type, base_uom, lot_tracked, serial_tracked) VALUES
    ('P100', 'RM-SUGAR', 'Sugar', 'raw', 'KG', true, false),
    ('P100', 'RM-WATER', 'Purified water', 'raw', 'L', true, false),
    ('P100', 'PK-BOTTLE', 'Bottle 1 l', 'packaging', 'EA', false, false),
    ('P100', 'FG-SYRUP', 'Syrup 1 l', 'finished', 'EA', true, false),
    ('P100', 'FG-DOSER', 'Dosing pump', 'finished', 'EA', true, true);
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) VALUES
    ('P200', 'RM-STEEL', 'Steel', 'KG');
INSERT INTO plantsync.uom_conversion (site_id, material_id, from_uom, to_uom, factor) VALUES
    ('P100', regress.mat('FG-SYRUP'), 'BOX', 'EA', 12);
INSERT INTO plantsync.bom (site_id, material_id, base_quantity, base_uom) VALUES
    ('P100', regress.mat('FG-SYRUP'), 1, 'EA');
INSERT INTO plantsync.bom_item (site_id, bom_id, item_number, component_material_id, quantity, uom)
SELECT 'P100', b.id, i.item, regress.mat(i.mat), i.qty, i.uom
  FROM plantsync.bom b,
       (VALUES ('0010', 'RM-SUGAR', 500, 'G'), ('0020', 'RM-WATER', 0.75, 'L'), ('0030', 'PK-BOTTLE', 1, 'EA')) AS i(item, mat, qty, uom)
 WHERE b.material_id = regress.mat('FG-SYRUP');
INSERT INTO plantsync.routing (site_id, material_id, description) VALUES
    ('P100', regress.mat('FG-SYRUP'), 'Mix and fill');
INSERT INTO plantsync.routing_operation (site_id, routing_id, operation_number, process_segment, work_center_id, run_minutes_per_unit)
SELECT 'P100', r.id, o.num, o.seg, regress.eq(o.wc), 0.1
  FROM plantsync.routing r, (VALUES ('0010', 'MIX', 'WC-MIX'), ('0020', 'FILL', 'WC-FILL')) AS o(num, seg, wc)
 WHERE r.material_id = regress.mat('FG-SYRUP');

SET plantsync.source_system = 'hub';
INSERT INTO plantsync.work_center_parameter (site_id, work_center_id, material_id, parameter_name, parameter_value, uom) VALUES
    ('P100', regress.eq('WC-MIX'), regress.mat('FG-SYRUP'), 'mix_time', '20', 'MIN'),
    ('P100', regress.eq('WC-FILL'), NULL, 'fill_volume_ml', '1000', 'ML');

SET plantsync.source_system = 'erp';
INSERT INTO plantsync.production_order (site_id, order_number, material_id, bom_id, routing_id, line_id, quantity, uom, status, due_date, erp_ref)
SELECT 'P100', 'PO-1001', regress.mat('FG-SYRUP'), b.id, r.id, regress.eq('LINE-1'), 1000, 'EA', 'released', '2026-12-15', '4711'
  FROM plantsync.bom b, plantsync.routing r
 WHERE b.material_id = regress.mat('FG-SYRUP') AND r.material_id = regress.mat('FG-SYRUP');
INSERT INTO plantsync.production_operation (site_id, order_id, operation_number, routing_operation_id, work_center_id, process_segment, status, planned_quantity)
SELECT 'P100', regress.ord('PO-1001'), ro.operation_number, ro.id, ro.work_center_id, ro.process_segment,
       CASE ro.operation_number WHEN '0010' THEN 'ready' ELSE 'waiting' END, 1000
  FROM plantsync.routing_operation ro ORDER BY ro.operation_number;

SET plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition, supplier_lot) VALUES
    ('P100', regress.mat('RM-SUGAR'), 'S-001', 'unrestricted', 'SUP-77'),
    ('P100', regress.mat('RM-SUGAR'), 'S-002', 'restricted', 'SUP-78'),
    ('P100', regress.mat('RM-WATER'), 'W-001', 'unrestricted', NULL);
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id) VALUES
    ('P100', 'goods_receipt', regress.mat('RM-SUGAR'), regress.lot('S-001'), 800, 'KG', regress.loc('RM01'), 'mes', 'GR-1'),
    ('P100', 'goods_receipt', regress.mat('RM-SUGAR'), regress.lot('S-002'), 200, 'KG', regress.loc('RM01'), 'mes', 'GR-2'),
    ('P100', 'goods_receipt', regress.mat('RM-WATER'), regress.lot('W-001'), 1000, 'L', regress.loc('RM01'), 'mes', 'GR-3'),
    ('P100', 'goods_receipt', regress.mat('PK-BOTTLE'), NULL, 2000, 'EA', regress.loc('RM01'), 'mes', 'GR-4');
RESET plantsync.source_system;

SELECT o.order_number, o.status, count(op.*) AS operations, string_agg(op.operation_number || ':' || op.status, ' ' ORDER BY op.operation_number) AS ops
  FROM plantsync.production_order o JOIN plantsync.production_operation op ON op.order_id = o.id
 GROUP BY o.order_number, o.status;
SELECT m.material_number, l.lot_number, b.stock_type, b.base_quantity, b.base_uom
  FROM plantsync.inventory_balance b
  JOIN plantsync.material m ON m.id = b.material_id
  LEFT JOIN plantsync.lot l ON l.id = b.lot_id
 ORDER BY 1, 2;
