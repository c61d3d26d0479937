-- Dialects: what an ERP actually receives. Route transforms (functions of a
-- plantsync.event returning the request body) for ERPNext, the plant's codes
-- mapped to the ERP's names per site, and a parser that finds the document
-- number or the error text in ERPNext and SAP answers alike.

CREATE TABLE plantsync.dialect_mapping (
    site_id text NOT NULL REFERENCES plantsync.site ON DELETE CASCADE,
    dialect text NOT NULL
        CONSTRAINT dialect_mapping_dialect_check CHECK (dialect IN ('erpnext', 'sap')),
    kind text NOT NULL
        CONSTRAINT dialect_mapping_kind_check CHECK (kind IN ('company', 'plant', 'warehouse', 'quarantine_warehouse', 'item', 'uom')),
    plant_value text NOT NULL,
    erp_value text NOT NULL,
    PRIMARY KEY (site_id, dialect, kind, plant_value)
);
COMMENT ON TABLE plantsync.dialect_mapping IS 'How a plant''s codes are named in an ERP, per site and dialect: company, plant, warehouse (storage location), quarantine_warehouse (plant_value ''*''; where ERPNext keeps held stock), item (material number), uom. A code without a row is sent as it is.';
COMMENT ON COLUMN plantsync.dialect_mapping.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.dialect_mapping.dialect IS 'erpnext or sap.';
COMMENT ON COLUMN plantsync.dialect_mapping.kind IS 'What is mapped.';
COMMENT ON COLUMN plantsync.dialect_mapping.plant_value IS 'The plant''s code (location code, material number, unit), or * for a site-wide value.';
COMMENT ON COLUMN plantsync.dialect_mapping.erp_value IS 'The ERP''s name for it.';

CREATE FUNCTION plantsync.dialect_name(p_site text, p_dialect text, p_kind text, p_value text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE((SELECT m.erp_value FROM plantsync.dialect_mapping m
                      WHERE m.site_id = p_site AND m.dialect = p_dialect AND m.kind = p_kind AND m.plant_value = p_value), p_value)
$$;
COMMENT ON FUNCTION plantsync.dialect_name(text, text, text, text) IS 'The ERP''s name for a plant code (from plantsync.dialect_mapping), or the code itself.';

-- A transform is for one entity's events; a route pointing it at others
-- is refused with a hint, not turned into a wrong document.
CREATE FUNCTION plantsync.require_event_entity(ev plantsync.event, p_entity text, p_transform text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF ev.entity <> p_entity THEN
        RAISE EXCEPTION '% takes % events, not % events', p_transform, p_entity, ev.entity
            USING ERRCODE = 'invalid_parameter_value', HINT = format('Give the route an event type pattern of %s.*.', p_entity);
    END IF;
END
$$;
COMMENT ON FUNCTION plantsync.require_event_entity(plantsync.event, text, text) IS 'Used by the transforms: refuses an event of another entity than the transform is for.';

-- ERPNext Stock Entry for a movement of the ledger. ERPNext has no hold
-- status: a hold is a move to the quarantine warehouse, a release the move
-- back.
CREATE FUNCTION plantsync.erpnext_stock_entry(ev plantsync.event)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := ev.data;
    site text := ev.site_id;
    item text;
    uom text;
    lot text;
    src text;
    dst text;
    quarantine text := plantsync.dialect_name(site, 'erpnext', 'quarantine_warehouse', '*');
    purpose text;
    kind text := d ->> 'movement_type';
BEGIN
    PERFORM plantsync.require_event_entity(ev, 'material_movement', 'erpnext_stock_entry');
    SELECT plantsync.dialect_name(site, 'erpnext', 'item', m.material_number) INTO item FROM plantsync.material m WHERE m.id = (d ->> 'material_id')::uuid;
    uom := plantsync.dialect_name(site, 'erpnext', 'uom', d ->> 'uom');
    SELECT l.lot_number INTO lot FROM plantsync.lot l WHERE l.id = (d ->> 'lot_id')::uuid;
    SELECT plantsync.dialect_name(site, 'erpnext', 'warehouse', s.location_code) INTO src FROM plantsync.storage_location s WHERE s.id = (d ->> 'from_location_id')::uuid;
    SELECT plantsync.dialect_name(site, 'erpnext', 'warehouse', s.location_code) INTO dst FROM plantsync.storage_location s WHERE s.id = (d ->> 'to_location_id')::uuid;
    purpose := CASE kind
        WHEN 'goods_receipt' THEN 'Material Receipt'
        WHEN 'consumption' THEN 'Material Consumption for Manufacture'
        WHEN 'production_receipt' THEN 'Manufacture'
        WHEN 'transfer' THEN 'Material Transfer'
        WHEN 'scrap' THEN 'Material Issue'
        WHEN 'shipment' THEN 'Material Issue'
        WHEN 'status_change' THEN 'Material Transfer'
        WHEN 'reversal' THEN CASE WHEN src IS NULL THEN 'Material Receipt' WHEN dst IS NULL THEN 'Material Issue' ELSE 'Material Transfer' END
        END;
    -- a hold moves the stock to the quarantine warehouse, a release back
    IF kind = 'status_change' THEN
        IF quarantine IS NULL OR quarantine = '*' THEN
            RAISE EXCEPTION 'site "%" has no ERPNext quarantine warehouse', site USING ERRCODE = 'undefined_object',
                HINT = 'Add it: INSERT INTO plantsync.dialect_mapping VALUES (site, ''erpnext'', ''quarantine_warehouse'', ''*'', ''Quarantine - ACME'').';
        END IF;
        IF d ->> 'to_stock_type' = 'unrestricted' THEN
            src := quarantine;
        ELSE
            dst := quarantine;
        END IF;
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'doctype', 'Stock Entry',
        'stock_entry_type', purpose,
        'purpose', purpose,
        'company', plantsync.dialect_name(site, 'erpnext', 'company', '*'),
        'posting_date', to_char((d ->> 'posted_at')::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
        'posting_time', to_char((d ->> 'posted_at')::timestamptz AT TIME ZONE 'UTC', 'HH24:MI:SS'),
        'set_posting_time', 1,
        'work_order', ev.order_number,
        'remarks', format('plantsync %s %s', d ->> 'external_id', ev.id),
        'docstatus', 1,
        'items', jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
            'item_code', item, 'qty', (d ->> 'quantity')::numeric, 'uom', uom, 'batch_no', lot,
            's_warehouse', src, 't_warehouse', dst,
            'is_finished_item', CASE WHEN kind = 'production_receipt' THEN 1 END)))));
