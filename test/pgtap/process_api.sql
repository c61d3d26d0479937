-- pgTAP: process APIs. Messages checked against their contracts, applied as
-- their system or refused whole, applied once per message id, parked until
-- their order is released; the quality hold holds whatever system asks;
-- each integration role calls its own functions only.
BEGIN;
SELECT * FROM no_plan();

SET LOCAL plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('PA', 'Process API plant');
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('PA', 'WH', 'Store');
INSERT INTO plantsync.equipment (site_id, equipment_code, name, equipment_level) VALUES ('PA', 'WC1', 'Mixer', 'WorkCenter');
SET LOCAL plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, material_type, base_uom)
VALUES ('PA', 'FG', 'Syrup', 'finished', 'KG'), ('PA', 'RM', 'Sugar', 'raw', 'KG');
SET LOCAL plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
SELECT 'PA', id, 'R-1', 'unrestricted' FROM plantsync.material WHERE site_id = 'PA' AND material_number = 'RM';
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id)
SELECT 'PA', 'goods_receipt', l.material_id, l.id, 500, 'KG', s.id, 'mes', 'PA-GR-1'
  FROM plantsync.lot l, plantsync.storage_location s WHERE l.lot_number = 'R-1' AND s.site_id = 'PA';
RESET plantsync.source_system;

-- out of order: the MES consumes before the release arrives
SELECT is(plantsync.mes_consume('mes-1', '{"site": "PA", "order": "PO-9", "material": "RM", "lot": "R-1", "quantity": 40, "uom": "KG", "location": "WH"}'),
          '{"message": "parked", "waiting_for": "order PO-9"}'::jsonb, 'a consumption for an order not released yet is parked');
SELECT is((SELECT count(*) FROM plantsync.material_movement WHERE external_id = 'mes-1'), 0::bigint, 'and not applied yet');

CREATE TEMP TABLE release AS
SELECT plantsync.erp_release_order('erp-1', '{"site": "PA", "order": "PO-9", "material": "FG", "quantity": 100, "uom": "KG",
  "due_date": "2026-12-15", "operations": [{"operation": "0010", "work_center": "WC1", "segment": "MIX", "quantity": 100}]}') AS outcome;
SELECT is((SELECT outcome ->> 'message' FROM release), 'applied', 'the release is applied');
SELECT results_eq($$SELECT o.status, count(op.*) FROM plantsync.production_order o JOIN plantsync.production_operation op ON op.order_id = o.id
                     WHERE o.order_number = 'PO-9' GROUP BY o.status$$, $$VALUES ('released', 1::bigint)$$, 'the order is released with its operation');
SELECT results_eq($$SELECT status, waiting_for FROM plantsync.inbox WHERE message_id = 'mes-1'$$, $$VALUES ('applied', NULL::text)$$,
                  'the parked consumption is applied when the release arrives');
SELECT is((SELECT count(*) FROM plantsync.material_movement WHERE external_id = 'mes-1' AND movement_type = 'consumption'), 1::bigint,
          'the consumption is in the ledger, under the message id');
SELECT is((SELECT source_system FROM plantsync.material_movement WHERE external_id = 'mes-1'), 'mes', 'written as the MES');
SELECT is((SELECT count(*) FROM plantsync.event e JOIN plantsync.inbox i ON i.id = e.causation_id
            WHERE i.message_id = 'erp-1' AND e.type = 'production_order.released'), 1::bigint,
          'the release''s event names the message that caused it');

-- the same message again: the first answer, nothing changed
SELECT is(plantsync.erp_release_order('erp-1', '{"site": "PA", "order": "PO-9", "material": "FG", "quantity": 100, "uom": "KG",
  "due_date": "2026-12-15", "operations": [{"operation": "0010", "work_center": "WC1", "segment": "MIX", "quantity": 100}]}') ->> 'message',
          'duplicate', 'a message sent twice is answered as a duplicate');
SELECT is((SELECT count(*) FROM plantsync.production_order WHERE order_number = 'PO-9'), 1::bigint, 'and changes nothing');
SELECT throws_ok($$SELECT plantsync.erp_release_order('erp-1', '{"site": "PA", "order": "PO-9", "material": "FG", "quantity": 200, "uom": "KG", "due_date": "2026-12-15"}')$$,
                 'PS012', 'message "erp-1" of erp was received before with other content', 'the same id with other content is refused');
SELECT throws_ok($$SELECT plantsync.erp_release_order('erp-2', '{"site": "PA", "order": "PO-9", "material": "FG", "quantity": 100, "uom": "KG", "due_date": "2026-12-15"}')$$,
                 '23505', 'order "PO-9" of site "PA" exists already', 'a second release of an order is refused');

-- refused whole: contracts, unknown codes
CREATE TEMP TABLE before AS SELECT (SELECT count(*) FROM plantsync.inbox) AS inbox, (SELECT count(*) FROM plantsync.production_order) AS orders;
SELECT throws_ok($$SELECT plantsync.erp_release_order('erp-3', '{"site": "PA", "order": "PO-10", "material": "FG", "quantity": -5, "uom": "KG", "due_date": "2026-12-15"}')$$,
                 'PS010', NULL, 'a message that breaks its contract is refused');
SELECT throws_like($$SELECT plantsync.erp_release_order('erp-3', '{"site": "PA", "order": "PO-10", "material": "FG", "quantity": -5, "uom": "KG", "due_date": "2026-12-15"}')$$,
                   '%/quantity%', 'naming the field');
SELECT throws_ok($$SELECT plantsync.erp_release_order('erp-4', '{"site": "PA", "order": "PO-10", "material": "NOPE", "quantity": 5, "uom": "KG", "due_date": "2026-12-15"}')$$,
                 '23503', 'material "NOPE" does not exist at site "PA"', 'an unknown material is named');
SELECT throws_ok($$SELECT plantsync.erp_release_order('erp-5', '{"site": "PA", "order": "PO-10", "material": "FG", "quantity": 5, "uom": "KG", "due_date": "2026-12-15",
                   "operations": [{"operation": "0010", "work_center": "WC9", "segment": "MIX", "quantity": 5}]}')$$,
                 '23503', 'work_center "WC9" does not exist at site "PA"', 'an unknown work center is named, and the order is not left half-written');
SELECT results_eq($$SELECT (SELECT count(*) FROM plantsync.inbox), (SELECT count(*) FROM plantsync.production_order)$$,
                  $$SELECT inbox, orders FROM before$$, 'refused messages leave nothing behind, not even in the inbox');
SELECT throws_ok($$SELECT plantsync.mes_consume('', '{}')$$, '22023', 'a message id is required', 'a message needs an id');
SELECT throws_ok($$SELECT plantsync.receive('erp.teleport', 'x', '{}')$$, '22023', 'message type "erp.teleport" is not known', 'unknown message types are refused');
SELECT throws_ok($$SELECT plantsync.mes_consume('mes-9', '{"site": "PA", "order": "PO-9", "material": "RM", "lot": "R-404", "quantity": 1, "uom": "KG", "location": "WH"}')$$,
                 '23503', 'lot "R-404" of material "RM" does not exist at site "PA"', 'an unknown lot is named');

-- execution, completion into quality stock, usage decision
SELECT is(plantsync.mes_confirm('mes-2', '{"site": "PA", "order": "PO-9", "operation": "0010", "yield": 95, "scrap": 5, "uom": "KG", "final": true}') ->> 'message',
          'applied', 'a confirmation is applied');
SELECT is((SELECT status FROM plantsync.production_order WHERE order_number = 'PO-9'), 'in_progress', 'the order is in progress from its first confirmation');
SELECT is(plantsync.mes_complete('mes-3', '{"site": "PA", "order": "PO-9", "lot": "FG-1", "quantity": 95, "uom": "KG", "location": "WH"}') ->> 'order_status',
          'completed', 'completion completes the order');
SELECT results_eq($$SELECT l.disposition, ib.stock_type, ib.base_quantity FROM plantsync.lot l JOIN plantsync.inventory_balance ib ON ib.lot_id = l.id
                     WHERE l.lot_number = 'FG-1'$$, $$VALUES ('restricted', 'quality', 95::numeric)$$,
                  'the produced lot is in quality-inspection stock');
SELECT results_eq($$SELECT node_number, quantity FROM plantsync.trace_backward((SELECT id FROM plantsync.lot WHERE lot_number = 'FG-1'))$$,
                  $$VALUES ('R-1', 40::numeric)$$, 'its genealogy: made from R-1');
