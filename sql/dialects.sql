-- Dialects as ERPs receive them: ERPNext Stock Entries for each kind of
-- movement (golden output below), codes mapped per site, holds as moves to
-- the quarantine warehouse, and the answers of ERPNext and SAP parsed alike.
\set SHOW_CONTEXT never
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('DX', 'Dialect plant');
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('DX', 'RM01', 'Raw'), ('DX', 'FG01', 'Finished');
INSERT INTO plantsync.dialect_mapping VALUES
    ('DX', 'erpnext', 'company', '*', 'ACME Syrups'),
    ('DX', 'erpnext', 'quarantine_warehouse', '*', 'Quarantine - ACME'),
    ('DX', 'erpnext', 'warehouse', 'RM01', 'Stores - ACME'),
    ('DX', 'erpnext', 'warehouse', 'FG01', 'Finished Goods - ACME'),
    ('DX', 'erpnext', 'item', 'SUGAR', 'RM-SUGAR-25KG'),
    ('DX', 'erpnext', 'uom', 'KG', 'Kg');
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, material_type, base_uom)
VALUES ('DX', 'SUGAR', 'Sugar', 'raw', 'KG'), ('DX', 'SYRUP', 'Syrup', 'finished', 'KG');
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
SELECT 'DX', 'WO-0001', id, 100, 'KG', 'released', '2027-01-01' FROM plantsync.material WHERE material_number = 'SYRUP';
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
SELECT 'DX', id, n, 'unrestricted' FROM plantsync.material, (VALUES ('SUGAR', 'S-1'), ('SYRUP', 'Y-1')) v (mat, n) WHERE material_number = v.mat;
CREATE FUNCTION regress.dx(p_type text, p_mat text, p_lot text, p_qty numeric, p_from text, p_to text, p_ext text, p_from_st text DEFAULT NULL, p_to_st text DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, to_location_id,
                                             from_stock_type, to_stock_type, order_id, source_system, external_id, posted_at)
    SELECT 'DX', p_type, m.id, l.id, p_qty, 'KG', f.id, t.id, p_from_st, p_to_st,
           CASE WHEN p_type IN ('consumption', 'production_receipt') THEN (SELECT id FROM plantsync.production_order WHERE order_number = 'WO-0001') END,
           'mes', p_ext, '2026-11-20 08:00+00'::timestamptz + (SELECT count(*) FROM plantsync.material_movement WHERE site_id = 'DX') * interval '1 hour'
      FROM plantsync.material m JOIN plantsync.lot l ON l.material_id = m.id
      LEFT JOIN plantsync.storage_location f ON f.site_id = 'DX' AND f.location_code = p_from
      LEFT JOIN plantsync.storage_location t ON t.site_id = 'DX' AND t.location_code = p_to
     WHERE m.site_id = 'DX' AND m.material_number = p_mat AND l.lot_number = p_lot $$;
SELECT regress.dx('goods_receipt', 'SUGAR', 'S-1', 500, NULL, 'RM01', 'DX-1'),
       regress.dx('consumption', 'SUGAR', 'S-1', 60, 'RM01', NULL, 'DX-2'),
       regress.dx('production_receipt', 'SYRUP', 'Y-1', 100, NULL, 'FG01', 'DX-3'),
       regress.dx('transfer', 'SUGAR', 'S-1', 40, 'RM01', 'FG01', 'DX-4'),
       regress.dx('status_change', 'SYRUP', 'Y-1', 100, 'FG01', 'FG01', 'DX-5', 'unrestricted', 'blocked'),
       regress.dx('status_change', 'SYRUP', 'Y-1', 100, 'FG01', 'FG01', 'DX-6', 'blocked', 'unrestricted');

-- The Stock Entries (remarks carry the event id, left out here).
SELECT e.data ->> 'external_id' AS movement, jsonb_pretty(plantsync.erpnext_stock_entry(e) - 'remarks') AS stock_entry
  FROM plantsync.event e WHERE e.entity = 'material_movement' AND e.site_id = 'DX' ORDER BY e.data ->> 'external_id';
