-- pgTAP: observability. The path of an order's messages across every hop,
-- endpoint health and the integration KPIs, on a small scripted history.
BEGIN;
SELECT * FROM no_plan();

SET LOCAL plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('OB', 'Observed plant');
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('OB', 'WH', 'Store');
INSERT INTO plantsync.equipment (site_id, equipment_code, name, equipment_level) VALUES ('OB', 'WC1', 'Mixer', 'WorkCenter');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http) VALUES ('ob-erp', 'erp', 'http://127.0.0.1:9/', true);
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('ob-orders', 'production_order.*', 'ob-erp'),
                                                                              ('ob-moves', 'material_movement.*', 'ob-erp');
SET LOCAL plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, material_type, base_uom)
VALUES ('OB', 'FG', 'Syrup', 'finished', 'KG'), ('OB', 'RM', 'Sugar', 'raw', 'KG');
SET LOCAL plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition) SELECT 'OB', id, 'R-1', 'unrestricted' FROM plantsync.material WHERE material_number = 'RM' AND site_id = 'OB';
RESET plantsync.source_system;

SELECT is(plantsync.erp_release_order('ob-1', '{"site": "OB", "order": "PO-1", "material": "FG", "quantity": 100, "uom": "KG", "due_date": "2026-12-15",
  "operations": [{"operation": "0010", "work_center": "WC1", "segment": "MIX", "quantity": 100}]}') ->> 'message', 'applied', 'an order is released');
SELECT is(plantsync.mes_confirm('ob-2', '{"site": "OB", "order": "PO-1", "operation": "0010", "yield": 95, "scrap": 5, "uom": "KG", "final": true}') ->> 'message',
          'applied', 'confirmed: 95 good, 5 scrap');
SELECT is(plantsync.mes_complete('ob-3', '{"site": "OB", "order": "PO-1", "lot": "FG-1", "quantity": 95, "uom": "KG", "location": "WH"}') ->> 'message',
          'applied', 'completed');
SELECT is(plantsync.qms_usage_decision('ob-4', '{"site": "OB", "lot": "FG-1", "decision": "accept", "decided_by": "qa"}') ->> 'message', 'applied', 'released by QMS');

-- the ERP answers: all delivered but one, which dies
SELECT is((SELECT count(*) FROM plantsync.claim_deliveries('ob-erp', 100)), 2::bigint, 'two deliveries are claimed (one per aggregate at a time: the order''s first event, the lot''s receipt)');
CREATE TEMP TABLE claimed AS SELECT d.id, d.created_at, d.event_type FROM plantsync.delivery d WHERE d.endpoint_id = 'ob-erp' AND d.status = 'in_flight';
SELECT is(plantsync.settle_deliveries(array_agg(id ORDER BY id), array_agg(created_at ORDER BY id),
                                      array_agg(CASE WHEN event_type = 'material_movement.recorded' THEN 'dead' ELSE 'delivered' END ORDER BY id),
                                      array_agg(CASE WHEN event_type = 'material_movement.recorded' THEN 422 ELSE 201 END ORDER BY id),
                                      array_agg(CASE WHEN event_type = 'material_movement.recorded' THEN 'HTTP 422: batch unknown' END ORDER BY id),
                                      array_agg(NULL::timestamptz ORDER BY id), array_agg(clock_timestamp() ORDER BY id), array_agg(40 ORDER BY id),
                                      array_agg('{"data": {"name": "MAT-DOC-1"}}'::text ORDER BY id)), 2, 'settled')
  FROM claimed;

SELECT results_eq($$SELECT hop, system, what FROM plantsync.message_path
                     WHERE correlation_id = (SELECT id FROM plantsync.production_order WHERE order_number = 'PO-1')
                       AND (hop <> 'event' OR what = 'production_order.released') AND (hop <> 'received' OR what = 'erp.order_release')
                       AND (hop NOT IN ('delivery', 'attempt') OR reference = 'production_order.released')
                     ORDER BY at, hop DESC LIMIT 4$$,
                  $$VALUES ('received', 'erp', 'erp.order_release'), ('event', 'erp', 'production_order.released'),
                           ('delivery', 'erp', 'ob-erp via ob-orders'), ('attempt', 'erp', 'ob-erp attempt 1')$$,
                  'an order''s path: the message received, its event, the delivery and the attempt, in order');
SELECT is((SELECT detail ->> 'response' FROM plantsync.message_path WHERE hop = 'attempt' AND status = 'delivered' LIMIT 1),
          '{"data": {"name": "MAT-DOC-1"}}', 'the attempt shows the start of the answer');
SELECT is((SELECT detail ->> 'error' FROM plantsync.message_path WHERE hop = 'attempt' AND status = 'dead'), 'HTTP 422: batch unknown',
          'and the error of the one that died');
SELECT ok((SELECT count(DISTINCT hop) FROM plantsync.message_path WHERE order_number = 'PO-1') = 4, 'the path can be read by order number too');

SELECT results_eq($$SELECT backlog > 0, dead, attempts_last_hour, delivered_last_hour, success_percent_last_hour, latency_p50_ms, circuit
                      FROM plantsync.endpoint_health WHERE endpoint_id = 'ob-erp'$$,
                  $$VALUES (true, 1::bigint, 2::bigint, 1::bigint, 50.0, 40::float8, 'closed')$$,
                  'endpoint health: backlog, dead letters, attempts, success rate, latency, circuit');

SELECT is((SELECT count(*) FROM plantsync.replay_deliveries('batch created in ERP', endpoint_id => 'ob-erp')), 1::bigint, 'a person replays the dead letter');
SELECT results_eq($$SELECT manual_touches_30d, integration_failure_percent_30d, first_pass_yield_percent_30d, scrap_percent_30d,
                           quality_release_cycle_time_30d IS NOT NULL, order_to_execution_latency_30d IS NOT NULL
                      FROM plantsync.integration_kpi WHERE site_id = 'OB'$$,
                  $$VALUES (1::bigint, 50.00, 95.00, 5.00, true, true)$$,
                  'KPIs: one manual replay, half of the finished deliveries failed, 95 % first-pass yield, 5 % scrap, release and execution times');

-- contract lifecycle: who still uses a version
SELECT results_eq($$SELECT subject, version, status, messages_last_30d FROM plantsync.contract_usage WHERE subject = 'erp.order_release'$$,
                  $$VALUES ('erp.order_release', 1, 'active', 1::bigint)$$, 'contract usage: the release contract and the messages received under it');
SELECT plantsync.register_contract('production_order.released', '{"type": "object"}', 'event') AS v1 \gset
SELECT is(plantsync.erp_release_order('ob-9', '{"site": "OB", "order": "PO-2", "material": "FG", "quantity": 1, "uom": "KG", "due_date": "2026-12-15"}') ->> 'message',
          'applied', 'an event checked against an event contract');
SELECT results_eq($$SELECT events_last_30d, producers, routes FROM plantsync.contract_usage WHERE subject = 'production_order.released'$$,
                  $$VALUES (1::bigint, ARRAY['erp'], ARRAY['ob-orders'])$$, 'contract usage: its events, their producers and the routes that carry them');

SELECT * FROM finish();
ROLLBACK;