END
$$;
COMMENT ON FUNCTION plantsync.erpnext_stock_entry(plantsync.event) IS
'Route transform: an ERPNext Stock Entry (POST /api/resource/Stock Entry) for a material_movement event: Material Receipt, Material Consumption for Manufacture (with the work order), Manufacture (the finished row), Material Transfer, Material Issue (scrap, shipment); a hold or release is a transfer to or from the site''s quarantine warehouse. Codes are mapped through plantsync.dialect_mapping; the remarks carry the movement''s external id and the event id.';

-- The document number or the error text of an ERP answer, whatever the ERP:
-- ERPNext {"data": {"name": ...}} or {"message": ...} or {"exc_type": ..., "_server_messages": ...};
-- SAP OData V2 {"d": {...}} or {"error": {"message": {"value": ...}}}.
CREATE FUNCTION plantsync.parse_erp_response(p_body text)
RETURNS TABLE (document text, error text)
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j jsonb;
BEGIN
    BEGIN
        j := p_body::jsonb;
    EXCEPTION WHEN invalid_text_representation THEN
        document := NULL;
        error := left(p_body, 500);
        RETURN NEXT;
        RETURN;
    END;
    document := COALESCE(j #>> '{data,name}',
                         CASE WHEN jsonb_typeof(j -> 'message') = 'object' THEN j #>> '{message,name}'
                              WHEN jsonb_typeof(j -> 'message') = 'string' AND NOT j ? 'exc_type' THEN j ->> 'message' END,
                         j #>> '{d,MaterialDocument}', j #>> '{d,ConfirmationGroup}', j #>> '{d,InspectionLot}',
                         j #>> '{d,ManufacturingOrder}');
    error := COALESCE(j #>> '{error,message,value}', j #>> '{error,message}',
                      CASE WHEN j ? 'exc_type' THEN COALESCE(j ->> 'exception', j ->> 'exc_type') END);
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION plantsync.parse_erp_response(text) IS
'The document number or the error text in an ERP answer: ERPNext {"data": {"name": ...}}, {"message": ...} or an exception body; SAP OData V2 {"d": {...}} (MaterialDocument, ConfirmationGroup, InspectionLot, ManufacturingOrder) or {"error": {"message": {"value": ...}}}. Use it in a response handler.';

-- ERPNext Work Order status for a production_order event (the plant's state
-- in ERPNext's words).
CREATE FUNCTION plantsync.erpnext_work_order(ev plantsync.event)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := ev.data;
BEGIN
    PERFORM plantsync.require_event_entity(ev, 'production_order', 'erpnext_work_order');
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'doctype', 'Work Order',
        'name', COALESCE(d ->> 'erp_ref', d ->> 'order_number'),
        'status', CASE d ->> 'status'
                      WHEN 'draft' THEN 'Draft' WHEN 'released' THEN 'Not Started' WHEN 'in_progress' THEN 'In Process'
                      WHEN 'held' THEN 'Stopped' WHEN 'completed' THEN 'Completed' WHEN 'closed' THEN 'Closed'
                      WHEN 'cancelled' THEN 'Cancelled' WHEN 'aborted' THEN 'Stopped' END,
        'production_item', (SELECT plantsync.dialect_name(ev.site_id, 'erpnext', 'item', m.material_number)
                              FROM plantsync.material m WHERE m.id = (d ->> 'material_id')::uuid),
        'qty', (d ->> 'quantity')::numeric,
        'company', plantsync.dialect_name(ev.site_id, 'erpnext', 'company', '*')));