SELECT plantsync.erpnext_stock_entry(e) ->> 'remarks' LIKE 'plantsync DX-1 %' AS remarks_name_the_movement
  FROM plantsync.event e WHERE e.entity = 'material_movement' AND e.data ->> 'external_id' = 'DX-1';

-- The order's life as ERPNext Work Order statuses.
SET plantsync.source_system = 'mes';
UPDATE plantsync.production_order SET status = 'in_progress' WHERE order_number = 'WO-0001';
UPDATE plantsync.production_order SET status = 'completed' WHERE order_number = 'WO-0001';
SELECT e.type, plantsync.erpnext_work_order(e) ->> 'status' AS erpnext_status, plantsync.erpnext_work_order(e) - 'status' AS body
  FROM plantsync.event e WHERE e.entity = 'production_order' AND e.site_id = 'DX' ORDER BY e.aggregate_seq;

-- The final inspection of Y-1 and its usage decision, as an ERPNext Quality Inspection.
SET plantsync.source_system = 'qms';
INSERT INTO plantsync.inspection_plan (site_id, plan_code, material_id, inspection_type)
SELECT 'DX', 'QP-SYRUP', id, 'final' FROM plantsync.material WHERE material_number = 'SYRUP';
INSERT INTO plantsync.inspection_characteristic (site_id, plan_id, characteristic_number, name, kind, target_value, lower_limit, upper_limit, uom)
SELECT 'DX', p.id, c.n, c.name, 'quantitative', c.t, c.lo, c.hi, 'KG' FROM plantsync.inspection_plan p,
       (VALUES ('10', 'Brix', 65, 63, 67), ('20', 'Viscosity', 120, 100, 140)) c (n, name, t, lo, hi) WHERE p.plan_code = 'QP-SYRUP';
INSERT INTO plantsync.inspection_lot (site_id, inspection_lot_number, lot_id, plan_id, production_order_id, inspection_type, quantity, uom)
SELECT 'DX', 'IL-Y-1', l.id, p.id, l.production_order_id, 'final', 5, 'KG'
  FROM plantsync.lot l, plantsync.inspection_plan p WHERE l.lot_number = 'Y-1' AND p.plan_code = 'QP-SYRUP';
UPDATE plantsync.inspection_lot SET status = 'released' WHERE inspection_lot_number = 'IL-Y-1';
INSERT INTO plantsync.inspection_result (site_id, inspection_lot_id, characteristic_id, measured_value, uom, is_conforming, recorded_by, source_system, external_id)
SELECT 'DX', il.id, c.id, v.val, 'KG', v.ok, 'lab', 'qms', 'R-' || c.characteristic_number
  FROM plantsync.inspection_lot il, plantsync.inspection_characteristic c
  JOIN (VALUES ('10', 65.4, true), ('20', 131, true)) v (n, val, ok) ON v.n = c.characteristic_number
 WHERE il.inspection_lot_number = 'IL-Y-1';
UPDATE plantsync.inspection_lot SET status = 'results_recorded' WHERE inspection_lot_number = 'IL-Y-1';
INSERT INTO plantsync.usage_decision (site_id, inspection_lot_id, decision, decision_code, decided_by, comment)
SELECT 'DX', id, 'accept', 'A1', 'QA: J. Doe', 'within limits' FROM plantsync.inspection_lot WHERE inspection_lot_number = 'IL-Y-1';
SELECT jsonb_pretty(plantsync.erpnext_quality_inspection(e)) AS quality_inspection
  FROM plantsync.event e WHERE e.entity = 'usage_decision' AND e.site_id = 'DX';
RESET plantsync.source_system;

