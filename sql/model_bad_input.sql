-- Bad input to the canonical model: every refusal names the field and the
-- value, carries an SQLSTATE other than XX000, and leaves nothing behind.
\set SHOW_CONTEXT never
\set VERBOSITY default

SET plantsync.source_system = 'hub';
-- Site codes, time zones, equipment levels.
\set VERBOSITY terse
INSERT INTO plantsync.site (site_id, name) VALUES ('p 100', 'lower case and blank');
\echo :SQLSTATE
\set VERBOSITY default
INSERT INTO plantsync.site (site_id, name, time_zone) VALUES ('P300', 'Nowhere', 'Mars/Olympus');
\echo :SQLSTATE
\set VERBOSITY terse
INSERT INTO plantsync.equipment (site_id, equipment_code, name, equipment_level) VALUES ('P100', 'X-1', 'X', 'Line');
\echo :SQLSTATE
\set VERBOSITY default
INSERT INTO plantsync.equipment (site_id, equipment_code, name, equipment_level) VALUES ('P999', 'X-1', 'X', 'Area');
\echo :SQLSTATE
-- A parent in another plant.
\set VERBOSITY terse
INSERT INTO plantsync.equipment (site_id, equipment_code, name, equipment_level, parent_id)
VALUES ('P200', 'LINE-9', 'Line 9', 'ProductionLine', regress.eq('AREA-1'));
\echo :SQLSTATE
\set VERBOSITY default

SET plantsync.source_system = 'erp';
-- Unknown unit, duplicate material number.
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) VALUES ('P100', 'RM-NEW', 'New', 'KGS');
\echo :SQLSTATE
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) VALUES ('P100', 'RM-SUGAR', 'Again', 'KG');
\echo :SQLSTATE
-- Conversions must be positive and between different units.
\set VERBOSITY terse
INSERT INTO plantsync.uom_conversion (site_id, material_id, from_uom, to_uom, factor) VALUES ('P100', regress.mat('FG-SYRUP'), 'BOX', 'EA', 0);
\echo :SQLSTATE
\set VERBOSITY default
\set VERBOSITY terse
INSERT INTO plantsync.uom_conversion (from_uom, to_uom, factor) VALUES ('EA', 'EA', 1);
\echo :SQLSTATE
\set VERBOSITY default
-- BOM items: quantities, units, scrap.
\set VERBOSITY terse
INSERT INTO plantsync.bom_item (site_id, bom_id, item_number, component_material_id, quantity, uom)
SELECT 'P100', id, '0040', regress.mat('RM-SUGAR'), 0, 'KG' FROM plantsync.bom WHERE material_id = regress.mat('FG-SYRUP');
\echo :SQLSTATE
\set VERBOSITY default
INSERT INTO plantsync.bom_item (site_id, bom_id, item_number, component_material_id, quantity, uom)
SELECT 'P100', id, '0040', regress.mat('RM-SUGAR'), 1, 'L' FROM plantsync.bom WHERE material_id = regress.mat('FG-SYRUP');
\echo :SQLSTATE
\set VERBOSITY terse
INSERT INTO plantsync.bom_item (site_id, bom_id, item_number, component_material_id, quantity, uom, scrap_percent)
SELECT 'P100', id, '0040', regress.mat('RM-SUGAR'), 1, 'KG', 100 FROM plantsync.bom WHERE material_id = regress.mat('FG-SYRUP');
\echo :SQLSTATE
\set VERBOSITY default