-- the hold: a restricted lot cannot be consumed, whoever asks
SET LOCAL plantsync.source_system = 'erp';
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
SELECT 'PA', 'PO-11', id, 10, 'KG', 'released', '2026-12-20' FROM plantsync.material WHERE site_id = 'PA' AND material_number = 'FG';
RESET plantsync.source_system;
SELECT throws_ok($$SELECT plantsync.mes_consume('mes-4', '{"site": "PA", "order": "PO-11", "material": "FG", "lot": "FG-1", "quantity": 1, "uom": "KG", "location": "WH"}')$$,
                 'PS006', NULL, 'a lot awaiting its usage decision cannot be consumed');
SELECT is((SELECT plantsync.qms_usage_decision('qms-1', '{"site": "PA", "lot": "FG-1", "decision": "accept", "code": "A1", "decided_by": "qa.lead",
                                                         "signature": {"signer": "Jane Doe (QA lead)", "meaning": "released"}}')) ->> 'disposition',
          'unrestricted', 'accepted: unrestricted');
SELECT results_eq($$SELECT s.signer, s.meaning, s.signed_by_role, plantsync.signature_valid(s.usage_decision_id)
                      FROM plantsync.usage_decision_signature s JOIN plantsync.usage_decision d ON d.id = s.usage_decision_id
                      JOIN plantsync.inspection_lot il ON il.id = d.inspection_lot_id JOIN plantsync.lot l ON l.id = il.lot_id
                     WHERE l.lot_number = 'FG-1'$$,
                  $$VALUES ('Jane Doe (QA lead)', 'released', session_user, true)$$, 'the decision is signed: who, meaning, and the signature verifies');
SELECT throws_ok($$DELETE FROM plantsync.usage_decision_signature$$, 'PS005', 'a signature cannot be changed or removed', 'a signature cannot be removed');
SAVEPOINT before_tamper;
SET LOCAL plantsync.source_system = 'qms';
UPDATE plantsync.usage_decision SET comment = 'edited after signing' WHERE decided_by = 'qa.lead' AND decision = 'accept';
RESET plantsync.source_system;
SELECT is((SELECT plantsync.signature_valid(usage_decision_id) FROM plantsync.usage_decision_signature LIMIT 1), false,
          'a decision changed after signing no longer verifies');
ROLLBACK TO SAVEPOINT before_tamper;
SELECT throws_ok($$SELECT plantsync.qms_usage_decision('qms-x', '{"site": "PA", "lot": "FG-1", "decision": "accept", "decided_by": "qa", "signature": {"signer": "x", "meaning": "ok"}}')$$,
                 'PS010', NULL, 'a signature with an unknown meaning breaks the contract');
SELECT results_eq($$SELECT il.status, ud.decision, ud.decided_by FROM plantsync.usage_decision ud JOIN plantsync.inspection_lot il ON il.id = ud.inspection_lot_id
                     JOIN plantsync.lot l ON l.id = il.lot_id WHERE l.lot_number = 'FG-1'$$,
                  $$VALUES ('accepted', 'accept', 'qa.lead')$$, 'the decision is recorded on the lot''s inspection lot');
SELECT is(plantsync.mes_consume('mes-4', '{"site": "PA", "order": "PO-11", "material": "FG", "lot": "FG-1", "quantity": 1, "uom": "KG", "location": "WH"}') ->> 'message',
          'applied', 'once released, the same message is applied');

-- reject: the lot is rejected and held
SELECT is(plantsync.erp_release_order('erp-6', '{"site": "PA", "order": "PO-12", "material": "FG", "quantity": 10, "uom": "KG", "due_date": "2026-12-20",
  "operations": [{"operation": "0010", "work_center": "WC1", "segment": "MIX", "quantity": 10}]}') ->> 'message', 'applied', 'another order');
SELECT is(plantsync.mes_complete('mes-5', '{"site": "PA", "order": "PO-12", "lot": "FG-2", "quantity": 10, "uom": "KG", "location": "WH"}') ->> 'message',
          'applied', 'completed straight away');
SELECT is(plantsync.qms_usage_decision('qms-2', '{"site": "PA", "lot": "FG-2", "decision": "reject", "decided_by": "qa.lead", "comment": "viscosity"}') ->> 'disposition',
          'rejected', 'rejected');
SELECT results_eq($$SELECT n.status, n.title, n.description, l.lot_number FROM plantsync.nonconformance n JOIN plantsync.lot l ON l.id = n.lot_id
                     WHERE n.site_id = 'PA' AND n.inspection_lot_id IS NOT NULL$$,
                  $$VALUES ('draft', 'Lot FG-2 rejected', 'viscosity', 'FG-2')$$, 'a rejection opens a nonconformance about the lot');
SELECT throws_ok($$SELECT plantsync.mes_consume('mes-6', '{"site": "PA", "order": "PO-11", "material": "FG", "lot": "FG-2", "quantity": 1, "uom": "KG", "location": "WH"}')$$,
                 'PS006', NULL, 'a rejected lot cannot be consumed');
SELECT throws_ok($$SELECT plantsync.qms_usage_decision('qms-3', '{"site": "PA", "lot": "FG-2", "decision": "maybe", "decided_by": "x"}')$$,
                 'PS010', NULL, 'a decision outside the contract is refused');

-- partial: 60 freed, 30 blocked (split into a lot of its own), 10 scrapped
SELECT is(plantsync.erp_release_order('erp-p1', '{"site": "PA", "order": "PO-P", "material": "FG", "quantity": 100, "uom": "KG", "due_date": "2026-12-20"}') ->> 'message',
          'applied', 'an order for a partial decision');
SELECT is(plantsync.mes_complete('mes-p1', '{"site": "PA", "order": "PO-P", "lot": "FG-P", "quantity": 100, "uom": "KG", "location": "WH"}') ->> 'message',
          'applied', 'completed into quality stock');
SELECT throws_ok($$SELECT plantsync.qms_usage_decision('qms-p0', '{"site": "PA", "lot": "FG-P", "decision": "partial", "decided_by": "qa"}')$$,
                 'PS010', NULL, 'a partial decision without quantities breaks the contract');
SELECT throws_ok($$SELECT plantsync.qms_usage_decision('qms-p0', '{"site": "PA", "lot": "FG-P", "decision": "accept", "decided_by": "qa", "quantities": {"unrestricted": 100}}')$$,
                 'PS010', NULL, 'quantities with an accept break the contract');
SELECT throws_ok($$SELECT plantsync.qms_usage_decision('qms-p0', '{"site": "PA", "lot": "FG-P", "decision": "partial", "decided_by": "qa", "quantities": {"unrestricted": -1, "blocked": 101}}')$$,
                 'PS010', NULL, 'a negative quantity breaks the contract');
SELECT throws_ok($$SELECT plantsync.qms_usage_decision('qms-p0', '{"site": "PA", "lot": "FG-P", "decision": "partial", "decided_by": "qa", "quantities": {"unrestricted": 60, "blocked": 30}}')$$,
                 '22023', 'partial decision on lot "FG-P": 60 unrestricted + 30 blocked + 0 scrapped is 90 KG, but the lot has 100 KG on hand',
                 'quantities that do not add up to the stock are refused, naming both');
SELECT is((SELECT count(*) FROM plantsync.usage_decision ud JOIN plantsync.inspection_lot il ON il.id = ud.inspection_lot_id JOIN plantsync.lot l ON l.id = il.lot_id
            WHERE l.lot_number = 'FG-P'), 0::bigint, 'and nothing of the refused decisions is left');
CREATE TEMP TABLE partial AS
SELECT plantsync.qms_usage_decision('qms-p1', '{"site": "PA", "lot": "FG-P", "decision": "partial", "decided_by": "qa.lead", "code": "P1",
                                               "comment": "fill level", "quantities": {"unrestricted": 60, "blocked": 30, "scrapped": 10}}') AS outcome;
SELECT is((SELECT outcome - '{lot_id, inspection_lot_id, usage_decision_id, nonconformance_id, blocked_lot_id}'::text[] FROM partial),
          '{"message": "applied", "disposition": "unrestricted", "signed": false, "blocked_lot": "FG-P-B"}'::jsonb,
          'partial: the lot freed, the blocked part split into FG-P-B');
SELECT results_eq($$SELECT l.lot_number, l.disposition, ib.stock_type, ib.base_quantity, p.lot_number, l.erp_ref
                      FROM plantsync.lot l JOIN plantsync.inventory_balance ib ON ib.lot_id = l.id LEFT JOIN plantsync.lot p ON p.id = l.parent_lot_id
                     WHERE l.lot_number LIKE 'FG-P%' ORDER BY 1$$,
                  $$VALUES ('FG-P', 'unrestricted', 'unrestricted', 60::numeric, NULL, NULL), ('FG-P-B', 'blocked', 'blocked', 30::numeric, 'FG-P', 'FG-P')$$,
                  'stock: 60 unrestricted in FG-P, 30 blocked in FG-P-B (known to the ERP as batch FG-P), 10 scrapped');
SELECT results_eq($$SELECT movement_type, l.lot_number, quantity, from_location_id IS NOT NULL, to_location_id IS NOT NULL, source_system
                      FROM plantsync.material_movement mv JOIN plantsync.lot l ON l.id = mv.lot_id
                     WHERE mv.external_id LIKE 'UD-%' AND l.lot_number LIKE 'FG-P%' ORDER BY mv.external_id$$,
                  $$VALUES ('scrap', 'FG-P', 10::numeric, true, false, 'qms'), ('lot_split', 'FG-P', 30::numeric, true, false, 'qms'),
                           ('lot_split', 'FG-P-B', 30::numeric, false, true, 'qms')$$,
                  'in the ledger: the scrap and the split pair, marked as coming from the QMS decision');
SELECT results_eq($$SELECT ud.decision, ud.quantity_unrestricted, ud.quantity_blocked, ud.quantity_scrapped, il.status
                      FROM plantsync.usage_decision ud JOIN plantsync.inspection_lot il ON il.id = ud.inspection_lot_id JOIN plantsync.lot l ON l.id = il.lot_id
                     WHERE l.lot_number = 'FG-P'$$,
                  $$VALUES ('partial', 60::numeric, 30::numeric, 10::numeric, 'accepted')$$, 'the decision keeps its quantities; the inspection lot is accepted');
SELECT is((SELECT title FROM plantsync.nonconformance WHERE id = ((SELECT outcome FROM partial) ->> 'nonconformance_id')::uuid),
          'Lot FG-P partly rejected: 30 blocked, 10 scrapped', 'what was blocked and scrapped is a nonconformance');
SELECT results_eq($$SELECT node_number, depth, quantity FROM plantsync.trace_forward((SELECT id FROM plantsync.lot WHERE lot_number = 'FG-P'))$$,
                  $$VALUES ('FG-P-B', 1, 30::numeric)$$, 'the genealogy: FG-P-B was split from FG-P (a recall of FG-P finds it)');
SELECT results_eq($$SELECT node_number FROM plantsync.trace_backward((SELECT id FROM plantsync.lot WHERE lot_number = 'FG-P-B')) ORDER BY 1$$,
                  $$VALUES ('FG-P')$$, 'and back');
SELECT throws_ok($$SELECT plantsync.mes_consume('mes-p2', '{"site": "PA", "order": "PO-11", "material": "FG", "lot": "FG-P-B", "quantity": 1, "uom": "KG", "location": "WH"}')$$,
                 'PS006', NULL, 'the blocked part cannot be consumed');
SELECT is(plantsync.mes_consume('mes-p3', '{"site": "PA", "order": "PO-11", "material": "FG", "lot": "FG-P", "quantity": 1, "uom": "KG", "location": "WH"}') ->> 'message',
          'applied', 'the freed part can');
SELECT is(plantsync.qms_usage_decision('qms-p1', '{"site": "PA", "lot": "FG-P", "decision": "partial", "decided_by": "qa.lead", "code": "P1",
                                                  "comment": "fill level", "quantities": {"unrestricted": 60, "blocked": 30, "scrapped": 10}}')
            - '{message, first_status, first_received_at}'::text[],
          (SELECT outcome - 'message' FROM partial), 'the same decision again returns the first outcome');
SELECT is((SELECT count(*) FROM plantsync.lot WHERE lot_number LIKE 'FG-P%'), 2::bigint, 'and splits nothing twice');
-- nothing freed: no split, the lot itself is blocked; the name of the lot for the blocked part is free to choose
SELECT is(plantsync.erp_release_order('erp-p2', '{"site": "PA", "order": "PO-Q", "material": "FG", "quantity": 10, "uom": "KG", "due_date": "2026-12-20"}') ->> 'message',
          'applied', 'one more order');
SELECT is(plantsync.mes_complete('mes-p4', '{"site": "PA", "order": "PO-Q", "lot": "FG-Q", "quantity": 10, "uom": "KG", "location": "WH"}') ->> 'message', 'applied', 'completed');
SELECT throws_ok($$SELECT plantsync.qms_usage_decision('qms-p2', '{"site": "PA", "lot": "FG-Q", "decision": "partial", "decided_by": "qa", "blocked_lot": "FG-P-B",
                                                                  "quantities": {"unrestricted": 4, "blocked": 6}}')$$,
                 '23505', 'partial decision on lot "FG-Q": lot "FG-P-B" exists already', 'the lot for the blocked part must be new');
SELECT is(plantsync.qms_usage_decision('qms-p3', '{"site": "PA", "lot": "FG-Q", "decision": "partial", "decided_by": "qa", "quantities": {"blocked": 8, "scrapped": 2}}') ->> 'disposition',
          'blocked', 'nothing freed: the lot keeps the blocked part itself');
SELECT results_eq($$SELECT l.disposition, ib.base_quantity, (SELECT count(*) FROM plantsync.lot c WHERE c.parent_lot_id = l.id)
                      FROM plantsync.lot l JOIN plantsync.inventory_balance ib ON ib.lot_id = l.id WHERE l.lot_number = 'FG-Q'$$,
                  $$VALUES ('blocked', 8::numeric, 0::bigint)$$, '8 blocked in FG-Q, 2 scrapped, no split');

-- shipping: a held lot cannot go on a shipment; one put on hold after it was
-- planned holds the shipment (readiness says so) and its goods issue waits
SET LOCAL plantsync.source_system = 'erp';
INSERT INTO plantsync.shipment (site_id, shipment_number, customer_code) VALUES ('PA', 'SH-1', 'CUST-1');
SELECT throws_ok($$INSERT INTO plantsync.shipment_line (site_id, shipment_id, line_number, material_id, lot_id, quantity, uom)
                   SELECT 'PA', s.id, 1, l.material_id, l.id, 10, 'KG' FROM plantsync.shipment s, plantsync.lot l
                    WHERE s.shipment_number = 'SH-1' AND l.lot_number = 'FG-P-B'$$,
                 'PS006', 'lot "FG-P-B" of material "FG" is blocked and cannot be shipped', 'a blocked lot cannot be put on a shipment');
INSERT INTO plantsync.shipment_line (site_id, shipment_id, line_number, material_id, lot_id, quantity, uom)
SELECT 'PA', s.id, 1, l.material_id, l.id, 20, 'KG' FROM plantsync.shipment s, plantsync.lot l WHERE s.shipment_number = 'SH-1' AND l.lot_number = 'FG-P';
UPDATE plantsync.shipment SET status = 'picking' WHERE shipment_number = 'SH-1';
UPDATE plantsync.shipment SET status = 'packed' WHERE shipment_number = 'SH-1';
SET LOCAL plantsync.source_system = 'qms';
UPDATE plantsync.lot SET disposition = 'blocked' WHERE lot_number = 'FG-P';
RESET plantsync.source_system;
SELECT results_eq($$SELECT lines, lines_held, ready, held_lots FROM plantsync.shipment_readiness WHERE shipment_number = 'SH-1'$$,
                  $$VALUES (1::bigint, 1::bigint, false, ARRAY['FG-P (blocked)'])$$, 'a shipment whose lot was put on hold is not ready, and says which lot holds it');
SET LOCAL plantsync.source_system = 'erp';
SELECT throws_ok($$UPDATE plantsync.shipment SET status = 'shipped' WHERE shipment_number = 'SH-1'$$,
                 'PS006', 'shipment "SH-1" cannot be shipped: lot "FG-P" on it is blocked', 'its goods issue is refused, naming the lot');
RESET plantsync.source_system;
SELECT throws_ok($$INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, source_system, external_id)
                   SELECT 'PA', 'shipment', l.material_id, l.id, 20, 'KG', s.id, 'erp', 'SH-1-1' FROM plantsync.lot l, plantsync.storage_location s
                    WHERE l.lot_number = 'FG-P' AND s.site_id = 'PA'$$,
                 'PS006', NULL, 'and so is a shipment movement of the held lot');
SET LOCAL plantsync.source_system = 'qms';
UPDATE plantsync.lot SET disposition = 'unrestricted' WHERE lot_number = 'FG-P';
RESET plantsync.source_system;
SELECT is((SELECT ready FROM plantsync.shipment_readiness WHERE shipment_number = 'SH-1'), true, 'once the hold is lifted the shipment is ready at once');
SET LOCAL plantsync.source_system = 'erp';
UPDATE plantsync.shipment SET status = 'shipped' WHERE shipment_number = 'SH-1';
RESET plantsync.source_system;
SELECT is((SELECT status FROM plantsync.shipment WHERE shipment_number = 'SH-1'), 'shipped', 'and goes');

-- cancel
SELECT is(plantsync.erp_release_order('erp-7', '{"site": "PA", "order": "PO-13", "material": "FG", "quantity": 10, "uom": "KG", "due_date": "2026-12-20"}') ->> 'message',
          'applied', 'one more order');
SELECT is(plantsync.erp_cancel_order('erp-8', '{"site": "PA", "order": "PO-13", "reason": "customer order withdrawn"}') ->> 'order_status', 'cancelled', 'cancelled');
SELECT is((SELECT reason FROM plantsync.state_change WHERE entity = 'production_order' AND entity_key = 'PO-13' AND to_state = 'cancelled'),
          'customer order withdrawn', 'with the ERP''s reason in the history');
SELECT throws_ok($$SELECT plantsync.erp_cancel_order('erp-9', '{"site": "PA", "order": "PO-9", "reason": "too late"}')$$,
                 'PS001', NULL, 'a completed order cannot be cancelled');
SELECT throws_ok($$SELECT plantsync.mes_operation('op-c', '{"site": "PA", "order": "PO-13", "operation": "0010", "action": "start"}')$$,
                 'PS014', 'order "PO-13" of site "PA" is cancelled', 'nothing is booked on a cancelled order');
SELECT is((SELECT count(*) FROM plantsync.inbox WHERE message_id = 'op-c'), 0::bigint, 'and the refused message is not kept: sent again, it is refused again');
-- a whole number written as 3.0 (as float-minded serializers do) is the integer 3
SELECT is(plantsync.erp_release_order('erp-p', '{"site": "PA", "order": "PO-14", "material": "FG", "quantity": 10, "uom": "KG", "due_date": "2026-12-20", "priority": 3.0}') ->> 'message',
          'applied', 'a release with "priority": 3.0 is applied');
SELECT is((SELECT priority::integer FROM plantsync.production_order WHERE order_number = 'PO-14'), 3, 'with priority 3');

-- shop-floor signals in batches
SELECT is(plantsync.mes_ingest_signals('sig-1', '{"site": "PA", "signals": [
    {"equipment": "WC1", "signal": "state", "at": "2026-11-01T08:00:00Z", "state": "running"},
    {"equipment": "WC1", "signal": "counter", "at": "2026-11-01T08:00:00Z", "value": 1200},
    {"equipment": "WC1", "signal": "consumption", "at": "2026-11-01T08:00:05Z", "value": 0.5}]}') - 'message',
          '{"received": 3, "stored": 3, "duplicates": 0}'::jsonb, 'a batch of signals is stored');