-- Refusals.
SELECT plantsync.erpnext_stock_entry(e) FROM plantsync.event e WHERE e.entity = 'production_order' AND e.site_id = 'DX' LIMIT 1;
\echo :SQLSTATE
SELECT plantsync.erpnext_work_order(e) FROM plantsync.event e WHERE e.entity = 'material_movement' AND e.site_id = 'DX' LIMIT 1;
\echo :SQLSTATE
SELECT plantsync.erpnext_quality_inspection(e) FROM plantsync.event e WHERE e.entity = 'lot' AND e.site_id = 'DX' LIMIT 1;
\echo :SQLSTATE
DELETE FROM plantsync.dialect_mapping WHERE kind = 'quarantine_warehouse';
SELECT plantsync.erpnext_stock_entry(e) FROM plantsync.event e WHERE e.data ->> 'external_id' = 'DX-5';
\echo :SQLSTATE

-- Answers, ERPNext and SAP alike.
SELECT b AS answer, r.document, r.error
  FROM (VALUES ('{"data": {"name": "MAT-STE-2026-00042", "docstatus": 1}}'),
               ('{"message": {"name": "MAT-STE-2026-00043"}}'),
               ('{"exc_type": "ValidationError", "exception": "frappe.exceptions.ValidationError: Batch S-9 not found"}'),
               ('{"d": {"MaterialDocument": "4900001234", "MaterialDocumentYear": "2026"}}'),
               ('{"d": {"ConfirmationGroup": "100017", "OrderID": "1000042"}}'),
               ('{"error": {"code": "M7/021", "message": {"lang": "en", "value": "Deficit of BA Unrestricted-use 5 KG"}}}'),
               ('<html>502 Bad Gateway</html>')) v (b),
       LATERAL plantsync.parse_erp_response(b) r;

-- ---------- inbound documents refused, naming the field ----------
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.dialect_mapping VALUES ('DX', 'sap', 'plant', '*', '1010');
RESET plantsync.source_system;
SELECT plantsync.from_erpnext_work_order('[1, 2]');
\echo :SQLSTATE
SELECT plantsync.from_erpnext_work_order('{"data": {"company": "ACME Syrups", "qty": 5}}');
\echo :SQLSTATE
SELECT plantsync.from_erpnext_work_order('{"name": "MFG-WO-1", "docstatus": 0, "company": "ACME Syrups"}');
\echo :SQLSTATE
SELECT plantsync.from_erpnext_work_order('{"name": "MFG-WO-1", "docstatus": 1, "company": "Other Corp"}');
\echo :SQLSTATE
SELECT plantsync.from_erpnext_work_order('{"name": "MFG-WO-1", "company": "ACME Syrups", "qty": "many"}');
\echo :SQLSTATE
SELECT plantsync.from_erpnext_work_order('{"name": "MFG-WO-1", "company": "ACME Syrups", "qty": 5, "stock_uom": "Kg", "expected_delivery_date": "2027-01-01"}');
\echo :SQLSTATE
SELECT plantsync.from_erpnext_work_order('{"name": "MFG-WO-1", "company": "ACME Syrups", "qty": 5, "production_item": "RM-SUGAR-25KG", "stock_uom": "Kg", "expected_delivery_date": "2027-01-01", "operations": [{"operation": "MIX"}]}');
\echo :SQLSTATE
-- a good one: codes mapped back, the site from the company
SELECT plantsync.from_erpnext_work_order('{"name": "MFG-WO-1", "company": "ACME Syrups", "qty": 5, "production_item": "RM-SUGAR-25KG", "stock_uom": "Kg", "expected_delivery_date": "2027-01-01"}');
SELECT plantsync.from_sap_production_order('{"d": {"ManufacturingOrder": "1000001", "OrderIsReleased": false}}');
\echo :SQLSTATE
SELECT plantsync.from_sap_production_order('{"ManufacturingOrder": "1000001", "ProductionPlant": "9999"}');
\echo :SQLSTATE
SELECT plantsync.from_sap_production_order('{"ManufacturingOrder": "1000001", "ProductionPlant": "1010", "Material": "SUGAR", "TotalQuantity": "10", "ProductionUnit": "KG", "MfgOrderPlannedEndDate": "/Date(abc)/"}');
\echo :SQLSTATE
SELECT plantsync.from_sap_production_order('{"ManufacturingOrder": "1000001", "ProductionPlant": "1010", "Material": "SUGAR", "TotalQuantity": "ten", "ProductionUnit": "KG", "MfgOrderPlannedEndDate": "/Date(1796342400000)/"}');
\echo :SQLSTATE
SELECT plantsync.from_sap_production_order('{"ManufacturingOrder": "1000001", "ProductionPlant": "1010", "Material": "SUGAR", "TotalQuantity": "10", "ProductionUnit": "KG", "MfgOrderPlannedEndDate": "/Date(1796342400000+0000)/"}');
SELECT plantsync.odata_date('2026-12-04'::date), plantsync.odata_date('2026-12-04 23:30+00'::timestamptz), plantsync.odata_decimal(100.500);

