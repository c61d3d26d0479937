-- The transactional outbox: events written with the change they describe,
-- their envelope, per-aggregate order, fan-out to routes, batching, dead
-- letters with replay and discard, WAL messages, partitions and purge.
\set SHOW_CONTEXT never
CREATE FUNCTION regress.ord_events(text) RETURNS TABLE (type text, seq bigint, from_state text, to_state text)
LANGUAGE sql AS $$
    SELECT e.type, e.aggregate_seq, e.from_state, e.to_state FROM plantsync.event e
     WHERE e.order_number = $1 AND e.entity = 'production_order' ORDER BY e.aggregate_seq $$;

-- Endpoints and routes (configuration is the hub's).
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http) VALUES
    ('erp', 'erp', 'http://127.0.0.1:18080/erp', true),
    ('qms', 'qms', 'http://127.0.0.1:18081/qms', true),
    ('mes', 'mes', 'http://127.0.0.1:18082/mes', true),
    ('erp-stock', 'erp', 'http://127.0.0.1:18080/erp/stock', true);
CREATE FUNCTION regress.work_package(ev plantsync.event) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT jsonb_build_object('order', ev.order_number, 'qty', ev.data->'quantity', 'kind', 'work_package') $$;
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id, mode, batch_window_ms, batch_max_size, filter, transform) VALUES
    ('erp-orders', 'production_order.*', 'erp', 'realtime', NULL, NULL, NULL, NULL),
    ('mes-release', 'production_order.released', 'mes', 'realtime', NULL, NULL, NULL, 'regress.work_package'),
    ('erp-movements', 'material_movement.recorded', 'erp-stock', 'batched', 60000, 3, NULL, NULL),
    ('qms-scrap', 'material_movement.recorded', 'qms', 'realtime', NULL, NULL, '$.movement_type == "scrap"', NULL),
    ('erp-finance', 'production_confirmation.recorded', 'erp', 'reconcile_only', NULL, NULL, NULL, NULL);
-- Bad routes.
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('x', 'orders.*', 'nowhere');
\echo :SQLSTATE
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id, mode) VALUES ('x', 'orders.*', 'erp', 'batched');
\echo :SQLSTATE
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id, filter) VALUES ('x', 'orders.*', 'erp', '$.a ==');
\echo :SQLSTATE
-- batching per order, or a batch transform, on a route that does not batch
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id, batch_by) VALUES ('x', 'orders.*', 'erp', 'order');
\echo :SQLSTATE
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id, mode, batch_window_ms, batch_max_size, batch_by)
VALUES ('x', 'orders.*', 'erp', 'batched', 100, 10, 'shift');
\echo :SQLSTATE
-- Bad endpoints: each error names the setting and the endpoint; a URL with
-- a user and a header value (either may hold a credential) are not repeated.
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url) VALUES ('bad', 'erp', 'ftp://example/');
\echo :SQLSTATE
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url) VALUES ('bad', 'erp', 'https://erp:s3cret@erp.example.com/api');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url) VALUES ('bad', 'erp', 'https:///api');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url) VALUES ('bad', 'erp', 'https://erp.example.com/a b');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url) VALUES ('bad', 'erp', 'http://erp.example.com/api');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, auth_type, token_url)
VALUES ('bad', 'erp', 'https://erp.example.com/api', 'oauth2_client_credentials', 'http://idp.example.com/token');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, path_template) VALUES ('bad', 'erp', 'https://erp.example.com', '/stock entry');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, headers) VALUES ('bad', 'erp', 'https://erp.example.com', '["X-Plant"]');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, headers) VALUES ('bad', 'erp', 'https://erp.example.com', '{"X Plant": "P100"}');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, headers) VALUES ('bad', 'erp', 'https://erp.example.com', '{"X-Plant": 100}');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, headers)
VALUES ('bad', 'erp', 'https://erp.example.com', jsonb_build_object('X-Plant', E'P100\r\nX-Injected: 1'));
\echo :SQLSTATE
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, headers) VALUES ('bad', 'erp', 'https://erp.example.com', '{"Idempotency-Key": "fixed"}');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, headers) VALUES ('bad', 'erp', 'https://erp.example.com', '{"Authorization": "Bearer abc"}');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, auth_type, auth_header)
VALUES ('bad', 'erp', 'https://erp.example.com', 'api_key', E'X-Key\r\nX-Injected: 1');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, auth_type, auth_username) VALUES ('bad', 'erp', 'https://erp.example.com', 'basic', 'erp:user');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, retry_schedule) VALUES ('bad', 'erp', 'https://erp.example.com', '{}');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, retry_schedule) VALUES ('bad', 'erp', 'https://erp.example.com', '{0, -5 s}');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, retry_schedule) VALUES ('bad', 'erp', 'https://erp.example.com', '{0, NULL}');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, circuit_probe_interval) VALUES ('bad', 'erp', 'https://erp.example.com', '0');
-- an update is checked alike, and leaves the row as it was
UPDATE plantsync.endpoint SET headers = '{"X-Plant": "P100\nX-Injected: 1"}' WHERE endpoint_id = 'erp';
UPDATE plantsync.endpoint SET allow_plain_http = false WHERE endpoint_id = 'erp';
SELECT count(*) AS bad_endpoints FROM plantsync.endpoint WHERE endpoint_id = 'bad';
SELECT base_url, allow_plain_http, headers FROM plantsync.endpoint WHERE endpoint_id = 'erp';
-- a tab is a header value's only control character
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, headers) VALUES ('tab', 'erp', 'https://erp.example.com', '{"X-Note": "a\tb"}');
DELETE FROM plantsync.endpoint WHERE endpoint_id = 'tab';

