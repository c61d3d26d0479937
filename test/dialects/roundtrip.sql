-- Round trips (canonical -> dialect -> canonical) and imports, on the
-- fixture's plant. One row per check: ok|FAIL, what, detail on failure.
-- psql variables hold the sample documents (set by test/e2e/dialects.sh).
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only on
\pset fieldsep '|'
CREATE TEMP TABLE result (ok boolean, what text, detail text);
CREATE FUNCTION pg_temp.expect(p_ok boolean, p_what text, p_detail text DEFAULT NULL) RETURNS void
LANGUAGE sql AS $$ INSERT INTO result VALUES (COALESCE(p_ok, false), p_what, p_detail) $$;

-- ERPNext Work Order: out and back in gives the release the ERP sent
SELECT pg_temp.expect(w = i.payload, 'ERPNext Work Order round trip gives back the release', w::text || ' vs ' || i.payload::text)
  FROM plantsync.event e, plantsync.inbox i,
       LATERAL (SELECT plantsync.from_erpnext_work_order(plantsync.erpnext_work_order(e)) AS w) x
 WHERE e.site_id = 'DX' AND e.type = 'production_order.released' AND i.message_id = 'DX-R1';
-- SAP knows the order by its own number
SELECT pg_temp.expect(s = i.payload || jsonb_build_object('order', i.payload ->> 'erp_ref'),
                      'SAP production order round trip gives back the release (under the SAP number)', s::text)
  FROM plantsync.event e, plantsync.inbox i,
       LATERAL (SELECT plantsync.from_sap_production_order(plantsync.sap_production_order(e)) AS s) x
 WHERE e.site_id = 'DX' AND e.type = 'production_order.released' AND i.message_id = 'DX-R1';
-- CloudEvents: every envelope column the event format carries comes back
SELECT pg_temp.expect(count(*) FILTER (WHERE (b.id, b.type, b.source, b.subject, b.time, b.specversion, b.datacontenttype, b.dataschema, b.data,
                                               b.correlation_id, b.causation_id, b.source_system, b.site_id, b.line_code, b.order_number,
                                               b.lot_number, b.entity, b.entity_id, b.aggregate_type, b.aggregate_id, b.aggregate_seq)
                                              IS DISTINCT FROM
                                              (e.id, e.type, e.source, e.subject, e.time, e.specversion, e.datacontenttype, e.dataschema, e.data,
                                               e.correlation_id, e.causation_id, e.source_system, e.site_id, e.line_code, e.order_number,
                                               e.lot_number, e.entity, e.entity_id, e.aggregate_type, e.aggregate_id, e.aggregate_seq)) = 0
                      AND count(*) > 20,
                      'every event survives CloudEvents and back', count(*) || ' events')
  FROM plantsync.event e, LATERAL (SELECT (plantsync.event_from_cloudevent(plantsync.cloudevent(e))).*) b
 WHERE e.site_id = 'DX';
-- B2MML performance: the export reads back as the order's consumptions and completion
SELECT pg_temp.expect(got = want, 'B2MML performance round trip gives back the ledger''s actuals', got::text || ' vs ' || want::text)
  FROM (SELECT jsonb_agg(m ORDER BY m ->> 'type', m ->> 'key') AS got
          FROM plantsync.production_order o,
               jsonb_array_elements(plantsync.parse_b2mml(plantsync.b2mml_operations_performance(o.id)::text, 'DX') -> 'messages') m
         WHERE o.order_number = 'WO-0001') g,
       (SELECT jsonb_agg(jsonb_build_object('type', t, 'key', k, 'payload', p) ORDER BY t, k) AS want FROM (VALUES
           ('mes.consume', 'WO-0001/1/1/0010/DX-2', '{"site": "DX", "order": "WO-0001", "material": "SUGAR", "lot": "S-1", "quantity": 60, "uom": "KG", "location": "RM01"}'::jsonb),
           ('mes.complete', 'WO-0001/1/1/0020/DX-5', '{"site": "DX", "order": "WO-0001", "lot": "Y-1", "quantity": 100, "uom": "KG", "location": "FG01"}'::jsonb)) v (t, k, p)) w;