-- Orders: zero, negative, unit mismatch, wrong BOM, schedule, duplicates,
-- unknown material, material of another plant.
\set VERBOSITY terse
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, due_date)
VALUES ('P100', 'PO-9001', regress.mat('FG-SYRUP'), 0, 'EA', '2026-12-31');
\echo :SQLSTATE
\set VERBOSITY default
\set VERBOSITY terse
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, due_date)
VALUES ('P100', 'PO-9001', regress.mat('FG-SYRUP'), -5, 'EA', '2026-12-31');
\echo :SQLSTATE
\set VERBOSITY default
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, due_date)
VALUES ('P100', 'PO-9001', regress.mat('FG-SYRUP'), 10, 'KG', '2026-12-31');
\echo :SQLSTATE
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, due_date)
VALUES ('P100', 'PO-9001', regress.mat('FG-SYRUP'), 2, 'BOX', '2026-12-31') RETURNING order_number, quantity, uom;
INSERT INTO plantsync.production_order (site_id, order_number, material_id, bom_id, quantity, uom, due_date)
SELECT 'P100', 'PO-9002', regress.mat('FG-DOSER'), id, 10, 'EA', '2026-12-31' FROM plantsync.bom WHERE material_id = regress.mat('FG-SYRUP');
\echo :SQLSTATE
\set VERBOSITY terse
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, due_date, scheduled_start, scheduled_end)
VALUES ('P100', 'PO-9002', regress.mat('FG-SYRUP'), 10, 'EA', '2026-12-31', '2026-12-10 08:00+00', '2026-12-09 08:00+00');
\echo :SQLSTATE
\set VERBOSITY default
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, due_date)
VALUES ('P100', 'PO-9001', regress.mat('FG-SYRUP'), 10, 'EA', '2026-12-31');
\echo :SQLSTATE
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, due_date, erp_ref)
VALUES ('P100', 'PO-9003', regress.mat('FG-SYRUP'), 10, 'EA', '2026-12-31', '4711');
\echo :SQLSTATE
\set VERBOSITY terse
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, due_date)
VALUES ('P100', 'PO-9003', '00000000-0000-0000-0000-000000000000', 10, 'EA', '2026-12-31');
\echo :SQLSTATE
\set VERBOSITY default
\set VERBOSITY terse
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, due_date)
SELECT 'P200', 'PO-9003', regress.mat('FG-SYRUP'), 10, 'EA', '2026-12-31';
\echo :SQLSTATE
\set VERBOSITY default
\set VERBOSITY terse
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, due_date, priority)
VALUES ('P100', 'PO-9003', regress.mat('FG-SYRUP'), 10, 'EA', '2026-12-31', 0);
\echo :SQLSTATE
\set VERBOSITY default
-- The same order number in another plant is another order.
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, due_date)
SELECT 'P200', 'PO-9001', id, 10, 'KG', '2026-12-31' FROM plantsync.material WHERE site_id = 'P200' AND material_number = 'RM-STEEL';

-- Lots and serials must suit their material.
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number) VALUES ('P100', regress.mat('PK-BOTTLE'), 'B-001');
\echo :SQLSTATE
INSERT INTO plantsync.serial (site_id, material_id, serial_number) VALUES ('P100', regress.mat('RM-SUGAR'), 'SN-1');
\echo :SQLSTATE
INSERT INTO plantsync.serial (site_id, material_id, serial_number, lot_id) VALUES ('P100', regress.mat('FG-DOSER'), 'SN-2', regress.lot('S-001'));
\echo :SQLSTATE
\set VERBOSITY terse
INSERT INTO plantsync.lot (site_id, material_id, lot_number) VALUES ('P100', regress.mat('RM-SUGAR'), 'S-001');
\echo :SQLSTATE
\set VERBOSITY default
-- Confirmations: nothing confirmed, negative scrap, operation of another
-- order, duplicate external id.
\set VERBOSITY terse
INSERT INTO plantsync.production_confirmation (site_id, order_id, operation_id, uom, source_system, external_id)
VALUES ('P100', regress.ord('PO-1001'), regress.op('PO-1001', '0010'), 'EA', 'mes', 'CONF-1');
\echo :SQLSTATE
\set VERBOSITY default
\set VERBOSITY terse
INSERT INTO plantsync.production_confirmation (site_id, order_id, operation_id, yield_quantity, scrap_quantity, uom, source_system, external_id)
VALUES ('P100', regress.ord('PO-1001'), regress.op('PO-1001', '0010'), 10, -1, 'EA', 'mes', 'CONF-1');
\echo :SQLSTATE
\set VERBOSITY default
INSERT INTO plantsync.production_confirmation (site_id, order_id, operation_id, yield_quantity, uom, source_system, external_id)
VALUES ('P100', regress.ord('PO-9001'), regress.op('PO-1001', '0010'), 10, 'EA', 'mes', 'CONF-1');
\echo :SQLSTATE
INSERT INTO plantsync.production_confirmation (site_id, order_id, operation_id, yield_quantity, uom, source_system, external_id)
VALUES ('P100', regress.ord('PO-1001'), regress.op('PO-1001', '0010'), 10, 'L', 'mes', 'CONF-1');
\echo :SQLSTATE
INSERT INTO plantsync.production_confirmation (site_id, order_id, operation_id, yield_quantity, labour_minutes, uom, is_final, source_system, external_id)
VALUES ('P100', regress.ord('PO-1001'), regress.op('PO-1001', '0010'), 10, 30, 'EA', true, 'mes', 'CONF-1');
INSERT INTO plantsync.production_confirmation (site_id, order_id, operation_id, yield_quantity, uom, source_system, external_id)
VALUES ('P100', regress.ord('PO-1001'), regress.op('PO-1001', '0010'), 10, 'EA', 'mes', 'CONF-1');
\echo :SQLSTATE
\set VERBOSITY terse
INSERT INTO plantsync.downtime_event (site_id, equipment_id, started_at, ended_at, reason_code, source_system, external_id)
VALUES ('P100', regress.eq('WC-MIX'), '2026-12-01 10:00+00', '2026-12-01 09:00+00', 'JAM', 'mes', 'DT-1');
\echo :SQLSTATE
\set VERBOSITY default