-- The ERP releases an order: one event, delivered to two endpoints.
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date, line_id)
VALUES ('P100', 'PO-5001', regress.mat('FG-SYRUP'), 500, 'EA', 'released', '2026-12-30', regress.eq('LINE-1'));
SELECT type, source, subject, specversion, datacontenttype, site_id, line_code, order_number, entity, from_state, to_state,
       aggregate_type, aggregate_seq, source_system, correlation_id = regress.ord('PO-5001') AS correlated_by_order,
       causation_id, data->>'order_number' AS data_order, data->>'quantity' AS data_quantity
  FROM plantsync.event WHERE order_number = 'PO-5001';
SELECT d.route_id, d.endpoint_id, d.mode, d.status, d.idempotency_key IS NULL AS key_is_delivery_id, d.body
  FROM plantsync.delivery d JOIN plantsync.event e ON e.id = d.event_id
 WHERE e.order_number = 'PO-5001' ORDER BY d.route_id;

-- Commit, rollback and savepoint: an event exactly when the change commits.
SET plantsync.source_system = 'mes';
BEGIN;
UPDATE plantsync.production_order SET status = 'in_progress' WHERE order_number = 'PO-5001';
ROLLBACK;
SELECT * FROM regress.ord_events('PO-5001');
BEGIN;
SAVEPOINT a;
UPDATE plantsync.production_order SET status = 'in_progress' WHERE order_number = 'PO-5001';
ROLLBACK TO SAVEPOINT a;
SAVEPOINT b;
UPDATE plantsync.production_order SET status = 'in_progress' WHERE order_number = 'PO-5001';
RELEASE SAVEPOINT b;
COMMIT;
-- A refused statement writes no event; neither does a change that is not a state change.
UPDATE plantsync.production_order SET status = 'closed' WHERE order_number = 'PO-5001';
UPDATE plantsync.production_order SET line_id = regress.eq('LINE-1') WHERE order_number = 'PO-5001';
BEGIN;
UPDATE plantsync.production_order SET status = 'held' WHERE order_number = 'PO-5001';
UPDATE plantsync.production_order SET status = 'in_progress' WHERE order_number = 'PO-5001';
COMMIT;
SELECT * FROM regress.ord_events('PO-5001');

