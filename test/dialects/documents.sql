-- Every dialect document the fixture's events make, one row each:
-- (name, kind, document). test/e2e/dialects.sh compares them with the
-- golden files in test/dialects/golden/.
SELECT name, kind, doc FROM (
    SELECT 'erpnext_stock_entry-' || k AS name, 'json' AS kind, plantsync.erpnext_stock_entry(e)::text AS doc
      FROM plantsync.event e, LATERAL (SELECT COALESCE(e.data ->> 'external_id', e.data ->> 'nc_number', e.data ->> 'order_number', '') AS k) x WHERE e.site_id = 'DX' AND e.entity = 'material_movement'
    UNION ALL
    SELECT 'sap_material_document-' || k, 'json', plantsync.sap_material_document(e)::text
      FROM plantsync.event e, LATERAL (SELECT COALESCE(e.data ->> 'external_id', e.data ->> 'nc_number', e.data ->> 'order_number', '') AS k) x WHERE e.site_id = 'DX' AND e.entity = 'material_movement'
    UNION ALL
    SELECT 'erpnext_work_order-' || e.type, 'json', plantsync.erpnext_work_order(e)::text
      FROM plantsync.event e, LATERAL (SELECT COALESCE(e.data ->> 'external_id', e.data ->> 'nc_number', e.data ->> 'order_number', '') AS k) x WHERE e.site_id = 'DX' AND e.entity = 'production_order'
    UNION ALL
    SELECT 'mes_work_package-' || e.type, 'json', plantsync.mes_work_package(e)::text
      FROM plantsync.event e WHERE e.site_id = 'DX' AND e.type = 'production_order.released'
    UNION ALL
    SELECT 'sap_production_order-' || e.type, 'json', plantsync.sap_production_order(e)::text
      FROM plantsync.event e, LATERAL (SELECT COALESCE(e.data ->> 'external_id', e.data ->> 'nc_number', e.data ->> 'order_number', '') AS k) x WHERE e.site_id = 'DX' AND e.entity = 'production_order' AND e.type = 'production_order.released'
    UNION ALL
    SELECT 'erpnext_manufacture-' || k, 'json', plantsync.erpnext_manufacture(e)::text
      FROM plantsync.event e, LATERAL (SELECT COALESCE(e.data ->> 'external_id', e.data ->> 'nc_number', e.data ->> 'order_number', '') AS k) x WHERE e.site_id = 'DX' AND e.type = 'production_order.completed'
    UNION ALL
    SELECT 'sap_production_confirmation-' || k, 'json', plantsync.sap_production_confirmation(e)::text
      FROM plantsync.event e, LATERAL (SELECT COALESCE(e.data ->> 'external_id', e.data ->> 'nc_number', e.data ->> 'order_number', '') AS k) x WHERE e.site_id = 'DX' AND e.entity = 'production_confirmation'
    UNION ALL
    SELECT 'erpnext_quality_inspection', 'json', plantsync.erpnext_quality_inspection(e)::text
      FROM plantsync.event e, LATERAL (SELECT COALESCE(e.data ->> 'external_id', e.data ->> 'nc_number', e.data ->> 'order_number', '') AS k) x WHERE e.site_id = 'DX' AND e.entity = 'usage_decision'
    UNION ALL
    SELECT 'sap_usage_decision', 'json', plantsync.sap_usage_decision(e)::text
      FROM plantsync.event e, LATERAL (SELECT COALESCE(e.data ->> 'external_id', e.data ->> 'nc_number', e.data ->> 'order_number', '') AS k) x WHERE e.site_id = 'DX' AND e.entity = 'usage_decision'
    UNION ALL
    SELECT 'erpnext_non_conformance-' || e.type, 'json', plantsync.erpnext_non_conformance(e)::text
      FROM plantsync.event e, LATERAL (SELECT COALESCE(e.data ->> 'external_id', e.data ->> 'nc_number', e.data ->> 'order_number', '') AS k) x WHERE e.site_id = 'DX' AND e.entity = 'nonconformance'
    UNION ALL
    -- (dated by the event's time, which is the fixture's run: left out)
    SELECT 'sap_lot_stock_transfer-' || e.lot_number || '-' || e.type, 'json', (plantsync.sap_lot_stock_transfer(e) - 'PostingDate' - 'DocumentDate')::text
      FROM plantsync.event e WHERE e.site_id = 'DX' AND e.entity = 'lot' AND plantsync.sap_lot_stock_transfer(e) IS NOT NULL
    UNION ALL
    SELECT 'erpnext_lot_transfer-' || e.lot_number || '-' || e.type, 'json', (plantsync.erpnext_lot_transfer(e) - 'posting_date' - 'posting_time')::text
      FROM plantsync.event e WHERE e.site_id = 'DX' AND e.entity = 'lot' AND plantsync.erpnext_lot_transfer(e) IS NOT NULL
    UNION ALL
    SELECT 'cloudevent-' || e.type, 'json', plantsync.cloudevent(e)::text
      FROM plantsync.event e, LATERAL (SELECT COALESCE(e.data ->> 'external_id', e.data ->> 'nc_number', e.data ->> 'order_number', '') AS k) x WHERE e.site_id = 'DX' AND e.type IN ('production_order.released', 'material_movement.recorded') AND k IN ('WO-0001', 'DX-2')
    UNION ALL
    -- the parsers: answers of ERPNext and SAP, and the inbound documents
    SELECT 'parse_erp_response-' || v.name, 'json', (SELECT to_jsonb(r) FROM plantsync.parse_erp_response(v.body) r)::text
      FROM (VALUES ('erpnext-data', '{"data": {"name": "MAT-STE-2026-00042", "docstatus": 1}}'),
                   ('erpnext-message', '{"message": {"name": "MAT-STE-2026-00043"}}'),
                   ('erpnext-exception', '{"exc_type": "ValidationError", "exception": "frappe.exceptions.ValidationError: Batch S-9 not found"}'),
                   ('sap-material-document', '{"d": {"MaterialDocument": "4900001234", "MaterialDocumentYear": "2026"}}'),
                   ('sap-confirmation', '{"d": {"ConfirmationGroup": "100017", "OrderID": "1000042"}}'),
                   ('sap-error', '{"error": {"code": "M7/021", "message": {"lang": "en", "value": "Deficit of BA Unrestricted-use 5 KG"}}}'),
                   ('not-json', '<html>502 Bad Gateway</html>')) v (name, body)
    UNION ALL
    SELECT 'from_erpnext_work_order-sample', 'json', plantsync.from_erpnext_work_order(:'erpnext_wo')::text
    UNION ALL
    SELECT 'from_sap_production_order-sample', 'json', plantsync.from_sap_production_order(:'sap_po')::text
    UNION ALL
    SELECT 'parse_b2mml-' || v.name, 'json', plantsync.parse_b2mml(v.doc, 'DX')::text
      FROM (VALUES ('schedule-V0401', :'sched_V0401'), ('schedule-V0600', :'sched_V0600'), ('schedule-0700', :'sched_0700'),
                   ('performance-V0401', :'perf_V0401'), ('performance-V0600', :'perf_V0600'), ('performance-0700', :'perf_0700')) v (name, doc)
    UNION ALL
    SELECT 'b2mml_operations_performance-WO-0001', 'xml', plantsync.b2mml_operations_performance(o.id)::text
      FROM plantsync.production_order o WHERE o.site_id = 'DX' AND o.order_number = 'WO-0001'
    UNION ALL
    SELECT 'b2mml_material_lot-' || l.lot_number, 'xml', plantsync.b2mml_material_lot(l.id)::text
      FROM plantsync.lot l WHERE l.site_id = 'DX' AND l.lot_number IN ('Y-1', 'S-1')
) d
ORDER BY name;