SELECT pg_temp.expect(plantsync.parse_b2mml(plantsync.b2mml_operations_performance(o.id)::text, 'DX') -> 'unmapped' = '[]',
                      'everything in the performance export is mapped back',
                      (plantsync.parse_b2mml(plantsync.b2mml_operations_performance(o.id)::text, 'DX') -> 'unmapped')::text)
  FROM plantsync.production_order o WHERE o.order_number = 'WO-0001';
-- B2MML material lot: the export reads back as the lot's batch view
SELECT pg_temp.expect(p -> 'messages' -> 0 -> 'payload' = '{"site": "DX", "material": "SYRUP", "lot": "Y-1", "status": "unrestricted", "expires_on": "2027-11-20", "quantity": 100, "uom": "KG"}',
                      'B2MML material lot round trip gives back lot, material, status, expiry and quantity', p::text)
  FROM plantsync.lot l, LATERAL (SELECT plantsync.parse_b2mml(plantsync.b2mml_material_lot(l.id)::text, 'DX') AS p) x
 WHERE l.lot_number = 'Y-1';

-- lot disposition changes that move no stock between stock types send nothing
SELECT pg_temp.expect(count(*) FILTER (WHERE plantsync.sap_lot_stock_transfer(e) IS NOT NULL) = 1
                      AND count(*) FILTER (WHERE plantsync.erpnext_lot_transfer(e) IS NOT NULL) = 1 AND count(*) = 3,
                      'of the three lot events only the release of Y-1 from quality inspection is a stock transfer', count(*)::text)
  FROM plantsync.event e WHERE e.site_id = 'DX' AND e.entity = 'lot';

-- Imports of the schedules (ERP) and the performance (MES), three namespaces
SELECT pg_temp.expect(plantsync.erp_import_b2mml('SCHED-V0401', 'DX', :'sched_V0401') ->> 'message' = 'applied', 'V0401 schedule imported');
SELECT pg_temp.expect(plantsync.erp_import_b2mml('SCHED-V0600', 'DX', :'sched_V0600') ->> 'message' = 'applied', 'V0600 schedule imported');
SELECT pg_temp.expect(plantsync.erp_import_b2mml('SCHED-0700', 'DX', :'sched_0700') ->> 'message' = 'applied', '0700+ schedule imported');
SELECT pg_temp.expect(count(*) = 3 AND bool_and(o.status = 'released' AND m.material_number = 'SYRUP' AND o.erp_ref = o.order_number),
                      'the three schedules released their orders', string_agg(o.order_number || ' ' || o.status, ', '))
  FROM plantsync.production_order o JOIN plantsync.material m ON m.id = o.material_id WHERE o.order_number LIKE 'PO-B2-%';
SELECT pg_temp.expect(o.quantity = 200 AND o.due_date = '2026-11-30' AND o.priority = 2
                      AND (SELECT string_agg(op.operation_number || ':' || op.process_segment || '@' || w.equipment_code, ' ' ORDER BY op.operation_number)
                             FROM plantsync.production_operation op JOIN plantsync.equipment w ON w.id = op.work_center_id WHERE op.order_id = o.id) = '0010:MIX@MIXER-1',
                      '0700+ order has quantity, due date, priority and its operation', row_to_json(o)::text)
  FROM plantsync.production_order o WHERE o.order_number = 'PO-B2-0700';
SELECT pg_temp.expect(o.quantity = 100 AND o.due_date = '2026-11-24' AND o.priority = 3
                      AND (SELECT string_agg(op.operation_number || ':' || op.process_segment || '@' || w.equipment_code, ' ' ORDER BY op.operation_number)
                             FROM plantsync.production_operation op JOIN plantsync.equipment w ON w.id = op.work_center_id WHERE op.order_id = o.id) = '0010:MIX@MIXER-1 0020:FILL@FILLER-1',
                      'V0600 order has quantity, due date (last segment), priority and both operations', row_to_json(o)::text)
  FROM plantsync.production_order o WHERE o.order_number = 'PO-B2-0600';
