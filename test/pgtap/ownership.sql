-- pgTAP: system-of-record ownership. Creating a row of each entity is
-- refused (PS003) for every system but its owner; the owner gets past the
-- guard (and then meets the NOT NULL constraints of the empty row). Split
-- columns are writable by their owner only. Overrides are recorded.
BEGIN;
SELECT * FROM no_plan();
\ir fixtures/plant.sql

CREATE FUNCTION pg_temp.check_create(p_entity name) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    owner text := (SELECT owner_system FROM plantsync.entity WHERE entity = p_entity);
    sys text;
    stmt text := format('INSERT INTO plantsync.%I DEFAULT VALUES', p_entity);
BEGIN
    FOREACH sys IN ARRAY ARRAY['erp', 'mes', 'qms', 'hub'] LOOP
        PERFORM set_config('plantsync.source_system', sys, true);
        IF owner IS NULL OR sys = owner THEN
            RETURN NEXT throws_ok(stmt, '23502', NULL, format('%s: %s passes the guard (owner %s)', p_entity, sys, coalesce(owner, 'any')));
        ELSE
            RETURN NEXT throws_ok(stmt, 'PS003', NULL, format('%s: %s may not create it', p_entity, sys));
        END IF;
    END LOOP;
    PERFORM set_config('plantsync.source_system', 'hub', true);
END
$$;
SELECT pg_temp.check_create(entity) FROM plantsync.entity ORDER BY entity;

-- The production order's split columns, system by system.
CREATE FUNCTION pg_temp.check_column(p_entity name, p_column name, p_expr text, p_key text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    owner text := (SELECT owner_system FROM plantsync.column_ownership WHERE entity = p_entity AND column_name = p_column);
    sys text;
    stmt text := format('UPDATE plantsync.%I SET %I = %s WHERE site_id = ''T100'' AND %s', p_entity, p_column, p_expr, p_key);
BEGIN
    FOREACH sys IN ARRAY ARRAY['erp', 'mes', 'qms', 'hub'] LOOP
        PERFORM set_config('plantsync.source_system', sys, true);
        IF sys = owner THEN
            RETURN NEXT lives_ok(stmt, format('%s.%s: owner %s may change it', p_entity, p_column, sys));
        ELSE
            RETURN NEXT throws_ok(stmt, 'PS003', NULL, format('%s.%s: %s may not change it', p_entity, p_column, sys));
        END IF;
    END LOOP;
    PERFORM set_config('plantsync.source_system', 'hub', true);
END
$$;
SELECT pg_temp.check_column('production_order', 'quantity', 'quantity + 1', 'order_number = ''O-1''');
SELECT pg_temp.check_column('production_order', 'due_date', 'due_date + 1', 'order_number = ''O-1''');
SELECT pg_temp.check_column('production_order', 'priority', 'priority % 9 + 1', 'order_number = ''O-1''');
SELECT pg_temp.check_column('production_order', 'mes_ref', 'coalesce(mes_ref, '''') || ''x''', 'order_number = ''O-1''');
SELECT pg_temp.check_column('production_order', 'qms_ref', 'coalesce(qms_ref, '''') || ''x''', 'order_number = ''O-1''');
SELECT pg_temp.check_column('production_operation', 'actual_start', 'coalesce(actual_start, now()) + interval ''1 min''', 'operation_number = ''0010''');
SELECT pg_temp.check_column('production_operation', 'planned_quantity', 'planned_quantity + 1', 'operation_number = ''0010''');
SELECT pg_temp.check_column('lot', 'qms_ref', 'coalesce(qms_ref, '''') || ''x''', 'lot_number = ''LOT-1''');
SELECT pg_temp.check_column('lot', 'erp_ref', 'coalesce(erp_ref, '''') || ''x''', 'lot_number = ''LOT-1''');
SELECT pg_temp.check_column('lot', 'expires_on', 'coalesce(expires_on, ''2027-01-01'') + 1', 'lot_number = ''LOT-1''');
SELECT pg_temp.check_column('inspection_lot', 'quantity', 'quantity + 1', 'inspection_lot_number = ''IL-1''');
SELECT pg_temp.check_column('inspection_lot', 'erp_ref', 'coalesce(erp_ref, '''') || ''x''', 'inspection_lot_number = ''IL-1''');
SELECT pg_temp.check_column('storage_location', 'name', 'name || ''x''', 'location_code = ''L1''');
SELECT pg_temp.check_column('material', 'description', 'description || ''x''', 'material_number = ''RM''');

-- Columns anyone may write (NULL owner) pass for every system.
SELECT lives_ok($$SET LOCAL plantsync.source_system = 'qms'; UPDATE plantsync.production_order SET updated_at = now() WHERE order_number = 'O-1'$$,
                'updated_at has no owner');

-- updated_at is kept by the guard.
SELECT is((SELECT updated_at FROM plantsync.production_order WHERE order_number = 'O-1'), now(), 'updated_at is set on update');

-- Deleting belongs to the owner too.
SELECT throws_ok($$SET LOCAL plantsync.source_system = 'mes'; DELETE FROM plantsync.shipment WHERE shipment_number = 'S-1'$$,
                 'PS003', NULL, 'mes may not delete a shipment');
SELECT lives_ok($$SET LOCAL plantsync.source_system = 'erp'; DELETE FROM plantsync.shipment WHERE shipment_number = 'S-1'$$,
                'erp may delete its shipment');

-- Overrides: recorded once per overridden row, with the columns and owners.
SELECT lives_ok($$SELECT plantsync.override_ownership('pgTAP override'); SET LOCAL plantsync.source_system = 'qms';
                  UPDATE plantsync.production_order SET quantity = 77, mes_ref = 'M-77' WHERE order_number = 'O-1'$$,
                'an override lets the write through');
SELECT results_eq($$SELECT entity, entity_key, operation, columns, owners, source_system, reason FROM plantsync.ownership_override$$,
                  $$VALUES ('production_order'::text, 'O-1'::text, 'UPDATE'::text, '{quantity,mes_ref}'::text[], '{erp,mes}'::text[], 'qms'::text, 'pgTAP override'::text)$$,
                  'the override is recorded with columns, owners and reason');
SELECT is((SELECT quantity FROM plantsync.production_order WHERE order_number = 'O-1'), 77::numeric, 'the overridden value is stored');

SELECT * FROM finish();
ROLLBACK;
