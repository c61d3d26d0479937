-- State machines declared as data and enforced by the guard trigger: valid
-- walks, every kind of refusal, the recorded history, and a plant adding a
-- transition without a release.
\set SHOW_CONTEXT never

-- An order walks from released to closed; each system moves what it owns.
SET plantsync.source_system = 'mes';
BEGIN;
SET LOCAL plantsync.change_reason = 'shift A start';
UPDATE plantsync.production_order SET status = 'in_progress' WHERE order_number = 'PO-1001';
COMMIT;
UPDATE plantsync.production_order SET status = 'held' WHERE order_number = 'PO-1001';
UPDATE plantsync.production_order SET status = 'in_progress' WHERE order_number = 'PO-1001';

-- Forbidden transitions name the entity, its key, both states and the way out.
UPDATE plantsync.production_order SET status = 'closed' WHERE order_number = 'PO-1001';
\echo :SQLSTATE
UPDATE plantsync.production_order SET status = 'draft' WHERE order_number = 'PO-1001';
\echo :SQLSTATE
-- An unknown state is refused the same way.
UPDATE plantsync.production_order SET status = 'finished' WHERE order_number = 'PO-1001';
\echo :SQLSTATE
-- A NULL state is refused by the guard before the NOT NULL constraint.
UPDATE plantsync.production_order SET status = NULL WHERE order_number = 'PO-1001';
\echo :SQLSTATE

UPDATE plantsync.production_order SET status = 'completed' WHERE order_number = 'PO-1001';
SET plantsync.source_system = 'erp';
UPDATE plantsync.production_order SET status = 'closed' WHERE order_number = 'PO-1001';
-- Nothing leaves a final state.
UPDATE plantsync.production_order SET status = 'released' WHERE order_number = 'PO-1001';
\echo :SQLSTATE

-- New rows start in an initial state only.
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
VALUES ('P100', 'PO-1002', regress.mat('FG-SYRUP'), 10, 'EA', 'completed', '2026-12-20');
\echo :SQLSTATE
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
VALUES ('P100', 'PO-1002', regress.mat('FG-SYRUP'), 10, 'EA', 'draft', '2026-12-20');

-- The history: when, by which role, for which system and why.
SELECT entity_key, from_state, to_state, changed_by, source_system, reason
  FROM plantsync.state_change WHERE entity = 'production_order' ORDER BY id;

-- A failed statement leaves no history behind.
SELECT count(*) AS history_rows FROM plantsync.state_change;
UPDATE plantsync.production_order SET status = 'completed' WHERE order_number = 'PO-1002';
SELECT count(*) AS history_rows FROM plantsync.state_change;
BEGIN;
UPDATE plantsync.production_order SET status = 'released' WHERE order_number = 'PO-1002';
ROLLBACK;
SELECT count(*) AS history_rows, (SELECT status FROM plantsync.production_order WHERE order_number = 'PO-1002') AS status
  FROM plantsync.state_change;

-- A plant changes its transitions as data; the change applies at once, in
-- this session too.
DELETE FROM plantsync.state_transition WHERE machine = 'production_order' AND from_state = 'draft' AND to_state = 'cancelled';
UPDATE plantsync.production_order SET status = 'cancelled' WHERE order_number = 'PO-1002';
\echo :SQLSTATE
INSERT INTO plantsync.state_transition (machine, from_state, to_state, owner_system, description)
VALUES ('production_order', 'draft', 'cancelled', 'erp', 'ERP cancels a draft.');
UPDATE plantsync.production_order SET status = 'cancelled' WHERE order_number = 'PO-1002';
UPDATE plantsync.production_order SET status = 'draft' WHERE order_number = 'PO-1002';
\echo :SQLSTATE
-- An order to cancel later.
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
VALUES ('P100', 'PO-1003', regress.mat('FG-SYRUP'), 10, 'EA', 'draft', '2026-12-20');