-- Causation and explicit correlation from the session.
SET plantsync.correlation_id = 'not-a-uuid';
\echo :SQLSTATE
BEGIN;
SET LOCAL plantsync.causation_id = '018f0000-0000-7000-8000-000000000001';
SET LOCAL plantsync.correlation_id = '018f0000-0000-7000-8000-0000000000c0';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition) VALUES ('P100', regress.mat('RM-SUGAR'), 'S-500', 'unrestricted');
COMMIT;
SELECT type, subject, lot_number, aggregate_type, aggregate_seq, causation_id, correlation_id FROM plantsync.event WHERE lot_number = 'S-500';

-- Ledger writes: events ordered per lot; scrap also goes to the QMS (route filter).
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id)
VALUES ('P100', 'goods_receipt', regress.mat('RM-SUGAR'), regress.lot('S-500'), 100, 'KG', regress.loc('RM01'), 'mes', 'GR-500');
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, order_id, source_system, external_id)
VALUES ('P100', 'consumption', regress.mat('RM-SUGAR'), regress.lot('S-500'), 60, 'KG', regress.loc('RM01'), regress.ord('PO-5001'), 'mes', 'C-500');
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, source_system, external_id)
VALUES ('P100', 'scrap', regress.mat('RM-SUGAR'), regress.lot('S-500'), 5, 'KG', regress.loc('RM01'), 'mes', 'SCR-500');
SELECT e.type, e.data->>'movement_type' AS movement, e.aggregate_type, e.aggregate_seq, e.order_number,
       string_agg(d.route_id || ':' || d.status, ', ' ORDER BY d.route_id) AS deliveries
  FROM plantsync.event e LEFT JOIN plantsync.delivery d ON d.event_id = e.id
 WHERE e.lot_number = 'S-500' GROUP BY e.id, e.type, e.data, e.aggregate_type, e.aggregate_seq, e.order_number
 ORDER BY e.aggregate_seq;

-- Reconcile-only routes record, never send.
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.production_operation (site_id, order_id, operation_number, work_center_id, process_segment, status, planned_quantity)
VALUES ('P100', regress.ord('PO-5001'), '0010', regress.eq('WC-MIX'), 'MIX', 'ready', 500);
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.production_confirmation (site_id, order_id, operation_id, yield_quantity, uom, source_system, external_id)
VALUES ('P100', regress.ord('PO-5001'), regress.op('PO-5001', '0010'), 100, 'EA', 'mes', 'CONF-500');
SELECT d.route_id, d.status FROM plantsync.delivery d WHERE d.event_type = 'production_confirmation.recorded';

-- Claims: per-aggregate order for real-time routes; the order's three
-- pending events go one at a time.
SELECT event_type, aggregate_seq, attempts, batch_id IS NULL AS realtime FROM plantsync.claim_deliveries('erp', 10) ORDER BY aggregate_seq;
SELECT event_type, aggregate_seq FROM plantsync.claim_deliveries('erp', 10);
SET plantsync.source_system = 'hub';
UPDATE plantsync.delivery SET status = 'delivered', delivered_at = now() WHERE endpoint_id = 'erp' AND status = 'in_flight';
SELECT event_type, aggregate_seq FROM plantsync.claim_deliveries('erp', 10);
UPDATE plantsync.delivery SET status = 'retrying', next_attempt_at = now() WHERE endpoint_id = 'erp' AND status = 'in_flight';
-- A retrying delivery keeps its place: the next event of the order waits behind it.
SELECT event_type, aggregate_seq, attempts FROM plantsync.claim_deliveries('erp', 10);
UPDATE plantsync.delivery SET status = 'delivered', delivered_at = now() WHERE endpoint_id = 'erp' AND status = 'in_flight';
SELECT event_type, aggregate_seq FROM plantsync.claim_deliveries('erp', 10);
-- A delivery may not jump to any state.
\set VERBOSITY sqlstate
UPDATE plantsync.delivery SET status = 'delivered' WHERE endpoint_id = 'mes' AND status = 'pending';
\set VERBOSITY default
-- The batched route: the 3 movements so far fill a batch (maximum 3).
SELECT count(*) AS claimed_full_batch, count(DISTINCT batch_id) AS batches, min(event_type) AS event_type
  FROM plantsync.claim_deliveries('erp-stock', 10);
