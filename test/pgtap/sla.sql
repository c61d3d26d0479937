-- pgTAP: SLAs and business alerts on scripted timelines (check_slas is
-- given the time to check as of): raised once when a promise is broken,
-- with the business context, cleared when it is kept late or closed by a
-- person, and routable like any event.
BEGIN;
SELECT * FROM no_plan();

SET LOCAL plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('SL', 'SLA plant');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http) VALUES ('sl-erp', 'erp', 'http://127.0.0.1:9/', true),
                                                                                          ('sl-ops', 'hub', 'http://127.0.0.1:9/ops', true);
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('sl-lots', 'lot.*', 'sl-erp'), ('sl-alerts', 'alert.*', 'sl-ops');
INSERT INTO plantsync.sla (sla_id, description, kind, event_type_pattern, target_system, within)
VALUES ('hold-to-erp', 'A hold reaches ERP within 2 minutes', 'delivered', 'lot.blocked', 'erp', '2 minutes');
INSERT INTO plantsync.sla (sla_id, description, kind, event_type_pattern, follow_event_type_pattern, match_on, within)
VALUES ('inspection-in-qms', 'A lot in quality inspection has an inspection lot in QMS within 15 minutes', 'followed_by',
        'lot.restricted', 'inspection_lot.%', 'lot', '15 minutes');
SELECT throws_ok($$INSERT INTO plantsync.sla (sla_id, description, kind, event_type_pattern, within) VALUES ('x', 'x', 'delivered', 'lot.%', '1 minute')$$,
                 '23514', NULL, 'a delivered SLA needs its target system');
SELECT throws_ok($$INSERT INTO plantsync.sla (sla_id, description, kind, event_type_pattern, target_system, within) VALUES ('y', 'y', 'delivered', 'lot.%', 'erp', '0')$$,
                 '23514', NULL, 'and a positive time');
SET LOCAL plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) VALUES ('SL', 'FG', 'Syrup', 'KG');
SET LOCAL plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
SELECT 'SL', id, l, d FROM plantsync.material, (VALUES ('H-1', 'unrestricted'), ('Q-1', 'restricted')) v (l, d) WHERE site_id = 'SL';
SET LOCAL plantsync.source_system = 'qms';
UPDATE plantsync.lot SET disposition = 'blocked' WHERE lot_number = 'H-1';

-- the hold: on time at +1 min, late at +3 min
SELECT results_eq($$SELECT raised, cleared FROM plantsync.check_slas(now() + interval '1 minute')$$, $$VALUES (0, 0)$$, 'nothing is late after one minute');
SELECT results_eq($$SELECT raised, cleared FROM plantsync.check_slas(now() + interval '3 minutes')$$, $$VALUES (1, 0)$$,
                  'three minutes on, the hold that has not reached ERP raises an alert');
SELECT results_eq($$SELECT sla_id, status, lot_number, site_id, event_type FROM plantsync.alert WHERE sla_id = 'hold-to-erp'$$,
                  $$VALUES ('hold-to-erp', 'open', 'H-1', 'SL', 'lot.blocked')$$, 'with its business context');
SELECT matches((SELECT message FROM plantsync.alert WHERE sla_id = 'hold-to-erp'), '^A hold reaches ERP within 2 minutes: lot.blocked at SL, lot H-1, due ',
               'and a message that says what is late');
SELECT results_eq($$SELECT raised, cleared FROM plantsync.check_slas(now() + interval '4 minutes')$$, $$VALUES (0, 0)$$, 'a breach raises one alert, not one per check');
SELECT is((SELECT count(*) FROM plantsync.delivery d JOIN plantsync.event e ON e.id = d.event_id
            WHERE e.type = 'alert.open' AND d.endpoint_id = 'sl-ops'), 1::bigint, 'the alert is an event a route sends on');

-- the hold reaches ERP late: cleared
CREATE FUNCTION pg_temp.deliver_all(p_endpoint text) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    k integer;
BEGIN
    LOOP   -- one event per lot at a time: as many rounds as a lot has events
        PERFORM plantsync.claim_deliveries(p_endpoint, 100);
        SELECT plantsync.settle_deliveries(array_agg(id), array_agg(created_at), array_agg('delivered'::text), array_agg(200), array_agg(NULL::text),
                                           array_agg(NULL::timestamptz), array_agg(clock_timestamp()), array_agg(30), array_agg('{}'::text))
          INTO k FROM plantsync.delivery WHERE endpoint_id = p_endpoint AND status = 'in_flight';
        EXIT WHEN COALESCE(k, 0) = 0;
        n := n + k;
    END LOOP;
    RETURN n;
END $$;
SELECT is(pg_temp.deliver_all('sl-erp'), 3, 'the ERP gets the lots'' three events');
SELECT results_eq($$SELECT raised, cleared FROM plantsync.check_slas(now() + interval '5 minutes')$$, $$VALUES (0, 1)$$, 'kept late: the alert clears');
SELECT is((SELECT status FROM plantsync.alert WHERE sla_id = 'hold-to-erp'), 'cleared', 'cleared');

