-- Dialects: what an ERP actually receives. Route transforms (functions of a
-- plantsync.event returning the request body) for ERPNext, the plant's codes
-- mapped to the ERP's names per site, and a parser that finds the document
-- number or the error text in ERPNext and SAP answers alike.

CREATE TABLE plantsync.dialect_mapping (
    site_id text NOT NULL REFERENCES plantsync.site ON DELETE CASCADE,
    dialect text NOT NULL
        CONSTRAINT dialect_mapping_dialect_check CHECK (dialect IN ('erpnext', 'sap')),
    kind text NOT NULL
        CONSTRAINT dialect_mapping_kind_check CHECK (kind IN ('company', 'plant', 'warehouse', 'quarantine_warehouse', 'item', 'uom', 'work_center', 'quality_procedure')),
    plant_value text NOT NULL,
    erp_value text NOT NULL,
    PRIMARY KEY (site_id, dialect, kind, plant_value)
);
COMMENT ON TABLE plantsync.dialect_mapping IS 'How a plant''s codes are named in an ERP, per site and dialect: company, plant, warehouse (storage location), quarantine_warehouse (plant_value ''*''; where ERPNext keeps held stock), item (material number), uom, work_center (ERPNext workstation, SAP work center), quality_procedure (ERPNext Quality Procedure of nonconformances); company, plant and quality_procedure take plant_value ''*''. A code without a row is sent as it is; inbound documents are mapped back through the same rows.';
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