UPDATE plantsync.delivery SET status = 'delivered' WHERE endpoint_id = 'erp-stock' AND status = 'in_flight';
-- Two more wait for the window (60 s)...
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, to_location_id, source_system, external_id)
SELECT 'P100', 'transfer', regress.mat('RM-SUGAR'), regress.lot('S-500'), 1, 'KG', regress.loc('RM01'), regress.loc('FG01'), 'mes', 'TR-50' || g
  FROM generate_series(1, 2) g;
SELECT count(*) AS claimed_before_window FROM plantsync.claim_deliveries('erp-stock', 10);
-- ...and go together once it has passed.
SET plantsync.source_system = 'hub';
UPDATE plantsync.route SET batch_window_ms = 1 WHERE route_id = 'erp-movements';
SELECT pg_sleep(0.01);
SELECT count(*) AS claimed_after_window, count(DISTINCT batch_id) AS batches FROM plantsync.claim_deliveries('erp-stock', 10);
-- An expired lease gives the claim back.
SELECT count(*) AS in_flight FROM plantsync.delivery WHERE route_id = 'erp-movements' AND status = 'in_flight';
UPDATE plantsync.delivery SET lease_until = now() - interval '1 second' WHERE route_id = 'erp-movements' AND status = 'in_flight';
SELECT count(*) AS reclaimed, max(attempts) AS attempts FROM plantsync.claim_deliveries('erp-stock', 10);
SELECT plantsync.claim_deliveries('nowhere');
\echo :SQLSTATE
SELECT plantsync.claim_deliveries('erp', 0);
\echo :SQLSTATE

-- Dead letters: inspect, replay, discard; each recorded with who and why.
UPDATE plantsync.delivery SET status = 'dead', last_status_code = 422, last_error = 'Unprocessable Entity'
 WHERE route_id = 'erp-movements' AND status = 'in_flight';
SELECT endpoint_id, route_id, event_type, lot_number, last_status_code, last_error FROM plantsync.dead_letter ORDER BY delivery_id;
SELECT plantsync.replay_deliveries(NULL, endpoint_id => 'erp');
\echo :SQLSTATE
SELECT plantsync.replay_deliveries('retry');
\echo :SQLSTATE
SELECT plantsync.replay_deliveries('retry', endpoint_id => 'nowhere');
\echo :SQLSTATE
SELECT plantsync.replay_deliveries('retry', endpoint_id => 'qms');
\echo :SQLSTATE
SET TimeZone = 'UTC';
SELECT plantsync.replay_deliveries('retry', from_time => '2026-12-02', to_time => '2026-12-01');
\echo :SQLSTATE
SELECT count(*) AS replayed FROM plantsync.replay_deliveries('ERP mapping fixed, INC-42', endpoint_id => 'erp-stock', event_type => 'material_movement.*');
SELECT d.status, r.status AS replay_status, r.idempotency_key = COALESCE(d.idempotency_key, d.id) AS same_key, r.attempts AS replay_attempts
  FROM plantsync.delivery d JOIN plantsync.delivery r ON r.replay_of = d.id ORDER BY d.id LIMIT 1;
-- replayed, they are dead letters no more: not listed, not replayed twice
SELECT count(*) AS dead_letters_left FROM plantsync.dead_letter WHERE endpoint_id = 'erp-stock';
SELECT plantsync.replay_deliveries('ERP mapping fixed, INC-42', endpoint_id => 'erp-stock', event_type => 'material_movement.*');
\echo :SQLSTATE
SELECT action, cardinality(delivery_ids) AS deliveries, cardinality(new_delivery_ids) AS new_deliveries, selection, acted_by, reason
  FROM plantsync.delivery_action;
