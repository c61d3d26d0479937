-- System-of-record ownership: which system (erp, mes, qms or the hub) owns
-- each entity and, where ownership is split, each column. The guard trigger
-- (src/state_machine/guard.c) refuses writes from a non-owner; an
-- administrator may override inside one transaction with a reason, and every
-- overridden write is recorded.

CREATE TABLE plantsync.entity (
    entity name PRIMARY KEY,
    owner_system text REFERENCES plantsync.source_system,
    key_column name NOT NULL,
    state_column name,
    machine text REFERENCES plantsync.state_machine,
    append_only boolean NOT NULL DEFAULT false,
    record_history boolean NOT NULL DEFAULT true,
    description text NOT NULL DEFAULT '',
    CONSTRAINT entity_state_column_has_machine CHECK ((state_column IS NULL) = (machine IS NULL)),
    builtin boolean NOT NULL DEFAULT false
);
COMMENT ON COLUMN plantsync.entity.builtin IS 'True for rows installed by the extension; pg_dump keeps only the rows a plant added.';
COMMENT ON TABLE plantsync.entity IS 'Canonical entities (tables of schema plantsync) governed by the guard trigger: owner, business key, state machine, append-only flag.';
COMMENT ON COLUMN plantsync.entity.entity IS 'Table name in schema plantsync.';
COMMENT ON COLUMN plantsync.entity.owner_system IS 'System that owns the entity: creates and deletes rows and changes every column not listed in plantsync.column_owner. NULL: any system.';
COMMENT ON COLUMN plantsync.entity.key_column IS 'Column holding the business key named in error messages and history (e.g. order_number).';
COMMENT ON COLUMN plantsync.entity.state_column IS 'Column holding the state, for entities with a state machine.';
COMMENT ON COLUMN plantsync.entity.machine IS 'State machine enforced on state_column.';
COMMENT ON COLUMN plantsync.entity.append_only IS 'True for ledgers: UPDATE and DELETE are refused; corrections are new rows.';
COMMENT ON COLUMN plantsync.entity.record_history IS 'Whether state changes are recorded in plantsync.state_change (off for deliveries, whose attempts are their history).';
COMMENT ON COLUMN plantsync.entity.description IS 'What the entity is.';

CREATE TABLE plantsync.column_owner (
    entity name NOT NULL REFERENCES plantsync.entity ON DELETE CASCADE,
    column_name name NOT NULL,
    owner_system text REFERENCES plantsync.source_system,
    PRIMARY KEY (entity, column_name),
    builtin boolean NOT NULL DEFAULT false
);
COMMENT ON COLUMN plantsync.column_owner.builtin IS 'True for rows installed by the extension; pg_dump keeps only the rows a plant added.';
COMMENT ON TABLE plantsync.column_owner IS 'Split ownership: columns whose owner differs from their entity''s owner (e.g. MES owns a production order''s status, QMS a lot''s disposition).';
COMMENT ON COLUMN plantsync.column_owner.entity IS 'Entity (table name).';
COMMENT ON COLUMN plantsync.column_owner.column_name IS 'Column of the entity.';
COMMENT ON COLUMN plantsync.column_owner.owner_system IS 'System that owns the column; NULL: any system may change it.';

CREATE TABLE plantsync.system_role (
    system_code text NOT NULL REFERENCES plantsync.source_system,
    role_name name NOT NULL,
    PRIMARY KEY (system_code, role_name)
);
COMMENT ON TABLE plantsync.system_role IS 'Which database roles may write for a system. When a system has rows here, a session may declare plantsync.source_system = that system only if its role is a member of one of them (superusers excepted); a system without rows may be declared by any role. Give each role its default with ALTER ROLE ... SET plantsync.source_system.';
COMMENT ON COLUMN plantsync.system_role.system_code IS 'System (erp, mes, qms, hub).';
COMMENT ON COLUMN plantsync.system_role.role_name IS 'Database role (or group role) allowed to write for it.';

CREATE TABLE plantsync.ownership_override (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text,
    entity text NOT NULL,
    entity_id uuid,
    entity_key text,
    operation text NOT NULL
        CONSTRAINT ownership_override_operation_check CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),
    columns text[] NOT NULL,
    owners text[] NOT NULL,
    source_system text NOT NULL,
    overridden_by name NOT NULL,
    reason text NOT NULL,
    overridden_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX ownership_override_entity_idx ON plantsync.ownership_override (entity, entity_id);