CREATE FUNCTION plantsync.dialect_code(p_site text, p_dialect text, p_kind text, p_erp_value text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE((SELECT min(m.plant_value) FROM plantsync.dialect_mapping m
                      WHERE m.site_id = p_site AND m.dialect = p_dialect AND m.kind = p_kind AND m.erp_value = p_erp_value), p_erp_value)
$$;
COMMENT ON FUNCTION plantsync.dialect_code(text, text, text, text) IS 'The plant''s code for an ERP name (plantsync.dialect_mapping read backwards), or the name itself: how inbound documents are mapped.';

-- The site an inbound document is for, from its company (ERPNext) or plant
-- (SAP); a document naming no known site is refused with the value.
CREATE FUNCTION plantsync.dialect_site(p_dialect text, p_kind text, p_erp_value text, p_field text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sites text[];
BEGIN
    SELECT array_agg(DISTINCT m.site_id ORDER BY m.site_id) INTO sites FROM plantsync.dialect_mapping m
     WHERE m.dialect = p_dialect AND m.kind = p_kind AND m.plant_value = '*' AND m.erp_value = p_erp_value;
    IF sites IS NULL AND EXISTS (SELECT 1 FROM plantsync.site s WHERE s.site_id = p_erp_value) THEN
        sites := ARRAY[p_erp_value];
    END IF;
    IF sites IS NULL THEN
        RAISE EXCEPTION '% "%" is not mapped to a site', p_field, COALESCE(p_erp_value, 'null')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Map it: INSERT INTO plantsync.dialect_mapping VALUES (site, %L, %L, ''*'', %L).', p_dialect, p_kind, p_erp_value);
    ELSIF cardinality(sites) > 1 THEN
        RAISE EXCEPTION '% "%" is mapped to several sites: %', p_field, p_erp_value, array_to_string(sites, ', ')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Give the site explicitly.';
    END IF;
    RETURN sites[1];
END
$$;
COMMENT ON FUNCTION plantsync.dialect_site(text, text, text, text) IS 'The site an inbound ERP document is for, from its ERPNext company or SAP plant (plantsync.dialect_mapping rows with plant_value ''*''), or a site of that id.';

-- The stock type a lot's disposition puts its stock in (as
-- plantsync.inventory_balance has it); NULL where the lot has no stock
-- to speak of.
CREATE FUNCTION plantsync.disposition_stock_type(p_disposition text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE p_disposition WHEN 'restricted' THEN 'quality' WHEN 'blocked' THEN 'blocked' WHEN 'rejected' THEN 'blocked'
                              WHEN 'unrestricted' THEN 'unrestricted' WHEN 'in_process' THEN 'unrestricted' END
$$;
COMMENT ON FUNCTION plantsync.disposition_stock_type(text) IS 'Stock type of a lot disposition: restricted is quality inspection stock, blocked and rejected are blocked, unrestricted and in_process unrestricted.';

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

-- The site's ERPNext quarantine warehouse (NULL when it has none); with
-- p_required, its absence is an error saying how to map it.
CREATE FUNCTION plantsync.erpnext_quarantine(p_site text, p_required boolean)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q text := NULLIF(plantsync.dialect_name(p_site, 'erpnext', 'quarantine_warehouse', '*'), '*');
BEGIN
    IF q IS NULL AND p_required THEN
        RAISE EXCEPTION 'site "%" has no ERPNext quarantine warehouse', p_site USING ERRCODE = 'undefined_object',
            HINT = 'Add it: INSERT INTO plantsync.dialect_mapping VALUES (site, ''erpnext'', ''quarantine_warehouse'', ''*'', ''Quarantine - ACME'').';
    END IF;
    RETURN q;
END
$$;
COMMENT ON FUNCTION plantsync.erpnext_quarantine(text, boolean) IS 'Used by the ERPNext transforms: the site''s quarantine warehouse, or NULL (an error when p_required).';

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
    quarantine text := plantsync.erpnext_quarantine(site, false);
    purpose text;
    kind text := d ->> 'movement_type';
    held boolean;
BEGIN
    PERFORM plantsync.require_event_entity(ev, 'material_movement', 'erpnext_stock_entry');
    SELECT plantsync.dialect_name(site, 'erpnext', 'item', m.material_number) INTO item FROM plantsync.material m WHERE m.id = (d ->> 'material_id')::uuid;
    uom := plantsync.dialect_name(site, 'erpnext', 'uom', d ->> 'uom');
    SELECT COALESCE(l.erp_ref, l.lot_number), plantsync.disposition_stock_type(l.disposition) IN ('quality', 'blocked')
      INTO lot, held FROM plantsync.lot l WHERE l.id = (d ->> 'lot_id')::uuid;
    SELECT plantsync.dialect_name(site, 'erpnext', 'warehouse', s.location_code) INTO src FROM plantsync.storage_location s WHERE s.id = (d ->> 'from_location_id')::uuid;
    SELECT plantsync.dialect_name(site, 'erpnext', 'warehouse', s.location_code) INTO dst FROM plantsync.storage_location s WHERE s.id = (d ->> 'to_location_id')::uuid;
    purpose := CASE kind
        WHEN 'goods_receipt' THEN 'Material Receipt'
        WHEN 'consumption' THEN 'Material Consumption for Manufacture'
        WHEN 'production_receipt' THEN 'Manufacture'
        WHEN 'transfer' THEN CASE WHEN d ->> 'order_id' IS NOT NULL THEN 'Material Transfer for Manufacture' ELSE 'Material Transfer' END
        WHEN 'scrap' THEN 'Material Issue'
        WHEN 'shipment' THEN 'Material Issue'
        WHEN 'status_change' THEN 'Material Transfer'
        WHEN 'lot_split' THEN 'Material Transfer'
        WHEN 'reversal' THEN CASE WHEN src IS NULL THEN 'Material Receipt' WHEN dst IS NULL THEN 'Material Issue' ELSE 'Material Transfer' END
        END;
    -- ERPNext keeps held stock (quality inspection, blocked) in the
    -- quarantine warehouse: a change of stock type across that line is a
    -- move in or out of it, one within it no move at all; and held stock
    -- is received into it and leaves from it
    -- ERPNext keeps a split-off lot as stock of its parent's batch: only the
    -- receiving half can move anything, as a change of stock type there
    IF kind = 'lot_split' THEN
        IF dst IS NULL THEN
            RETURN NULL;
        END IF;
        SELECT d || jsonb_build_object('from_stock_type', plantsync.disposition_stock_type(p.disposition),
                                       'to_stock_type', plantsync.disposition_stock_type(c.disposition))
          INTO d FROM plantsync.lot c JOIN plantsync.lot p ON p.id = c.parent_lot_id WHERE c.id = (d ->> 'lot_id')::uuid;
        src := dst;
    END IF;
    IF d ->> 'from_stock_type' IS NOT NULL AND d ->> 'to_stock_type' IS NOT NULL THEN
        IF (d ->> 'from_stock_type' = 'unrestricted') = (d ->> 'to_stock_type' = 'unrestricted') THEN
            RETURN NULL;
        END IF;
        quarantine := plantsync.erpnext_quarantine(site, true);
        IF d ->> 'to_stock_type' = 'unrestricted' THEN
            src := quarantine;
        ELSE
            dst := quarantine;
        END IF;
    ELSIF held AND quarantine IS NOT NULL THEN
        src := CASE WHEN src IS NOT NULL THEN quarantine END;
        dst := CASE WHEN dst IS NOT NULL THEN quarantine END;
        IF src IS NOT NULL AND dst IS NOT NULL THEN
            RETURN NULL;    -- held stock moved between locations stays in quarantine
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
        'work_order', (SELECT COALESCE(o.erp_ref, o.order_number) FROM plantsync.production_order o WHERE o.id = (d ->> 'order_id')::uuid),
        'remarks', format('plantsync %s %s', d ->> 'external_id', ev.id),
        'docstatus', 1,
        'items', jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
            'item_code', item, 'qty', (d ->> 'quantity')::numeric, 'uom', uom, 'batch_no', lot,
            's_warehouse', src, 't_warehouse', dst,
            'is_finished_item', CASE WHEN kind = 'production_receipt' THEN 1 END)))));
