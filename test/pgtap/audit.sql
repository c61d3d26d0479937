-- pgTAP: the audit trail. Regulated data and configuration changes are
-- recorded with who, when, old and new values and the reason; secrets never
-- enter it; it is append-only even for its owner; audit_verify() finds a
-- record changed, removed or inserted behind its back.
BEGIN;
SELECT * FROM no_plan();
\ir fixtures/plant.sql

CREATE TEMP TABLE mark AS SELECT COALESCE(max(id), 0) AS id FROM plantsync.audit_log;

SET LOCAL plantsync.source_system = 'mes';
SET LOCAL plantsync.change_reason = 'batch record BR-12: production started';
SET LOCAL application_name = 'mes-adapter';
UPDATE plantsync.lot SET disposition = 'in_process' WHERE lot_number = 'LOT-1' AND site_id = 'T100';
RESET plantsync.change_reason;
SELECT results_eq($$SELECT table_name, row_key, action, old_values ->> 'disposition', new_values ->> 'disposition', changed_columns,
                           source_system, reason, application_name, session_role
                      FROM plantsync.audit_log WHERE id > (SELECT id FROM mark) AND table_name = 'lot'$$,
                  $$VALUES ('lot'::name, 'LOT-1', 'UPDATE', 'planned', 'in_process', ARRAY['disposition'],
                            'mes', 'batch record BR-12: production started', 'mes-adapter', session_user)$$,
                  'a disposition change: who, what before and after, which columns, why, from which application');

SET LOCAL plantsync.source_system = 'hub';
INSERT INTO plantsync.endpoint_secret (endpoint_id, name, value) VALUES ('t-erp', 'token', 'canary-7f3a9e-secret');
UPDATE plantsync.endpoint_secret SET value = 'canary-7f3a9e-rotated' WHERE endpoint_id = 't-erp' AND name = 'token';
UPDATE plantsync.route SET enabled = false WHERE route_id = 't-orders';
SELECT is((SELECT count(*) FROM plantsync.audit_log WHERE (old_values::text || new_values::text) LIKE '%canary-7f3a9e%'), 0::bigint,
          'a secret''s value never enters the trail');
SELECT is((SELECT new_values ->> 'value' FROM plantsync.audit_log WHERE table_name = 'endpoint_secret' AND action = 'UPDATE'), '(changed)',
          'only that it changed');
SELECT is((SELECT changed_columns FROM plantsync.audit_log WHERE table_name = 'route' AND row_key = 't-orders' ORDER BY id DESC LIMIT 1),
          ARRAY['enabled'], 'configuration changes are recorded too');
SELECT is((SELECT count(*) FROM plantsync.audit_log WHERE table_name = 'inspection_lot' AND row_key = 'IL-1' AND action = 'INSERT'), 1::bigint,
          'creations are recorded');

-- a person must say why
CREATE ROLE tap_person;
GRANT USAGE ON SCHEMA plantsync TO tap_person;
GRANT SELECT, UPDATE ON plantsync.route TO tap_person;
SET LOCAL plantsync.require_change_reason = on;
SET LOCAL ROLE tap_person;
SET LOCAL plantsync.source_system = 'hub';
SELECT throws_ok($$UPDATE plantsync.route SET enabled = true WHERE route_id = 't-orders'$$, '22023', 'a reason is required to update route "t-orders"',
                 'a person''s change without a reason is refused');
SELECT throws_ok($$SET plantsync.require_change_reason = off$$, '42501', NULL, 'and a person cannot switch the rule off');
SET LOCAL plantsync.change_reason = 'MOC-77: orders go to ERP again';
UPDATE plantsync.route SET enabled = true WHERE route_id = 't-orders';
RESET ROLE;
RESET plantsync.change_reason;
SET LOCAL plantsync.require_change_reason = off;
SELECT is((SELECT reason || ' / ' || session_role::text || ' / ' || db_role::text FROM plantsync.audit_log WHERE table_name = 'route' ORDER BY id DESC LIMIT 1),
          'MOC-77: orders go to ERP again / postgres / tap_person', 'with one, it is recorded with the person''s role');

-- append-only, even for the owner
SELECT throws_ok($$UPDATE plantsync.audit_log SET reason = 'nothing happened' WHERE id = (SELECT max(id) FROM plantsync.audit_log)$$,
                 'PS005', 'the audit trail is append-only: UPDATE refused', 'records cannot be changed');
SELECT throws_ok($$DELETE FROM plantsync.audit_log$$, 'PS005', 'the audit trail is append-only: DELETE refused', 'or deleted');
SELECT throws_ok($$TRUNCATE plantsync.audit_log$$, 'PS005', 'the audit trail is append-only: TRUNCATE refused', 'or truncated');
CREATE ROLE plantsync_tap_auditor;
GRANT USAGE ON SCHEMA plantsync TO plantsync_tap_auditor;
SET LOCAL ROLE plantsync_tap_auditor;
SELECT throws_ok($$SELECT count(*) FROM plantsync.audit_log$$, '42501', NULL, 'roles see the trail only when granted');
RESET ROLE;

-- the chain
SELECT results_eq($$SELECT intact, problem FROM plantsync.audit_verify()$$, $$VALUES (true, NULL::text)$$, 'the chain is intact');
SELECT ok((SELECT records FROM plantsync.audit_verify()) >= 10, 'and covers every record');

-- tampering that bypasses the triggers (a superuser disabling them) is found
ALTER TABLE plantsync.audit_log DISABLE TRIGGER plantsync_append_only;
SAVEPOINT tamper;
UPDATE plantsync.audit_log SET new_values = jsonb_set(new_values, '{disposition}', '"unrestricted"')
 WHERE table_name = 'lot' AND id > (SELECT id FROM mark);
SELECT results_eq($$SELECT intact, first_bad_id, problem FROM plantsync.audit_verify()$$,
                  $$SELECT false, id, format('record %s was changed after it was written (its hash does not match its content)', id)
                      FROM plantsync.audit_log WHERE table_name = 'lot' AND id > (SELECT id FROM mark)$$,
                  'a changed record is found');
ROLLBACK TO SAVEPOINT tamper;
DELETE FROM plantsync.audit_log WHERE id = (SELECT id + 1 FROM mark);
SELECT results_eq($$SELECT intact, first_bad_id FROM plantsync.audit_verify()$$, $$SELECT false, id + 2 FROM mark$$,
                  'a removed record is found');
ROLLBACK TO SAVEPOINT tamper;
UPDATE plantsync.audit_log SET reason = 'forged' WHERE id = (SELECT id + 1 FROM mark);
UPDATE plantsync.audit_log SET hash = plantsync.audit_hash(audit_log) WHERE id = (SELECT id + 1 FROM mark);
SELECT results_eq($$SELECT intact, first_bad_id FROM plantsync.audit_verify()$$, $$SELECT false, id + 2 FROM mark$$,
                  'a record rewritten with a recomputed hash breaks the chain at the next record');
ROLLBACK TO SAVEPOINT tamper;
ALTER TABLE plantsync.audit_log ENABLE TRIGGER plantsync_append_only;
SELECT is((SELECT intact FROM plantsync.audit_verify()), true, 'the untouched chain is intact again');

SELECT * FROM finish();
ROLLBACK;