-- the inspection lot: late at +16 min until QMS creates it
SELECT results_eq($$SELECT raised FROM plantsync.check_slas(now() + interval '16 minutes')$$, $$VALUES (1)$$,
                  'a lot in quality inspection without an inspection lot after 16 minutes raises an alert');
INSERT INTO plantsync.inspection_lot (site_id, inspection_lot_number, lot_id, inspection_type, quantity, uom)
SELECT 'SL', 'IL-Q-1', id, 'final', 10, 'KG' FROM plantsync.lot WHERE lot_number = 'Q-1';
SELECT results_eq($$SELECT cleared FROM plantsync.check_slas(now() + interval '17 minutes')$$, $$VALUES (1)$$, 'cleared once QMS has it');

-- closing by hand
UPDATE plantsync.sla SET within = '1 second' WHERE sla_id = 'hold-to-erp';
SET LOCAL plantsync.source_system = 'qms';
UPDATE plantsync.lot SET disposition = 'unrestricted' WHERE lot_number = 'H-1';
UPDATE plantsync.lot SET disposition = 'blocked' WHERE lot_number = 'H-1';
SELECT results_eq($$SELECT raised FROM plantsync.check_slas(now() + interval '1 minute')$$, $$VALUES (1)$$, 'a second hold, late again');
SELECT throws_ok($$SELECT plantsync.close_alert((SELECT id FROM plantsync.alert WHERE status = 'open' AND sla_id = 'hold-to-erp'), '')$$, '22023', 'a reason is required',
                 'closing an alert needs a reason');
SELECT lives_ok($$SELECT plantsync.close_alert((SELECT id FROM plantsync.alert WHERE status = 'open' AND sla_id = 'hold-to-erp'), 'ERP down for maintenance, INC-9')$$, 'a person closes it');
SELECT is((SELECT reason FROM plantsync.state_change WHERE entity = 'alert' AND to_state = 'cleared' ORDER BY changed_at DESC LIMIT 1),
          'ERP down for maintenance, INC-9', 'with the reason in the history');

-- a message parked too long: an alert, cleared when its order arrives
RESET plantsync.source_system;
SET LOCAL plantsync.source_system = 'hub';
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('SL', 'WH', 'Store');
INSERT INTO plantsync.sla (sla_id, description, kind, event_type_pattern, within)
VALUES ('parked-mes', 'Nothing from the MES waits more than 30 minutes for its order', 'parked', 'mes.%', '30 minutes');
SELECT throws_ok($$INSERT INTO plantsync.sla (sla_id, description, kind, event_type_pattern, target_system, within) VALUES ('z', 'z', 'parked', 'mes.%', 'erp', '1 minute')$$,
                 '23514', NULL, 'a parked SLA names no target system');
RESET plantsync.source_system;
SELECT is(plantsync.mes_complete('sl-mes-1', '{"site": "SL", "order": "SL-PO-1", "lot": "SL-FG-1", "quantity": 5, "uom": "KG", "location": "WH"}') ->> 'message',
          'parked', 'a completion for an order not released yet is parked');
SELECT results_eq($$SELECT raised FROM plantsync.check_slas(now() + interval '20 minutes')$$, $$VALUES (0)$$, 'not late after 20 minutes');
SELECT results_eq($$SELECT raised FROM plantsync.check_slas(now() + interval '31 minutes')$$, $$VALUES (1)$$, 'late after 31 minutes: an alert');
SELECT results_eq($$SELECT event_type, order_number, lot_number, status FROM plantsync.alert WHERE sla_id = 'parked-mes'$$,
                  $$VALUES ('mes.complete', 'SL-PO-1', 'SL-FG-1', 'open')$$, 'naming the message type, the order and the lot');
SELECT matches((SELECT message FROM plantsync.alert WHERE sla_id = 'parked-mes'),
               '^Nothing from the MES waits more than 30 minutes for its order: mes message sl-mes-1 of mes.complete at SL is parked since .*, waiting for order SL-PO-1$',
               'and saying what it waits for');
SELECT results_eq($$SELECT raised FROM plantsync.check_slas(now() + interval '40 minutes')$$, $$VALUES (0)$$, 'one alert per parked message');
SELECT is(plantsync.erp_release_order('sl-erp-1', '{"site": "SL", "order": "SL-PO-1", "material": "FG", "quantity": 5, "uom": "KG", "due_date": "2026-12-31"}') ->> 'message',
          'applied', 'the order arrives');
SELECT results_eq($$SELECT cleared FROM plantsync.check_slas(now() + interval '41 minutes')$$, $$VALUES (1)$$, 'the parked message applied, the alert clears');

SELECT * FROM finish();
ROLLBACK;
