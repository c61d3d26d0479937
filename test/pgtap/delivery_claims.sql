-- pgTAP: claims and their settling. An outcome that comes back after its
-- claim's lease ran out and the delivery was claimed again settles nothing
-- (only the outcome of the live claim does); it is recorded as an attempt.
-- A batch that is not settled (a retry, a lease that ran out, a worker that
-- died) goes again as it was: same members, same batch id (its
-- Idempotency-Key), nothing new added; unless an earlier event of one of
-- its aggregates now waits outside it, when it is batched anew behind that.
-- Discarding one event of such a batch makes the rest a new batch. A route
-- that stops batching (mode, endpoint changed, deleted) sends the batched
-- deliveries it leaves waiting in real time. p_limit counts requests.
BEGIN;
SELECT * FROM no_plan();

SET LOCAL plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('DC', 'Claims plant');
INSERT INTO plantsync.equipment (site_id, equipment_code, name, equipment_level) VALUES ('DC', 'WC1', 'Mixer', 'WorkCenter');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http) VALUES ('dc-erp', 'erp', 'http://127.0.0.1:9/', true);
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('dc-orders', 'production_order.released', 'dc-erp');
SET LOCAL plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, material_type, base_uom) VALUES ('DC', 'FG', 'Syrup', 'finished', 'KG');
RESET plantsync.source_system;
SELECT is(plantsync.erp_release_order('dc-1', '{"site": "DC", "order": "PO-DC", "material": "FG", "quantity": 10, "uom": "KG", "due_date": "2026-12-15",
  "operations": [{"operation": "0010", "work_center": "WC1", "segment": "MIX", "quantity": 10}]}') ->> 'message', 'applied', 'an order is released');

CREATE TEMP TABLE first_claim AS SELECT delivery_id, created_at, attempts FROM plantsync.claim_deliveries('dc-erp', 10, '60 s', 1);
SELECT is((SELECT attempts FROM first_claim), 1, 'its delivery is claimed: attempt 1');

-- the first claimant stalls past its lease; the delivery is claimed again
SET LOCAL plantsync.source_system = 'hub';
UPDATE plantsync.delivery SET lease_until = now() - interval '1 second' WHERE id = (SELECT delivery_id FROM first_claim);
RESET plantsync.source_system;
CREATE TEMP TABLE second_claim AS SELECT delivery_id, created_at, attempts FROM plantsync.claim_deliveries('dc-erp', 10, '60 s', 2);
SELECT is((SELECT attempts FROM second_claim), 2, 'once its lease has run out it is claimed again: attempt 2');

SELECT is(plantsync.settle_deliveries(ARRAY[delivery_id], ARRAY[created_at], ARRAY['delivered'], ARRAY[200], ARRAY[NULL::text],
                                      ARRAY[NULL::timestamptz], ARRAY[clock_timestamp()], ARRAY[5], ARRAY['{}'], ARRAY[attempts]), 0,
          'the first claim''s late outcome settles nothing')
  FROM first_claim;
SELECT is((SELECT status FROM plantsync.delivery WHERE id = (SELECT delivery_id FROM first_claim)), 'in_flight',
          'the delivery stays in flight under its second claim');
SELECT is((SELECT attempt || ' ' || outcome || ' ' || error FROM plantsync.delivery_attempt WHERE delivery_id = (SELECT delivery_id FROM first_claim)),
          '1 delivered sent under a claim whose lease had run out: the delivery had been claimed again, and this outcome was not applied',
          'the late attempt is recorded under its own number, saying it was not applied');

SELECT is(plantsync.settle_deliveries(ARRAY[delivery_id], ARRAY[created_at], ARRAY['delivered'], ARRAY[200], ARRAY[NULL::text],
                                      ARRAY[NULL::timestamptz], ARRAY[clock_timestamp()], ARRAY[5], ARRAY['{}'], ARRAY[attempts]), 1,
          'the second claim''s outcome settles it')
  FROM second_claim;
SELECT is((SELECT status || ' ' || attempts FROM plantsync.delivery WHERE id = (SELECT delivery_id FROM first_claim)), 'delivered 2',
          'delivered, after two attempts');
SELECT is((SELECT string_agg(attempt || ' ' || outcome, ', ' ORDER BY attempt) FROM plantsync.delivery_attempt
            WHERE delivery_id = (SELECT delivery_id FROM first_claim)), '1 delivered, 2 delivered', 'both attempts are recorded');

-- Batched: settles every claimed delivery of a claim table alike
CREATE FUNCTION pg_temp.settle_all(claim regclass, outcome text, next_at timestamptz) RETURNS integer LANGUAGE plpgsql AS $f$
DECLARE n integer;
BEGIN
    EXECUTE format($q$SELECT plantsync.settle_deliveries(array_agg(delivery_id), array_agg(created_at), array_agg(%L::text),
                                                      array_agg(CASE %L WHEN 'delivered' THEN 200 WHEN 'dead' THEN 400 ELSE 503 END),
                                                      array_agg(NULL::text), array_agg(%L::timestamptz), array_agg(clock_timestamp()),
                                                      array_agg(5), array_agg('{}'::text), array_agg(attempts))
                         FROM %s$q$, outcome, outcome, next_at, claim) INTO n;
    RETURN n;
END
$f$;
SET LOCAL plantsync.source_system = 'hub';
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http) VALUES ('dc-bat', 'erp', 'http://127.0.0.1:9/', true);
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('dc-bat-drafts', 'production_order.draft', 'dc-bat');
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id, mode, batch_window_ms, batch_max_size)
VALUES ('dc-bat-released', 'production_order.released', 'dc-bat', 'batched', 1, 10);
SET LOCAL plantsync.source_system = 'erp';
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
SELECT 'DC', o, m.id, 1, 'KG', 'draft', '2027-01-01' FROM plantsync.material m, unnest(ARRAY['B-1', 'B-2']) o WHERE m.material_number = 'FG';
RESET plantsync.source_system;
-- the drafts go in real time: B-1's is refused (a dead letter, replayed later), B-2's delivered
CREATE TEMP TABLE drafts AS SELECT * FROM plantsync.claim_deliveries('dc-bat', 10, '60 s', 1);
SELECT is((SELECT count(*) FROM drafts WHERE batch_id IS NULL), 2::bigint, 'batched: the drafts are claimed in real time');
CREATE TEMP TABLE draft_b1 AS SELECT * FROM drafts WHERE order_number = 'B-1';
CREATE TEMP TABLE draft_b2 AS SELECT * FROM drafts WHERE order_number = 'B-2';
SELECT is(pg_temp.settle_all('draft_b1', 'dead', NULL) + pg_temp.settle_all('draft_b2', 'delivered', NULL), 2, 'B-1''s draft is dead, B-2''s delivered');