-- The replays fail again and are discarded.
SELECT count(*) AS claimed_replays FROM plantsync.claim_deliveries('erp-stock', 10);
UPDATE plantsync.delivery SET status = 'dead' WHERE route_id = 'erp-movements' AND status = 'in_flight';
SELECT count(*) AS discarded FROM plantsync.discard_deliveries('obsolete after stock count', endpoint_id => 'erp-stock');
SELECT plantsync.discard_deliveries('again', endpoint_id => 'erp-stock');
\echo :SQLSTATE
-- Replay by correlation id: everything sent about order PO-5001, again.
SELECT count(*) AS replayed_order_story FROM plantsync.replay_deliveries('ERP restored from backup', correlation_id => regress.ord('PO-5001'), include_delivered => true);
SELECT d.event_type, d.status FROM plantsync.delivery d WHERE d.replay_of IS NOT NULL AND d.endpoint_id = 'erp' ORDER BY d.aggregate_seq;
SELECT status, count(*) FROM plantsync.delivery WHERE route_id = 'erp-movements' GROUP BY status ORDER BY status;
SELECT action, cardinality(delivery_ids) AS deliveries, selection - 'correlation_id' AS selection, reason FROM plantsync.delivery_action ORDER BY acted_at;

-- Every event type the outbox can emit is listed.
SELECT count(*) AS event_types, count(*) FILTER (WHERE kind = 'insert') AS insert_types FROM plantsync.event_type;
SELECT event_type FROM plantsync.event_type WHERE entity IN ('production_order', 'material_movement') ORDER BY 1;

-- WAL messages for CDC consumers: transactional, so rolled-back changes send none.
SELECT 'init' FROM pg_create_logical_replication_slot('plantsync_regress', 'test_decoding');
SET plantsync.emit_wal_messages = on;
SET plantsync.source_system = 'mes';
UPDATE plantsync.production_order SET status = 'held' WHERE order_number = 'PO-5001';
BEGIN;
UPDATE plantsync.production_order SET status = 'in_progress' WHERE order_number = 'PO-5001';
ROLLBACK;
RESET plantsync.emit_wal_messages;
SELECT substring(data FROM '^message: transactional: 1 prefix: plantsync') AS message,
       (substring(data FROM 'content:\s*(.*)$')::jsonb)->>'type' AS type,
       (substring(data FROM 'content:\s*(.*)$')::jsonb)->>'order_number' AS order_number,
       (substring(data FROM 'content:\s*(.*)$')::jsonb)->>'specversion' AS specversion
  FROM pg_logical_slot_get_changes('plantsync_regress', NULL, NULL)
 WHERE data LIKE 'message:%';
SELECT pg_drop_replication_slot('plantsync_regress');

-- Partitions: rows of a day without a partition wait in the default
-- partition; maintenance moves them into their day's partition.
SELECT count(*) > 0 AS rows_in_default FROM plantsync.event_default;
SELECT count(*) AS partitions_created FROM plantsync.maintain_partitions(3);
SELECT count(*) AS rows_left_in_default FROM plantsync.event_default;
SELECT count(*) AS partitions_created_again FROM plantsync.maintain_partitions(3);
-- days are UTC days, whatever the session's time zone
SET TimeZone = 'Pacific/Auckland';
SELECT count(*) AS made_from_auckland FROM plantsync.maintain_partitions(5);
SET TimeZone = 'UTC';
SET DateStyle = 'ISO';
SELECT count(*) FILTER (WHERE pg_get_expr(c.relpartbound, c.oid) ~ '^FOR VALUES FROM \(''[0-9-]+ 00:00:00\+00''\) TO \(''[0-9-]+ 00:00:00\+00''\)$') AS at_utc_midnight,
       count(*) AS daily_partitions
  FROM pg_class c WHERE c.relnamespace = 'plantsync'::regnamespace AND c.relname ~ '^(event|delivery|delivery_attempt)_p[0-9]{8}$';