-- ---------- CloudEvents ----------
SELECT jsonb_pretty(plantsync.cloudevent(ROW('01890a5d-ac96-774b-bcce-b302099a8057', '2026-11-20 08:00+00', 'lot.blocked', '/plantsync/sites/DX',
           'lot/L-1', '2026-11-20 08:00:00.123456+00', '1.0', 'application/json', NULL, '{"disposition": "blocked", "erp_ref": null}',
           '01890a5d-ac96-774b-bcce-b302099a8058', NULL, 'qms', 'DX', NULL, NULL, 'L-1', 'lot', '01890a5d-ac96-774b-bcce-b302099a8059',
           'restricted', 'blocked', 'lot', '01890a5d-ac96-774b-bcce-b302099a8059', 7, '1')::plantsync.event));
SELECT plantsync.event_from_cloudevent('"not an object"');
\echo :SQLSTATE
SELECT plantsync.event_from_cloudevent('{"specversion": "1.0", "id": "01890a5d-ac96-774b-bcce-b302099a8057", "source": "/x"}');
\echo :SQLSTATE
SELECT plantsync.event_from_cloudevent('{"specversion": "0.3", "id": "01890a5d-ac96-774b-bcce-b302099a8057", "source": "/x", "type": "lot.blocked"}');
\echo :SQLSTATE
SELECT plantsync.event_from_cloudevent('{"specversion": "1.0", "id": "A-1", "source": "/x", "type": "lot.blocked"}');
\echo :SQLSTATE

-- ---------- transforms refused on the wrong events ----------
SELECT plantsync.erpnext_manufacture(e) FROM plantsync.event e WHERE e.type = 'production_order.released' AND e.site_id = 'DX';
\echo :SQLSTATE
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, source_system, external_id)
SELECT 'DX', 'shipment', l.material_id, l.id, 1, 'KG', s.id, 'mes', 'DX-SHIP' FROM plantsync.lot l, plantsync.storage_location s
 WHERE l.lot_number = 'S-1' AND s.location_code = 'RM01' AND s.site_id = 'DX';
RESET plantsync.source_system;
SELECT plantsync.sap_material_document(e) FROM plantsync.event e WHERE e.data ->> 'external_id' = 'DX-SHIP';
\echo :SQLSTATE