END
$$;
COMMENT ON FUNCTION plantsync.erpnext_stock_entry(plantsync.event) IS
'Route transform: an ERPNext Stock Entry (POST /api/resource/Stock Entry) for a material_movement event: Material Receipt, Material Consumption for Manufacture (with the work order), Manufacture (the finished row), Material Transfer (for Manufacture when it names an order), Material Issue (scrap, shipment); held stock (quality inspection, blocked) lives in the site''s quarantine warehouse: a change of stock type across that line is a transfer in or out of it (NULL, nothing sent, within it), and held lots are received into it and leave from it. Codes are mapped through plantsync.dialect_mapping; the remarks carry the movement''s external id and the event id.';

-- What a batch transform checks first: a batch is a non-empty array of
-- documents of one kind, alike in the fields named; returns the last one,
-- whose header the batch's document takes.
CREATE FUNCTION plantsync.batch_last(p_docs jsonb, p_what text, p_alike text[])
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    last jsonb;
    odd record;
BEGIN
    IF jsonb_typeof(p_docs) IS DISTINCT FROM 'array' OR jsonb_array_length(p_docs) = 0 THEN
        RAISE EXCEPTION 'a batch of % must be a non-empty JSON array', p_what USING ERRCODE = 'invalid_parameter_value';
    END IF;
    last := p_docs -> (jsonb_array_length(p_docs) - 1);
    SELECT k, d ->> k AS have INTO odd FROM jsonb_array_elements(p_docs) d, unnest(p_alike) k
     WHERE d ->> k IS DISTINCT FROM last ->> k LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'the % of a batch differ in %: "%" and "%"', p_what, odd.k, COALESCE(odd.have, 'none'), COALESCE(last ->> odd.k, 'none')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Batch one kind of movement per order: a route filter on movement_type, with batch_by = order.';
    END IF;
    RETURN last;
END
$$;
COMMENT ON FUNCTION plantsync.batch_last(jsonb, text, text[]) IS 'Used by batch transforms: refuses an empty batch or one whose documents differ in the fields named; returns the last document.';

-- A batch's one Stock Entry: e.g. an order's consumptions posted together
-- (route mode batched, batch_by order, this as its batch transform).
CREATE FUNCTION plantsync.erpnext_stock_entry_batch(p_entries jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- posted as of the last movement, with every movement's rows and remarks
    SELECT plantsync.batch_last(p_entries, 'ERPNext Stock Entries', '{purpose,work_order,company}') || jsonb_build_object(
        'items', (SELECT jsonb_agg(i ORDER BY n, k) FROM jsonb_array_elements(p_entries) WITH ORDINALITY e (x, n),
                         jsonb_array_elements(x -> 'items') WITH ORDINALITY it (i, k)),
        'remarks', (SELECT string_agg(x ->> 'remarks', '; ' ORDER BY n) FROM jsonb_array_elements(p_entries) WITH ORDINALITY e (x, n)))
$$;
COMMENT ON FUNCTION plantsync.erpnext_stock_entry_batch(jsonb) IS
'Batch transform: the Stock Entries of a batch (one purpose and work order) as one Stock Entry with all their rows, posted as of the last one, the remarks of each kept. Refuses a batch that mixes purposes or work orders.';

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

-- ERPNext Work Order for a production_order event: the plant's state in
-- ERPNext's words, with what the order is, so that the same document can be
-- read back as a release (plantsync.from_erpnext_work_order).
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
        'stock_uom', plantsync.dialect_name(ev.site_id, 'erpnext', 'uom', d ->> 'uom'),
        'expected_delivery_date', d ->> 'due_date',
        'planned_start_date', to_char((d ->> 'scheduled_start')::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
        'priority', (d ->> 'priority')::integer,
        'plantsync_order', d ->> 'order_number',
        'company', plantsync.dialect_name(ev.site_id, 'erpnext', 'company', '*'),
        'operations', (SELECT jsonb_agg(jsonb_build_object(
                                  'sequence_id', op.operation_number, 'operation', op.process_segment,
                                  'workstation', plantsync.dialect_name(ev.site_id, 'erpnext', 'work_center', w.equipment_code))
                                  ORDER BY op.operation_number)
                         FROM plantsync.production_operation op JOIN plantsync.equipment w ON w.id = op.work_center_id
                        WHERE op.order_id = ev.entity_id)));
