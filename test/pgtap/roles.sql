-- pgTAP: the role matrix. Six standard roles against every table, every
-- function kept from PUBLIC, and a set of real operations: each allowed or
-- refused with 42501, nothing in between.
BEGIN;
SELECT * FROM no_plan();
\ir fixtures/plant.sql

CREATE ROLE tap_admin; CREATE ROLE tap_operator; CREATE ROLE tap_auditor;
CREATE ROLE tap_erp; CREATE ROLE tap_mes; CREATE ROLE tap_qms;
CREATE TEMP TABLE kinds (role name, kind text);
INSERT INTO kinds VALUES ('tap_admin', 'administrator'), ('tap_operator', 'operator'), ('tap_auditor', 'auditor'),
                         ('tap_erp', 'erp'), ('tap_mes', 'mes'), ('tap_qms', 'qms');
SELECT ok(plantsync.grant_standard_role(role, kind) IS NOT NULL, format('%s is made %s', role, kind)) FROM kinds ORDER BY role;
SELECT throws_ok($$SELECT plantsync.grant_standard_role('tap_admin', 'janitor')$$, '22023', 'role kind "janitor" is not known', 'unknown kinds are refused');

-- every table: who reads, who writes
CREATE TEMP TABLE expected_tables AS
SELECT k.role, c.relname,
       CASE WHEN k.kind = 'administrator' THEN true
            WHEN c.relname = 'site_role' THEN true          -- who sees which plant is no secret
            WHEN k.kind IN ('erp', 'mes', 'qms') THEN false
            WHEN c.relname = 'endpoint_secret' THEN false
            WHEN c.relname = 'audit_log' THEN k.kind = 'auditor'
            ELSE true END AS can_read,
       CASE WHEN k.kind = 'administrator' THEN true
            WHEN k.kind = 'operator' THEN c.relname IN ('delivery', 'delivery_action', 'erp_snapshot', 'erp_inventory', 'erp_stock', 'erp_order',
                                                         'erp_posting', 'reconciliation_run', 'discrepancy', 'alert')
            ELSE false END AS can_write
  FROM kinds k CROSS JOIN pg_class c
 WHERE c.relnamespace = 'plantsync'::regnamespace AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition;
SELECT is_empty($$SELECT e.role, e.relname, e.can_read, has_table_privilege(e.role, 'plantsync.' || e.relname, 'SELECT') AS reads
                    FROM expected_tables e WHERE e.can_read <> has_table_privilege(e.role, 'plantsync.' || e.relname, 'SELECT')$$,
                'every role reads exactly the tables and views its kind reads');
SELECT is_empty($$SELECT e.role, e.relname, e.can_write FROM expected_tables e JOIN pg_class c ON c.relname = e.relname AND c.relkind IN ('r', 'p')
                   WHERE c.relnamespace = 'plantsync'::regnamespace
                     AND e.can_write <> has_table_privilege(e.role, 'plantsync.' || e.relname, 'INSERT')$$,
                'every role writes exactly the tables its kind writes');

-- every function kept from PUBLIC: who may call it
CREATE TEMP TABLE guarded_functions AS
SELECT p.oid::regprocedure AS fn, p.proname FROM pg_proc p
 WHERE p.pronamespace = 'plantsync'::regnamespace AND NOT has_function_privilege('public', p.oid, 'EXECUTE');
SELECT ok((SELECT count(*) FROM guarded_functions) >= 15, format('%s functions are kept from PUBLIC', (SELECT count(*) FROM guarded_functions)));
SELECT is_empty($$SELECT k.role, f.fn FROM kinds k CROSS JOIN guarded_functions f
                   WHERE has_function_privilege(k.role, f.fn, 'EXECUTE') <>
                         (k.kind = 'administrator'
                          OR (k.kind IN ('erp', 'mes', 'qms') AND f.proname LIKE k.kind || '\_%'
                              AND pg_get_function_identity_arguments(f.fn) IN ('message_id text, payload jsonb',
                                                                                'message_id text, site text, document text'))
                          -- the COPY way in: MES asks for its session's staging table
                          OR (k.kind = 'mes' AND f.fn = 'plantsync.mes_signal_staging()'::regprocedure))$$,
                'only administrators call the guarded functions, and each integration role only its own process APIs');

