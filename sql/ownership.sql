-- System-of-record ownership: who may create, change and delete what; the
-- administrator's override with its mandatory reason and its record; roles
-- bound to the systems they may write for.
\set SHOW_CONTEXT never

-- Effective owners of a production order's columns.
SELECT column_name, owner_system, split
  FROM plantsync.column_ownership WHERE entity = 'production_order' ORDER BY column_name;

-- ERP owns quantity and due date; MES owns execution status and line.
SET plantsync.source_system = 'mes';
UPDATE plantsync.production_order SET quantity = 1200 WHERE order_number = 'PO-1003';
\echo :SQLSTATE
UPDATE plantsync.production_order SET quantity = 1200, due_date = '2027-01-10', mes_ref = 'J-1' WHERE order_number = 'PO-1003';
\echo :SQLSTATE
UPDATE plantsync.production_order SET mes_ref = 'J-1002' WHERE order_number = 'PO-1003';
SET plantsync.source_system = 'erp';
UPDATE plantsync.production_order SET quantity = 1200, due_date = '2027-01-10' WHERE order_number = 'PO-1003';
UPDATE plantsync.production_order SET mes_ref = 'J-1' WHERE order_number = 'PO-1003';
\echo :SQLSTATE
-- Writing a column with its unchanged value is not a change.
UPDATE plantsync.production_order SET mes_ref = 'J-1002', quantity = 1300 WHERE order_number = 'PO-1003';

-- Creating and deleting rows belongs to the entity's owner.
SET plantsync.source_system = 'qms';
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) VALUES ('P100', 'RM-X', 'X', 'KG');
\echo :SQLSTATE
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) VALUES ('P100', 'RM-X', 'X', 'KG');
SET plantsync.source_system = 'mes';
DELETE FROM plantsync.material WHERE material_number = 'RM-X';
\echo :SQLSTATE
SET plantsync.source_system = 'erp';
DELETE FROM plantsync.material WHERE material_number = 'RM-X';
-- QMS owns the quality disposition, MES the lot itself.
SET plantsync.source_system = 'qms';
INSERT INTO plantsync.lot (site_id, material_id, lot_number) VALUES ('P100', regress.mat('RM-SUGAR'), 'S-999');
\echo :SQLSTATE
-- The hub owns plant configuration.
SET plantsync.source_system = 'erp';
UPDATE plantsync.storage_location SET name = 'Raw' WHERE location_code = 'RM01';
\echo :SQLSTATE

-- The administrator's override: a reason is mandatory.
SET plantsync.source_system = 'mes';
SELECT plantsync.override_ownership(NULL);
\echo :SQLSTATE
SELECT plantsync.override_ownership('   ');
\echo :SQLSTATE
SELECT plantsync.override_ownership('outside a transaction');
UPDATE plantsync.production_order SET quantity = 999 WHERE order_number = 'PO-1003';
\echo :SQLSTATE
BEGIN;
SELECT plantsync.override_ownership('ERP interface down; quantity corrected per ticket INC-7');
UPDATE plantsync.production_order SET quantity = 999, due_date = '2027-01-11' WHERE order_number = 'PO-1003';
COMMIT;
SELECT entity, entity_key, operation, columns, owners, source_system, overridden_by, reason
  FROM plantsync.ownership_override;
-- It ends with the transaction...
UPDATE plantsync.production_order SET quantity = 998 WHERE order_number = 'PO-1003';
\echo :SQLSTATE
-- ...and with the savepoint it was given in.
BEGIN;
SAVEPOINT s1;
SELECT plantsync.override_ownership('trying something');
ROLLBACK TO SAVEPOINT s1;
UPDATE plantsync.production_order SET quantity = 998 WHERE order_number = 'PO-1003';
\echo :SQLSTATE
ROLLBACK;
-- A refused write in an overridden transaction leaves no override record.
SELECT count(*) AS overrides FROM plantsync.ownership_override;

-- Only roles granted EXECUTE may override.
CREATE ROLE regress_mes_adapter;
GRANT USAGE ON SCHEMA plantsync TO regress_mes_adapter;
GRANT SELECT ON ALL TABLES IN SCHEMA plantsync TO regress_mes_adapter;
GRANT UPDATE ON plantsync.production_order TO regress_mes_adapter;
SET ROLE regress_mes_adapter;
SELECT plantsync.override_ownership('not mine to give');
\echo :SQLSTATE
RESET ROLE;

-- Roles bound to systems: once a system lists its roles, no other role may
-- declare it.
CREATE ROLE regress_erp_adapter;
GRANT USAGE ON SCHEMA plantsync TO regress_erp_adapter;
GRANT SELECT ON ALL TABLES IN SCHEMA plantsync TO regress_erp_adapter;
GRANT UPDATE ON plantsync.production_order TO regress_erp_adapter;
INSERT INTO plantsync.system_role (system_code, role_name) VALUES ('erp', 'regress_erp_adapter');
SET ROLE regress_mes_adapter;
SET plantsync.source_system = 'erp';
UPDATE plantsync.production_order SET quantity = 997 WHERE order_number = 'PO-1003';
\echo :SQLSTATE
RESET ROLE;
SET ROLE regress_erp_adapter;
SET plantsync.source_system = 'erp';
UPDATE plantsync.production_order SET quantity = 997 WHERE order_number = 'PO-1003';
-- It has no rights on the history, yet its state changes are recorded under its name.
INSERT INTO plantsync.state_change (entity, entity_id, entity_key, state_column, to_state, changed_by, source_system)
VALUES ('production_order', regress.ord('PO-1003'), 'PO-1003', 'status', 'closed', 'someone_else', 'erp');
\echo :SQLSTATE
UPDATE plantsync.production_order SET status = 'released' WHERE order_number = 'PO-1003';
RESET ROLE;
SELECT entity_key, from_state, to_state, changed_by, source_system FROM plantsync.state_change
 WHERE entity_key = 'PO-1003' ORDER BY id;
-- A default per role, the PostgreSQL way.
ALTER ROLE regress_mes_adapter SET plantsync.source_system = 'mes';
SELECT rolname, setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE rolname LIKE 'regress_%';

DELETE FROM plantsync.system_role;
REVOKE ALL ON ALL TABLES IN SCHEMA plantsync FROM regress_mes_adapter, regress_erp_adapter;
REVOKE ALL ON SCHEMA plantsync FROM regress_mes_adapter, regress_erp_adapter;
ALTER ROLE regress_mes_adapter RESET ALL;
DROP ROLE regress_mes_adapter;
DROP ROLE regress_erp_adapter;
RESET plantsync.source_system;
