-- pgTAP: claims and their settling. An outcome that comes back after its
-- claim's lease ran out and the delivery was claimed again settles nothing
-- (only the outcome of the live claim does); it is recorded as an attempt.
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

SELECT * FROM finish();
ROLLBACK;