SET LOCAL plantsync.source_system = 'erp';
UPDATE plantsync.production_order SET status = 'released' WHERE order_number IN ('B-1', 'B-2');
RESET plantsync.source_system;
CREATE TEMP TABLE batch1 AS SELECT * FROM plantsync.claim_deliveries('dc-bat', 10, '60 s', 1);
SELECT is((SELECT count(*) || ' in ' || count(DISTINCT batch_id) || ', attempt ' || max(attempts) FROM batch1 WHERE batch_id IS NOT NULL),
          '2 in 1, attempt 1', 'the releases are claimed as one batch');
SELECT is(pg_temp.settle_all('batch1', 'retrying', now()), 2, 'the batch is answered 503: both retrying, due now');

SET LOCAL plantsync.source_system = 'erp';
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
SELECT 'DC', 'B-3', m.id, 1, 'KG', 'released', '2027-01-01' FROM plantsync.material m WHERE m.material_number = 'FG';
RESET plantsync.source_system;
CREATE TEMP TABLE retry1 AS SELECT * FROM plantsync.claim_deliveries('dc-bat', 10, '60 s', 1);
SELECT set_eq('SELECT delivery_id, batch_id, attempts - 1 FROM retry1', 'SELECT delivery_id, batch_id, attempts FROM batch1',
              'the retry is the same batch: same members, same batch id, attempt 2; B-3''s release, due meanwhile, is not added');