SELECT is(plantsync.mes_ingest_signals('sig-2', '{"site": "PA", "signals": [
    {"equipment": "WC1", "signal": "state", "at": "2026-11-01T08:00:00Z", "state": "running"},
    {"equipment": "WC1", "signal": "state", "at": "2026-11-01T08:10:00Z", "state": "down"}]}') - 'message',
          '{"received": 2, "stored": 1, "duplicates": 1}'::jsonb, 'a signal sent again is stored once');
SELECT is(plantsync.mes_ingest_signals('sig-2b', '{"site": "PA", "signals": [
    {"equipment": "WC1", "signal": "counter", "at": "2026-11-01T08:20:00Z", "value": 1250},
    {"equipment": "WC1", "signal": "counter", "at": "2026-11-01T08:20:00Z", "value": 1250},
    {"equipment": "WC1", "signal": "state", "at": "2026-11-01T08:00:00Z", "state": "running"}]}') - 'message',
          '{"received": 3, "stored": 1, "duplicates": 2}'::jsonb, 'a signal twice in one batch, and one stored before, are stored once');
SELECT throws_ok($$SELECT plantsync.mes_ingest_signals('sig-3', '{"site": "PA", "signals": [
    {"equipment": "WC1", "signal": "state", "at": "2026-11-01T09:00:00Z", "state": "idle"},
    {"equipment": "WC7", "signal": "state", "at": "2026-11-01T09:00:00Z", "state": "idle"}]}')$$,
                 '22023', 'signal 2 is not valid: equipment "WC7" does not exist at site "PA"', 'a batch with an unknown machine is refused, naming the signal');