RESET TimeZone;
RESET DateStyle;
SELECT plantsync.maintain_partitions(0);
\echo :SQLSTATE
-- Purge: an old, settled day is dropped; a day with a dead letter is kept.
RESET plantsync.source_system;
INSERT INTO plantsync.event (id, recorded_at, type, source, subject, data, correlation_id, source_system, entity, entity_id,
                             aggregate_type, aggregate_id, aggregate_seq)
SELECT plantsync.uuid_v7(), now() - make_interval(days => d), 'lot.closed', '/plantsync/sites/P100', 'lot/OLD', '{}',
       gen_random_uuid(), 'mes', 'lot', gen_random_uuid(), 'lot', gen_random_uuid(), 1
  FROM (VALUES (40), (41)) AS v(d);
INSERT INTO plantsync.delivery (created_at, event_id, event_recorded_at, event_type, route_id, endpoint_id, mode, status,
                                idempotency_key, ordering_key, aggregate_seq)
SELECT e.recorded_at, e.id, e.recorded_at, e.type, 'erp-orders', 'erp', 'realtime', 'pending', gen_random_uuid(), 'lot:x', 1
  FROM plantsync.event e WHERE e.subject = 'lot/OLD' AND e.recorded_at < now() - interval '40 days 12 hours';
SELECT count(*) AS partitions_created FROM plantsync.maintain_partitions(3);
SELECT count(*) AS partitions_dropped, sum(rows_dropped) AS rows_dropped,
       bool_and(partition_name ~ '^(event|delivery)_p[0-9]{8}$') AS named_by_day
  FROM plantsync.purge('30 days');
SELECT count(*) AS old_events_left FROM plantsync.event WHERE subject = 'lot/OLD';
SELECT plantsync.purge('1 hour');
\echo :SQLSTATE
-- pg_cron lives in another database here.
SELECT plantsync.schedule_jobs();
\echo :SQLSTATE