-- its lease runs out: claimed again as it was
SET LOCAL plantsync.source_system = 'hub';
UPDATE plantsync.delivery SET lease_until = now() - interval '1 second' WHERE id IN (SELECT delivery_id FROM retry1);
RESET plantsync.source_system;
CREATE TEMP TABLE retry2 AS SELECT * FROM plantsync.claim_deliveries('dc-bat', 10, '60 s', 1);
SELECT set_eq('SELECT delivery_id, batch_id, attempts - 2 FROM retry2', 'SELECT delivery_id, batch_id, attempts FROM batch1',
              'after its lease ran out it goes again as the same batch (attempt 3)');

-- its worker is gone (a crash): put back at once, and claimed again as it was
SELECT is(plantsync.release_orphaned_claims(ARRAY[]::integer[]), 2, 'a starting worker puts the dead worker''s batch back');
CREATE TEMP TABLE retry3 AS SELECT * FROM plantsync.claim_deliveries('dc-bat', 10, '60 s', 1);
SELECT set_eq('SELECT delivery_id, batch_id, attempts - 3 FROM retry3', 'SELECT delivery_id, batch_id, attempts FROM batch1',
              'after a crash it goes again as the same batch (attempt 4)');
SELECT is(pg_temp.settle_all('retry3', 'retrying', now()), 2, 'answered 503 again');

-- B-1's draft is replayed: an earlier event of B-1 waits outside the batch
CREATE TEMP TABLE replayed AS SELECT * FROM plantsync.replay_deliveries('ERP master data fixed', (SELECT delivery_id FROM draft_b1));
CREATE TEMP TABLE after_replay AS SELECT * FROM plantsync.claim_deliveries('dc-bat', 10, '60 s', 1);
SELECT is((SELECT delivery_id FROM after_replay WHERE batch_id IS NULL), (SELECT new_delivery_id FROM replayed),
          'the replayed draft of B-1 is claimed in real time');
SELECT is((SELECT string_agg(order_number, ', ' ORDER BY order_number) FROM after_replay WHERE batch_id IS NOT NULL), 'B-2, B-3',
          'the old batch is not sent before it: B-2''s release goes in a new batch, with B-3''s');
SELECT isnt((SELECT DISTINCT batch_id FROM after_replay WHERE batch_id IS NOT NULL), (SELECT DISTINCT batch_id FROM batch1),
            'under a new batch id');
SELECT is((SELECT status || ' ' || (batch_id IS NULL) FROM plantsync.delivery
            WHERE id = (SELECT delivery_id FROM batch1 WHERE order_number = 'B-1')), 'retrying true',
          'B-1''s release waits for its draft, in no batch');
SELECT is(pg_temp.settle_all('after_replay', 'delivered', NULL), 3, 'the draft and the new batch are delivered');
CREATE TEMP TABLE last_batch AS SELECT * FROM plantsync.claim_deliveries('dc-bat', 10, '60 s', 1);
SELECT is((SELECT order_number || ' ' || attempts || ' ' || (batch_id <> (SELECT DISTINCT batch_id FROM batch1)) FROM last_batch), 'B-1 5 true',
          'then B-1''s release goes, in a batch of its own (attempt 5)');

-- one event of a batch waiting for its retry is discarded: the rest are no
-- longer the batch its key named, and go in a new one
SELECT is(pg_temp.settle_all('last_batch', 'delivered', NULL), 1, 'B-1''s release delivered');
SET LOCAL plantsync.source_system = 'erp';
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
SELECT 'DC', o, m.id, 1, 'KG', 'released', '2027-01-01' FROM plantsync.material m, unnest(ARRAY['D-1', 'D-2']) o
 WHERE m.material_number = 'FG';