SELECT throws_ok($$SELECT plantsync.mes_ingest_signals('sig-4', '{"site": "PA", "signals": [{"equipment": "WC1", "signal": "counter", "at": "2026-11-01T09:00:00Z"}]}')$$,
                 '22023', 'signal 1 is not valid: a counter signal needs a value', 'a counter without a value is refused');
SELECT throws_ok($$SELECT plantsync.mes_ingest_signals('sig-4b', '{"site": "PA", "signals": [{"equipment": "WC1", "signal": "state", "at": "2026-11-01T09:00:00Z", "state": "idle"},
                                                                    {"equipment": "WC1", "signal": "state", "state": "down"}]}')$$,
                 '22023', 'signal 2 is not valid: it has no time (at)', 'a signal without a time is refused, naming it');
SELECT throws_ok($$SELECT plantsync.mes_ingest_signals('sig-5', '{"site": "PA", "signals": [{"equipment": "WC1", "signal": "state", "at": "yesterday-ish", "state": "x"}]}')$$,
                 '22023', NULL, 'an unreadable time is refused');
SELECT is((SELECT count(*) FROM plantsync.machine_signal WHERE site_id = 'PA'), 5::bigint, 'refused batches stored nothing');
SET LOCAL plantsync.source_system = 'hub';
SELECT throws_ok($$DELETE FROM plantsync.equipment WHERE site_id = 'PA' AND equipment_code = 'WC1'$$,
                 '23503', 'equipment "WC1" has shop-floor signals and cannot be deleted', 'equipment with signals is kept');
RESET plantsync.source_system;
-- the COPY way: staged in this session's staging table, drained by one call
SELECT is(plantsync.mes_signal_staging()::text, 'plantsync_signal_staging', 'the session gets its staging table');
SELECT is(plantsync.mes_signal_staging()::text, 'plantsync_signal_staging', 'the same one each time');
INSERT INTO pg_temp.plantsync_signal_staging (site, equipment, signal, at, state, value)
VALUES ('PA', 'WC1', 'counter', '2026-11-01T10:00:00Z', NULL, 1300), ('PA', 'WC1', 'counter', '2026-11-01T08:00:00Z', NULL, 1200);
SELECT is(plantsync.mes_drain_signals('sig-copy-1') - 'message', '{"received": 2, "stored": 1, "duplicates": 1}'::jsonb,
          'staged signals are drained: stored once, the duplicate counted');
SELECT is((SELECT count(*) FROM pg_temp.plantsync_signal_staging), 0::bigint, 'and the staging is empty');
SELECT is(plantsync.mes_drain_signals('sig-copy-1b') - 'message', '{"received": 0, "stored": 0, "duplicates": 0}'::jsonb,
          'a second drain finds nothing');
SAVEPOINT bad_copy;
INSERT INTO pg_temp.plantsync_signal_staging (site, equipment, signal, at, value) VALUES ('PA', 'WC9', 'counter', '2026-11-01T11:00:00Z', 1);
SELECT throws_ok($$SELECT plantsync.mes_drain_signals('sig-copy-2')$$, '22023', NULL, 'a staged batch with an unknown machine is refused');
ROLLBACK TO SAVEPOINT bad_copy;
-- a staging table the caller made (with rules, policies or types of its own) is never read
SAVEPOINT own_staging;
DROP TABLE pg_temp.plantsync_signal_staging;
CREATE ROLE regress_signal_caller;
SET LOCAL ROLE regress_signal_caller;
CREATE TEMP TABLE plantsync_signal_staging (site text, equipment text, signal text, at timestamptz, state text, value numeric);
RESET ROLE;
SELECT throws_ok($$SELECT plantsync.mes_drain_signals('sig-copy-3')$$, '42501', 'pg_temp.plantsync_signal_staging was not made by plantsync',
                 'a staging table plantsync did not make is refused by the drain');
SELECT throws_ok($$SELECT plantsync.mes_signal_staging()$$, '42501', 'pg_temp.plantsync_signal_staging was not made by plantsync',
                 'and is not taken over');
ROLLBACK TO SAVEPOINT own_staging;

-- ---------- the order's bill of materials, sublots and serials ----------
SELECT is(plantsync.erp_release_order('erp-b1', '{"site": "PA", "order": "PO-B", "material": "FG", "quantity": 200, "uom": "KG", "due_date": "2026-12-20",
    "components": [{"material": "RM", "quantity": 120, "uom": "KG", "operation": "0010", "scrap_percent": 2}]}') ->> 'message', 'applied',
          'a release with its components');