-- Polls: what is refused when a poll is configured, and the state a new
-- poll starts from.
CREATE FUNCTION regress.poll_handler(p_poll_id text, p_cursor text, p_body text) RETURNS text LANGUAGE sql AS $$ SELECT p_cursor $$;
CREATE FUNCTION regress.not_a_handler(p_body jsonb) RETURNS text LANGUAGE sql AS $$ SELECT NULL::text $$;
INSERT INTO plantsync.poll (poll_id, endpoint_id, handler) VALUES ('orders', 'erp', 'regress.not_a_handler(jsonb)');
\echo :SQLSTATE
INSERT INTO plantsync.poll (poll_id, endpoint_id, handler, every) VALUES ('orders', 'erp', 'regress.poll_handler(text,text,text)', '100 ms');
\echo :SQLSTATE
INSERT INTO plantsync.poll (poll_id, endpoint_id, handler) VALUES ('Orders!', 'erp', 'regress.poll_handler(text,text,text)');
\echo :SQLSTATE
INSERT INTO plantsync.poll (poll_id, endpoint_id, handler) VALUES ('orders', 'nowhere', 'regress.poll_handler(text,text,text)');
\echo :SQLSTATE
INSERT INTO plantsync.poll (poll_id, endpoint_id, handler, path_template) VALUES ('orders', 'erp', 'regress.poll_handler(text,text,text)', '/a b');
\echo :SQLSTATE
INSERT INTO plantsync.poll (poll_id, endpoint_id, handler) VALUES ('orders', 'erp', 'regress.no_such_handler(text,text,text)');
\echo :SQLSTATE
INSERT INTO plantsync.poll (poll_id, endpoint_id, handler, initial_cursor) VALUES ('orders', 'erp', 'regress.poll_handler(text,text,text)', '2026-11-01');
SELECT poll_id, cursor, polls, failures, last_error, next_poll_at <= now() AS due FROM plantsync.poll_state;
UPDATE plantsync.poll SET handler = 'regress.not_a_handler(jsonb)' WHERE poll_id = 'orders';
\echo :SQLSTATE
DELETE FROM plantsync.poll WHERE poll_id = 'orders';
SELECT count(*) AS states_left FROM plantsync.poll_state;
-- The workers run what an administrator names with a superuser's rights:
-- a function an administrator who is not a superuser made is refused.
SET client_min_messages = warning;
CREATE ROLE regress_poll_admin;
RESET client_min_messages;
SELECT plantsync.grant_standard_role('regress_poll_admin', 'administrator');
CREATE SCHEMA regress_adm AUTHORIZATION regress_poll_admin;
SET ROLE regress_poll_admin;
CREATE FUNCTION regress_adm.escalate(p_poll_id text, p_cursor text, p_body text) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE FUNCTION regress_adm.batch(p jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT p $$;
INSERT INTO plantsync.poll (poll_id, endpoint_id, handler) VALUES ('mine', 'erp', 'regress_adm.escalate(text,text,text)');
\echo :SQLSTATE
UPDATE plantsync.route SET batch_transform = 'regress_adm.batch' WHERE route_id = 'erp-movements';
\echo :SQLSTATE
UPDATE plantsync.endpoint SET response_handler = 'regress_adm.batch' WHERE endpoint_id = 'erp';
\echo :SQLSTATE
RESET ROLE;
-- a batch transform must take and return jsonb
UPDATE plantsync.route SET batch_transform = 'regress.poll_handler' WHERE route_id = 'erp-movements';
\echo :SQLSTATE
SET client_min_messages = warning;
DROP SCHEMA regress_adm CASCADE;
DROP OWNED BY regress_poll_admin;
DROP ROLE regress_poll_admin;
RESET client_min_messages;

-- A route's transform that fails does not fail the plant's write: the event
-- is recorded, the writer gets a WARNING, and the delivery is a dead letter
-- saying why. Replayed once the transform is mended, it is made then.
CREATE TABLE regress.mapping_ready (ok boolean);
INSERT INTO regress.mapping_ready VALUES (false);
CREATE FUNCTION regress.picky(ev plantsync.event) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (SELECT ok FROM regress.mapping_ready) THEN
        RAISE EXCEPTION 'no ERP work center for line %', ev.line_code USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_build_object('order', ev.order_number, 'kind', 'picky');
END $$;
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id, transform)
VALUES ('qms-picky', 'production_order.released', 'qms', 'regress.picky');
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date, line_id)
VALUES ('P100', 'PO-PICKY', regress.mat('FG-SYRUP'), 10, 'EA', 'released', '2026-12-30', regress.eq('LINE-1'));
SELECT count(*) AS order_written FROM plantsync.production_order WHERE order_number = 'PO-PICKY';
SELECT d.route_id, d.status, d.body, d.last_error
  FROM plantsync.delivery d JOIN plantsync.event e ON e.id = d.event_id
 WHERE e.order_number = 'PO-PICKY' ORDER BY d.route_id;
SELECT endpoint_id, event_type, order_number, last_error FROM plantsync.dead_letter WHERE order_number = 'PO-PICKY';
-- still failing: the replay fails with the transform's error, nothing is replayed
SELECT * FROM plantsync.replay_deliveries('ERP work centers loaded', endpoint_id => 'qms', event_type => 'production_order.released');
\echo :SQLSTATE
UPDATE regress.mapping_ready SET ok = true;
SELECT count(*) AS replayed FROM plantsync.replay_deliveries('ERP work centers loaded', endpoint_id => 'qms', event_type => 'production_order.released');
SELECT d.status, d.body, d.replay_of IS NOT NULL AS is_replay
  FROM plantsync.delivery d JOIN plantsync.event e ON e.id = d.event_id
 WHERE e.order_number = 'PO-PICKY' AND d.route_id = 'qms-picky' ORDER BY d.created_at, d.id;