RESET plantsync.source_system;
CREATE TEMP TABLE d_batch AS SELECT * FROM plantsync.claim_deliveries('dc-bat', 10, '60 s', 1);
SELECT is((SELECT count(*) || ' in ' || count(DISTINCT batch_id) FROM d_batch WHERE batch_id IS NOT NULL), '2 in 1', 'D-1 and D-2 in one batch');
SELECT is(pg_temp.settle_all('d_batch', 'retrying', now()), 2, 'answered 503');
SELECT is((SELECT count(*) FROM plantsync.discard_deliveries('D-1 cancelled in the ERP by hand',
                                                             delivery_id => (SELECT delivery_id FROM d_batch WHERE order_number = 'D-1'),
                                                             include_waiting => true)), 1::bigint,
          'D-1''s delivery, waiting for the retry, is discarded');
CREATE TEMP TABLE d_rest AS SELECT * FROM plantsync.claim_deliveries('dc-bat', 10, '60 s', 1);
SELECT is((SELECT order_number || ' ' || attempts || ' ' || (batch_id <> (SELECT DISTINCT batch_id FROM d_batch)) FROM d_rest), 'D-2 2 true',
          'D-2 goes alone, under a new batch id');
SELECT is(pg_temp.settle_all('d_rest', 'delivered', NULL), 1, 'and is delivered');

-- a route that stops batching leaves nothing stranded
SET LOCAL plantsync.source_system = 'erp';
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
SELECT 'DC', o, m.id, 1, 'KG', 'released', '2027-01-01' FROM plantsync.material m, unnest(ARRAY['U-1', 'U-2']) o
 WHERE m.material_number = 'FG';
SET LOCAL plantsync.source_system = 'hub';
UPDATE plantsync.route SET batch_window_ms = 3600000 WHERE route_id = 'dc-bat-released';
RESET plantsync.source_system;
SELECT is((SELECT count(*) FROM plantsync.claim_deliveries('dc-bat', 10, '60 s', 1)), 0::bigint,
          'U-1 and U-2 wait for their batch window of an hour');
SET LOCAL plantsync.source_system = 'hub';
UPDATE plantsync.route SET mode = 'realtime', batch_window_ms = NULL, batch_max_size = NULL WHERE route_id = 'dc-bat-released';
RESET plantsync.source_system;
CREATE TEMP TABLE unbatched AS SELECT * FROM plantsync.claim_deliveries('dc-bat', 10, '60 s', 1);
SELECT is((SELECT string_agg(order_number || ' ' || (batch_id IS NULL), ', ' ORDER BY order_number) FROM unbatched), 'U-1 true, U-2 true',
          'the route made real-time: its waiting deliveries are claimed in real time, one each');
SELECT is((SELECT string_agg(DISTINCT mode, ',') FROM plantsync.delivery WHERE id IN (SELECT delivery_id FROM unbatched)), 'realtime',
          'and say so');

-- deleted while its batch is in flight: the batch's answer (503) leaves its deliveries to go in real time
SET LOCAL plantsync.source_system = 'hub';
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id, mode, batch_window_ms, batch_max_size)
VALUES ('dc-bat-held', 'production_order.held', 'dc-bat', 'batched', 1, 10);
SET LOCAL plantsync.source_system = 'mes';
UPDATE plantsync.production_order SET status = 'in_progress' WHERE order_number = 'U-1';
UPDATE plantsync.production_order SET status = 'held' WHERE order_number = 'U-1';
RESET plantsync.source_system;
SELECT is(pg_temp.settle_all('unbatched', 'delivered', NULL), 2, 'U-1 and U-2 delivered');
CREATE TEMP TABLE held_batch AS SELECT * FROM plantsync.claim_deliveries('dc-bat', 10, '60 s', 1) WHERE event_type = 'production_order.held';
SELECT is((SELECT count(*) FROM held_batch WHERE batch_id IS NOT NULL), 1::bigint, 'U-1''s hold goes in a batch');
SET LOCAL plantsync.source_system = 'hub';
DELETE FROM plantsync.route WHERE route_id = 'dc-bat-held';
RESET plantsync.source_system;
SELECT is(pg_temp.settle_all('held_batch', 'retrying', now()), 1, 'the route is deleted; its batch is answered 503');
SELECT is((SELECT order_number || ' ' || event_type || ' ' || (batch_id IS NULL) || ' ' || attempts FROM plantsync.claim_deliveries('dc-bat', 10, '60 s', 1)),
          'U-1 production_order.held true 2', 'the retry goes in real time');