SELECT results_eq($$SELECT b.alternative, b.base_quantity, bi.item_number, m.material_number, bi.quantity, bi.scrap_percent, bi.operation_number
                      FROM plantsync.production_order o JOIN plantsync.bom b ON b.id = o.bom_id JOIN plantsync.bom_item bi ON bi.bom_id = b.id
                      JOIN plantsync.material m ON m.id = bi.component_material_id WHERE o.order_number = 'PO-B'$$,
                  $$VALUES ('order PO-B', 200::numeric, '0010', 'RM', 120::numeric, 2::numeric, '0010')$$,
                  'become the order''s own bill of materials, for the order quantity');
SELECT throws_ok($$SELECT plantsync.erp_release_order('erp-b2', '{"site": "PA", "order": "PO-B2", "material": "FG", "quantity": 1, "uom": "KG", "due_date": "2026-12-20",
                   "components": [{"material": "NOPE", "quantity": 1, "uom": "KG"}]}')$$,
                 '23503', 'component "NOPE" does not exist at site "PA"', 'an unknown component is named, and the order is not left half-written');
SELECT is((SELECT count(*) FROM plantsync.production_order WHERE order_number = 'PO-B2'), 0::bigint, 'no order PO-B2');
SET LOCAL plantsync.source_system = 'mes';
INSERT INTO plantsync.sublot (site_id, lot_id, sublot_number) SELECT 'PA', id, 'R-1/01' FROM plantsync.lot WHERE lot_number = 'R-1';
RESET plantsync.source_system;
SELECT is(plantsync.mes_consume('mes-b1', '{"site": "PA", "order": "PO-B", "material": "RM", "lot": "R-1", "sublot": "R-1/01", "quantity": 5, "uom": "KG", "location": "WH"}') ->> 'message',
          'applied', 'a consumption from a sublot');
SELECT is((SELECT s.sublot_number FROM plantsync.material_movement mv JOIN plantsync.sublot s ON s.id = mv.sublot_id WHERE mv.external_id = 'mes-b1'),
          'R-1/01', 'names the sublot in the ledger');
SELECT throws_ok($$SELECT plantsync.mes_consume('mes-b2', '{"site": "PA", "order": "PO-B", "material": "RM", "lot": "R-1", "sublot": "R-1/99", "quantity": 1, "uom": "KG", "location": "WH"}')$$,
                 '23503', 'sublot "R-1/99" of lot "R-1" does not exist', 'an unknown sublot is named');
-- serial-tracked output: the completion names its serials
SET LOCAL plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, material_type, base_uom, serial_tracked)
VALUES ('PA', 'PUMP', 'Dosing pump', 'finished', 'EA', true);
RESET plantsync.source_system;
SELECT is(plantsync.erp_release_order('erp-s1', '{"site": "PA", "order": "PO-S", "material": "PUMP", "quantity": 3, "uom": "EA", "due_date": "2026-12-20"}') ->> 'message',
          'applied', 'an order of serial-tracked pumps');
SELECT throws_ok($$SELECT plantsync.mes_complete('mes-s0', '{"site": "PA", "order": "PO-S", "lot": "P-1", "quantity": 3, "uom": "EA", "location": "WH", "serials": ["SN-1", "SN-2"]}')$$,
                 '22023', 'the message names 2 serials but its quantity is 3 EA', 'serials must be as many as the quantity');
SELECT throws_ok($$SELECT plantsync.mes_complete('mes-s0', '{"site": "PA", "order": "PO-B", "lot": "FG-B", "quantity": 1, "uom": "KG", "location": "WH", "serials": ["X-1"]}')$$,
                 '22023', 'material "FG" is not serial-tracked: the message cannot name serials', 'a material without serials takes none');
SELECT is(plantsync.mes_complete('mes-s1', '{"site": "PA", "order": "PO-S", "lot": "P-1", "quantity": 3, "uom": "EA", "location": "WH", "serials": ["SN-1", "SN-2", "SN-3"]}') ->> 'message',
          'applied', 'completed with three serials');
SELECT results_eq($$SELECT sr.serial_number, l.lot_number, mv.quantity, mv.external_id FROM plantsync.serial sr JOIN plantsync.lot l ON l.id = sr.lot_id
                      JOIN plantsync.material_movement mv ON mv.serial_id = sr.id AND mv.movement_type = 'production_receipt'
                     WHERE l.lot_number = 'P-1' ORDER BY 1$$,
                  $$VALUES ('SN-1', 'P-1', 1::numeric, 'mes-s1/SN-1'), ('SN-2', 'P-1', 1::numeric, 'mes-s1/SN-2'), ('SN-3', 'P-1', 1::numeric, 'mes-s1/SN-3')$$,
                  'each serial is in the lot and received on its own');
SELECT is((SELECT count(*) FROM plantsync.trace_backward((SELECT id FROM plantsync.serial WHERE serial_number = 'SN-2'))
            WHERE node_number = 'P-1'), 1::bigint, 'and the genealogy knows the lot contains it');
SELECT is(plantsync.qms_usage_decision('qms-s1', '{"site": "PA", "lot": "P-1", "material": "PUMP", "decision": "accept", "decided_by": "qa"}') ->> 'disposition',
          'unrestricted', 'the pumps are released');
SELECT is(plantsync.erp_release_order('erp-s2', '{"site": "PA", "order": "PO-K", "material": "FG", "quantity": 1, "uom": "KG", "due_date": "2026-12-20"}') ->> 'message',
          'applied', 'a kit order');
SELECT is(plantsync.mes_consume('mes-s2', '{"site": "PA", "order": "PO-K", "material": "PUMP", "lot": "P-1", "quantity": 2, "uom": "EA", "location": "WH", "serials": ["SN-1", "SN-3"]}') ->> 'movements',
          '2', 'consuming two serials posts two movements');
SELECT throws_ok($$SELECT plantsync.mes_consume('mes-s3', '{"site": "PA", "order": "PO-K", "material": "PUMP", "lot": "P-1", "quantity": 1, "uom": "EA", "location": "WH", "serials": ["SN-9"]}')$$,
                 '23503', 'serial "SN-9" does not exist at site "PA"', 'an unknown serial is named');
SELECT throws_ok($$SELECT plantsync.mes_consume('mes-s4', '{"site": "PA", "order": "PO-K", "material": "PUMP", "lot": "P-1", "sublot": "x", "quantity": 1, "uom": "EA", "location": "WH", "serials": ["SN-2"]}')$$,
                 'PS010', NULL, 'a sublot and serials together break the contract');

-- ---------- operations, downtime, inspection lots and results, nonconformances, order changes, snapshots ----------
SELECT is(plantsync.mes_operation('op-0', '{"site": "PA", "order": "PO-77", "operation": "0010", "action": "start"}') ->> 'message',
          'parked', 'an operation start for an order not released yet is parked');
SELECT is(plantsync.erp_release_order('erp-77', '{"site": "PA", "order": "PO-77", "material": "FG", "quantity": 50, "uom": "KG",
  "due_date": "2026-12-20", "operations": [{"operation": "0010", "work_center": "WC1", "segment": "MIX", "quantity": 50}]}') ->> 'message',
          'applied', 'its release');
SELECT results_eq($$SELECT op.status, op.actual_start IS NOT NULL, o.status FROM plantsync.production_operation op
                     JOIN plantsync.production_order o ON o.id = op.order_id WHERE o.order_number = 'PO-77'$$,
                  $$VALUES ('running', true, 'in_progress')$$, 'applies the start: the operation runs (through ready and dispatched), the order is in progress');
SELECT is((SELECT array_agg(to_state ORDER BY sc.id) FROM plantsync.state_change sc JOIN plantsync.production_operation op ON op.id = sc.entity_id
            JOIN plantsync.production_order o ON o.id = op.order_id WHERE o.order_number = 'PO-77' AND sc.entity = 'production_operation'),
          ARRAY['waiting', 'ready', 'dispatched', 'running'], 'each step is a recorded state change');
SELECT throws_ok($$SELECT plantsync.mes_operation('op-1', '{"site": "PA", "order": "PO-77", "operation": "0010", "action": "resume"}')$$,
                 'PS001', 'operation "0010" of order "PO-77" is running and cannot be resumed', 'a running operation is not resumed');
SELECT is(plantsync.mes_operation('op-2', '{"site": "PA", "order": "PO-77", "operation": "0010", "action": "hold", "reason": "mixer alarm"}') ->> 'operation_status',
          'held', 'a hold');
SELECT throws_ok($$SELECT plantsync.mes_operation('op-3', '{"site": "PA", "order": "PO-77", "operation": "0010", "action": "start"}')$$,
                 'PS001', NULL, 'a held operation is not started again');
SELECT throws_like($$SELECT plantsync.mes_operation('op-3', '{"site": "PA", "order": "PO-77", "operation": "0010", "action": "complete"}')$$,
                   '%held%completed%', 'nor completed while held: the state machine says so');