-- a transform that now returns nothing: nothing to replay, discard it instead
CREATE OR REPLACE FUNCTION regress.picky(ev plantsync.event) RETURNS jsonb LANGUAGE sql AS $$ SELECT NULL::jsonb $$;
SET plantsync.source_system = 'hub';
UPDATE plantsync.delivery d SET status = 'in_flight' FROM plantsync.event e
 WHERE e.id = d.event_id AND e.order_number = 'PO-PICKY' AND d.route_id = 'qms-picky' AND d.status = 'pending';
UPDATE plantsync.delivery d SET status = 'dead', body = NULL FROM plantsync.event e
 WHERE e.id = d.event_id AND e.order_number = 'PO-PICKY' AND d.route_id = 'qms-picky' AND d.status = 'in_flight';
SELECT * FROM plantsync.replay_deliveries('again', endpoint_id => 'qms', event_type => 'production_order.released');
\echo :SQLSTATE
SELECT count(*) AS discarded FROM plantsync.discard_deliveries('the route no longer sends it', endpoint_id => 'qms', event_type => 'production_order.released');
DELETE FROM plantsync.route WHERE route_id = 'qms-picky';
-- with include_delivered, a selection that matches nothing says so too
SELECT * FROM plantsync.replay_deliveries('again', event_type => 'no_such.event', include_delivered => true);
\echo :SQLSTATE
-- An endpoint that still owes deliveries is neither deleted nor renamed:
-- they would wait forever where no worker looks.
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url) VALUES ('old-lims', 'qms', 'https://lims.example.com');
INSERT INTO plantsync.delivery (event_id, event_recorded_at, event_type, route_id, endpoint_id, mode, status, ordering_key, aggregate_seq)
SELECT e.id, e.recorded_at, e.type, 'old-lims', 'old-lims', 'realtime', s.status, 'lot:old-lims', s.seq
  FROM (SELECT * FROM plantsync.event ORDER BY recorded_at LIMIT 1) e,
       (VALUES ('dead', 1), ('pending', 2), ('pending', 3), ('pending', 4)) AS s(status, seq);
UPDATE plantsync.delivery SET status = 'in_flight' WHERE endpoint_id = 'old-lims' AND aggregate_seq IN (2, 4);
UPDATE plantsync.delivery SET status = 'retrying' WHERE endpoint_id = 'old-lims' AND aggregate_seq = 2;
SELECT aggregate_seq, status FROM plantsync.delivery WHERE endpoint_id = 'old-lims' ORDER BY aggregate_seq;
DELETE FROM plantsync.endpoint WHERE endpoint_id = 'old-lims';
\echo :SQLSTATE
UPDATE plantsync.endpoint SET endpoint_id = 'lims-2019' WHERE endpoint_id = 'old-lims';
\echo :SQLSTATE
TRUNCATE plantsync.endpoint CASCADE;
\echo :SQLSTATE
-- discarding: dead letters, and with include_waiting what waits (never what is in flight)
SELECT count(*) AS discarded FROM plantsync.discard_deliveries('LIMS replaced', endpoint_id => 'old-lims');
SELECT count(*) AS discarded FROM plantsync.discard_deliveries('LIMS replaced', endpoint_id => 'old-lims', include_waiting => true);
SELECT plantsync.discard_deliveries('LIMS replaced', endpoint_id => 'old-lims', include_waiting => true);
\echo :SQLSTATE
SELECT selection FROM plantsync.delivery_action ORDER BY acted_at DESC LIMIT 1;
DELETE FROM plantsync.endpoint WHERE endpoint_id = 'old-lims';
\echo :SQLSTATE
-- its last request's outcome comes back: the endpoint can go
UPDATE plantsync.delivery SET status = 'delivered', delivered_at = now() WHERE endpoint_id = 'old-lims' AND status = 'in_flight';
DELETE FROM plantsync.endpoint WHERE endpoint_id = 'old-lims';
SELECT count(*) AS old_lims_endpoints FROM plantsync.endpoint WHERE endpoint_id = 'old-lims';
SELECT status, count(*) FROM plantsync.delivery WHERE endpoint_id = 'old-lims' GROUP BY status ORDER BY status;