SELECT pg_temp.expect(plantsync.mes_import_b2mml('PERF-V0401', 'DX', :'perf_V0401') ->> 'message' = 'applied', 'V0401 performance imported');
SELECT pg_temp.expect(plantsync.mes_import_b2mml('PERF-V0600', 'DX', :'perf_V0600') ->> 'message' = 'applied', 'V0600 performance imported');
SELECT pg_temp.expect(plantsync.mes_import_b2mml('PERF-0700', 'DX', :'perf_0700') ->> 'message' = 'applied', '0700+ performance imported');
SELECT pg_temp.expect(string_agg(o.order_number || ' ' || o.status || ' ' || l.lot_number || ' ' || l.disposition || ' ' || r.quantity || ' ' || c.quantity, '; ' ORDER BY o.order_number)
                      = 'PO-B2-0401 completed Y-0401 restricted 98 61.5; PO-B2-0600 completed Y-0600 restricted 98 61.5; PO-B2-0700 completed Y-0700 restricted 201 119.25',
                      'each performance consumed S-1 and completed its order with its lot in quality stock',
                      string_agg(o.order_number || ' ' || o.status || ' ' || l.lot_number || ' ' || l.disposition || ' ' || r.quantity || ' ' || c.quantity, '; ' ORDER BY o.order_number))
  FROM plantsync.production_order o
  JOIN plantsync.lot l ON l.production_order_id = o.id
  JOIN plantsync.material_movement r ON r.lot_id = l.id AND r.movement_type = 'production_receipt'
  JOIN plantsync.material_movement c ON c.order_id = o.id AND c.movement_type = 'consumption'
 WHERE o.order_number LIKE 'PO-B2-%';
SELECT pg_temp.expect(count(*) = 3, 'genealogy links S-1 into each imported lot', count(*)::text)
  FROM plantsync.lot l, LATERAL plantsync.trace_backward(l.id) t
 WHERE l.lot_number IN ('Y-0401', 'Y-0600', 'Y-0700') AND t.node_number = 'S-1';
SELECT pg_temp.expect(plantsync.mes_import_b2mml('PERF-0700', 'DX', :'perf_0700') ->> 'message' = 'duplicate', 'the same document again is a duplicate, applied once');
SELECT pg_temp.expect((SELECT count(*) FROM plantsync.material_movement WHERE external_id LIKE 'PERF-0700/%') = 2, 'the duplicate changed nothing');
-- what was not mapped is kept with its path
SELECT pg_temp.expect(string_agg(u ->> 'path', ' ' ORDER BY u ->> 'path') = x.want, 'unmapped elements of ' || i.message_id || ' kept with their paths',
                      string_agg(u ->> 'path', ' ' ORDER BY u ->> 'path'))
  FROM plantsync.b2mml_import i CROSS JOIN LATERAL jsonb_array_elements(i.unmapped) u
  JOIN (VALUES
      ('SCHED-V0600', '/ProcessProductionSchedule/DataArea[1]/ProductionSchedule[1]/ProductionRequest[1]/SegmentRequirement[1]/MaterialConsumedRequirement[1] /ProcessProductionSchedule/DataArea[1]/ProductionSchedule[1]/ProductionRequest[1]/SegmentRequirement[2]/ProductionParameter[1]'),
      ('SCHED-0700', '/ProcessOperationsSchedule/DataArea[1]/OperationsSchedule[1]/OperationsRequest[1]/SegmentRequirement[1]/MaterialRequirement[1] /ProcessOperationsSchedule/DataArea[1]/OperationsSchedule[1]/OperationsRequest[1]/SegmentRequirement[1]/OperationsDefinitionID[1] /ProcessOperationsSchedule/DataArea[1]/OperationsSchedule[1]/OperationsRequest[1]/SegmentRequirement[1]/OperationsSegmentID[1]'),
      ('PERF-V0600', '/ProcessProductionPerformance/DataArea[1]/ProductionPerformance[1]/ProductionResponse[1]/SegmentResponse[1]/PersonnelActual[1]'),
      ('PERF-0700', '/ProcessOperationsPerformance/DataArea[1]/OperationsPerformance[1]/OperationsResponse[1]/SegmentResponse[1]/MaterialActual[3]')) x (id, want)
    ON x.id = i.message_id
 GROUP BY i.message_id, x.want;