END
$$;
COMMENT ON FUNCTION plantsync.erpnext_work_order(plantsync.event) IS
'Route transform: the ERPNext Work Order status for a production_order event (Draft, Not Started, In Process, Stopped, Completed, Closed, Cancelled), named by the order''s erp_ref (or its number).';

-- ERPNext Quality Inspection for a usage decision: the decision on the lot,
-- Accepted or Rejected, with the inspection lot's readings as recorded.
CREATE FUNCTION plantsync.erpnext_quality_inspection(ev plantsync.event)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := ev.data;
    il record;
BEGIN
    PERFORM plantsync.require_event_entity(ev, 'usage_decision', 'erpnext_quality_inspection');
    SELECT i.inspection_lot_number, i.inspection_type, i.quantity, l.lot_number, m.material_number, o.order_number, o.erp_ref
      INTO il
      FROM plantsync.inspection_lot i JOIN plantsync.lot l ON l.id = i.lot_id JOIN plantsync.material m ON m.id = l.material_id
      LEFT JOIN plantsync.production_order o ON o.id = i.production_order_id
     WHERE i.id = (d ->> 'inspection_lot_id')::uuid;
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'doctype', 'Quality Inspection',
        'inspection_type', CASE il.inspection_type WHEN 'incoming' THEN 'Incoming' WHEN 'in_process' THEN 'In Process' ELSE 'Outgoing' END,
        'reference_type', CASE WHEN il.order_number IS NOT NULL THEN 'Work Order' END,
        'reference_name', COALESCE(il.erp_ref, il.order_number),
        'item_code', plantsync.dialect_name(ev.site_id, 'erpnext', 'item', il.material_number),
        'batch_no', il.lot_number,
        'sample_size', il.quantity,
        'inspected_by', d ->> 'decided_by',
        'status', CASE d ->> 'decision' WHEN 'accept' THEN 'Accepted' WHEN 'reject' THEN 'Rejected' ELSE 'Accepted' END,
        'remarks', concat_ws(' ', il.inspection_lot_number, d ->> 'decision_code', d ->> 'comment'),
        'readings', COALESCE((SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                                  'specification', c.name, 'reading_1', COALESCE(r.measured_value::text, r.attribute_value),
                                  'status', CASE WHEN r.is_conforming THEN 'Accepted' ELSE 'Rejected' END)) ORDER BY c.characteristic_number, r.sample_number)
                                FROM plantsync.inspection_result r
                                JOIN plantsync.inspection_characteristic c ON c.id = r.characteristic_id
                               WHERE r.inspection_lot_id = (d ->> 'inspection_lot_id')::uuid), '[]'),
        'docstatus', 1));
END
$$;
COMMENT ON FUNCTION plantsync.erpnext_quality_inspection(plantsync.event) IS
'Route transform: an ERPNext Quality Inspection for a usage_decision event: type, the work order, item and batch, sample size, who decided, Accepted or Rejected, and the readings of the inspection lot.';
