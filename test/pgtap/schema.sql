-- pgTAP: the installed schema is what the documentation promises: tables,
-- keys, plant scoping, indexes, comments, guard triggers and script hygiene.
BEGIN;
SELECT * FROM no_plan();

SELECT tables_are('plantsync', ARRAY[
    'source_system', 'uom', 'site', 'equipment', 'storage_location', 'material', 'uom_conversion',
    'bom', 'bom_item', 'routing', 'routing_operation', 'work_center_parameter',
    'production_order', 'production_operation', 'production_confirmation', 'downtime_event',
    'lot', 'sublot', 'serial', 'material_movement',
    'inspection_plan', 'inspection_characteristic', 'inspection_lot', 'inspection_result', 'usage_decision',
    'nonconformance', 'capa_action', 'shipment', 'shipment_line', 'maintenance_counter', 'maintenance_trigger',
    'state_machine', 'state', 'state_transition', 'state_change',
    'entity', 'column_owner', 'system_role', 'ownership_override',
    'event_source', 'aggregate_sequence', 'event', 'event_default', 'endpoint', 'route', 'delivery', 'delivery_default',
    'delivery_action', 'contract_subject', 'contract', 'endpoint_secret', 'endpoint_state', 'delivery_attempt', 'poll', 'poll_state',
    'delivery_attempt_default', 'genealogy_link', 'erp_snapshot', 'erp_inventory', 'erp_order', 'erp_posting',
    'reconciliation_tolerance', 'reconciliation_run', 'discrepancy', 'inbox', 'audit_log', 'site_role', 'sla', 'alert', 'usage_decision_signature', 'machine_signal', 'signal_equipment', 'dialect_mapping',
    'erp_batch', 'b2mml_import', 'stock_balance', 'erp_stock'],
    'plantsync has exactly the documented tables');
SELECT views_are('plantsync', ARRAY['inventory_balance', 'column_ownership', 'event_type', 'dead_letter', 'worker_status',
                                    'reconciliation_kpi', 'discrepancy_kpi', 'message_path', 'endpoint_health', 'integration_kpi', 'contract_usage',
                                    'shipment_readiness'], 'plantsync has exactly the documented views');

-- Every table has a primary key.
SELECT has_pk('plantsync', c.relname::name, format('%s has a primary key', c.relname))
  FROM pg_class c WHERE c.relnamespace = 'plantsync'::regnamespace AND c.relkind = 'r' ORDER BY c.relname;

-- Every row that belongs to a plant carries its site.
SELECT col_not_null('plantsync', e.entity, 'site_id', format('%s.site_id is NOT NULL', e.entity))
  FROM plantsync.entity e WHERE e.entity NOT IN ('uom_conversion', 'delivery') ORDER BY e.entity;
SELECT fk_ok('plantsync', e.entity, 'site_id', 'plantsync', 'site', 'site_id')
  FROM plantsync.entity e WHERE e.entity NOT IN ('site', 'delivery') ORDER BY e.entity;

-- Keys are unique across plants: every unique index of a plant table leads
-- with the site or contains a globally unique (uuid) column.
SELECT is_empty($$
    SELECT i.indexrelid::regclass::text
      FROM pg_index i
      JOIN pg_class t ON t.oid = i.indrelid AND t.relnamespace = 'plantsync'::regnamespace
     WHERE i.indisunique
       AND t.relname IN (SELECT entity FROM plantsync.entity WHERE entity NOT IN ('site'))
       AND NOT EXISTS (
            SELECT 1 FROM unnest(i.indkey) k
              JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k
             WHERE a.attname = 'site_id' OR a.atttypid = 'uuid'::regtype)
       AND i.indexprs IS NULL $$,
    'every unique key of a plant table includes site_id or a uuid');

-- Child rows reference parents through (site_id, id): a row never points into another plant.
SELECT is_empty($$
    SELECT c.conname FROM pg_constraint c
     WHERE c.connamespace = 'plantsync'::regnamespace AND c.contype = 'f'
       AND c.conrelid::regclass::text IN (SELECT 'plantsync.' || entity FROM plantsync.entity)
       AND c.confrelid::regclass::text IN (SELECT 'plantsync.' || entity FROM plantsync.entity WHERE entity <> 'site')
       AND array_length(c.conkey, 1) = 1
       AND c.conname NOT IN ('material_movement_reverses_fk', 'maintenance_trigger_downtime_fk') $$,
    'foreign keys between plant tables include site_id');