-- ERPNext and SAP shaped releases reach the same canonical call
SELECT pg_temp.expect(plantsync.erp_release_order_erpnext('ERPNEXT-WO-77', :'erpnext_wo') ->> 'message' = 'applied', 'an ERPNext Work Order releases an order');
SELECT pg_temp.expect(plantsync.erp_release_order_sap('SAP-PO-77', :'sap_po') ->> 'message' = 'applied', 'a SAP production order releases an order');
SELECT pg_temp.expect(string_agg(format('%s %s %s %s %s %s [%s]', o.order_number, o.erp_ref, m.material_number, o.quantity, o.uom, o.due_date,
                                        (SELECT string_agg(op.operation_number || ':' || op.process_segment || '@' || w.equipment_code, ' ' ORDER BY op.operation_number)
                                           FROM plantsync.production_operation op JOIN plantsync.equipment w ON w.id = op.work_center_id WHERE op.order_id = o.id)),
                                 '; ' ORDER BY o.order_number)
                      = '1000077 1000077 SYRUP 300.000 KG 2026-12-04 [0010:MIX@MIXER-1 0020:FILL@FILLER-1]; MFG-WO-2026-00077 MFG-WO-2026-00077 SYRUP 250.0 KG 2026-12-04 [10:MIX@MIXER-1 20:FILL@FILLER-1]',
                      'the ERP documents became orders in the plant''s codes',
                      string_agg(format('%s %s %s %s %s %s [%s]', o.order_number, o.erp_ref, m.material_number, o.quantity, o.uom, o.due_date,
                                        (SELECT string_agg(op.operation_number || ':' || op.process_segment || '@' || w.equipment_code, ' ' ORDER BY op.operation_number)
                                           FROM plantsync.production_operation op JOIN plantsync.equipment w ON w.id = op.work_center_id WHERE op.order_id = o.id)),
                                 '; ' ORDER BY o.order_number))
  FROM plantsync.production_order o JOIN plantsync.material m ON m.id = o.material_id
 WHERE o.order_number IN ('1000077', 'MFG-WO-2026-00077');

\if :have_examples
-- the real V0401 messages from a plant interface
SELECT pg_temp.expect(plantsync.erp_import_b2mml('MAT-20121210170256-CRBN0001', 'DX', :'ex_MAT') ->> 'message' = 'applied', 'V0401 SyncMaterialDefinition example imported');
SELECT pg_temp.expect(plantsync.erp_import_b2mml('LOT-20121210170718-0001L0001', 'DX', :'ex_LOT') ->> 'message' = 'applied', 'V0401 SyncMaterialInformation (lot) example imported');
SELECT pg_temp.expect(plantsync.erp_import_b2mml('INV-20121210175555-0001L0001_01', 'DX', :'ex_INV') ->> 'message' = 'applied', 'V0401 SyncMaterialInformation (sublot) example imported');
SELECT pg_temp.expect(description = 'Product Courbon0001' AND base_uom = 'KG', 'material CRBN0001 created from its definition', row_to_json(m)::text)
  FROM plantsync.material m WHERE material_number = 'CRBN0001';
SELECT pg_temp.expect(string_agg(format('%s/%s %s %s %s %s', lot_number, sublot_number, status, expires_on, quantity, uom), '; ' ORDER BY sublot_number)
                      = 'CRBN0001_LOT01/ Valid 2013-12-08  ; CRBN0001_LOT01/CRBN0001_LOT01_01 NotValid  24.910 KG',
                      'the ERP''s batch and sublot kept with status, expiry and quantity',
                      string_agg(format('%s/%s %s %s %s %s', lot_number, sublot_number, status, expires_on, quantity, uom), '; ' ORDER BY sublot_number))
  FROM plantsync.erp_batch WHERE material_number = 'CRBN0001';
SELECT pg_temp.expect(i.unmapped -> 0 ->> 'path' = '/SyncMaterialDefinition/DataArea[1]/MaterialDefinition[1]/MaterialDefinitionProperty[2]'
                      AND jsonb_array_length(i.unmapped) = 1 AND i.unmapped -> 0 ->> 'xml' LIKE '%HazardousMaterialWarning%',
                      'the hazard property the model has no place for is kept, with its path', i.unmapped::text)
  FROM plantsync.b2mml_import i WHERE i.message_id = 'MAT-20121210170256-CRBN0001';
\endif

SELECT CASE WHEN ok THEN 'ok' ELSE 'FAIL' END, what, CASE WHEN NOT ok THEN detail END FROM result;