END
$$;
COMMENT ON FUNCTION plantsync.erpnext_work_order(plantsync.event) IS
'Route transform: the ERPNext Work Order for a production_order event, named by the order''s erp_ref (or its number): status (Draft, Not Started, In Process, Stopped, Completed, Closed, Cancelled), production item, quantity and unit, expected delivery date, planned start, priority and operations (sequence, operation, workstation).';

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

-- A field of an inbound document, or an error naming the document and field.
CREATE FUNCTION plantsync.dialect_field(p_doc jsonb, p_path text[], p_document text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v text := p_doc #>> p_path;
BEGIN
    IF v IS NULL OR btrim(v) = '' THEN
        RAISE EXCEPTION '% has no "%"', p_document, array_to_string(p_path, '.')
            USING ERRCODE = 'invalid_parameter_value', COLUMN = array_to_string(p_path, '.');
    END IF;
    RETURN v;
END
$$;
COMMENT ON FUNCTION plantsync.dialect_field(jsonb, text[], text) IS 'Used by the inbound mappings: a required field of an ERP document, or an error naming it.';

-- An inbound ERP document, bare or under its envelope key ("data" for
-- ERPNext, "d" for SAP OData V2); anything but a JSON object is refused.
CREATE FUNCTION plantsync.dialect_document(p_doc jsonb, p_envelope text, p_what text)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := CASE WHEN jsonb_typeof(p_doc -> p_envelope) = 'object' THEN p_doc -> p_envelope ELSE p_doc END;
BEGIN
    IF jsonb_typeof(d) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION '% is a JSON object, not %', p_what, COALESCE(jsonb_typeof(d), 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN d;
END
$$;
COMMENT ON FUNCTION plantsync.dialect_document(jsonb, text, text) IS 'Used by the inbound mappings: the document itself, out of its envelope, or an error.';

-- ERPNext Stock Entry "Manufacture" for a completed order: the consumed rows
-- (from their warehouses) and the finished rows (into theirs) in one entry,
-- for plants that post per order rather than per movement.
CREATE FUNCTION plantsync.erpnext_manufacture(ev plantsync.event)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := ev.data;
    rows jsonb;
    quarantine text := plantsync.erpnext_quarantine(ev.site_id, false);
BEGIN
    PERFORM plantsync.require_event_entity(ev, 'production_order', 'erpnext_manufacture');
    IF ev.to_state IS DISTINCT FROM 'completed' THEN
        RAISE EXCEPTION 'erpnext_manufacture takes production_order.completed events, not %', ev.type
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Give the route the event type pattern production_order.completed.';
    END IF;
    SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
               'item_code', plantsync.dialect_name(ev.site_id, 'erpnext', 'item', m.material_number),
               'qty', mv.quantity, 'uom', plantsync.dialect_name(ev.site_id, 'erpnext', 'uom', mv.uom),
               'batch_no', COALESCE(l.erp_ref, l.lot_number),
               's_warehouse', plantsync.dialect_name(ev.site_id, 'erpnext', 'warehouse', f.location_code),
               't_warehouse', CASE WHEN t.location_code IS NULL THEN NULL
                                   WHEN plantsync.disposition_stock_type(l.disposition) IN ('quality', 'blocked')
                                   THEN COALESCE(quarantine, plantsync.dialect_name(ev.site_id, 'erpnext', 'warehouse', t.location_code))
                                   ELSE plantsync.dialect_name(ev.site_id, 'erpnext', 'warehouse', t.location_code) END,
               'is_finished_item', CASE WHEN mv.movement_type = 'production_receipt' THEN 1 END))
               ORDER BY mv.movement_type, mv.posted_at, mv.id)
      INTO rows
      FROM plantsync.material_movement mv
      JOIN plantsync.material m ON m.id = mv.material_id
      LEFT JOIN plantsync.lot l ON l.id = mv.lot_id
      LEFT JOIN plantsync.storage_location f ON f.id = mv.from_location_id
      LEFT JOIN plantsync.storage_location t ON t.id = mv.to_location_id
     WHERE mv.order_id = ev.entity_id AND mv.movement_type IN ('consumption', 'production_receipt')
       AND NOT EXISTS (SELECT 1 FROM plantsync.material_movement r WHERE r.reverses_movement_id = mv.id);
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'doctype', 'Stock Entry',
        'stock_entry_type', 'Manufacture',
        'purpose', 'Manufacture',
        'company', plantsync.dialect_name(ev.site_id, 'erpnext', 'company', '*'),
        'work_order', COALESCE(d ->> 'erp_ref', d ->> 'order_number'),
        'fg_completed_qty', (SELECT sum((r ->> 'qty')::numeric) FROM jsonb_array_elements(rows) r WHERE r ->> 'is_finished_item' = '1'),
        'remarks', format('plantsync %s %s', d ->> 'order_number', ev.id),
        'docstatus', 1,
        'items', COALESCE(rows, '[]')));