-- Quality: limits, values, partial decisions.
SET plantsync.source_system = 'qms';
INSERT INTO plantsync.inspection_plan (site_id, plan_code, material_id, inspection_type) VALUES ('P100', 'QP-1', regress.mat('FG-SYRUP'), 'final');
\set VERBOSITY terse
INSERT INTO plantsync.inspection_characteristic (site_id, plan_id, characteristic_number, name, kind, lower_limit, upper_limit)
SELECT 'P100', id, '10', 'Viscosity', 'quantitative', 50, 40 FROM plantsync.inspection_plan WHERE plan_code = 'QP-1';
\echo :SQLSTATE
\set VERBOSITY default
\set VERBOSITY terse
INSERT INTO plantsync.inspection_characteristic (site_id, plan_id, characteristic_number, name, kind, lower_limit)
SELECT 'P100', id, '20', 'Colour', 'qualitative', 1 FROM plantsync.inspection_plan WHERE plan_code = 'QP-1';
\echo :SQLSTATE
\set VERBOSITY default
\set VERBOSITY terse
INSERT INTO plantsync.inspection_plan (site_id, plan_code, material_id, inspection_type) VALUES ('P100', 'QP-2', regress.mat('FG-SYRUP'), 'outgoing');
\echo :SQLSTATE
\set VERBOSITY default
INSERT INTO plantsync.inspection_lot (site_id, inspection_lot_number, lot_id, plan_id, inspection_type, quantity, uom)
SELECT 'P100', 'IL-9', regress.lot('S-001'), id, 'incoming', 10, 'KG' FROM plantsync.inspection_plan WHERE plan_code = 'QP-1';
\echo :SQLSTATE
INSERT INTO plantsync.inspection_lot (site_id, inspection_lot_number, lot_id, inspection_type, quantity, uom)
VALUES ('P100', 'IL-9', regress.lot('S-001'), 'incoming', 10, 'EA');
\echo :SQLSTATE
\set VERBOSITY terse
INSERT INTO plantsync.usage_decision (site_id, inspection_lot_id, decision, decided_by)
SELECT 'P100', id, 'partial', 'QA' FROM plantsync.inspection_lot WHERE inspection_lot_number = 'IL-1';
\echo :SQLSTATE
\set VERBOSITY default
\set VERBOSITY terse
INSERT INTO plantsync.usage_decision (site_id, inspection_lot_id, decision, decided_by)
SELECT 'P100', id, 'maybe', 'QA' FROM plantsync.inspection_lot WHERE inspection_lot_number = 'IL-1';
\echo :SQLSTATE
\set VERBOSITY default

-- Shipments cannot carry held lots or serials of unserialized materials.
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.shipment (site_id, shipment_number, customer_code) VALUES ('P100', 'SH-9', 'C-7');
INSERT INTO plantsync.shipment_line (site_id, shipment_id, line_number, material_id, lot_id, quantity, uom)
SELECT 'P100', id, 1, regress.mat('FG-SYRUP'), regress.lot('FG-0001'), 10, 'EA' FROM plantsync.shipment WHERE shipment_number = 'SH-9';
\echo :SQLSTATE
INSERT INTO plantsync.shipment_line (site_id, shipment_id, line_number, material_id, quantity, uom)
SELECT 'P100', id, 1, regress.mat('FG-SYRUP'), 10, 'EA' FROM plantsync.shipment WHERE shipment_number = 'SH-9';
\echo :SQLSTATE

-- A statement that fails part-way leaves nothing: three good rows, one bad.
SELECT count(*) AS orders_before FROM plantsync.production_order;
\set VERBOSITY terse
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, due_date)
VALUES ('P100', 'PO-9101', regress.mat('FG-SYRUP'), 10, 'EA', '2026-12-31'),
       ('P100', 'PO-9102', regress.mat('FG-SYRUP'), 10, 'EA', '2026-12-31'),
       ('P100', 'PO-9103', regress.mat('FG-SYRUP'), 10, 'EA', '2026-12-31'),
       ('P100', 'PO-9104', regress.mat('FG-SYRUP'), -1, 'EA', '2026-12-31');
\echo :SQLSTATE
\set VERBOSITY default
SELECT count(*) AS orders_after FROM plantsync.production_order;
SELECT count(*) AS history_for_failed_orders FROM plantsync.state_change WHERE entity_key LIKE 'PO-91%';
RESET plantsync.source_system;