-- a dead letter of a route that has since stopped batching: replayed in real time
SET LOCAL plantsync.source_system = 'hub';
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id, mode, batch_window_ms, batch_max_size)
VALUES ('dc-bat-started', 'production_order.in_progress', 'dc-bat', 'batched', 1, 10);
SET LOCAL plantsync.source_system = 'mes';
UPDATE plantsync.production_order SET status = 'in_progress' WHERE order_number = 'U-2';
RESET plantsync.source_system;
CREATE TEMP TABLE started_batch AS
SELECT * FROM plantsync.claim_deliveries('dc-bat', 10, '60 s', 1) WHERE event_type = 'production_order.in_progress';
SELECT is(pg_temp.settle_all('started_batch', 'dead', NULL), 1, 'U-2''s start, sent in a batch, is refused: a dead letter');
SET LOCAL plantsync.source_system = 'hub';
DELETE FROM plantsync.route WHERE route_id = 'dc-bat-started';
RESET plantsync.source_system;
CREATE TEMP TABLE started_replay AS SELECT * FROM plantsync.replay_deliveries('ERP fixed', (SELECT delivery_id FROM started_batch));
SELECT is((SELECT mode || ' ' || status FROM plantsync.delivery WHERE id = (SELECT new_delivery_id FROM started_replay)), 'realtime pending',
          'its replay, after its route was deleted, goes in real time');
SELECT is((SELECT delivery_id FROM plantsync.claim_deliveries('dc-bat', 10, '60 s', 1) WHERE event_type = 'production_order.in_progress'),
          (SELECT new_delivery_id FROM started_replay), 'and is claimed');

-- p_limit counts requests, as max_in_flight does: a batch is one, and batches go first
SET LOCAL plantsync.source_system = 'hub';
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http) VALUES ('dc-lim', 'erp', 'http://127.0.0.1:9/', true);
INSERT INTO plantsync.route (route_id, event_type_pattern, filter, endpoint_id, mode, batch_window_ms, batch_max_size) VALUES
    ('dc-lim-a', 'production_order.draft', '$.order_number starts with "L-A"', 'dc-lim', 'batched', 1, 10),
    ('dc-lim-b', 'production_order.released', '$.order_number starts with "L-B"', 'dc-lim', 'batched', 1, 10);
INSERT INTO plantsync.route (route_id, event_type_pattern, filter, endpoint_id)
VALUES ('dc-lim-c', 'production_order.released', '$.order_number starts with "L-C"', 'dc-lim');
SET LOCAL plantsync.source_system = 'erp';
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
SELECT 'DC', o, m.id, 1, 'KG', CASE WHEN o LIKE 'L-A%' THEN 'draft' ELSE 'released' END, '2027-01-01'
  FROM plantsync.material m, unnest(ARRAY['L-A1', 'L-A2', 'L-B1', 'L-B2', 'L-C1', 'L-C2']) o WHERE m.material_number = 'FG';
RESET plantsync.source_system;
SELECT is((SELECT string_agg(order_number, ', ' ORDER BY order_number) || ' in ' || count(DISTINCT batch_id) || ' batch(es)'
             FROM plantsync.claim_deliveries('dc-lim', 1, '60 s', 1)), 'L-A1, L-A2 in 1 batch(es)',
          'p_limit 1: one request, a whole batch');
SELECT is((SELECT string_agg(left(order_number, 3) || CASE WHEN batch_id IS NULL THEN ' alone' ELSE ' batched' END, ', '
                             ORDER BY order_number)
             FROM plantsync.claim_deliveries('dc-lim', 2, '60 s', 1)), 'L-B batched, L-B batched, L-C alone',
          'p_limit 2: the other route''s batch and one real-time delivery');
SELECT is((SELECT count(*) || ' ' || min(left(order_number, 3)) FROM plantsync.claim_deliveries('dc-lim', 5, '60 s', 1)), '1 L-C',
          'then the last real-time one');

SELECT * FROM finish();
ROLLBACK;