-- ---------- B2MML documents refused with the element path and the reason ----------
SELECT plantsync.parse_b2mml('<ProductionSchedule', 'DX');
\echo :SQLSTATE
SELECT plantsync.parse_b2mml('<ProductionSchedule xmlns="urn:example"/>', 'DX');
\echo :SQLSTATE
SELECT plantsync.parse_b2mml('<ProductionSchedule xmlns="http://www.mesa.org/xml/B2MML-V0600"/>', 'NOPE');
\echo :SQLSTATE
SELECT plantsync.parse_b2mml('<SyncEquipment xmlns="http://www.mesa.org/xml/B2MML"><ApplicationArea/><DataArea><Sync/><Equipment><ID>E</ID></Equipment></DataArea></SyncEquipment>', 'DX');
\echo :SQLSTATE
SELECT plantsync.parse_b2mml('<ProductionSchedule xmlns="http://www.mesa.org/xml/B2MML-V0600"><ProductionRequest><ID>PO-9</ID>
  <SegmentRequirement><ID>10</ID><EquipmentRequirement><EquipmentID>MIXER-1</EquipmentID></EquipmentRequirement></SegmentRequirement>
  </ProductionRequest></ProductionSchedule>', 'DX');
\echo :SQLSTATE
SELECT plantsync.parse_b2mml('<ProductionSchedule xmlns="http://www.mesa.org/xml/B2MML-V0600"><ProductionRequest><ID>PO-9</ID><EndTime>2027-01-01T00:00:00Z</EndTime>
  <SegmentRequirement><ID>10</ID><MaterialProducedRequirement><MaterialDefinitionID>SYRUP</MaterialDefinitionID>
  <Quantity><QuantityString>lots</QuantityString><UnitOfMeasure>KG</UnitOfMeasure></Quantity></MaterialProducedRequirement></SegmentRequirement>
  </ProductionRequest></ProductionSchedule>', 'DX');
\echo :SQLSTATE
SELECT plantsync.parse_b2mml('<ProductionSchedule xmlns="http://www.mesa.org/xml/B2MML-V0600"><ProductionRequest><ID>PO-9</ID><EndTime>2027-01-01T00:00:00Z</EndTime>
  <SegmentRequirement><ID>10</ID><MaterialProducedRequirement><MaterialDefinitionID>SYRUP</MaterialDefinitionID>
  <Quantity><QuantityString>5</QuantityString><UnitOfMeasure>KG</UnitOfMeasure></Quantity></MaterialProducedRequirement></SegmentRequirement>
  </ProductionRequest></ProductionSchedule>', 'DX');
\echo :SQLSTATE
SELECT plantsync.parse_b2mml('<OperationsPerformance xmlns="http://www.mesa.org/xml/B2MML"><ID>P</ID><OperationsResponse><ID>R</ID>
  <OperationsRequestID>WO-0001</OperationsRequestID><SegmentResponse><ID>S</ID><MaterialActual><ID>A</ID>
  <MaterialDefinitionID>SUGAR</MaterialDefinitionID><MaterialUse>Consumed</MaterialUse>
  <Quantity><QuantityString>5</QuantityString><UnitOfMeasure>KG</UnitOfMeasure></Quantity></MaterialActual></SegmentResponse>
  </OperationsResponse></OperationsPerformance>', 'DX');
\echo :SQLSTATE
-- a performance sent as the ERP, a document id reused for another document
SELECT plantsync.erp_import_b2mml('P-1', 'DX', '<OperationsPerformance xmlns="http://www.mesa.org/xml/B2MML"><ID>P</ID></OperationsPerformance>');
\echo :SQLSTATE
SELECT plantsync.erp_import_b2mml('P-2', 'DX', '<OperationsPerformance xmlns="http://www.mesa.org/xml/B2MML"><ID>P</ID><OperationsResponse><ID>R</ID>
  <OperationsRequestID>WO-0001</OperationsRequestID><SegmentResponse><ID>S</ID><MaterialActual><ID>A</ID>
  <MaterialDefinitionID>SUGAR</MaterialDefinitionID><MaterialLotID>S-1</MaterialLotID><MaterialUse>Consumed</MaterialUse>
  <StorageLocation><Location>RM01</Location><LocationType>Operational Location ID</LocationType></StorageLocation>
  <Quantity><QuantityString>5</QuantityString><UnitOfMeasure>KG</UnitOfMeasure></Quantity></MaterialActual></SegmentResponse>
  </OperationsResponse></OperationsPerformance>');
\echo :SQLSTATE
SELECT plantsync.erp_import_b2mml('M-1', 'DX', '<MaterialDefinition xmlns="http://www.mesa.org/xml/B2MML"><ID>SALT</ID><Description>Salt</Description>
  <MaterialDefinitionProperty><ID>BaseUnitOfMeasure</ID><Value><ValueString>KG</ValueString></Value></MaterialDefinitionProperty></MaterialDefinition>') - 'messages';
\set VERBOSITY terse
SELECT plantsync.erp_import_b2mml('M-1', 'DX', '<MaterialDefinition xmlns="http://www.mesa.org/xml/B2MML"><ID>SALT</ID><Description>Sea salt</Description>
  <MaterialDefinitionProperty><ID>BaseUnitOfMeasure</ID><Value><ValueString>KG</ValueString></Value></MaterialDefinitionProperty></MaterialDefinition>');
\echo :SQLSTATE
\set VERBOSITY default
SELECT plantsync.erp_import_b2mml('M-2', 'DX', '<MaterialDefinition xmlns="http://www.mesa.org/xml/B2MML"><ID>SALT</ID><Description>Salt</Description>
  <MaterialDefinitionProperty><ID>BaseUnitOfMeasure</ID><Value><ValueString>BUSHEL</ValueString></Value></MaterialDefinitionProperty></MaterialDefinition>');
\echo :SQLSTATE
-- refused documents leave nothing behind
SELECT count(*) AS imports, count(*) FILTER (WHERE message_id = 'M-2') AS refused_kept FROM plantsync.b2mml_import;
SELECT material_number, description, base_uom FROM plantsync.material WHERE material_number = 'SALT';
-- a DOCTYPE is refused: no entity is ever read (no file leaks into an import)
SELECT plantsync.parse_b2mml('<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<MaterialDefinition xmlns="http://www.mesa.org/xml/B2MML"><ID>LEAK</ID><Description>&x;</Description>
<MaterialDefinitionProperty><ID>BaseUnitOfMeasure</ID><Value><ValueString>KG</ValueString></Value></MaterialDefinitionProperty></MaterialDefinition>', 'DX')
       #>> '{messages,0,payload,description}' AS description;
\echo :SQLSTATE
-- SAP: a stock type change is undone by the opposite change, not by type + 1
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, reverses_movement_id, source_system, external_id)
SELECT site_id, 'reversal', material_id, lot_id, quantity, uom, id, 'mes', 'DX-5-REV' FROM plantsync.material_movement WHERE external_id = 'DX-5';
RESET plantsync.source_system;
SELECT m.external_id, g.movement_type, g.movement_code
  FROM plantsync.material_movement m, LATERAL plantsync.sap_goods_movement(m.id) g
 WHERE m.external_id IN ('DX-5', 'DX-5-REV') ORDER BY m.external_id;

-- Batch transforms: a batch is one kind of document; a mixed or empty one
-- is refused, and a batch whose transform fails goes as the array it is.
SELECT jsonb_pretty(plantsync.erpnext_stock_entry_batch('[{"purpose": "Material Consumption for Manufacture", "work_order": "W1", "company": "C", "remarks": "a", "items": [{"qty": 1}]},
                                                          {"purpose": "Material Consumption for Manufacture", "work_order": "W1", "company": "C", "remarks": "b", "items": [{"qty": 2}, {"qty": 3}]}]'));
SELECT plantsync.erpnext_stock_entry_batch('[{"purpose": "Material Issue", "work_order": "W1"}, {"purpose": "Material Receipt", "work_order": "W1"}]');
\echo :SQLSTATE
SELECT plantsync.erpnext_stock_entry_batch('[]');
\echo :SQLSTATE
SELECT plantsync.sap_material_document_batch('[{"GoodsMovementCode": "03", "MaterialDocumentHeaderText": "plantsync DX-2", "to_MaterialDocumentItem": {"results": [{"GoodsMovementType": "261"}]}},
                                               {"GoodsMovementCode": "03", "MaterialDocumentHeaderText": "plantsync DX-3", "to_MaterialDocumentItem": {"results": [{"GoodsMovementType": "261"}]}}]')
       -> 'to_MaterialDocumentItem' AS sap_items;
SELECT plantsync.sap_material_document_batch('[{"GoodsMovementCode": "03"}, {"GoodsMovementCode": "05"}]');
\echo :SQLSTATE
SELECT plantsync.batch_document('plantsync.erpnext_stock_entry_batch', '{"not": "an array"}') IS NULL AS sent_as_array;