END
$$;
COMMENT ON FUNCTION plantsync.erpnext_manufacture(plantsync.event) IS
'Route transform: for a production_order.completed event, one ERPNext Stock Entry "Manufacture" with every consumption of the order (from its warehouse) and every finished row (into its warehouse, is_finished_item 1), reversed movements left out; fg_completed_qty is the finished quantity. Use it instead of per-movement entries, not beside them.';

-- ERPNext Non Conformance for a nonconformance event.
CREATE FUNCTION plantsync.erpnext_non_conformance(ev plantsync.event)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := ev.data;
    ctx text;
BEGIN
    PERFORM plantsync.require_event_entity(ev, 'nonconformance', 'erpnext_non_conformance');
    SELECT concat_ws(', ', 'severity ' || (d ->> 'severity'), 'material ' || m.material_number, 'batch ' || l.lot_number,
                     'work order ' || COALESCE(o.erp_ref, o.order_number))
      INTO ctx
      FROM (SELECT 1) x
      LEFT JOIN plantsync.material m ON m.id = (d ->> 'material_id')::uuid
      LEFT JOIN plantsync.lot l ON l.id = (d ->> 'lot_id')::uuid
      LEFT JOIN plantsync.production_order o ON o.id = (d ->> 'production_order_id')::uuid;
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'doctype', 'Non Conformance',
        'name', d ->> 'qms_ref',
        'subject', format('%s: %s', d ->> 'nc_number', d ->> 'title'),
        'procedure', NULLIF(plantsync.dialect_name(ev.site_id, 'erpnext', 'quality_procedure', '*'), '*'),
        'status', CASE d ->> 'status' WHEN 'closed' THEN 'Resolved' WHEN 'cancelled' THEN 'Cancelled' ELSE 'Open' END,
        'details', concat_ws(E'\n', NULLIF(d ->> 'description', ''), ctx)));
END
$$;
COMMENT ON FUNCTION plantsync.erpnext_non_conformance(plantsync.event) IS
'Route transform: an ERPNext Non Conformance for a nonconformance event: subject (number and title), the site''s Quality Procedure (dialect_mapping kind quality_procedure), status Open (draft to in_progress), Resolved (closed) or Cancelled, and details naming severity, material, batch and work order.';

-- An ERPNext Work Order (as ERPNext sends or returns it, bare or under
-- "data") read as the plant's order release: the same canonical payload
-- plantsync.erp_release_order takes, codes mapped back per site.
CREATE FUNCTION plantsync.from_erpnext_work_order(p_doc jsonb, p_site text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w jsonb := plantsync.dialect_document(p_doc, 'data', 'an ERPNext Work Order');
    what text := format('ERPNext Work Order "%s"', COALESCE(w ->> 'name', '?'));
    site text;
    qty numeric;
BEGIN
    PERFORM plantsync.dialect_field(w, '{name}', what);
    IF COALESCE(w ->> 'docstatus', '1') <> '1' THEN
        RAISE EXCEPTION '% has docstatus %: only a submitted work order (docstatus 1) is released', what, w ->> 'docstatus'
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'docstatus',
                  HINT = 'A cancelled work order (docstatus 2) is sent with plantsync.erp_cancel_order.';
    END IF;
    site := COALESCE(p_site, plantsync.dialect_site('erpnext', 'company', plantsync.dialect_field(w, '{company}', what), 'company'));
    BEGIN
        qty := plantsync.dialect_field(w, '{qty}', what)::numeric;
    EXCEPTION WHEN invalid_text_representation THEN
        RAISE EXCEPTION '% has qty "%", which is not a number', what, w ->> 'qty' USING ERRCODE = 'invalid_parameter_value', COLUMN = 'qty';
    END;
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'site', site,
        'order', COALESCE(w ->> 'plantsync_order', w ->> 'name'),
        'erp_ref', w ->> 'name',
        'material', plantsync.dialect_code(site, 'erpnext', 'item', plantsync.dialect_field(w, '{production_item}', what)),
        'quantity', qty,
        'uom', plantsync.dialect_code(site, 'erpnext', 'uom', plantsync.dialect_field(w, '{stock_uom}', what)),
        'due_date', left(COALESCE(w ->> 'expected_delivery_date', w ->> 'planned_end_date',
                                  plantsync.dialect_field(w, '{expected_delivery_date}', what)), 10),
        'priority', (w ->> 'priority')::integer,
        'operations', (SELECT jsonb_agg(jsonb_build_object(
                                  'operation', COALESCE(op ->> 'sequence_id', (10 * n)::text),
                                  'work_center', plantsync.dialect_code(site, 'erpnext', 'work_center',
                                                     plantsync.dialect_field(op, '{workstation}', format('%s operation %s', what, n))),
                                  'segment', plantsync.dialect_field(op, '{operation}', format('%s operation %s', what, n)),
                                  'quantity', qty) ORDER BY n)
                         FROM jsonb_array_elements(CASE WHEN jsonb_typeof(w -> 'operations') = 'array' THEN w -> 'operations' ELSE '[]' END)
                              WITH ORDINALITY o (op, n))));