SELECT is(plantsync.mes_operation('op-4', '{"site": "PA", "order": "PO-77", "operation": "0010", "action": "resume"}') ->> 'operation_status',
          'running', 'a resume');
SELECT is((SELECT array_agg(COALESCE(sc.reason, '-') ORDER BY sc.id) FROM plantsync.state_change sc
             JOIN plantsync.production_operation op ON op.id = sc.entity_id JOIN plantsync.production_order o ON o.id = op.order_id
            WHERE o.order_number = 'PO-77' AND sc.entity = 'production_operation' AND sc.to_state IN ('held', 'running') AND sc.from_state = ANY ('{running,held}')),
          ARRAY['mixer alarm', '-'], 'the hold keeps its reason; the resume, a later message of the same transaction, does not take it over');
SELECT is(plantsync.mes_operation('op-5', '{"site": "PA", "order": "PO-77", "operation": "0010", "action": "complete", "at": "2026-12-01T10:00:00Z"}') ->> 'operation_status',
          'completed', 'and completion');
SELECT is((SELECT actual_end FROM plantsync.production_operation op JOIN plantsync.production_order o ON o.id = op.order_id WHERE o.order_number = 'PO-77'),
          '2026-12-01T10:00:00Z'::timestamptz, 'with its actual end');
SELECT throws_ok($$SELECT plantsync.mes_operation('op-6', '{"site": "PA", "order": "PO-77", "operation": "0099", "action": "start"}')$$,
                 '23503', 'operation "0099" of order "PO-77" does not exist', 'an unknown operation is named');
SELECT throws_ok($$SELECT plantsync.mes_operation('op-7', '{"site": "PA", "order": "PO-77", "operation": "0010", "action": "dance"}')$$,
                 'PS010', NULL, 'an unknown action breaks the contract');

SELECT is(plantsync.mes_downtime('dt-1', '{"site": "PA", "downtime": "DT-1", "equipment": "WC1", "order": "PO-77", "started_at": "2026-12-01T08:00:00Z",
                                          "category": "unplanned", "reason_code": "JAM"}') ->> 'ended', 'false', 'a downtime starts');
SELECT is(plantsync.mes_downtime('dt-2', '{"site": "PA", "downtime": "DT-1", "equipment": "WC1", "started_at": "2026-12-01T08:00:00Z",
                                          "ended_at": "2026-12-01T08:25:00Z", "reason_code": "JAM", "description": "bottle jam"}') ->> 'ended',
          'true', 'the same downtime id again ends it');
SELECT results_eq($$SELECT count(*), max(ended_at - started_at), max(description) FROM plantsync.downtime_event WHERE external_id = 'DT-1'$$,
                  $$VALUES (1::bigint, interval '25 minutes', 'bottle jam')$$, 'one downtime event, 25 minutes long');
SELECT throws_ok($$SELECT plantsync.mes_downtime('dt-3', '{"site": "PA", "downtime": "DT-2", "equipment": "WC9", "started_at": "2026-12-01T08:00:00Z", "reason_code": "JAM"}')$$,
                 '23503', 'equipment "WC9" does not exist at site "PA"', 'unknown equipment is named');
SELECT throws_ok($$SELECT plantsync.mes_downtime('dt-4', '{"site": "PA", "downtime": "DT-3", "equipment": "WC1", "started_at": "2026-12-01T09:00:00Z",
                                                           "ended_at": "2026-12-01T08:00:00Z", "reason_code": "JAM"}')$$,
                 '23514', NULL, 'a downtime that ends before it starts is refused');

-- counters and downtime raise maintenance triggers for the maintenance system
SET LOCAL plantsync.source_system = 'hub';
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http) VALUES ('pa-maint', 'hub', 'http://127.0.0.1:9/maint', true);
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('pa-maint', 'maintenance_trigger.*', 'pa-maint');
SET LOCAL plantsync.source_system = 'mes';
INSERT INTO plantsync.maintenance_counter (site_id, equipment_id, counter_name, uom, threshold)
SELECT 'PA', id, c.name, c.uom, c.t FROM plantsync.equipment, (VALUES ('strokes', 'EA', 1000), ('downtime_minutes', 'MIN', 60)) c (name, uom, t)
 WHERE site_id = 'PA' AND equipment_code = 'WC1';
RESET plantsync.source_system;
SELECT is(plantsync.mes_counter('cnt-1', '{"site": "PA", "equipment": "WC1", "counter": "strokes", "add": 600}') ->> 'value', '600', 'a counter moves on');
SELECT is(plantsync.mes_counter('cnt-2', '{"site": "PA", "equipment": "WC1", "counter": "strokes", "add": 500}') ? 'maintenance_trigger_id', true,
          'past its threshold a maintenance trigger is raised');
SELECT results_eq($$SELECT t.reason, t.status, t.downtime_event_id IS NULL FROM plantsync.maintenance_trigger t JOIN plantsync.maintenance_counter c ON c.id = t.counter_id
                     WHERE c.counter_name = 'strokes'$$, $$VALUES ('strokes at 1100 EA reached its threshold of 1000', 'open', true)$$, 'saying why');
SELECT is((SELECT count(*) FROM plantsync.delivery WHERE route_id = 'pa-maint'), 1::bigint, 'an event the maintenance route sends on');
SELECT is(plantsync.mes_counter('cnt-3', '{"site": "PA", "equipment": "WC1", "counter": "strokes", "value": 1200}') ? 'maintenance_trigger_id', false,
          'no second trigger while the first is open');
SELECT throws_ok($$SELECT plantsync.mes_counter('cnt-4', '{"site": "PA", "equipment": "WC1", "counter": "hours", "add": 1}')$$,
                 '23503', 'equipment "WC1" has no counter "hours"', 'an unknown counter is named');
SELECT throws_ok($$SELECT plantsync.mes_counter('cnt-5', '{"site": "PA", "equipment": "WC1", "counter": "strokes"}')$$,
                 'PS010', NULL, 'a counter message says add or value');
SELECT is(plantsync.mes_downtime('dt-10', '{"site": "PA", "downtime": "DT-10", "equipment": "WC1", "started_at": "2026-12-02T08:00:00Z",
                                            "ended_at": "2026-12-02T08:40:00Z", "reason_code": "JAM"}') ? 'maintenance_trigger_id', false,
          'a 40-minute stop: under the 60 downtime minutes that call for maintenance');
