-- The material movement ledger: append-only, validated against material,
-- lot, serial, unit and quality hold, corrected only by reversals; balances
-- derived from it.
\set SHOW_CONTEXT never
SET plantsync.source_system = 'mes';

-- A new order to consume into.
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
VALUES ('P100', 'PO-2001', regress.mat('FG-SYRUP'), 100, 'EA', 'released', '2026-12-20');
SET plantsync.source_system = 'mes';

-- Consumption in another unit is converted to the base unit (500 G = 0.5 KG).
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, order_id, source_system, external_id)
VALUES ('P100', 'consumption', regress.mat('RM-SUGAR'), regress.lot('S-001'), 500, 'G', regress.loc('RM01'), regress.ord('PO-2001'), 'mes', 'C-1')
RETURNING quantity, uom, base_quantity;

-- A unit that does not convert.
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, order_id, source_system, external_id)
VALUES ('P100', 'consumption', regress.mat('RM-SUGAR'), regress.lot('S-001'), 5, 'L', regress.loc('RM01'), regress.ord('PO-2001'), 'mes', 'C-2');
\echo :SQLSTATE
-- Fractions of counted units.
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, quantity, uom, from_location_id, order_id, source_system, external_id)
VALUES ('P100', 'consumption', regress.mat('PK-BOTTLE'), 1.5, 'EA', regress.loc('RM01'), regress.ord('PO-2001'), 'mes', 'C-3');
\echo :SQLSTATE
-- A lot-tracked material without its lot.
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, quantity, uom, from_location_id, order_id, source_system, external_id)
VALUES ('P100', 'consumption', regress.mat('RM-WATER'), 10, 'L', regress.loc('RM01'), regress.ord('PO-2001'), 'mes', 'C-4');
\echo :SQLSTATE
-- A lot of another material.
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, order_id, source_system, external_id)
VALUES ('P100', 'consumption', regress.mat('RM-WATER'), regress.lot('S-001'), 10, 'L', regress.loc('RM01'), regress.ord('PO-2001'), 'mes', 'C-5');
\echo :SQLSTATE
-- A lot on a material that is not lot-tracked.
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, order_id, source_system, external_id)
VALUES ('P100', 'consumption', regress.mat('PK-BOTTLE'), regress.lot('S-001'), 10, 'EA', regress.loc('RM01'), regress.ord('PO-2001'), 'mes', 'C-6');
\echo :SQLSTATE
-- The quality hold: a restricted lot cannot be consumed, whoever asks.
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, order_id, source_system, external_id)
VALUES ('P100', 'consumption', regress.mat('RM-SUGAR'), regress.lot('S-002'), 10, 'KG', regress.loc('RM01'), regress.ord('PO-2001'), 'mes', 'C-7');
\echo :SQLSTATE
-- Locations must fit the movement type; consumption needs its order.
\set VERBOSITY terse
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, order_id, source_system, external_id)
VALUES ('P100', 'consumption', regress.mat('RM-SUGAR'), regress.lot('S-001'), 10, 'KG', regress.loc('RM01'), regress.ord('PO-2001'), 'mes', 'C-8');
\echo :SQLSTATE
\set VERBOSITY default
\set VERBOSITY terse
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, source_system, external_id)
VALUES ('P100', 'consumption', regress.mat('RM-SUGAR'), regress.lot('S-001'), 10, 'KG', regress.loc('RM01'), 'mes', 'C-9');
\echo :SQLSTATE
\set VERBOSITY default
-- Zero and negative quantities.
\set VERBOSITY terse
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, order_id, source_system, external_id)
VALUES ('P100', 'consumption', regress.mat('RM-SUGAR'), regress.lot('S-001'), -3, 'KG', regress.loc('RM01'), regress.ord('PO-2001'), 'mes', 'C-10');
\echo :SQLSTATE
\set VERBOSITY default
-- A repeated report (same system, same external id) is refused.
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, order_id, source_system, external_id)
VALUES ('P100', 'consumption', regress.mat('RM-SUGAR'), regress.lot('S-001'), 500, 'G', regress.loc('RM01'), regress.ord('PO-2001'), 'mes', 'C-1');
\echo :SQLSTATE
-- A location of another plant.
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('P200', 'RM01', 'Raw materials');
SET plantsync.source_system = 'mes';
\set VERBOSITY terse
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, order_id, source_system, external_id)
SELECT 'P100', 'consumption', regress.mat('RM-SUGAR'), regress.lot('S-001'), 1, 'KG', id, regress.ord('PO-2001'), 'mes', 'C-11'
  FROM plantsync.storage_location WHERE site_id = 'P200';
\echo :SQLSTATE
\set VERBOSITY default

