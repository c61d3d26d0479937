-- SAP S/4HANA OData V2: what the production order confirmation, material
-- document and inspection lot services take, built from the ledger with the
-- site's plant, storage locations, materials, units and work centers mapped
-- through plantsync.dialect_mapping (dialect 'sap'); and a SAP production
-- order read back as the plant's order release. OData V2 JSON writes
-- decimals as strings and dates as "/Date(<ms since 1970>)/".

CREATE FUNCTION plantsync.odata_date(p_ts timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- an Edm.DateTime holding a date: midnight UTC of that day
    SELECT '/Date(' || (extract(epoch FROM (p_ts AT TIME ZONE 'UTC')::date::timestamp) * 1000)::bigint || ')/'
$$;
COMMENT ON FUNCTION plantsync.odata_date(timestamptz) IS 'The day of a time as OData V2 writes an Edm.DateTime date: /Date(<milliseconds>)/ of midnight UTC.';

CREATE FUNCTION plantsync.odata_date(p_date date)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT '/Date(' || ((p_date - date '1970-01-01')::bigint * 86400000) || ')/' $$;
COMMENT ON FUNCTION plantsync.odata_date(date) IS 'A date as OData V2 writes an Edm.DateTime date: /Date(<milliseconds>)/ of its midnight UTC.';

CREATE FUNCTION plantsync.odata_decimal(p_value numeric)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT trim_scale(p_value)::text $$;
COMMENT ON FUNCTION plantsync.odata_decimal(numeric) IS 'A quantity as OData V2 writes an Edm.Decimal: a string.';

-- An OData V2 date ("/Date(ms)/", with or without an offset) or an ISO date.
CREATE FUNCTION plantsync.from_odata_date(p_value text, p_field text)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ms text[] := regexp_match(p_value, '^/Date\((-?\d+)([+-]\d{4})?\)/$');
BEGIN
    IF ms IS NOT NULL THEN
        RETURN to_timestamp(ms[1]::numeric / 1000);
    END IF;
    -- a date alone is that day in UTC, whatever the session's time zone
    IF p_value ~ '^\d{4}-\d{2}-\d{2}$' THEN
        RETURN p_value::date::timestamp AT TIME ZONE 'UTC';
    END IF;
    RETURN p_value::timestamptz;
EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_text_representation THEN
    RAISE EXCEPTION '% "%" is not a date', p_field, p_value USING ERRCODE = 'invalid_datetime_format', COLUMN = p_field,
        HINT = 'Send /Date(<milliseconds since 1970>)/ or an ISO 8601 date.';
END
$$;
COMMENT ON FUNCTION plantsync.from_odata_date(text, text) IS 'Reads an OData V2 date (/Date(ms)/ or /Date(ms+hhmm)/) or an ISO 8601 date; an error names the field otherwise.';

-- The transfer posting between two stock types.
CREATE FUNCTION plantsync.sap_stock_type_movement(p_from text, p_to text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE p_from || '>' || p_to
        WHEN 'quality>unrestricted' THEN '321' WHEN 'unrestricted>quality' THEN '322'
        WHEN 'quality>blocked' THEN '350' WHEN 'blocked>quality' THEN '349'
        WHEN 'blocked>unrestricted' THEN '343' WHEN 'unrestricted>blocked' THEN '344' END
$$;
COMMENT ON FUNCTION plantsync.sap_stock_type_movement(text, text) IS 'SAP movement type of a transfer posting between stock types (quality, unrestricted, blocked): 321, 322, 350, 349, 343, 344.';

-- SAP's goods movement type and movement code for a movement of the
-- ledger. Stock type changes: 321 quality -> unrestricted, 322 back; 350
-- quality -> blocked, 349 back; 343 blocked -> unrestricted, 344 back.
-- Scrap: 551 from unrestricted, 553 from quality, 555 from blocked. A
-- reversal is the reversed movement's type + 1. Receipts carry no stock
-- type: SAP takes it from the material's quality management view.
CREATE FUNCTION plantsync.sap_goods_movement(p_movement_id uuid, OUT movement_type text, OUT movement_code text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mv plantsync.material_movement;
BEGIN
    SELECT * INTO mv FROM plantsync.material_movement WHERE id = p_movement_id;
    IF mv.movement_type = 'reversal' THEN
        SELECT g.movement_type, g.movement_code INTO movement_type, movement_code
          FROM plantsync.sap_goods_movement(mv.reverses_movement_id) g;
        -- a stock type change is undone by the opposite change (the
        -- reversal carries the stock types swapped); the others by type + 1
        movement_type := COALESCE(plantsync.sap_stock_type_movement(mv.from_stock_type, mv.to_stock_type),
                                  (movement_type::integer + 1)::text);
        RETURN;
    END IF;
    movement_type := CASE mv.movement_type
        WHEN 'goods_receipt' THEN '501'
        WHEN 'consumption' THEN '261'
        WHEN 'production_receipt' THEN '101'
        WHEN 'transfer' THEN '311'
        -- stock types are written on status changes only: scrap leaves the
        -- stock type of the lot's disposition (transforms run in the
        -- writing transaction, so it is the disposition at posting)
        WHEN 'scrap' THEN CASE (SELECT l.disposition FROM plantsync.lot l WHERE l.id = mv.lot_id)
                              WHEN 'restricted' THEN '553' WHEN 'blocked' THEN '555' WHEN 'rejected' THEN '555' ELSE '551' END
        WHEN 'status_change' THEN plantsync.sap_stock_type_movement(mv.from_stock_type, mv.to_stock_type)
        -- SAP keeps a split-off lot as stock of its parent's batch: the
        -- receiving half is a stock type change there, if any
        WHEN 'lot_split' THEN (SELECT plantsync.sap_stock_type_movement(plantsync.disposition_stock_type(p.disposition),
                                                                        plantsync.disposition_stock_type(c.disposition))
                                 FROM plantsync.lot c JOIN plantsync.lot p ON p.id = c.parent_lot_id
                                WHERE c.id = mv.lot_id AND mv.to_location_id IS NOT NULL)
        END;
    movement_code := CASE mv.movement_type
        WHEN 'goods_receipt' THEN '05' WHEN 'production_receipt' THEN '02'
        WHEN 'consumption' THEN '03' WHEN 'scrap' THEN '03'
        WHEN 'transfer' THEN '04' WHEN 'status_change' THEN '04' WHEN 'lot_split' THEN '04' END;
    IF movement_type IS NULL AND mv.movement_type <> 'lot_split' THEN
        RAISE EXCEPTION 'movement "%" (%) has no SAP goods movement type', mv.external_id, mv.movement_type
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = CASE mv.movement_type WHEN 'shipment' THEN 'SAP posts shipments through outbound deliveries: leave shipments out of this route with a filter.'
                              ELSE 'A status change needs both stock types.' END;
    END IF;
END
$$;
COMMENT ON FUNCTION plantsync.sap_goods_movement(uuid) IS 'SAP goods movement type and GoodsMovementCode of a ledger movement: 501 receipt, 261 consumption, 101 production receipt, 311 transfer, 551/553/555 scrap, 321/322/349/350/343/344 stock type changes; a reversal is the reversed movement''s type + 1.';

-- One goods movement item (to_MaterialDocumentItem or
-- to_ProdnOrdConfMatlDocItm) for a movement.
CREATE FUNCTION plantsync.sap_goods_movement_item(p_movement_id uuid)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'Material', plantsync.dialect_name(mv.site_id, 'sap', 'item', m.material_number),
        'Plant', plantsync.dialect_name(mv.site_id, 'sap', 'plant', '*'),
        'StorageLocation', plantsync.dialect_name(mv.site_id, 'sap', 'warehouse', COALESCE(f.location_code, t.location_code)),
        'Batch', COALESCE(l.erp_ref, l.lot_number),
        'GoodsMovementType', g.movement_type,
        'IssuingOrReceivingStorageLoc', CASE WHEN g.movement_type IN ('311', '312') THEN plantsync.dialect_name(mv.site_id, 'sap', 'warehouse', t.location_code) END,
        'ManufacturingOrder', CASE WHEN g.movement_type IN ('261', '262', '101', '102') THEN COALESCE(o.erp_ref, o.order_number) END,
        'GoodsMovementRefDocType', CASE WHEN g.movement_type IN ('101', '102') THEN 'F' END,
        'EntryUnit', plantsync.dialect_name(mv.site_id, 'sap', 'uom', mv.uom),
        'QuantityInEntryUnit', plantsync.odata_decimal(mv.quantity)))
      FROM plantsync.material_movement mv
      CROSS JOIN LATERAL plantsync.sap_goods_movement(mv.id) g
      JOIN plantsync.material m ON m.id = mv.material_id
      LEFT JOIN plantsync.lot l ON l.id = mv.lot_id
      LEFT JOIN plantsync.production_order o ON o.id = mv.order_id
      LEFT JOIN plantsync.storage_location f ON f.id = mv.from_location_id
      LEFT JOIN plantsync.storage_location t ON t.id = mv.to_location_id
     WHERE mv.id = p_movement_id