COMMENT ON TABLE plantsync.ownership_override IS 'Every write that an administrator let through against system-of-record ownership, with who, when and why (a manual touch, counted by the KPIs).';
COMMENT ON COLUMN plantsync.ownership_override.id IS 'Key of the record.';
COMMENT ON COLUMN plantsync.ownership_override.site_id IS 'Plant of the row written.';
COMMENT ON COLUMN plantsync.ownership_override.entity IS 'Entity written.';
COMMENT ON COLUMN plantsync.ownership_override.entity_id IS 'Key (id) of the row written.';
COMMENT ON COLUMN plantsync.ownership_override.entity_key IS 'Business key of the row written.';
COMMENT ON COLUMN plantsync.ownership_override.operation IS 'INSERT, UPDATE or DELETE.';
COMMENT ON COLUMN plantsync.ownership_override.columns IS 'Columns written against their owner (the row itself for INSERT and DELETE: {*}).';
COMMENT ON COLUMN plantsync.ownership_override.owners IS 'Owning system of each of those columns.';
COMMENT ON COLUMN plantsync.ownership_override.source_system IS 'System the session wrote for.';
COMMENT ON COLUMN plantsync.ownership_override.overridden_by IS 'Role that called plantsync.override_ownership().';
COMMENT ON COLUMN plantsync.ownership_override.reason IS 'Reason given to plantsync.override_ownership().';
COMMENT ON COLUMN plantsync.ownership_override.overridden_at IS 'When the write was made.';
COMMENT ON COLUMN plantsync.ownership_override.transaction_id IS 'Transaction of the write.';

CREATE FUNCTION plantsync.override_ownership(reason text)
RETURNS void
AS 'MODULE_PATHNAME', 'plantsync_override_ownership'
LANGUAGE C VOLATILE;
REVOKE EXECUTE ON FUNCTION plantsync.override_ownership(text) FROM PUBLIC;
COMMENT ON FUNCTION plantsync.override_ownership(text) IS
'Lets the rest of the current transaction write columns owned by other systems. Needs a non-empty reason; each overridden write is recorded in plantsync.ownership_override. Only roles granted EXECUTE (administrators) may call it.';

CREATE FUNCTION plantsync.config_changed() RETURNS trigger
AS 'MODULE_PATHNAME', 'plantsync_config_changed'
LANGUAGE C;
COMMENT ON FUNCTION plantsync.config_changed() IS
'Trigger function: tells every session that ownership or state machine configuration changed, so the guard reloads it at their next statement.';

INSERT INTO plantsync.entity (entity, owner_system, key_column, state_column, machine, append_only, description) VALUES
    ('site', 'hub', 'site_id', NULL, NULL, false, 'Plants.'),
    ('equipment', 'hub', 'equipment_code', NULL, NULL, false, 'Equipment hierarchy.'),
    ('storage_location', 'hub', 'location_code', NULL, NULL, false, 'Storage locations.'),
    ('work_center_parameter', 'hub', 'parameter_name', NULL, NULL, false, 'Plant-specific work-center parameters.'),
    ('material', 'erp', 'material_number', NULL, NULL, false, 'Material master (plant view).'),
    ('uom_conversion', 'erp', 'id', NULL, NULL, false, 'Unit conversions.'),
    ('bom', 'erp', 'id', NULL, NULL, false, 'Bills of materials.'),
    ('bom_item', 'erp', 'item_number', NULL, NULL, false, 'BOM components.'),
    ('routing', 'erp', 'id', NULL, NULL, false, 'Routings.'),
    ('routing_operation', 'erp', 'operation_number', NULL, NULL, false, 'Routing operations.'),
    ('production_order', 'erp', 'order_number', 'status', 'production_order', false, 'Production orders.'),
    ('production_operation', 'erp', 'operation_number', 'status', 'production_operation', false, 'Order operations (jobs).'),
    ('production_confirmation', 'mes', 'external_id', NULL, NULL, false, 'Production confirmations.'),
    ('downtime_event', 'mes', 'external_id', NULL, NULL, false, 'Downtime.'),
    ('lot', 'mes', 'lot_number', 'disposition', 'material_disposition', false, 'Lots.'),
    ('sublot', 'mes', 'sublot_number', NULL, NULL, false, 'Sublots.'),
    ('serial', 'mes', 'serial_number', 'disposition', 'material_disposition', false, 'Serials.'),
    ('material_movement', 'mes', 'external_id', NULL, NULL, true, 'Movement ledger.'),
    ('inspection_plan', 'qms', 'plan_code', NULL, NULL, false, 'Inspection plans.'),
    ('inspection_characteristic', 'qms', 'characteristic_number', NULL, NULL, false, 'Inspection characteristics.'),
    ('inspection_lot', 'qms', 'inspection_lot_number', 'status', 'inspection_lot', false, 'Inspection lots.'),
    ('inspection_result', 'qms', 'external_id', NULL, NULL, true, 'Inspection results (every reading kept).'),
    ('usage_decision', 'qms', 'inspection_lot_id', NULL, NULL, false, 'Usage decisions.'),
    ('nonconformance', 'qms', 'nc_number', 'status', 'nonconformance', false, 'Nonconformances.'),
    ('capa_action', 'qms', 'action_number', 'status', 'capa_action', false, 'CAPA actions.'),
    ('shipment', 'erp', 'shipment_number', 'status', 'shipment', false, 'Shipments.'),
    ('shipment_line', 'erp', 'line_number', NULL, NULL, false, 'Shipment lines.'),
    ('maintenance_counter', 'mes', 'counter_name', NULL, NULL, false, 'Equipment counters.'),
    ('maintenance_trigger', 'hub', 'id', NULL, NULL, false, 'Maintenance requests.');