END
$$;
COMMENT ON FUNCTION plantsync.from_erpnext_work_order(jsonb, text) IS
'An ERPNext Work Order (bare or as {"data": ...}) read as an order release payload (contract erp.order_release): the site from the company (or p_site), item, unit and workstations mapped back through plantsync.dialect_mapping, the name as erp_ref, the operations with their workstation and quantity. Refuses a draft or cancelled work order and names any missing field.';

CREATE FUNCTION plantsync.erp_release_order_erpnext(message_id text, payload jsonb) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.receive('erp.order_release', message_id, plantsync.from_erpnext_work_order(payload)) $$;
COMMENT ON FUNCTION plantsync.erp_release_order_erpnext(text, jsonb) IS 'ERP: release a production order sent as an ERPNext Work Order (see plantsync.from_erpnext_work_order); kept in the inbox as the canonical release.';
REVOKE EXECUTE ON FUNCTION plantsync.erp_release_order_erpnext(text, jsonb) FROM PUBLIC;

-- ---------- CloudEvents 1.0 ----------

-- The event in CloudEvents structured mode. The plant context travels as
-- extension attributes (lower-case names, as the spec requires); sequence
-- and partitionkey are the spec's own extensions for ordering per aggregate.
CREATE FUNCTION plantsync.cloudevent(ev plantsync.event)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'specversion', ev.specversion,
        'id', ev.id,
        'source', ev.source,
        'type', ev.type,
        'subject', ev.subject,
        'time', to_char(ev.time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'datacontenttype', ev.datacontenttype,
        'dataschema', ev.dataschema,
        'correlationid', ev.correlation_id,
        'causationid', ev.causation_id,
        'sourcesystem', ev.source_system,
        'plantsite', ev.site_id,
        'plantline', ev.line_code,
        'plantorder', ev.order_number,
        'plantlot', ev.lot_number,
        'entityid', ev.entity_id,
        'partitionkey', ev.aggregate_type || ':' || ev.aggregate_id,
        'sequence', ev.aggregate_seq::text))
        -- nulls inside the data are the data's own: kept
        || jsonb_build_object('data', ev.data)
$$;
COMMENT ON FUNCTION plantsync.cloudevent(plantsync.event) IS
'Route transform: the event as a CloudEvents 1.0 structured-mode JSON object (send with Content-Type application/cloudevents+json; a batched route sends a JSON array of them, Content-Type application/cloudevents-batch+json). Extensions: correlationid, causationid, sourcesystem, plantsite, plantline, plantorder, plantlot, entityid, partitionkey (aggregate) and sequence (per aggregate).';

-- A CloudEvent (structured mode, from another hub or a broker) read back
-- as an event; every required attribute is checked and named when missing.
CREATE FUNCTION plantsync.event_from_cloudevent(p_ce jsonb)
RETURNS plantsync.event
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ev plantsync.event;
    attr text;
    part text[];