-- Serials: one unit per movement, only for serial-tracked materials.
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition) VALUES ('P100', regress.mat('FG-DOSER'), 'D-001', 'unrestricted');
INSERT INTO plantsync.serial (site_id, material_id, serial_number, lot_id, disposition)
VALUES ('P100', regress.mat('FG-DOSER'), 'SN-0001', regress.lot('D-001'), 'unrestricted');
INSERT INTO plantsync.serial (site_id, material_id, serial_number, disposition)
VALUES ('P100', regress.mat('FG-SYRUP'), 'SN-0002', 'unrestricted');
\echo :SQLSTATE
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, serial_id, quantity, uom, to_location_id, source_system, external_id)
SELECT 'P100', 'goods_receipt', regress.mat('FG-DOSER'), regress.lot('D-001'), id, 1, 'EA', regress.loc('FG01'), 'mes', 'GR-SN-1'
  FROM plantsync.serial WHERE serial_number = 'SN-0001';
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, serial_id, quantity, uom, from_location_id, to_location_id, source_system, external_id)
SELECT 'P100', 'transfer', regress.mat('FG-DOSER'), regress.lot('D-001'), id, 2, 'EA', regress.loc('FG01'), regress.loc('RM01'), 'mes', 'TR-SN-1'
  FROM plantsync.serial WHERE serial_number = 'SN-0001';
\echo :SQLSTATE
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, to_location_id, source_system, external_id)
VALUES ('P100', 'transfer', regress.mat('FG-DOSER'), regress.lot('D-001'), 1, 'EA', regress.loc('FG01'), regress.loc('RM01'), 'mes', 'TR-SN-2');
\echo :SQLSTATE
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, serial_id, quantity, uom, from_location_id, order_id, source_system, external_id)
SELECT 'P100', 'consumption', regress.mat('RM-SUGAR'), regress.lot('S-001'), id, 1, 'KG', regress.loc('RM01'), regress.ord('PO-2001'), 'mes', 'C-12'
  FROM plantsync.serial WHERE serial_number = 'SN-0001';
\echo :SQLSTATE

-- Append-only: no UPDATE, DELETE or TRUNCATE, not even for the owner.
UPDATE plantsync.material_movement SET quantity = 400 WHERE external_id = 'C-1';
\echo :SQLSTATE
DELETE FROM plantsync.material_movement WHERE external_id = 'C-1';
\echo :SQLSTATE
TRUNCATE plantsync.material_movement CASCADE;
\echo :SQLSTATE

-- Corrections are reversals: same material, lot and quantity, sides swapped.
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, reverses_movement_id, source_system, external_id, reason)
SELECT 'P100', 'reversal', material_id, lot_id, 400, 'G', id, 'mes', 'R-1', 'wrong quantity'
  FROM plantsync.material_movement WHERE external_id = 'C-1';
\echo :SQLSTATE
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, reverses_movement_id, source_system, external_id, reason)
SELECT 'P100', 'reversal', material_id, lot_id, quantity, uom, id, 'mes', 'R-1', 'wrong lot'
  FROM plantsync.material_movement WHERE external_id = 'C-1'
RETURNING movement_type, base_quantity, from_location_id IS NULL AS from_empty, to_location_id = regress.loc('RM01') AS back_to_rm01;
-- Each movement is reversed once; a reversal is not reversed.
\set VERBOSITY terse
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, reverses_movement_id, source_system, external_id)
SELECT 'P100', 'reversal', material_id, lot_id, quantity, uom, id, 'mes', 'R-2'
  FROM plantsync.material_movement WHERE external_id = 'C-1';
\echo :SQLSTATE
\set VERBOSITY default
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, reverses_movement_id, source_system, external_id)
SELECT 'P100', 'reversal', material_id, lot_id, quantity, uom, id, 'mes', 'R-3'
  FROM plantsync.material_movement WHERE external_id = 'R-1';
\echo :SQLSTATE
-- The ledger belongs to the MES.
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, quantity, uom, to_location_id, source_system, external_id)
VALUES ('P100', 'goods_receipt', regress.mat('PK-BOTTLE'), 10, 'EA', regress.loc('RM01'), 'erp', 'GR-9');
\echo :SQLSTATE
SET plantsync.source_system = 'mes';

-- Status change: a ledger record of a stock-type move, no quantity change.
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, to_location_id, from_stock_type, to_stock_type, source_system, external_id)
VALUES ('P100', 'status_change', regress.mat('RM-SUGAR'), regress.lot('S-002'), 200, 'KG', regress.loc('RM01'), regress.loc('RM01'), 'quality', 'unrestricted', 'mes', 'SC-1');
\set VERBOSITY terse
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, to_location_id, from_stock_type, to_stock_type, source_system, external_id)
VALUES ('P100', 'status_change', regress.mat('RM-SUGAR'), regress.lot('S-002'), 200, 'KG', regress.loc('RM01'), regress.loc('RM01'), 'quality', 'quality', 'mes', 'SC-2');
\echo :SQLSTATE
\set VERBOSITY default

-- Balances, derived from the ledger.
SELECT m.material_number, l.lot_number, s.location_code, b.stock_type, b.base_quantity, b.base_uom
  FROM plantsync.inventory_balance b
  JOIN plantsync.material m ON m.id = b.material_id
  JOIN plantsync.storage_location s ON s.id = b.storage_location_id
  LEFT JOIN plantsync.lot l ON l.id = b.lot_id
 ORDER BY 1, 2, 3;
RESET plantsync.source_system;