INSERT INTO plantsync.column_owner (entity, column_name, owner_system) VALUES
    ('production_order', 'status', 'mes'),
    ('production_order', 'line_id', 'mes'),
    ('production_order', 'mes_ref', 'mes'),
    ('production_order', 'qms_ref', 'qms'),
    ('production_order', 'updated_at', NULL),
    ('production_operation', 'status', 'mes'),
    ('production_operation', 'actual_start', 'mes'),
    ('production_operation', 'actual_end', 'mes'),
    ('production_operation', 'mes_ref', 'mes'),
    ('production_operation', 'updated_at', NULL),
    ('production_confirmation', 'erp_document', 'erp'),
    ('lot', 'disposition', 'qms'),
    ('lot', 'qms_ref', 'qms'),
    ('lot', 'erp_ref', 'erp'),
    ('lot', 'updated_at', NULL),
    ('serial', 'disposition', 'qms'),
    ('serial', 'updated_at', NULL),
    ('inspection_lot', 'erp_ref', 'erp'),
    ('inspection_lot', 'updated_at', NULL),
    ('nonconformance', 'updated_at', NULL),
    ('capa_action', 'updated_at', NULL),
    ('shipment', 'updated_at', NULL),
    ('maintenance_counter', 'current_value', 'mes'),
    ('maintenance_counter', 'threshold', 'hub'),
    ('maintenance_counter', 'updated_at', NULL),
    ('maintenance_trigger', 'status', NULL),
    ('maintenance_trigger', 'external_ref', NULL);

CREATE VIEW plantsync.column_ownership WITH (security_invoker = true) AS
SELECT e.entity, a.attname AS column_name,
       CASE WHEN co.entity IS NOT NULL THEN co.owner_system ELSE e.owner_system END AS owner_system,
       co.entity IS NOT NULL AS split,
       a.attname = e.state_column AS is_state_column
  FROM plantsync.entity e
  JOIN pg_catalog.pg_class c ON c.relname = e.entity
   AND c.relnamespace = 'plantsync'::regnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN plantsync.column_owner co ON co.entity = e.entity AND co.column_name = a.attname;
COMMENT ON VIEW plantsync.column_ownership IS 'Effective owner of every column of every governed entity (transitions may name their own owner, see plantsync.state_transition).';
COMMENT ON COLUMN plantsync.column_ownership.entity IS 'Entity (table name).';
COMMENT ON COLUMN plantsync.column_ownership.column_name IS 'Column.';
COMMENT ON COLUMN plantsync.column_ownership.owner_system IS 'System allowed to change the column; NULL: any.';
COMMENT ON COLUMN plantsync.column_ownership.split IS 'True when the column''s owner is set apart from its entity''s owner.';
COMMENT ON COLUMN plantsync.column_ownership.is_state_column IS 'True for the state column, whose transitions may name their own owner.';