BEGIN
    IF jsonb_typeof(p_ce) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'a CloudEvent is a JSON object, not %', COALESCE(jsonb_typeof(p_ce), 'null') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH attr IN ARRAY ARRAY['specversion', 'id', 'source', 'type'] LOOP
        IF jsonb_typeof(p_ce -> attr) IS DISTINCT FROM 'string' OR p_ce ->> attr = '' THEN
            RAISE EXCEPTION 'CloudEvent attribute "%" is required (a non-empty string)', attr
                USING ERRCODE = 'invalid_parameter_value', COLUMN = attr;
        END IF;
    END LOOP;
    IF p_ce ->> 'specversion' <> '1.0' THEN
        RAISE EXCEPTION 'CloudEvent specversion "%" is not supported', p_ce ->> 'specversion'
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'specversion', HINT = 'Only CloudEvents 1.0 is read.';
    END IF;
    BEGIN
        ev.id := (p_ce ->> 'id')::uuid;
        ev.time := COALESCE((p_ce ->> 'time')::timestamptz, now());
        ev.correlation_id := (p_ce ->> 'correlationid')::uuid;
        ev.causation_id := (p_ce ->> 'causationid')::uuid;
        ev.entity_id := (p_ce ->> 'entityid')::uuid;
        ev.aggregate_seq := (p_ce ->> 'sequence')::bigint;
    EXCEPTION WHEN invalid_text_representation OR invalid_datetime_format OR datetime_field_overflow OR numeric_value_out_of_range THEN
        RAISE EXCEPTION 'CloudEvent has an invalid attribute value: %', SQLERRM USING ERRCODE = 'invalid_parameter_value',
            HINT = 'id, correlationid, causationid and entityid are UUIDs; time is RFC 3339; sequence is an integer.';
    END;
    ev.specversion := p_ce ->> 'specversion';
    ev.source := p_ce ->> 'source';
    ev.type := p_ce ->> 'type';
    ev.subject := p_ce ->> 'subject';
    ev.datacontenttype := COALESCE(p_ce ->> 'datacontenttype', 'application/json');
    ev.dataschema := p_ce ->> 'dataschema';
    ev.data := COALESCE(p_ce -> 'data', 'null');
    ev.source_system := p_ce ->> 'sourcesystem';
    ev.site_id := p_ce ->> 'plantsite';
    ev.line_code := p_ce ->> 'plantline';
    ev.order_number := p_ce ->> 'plantorder';
    ev.lot_number := p_ce ->> 'plantlot';
    ev.entity := split_part(ev.type, '.', 1);
    part := string_to_array(p_ce ->> 'partitionkey', ':');
    IF cardinality(part) = 2 AND part[2] ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        ev.aggregate_type := part[1];
        ev.aggregate_id := part[2]::uuid;
    END IF;
    RETURN ev;
END
$$;
COMMENT ON FUNCTION plantsync.event_from_cloudevent(jsonb) IS
'A CloudEvents 1.0 structured-mode object read back as a plantsync.event (the inverse of plantsync.cloudevent): specversion, id, source and type are required; the plant extensions fill the envelope. Columns the CloudEvent does not carry (recorded_at, transaction id, from_state, to_state) are NULL.';

-- ERPNext has no stock types: a lot held (quality inspection, blocked,
-- rejected) lives in the site's quarantine warehouse, a released one in its
-- own. A disposition change across that line moves every location's stock.
CREATE FUNCTION plantsync.erpnext_lot_transfer(ev plantsync.event)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    was_held boolean := plantsync.disposition_stock_type(ev.from_state) IN ('quality', 'blocked');
    is_held boolean := plantsync.disposition_stock_type(ev.to_state) IN ('quality', 'blocked');
    quarantine text;
    items jsonb;
BEGIN
    PERFORM plantsync.require_event_entity(ev, 'lot', 'erpnext_lot_transfer');
    IF was_held IS NULL OR is_held IS NULL OR was_held = is_held THEN
        RETURN NULL;
    END IF;
    quarantine := plantsync.erpnext_quarantine(ev.site_id, true);
    SELECT jsonb_agg(jsonb_build_object(
               'item_code', plantsync.dialect_name(ev.site_id, 'erpnext', 'item', m.material_number),
               'qty', b.base_quantity, 'uom', plantsync.dialect_name(ev.site_id, 'erpnext', 'uom', m.base_uom),
               'batch_no', COALESCE(l.erp_ref, l.lot_number),
               's_warehouse', CASE WHEN is_held THEN plantsync.dialect_name(ev.site_id, 'erpnext', 'warehouse', loc.location_code) ELSE quarantine END,
               't_warehouse', CASE WHEN is_held THEN quarantine ELSE plantsync.dialect_name(ev.site_id, 'erpnext', 'warehouse', loc.location_code) END)
               ORDER BY loc.location_code)
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
        'doctype', 'Stock Entry', 'stock_entry_type', 'Material Transfer', 'purpose', 'Material Transfer',
        'company', plantsync.dialect_name(ev.site_id, 'erpnext', 'company', '*'),
        'posting_date', to_char(ev.time AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
        'posting_time', to_char(ev.time AT TIME ZONE 'UTC', 'HH24:MI:SS'), 'set_posting_time', 1,
        'remarks', format('plantsync lot %s %s %s', ev.lot_number, ev.to_state, ev.id),
        'docstatus', 1,
        'items', items);