-- real operations, as each role: allowed, or refused with 42501
CREATE FUNCTION pg_temp.try(p_role name, p_sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    state text;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', p_role);
    BEGIN
        EXECUTE p_sql;
        state := 'allowed';
    EXCEPTION WHEN OTHERS THEN
        state := CASE WHEN SQLSTATE = '42501' THEN 'denied' ELSE 'allowed (' || SQLSTATE || ')' END;
    END;
    RESET ROLE;
    RETURN state;
END $$;
CREATE TEMP TABLE ops (op text, sql text);
INSERT INTO ops VALUES
    ('read lots', 'SELECT count(*) FROM plantsync.lot'),
    ('read the audit trail', 'SELECT count(*) FROM plantsync.audit_log'),
    ('read secrets', 'SELECT count(*) FROM plantsync.endpoint_secret'),
    ('write a lot directly', $$INSERT INTO plantsync.lot (site_id, material_id, lot_number) SELECT 'T100', id, 'RX' FROM plantsync.material LIMIT 1$$),
    ('release an order', $$SELECT plantsync.erp_release_order('m-1', '{"site": "T100", "order": "O-R1", "material": "FG", "quantity": 1, "uom": "EA", "due_date": "2027-01-01"}')$$),
    ('consume', $$SELECT plantsync.mes_consume('m-2', '{"site": "T100", "order": "O-9", "material": "FG", "lot": "LOT-1", "quantity": 1, "uom": "EA", "location": "L1"}')$$),
    ('replay dead letters', $$SELECT plantsync.replay_deliveries('ops', endpoint_id => 't-erp')$$),
    ('override ownership', $$SELECT plantsync.override_ownership('because')$$),
    ('restrict a role to a plant', $$SELECT plantsync.restrict_role_to_site('tap_mes', 'T100')$$),
    ('change an endpoint', $$UPDATE plantsync.endpoint SET description = 'x' WHERE endpoint_id = 't-erp'$$),
    ('verify the audit trail', 'SELECT * FROM plantsync.audit_verify()');
SELECT set_eq($$SELECT k.kind, o.op, split_part(pg_temp.try(k.role, o.sql), ' ', 1) FROM kinds k CROSS JOIN ops o$$,
              $$VALUES
    ('administrator', 'read lots', 'allowed'), ('administrator', 'read the audit trail', 'allowed'), ('administrator', 'read secrets', 'allowed'),
    ('administrator', 'write a lot directly', 'allowed'), ('administrator', 'release an order', 'allowed'), ('administrator', 'consume', 'allowed'),
    ('administrator', 'replay dead letters', 'allowed'), ('administrator', 'override ownership', 'allowed'),
    ('administrator', 'restrict a role to a plant', 'allowed'), ('administrator', 'change an endpoint', 'allowed'),
    ('administrator', 'verify the audit trail', 'allowed'),
    ('operator', 'read lots', 'allowed'), ('operator', 'read the audit trail', 'denied'), ('operator', 'read secrets', 'denied'),
    ('operator', 'write a lot directly', 'denied'), ('operator', 'release an order', 'denied'), ('operator', 'consume', 'denied'),
    ('operator', 'replay dead letters', 'allowed'), ('operator', 'override ownership', 'denied'),
    ('operator', 'restrict a role to a plant', 'denied'), ('operator', 'change an endpoint', 'denied'),
    ('operator', 'verify the audit trail', 'denied'),
    ('auditor', 'read lots', 'allowed'), ('auditor', 'read the audit trail', 'allowed'), ('auditor', 'read secrets', 'denied'),
    ('auditor', 'write a lot directly', 'denied'), ('auditor', 'release an order', 'denied'), ('auditor', 'consume', 'denied'),
    ('auditor', 'replay dead letters', 'denied'), ('auditor', 'override ownership', 'denied'),
    ('auditor', 'restrict a role to a plant', 'denied'), ('auditor', 'change an endpoint', 'denied'),
    ('auditor', 'verify the audit trail', 'allowed'),
    ('erp', 'read lots', 'denied'), ('erp', 'read the audit trail', 'denied'), ('erp', 'read secrets', 'denied'),
    ('erp', 'write a lot directly', 'denied'), ('erp', 'release an order', 'allowed'), ('erp', 'consume', 'denied'),
    ('erp', 'replay dead letters', 'denied'), ('erp', 'override ownership', 'denied'),
    ('erp', 'restrict a role to a plant', 'denied'), ('erp', 'change an endpoint', 'denied'), ('erp', 'verify the audit trail', 'denied'),
    ('mes', 'read lots', 'denied'), ('mes', 'read the audit trail', 'denied'), ('mes', 'read secrets', 'denied'),
    ('mes', 'write a lot directly', 'denied'), ('mes', 'release an order', 'denied'), ('mes', 'consume', 'allowed'),
    ('mes', 'replay dead letters', 'denied'), ('mes', 'override ownership', 'denied'),
    ('mes', 'restrict a role to a plant', 'denied'), ('mes', 'change an endpoint', 'denied'), ('mes', 'verify the audit trail', 'denied'),
    ('qms', 'read lots', 'denied'), ('qms', 'read the audit trail', 'denied'), ('qms', 'read secrets', 'denied'),
    ('qms', 'write a lot directly', 'denied'), ('qms', 'release an order', 'denied'), ('qms', 'consume', 'denied'),
    ('qms', 'replay dead letters', 'denied'), ('qms', 'override ownership', 'denied'),
    ('qms', 'restrict a role to a plant', 'denied'), ('qms', 'change an endpoint', 'denied'), ('qms', 'verify the audit trail', 'denied')$$,
              'the role matrix: each role may do what its kind does, and is refused (42501) the rest');

SELECT * FROM finish();
ROLLBACK;