-- The access paths later capabilities rely on are indexed.
SELECT has_index('plantsync', 'material_movement', 'material_movement_lot_idx', ARRAY['lot_id', 'posted_at']);
SELECT has_index('plantsync', 'material_movement', 'material_movement_order_idx', ARRAY['order_id', 'movement_type']);
SELECT has_index('plantsync', 'material_movement', 'material_movement_reversed_once', ARRAY['reverses_movement_id']);
SELECT has_index('plantsync', 'state_change', 'state_change_entity_idx', ARRAY['entity', 'entity_id', 'changed_at']);
SELECT has_index('plantsync', 'production_order', 'production_order_status_idx', ARRAY['site_id', 'status', 'due_date']);
SELECT has_index('plantsync', 'lot', 'lot_production_order_idx', ARRAY['production_order_id']);
SELECT has_index('plantsync', 'serial', 'serial_lot_idx', ARRAY['lot_id']);
SELECT has_index('plantsync', 'inspection_lot', 'inspection_lot_lot_idx', ARRAY['lot_id']);
SELECT has_index('plantsync', 'shipment_line', 'shipment_line_lot_idx', ARRAY['lot_id']);
SELECT has_index('plantsync', 'production_confirmation', 'production_confirmation_order_idx', ARRAY['order_id', 'confirmed_at']);
SELECT index_is_unique('plantsync', 'production_order', 'production_order_site_erp_ref_key');
SELECT index_is_unique('plantsync', 'material_movement', 'material_movement_external_id_key');

-- BI tools show comments: every table, view and column has one.
SELECT is_empty($$
    SELECT c.relname FROM pg_class c
     WHERE c.relnamespace = 'plantsync'::regnamespace AND c.relkind IN ('r', 'v', 'p')
       AND obj_description(c.oid, 'pg_class') IS NULL $$,
    'every table and view has a comment');
SELECT is_empty($$
    SELECT c.relname || '.' || a.attname FROM pg_class c
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     WHERE c.relnamespace = 'plantsync'::regnamespace AND c.relkind IN ('r', 'v', 'p') AND NOT c.relispartition
       AND col_description(c.oid, a.attnum) IS NULL $$,
    'every column has a comment');
SELECT is_empty($$
    SELECT p.proname FROM pg_proc p
     WHERE p.pronamespace = 'plantsync'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL $$,
    'every function has a comment');

-- Every governed table carries the guard; append-only ledgers refuse TRUNCATE.
SELECT has_trigger('plantsync', e.entity, 'plantsync_guard', format('%s has the guard trigger', e.entity))
  FROM plantsync.entity e ORDER BY e.entity;
SELECT has_trigger('plantsync', e.entity, 'plantsync_refuse_truncate', format('%s refuses TRUNCATE', e.entity))
  FROM plantsync.entity e WHERE e.append_only ORDER BY e.entity;
SELECT is_empty($$
    SELECT e.entity FROM plantsync.entity e
     WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.relname = e.entity AND c.relnamespace = 'plantsync'::regnamespace)
        OR (e.state_column IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM pg_attribute a WHERE a.attrelid = format('plantsync.%I', e.entity)::regclass AND a.attname = e.state_column))
        OR NOT EXISTS (
            SELECT 1 FROM pg_attribute a WHERE a.attrelid = format('plantsync.%I', e.entity)::regclass AND a.attname = e.key_column) $$,
    'every registered entity, state column and key column exists');
SELECT is_empty($$
    SELECT co.entity || '.' || co.column_name FROM plantsync.column_owner co
     WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                        WHERE a.attrelid = format('plantsync.%I', co.entity)::regclass AND a.attname = co.column_name) $$,
    'every column named in column_owner exists');

-- Script hygiene (extension security).
SELECT is_empty($$
    SELECT p.proname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
     WHERE p.pronamespace = 'plantsync'::regnamespace AND l.lanname <> 'c'
       AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) s WHERE s LIKE 'search_path=%') $$,
    'every SQL and PL/pgSQL function pins search_path');
SELECT is_empty($$
    SELECT p.proname FROM pg_proc p
     WHERE p.pronamespace = 'plantsync'::regnamespace AND p.prosecdef
       AND has_function_privilege('public', p.oid, 'EXECUTE') $$,
    'no SECURITY DEFINER function is executable by PUBLIC');
SELECT ok(NOT has_function_privilege('public', 'plantsync.override_ownership(text)', 'EXECUTE'),
          'override_ownership is not executable by PUBLIC');
SELECT ok(NOT has_table_privilege('public', 'plantsync.endpoint_secret', 'SELECT'),
          'endpoint secrets are not readable by PUBLIC');
SELECT is_empty($$
    SELECT c.relname FROM pg_class c
     WHERE c.relnamespace = 'plantsync'::regnamespace AND c.relkind = 'v'
       AND NOT coalesce('security_invoker=true' = ANY (c.reloptions), false) $$,
    'every view is security_invoker');
SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'plantsync'), false, 'the extension is not relocatable');
SELECT is_empty($$
    SELECT c.relname FROM pg_class c
     WHERE c.relnamespace = 'plantsync'::regnamespace AND c.relkind IN ('r', 'p')
       AND c.relpersistence <> 'p' $$,
    'no table is UNLOGGED or temporary');
-- pg_dump keeps plant data: every table is registered as extension configuration.
SELECT is_empty($$
    SELECT c.relname FROM pg_class c, pg_extension e
     WHERE e.extname = 'plantsync' AND c.relnamespace = 'plantsync'::regnamespace AND c.relkind = 'r'
       AND NOT c.oid = ANY (e.extconfig) $$,
    'every table is dumped by pg_dump');

SELECT * FROM finish();
ROLLBACK;