$$;
COMMENT ON FUNCTION plantsync.sap_goods_movement_item(uuid) IS 'Used by the SAP transforms: the goods movement item of a ledger movement (material, plant, storage location, batch, movement type, order, unit, quantity), codes mapped per site.';

CREATE FUNCTION plantsync.sap_material_document(ev plantsync.event)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mv uuid := (ev.data ->> 'id')::uuid;
BEGIN
    PERFORM plantsync.require_event_entity(ev, 'material_movement', 'sap_material_document');
    -- a split that changes no stock type posts nothing
    IF (SELECT g.movement_type FROM plantsync.sap_goods_movement(mv) g) IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object(
        'PostingDate', plantsync.odata_date((ev.data ->> 'posted_at')::timestamptz),
        'DocumentDate', plantsync.odata_date((ev.data ->> 'posted_at')::timestamptz),
        'GoodsMovementCode', (SELECT g.movement_code FROM plantsync.sap_goods_movement(mv) g),
        'MaterialDocumentHeaderText', left(format('plantsync %s', ev.data ->> 'external_id'), 25),
        'to_MaterialDocumentItem', jsonb_build_object('results', jsonb_build_array(plantsync.sap_goods_movement_item(mv))));
END
$$;
COMMENT ON FUNCTION plantsync.sap_material_document(plantsync.event) IS
'Route transform: a SAP material document (POST API_MATERIAL_DOCUMENT_SRV/A_MaterialDocumentHeader) for a material_movement event: posting date, GoodsMovementCode, the movement''s external id in the header text, and one deep-inserted item (see plantsync.sap_goods_movement). Shipments are refused (SAP posts them through outbound deliveries).';