END
$$;
COMMENT ON FUNCTION plantsync.erpnext_lot_transfer(plantsync.event) IS
'Route transform: for a lot event whose disposition crosses between held (restricted, blocked, rejected) and released (unrestricted), an ERPNext Stock Entry moving the lot''s stock at every location into or out of the site''s quarantine warehouse. NULL (nothing sent) otherwise.';

-- ---------- the MES work package ----------

-- What the MES needs to run a released order, in one document: the order,
-- each operation with its work center's parameters for this material (a
-- material's own value over the work center's general one, the latest in
-- force), and the materials to stage per operation from the bill of
-- materials (scaled to the order, with the component scrap added).
CREATE FUNCTION plantsync.mes_work_package(ev plantsync.event)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o plantsync.production_order;
    bom plantsync.bom;
    mat text;
BEGIN
    PERFORM plantsync.require_event_entity(ev, 'production_order', 'mes_work_package');
    SELECT * INTO o FROM plantsync.production_order WHERE id = ev.entity_id;
    SELECT m.material_number INTO mat FROM plantsync.material m WHERE m.id = o.material_id;
    -- the order's bill of materials, or the material's first one valid on the due date
    SELECT * INTO bom FROM plantsync.bom b
     WHERE b.id = o.bom_id OR (o.bom_id IS NULL AND b.material_id = o.material_id AND o.due_date BETWEEN b.valid_from AND b.valid_to)
     ORDER BY b.id = o.bom_id DESC, b.alternative LIMIT 1;
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'kind', 'work_package',
        'site', o.site_id, 'order', o.order_number, 'erp_ref', o.erp_ref, 'material', mat,
        'quantity', o.quantity, 'uom', o.uom, 'due_date', o.due_date, 'priority', o.priority, 'status', ev.data ->> 'status',
        'operations', COALESCE((
            SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                       'operation', op.operation_number, 'segment', op.process_segment, 'work_center', w.equipment_code,
                       'planned_quantity', op.planned_quantity,
                       'parameters', (SELECT jsonb_object_agg(p.parameter_name, jsonb_strip_nulls(jsonb_build_object('value', p.parameter_value, 'uom', p.uom)))
                                        FROM (SELECT DISTINCT ON (wp.parameter_name) wp.parameter_name, wp.parameter_value, wp.uom
                                                FROM plantsync.work_center_parameter wp
                                               WHERE wp.work_center_id = op.work_center_id AND wp.valid_from <= now()
                                                 AND (wp.material_id = o.material_id OR wp.material_id IS NULL)
                                               ORDER BY wp.parameter_name, wp.material_id IS NULL, wp.valid_from DESC) p)))
                   ORDER BY op.operation_number)
              FROM plantsync.production_operation op JOIN plantsync.equipment w ON w.id = op.work_center_id
             WHERE op.order_id = o.id), '[]'),
        'materials_to_stage', COALESCE((
            SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                       'item', bi.item_number, 'material', cm.material_number,
                       -- order and BOM base in the same unit (the material's base unit)
                       'quantity', round(bi.quantity * plantsync.to_base_quantity(o.material_id, o.quantity, o.uom)
                                         / plantsync.to_base_quantity(o.material_id, bom.base_quantity, bom.base_uom)
                                         * (1 + bi.scrap_percent / 100), 6),
                       'uom', bi.uom, 'operation', bi.operation_number, 'backflush', bi.backflush))
                   ORDER BY bi.item_number)
              FROM plantsync.bom_item bi JOIN plantsync.material cm ON cm.id = bi.component_material_id
             WHERE bi.bom_id = bom.id), '[]')));
END
$$;
COMMENT ON FUNCTION plantsync.mes_work_package(plantsync.event) IS
'Route transform: for a production_order event (production_order.released), the MES work package: the order, its operations with their work centers and the work-center parameters in force for the material (plantsync.work_center_parameter: a material''s own value over the general one, the latest valid), and the materials to stage from the bill of materials (the order''s, or the material''s valid on the due date), scaled to the order quantity with component scrap.';