SELECT is(plantsync.mes_downtime('dt-11', '{"site": "PA", "downtime": "DT-11", "equipment": "WC1", "started_at": "2026-12-02T10:00:00Z",
                                            "reason_code": "JAM"}') ? 'maintenance_trigger_id', false, 'another stop begins');
SELECT is(plantsync.mes_downtime('dt-12', '{"site": "PA", "downtime": "DT-11", "equipment": "WC1", "started_at": "2026-12-02T10:00:00Z",
                                            "ended_at": "2026-12-02T10:30:00Z", "reason_code": "JAM"}') ? 'maintenance_trigger_id', true,
          'when it ends, 70 downtime minutes raise a maintenance trigger');
SELECT is((SELECT d.external_id FROM plantsync.maintenance_trigger t JOIN plantsync.downtime_event d ON d.id = t.downtime_event_id), 'DT-11',
          'naming the downtime that crossed the line');
SELECT is(plantsync.mes_downtime('dt-12b', '{"site": "PA", "downtime": "DT-11", "equipment": "WC1", "started_at": "2026-12-02T10:00:00Z",
                                             "reason_code": "JAM", "description": "belt"}') ->> 'ended', 'false', 'a correction without its end');
SELECT results_eq($$SELECT d.ended_at, c.current_value FROM plantsync.downtime_event d, plantsync.maintenance_counter c
                     WHERE d.external_id = 'DT-11' AND c.counter_name = 'downtime_minutes'$$,
                  $$VALUES ('2026-12-02T10:30:00Z'::timestamptz, 70::numeric)$$, 'keeps the end, and the minutes are not counted again');
SELECT is(plantsync.mes_downtime('dt-13', '{"site": "PA", "downtime": "DT-13", "equipment": "WC1", "started_at": "2026-12-03T10:00:00Z",
                                            "ended_at": "2026-12-03T12:00:00Z", "category": "planned", "reason_code": "PM"}') ? 'maintenance_trigger_id', false,
          'planned downtime does not count');

SET LOCAL plantsync.source_system = 'qms';
INSERT INTO plantsync.inspection_plan (site_id, plan_code, material_id, inspection_type)
SELECT 'PA', 'QP-RM', id, 'incoming' FROM plantsync.material WHERE site_id = 'PA' AND material_number = 'RM';
INSERT INTO plantsync.inspection_characteristic (site_id, plan_id, characteristic_number, name, kind, target_value, lower_limit, upper_limit, uom)
SELECT 'PA', p.id, '10', 'Moisture', 'quantitative', 0.05, 0, 0.1, 'KG' FROM plantsync.inspection_plan p WHERE p.plan_code = 'QP-RM';
RESET plantsync.source_system;
SELECT is(plantsync.qms_inspection_lot('qi-1', '{"site": "PA", "inspection_lot": "IL-R-1", "lot": "R-1", "type": "incoming", "quantity": 2, "uom": "KG"}') ->> 'inspection_lot_status',
          'released', 'an inspection lot, released for inspection');
SELECT isnt((SELECT plan_id FROM plantsync.inspection_lot WHERE inspection_lot_number = 'IL-R-1'), NULL, 'with the active plan of its material and type');
SELECT throws_ok($$SELECT plantsync.qms_inspection_lot('qi-2', '{"site": "PA", "inspection_lot": "IL-X", "lot": "R-404", "type": "incoming", "quantity": 2, "uom": "KG"}')$$,
                 '23503', 'lot "R-404" does not exist at site "PA"', 'an unknown lot is named');
SET LOCAL plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
SELECT 'PA', id, 'SHARED-1', 'unrestricted' FROM plantsync.material WHERE site_id = 'PA' AND material_number IN ('RM', 'FG');
RESET plantsync.source_system;
SELECT throws_ok($$SELECT plantsync.qms_inspection_lot('qi-3', '{"site": "PA", "inspection_lot": "IL-S", "lot": "SHARED-1", "type": "incoming", "quantity": 1, "uom": "KG"}')$$,
                 '22023', 'lot "SHARED-1" exists for several materials at site "PA"', 'a lot number two materials share needs the material');
CREATE TEMP TABLE qi4 AS
SELECT plantsync.qms_inspection_lot('qi-4', '{"site": "PA", "inspection_lot": "IL-S", "lot": "SHARED-1", "material": "RM", "type": "incoming", "quantity": 1, "uom": "KG"}') AS outcome;
SELECT is((SELECT m.material_number FROM plantsync.inspection_lot il JOIN plantsync.lot l ON l.id = il.lot_id JOIN plantsync.material m ON m.id = l.material_id
            WHERE il.id = (SELECT (outcome ->> 'inspection_lot_id')::uuid FROM qi4)),
          'RM', 'and with it, the right lot is taken');
SELECT throws_ok($$SELECT plantsync.qms_nonconformance('nc-9', '{"site": "PA", "nc": "NC-9", "title": "x", "lot": "SHARED-1", "material": "XX"}')$$,
                 '23503', 'lot "SHARED-1" of material "XX" does not exist at site "PA"', 'a lot of another material is named as such');
SELECT throws_ok($$SELECT plantsync.qms_results('qr-0', '{"site": "PA", "inspection_lot": "IL-R-1", "results": [{"characteristic": "10", "value": 0.04, "conforming": true, "by": "lab"},
                                                                                                            {"characteristic": "99", "value": 1, "conforming": true, "by": "lab"}]}')$$,
                 '23503', 'result 2 names characteristic "99", which the plan of inspection lot "IL-R-1" does not have', 'a result for a characteristic the plan lacks is named');
SELECT is((SELECT count(*) FROM plantsync.inspection_result r JOIN plantsync.inspection_lot il ON il.id = r.inspection_lot_id WHERE il.inspection_lot_number = 'IL-R-1'),
          0::bigint, 'and refused whole');
SELECT is(plantsync.qms_results('qr-1', '{"site": "PA", "inspection_lot": "IL-R-1", "results": [{"characteristic": "10", "value": 0.04, "conforming": true, "by": "lab"},
                                                                                           {"characteristic": "10", "sample": 2, "value": 0.12, "conforming": false, "by": "lab"}]}')
          - 'inspection_lot_id', '{"message": "applied", "results": 2, "nonconforming": 1, "inspection_lot_status": "results_recorded"}'::jsonb,
          'results recorded, the inspection lot awaits its decision');
SELECT is(plantsync.qms_results('qr-2', '{"site": "PA", "inspection_lot": "IL-R-1", "results": [{"characteristic": "10", "sample": 2, "value": 0.06, "conforming": true, "by": "lab"}]}') ->> 'results',
          '1', 'a re-measurement is added, the first reading kept');
SELECT is((SELECT count(*) FROM plantsync.inspection_result r JOIN plantsync.inspection_lot il ON il.id = r.inspection_lot_id WHERE il.inspection_lot_number = 'IL-R-1'),
          3::bigint, 'every reading is kept');

SELECT is(plantsync.qms_nonconformance('nc-1', '{"site": "PA", "nc": "NC-1", "title": "Wet sugar", "lot": "R-1", "severity": "minor"}') ->> 'nonconformance_status',
          'draft', 'a nonconformance opened');
SELECT results_eq($$SELECT m.material_number, l.lot_number FROM plantsync.nonconformance n JOIN plantsync.lot l ON l.id = n.lot_id JOIN plantsync.material m ON m.id = n.material_id
                     WHERE n.nc_number = 'NC-1'$$, $$VALUES ('RM', 'R-1')$$, 'about its lot and material');
SELECT is(plantsync.qms_nonconformance('nc-2', '{"site": "PA", "nc": "NC-1", "title": "Wet sugar from supplier", "status": "in_progress"}') ->> 'nonconformance_status',
          'in_progress', 'brought forward to in progress (through analysis and action plan)');
SELECT is((SELECT title FROM plantsync.nonconformance WHERE nc_number = 'NC-1'), 'Wet sugar from supplier', 'with its new title');
SELECT throws_like($$SELECT plantsync.qms_nonconformance('nc-3', '{"site": "PA", "nc": "NC-1", "title": "Wet sugar", "status": "draft"}')$$,
                   '%in_progress%draft%', 'not back to draft: the state machine says so');
SELECT is(plantsync.qms_nonconformance('nc-4', '{"site": "PA", "nc": "NC-1", "title": "Wet sugar from supplier", "status": "closed"}') ->> 'nonconformance_status',
          'closed', 'closed');
SELECT isnt((SELECT closed_at FROM plantsync.nonconformance WHERE nc_number = 'NC-1'), NULL, 'with its closing time');