-- Operations: the MES dispatches and runs them.
SET plantsync.source_system = 'mes';
UPDATE plantsync.production_operation SET status = 'dispatched' WHERE id = regress.op('PO-1001', '0010');
UPDATE plantsync.production_operation SET status = 'running', actual_start = '2026-12-01 06:00+00' WHERE id = regress.op('PO-1001', '0010');
UPDATE plantsync.production_operation SET status = 'completed' WHERE id = regress.op('PO-1001', '0020');
\echo :SQLSTATE

-- Lot disposition: MES and QMS each own their transitions.
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition, production_order_id)
VALUES ('P100', regress.mat('FG-SYRUP'), 'FG-0001', 'planned', regress.ord('PO-1001'));
UPDATE plantsync.lot SET disposition = 'in_process' WHERE lot_number = 'FG-0001';
UPDATE plantsync.lot SET disposition = 'restricted' WHERE lot_number = 'FG-0001';
-- Only quality releases a restricted lot.
UPDATE plantsync.lot SET disposition = 'unrestricted' WHERE lot_number = 'FG-0001';
\echo :SQLSTATE
SET plantsync.source_system = 'qms';
UPDATE plantsync.lot SET disposition = 'unrestricted' WHERE lot_number = 'FG-0001';
UPDATE plantsync.lot SET disposition = 'blocked' WHERE lot_number = 'FG-0001';
UPDATE plantsync.lot SET disposition = 'consumed' WHERE lot_number = 'FG-0001';
\echo :SQLSTATE

-- Inspection lot, nonconformance and CAPA under the QMS.
INSERT INTO plantsync.inspection_lot (site_id, inspection_lot_number, lot_id, production_order_id, inspection_type, quantity, uom)
VALUES ('P100', 'IL-1', regress.lot('FG-0001'), regress.ord('PO-1001'), 'final', 1000, 'EA');
UPDATE plantsync.inspection_lot SET status = 'accepted' WHERE inspection_lot_number = 'IL-1';
\echo :SQLSTATE
UPDATE plantsync.inspection_lot SET status = 'released' WHERE inspection_lot_number = 'IL-1';
UPDATE plantsync.inspection_lot SET status = 'results_recorded' WHERE inspection_lot_number = 'IL-1';
UPDATE plantsync.inspection_lot SET status = 'rejected' WHERE inspection_lot_number = 'IL-1';
-- The ERP acknowledges the stock posting, not the QMS.
UPDATE plantsync.inspection_lot SET status = 'stock_posted' WHERE inspection_lot_number = 'IL-1';
\echo :SQLSTATE
INSERT INTO plantsync.nonconformance (site_id, nc_number, title, lot_id)
VALUES ('P100', 'NC-1', 'Viscosity out of specification', regress.lot('FG-0001'));
UPDATE plantsync.nonconformance SET status = 'closed' WHERE nc_number = 'NC-1';
\echo :SQLSTATE
UPDATE plantsync.nonconformance SET status = 'analysis' WHERE nc_number = 'NC-1';
INSERT INTO plantsync.capa_action (site_id, nonconformance_id, action_number, kind, description, responsible)
SELECT 'P100', id, '1', 'corrective', 'Recalibrate viscometer', 'QA lab' FROM plantsync.nonconformance WHERE nc_number = 'NC-1';
UPDATE plantsync.capa_action SET status = 'completed';
UPDATE plantsync.capa_action SET status = 'open';
\echo :SQLSTATE

-- Shipments under the ERP.
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.shipment (site_id, shipment_number, customer_code, status) VALUES ('P100', 'SH-1', 'C-42', 'shipped');
\echo :SQLSTATE
INSERT INTO plantsync.shipment (site_id, shipment_number, customer_code) VALUES ('P100', 'SH-1', 'C-42');
UPDATE plantsync.shipment SET status = 'delivered';
\echo :SQLSTATE

SELECT entity, count(*) AS changes FROM plantsync.state_change GROUP BY entity ORDER BY entity;
RESET plantsync.source_system;