-- A batch's one material document: e.g. an order's goods issues together.
CREATE FUNCTION plantsync.sap_material_document_batch(p_docs jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT plantsync.batch_last(p_docs, 'SAP material documents', '{GoodsMovementCode}') || jsonb_build_object(
        'MaterialDocumentHeaderText', left(format('plantsync batch of %s', jsonb_array_length(p_docs)), 25),
        'to_MaterialDocumentItem', jsonb_build_object('results',
            -- each item keeps its movement's reference, for the postings
            -- a reconciliation matches back
            (SELECT jsonb_agg(i || jsonb_strip_nulls(jsonb_build_object('MaterialDocumentItemText', x ->> 'MaterialDocumentHeaderText')) ORDER BY n, k)
               FROM jsonb_array_elements(p_docs) WITH ORDINALITY d (x, n),
                    jsonb_array_elements(x #> '{to_MaterialDocumentItem,results}') WITH ORDINALITY it (i, k))))
$$;
COMMENT ON FUNCTION plantsync.sap_material_document_batch(jsonb) IS
'Batch transform: the material documents of a batch (one GoodsMovementCode) as one document with all their items, each item carrying its movement''s reference (MaterialDocumentItemText, the header text it had alone), posted as of the last one. Refuses a batch that mixes goods movement codes.';

-- A confirmation carries the goods movements of its order recorded since
-- the order's previous confirmation: each consumption (261) and receipt
-- (101) travels in exactly one confirmation.
CREATE FUNCTION plantsync.sap_production_confirmation(ev plantsync.event)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c plantsync.production_confirmation;
    o plantsync.production_order;
    op text;
    previous timestamptz;
BEGIN
    PERFORM plantsync.require_event_entity(ev, 'production_confirmation', 'sap_production_confirmation');
    SELECT * INTO c FROM plantsync.production_confirmation WHERE id = ev.entity_id;
    SELECT * INTO o FROM plantsync.production_order WHERE id = c.order_id;
    SELECT p.operation_number INTO op FROM plantsync.production_operation p WHERE p.id = c.operation_id;
    SELECT max(p.confirmed_at) INTO previous FROM plantsync.production_confirmation p
     WHERE p.order_id = c.order_id AND (p.confirmed_at, p.id) < (c.confirmed_at, c.id);
    RETURN jsonb_build_object(
        'OrderID', COALESCE(o.erp_ref, o.order_number),
        'OrderOperation', op,
        'Sequence', '0',
        'ConfirmationUnit', plantsync.dialect_name(c.site_id, 'sap', 'uom', c.uom),
        'ConfirmationYieldQuantity', plantsync.odata_decimal(c.yield_quantity),
        'ConfirmationScrapQuantity', plantsync.odata_decimal(c.scrap_quantity),
        'ConfirmationReworkQuantity', plantsync.odata_decimal(c.rework_quantity),
        'OpConfirmedWorkQuantity1', plantsync.odata_decimal(c.machine_minutes),
        'OpWorkQuantityUnit1', 'MIN',
        'OpConfirmedWorkQuantity2', plantsync.odata_decimal(c.labour_minutes),
        'OpWorkQuantityUnit2', 'MIN',
        'IsFinalConfirmation', c.is_final,
        'PostingDate', plantsync.odata_date(c.confirmed_at),
        'ConfirmationText', left(format('plantsync %s', c.external_id), 40),
        'to_ProdnOrdConfMatlDocItm', jsonb_build_object('results', COALESCE((
            SELECT jsonb_agg(plantsync.sap_goods_movement_item(mv.id) ORDER BY mv.movement_type DESC, mv.posted_at, mv.id)
              FROM plantsync.material_movement mv
             WHERE mv.order_id = c.order_id AND mv.movement_type IN ('consumption', 'production_receipt')
               AND mv.posted_at <= c.confirmed_at AND (previous IS NULL OR mv.posted_at > previous)
               AND NOT EXISTS (SELECT 1 FROM plantsync.material_movement r WHERE r.reverses_movement_id = mv.id)), '[]')));
END
$$;
COMMENT ON FUNCTION plantsync.sap_production_confirmation(plantsync.event) IS
'Route transform: a SAP production order confirmation (POST API_PROD_ORDER_CONFIRMATION_2_SRV/ProdnOrdConf2) for a production_confirmation event: order, operation, yield, scrap, rework, machine and labour minutes, final flag, posting date, and deep-inserted goods movements (261 consumptions, 101 receipts with GoodsMovementRefDocType F) of the order posted since its previous confirmation, reversed ones left out.';

CREATE FUNCTION plantsync.sap_usage_decision(ev plantsync.event)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := ev.data;
    il record;
BEGIN
    PERFORM plantsync.require_event_entity(ev, 'usage_decision', 'sap_usage_decision');
    SELECT COALESCE(i.erp_ref, i.inspection_lot_number) AS inspection_lot, COALESCE(l.erp_ref, l.lot_number) AS batch, m.material_number
      INTO il
      FROM plantsync.inspection_lot i JOIN plantsync.lot l ON l.id = i.lot_id JOIN plantsync.material m ON m.id = l.material_id
     WHERE i.id = (d ->> 'inspection_lot_id')::uuid;
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'InspectionLot', il.inspection_lot,
        'Material', plantsync.dialect_name(ev.site_id, 'sap', 'item', il.material_number),
        'Batch', il.batch,
        'Plant', plantsync.dialect_name(ev.site_id, 'sap', 'plant', '*'),
        'InspectionLotUsageDecisionCode', COALESCE(d ->> 'decision_code', CASE d ->> 'decision' WHEN 'accept' THEN 'A' WHEN 'reject' THEN 'R' END),
        'InspLotUsageDecisionValuation', CASE d ->> 'decision' WHEN 'accept' THEN 'A' WHEN 'reject' THEN 'R' END,
        'InspLotUsageDecidedBy', d ->> 'decided_by',
        'InspLotUsageDecidedOn', plantsync.odata_date((d ->> 'decided_at')::timestamptz),
        'InspLotUsageDecisionText', left(d ->> 'comment', 40)));
END
$$;
COMMENT ON FUNCTION plantsync.sap_usage_decision(plantsync.event) IS
'Route transform: the usage decision of a SAP inspection lot (API_INSPECTIONLOT_SRV) for a usage_decision event: inspection lot (its erp_ref or number), material, batch, plant, decision code, valuation A (accept) or R (reject), who and when. A partial decision has no single valuation and is sent without one.';

-- The order as SAP's production order service shows it
-- (API_PRODUCTION_ORDER_2_SRV/A_ProductionOrder_2), so that a release can be
-- written both ways.
CREATE FUNCTION plantsync.sap_production_order(ev plantsync.event)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := ev.data;
BEGIN
    PERFORM plantsync.require_event_entity(ev, 'production_order', 'sap_production_order');
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'ManufacturingOrder', COALESCE(d ->> 'erp_ref', d ->> 'order_number'),
        'Material', (SELECT plantsync.dialect_name(ev.site_id, 'sap', 'item', m.material_number)
                       FROM plantsync.material m WHERE m.id = (d ->> 'material_id')::uuid),
        'ProductionPlant', plantsync.dialect_name(ev.site_id, 'sap', 'plant', '*'),
        'TotalQuantity', plantsync.odata_decimal((d ->> 'quantity')::numeric),
        'ProductionUnit', plantsync.dialect_name(ev.site_id, 'sap', 'uom', d ->> 'uom'),
        'MfgOrderPlannedEndDate', plantsync.odata_date((d ->> 'due_date')::date),
        'MfgOrderPlannedStartDate', plantsync.odata_date((d ->> 'scheduled_start')::timestamptz),
        'ManufacturingOrderImportance', d ->> 'priority',
        'OrderIsReleased', d ->> 'status' NOT IN ('draft', 'cancelled'),
        'to_ProductionOrderOperation', jsonb_build_object('results', COALESCE((
            SELECT jsonb_agg(jsonb_build_object(
                       'ManufacturingOrderOperation', op.operation_number,
                       'WorkCenter', plantsync.dialect_name(ev.site_id, 'sap', 'work_center', w.equipment_code),
                       'MfgOrderOperationText', op.process_segment,
                       'OpPlannedTotalQuantity', plantsync.odata_decimal(op.planned_quantity)) ORDER BY op.operation_number)
              FROM plantsync.production_operation op JOIN plantsync.equipment w ON w.id = op.work_center_id
             WHERE op.order_id = ev.entity_id), '[]'))));
END
$$;
COMMENT ON FUNCTION plantsync.sap_production_order(plantsync.event) IS
'Route transform: a production_order event as SAP''s A_ProductionOrder_2 shows an order: number (erp_ref), material, plant, quantity and unit, planned start and end, importance (priority), released flag and operations (number, work center, text, quantity). plantsync.from_sap_production_order reads it back.';

CREATE FUNCTION plantsync.from_sap_production_order(p_doc jsonb, p_site text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o jsonb := plantsync.dialect_document(p_doc, 'd', 'a SAP production order');
    what text := format('SAP production order "%s"', COALESCE(o ->> 'ManufacturingOrder', '?'));
    site text;
    ops jsonb;
BEGIN
    PERFORM plantsync.dialect_field(o, '{ManufacturingOrder}', what);
    IF o ->> 'OrderIsReleased' = 'false' THEN
        RAISE EXCEPTION '% is not released (OrderIsReleased false)', what USING ERRCODE = 'invalid_parameter_value', COLUMN = 'OrderIsReleased',
            HINT = 'Send the order when SAP releases it.';
    END IF;
    site := COALESCE(p_site, plantsync.dialect_site('sap', 'plant', plantsync.dialect_field(o, '{ProductionPlant}', what), 'ProductionPlant'));
    -- operations: an OData V2 expansion ({"results": [...]}) or a bare array
    ops := CASE jsonb_typeof(o -> 'to_ProductionOrderOperation')
               WHEN 'object' THEN o #> '{to_ProductionOrderOperation,results}'
               WHEN 'array' THEN o -> 'to_ProductionOrderOperation' END;
    BEGIN
        RETURN jsonb_strip_nulls(jsonb_build_object(
            'site', site,
            'order', o ->> 'ManufacturingOrder',
            'erp_ref', o ->> 'ManufacturingOrder',
            'material', plantsync.dialect_code(site, 'sap', 'item', plantsync.dialect_field(o, '{Material}', what)),
            'quantity', plantsync.dialect_field(o, '{TotalQuantity}', what)::numeric,
            'uom', plantsync.dialect_code(site, 'sap', 'uom', plantsync.dialect_field(o, '{ProductionUnit}', what)),
            'due_date', to_char(plantsync.from_odata_date(plantsync.dialect_field(o, '{MfgOrderPlannedEndDate}', what), 'MfgOrderPlannedEndDate')
                                AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
            'priority', (o ->> 'ManufacturingOrderImportance')::integer,
            'operations', (SELECT jsonb_agg(jsonb_build_object(
                                      'operation', plantsync.dialect_field(op, '{ManufacturingOrderOperation}', format('%s operation %s', what, n)),
                                      'work_center', plantsync.dialect_code(site, 'sap', 'work_center',
                                                         plantsync.dialect_field(op, '{WorkCenter}', format('%s operation %s', what, n))),
                                      'segment', COALESCE(op ->> 'MfgOrderOperationText', op ->> 'ManufacturingOrderOperation'),
                                      'quantity', COALESCE(op ->> 'OpPlannedTotalQuantity', o ->> 'TotalQuantity')::numeric) ORDER BY n)
                             FROM jsonb_array_elements(COALESCE(ops, '[]')) WITH ORDINALITY x (op, n))));
    EXCEPTION WHEN invalid_text_representation THEN
        RAISE EXCEPTION '% has a quantity or importance that is not a number: %', what, SQLERRM
            USING ERRCODE = 'invalid_parameter_value', HINT = 'OData V2 sends decimals as strings of digits, e.g. "100.000".';
    END;
END
$$;
COMMENT ON FUNCTION plantsync.from_sap_production_order(jsonb, text) IS
'A SAP production order (A_ProductionOrder_2, bare or as {"d": ...}, operations expanded as to_ProductionOrderOperation) read as an order release payload (contract erp.order_release): the site from ProductionPlant (or p_site), material, unit and work centers mapped back, the planned end as due date. Refuses an order that is not released and names any missing field.';

CREATE FUNCTION plantsync.erp_release_order_sap(message_id text, payload jsonb) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.receive('erp.order_release', message_id, plantsync.from_sap_production_order(payload)) $$;
COMMENT ON FUNCTION plantsync.erp_release_order_sap(text, jsonb) IS 'ERP: release a production order sent as a SAP production order (see plantsync.from_sap_production_order); kept in the inbox as the canonical release.';
REVOKE EXECUTE ON FUNCTION plantsync.erp_release_order_sap(text, jsonb) FROM PUBLIC;

-- A lot's disposition changed by a usage decision or a hold: its stock, at
-- every location, changes stock type in SAP (321 released from quality
-- inspection, 350 blocked, 343/344 a hold lifted or placed). A disposition
-- change that moves no stock between stock types sends nothing.
CREATE FUNCTION plantsync.sap_lot_stock_transfer(ev plantsync.event)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mtype text := plantsync.sap_stock_type_movement(plantsync.disposition_stock_type(ev.from_state),
                                                    plantsync.disposition_stock_type(ev.to_state));
    items jsonb;
BEGIN
    PERFORM plantsync.require_event_entity(ev, 'lot', 'sap_lot_stock_transfer');
    IF mtype IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT jsonb_agg(jsonb_build_object(
               'Material', plantsync.dialect_name(ev.site_id, 'sap', 'item', m.material_number),
               'Plant', plantsync.dialect_name(ev.site_id, 'sap', 'plant', '*'),
               'StorageLocation', plantsync.dialect_name(ev.site_id, 'sap', 'warehouse', loc.location_code),
               'Batch', COALESCE(l.erp_ref, l.lot_number),
               'GoodsMovementType', mtype,
               'EntryUnit', plantsync.dialect_name(ev.site_id, 'sap', 'uom', m.base_uom),
               'QuantityInEntryUnit', plantsync.odata_decimal(b.base_quantity)) ORDER BY loc.location_code)
      INTO items
      FROM plantsync.stock_balance b
      JOIN plantsync.lot l ON l.id = b.lot_id
      JOIN plantsync.material m ON m.id = b.material_id
      JOIN plantsync.storage_location loc ON loc.id = b.storage_location_id
     WHERE b.lot_id = ev.entity_id AND b.base_quantity > 0;
    IF items IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object(
        'PostingDate', plantsync.odata_date(ev.time),
        'DocumentDate', plantsync.odata_date(ev.time),
        'GoodsMovementCode', '04',
        'MaterialDocumentHeaderText', left(format('plantsync %s %s', ev.lot_number, ev.to_state), 25),
        'to_MaterialDocumentItem', jsonb_build_object('results', items));
END
$$;
COMMENT ON FUNCTION plantsync.sap_lot_stock_transfer(plantsync.event) IS
'Route transform: for a lot event whose disposition change moves its stock between stock types (restricted = quality inspection, blocked or rejected = blocked, unrestricted), a SAP material document (API_MATERIAL_DOCUMENT_SRV) with one transfer posting per location holding the lot: 321 on release from quality inspection, 350 on a block from it, 344/343 for a hold placed or lifted. NULL (nothing sent) when no stock changes stock type.';