SELECT is(plantsync.erp_release_order('erp-78', '{"site": "PA", "order": "PO-78", "material": "FG", "quantity": 50, "uom": "KG",
  "due_date": "2026-12-20", "operations": [{"operation": "0010", "work_center": "WC1", "segment": "MIX", "quantity": 50}]}') ->> 'message', 'applied', 'another order');
SELECT is(plantsync.erp_change_order('chg-1', '{"site": "PA", "order": "PO-78", "quantity": 120, "due_date": "2026-12-18", "reason": "customer call-off"}') -> 'changed',
          '["due_date", "quantity"]'::jsonb, 'an order change');
SELECT results_eq($$SELECT o.quantity, o.due_date, op.planned_quantity FROM plantsync.production_order o JOIN plantsync.production_operation op ON op.order_id = o.id
                     WHERE o.order_number = 'PO-78'$$, $$VALUES (120::numeric, '2026-12-18'::date, 120::numeric)$$,
                  'quantity and due date changed, the operation not started follows');
SELECT throws_ok($$SELECT plantsync.erp_change_order('chg-4', '{"site": "PA", "order": "PO-9", "quantity": 1, "reason": "too late"}')$$,
                 'PS001', 'order "PO-9" is completed and cannot be changed', 'a finished order is not changed');
SELECT throws_ok($$SELECT plantsync.erp_change_order('chg-2', '{"site": "PA", "order": "PO-404", "quantity": 1, "reason": "x"}')$$,
                 '23503', 'order "PO-404" does not exist at site "PA"', 'an unknown order is named');
SELECT throws_ok($$SELECT plantsync.erp_change_order('chg-3', '{"site": "PA", "order": "PO-9", "quantity": 1}')$$, 'PS010', NULL, 'a change needs its reason');

SELECT is(plantsync.erp_inventory_snapshot('inv-1', '{"site": "PA", "taken_at": "2026-11-01T06:00:00Z",
  "rows": [{"material": "RM", "lot": "R-1", "location": "WH", "quantity": 400, "uom": "KG"}]}') ->> 'rows', '1', 'an inventory snapshot through the process API');
SELECT is((SELECT source FROM plantsync.erp_snapshot WHERE site_id = 'PA' AND kind = 'inventory'), 'erp', 'loaded as the ERP''s');
SELECT throws_ok($$SELECT plantsync.erp_inventory_snapshot('inv-2', '{"site": "PA", "taken_at": "2026-11-01T06:00:00Z", "rows": [{"material": "RM"}]}')$$,
                 '22023', NULL, 'a bad row refuses the snapshot');

-- the ERP acknowledges its postings
SELECT is(plantsync.erp_acknowledge_posting('ack-1', '{"site": "PA", "kind": "confirmation", "reference": "mes-2", "document": "100017"}') ->> 'erp_document',
          '100017', 'a confirmation gets its ERP document number');
SELECT is((SELECT erp_document FROM plantsync.production_confirmation WHERE external_id = 'mes-2'), '100017', 'kept on the confirmation');
SELECT is(plantsync.erp_acknowledge_posting('ack-2', '{"site": "PA", "kind": "inspection_lot", "reference": "UD-FG-2", "document": "4900000077"}') ->> 'inspection_lot_status',
          'stock_posted', 'the stock posting of a usage decision moves its inspection lot to stock_posted');
SELECT throws_like($$SELECT plantsync.erp_acknowledge_posting('ack-3', '{"site": "PA", "kind": "inspection_lot", "reference": "IL-R-1", "document": "1"}')$$,
                   '%results_recorded%stock_posted%', 'not before a decision: the state machine says so');
SELECT throws_ok($$SELECT plantsync.erp_acknowledge_posting('ack-4', '{"site": "PA", "kind": "confirmation", "reference": "nope", "document": "1"}')$$,
                 '23503', 'confirmation "nope" does not exist at site "PA"', 'an unknown confirmation is named');
SELECT throws_ok($$SELECT plantsync.erp_acknowledge_posting('ack-5', '{"site": "PA", "kind": "movement", "reference": "x", "document": "1"}')$$,
                 'PS010', NULL, 'movements are acknowledged through postings snapshots, not this message');

-- roles: each system calls its own functions only
CREATE ROLE plantsync_tap_mes;
SELECT set_eq($$SELECT plantsync.grant_integration_role('mes', 'plantsync_tap_mes')$$,
              $$VALUES ('plantsync.mes_complete(text,jsonb)'), ('plantsync.mes_confirm(text,jsonb)'), ('plantsync.mes_consume(text,jsonb)'),
                       ('plantsync.mes_ingest_signals(text,jsonb)'), ('plantsync.mes_drain_signals(text,jsonb)'),
                       ('plantsync.mes_import_b2mml(text,text,text)'), ('plantsync.mes_operation(text,jsonb)'),
                       ('plantsync.mes_downtime(text,jsonb)'), ('plantsync.mes_counter(text,jsonb)')$$,
              'the MES role gets the MES functions');
SET LOCAL ROLE plantsync_tap_mes;
SELECT is(plantsync.mes_consume('mes-7', '{"site": "PA", "order": "PO-11", "material": "RM", "lot": "R-1", "quantity": 2, "uom": "KG", "location": "WH"}') ->> 'message',
          'applied', 'the MES role consumes, with no table privileges of its own');
SELECT throws_ok($$SELECT plantsync.erp_release_order('erp-10', '{}')$$, '42501', NULL, 'but cannot release orders');
SELECT throws_ok($$SELECT plantsync.receive('mes.consume', 'mes-8', '{}')$$, '42501', NULL, 'nor call the inbox directly');
SELECT throws_ok($$INSERT INTO plantsync.inbox (system_code, message_id, message_type, payload, status) VALUES ('mes', 'x', 'mes.consume', '{}', 'applied')$$,
                 '42501', NULL, 'nor write the inbox');
RESET ROLE;
SELECT is((SELECT received_by FROM plantsync.inbox WHERE message_id = 'mes-7'), 'postgres'::name, 'the inbox records the session''s role');
SELECT throws_ok($$SELECT plantsync.grant_integration_role('wms', 'plantsync_tap_mes')$$, '22023', 'system "wms" has no process APIs', 'unknown systems are refused');

-- parked messages an operator takes in hand
SELECT is(plantsync.mes_operation('mes-park-1', '{"site": "PA", "order": "PO-PK", "operation": "0010", "action": "start"}') ->> 'message',
          'parked', 'an operation start for an order not released yet is parked');
SELECT is(plantsync.erp_release_order('erp-park', '{"site": "PA", "order": "PO-PK", "material": "FG", "quantity": 10, "uom": "KG", "due_date": "2026-12-20"}') ->> 'message',
          'applied', 'the order is released, without its operations');
SELECT is((SELECT waiting_for FROM plantsync.inbox WHERE message_id = 'mes-park-1'),
          'refused when its order arrived: operation "0010" of order "PO-PK" does not exist',
          'the start is refused then: it stays parked, saying why');
SET LOCAL plantsync.source_system = 'erp';
INSERT INTO plantsync.production_operation (site_id, order_id, operation_number, work_center_id, process_segment, planned_quantity)
SELECT 'PA', o.id, '0010', (SELECT id FROM plantsync.equipment WHERE site_id = 'PA' AND equipment_code = 'WC1'), 'MIX', 10
  FROM plantsync.production_order o WHERE o.site_id = 'PA' AND o.order_number = 'PO-PK';
RESET plantsync.source_system;
SELECT results_eq($$SELECT sender, parked_message_id, outcome, still_waiting_for FROM plantsync.retry_parked(message_id => 'mes-park-1')$$,
                  $$VALUES ('mes', 'mes-park-1', 'applied', NULL::text)$$, 'once the ERP has added the operation, an operator retries it: applied');
SELECT is((SELECT op.status FROM plantsync.production_operation op JOIN plantsync.production_order o ON o.id = op.order_id WHERE o.order_number = 'PO-PK'),
          'running', 'the operation runs');
SELECT throws_ok($$SELECT * FROM plantsync.retry_parked(message_id => 'mes-park-1')$$, 'P0002', 'no parked messages match the selection',
                 'a message no longer parked is not retried');
SELECT throws_ok($$SELECT * FROM plantsync.retry_parked()$$, '22023', 'no parked messages selected', 'a selection is required');
SELECT is(plantsync.mes_consume('mes-park-3', '{"site": "PA", "order": "PO-NEVER", "material": "RM", "lot": "R-1", "quantity": 1, "uom": "KG", "location": "WH"}') ->> 'message',
          'parked', 'a consumption for an order that will never come');
SELECT results_eq($$SELECT outcome, still_waiting_for FROM plantsync.retry_parked(site_id => 'PA')$$, $$VALUES ('parked', 'order PO-NEVER')$$,
                  'retried, it is still waiting for its order');
SELECT throws_ok($$SELECT plantsync.discard_parked(' ', message_id => 'mes-park-3')$$, '22023', NULL, 'discarding needs a reason');
SELECT is(plantsync.discard_parked('order cancelled in the ERP before release, INC-11', message_id => 'mes-park-3'), 'mes/mes-park-3', 'it is discarded');
SELECT results_eq($$SELECT status, outcome ->> 'reason', outcome ->> 'waiting_for' FROM plantsync.inbox WHERE message_id = 'mes-park-3'$$,
                  $$VALUES ('discarded', 'order cancelled in the ERP before release, INC-11', 'order PO-NEVER')$$, 'with the reason and what it waited for');
SELECT is(plantsync.mes_consume('mes-park-3', '{"site": "PA", "order": "PO-NEVER", "material": "RM", "lot": "R-1", "quantity": 1, "uom": "KG", "location": "WH"}') ->> 'first_status',
          'discarded', 'sent again, it is a duplicate of a discarded message');
SELECT ok(NOT has_function_privilege('public', 'plantsync.retry_parked(text, text, text)', 'EXECUTE')
          AND NOT has_function_privilege('public', 'plantsync.discard_parked(text, text, text, text)', 'EXECUTE'), 'only administrators take parked messages in hand');

-- message ids are per system and plant: two plants' MES may number alike
SET LOCAL plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('PB', 'Second plant');
RESET plantsync.source_system;
SELECT is(plantsync.mes_operation('same-id', '{"site": "PA", "order": "PO-SAME", "operation": "0010", "action": "start"}') ->> 'message',
          'parked', 'plant A''s message "same-id"');
SELECT is(plantsync.mes_operation('same-id', '{"site": "PB", "order": "PO-SAME", "operation": "0010", "action": "start"}') ->> 'message',
          'parked', 'plant B''s message of the same id is its own, not a conflict');
SELECT is(plantsync.mes_operation('same-id', '{"site": "PB", "order": "PO-SAME", "operation": "0010", "action": "start"}') ->> 'message',
          'duplicate', 'and sent again, a duplicate of its own plant''s');

SELECT throws_ok($$SELECT plantsync.mes_operation('typo-1', '{"site": "P0A", "order": "PO-9", "operation": "0010", "action": "start"}')$$,
                 '23503', 'site "P0A" does not exist', 'a message for a plant that does not exist is refused, not parked');

SELECT * FROM finish();
ROLLBACK;
