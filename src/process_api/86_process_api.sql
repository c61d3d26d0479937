-- Process APIs: one SQL function per business message an ERP, MES or QMS
-- sends. Each message carries an id; the inbox keeps every message with its
-- outcome, so a message sent twice changes nothing and gets the first
-- answer. Payloads are checked against their contracts (registered below as
-- inbound subjects), applied in one transaction as the sending system, or
-- refused whole. An MES message about an order that is not released yet is
-- parked and applied when the release arrives.

CREATE TABLE plantsync.inbox (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    system_code text NOT NULL REFERENCES plantsync.source_system,
    message_id text NOT NULL
        CONSTRAINT inbox_message_id_length CHECK (length(message_id) BETWEEN 1 AND 200),
    message_type text NOT NULL,
    site_id text,
    payload jsonb NOT NULL,
    status text NOT NULL
        CONSTRAINT inbox_status_check CHECK (status IN ('applied', 'parked', 'discarded')),
    outcome jsonb,
    waiting_for text,
    received_at timestamptz NOT NULL DEFAULT now(),
    applied_at timestamptz,
    received_by name NOT NULL DEFAULT session_user,
    -- per plant, as a movement's external id is: two plants' MES may number
    -- their messages alike
    CONSTRAINT inbox_message_key UNIQUE NULLS NOT DISTINCT (system_code, message_id, site_id)
);
CREATE INDEX inbox_parked_idx ON plantsync.inbox (site_id, received_at) WHERE status = 'parked';
COMMENT ON TABLE plantsync.inbox IS 'Every business message received through the process APIs, with its outcome: a message id seen before returns the first outcome and changes nothing. Parked messages wait for a prerequisite (an order not released yet).';
COMMENT ON COLUMN plantsync.inbox.id IS 'Inbox entry; the causation id of the events the message caused.';
COMMENT ON COLUMN plantsync.inbox.system_code IS 'Sending system.';
COMMENT ON COLUMN plantsync.inbox.message_id IS 'The sender''s message id (unique per system and plant).';
COMMENT ON COLUMN plantsync.inbox.message_type IS 'Business message (contract subject), e.g. erp.order_release.';
COMMENT ON COLUMN plantsync.inbox.site_id IS 'Plant the message is about.';
COMMENT ON COLUMN plantsync.inbox.payload IS 'The message as received.';
COMMENT ON COLUMN plantsync.inbox.status IS 'applied, parked (waiting_for says for what), or discarded by a person (plantsync.discard_parked; outcome says who and why).';
COMMENT ON COLUMN plantsync.inbox.outcome IS 'What applying it returned (ids of what it created or changed).';
COMMENT ON COLUMN plantsync.inbox.waiting_for IS 'For a parked message: the prerequisite it waits for.';
COMMENT ON COLUMN plantsync.inbox.received_at IS 'When it arrived.';
COMMENT ON COLUMN plantsync.inbox.applied_at IS 'When it was applied (later than received_at if it was parked).';
COMMENT ON COLUMN plantsync.inbox.received_by IS 'Role that sent it.';
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON plantsync.inbox FROM PUBLIC;

-- The contracts of the messages (inbound subjects): what a sender must send.
SELECT plantsync.register_contract('erp.order_release', '{
  "type": "object", "required": ["site", "order", "material", "quantity", "uom", "due_date"],
  "properties": {
    "site": {"type": "string", "minLength": 1}, "order": {"type": "string", "minLength": 1},
    "material": {"type": "string", "minLength": 1}, "quantity": {"type": "number", "exclusiveMinimum": 0},
    "uom": {"type": "string", "minLength": 1}, "due_date": {"type": "string", "format": "date"},
    "priority": {"type": "integer", "minimum": 1, "maximum": 9}, "erp_ref": {"type": "string"},
    "operations": {"type": "array", "items": {"type": "object", "required": ["operation", "work_center", "segment", "quantity"],
      "properties": {"operation": {"type": "string", "minLength": 1}, "work_center": {"type": "string", "minLength": 1},
                     "segment": {"type": "string", "minLength": 1}, "quantity": {"type": "number", "exclusiveMinimum": 0}}}},
    "components": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["material", "quantity", "uom"],
      "properties": {"material": {"type": "string", "minLength": 1}, "quantity": {"type": "number", "exclusiveMinimum": 0},
                     "uom": {"type": "string", "minLength": 1}, "operation": {"type": "string"},
                     "scrap_percent": {"type": "number", "minimum": 0, "exclusiveMaximum": 100}}}}
  }}', 'inbound', 'backward', 'ERP releases a production order to the plant (ERPNext Work Order submitted; SAP order released): header, routing (operations) and the order''s bill of materials (components, for the order quantity).');
SELECT plantsync.register_contract('erp.order_cancel', '{
  "type": "object", "required": ["site", "order", "reason"],
  "properties": {"site": {"type": "string"}, "order": {"type": "string"}, "reason": {"type": "string", "minLength": 1}}}',
  'inbound', 'backward', 'ERP cancels a production order before execution.');
SELECT plantsync.register_contract('mes.consume', '{
  "type": "object", "required": ["site", "order", "material", "lot", "quantity", "uom", "location"],
  "properties": {"site": {"type": "string"}, "order": {"type": "string"}, "material": {"type": "string"},
                 "lot": {"type": "string"}, "quantity": {"type": "number", "exclusiveMinimum": 0},
                 "uom": {"type": "string"}, "location": {"type": "string"},
                 "sublot": {"type": "string", "minLength": 1},
                 "serials": {"type": "array", "minItems": 1, "uniqueItems": true, "items": {"type": "string", "minLength": 1}}},
  "not": {"required": ["sublot", "serials"]}}',
  'inbound', 'backward', 'MES consumes a lot into an order: the lot, one of its sublots, or serials of it.');
SELECT plantsync.register_contract('mes.confirm', '{
  "type": "object", "required": ["site", "order", "operation", "uom"],
  "properties": {"site": {"type": "string"}, "order": {"type": "string"}, "operation": {"type": "string"},
                 "yield": {"type": "number", "minimum": 0}, "scrap": {"type": "number", "minimum": 0},
                 "rework": {"type": "number", "minimum": 0}, "uom": {"type": "string"},
                 "labour_minutes": {"type": "number", "minimum": 0}, "machine_minutes": {"type": "number", "minimum": 0},
                 "final": {"type": "boolean"}}}',
  'inbound', 'backward', 'MES confirms an operation: yield, scrap, rework, labour and machine time, final flag.');
SELECT plantsync.register_contract('mes.complete', '{
  "type": "object", "required": ["site", "order", "lot", "quantity", "uom", "location"],
  "properties": {"site": {"type": "string"}, "order": {"type": "string"}, "lot": {"type": "string", "minLength": 1},
                 "quantity": {"type": "number", "exclusiveMinimum": 0}, "uom": {"type": "string"},
                 "location": {"type": "string"},
                 "serials": {"type": "array", "minItems": 1, "uniqueItems": true, "items": {"type": "string", "minLength": 1}}}}',
  'inbound', 'backward', 'MES completes an order with the lot it produced, and its serials for serial-tracked material (received into quality-inspection stock).');
SELECT plantsync.register_contract('qms.usage_decision', '{
  "type": "object", "required": ["site", "lot", "decision", "decided_by"],
  "properties": {"site": {"type": "string"}, "lot": {"type": "string"}, "material": {"type": "string"}, "inspection_lot": {"type": "string"},
                 "decision": {"enum": ["accept", "reject", "partial"]}, "code": {"type": "string"},
                 "quantities": {"type": "object", "additionalProperties": false, "minProperties": 1,
                                "properties": {"unrestricted": {"type": "number", "minimum": 0},
                                               "blocked": {"type": "number", "minimum": 0},
                                               "scrapped": {"type": "number", "minimum": 0}}},
                 "uom": {"type": "string"}, "blocked_lot": {"type": "string", "minLength": 1},
                 "decided_by": {"type": "string", "minLength": 1}, "comment": {"type": "string"},
                 "signature": {"type": "object", "required": ["signer", "meaning"],
                               "properties": {"signer": {"type": "string", "minLength": 1},
                                              "meaning": {"enum": ["approved", "rejected", "reviewed", "released"]}}}},
  "if": {"properties": {"decision": {"const": "partial"}}},
  "then": {"required": ["quantities"]},
  "else": {"not": {"anyOf": [{"required": ["quantities"]}, {"required": ["blocked_lot"]}]}}}',
  'inbound', 'backward', 'QMS decides on a lot: accept (unrestricted), reject (rejected, blocked for use), or partial with the quantities to free, block and scrap (the blocked part split into a lot of its own).');

-- The prerequisite an MES message may arrive before: the message is parked.
CREATE FUNCTION plantsync.released_order(p_site text, p_order text)
RETURNS plantsync.production_order
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o plantsync.production_order;
BEGIN
    SELECT * INTO o FROM plantsync.production_order WHERE site_id = p_site AND order_number = p_order;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'order "%" of site "%" is not released yet', p_order, p_site
            USING ERRCODE = 'PS013', DETAIL = format('order %s', p_order);
    END IF;
    -- closed for postings: nothing more is booked on it (nor sent on to the ERP)
    IF o.status IN ('closed', 'cancelled', 'aborted') THEN
        RAISE EXCEPTION 'order "%" of site "%" is %', p_order, p_site, o.status
            USING ERRCODE = 'PS014', HINT = 'Nothing more is booked on a closed, cancelled or aborted order.';
    END IF;
    RETURN o;
END
$$;
COMMENT ON FUNCTION plantsync.released_order(text, text) IS 'Used by the MES handlers: the order, or PS013 (prerequisite missing) so that the message is parked, or PS014 when the order is closed, cancelled or aborted.';

CREATE FUNCTION plantsync.lookup_id(p_table text, p_site text, p_key_column text, p_key text, p_field text)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    id uuid;
BEGIN
    EXECUTE format('SELECT id FROM plantsync.%I WHERE site_id = $1 AND %I = $2', p_table, p_key_column) INTO id USING p_site, p_key;
    IF id IS NULL THEN
        RAISE EXCEPTION '% "%" does not exist at site "%"', p_field, p_key, p_site
            USING ERRCODE = 'foreign_key_violation', COLUMN = p_field;
    END IF;
    RETURN id;
END
$$;
COMMENT ON FUNCTION plantsync.lookup_id(text, text, text, text, text) IS 'Used by the handlers: the id of a row by its business key, or an error naming the field and value.';

-- The lot a message names: lot numbers are unique per material, so a
-- number two materials share needs the material too.
CREATE FUNCTION plantsync.lot_of_message(m jsonb)
RETURNS plantsync.lot
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_lots plantsync.lot[];
BEGIN
    SELECT array_agg(l ORDER BY l.id) INTO found_lots
      FROM plantsync.lot l JOIN plantsync.material mt ON mt.id = l.material_id
     WHERE l.site_id = m ->> 'site' AND l.lot_number = m ->> 'lot' AND (m ->> 'material' IS NULL OR mt.material_number = m ->> 'material');
    IF found_lots IS NULL THEN
        RAISE EXCEPTION 'lot "%"% does not exist at site "%"', m ->> 'lot',
            CASE WHEN m ->> 'material' IS NOT NULL THEN format(' of material "%s"', m ->> 'material') ELSE '' END, m ->> 'site'
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'lot';
    ELSIF cardinality(found_lots) > 1 THEN
        RAISE EXCEPTION 'lot "%" exists for several materials at site "%"', m ->> 'lot', m ->> 'site'
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'material', HINT = 'Send the material of the lot too.';
    END IF;
    RETURN found_lots[1];
END
$$;
COMMENT ON FUNCTION plantsync.lot_of_message(jsonb) IS 'Used by the handlers: the lot a message names by site, lot number and (when several materials share the number) material, or an error naming it.';
REVOKE EXECUTE ON FUNCTION plantsync.lot_of_message(jsonb) FROM PUBLIC;

-- ---------- handlers: each applies one message, as its system ----------

CREATE FUNCTION plantsync.handle_erp_order_release(m jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    site text := m ->> 'site';
    o uuid;
    b uuid;
    n integer := 0;
BEGIN
    IF EXISTS (SELECT 1 FROM plantsync.production_order WHERE site_id = site AND order_number = m ->> 'order') THEN
        RAISE EXCEPTION 'order "%" of site "%" exists already', m ->> 'order', site
            USING ERRCODE = 'unique_violation', HINT = 'A release is sent once per order; send changes as their own messages.';
    END IF;
    INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, priority, due_date, erp_ref)
    VALUES (site, m ->> 'order', plantsync.lookup_id('material', site, 'material_number', m ->> 'material', 'material'),
            (m ->> 'quantity')::numeric, m ->> 'uom', 'released', COALESCE((m ->> 'priority')::numeric::smallint, 5),
            (m ->> 'due_date')::date, m ->> 'erp_ref')
    RETURNING id INTO o;
    INSERT INTO plantsync.production_operation (site_id, order_id, operation_number, work_center_id, process_segment, planned_quantity)
    SELECT site, o, op ->> 'operation', plantsync.lookup_id('equipment', site, 'equipment_code', op ->> 'work_center', 'work_center'),
           op ->> 'segment', (op ->> 'quantity')::numeric
      FROM jsonb_array_elements(COALESCE(m -> 'operations', '[]')) op;
    GET DIAGNOSTICS n = ROW_COUNT;
    -- the order's own bill of materials, for the order quantity
    IF m ? 'components' THEN
        INSERT INTO plantsync.bom (site_id, material_id, alternative, base_quantity, base_uom, erp_ref)
        SELECT site, po.material_id, 'order ' || po.order_number, po.quantity, po.uom, m ->> 'erp_ref'
          FROM plantsync.production_order po WHERE po.id = o
        RETURNING id INTO b;
        INSERT INTO plantsync.bom_item (site_id, bom_id, item_number, component_material_id, quantity, uom, scrap_percent, operation_number)
        SELECT site, b, lpad((10 * k)::text, 4, '0'), plantsync.lookup_id('material', site, 'material_number', c ->> 'material', 'component'),
               (c ->> 'quantity')::numeric, c ->> 'uom', COALESCE((c ->> 'scrap_percent')::numeric, 0), c ->> 'operation'
          FROM jsonb_array_elements(m -> 'components') WITH ORDINALITY x (c, k);
        UPDATE plantsync.production_order SET bom_id = b WHERE id = o;
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object('order_id', o, 'order_status', 'released', 'operations', n, 'bom_id', b));
END
$$;

CREATE FUNCTION plantsync.handle_erp_order_cancel(m jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o uuid := plantsync.lookup_id('production_order', m ->> 'site', 'order_number', m ->> 'order', 'order');
BEGIN
    PERFORM set_config('plantsync.change_reason', m ->> 'reason', true);
    UPDATE plantsync.production_order SET status = 'cancelled' WHERE id = o;
    RETURN jsonb_build_object('order_id', o, 'order_status', 'cancelled');
END
$$;

-- Serials in a message are units: their count is the message's quantity in
-- the material's base unit, and the material must be serial-tracked.
CREATE FUNCTION plantsync.check_serial_count(p_material uuid, m jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mat plantsync.material;
    n integer := jsonb_array_length(m -> 'serials');
BEGIN
    SELECT * INTO mat FROM plantsync.material WHERE id = p_material;
    IF NOT mat.serial_tracked THEN
        RAISE EXCEPTION 'material "%" is not serial-tracked: the message cannot name serials', mat.material_number
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'serials';
    END IF;
    IF plantsync.to_base_quantity(p_material, (m ->> 'quantity')::numeric, m ->> 'uom') <> n THEN
        RAISE EXCEPTION 'the message names % serials but its quantity is % %', n, m ->> 'quantity', m ->> 'uom'
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'quantity',
                  HINT = format('Each serial is one %s of material "%s".', mat.base_uom, mat.material_number);
    END IF;
END
$$;
COMMENT ON FUNCTION plantsync.check_serial_count(uuid, jsonb) IS 'Used by the process APIs: serials named in a message are units of a serial-tracked material, as many as its quantity.';
REVOKE EXECUTE ON FUNCTION plantsync.check_serial_count(uuid, jsonb) FROM PUBLIC;

CREATE FUNCTION plantsync.lookup_serial(p_site text, p_material uuid, p_lot uuid, p_serial text)
RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s uuid;
BEGIN
    SELECT id INTO s FROM plantsync.serial WHERE site_id = p_site AND material_id = p_material AND serial_number = p_serial;
    IF s IS NULL THEN
        RAISE EXCEPTION 'serial "%" does not exist at site "%"', p_serial, p_site USING ERRCODE = 'foreign_key_violation', COLUMN = 'serials';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM plantsync.serial WHERE id = s AND lot_id IS NOT DISTINCT FROM p_lot) THEN
        RAISE EXCEPTION 'serial "%" is not in lot "%"', p_serial, (SELECT lot_number FROM plantsync.lot WHERE id = p_lot)
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'serials';
    END IF;
    RETURN s;
END
$$;
COMMENT ON FUNCTION plantsync.lookup_serial(text, uuid, uuid, text) IS 'Used by the process APIs: a serial of a material named by number, which must be in the lot named.';
REVOKE EXECUTE ON FUNCTION plantsync.lookup_serial(text, uuid, uuid, text) FROM PUBLIC;

CREATE FUNCTION plantsync.lookup_sublot(p_lot uuid, p_sublot text, p_lot_number text)
RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s uuid;
BEGIN
    SELECT id INTO s FROM plantsync.sublot WHERE lot_id = p_lot AND sublot_number = p_sublot;
    IF s IS NULL THEN
        RAISE EXCEPTION 'sublot "%" of lot "%" does not exist', p_sublot, p_lot_number USING ERRCODE = 'foreign_key_violation', COLUMN = 'sublot';
    END IF;
    RETURN s;
END
$$;
COMMENT ON FUNCTION plantsync.lookup_sublot(uuid, text, text) IS 'Used by the process APIs: a sublot of a lot named by number.';
REVOKE EXECUTE ON FUNCTION plantsync.lookup_sublot(uuid, text, text) FROM PUBLIC;

CREATE FUNCTION plantsync.handle_mes_consume(m jsonb, message_id text) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    site text := m ->> 'site';
    o plantsync.production_order := plantsync.released_order(m ->> 'site', m ->> 'order');
    mat uuid := plantsync.lookup_id('material', site, 'material_number', m ->> 'material', 'material');
    mv uuid;
    lot uuid;
BEGIN
    SELECT l.id INTO lot FROM plantsync.lot l WHERE l.site_id = site AND l.material_id = mat AND l.lot_number = m ->> 'lot';
    IF lot IS NULL THEN
        RAISE EXCEPTION 'lot "%" of material "%" does not exist at site "%"', m ->> 'lot', m ->> 'material', site
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'lot';
    END IF;
    IF m ? 'serials' THEN
        -- a unit each: one movement per serial, the message's quantity their count
        PERFORM plantsync.check_serial_count(mat, m);
        INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, serial_id, quantity, uom, from_location_id,
                                                 order_id, source_system, external_id)
        SELECT site, 'consumption', mat, lot,
               plantsync.lookup_serial(site, mat, lot, sn), 1, (SELECT base_uom FROM plantsync.material WHERE id = mat),
               plantsync.lookup_id('storage_location', site, 'location_code', m ->> 'location', 'location'), o.id, 'mes', message_id || '/' || sn
          FROM jsonb_array_elements_text(m -> 'serials') sn;
        RETURN jsonb_build_object('movements', jsonb_array_length(m -> 'serials'));
    END IF;
    INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, sublot_id, quantity, uom, from_location_id, order_id,
                                             source_system, external_id)
    VALUES (site, 'consumption', mat, lot,
            CASE WHEN m ? 'sublot' THEN plantsync.lookup_sublot(lot, m ->> 'sublot', m ->> 'lot') END,
            (m ->> 'quantity')::numeric, m ->> 'uom',
            plantsync.lookup_id('storage_location', site, 'location_code', m ->> 'location', 'location'), o.id, 'mes', message_id)
    RETURNING id INTO mv;
    RETURN jsonb_build_object('movement_id', mv);
END
$$;

CREATE FUNCTION plantsync.handle_mes_confirm(m jsonb, message_id text) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o plantsync.production_order := plantsync.released_order(m ->> 'site', m ->> 'order');
    op uuid;
    c uuid;
BEGIN
    SELECT id INTO op FROM plantsync.production_operation WHERE order_id = o.id AND operation_number = m ->> 'operation';
    IF op IS NULL THEN
        RAISE EXCEPTION 'operation "%" of order "%" does not exist', m ->> 'operation', o.order_number
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'operation';
    END IF;
    IF o.status = 'released' THEN
        UPDATE plantsync.production_order SET status = 'in_progress' WHERE id = o.id;
    END IF;
    INSERT INTO plantsync.production_confirmation (site_id, order_id, operation_id, yield_quantity, scrap_quantity, rework_quantity, uom,
                                                   labour_minutes, machine_minutes, is_final, source_system, external_id)
    VALUES (o.site_id, o.id, op, COALESCE((m ->> 'yield')::numeric, 0), COALESCE((m ->> 'scrap')::numeric, 0),
            COALESCE((m ->> 'rework')::numeric, 0), m ->> 'uom', COALESCE((m ->> 'labour_minutes')::numeric, 0),
            COALESCE((m ->> 'machine_minutes')::numeric, 0), COALESCE((m ->> 'final')::boolean, false), 'mes', message_id)
    RETURNING id INTO c;
    RETURN jsonb_build_object('confirmation_id', c);
END
$$;

CREATE FUNCTION plantsync.handle_mes_complete(m jsonb, message_id text) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o plantsync.production_order := plantsync.released_order(m ->> 'site', m ->> 'order');
    lot uuid;
    mv uuid;
BEGIN
    IF o.status = 'released' THEN
        UPDATE plantsync.production_order SET status = 'in_progress' WHERE id = o.id;
    END IF;
    -- the produced lot waits for quality: quality-inspection stock
    INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition, production_order_id, manufactured_at)
    VALUES (o.site_id, o.material_id, m ->> 'lot', 'restricted', o.id, now())
    RETURNING id INTO lot;
    IF m ? 'serials' THEN
        -- the units made, in the lot, each received on its own
        PERFORM plantsync.check_serial_count(o.material_id, m);
        INSERT INTO plantsync.serial (site_id, material_id, serial_number, lot_id, disposition, production_order_id)
        SELECT o.site_id, o.material_id, sn, lot, 'restricted', o.id FROM jsonb_array_elements_text(m -> 'serials') sn;
        INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, serial_id, quantity, uom, to_location_id, order_id,
                                                 source_system, external_id)
        SELECT o.site_id, 'production_receipt', o.material_id, lot, sr.id, 1, (SELECT base_uom FROM plantsync.material WHERE id = o.material_id),
               plantsync.lookup_id('storage_location', o.site_id, 'location_code', m ->> 'location', 'location'), o.id, 'mes',
               message_id || '/' || sr.serial_number
          FROM plantsync.serial sr WHERE sr.lot_id = lot ORDER BY sr.serial_number;
    ELSE
        INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, order_id,
                                                 source_system, external_id)
        VALUES (o.site_id, 'production_receipt', o.material_id, lot, (m ->> 'quantity')::numeric, m ->> 'uom',
                plantsync.lookup_id('storage_location', o.site_id, 'location_code', m ->> 'location', 'location'), o.id, 'mes', message_id)
        RETURNING id INTO mv;
    END IF;
    UPDATE plantsync.production_order SET status = 'completed' WHERE id = o.id AND status <> 'completed';
    RETURN jsonb_build_object('lot_id', lot, 'movement_id', mv, 'order_status', 'completed');
END
$$;

-- A partial usage decision: the quantities to free, block and scrap, in the
-- lot's base unit, must add up to what the lot has on hand.
CREATE FUNCTION plantsync.partial_decision_quantities(m jsonb, l plantsync.lot, OUT free numeric, OUT blocked numeric, OUT scrapped numeric)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mat plantsync.material;
    uom text;
    on_hand numeric;
BEGIN
    SELECT * INTO mat FROM plantsync.material WHERE id = l.material_id;
    uom := COALESCE(m ->> 'uom', mat.base_uom);
    free := plantsync.to_base_quantity(mat.id, COALESCE((m #>> '{quantities,unrestricted}')::numeric, 0), uom);
    blocked := plantsync.to_base_quantity(mat.id, COALESCE((m #>> '{quantities,blocked}')::numeric, 0), uom);
    scrapped := plantsync.to_base_quantity(mat.id, COALESCE((m #>> '{quantities,scrapped}')::numeric, 0), uom);
    SELECT COALESCE(sum(b.base_quantity), 0) INTO on_hand FROM plantsync.stock_balance b WHERE b.lot_id = l.id;
    IF free + blocked + scrapped <> on_hand OR on_hand <= 0 THEN
        RAISE EXCEPTION 'partial decision on lot "%": % unrestricted + % blocked + % scrapped is % %, but the lot has % % on hand',
            l.lot_number, free, blocked, scrapped, free + blocked + scrapped, mat.base_uom, on_hand, mat.base_uom
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'quantities',
                  HINT = 'A partial decision distributes all of the lot''s stock: the quantities must add up to it.';
    END IF;
END
$$;
COMMENT ON FUNCTION plantsync.partial_decision_quantities(jsonb, plantsync.lot) IS 'Used by the usage decision handler: the quantities of a partial decision in the lot''s base unit, refused unless they add up to the lot''s stock.';
REVOKE EXECUTE ON FUNCTION plantsync.partial_decision_quantities(jsonb, plantsync.lot) FROM PUBLIC;

-- The stock side of a partial decision: the scrapped quantity leaves the
-- lot; the blocked quantity, when some is also freed, moves into a lot of
-- its own, blocked from the start (one disposition per lot keeps the
-- quality hold enforceable), split from the lot (a lot_split pair and a
-- split_into genealogy link). Lots and the ledger belong to MES: the hub
-- writes them as MES, the movements marked as coming from the QMS decision.
-- The ERP knows the split-off lot as stock of the original batch (erp_ref),
-- so the receiving half of the split reaches it as a change of stock type
-- there (SAP 350 from quality inspection).
CREATE FUNCTION plantsync.split_on_decision(m jsonb, l plantsync.lot, p_inspection_lot uuid, p_free numeric, p_blocked numeric,
                                            p_scrapped numeric)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    base text := (SELECT base_uom FROM plantsync.material WHERE id = l.material_id);
    ref text := (SELECT inspection_lot_number FROM plantsync.inspection_lot WHERE id = p_inspection_lot);
    child plantsync.lot;
    b record;
    to_scrap numeric := p_scrapped;
    to_split numeric := CASE WHEN p_free > 0 THEN p_blocked ELSE 0 END;
    take numeric;
    n integer := 0;
    writing_for text := current_setting('plantsync.source_system', true);
BEGIN
    PERFORM set_config('plantsync.source_system', 'mes', true);
    IF to_split > 0 THEN
        BEGIN
            INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition, production_order_id, manufactured_at, expires_on,
                                       supplier_lot, erp_ref, parent_lot_id)
            VALUES (l.site_id, l.material_id, COALESCE(m ->> 'blocked_lot', l.lot_number || '-B'), 'blocked', l.production_order_id,
                    l.manufactured_at, l.expires_on, l.supplier_lot, COALESCE(l.erp_ref, l.lot_number), l.id)
            RETURNING * INTO child;
        EXCEPTION WHEN unique_violation THEN
            RAISE EXCEPTION 'partial decision on lot "%": lot "%" exists already', l.lot_number, COALESCE(m ->> 'blocked_lot', l.lot_number || '-B')
                USING ERRCODE = 'unique_violation', COLUMN = 'blocked_lot',
                      HINT = 'Name the lot for the blocked quantity with blocked_lot.';
        END;
    END IF;
    -- location by location, in the order of their codes
    FOR b IN SELECT s.storage_location_id, s.base_quantity FROM plantsync.stock_balance s
               JOIN plantsync.storage_location loc ON loc.id = s.storage_location_id
              WHERE s.lot_id = l.id AND s.base_quantity > 0 ORDER BY loc.location_code LOOP
        take := least(to_scrap, b.base_quantity);
        IF take > 0 THEN
            n := n + 1;
            INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id,
                                                     source_system, external_id, reason)
            VALUES (l.site_id, 'scrap', l.material_id, l.id, take, base, b.storage_location_id, 'qms', format('UD-%s-%s', ref, n),
                    format('usage decision on %s: scrapped', ref));
            to_scrap := to_scrap - take;
            b.base_quantity := b.base_quantity - take;
        END IF;
        take := least(to_split, b.base_quantity);
        IF take > 0 THEN
            n := n + 1;
            INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, from_location_id, to_location_id,
                                                     source_system, external_id, reason)
            VALUES (l.site_id, 'lot_split', l.material_id, l.id, take, base, b.storage_location_id, NULL, 'qms', format('UD-%s-%s', ref, n),
                    format('usage decision on %s: blocked part split into %s', ref, child.lot_number)),
                   (l.site_id, 'lot_split', l.material_id, child.id, take, base, NULL, b.storage_location_id, 'qms', format('UD-%s-%s-in', ref, n),
                    format('usage decision on %s: blocked part split from %s', ref, l.lot_number));
            to_split := to_split - take;
        END IF;
    END LOOP;
    IF to_scrap > 0 OR to_split > 0 THEN
        RAISE EXCEPTION 'partial decision on lot "%": the stock moved while it was decided (% % not placed)', l.lot_number, to_scrap + to_split, base
            USING ERRCODE = 'serialization_failure', HINT = 'Send the decision again.';
    END IF;
    PERFORM set_config('plantsync.source_system', writing_for, true);
    RETURN jsonb_strip_nulls(jsonb_build_object('blocked_lot_id', child.id, 'blocked_lot', child.lot_number));
END
$$;
COMMENT ON FUNCTION plantsync.split_on_decision(jsonb, plantsync.lot, uuid, numeric, numeric, numeric) IS 'Used by the usage decision handler: scraps the scrapped quantity of a partial decision and splits the blocked quantity into a lot of its own (blocked), location by location.';
REVOKE EXECUTE ON FUNCTION plantsync.split_on_decision(jsonb, plantsync.lot, uuid, numeric, numeric, numeric) FROM PUBLIC;

CREATE FUNCTION plantsync.handle_qms_usage_decision(m jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    site text := m ->> 'site';
    l plantsync.lot;
    il uuid;
    ud uuid;
    nc uuid;
    new_disposition text := CASE m ->> 'decision' WHEN 'accept' THEN 'unrestricted' ELSE 'rejected' END;
    q_free numeric;
    q_blocked numeric;
    q_scrapped numeric;
    split jsonb;
BEGIN
    l := plantsync.lot_of_message(m);
    -- the inspection lot: the one named, or the lot's open final inspection,
    -- or a new one recording the decision
    SELECT id INTO il FROM plantsync.inspection_lot
     WHERE site_id = site AND lot_id = l.id AND (inspection_lot_number = m ->> 'inspection_lot' OR m ->> 'inspection_lot' IS NULL)
     ORDER BY created_at DESC LIMIT 1;
    IF il IS NULL THEN
        INSERT INTO plantsync.inspection_lot (site_id, inspection_lot_number, lot_id, production_order_id, inspection_type, quantity, uom, status)
        SELECT site, COALESCE(m ->> 'inspection_lot', 'UD-' || l.lot_number), l.id, l.production_order_id, 'final',
               COALESCE((SELECT sum(base_quantity) FROM plantsync.material_movement WHERE lot_id = l.id AND to_location_id IS NOT NULL), 1),
               (SELECT base_uom FROM plantsync.material WHERE id = l.material_id), 'released'
        RETURNING id INTO il;
    END IF;
    UPDATE plantsync.inspection_lot SET status = 'results_recorded' WHERE id = il AND status IN ('created', 'released');
    UPDATE plantsync.inspection_lot SET status = 'released' WHERE id = il AND status = 'created';
    IF m ->> 'decision' = 'partial' THEN
        SELECT * INTO q_free, q_blocked, q_scrapped FROM plantsync.partial_decision_quantities(m, l);
        -- what is freed stays in the lot; with nothing freed, what is blocked does
        new_disposition := CASE WHEN q_free > 0 THEN 'unrestricted' WHEN q_blocked > 0 THEN 'blocked' ELSE 'rejected' END;
    END IF;
    INSERT INTO plantsync.usage_decision (site_id, inspection_lot_id, decision, decision_code, decided_by, comment,
                                          quantity_unrestricted, quantity_blocked, quantity_scrapped)
    VALUES (site, il, m ->> 'decision', m ->> 'code', m ->> 'decided_by', m ->> 'comment',
            COALESCE(q_free, 0), COALESCE(q_blocked, 0), COALESCE(q_scrapped, 0))
    RETURNING id INTO ud;
    IF m ->> 'decision' = 'partial' THEN
        split := plantsync.split_on_decision(m, l, il, q_free, q_blocked, q_scrapped);
    END IF;
    IF m ? 'signature' THEN
        INSERT INTO plantsync.usage_decision_signature (site_id, usage_decision_id, signer, meaning, record_hash)
        VALUES (site, ud, m #>> '{signature,signer}', m #>> '{signature,meaning}', plantsync.usage_decision_hash(ud));
    END IF;
    UPDATE plantsync.inspection_lot SET status = CASE WHEN new_disposition = 'unrestricted' THEN 'accepted' ELSE 'rejected' END WHERE id = il;
    UPDATE plantsync.lot SET disposition = new_disposition WHERE id = l.id AND disposition <> new_disposition;
    -- a rejected lot, or the part of one that was blocked or scrapped, is a
    -- nonconformance to work on, opened with the decision
    IF m ->> 'decision' = 'reject' OR q_blocked > 0 OR q_scrapped > 0 THEN
        INSERT INTO plantsync.nonconformance (site_id, nc_number, severity, title, description, material_id, lot_id, inspection_lot_id,
                                              production_order_id)
        SELECT site, 'NC-' || i.inspection_lot_number, 'major',
               CASE WHEN m ->> 'decision' = 'reject' THEN format('Lot %s rejected', l.lot_number)
                    ELSE format('Lot %s partly rejected: %s blocked, %s scrapped', l.lot_number, q_blocked, q_scrapped) END,
               concat_ws(': ', m ->> 'code', m ->> 'comment'), l.material_id, l.id, i.id, l.production_order_id
          FROM plantsync.inspection_lot i WHERE i.id = il
        ON CONFLICT (site_id, nc_number) DO NOTHING
        RETURNING id INTO nc;
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object('lot_id', l.id, 'inspection_lot_id', il, 'usage_decision_id', ud, 'disposition', new_disposition,
                                                'signed', m ? 'signature', 'nonconformance_id', nc) || COALESCE(split, '{}'));
END
$$;

COMMENT ON FUNCTION plantsync.handle_erp_order_release(jsonb) IS 'Handler of erp.order_release: the order, released, with its operations.';
COMMENT ON FUNCTION plantsync.handle_erp_order_cancel(jsonb) IS 'Handler of erp.order_cancel: the order cancelled, with the ERP''s reason.';
COMMENT ON FUNCTION plantsync.handle_mes_consume(jsonb, text) IS 'Handler of mes.consume: a consumption in the ledger (which links the genealogy).';
COMMENT ON FUNCTION plantsync.handle_mes_confirm(jsonb, text) IS 'Handler of mes.confirm: a confirmation; the order is in progress from the first one.';
COMMENT ON FUNCTION plantsync.handle_mes_complete(jsonb, text) IS 'Handler of mes.complete: the produced lot in restricted disposition (quality-inspection stock), its production receipt, the order completed.';
COMMENT ON FUNCTION plantsync.handle_qms_usage_decision(jsonb) IS 'Handler of qms.usage_decision: the usage decision on the lot''s inspection lot (created if QMS did not announce one) and the lot''s new disposition; a partial decision scraps and splits off quantities (see plantsync.split_on_decision); a rejection, or a partial decision that blocks or scraps, opens a nonconformance (NC-<inspection lot>) about the lot.';

-- ---------- the inbox ----------

CREATE FUNCTION plantsync.dispatch(p_type text, p_payload jsonb, p_message_id text) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE p_type
        WHEN 'erp.order_release' THEN plantsync.handle_erp_order_release(p_payload)
        WHEN 'erp.order_cancel' THEN plantsync.handle_erp_order_cancel(p_payload)
        WHEN 'mes.consume' THEN plantsync.handle_mes_consume(p_payload, p_message_id)
        WHEN 'mes.confirm' THEN plantsync.handle_mes_confirm(p_payload, p_message_id)
        WHEN 'mes.complete' THEN plantsync.handle_mes_complete(p_payload, p_message_id)
        WHEN 'qms.usage_decision' THEN plantsync.handle_qms_usage_decision(p_payload)
        -- master data and the ERP's batch view (src/dialects/89_dialects_b2mml.sql)
        WHEN 'erp.material' THEN plantsync.handle_erp_material(p_payload)
        WHEN 'erp.batch' THEN plantsync.handle_erp_batch(p_payload, p_message_id)
        -- execution and quality (src/process_api/86_messages_execution_quality.sql)
        WHEN 'mes.operation' THEN plantsync.handle_mes_operation(p_payload)
        WHEN 'mes.downtime' THEN plantsync.handle_mes_downtime(p_payload)
        WHEN 'mes.counter' THEN plantsync.handle_mes_counter(p_payload)
        WHEN 'qms.inspection_lot' THEN plantsync.handle_qms_inspection_lot(p_payload)
        WHEN 'qms.results' THEN plantsync.handle_qms_results(p_payload, p_message_id)
        WHEN 'qms.nonconformance' THEN plantsync.handle_qms_nonconformance(p_payload)
        WHEN 'erp.order_change' THEN plantsync.handle_erp_order_change(p_payload)
        WHEN 'erp.inventory_snapshot' THEN plantsync.handle_erp_inventory_snapshot(p_payload)
        WHEN 'erp.posting_ack' THEN plantsync.handle_erp_posting_ack(p_payload)
    END;
END
$$;
COMMENT ON FUNCTION plantsync.dispatch(text, jsonb, text) IS 'Used by plantsync.receive: the handler of a message type.';

-- Messages about one order are received one at a time: one parked for an
-- order and the order's release, each unable to see the other's
-- uncommitted row, left it parked for good.
CREATE FUNCTION plantsync.lock_order(p_payload jsonb)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_advisory_xact_lock(hashtext('plantsync.order'), hashtext((p_payload ->> 'site') || '/' || (p_payload ->> 'order')))
     WHERE p_payload ? 'order'
$$;
COMMENT ON FUNCTION plantsync.lock_order(jsonb) IS 'Used by plantsync.receive and plantsync.retry_parked: the transaction-level lock of the order a message names, if it names one.';

-- Parked messages selected by an administrator (a plant-restricted login
-- role: only its plants'), oldest first.
CREATE FUNCTION plantsync.select_parked(site_id text, message_id text, system_code text)
RETURNS SETOF uuid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    allowed text[] := plantsync.sites_of(session_user);
BEGIN
    IF select_parked.site_id IS NULL AND select_parked.message_id IS NULL AND select_parked.system_code IS NULL THEN
        RAISE EXCEPTION 'no parked messages selected' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Give at least one of site_id, message_id, system_code.';
    END IF;
    RETURN QUERY
    SELECT i.id FROM plantsync.inbox i
     WHERE i.status = 'parked'
       AND (select_parked.site_id IS NULL OR i.site_id = select_parked.site_id)
       AND (select_parked.message_id IS NULL OR i.message_id = select_parked.message_id)
       AND (select_parked.system_code IS NULL OR i.system_code = select_parked.system_code)
       AND (allowed IS NULL OR i.site_id = ANY (allowed))
     ORDER BY i.received_at, i.id;
END
$$;
COMMENT ON FUNCTION plantsync.select_parked(text, text, text) IS 'Used by plantsync.retry_parked and plantsync.discard_parked: the parked messages selected by site, message id or system, oldest first; refuses an empty selection.';

-- A parked message applied now, as its system: applied, or parked still,
-- with what it waits for (its prerequisite still missing, or the error it
-- meets now after the words in refused). Its failure never undoes the
-- caller's work. Returns what it still waits for, NULL once applied.
CREATE FUNCTION plantsync.apply_parked(p plantsync.inbox, refused text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    waiting text;
    outer_reason text := current_setting('plantsync.change_reason', true);
BEGIN
    PERFORM set_config('plantsync.source_system', p.system_code, true);
    PERFORM set_config('plantsync.causation_id', p.id::text, true);
    BEGIN
        UPDATE plantsync.inbox SET status = 'applied', applied_at = now(), waiting_for = NULL,
               outcome = plantsync.dispatch(p.message_type, p.payload, p.message_id)
         WHERE id = p.id;
    EXCEPTION
        WHEN SQLSTATE 'PS013' THEN
            GET STACKED DIAGNOSTICS waiting = PG_EXCEPTION_DETAIL;
        WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS waiting = MESSAGE_TEXT;
            waiting := refused || waiting;
    END;
    IF waiting IS NOT NULL THEN
        UPDATE plantsync.inbox SET waiting_for = waiting WHERE id = p.id;
    END IF;
    PERFORM set_config('plantsync.change_reason', COALESCE(outer_reason, ''), true);
    RETURN waiting;
END
$$;
COMMENT ON FUNCTION plantsync.apply_parked(plantsync.inbox, text) IS 'Used by plantsync.receive (a release applies the messages parked for its order) and plantsync.retry_parked: applies one parked message, or leaves it parked with what it waits for.';

CREATE FUNCTION plantsync.receive(p_type text, p_message_id text, p_payload jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sys text := split_part(p_type, '.', 1);
    seen plantsync.inbox;
    entry uuid := plantsync.uuid_v7();
    result jsonb;
    waiting text;
    parked plantsync.inbox;
    allowed text[];
    -- what a handler sets for its own changes (a reason, the causing
    -- message) must not stay for the next message of the transaction
    outer_reason text := current_setting('plantsync.change_reason', true);
    outer_causation text := current_setting('plantsync.causation_id', true);
    outer_source text := current_setting('plantsync.source_system', true);
BEGIN
    IF p_type IS NULL OR p_type NOT IN ('erp.order_release', 'erp.order_cancel', 'mes.consume', 'mes.confirm', 'mes.complete',
                                        'qms.usage_decision', 'erp.material', 'erp.batch', 'mes.operation', 'mes.downtime', 'mes.counter',
                                        'qms.inspection_lot', 'qms.results', 'qms.nonconformance', 'erp.order_change',
                                        'erp.inventory_snapshot', 'erp.posting_ack') THEN
        RAISE EXCEPTION 'message type "%" is not known', p_type USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_message_id IS NULL OR btrim(p_message_id) = '' THEN
        RAISE EXCEPTION 'a message id is required' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Send the id your system gives the message; a message sent again with the same id is applied once.';
    END IF;
    IF p_payload IS NULL THEN
        RAISE EXCEPTION 'the message has no payload' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- a misspelt plant would otherwise park an MES message for good
    IF p_payload ? 'site' AND NOT EXISTS (SELECT 1 FROM plantsync.site s WHERE s.site_id = p_payload ->> 'site') THEN
        RAISE EXCEPTION 'site "%" does not exist', p_payload ->> 'site' USING ERRCODE = 'foreign_key_violation',
            HINT = 'Messages name a plant of plantsync.site.';
    END IF;
    -- This runs with its owner's rights, which row-level security does not
    -- restrict: a login role restricted to plants sends only for them.
    allowed := plantsync.sites_of(session_user);
    IF allowed IS NOT NULL AND NOT COALESCE(p_payload ->> 'site' = ANY (allowed), false) THEN
        RAISE EXCEPTION 'role "%" may not send messages for site "%"', session_user, COALESCE(p_payload ->> 'site', '(none)')
            USING ERRCODE = 'insufficient_privilege', HINT = format('It is restricted to %s.', array_to_string(allowed, ', '));
    END IF;

    -- One message id at a time (a second copy sent at once waits, then
    -- finds the first and is a duplicate), and one message about an order
    -- at a time: a message parked for an order and the order's release,
    -- each unable to see the other's uncommitted row, left it parked.
    PERFORM pg_advisory_xact_lock(hashtext('plantsync.inbox'), hashtext(concat_ws('/', sys, p_payload ->> 'site', p_message_id)));
    PERFORM plantsync.lock_order(p_payload);

    -- seen before: the first outcome, nothing changed
    SELECT * INTO seen FROM plantsync.inbox
     WHERE system_code = sys AND message_id = p_message_id AND site_id IS NOT DISTINCT FROM p_payload ->> 'site';
    IF FOUND THEN
        IF seen.payload IS DISTINCT FROM p_payload THEN
            RAISE EXCEPTION 'message "%" of % was received before with other content', p_message_id, sys
                USING ERRCODE = 'PS012', DETAIL = format('First received %s as %s.', seen.received_at, seen.message_type),
                      HINT = 'A message id names one message; give a new message a new id.';
        END IF;
        RETURN COALESCE(seen.outcome, '{}') || jsonb_build_object('message', 'duplicate', 'first_status', seen.status,
                                                                  'first_received_at', seen.received_at);
    END IF;

    PERFORM plantsync.check_contract(p_type, p_payload);
    PERFORM set_config('plantsync.source_system', sys, true);
    PERFORM set_config('plantsync.causation_id', entry::text, true);
    BEGIN
        result := plantsync.dispatch(p_type, p_payload, p_message_id);
    EXCEPTION WHEN SQLSTATE 'PS013' THEN
        GET STACKED DIAGNOSTICS waiting = PG_EXCEPTION_DETAIL;
    END;
    PERFORM set_config('plantsync.change_reason', COALESCE(outer_reason, ''), true);
    INSERT INTO plantsync.inbox (id, system_code, message_id, message_type, site_id, payload, status, outcome, waiting_for, applied_at)
    VALUES (entry, sys, p_message_id, p_type, p_payload ->> 'site', p_payload,
            CASE WHEN waiting IS NULL THEN 'applied' ELSE 'parked' END, result, waiting,
            CASE WHEN waiting IS NULL THEN now() END);
    IF waiting IS NOT NULL THEN
        result := jsonb_build_object('message', 'parked', 'waiting_for', waiting);
    ELSE
        -- a release may be what parked messages wait for
        IF p_type = 'erp.order_release' THEN
            FOR parked IN SELECT * FROM plantsync.inbox
                           WHERE status = 'parked' AND site_id = p_payload ->> 'site' AND waiting_for = 'order ' || (p_payload ->> 'order')
                           ORDER BY received_at, id LOOP
                -- a parked message that now fails for another reason stays
                -- parked with that reason: the release itself is not refused
                PERFORM plantsync.apply_parked(parked, 'refused when its order arrived: ');
            END LOOP;
        END IF;
        result := result || jsonb_build_object('message', 'applied');
    END IF;
    PERFORM set_config('plantsync.source_system', COALESCE(outer_source, 'hub'), true);
    PERFORM set_config('plantsync.causation_id', COALESCE(outer_causation, ''), true);
    RETURN result;
END
$$;
COMMENT ON FUNCTION plantsync.receive(text, text, jsonb) IS
'Receives one business message and returns its outcome ({"message": "applied" | "parked" | "duplicate", ...what it created}): checks it against its contract, applies it as its system in this transaction (or refuses it whole), and keeps it with its outcome in plantsync.inbox. A message id seen before from the same system for the same plant returns the first outcome and changes nothing (other content under the same id: PS012). An MES message for an order not released yet is parked and applied when the release arrives.';
REVOKE EXECUTE ON FUNCTION plantsync.receive(text, text, jsonb), plantsync.dispatch(text, jsonb, text),
    plantsync.handle_erp_order_release(jsonb), plantsync.handle_erp_order_cancel(jsonb),
    plantsync.handle_mes_consume(jsonb, text), plantsync.handle_mes_confirm(jsonb, text), plantsync.handle_mes_complete(jsonb, text),
    plantsync.handle_qms_usage_decision(jsonb), plantsync.apply_parked(plantsync.inbox, text), plantsync.lock_order(jsonb),
    plantsync.select_parked(text, text, text) FROM PUBLIC;

-- Parked messages an operator takes in hand: one whose prerequisite came by
-- another way (an order inserted directly, a lot received after the order
-- arrived), or one that will never apply. The sender cannot: sent again,
-- the same id is a duplicate.
CREATE FUNCTION plantsync.retry_parked(site_id text DEFAULT NULL, message_id text DEFAULT NULL, system_code text DEFAULT NULL)
RETURNS TABLE (sender text, parked_message_id text, outcome text, still_waiting_for text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    candidate record;
    p plantsync.inbox;
    outer_source text := current_setting('plantsync.source_system', true);
    outer_causation text := current_setting('plantsync.causation_id', true);
BEGIN
    FOR candidate IN SELECT i.id, i.payload
                       FROM plantsync.select_parked(retry_parked.site_id, retry_parked.message_id, retry_parked.system_code)
                            WITH ORDINALITY AS sel(id, n)
                       JOIN plantsync.inbox i ON i.id = sel.id
                      ORDER BY sel.n LOOP
        -- the order first, then the message, as receive() takes them
        PERFORM plantsync.lock_order(candidate.payload);
        SELECT * INTO p FROM plantsync.inbox i WHERE i.id = candidate.id AND i.status = 'parked' FOR UPDATE;
        CONTINUE WHEN NOT FOUND;
        sender := p.system_code;
        parked_message_id := p.message_id;
        still_waiting_for := plantsync.apply_parked(p, 'refused when retried: ');
        outcome := CASE WHEN still_waiting_for IS NULL THEN 'applied' ELSE 'parked' END;
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('plantsync.source_system', COALESCE(outer_source, 'hub'), true);
    PERFORM set_config('plantsync.causation_id', COALESCE(outer_causation, ''), true);
    IF sender IS NULL THEN
        RAISE EXCEPTION 'no parked messages match the selection' USING ERRCODE = 'no_data_found';
    END IF;
END
$$;
COMMENT ON FUNCTION plantsync.retry_parked(text, text, text) IS 'Applies again the parked messages selected by site, message id or system (a plant-restricted login role: only its plants''), each as its system: applied, or parked still with what it waits for. For messages whose prerequisite came by another way than a release message.';
REVOKE EXECUTE ON FUNCTION plantsync.retry_parked(text, text, text) FROM PUBLIC;

CREATE FUNCTION plantsync.discard_parked(reason text, site_id text DEFAULT NULL, message_id text DEFAULT NULL, system_code text DEFAULT NULL)
RETURNS SETOF text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plantsync.source_system = 'hub'
AS $$
DECLARE
    ids text[];
BEGIN
    PERFORM plantsync.check_selection_reason(reason);
    WITH gone AS (
        UPDATE plantsync.inbox i
           SET status = 'discarded',
               outcome = jsonb_build_object('discarded_by', session_user, 'discarded_at', now(), 'reason', reason,
                                            'waiting_for', i.waiting_for)
         WHERE i.status = 'parked'
           AND i.id IN (SELECT plantsync.select_parked(discard_parked.site_id, discard_parked.message_id, discard_parked.system_code))
        RETURNING i.system_code || '/' || i.message_id AS id
    )
    SELECT array_agg(g.id ORDER BY g.id) INTO ids FROM gone g;
    IF ids IS NULL THEN
        RAISE EXCEPTION 'no parked messages match the selection' USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY SELECT unnest(ids);
END
$$;
COMMENT ON FUNCTION plantsync.discard_parked(text, text, text, text) IS 'Discards the parked messages selected by site, message id or system, with a reason (kept in their outcome, with who): they are never applied; sent again, they are duplicates.';
REVOKE EXECUTE ON FUNCTION plantsync.discard_parked(text, text, text, text) FROM PUBLIC;

-- One function per message, for each system's integration role.
CREATE FUNCTION plantsync.erp_release_order(message_id text, payload jsonb) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.receive('erp.order_release', message_id, payload) $$;
CREATE FUNCTION plantsync.erp_cancel_order(message_id text, payload jsonb) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.receive('erp.order_cancel', message_id, payload) $$;
CREATE FUNCTION plantsync.mes_consume(message_id text, payload jsonb) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.receive('mes.consume', message_id, payload) $$;
CREATE FUNCTION plantsync.mes_confirm(message_id text, payload jsonb) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.receive('mes.confirm', message_id, payload) $$;
CREATE FUNCTION plantsync.mes_complete(message_id text, payload jsonb) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.receive('mes.complete', message_id, payload) $$;
CREATE FUNCTION plantsync.qms_usage_decision(message_id text, payload jsonb) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.receive('qms.usage_decision', message_id, payload) $$;
COMMENT ON FUNCTION plantsync.erp_release_order(text, jsonb) IS 'ERP: release a production order (contract erp.order_release).';
COMMENT ON FUNCTION plantsync.erp_cancel_order(text, jsonb) IS 'ERP: cancel a production order (contract erp.order_cancel).';
COMMENT ON FUNCTION plantsync.mes_consume(text, jsonb) IS 'MES: consume a lot into an order (contract mes.consume); parked until the order is released.';
COMMENT ON FUNCTION plantsync.mes_confirm(text, jsonb) IS 'MES: confirm an operation (contract mes.confirm); parked until the order is released.';
COMMENT ON FUNCTION plantsync.mes_complete(text, jsonb) IS 'MES: complete an order with its lot, received into quality-inspection stock (contract mes.complete).';
COMMENT ON FUNCTION plantsync.qms_usage_decision(text, jsonb) IS 'QMS: usage decision on a lot: accept, reject, or partial with the quantities to free, block and scrap (contract qms.usage_decision).';
REVOKE EXECUTE ON FUNCTION plantsync.erp_release_order(text, jsonb), plantsync.erp_cancel_order(text, jsonb),
    plantsync.mes_consume(text, jsonb), plantsync.mes_confirm(text, jsonb), plantsync.mes_complete(text, jsonb),
    plantsync.qms_usage_decision(text, jsonb) FROM PUBLIC;

CREATE FUNCTION plantsync.grant_integration_role(p_system text, p_role name)
RETURNS SETOF text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn text;
BEGIN
    IF p_system NOT IN ('erp', 'mes', 'qms') THEN
        RAISE EXCEPTION 'system "%" has no process APIs', p_system USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use erp, mes or qms.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_role) THEN
        RAISE EXCEPTION 'role "%" does not exist', p_role USING ERRCODE = 'undefined_object';
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA plantsync TO %I', p_role);
    IF p_system = 'mes' THEN
        EXECUTE format('GRANT EXECUTE ON FUNCTION plantsync.mes_signal_staging() TO %I', p_role);
    END IF;
    FOR fn IN SELECT p.oid::regprocedure::text FROM pg_proc p
               WHERE p.pronamespace = 'plantsync'::regnamespace AND p.proname LIKE p_system || '\_%'
                 AND pg_get_function_identity_arguments(p.oid) IN ('message_id text, payload jsonb', 'message_id text, site text, document text')
               ORDER BY 1 LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', fn, p_role);
        RETURN NEXT fn;
    END LOOP;
END
$$;
COMMENT ON FUNCTION plantsync.grant_integration_role(text, name) IS
'Lets a role call one system''s process APIs (and nothing else of them): grants USAGE on the schema and EXECUTE on that system''s functions; returns them. The functions apply messages with the extension owner''s rights, so the role needs no table privileges.';
REVOKE EXECUTE ON FUNCTION plantsync.grant_integration_role(text, name) FROM PUBLIC;

CREATE FUNCTION plantsync.refuse_signature_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'a signature cannot be changed or removed' USING ERRCODE = 'PS005',
        HINT = 'Sign a new decision instead; the signed one stays on record.';
END
$$;
COMMENT ON FUNCTION plantsync.refuse_signature_change() IS 'Trigger function: signatures are never changed or removed.';

-- Electronic signatures (21 CFR Part 11): a usage decision signed by a
-- person, with the meaning of the signature, bound to the decision's content
-- by a hash, so that a decision changed after signing no longer verifies.
CREATE TABLE plantsync.usage_decision_signature (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    usage_decision_id uuid NOT NULL UNIQUE REFERENCES plantsync.usage_decision,
    signer text NOT NULL
        CONSTRAINT usage_decision_signature_signer_given CHECK (btrim(signer) <> ''),
    meaning text NOT NULL
        CONSTRAINT usage_decision_signature_meaning_check CHECK (meaning IN ('approved', 'rejected', 'reviewed', 'released')),
    signed_by_role name NOT NULL DEFAULT session_user,
    signed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    record_hash bytea NOT NULL
);
COMMENT ON TABLE plantsync.usage_decision_signature IS 'Electronic signatures of usage decisions: who signed (the person, and the role the signature came through), what the signature means, when, and a hash of the decision as signed.';
COMMENT ON COLUMN plantsync.usage_decision_signature.id IS 'Signature id.';
COMMENT ON COLUMN plantsync.usage_decision_signature.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.usage_decision_signature.usage_decision_id IS 'The decision signed.';
COMMENT ON COLUMN plantsync.usage_decision_signature.signer IS 'The person who signed (as the QMS identifies them).';
COMMENT ON COLUMN plantsync.usage_decision_signature.meaning IS 'What the signature means: approved, rejected, reviewed or released.';
COMMENT ON COLUMN plantsync.usage_decision_signature.signed_by_role IS 'The database role the signature came through (session_user).';
COMMENT ON COLUMN plantsync.usage_decision_signature.signed_at IS 'When.';
COMMENT ON COLUMN plantsync.usage_decision_signature.record_hash IS 'SHA-256 of the decision''s content as signed (see plantsync.signature_valid).';
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON plantsync.usage_decision_signature FROM PUBLIC;
CREATE TRIGGER plantsync_refuse_change BEFORE UPDATE OR DELETE ON plantsync.usage_decision_signature
    FOR EACH ROW EXECUTE FUNCTION plantsync.refuse_signature_change();

CREATE FUNCTION plantsync.usage_decision_hash(p_usage_decision_id uuid)
RETURNS bytea
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT sha256(convert_to(concat_ws(E'\x1f', d.id::text, d.site_id, d.inspection_lot_id::text, d.decision, d.decision_code,
                                       d.quantity_unrestricted::text, d.quantity_blocked::text, d.quantity_scrapped::text,
                                       to_char(d.decided_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), d.decided_by, d.comment), 'UTF8'))
      FROM plantsync.usage_decision d WHERE d.id = p_usage_decision_id
$$;
COMMENT ON FUNCTION plantsync.usage_decision_hash(uuid) IS 'SHA-256 of a usage decision''s content, as a signature binds it.';

CREATE FUNCTION plantsync.signature_valid(p_usage_decision_id uuid)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.record_hash = plantsync.usage_decision_hash(s.usage_decision_id)
      FROM plantsync.usage_decision_signature s WHERE s.usage_decision_id = p_usage_decision_id
$$;
COMMENT ON FUNCTION plantsync.signature_valid(uuid) IS 'Whether a usage decision''s signature still matches the decision (NULL when it is not signed).';

-- Shop-floor signals: machine states, counter readings and consumption ticks
-- arrive by the thousand. They are not business messages one at a time but
-- batches: checked as a set, deduplicated by (equipment, signal, time), and
-- stored in one statement.
-- No foreign keys, for speed: the drain only stores signals of equipment it
-- found at the signal's site, equipment with signals cannot be deleted
-- (trigger below), and a site with equipment cannot be either.
CREATE TABLE plantsync.machine_signal (
    site_id text NOT NULL,
    equipment_id uuid NOT NULL,
    signal text NOT NULL
        CONSTRAINT machine_signal_signal_check CHECK (signal IN ('state', 'counter', 'consumption')),
    occurred_at timestamptz NOT NULL,
    state text,
    value numeric,
    message_id text,
    received_at timestamptz NOT NULL DEFAULT now(),
    -- time first: signals arrive in about the order they happened, so a
    -- batch's keys go to the right end of the index (the cheapest insert
    -- there is), and readers mostly want a time window across machines
    CONSTRAINT machine_signal_key PRIMARY KEY (occurred_at, equipment_id, signal),
    CONSTRAINT machine_signal_has_value CHECK ((signal = 'state') = (state IS NOT NULL) AND (signal = 'state' OR value IS NOT NULL))
);
COMMENT ON TABLE plantsync.machine_signal IS 'Shop-floor signals (machine states, counter readings, consumption ticks) received in batches through plantsync.mes_ingest_signals(); one row per equipment, signal and time, so a batch sent twice is stored once.';
COMMENT ON COLUMN plantsync.machine_signal.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.machine_signal.equipment_id IS 'Equipment (machine, work center) the signal is from.';
COMMENT ON COLUMN plantsync.machine_signal.signal IS 'state (a machine state), counter (a reading) or consumption (a quantity consumed).';
COMMENT ON COLUMN plantsync.machine_signal.occurred_at IS 'When it happened on the shop floor.';
COMMENT ON COLUMN plantsync.machine_signal.state IS 'For a state: the state (e.g. running, idle, down).';
COMMENT ON COLUMN plantsync.machine_signal.value IS 'For a counter or consumption: the value.';
COMMENT ON COLUMN plantsync.machine_signal.message_id IS 'The batch it came in.';
COMMENT ON COLUMN plantsync.machine_signal.received_at IS 'When it arrived.';
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON plantsync.machine_signal FROM PUBLIC;

-- Which equipment has signals, one row each, kept by the drain: the signals
-- are keyed by time first, so asking them would read them all.
CREATE TABLE plantsync.signal_equipment (
    site_id text NOT NULL REFERENCES plantsync.site,
    equipment_id uuid PRIMARY KEY,
    first_signal_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE plantsync.signal_equipment IS 'Equipment that has shop-floor signals (kept by the signal ingest); such equipment cannot be deleted.';
COMMENT ON COLUMN plantsync.signal_equipment.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.signal_equipment.equipment_id IS 'Equipment.';
COMMENT ON COLUMN plantsync.signal_equipment.first_signal_at IS 'When its first signals were stored.';
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON plantsync.signal_equipment FROM PUBLIC;

-- No foreign key on the signals: a per-row check would cost more than the
-- rest of the ingest. The batch is checked against the equipment as a set;
-- equipment that has signals is kept from deletion here instead.
CREATE FUNCTION plantsync.keep_signalled_equipment() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM plantsync.signal_equipment s WHERE s.equipment_id = OLD.id) THEN
        RAISE EXCEPTION 'equipment "%" has shop-floor signals and cannot be deleted', OLD.equipment_code
            USING ERRCODE = 'foreign_key_violation', HINT = 'Mark it out of service instead; its signals are history.';
    END IF;
    RETURN OLD;
END
$$;
COMMENT ON FUNCTION plantsync.keep_signalled_equipment() IS 'Trigger function: equipment with signals cannot be deleted (the signals have no foreign key, for speed).';
REVOKE EXECUTE ON FUNCTION plantsync.keep_signalled_equipment() FROM PUBLIC;
CREATE TRIGGER plantsync_keep_signalled BEFORE DELETE ON plantsync.equipment
    FOR EACH ROW EXECUTE FUNCTION plantsync.keep_signalled_equipment();

CREATE FUNCTION plantsync.mes_ingest_signals(message_id text, payload jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    site text := payload ->> 'site';
    bad record;
    received integer;
    refused integer;
    applied integer;
BEGIN
    IF message_id IS NULL OR btrim(message_id) = '' THEN
        RAISE EXCEPTION 'a message id is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF site IS NULL OR NOT EXISTS (SELECT 1 FROM plantsync.site s WHERE s.site_id = site) THEN
        RAISE EXCEPTION 'site "%" does not exist', site USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF jsonb_typeof(payload -> 'signals') IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'signals must be a JSON array' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- the rows go through the same move as the COPY way, read straight from
    -- the JSON; a batch with a bad signal is refused after the fact (the
    -- error undoes it all), and the first bad one is looked for only then
    BEGIN
        SELECT d.received, d.refused, d.applied INTO received, refused, applied
          FROM plantsync.drain_staged_signals(mes_ingest_signals.message_id, payload) d;
    EXCEPTION WHEN invalid_datetime_format OR invalid_text_representation OR datetime_field_overflow THEN
        RAISE EXCEPTION 'a signal cannot be read: %', SQLERRM
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Each signal needs equipment, signal and at (an ISO 8601 time with its offset); value is a number.';
    END;
    IF refused > 0 THEN
        SELECT s.ord, s.x ->> 'equipment' AS equipment, s.x ->> 'signal' AS signal, s.x ->> 'at' AS at,
               e.id AS equipment_id, s.x ? 'state' AS has_state, s.x ? 'value' AS has_value INTO bad
          FROM jsonb_array_elements(payload -> 'signals') WITH ORDINALITY s (x, ord)
          LEFT JOIN plantsync.equipment e ON e.site_id = site AND e.equipment_code = s.x ->> 'equipment'
         WHERE e.id IS NULL OR COALESCE(s.x ->> 'signal', '') NOT IN ('state', 'counter', 'consumption') OR s.x ->> 'at' IS NULL
            OR (s.x ->> 'at')::timestamptz > now() + interval '5 minutes'
            OR (s.x ->> 'signal' = 'state' AND s.x ->> 'state' IS NULL) OR (s.x ->> 'signal' <> 'state' AND s.x ->> 'value' IS NULL)
         ORDER BY s.ord LIMIT 1;
        RAISE EXCEPTION 'signal % is not valid: %', bad.ord,
            CASE WHEN bad.equipment_id IS NULL THEN format('equipment "%s" does not exist at site "%s"', bad.equipment, site)
                 WHEN COALESCE(bad.signal, '') NOT IN ('state', 'counter', 'consumption') THEN format('signal "%s" is not state, counter or consumption', bad.signal)
                 WHEN bad.at IS NULL THEN 'it has no time (at)'
                 WHEN bad.at::timestamptz > now() + interval '5 minutes' THEN format('its time %s is in the future', bad.at)
                 WHEN bad.signal = 'state' THEN 'a state signal needs a state'
                 ELSE format('a %s signal needs a value', bad.signal) END
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Nothing of the batch was stored; fix the signal and send the batch again (signals stored before are not stored twice).';
    END IF;
    RETURN jsonb_build_object('message', 'applied', 'received', received, 'stored', applied, 'duplicates', received - applied);
END
$$;
COMMENT ON FUNCTION plantsync.mes_ingest_signals(text, jsonb) IS
'MES: a batch of shop-floor signals, {"site": ..., "signals": [{"equipment": code, "signal": "state" | "counter" | "consumption", "at": time, "state": ..., "value": ...}]}: checked as a whole (the first bad signal is named and nothing is stored), deduplicated by equipment, signal and time, stored in one statement. Returns how many were received, stored and duplicates.';
REVOKE EXECUTE ON FUNCTION plantsync.mes_ingest_signals(text, jsonb) FROM PUBLIC;

-- The COPY way in: an adapter asks for its session's staging table, COPYs
-- signals into it and calls plantsync.mes_drain_signals() in the same
-- transaction, which checks and moves them in one statement. The table is
-- temporary (no WAL, no locks shared with other sessions, emptied at commit
-- and by each drain) and made by plantsync, not by the caller: the
-- functions that read it run with plantsync's rights, so a table the caller
-- made, with rules, policies or types of its own, is never read.
CREATE FUNCTION plantsync.mes_signal_staging()
RETURNS regclass
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass := to_regclass('pg_temp.plantsync_signal_staging');
BEGIN
    IF rel IS NULL THEN
        CREATE TEMP TABLE plantsync_signal_staging (
            site text NOT NULL,
            equipment text NOT NULL,
            signal text NOT NULL,
            at timestamptz NOT NULL,
            state text,
            value numeric
        ) ON COMMIT DELETE ROWS;
        -- only this session sees its temporary tables
        GRANT INSERT ON pg_temp.plantsync_signal_staging TO PUBLIC;
        rel := 'pg_temp.plantsync_signal_staging'::regclass;
    END IF;
    PERFORM plantsync.check_signal_staging(rel);
    RETURN rel;
END
$$;
COMMENT ON FUNCTION plantsync.mes_signal_staging() IS
'MES: this session''s staging table for COPY of shop-floor signals (made on first use): COPY pg_temp.plantsync_signal_staging (site, equipment, signal, at, state, value) FROM STDIN, then SELECT plantsync.mes_drain_signals(batch id) in the same transaction. Emptied at commit.';
REVOKE EXECUTE ON FUNCTION plantsync.mes_signal_staging() FROM PUBLIC;

CREATE FUNCTION plantsync.check_signal_staging(p_rel regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = p_rel AND c.relowner = (SELECT r.oid FROM pg_roles r WHERE r.rolname = current_user)
                      AND c.relkind = 'r' AND c.relpersistence = 't' AND NOT c.relrowsecurity AND NOT c.relhasrules) THEN
        RAISE EXCEPTION 'pg_temp.plantsync_signal_staging was not made by plantsync' USING ERRCODE = 'insufficient_privilege',
            HINT = 'Drop it and call plantsync.mes_signal_staging(), which makes the staging table.';
    END IF;
END
$$;
COMMENT ON FUNCTION plantsync.check_signal_staging(regclass) IS 'Used by the signal ingest: refuses a staging table plantsync did not make.';
REVOKE EXECUTE ON FUNCTION plantsync.check_signal_staging(regclass) FROM PUBLIC;

CREATE FUNCTION plantsync.drain_staged_signals(p_message_id text, p_payload jsonb DEFAULT NULL)
RETURNS TABLE (received integer, refused integer, applied integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- The batch is inserted plainly first: signals are rarely sent twice,
    -- and the key's own uniqueness check is cheaper than a speculative
    -- insertion or a lookup per row. A signal stored before, twice in the
    -- batch, or by a concurrent batch makes that fail; the whole move is
    -- then made again with ON CONFLICT DO NOTHING.
    drain constant text := $q$
    WITH staged AS (
        %s
    ), parsed AS (
        SELECT st.site, st.signal, st.at, st.state, st.value, e.id AS equipment_id,
               COALESCE(e.id IS NOT NULL AND st.signal IN ('state', 'counter', 'consumption') AND st.at <= now() + interval '5 minutes'
                        AND CASE WHEN st.signal = 'state' THEN st.state IS NOT NULL ELSE st.value IS NOT NULL END, false) AS ok
          FROM staged st
          LEFT JOIN plantsync.equipment e ON e.site_id = st.site AND e.equipment_code = st.equipment
    ), seen AS (
        INSERT INTO plantsync.signal_equipment (site_id, equipment_id)
        SELECT DISTINCT p.site, p.equipment_id FROM parsed p WHERE p.ok
        ON CONFLICT (equipment_id) DO NOTHING
    ), ins AS (
        INSERT INTO plantsync.machine_signal (site_id, equipment_id, signal, occurred_at, state, value, message_id)
        SELECT p.site, p.equipment_id, p.signal, p.at, CASE WHEN p.signal = 'state' THEN p.state END,
               CASE WHEN p.signal <> 'state' THEN p.value END, $1
          FROM parsed p
         WHERE p.ok
        %s
        RETURNING 1
    )
    SELECT count(*)::integer, (count(*) FILTER (WHERE NOT ok))::integer, (SELECT count(*) FROM ins)::integer FROM parsed
    $q$;
    rel regclass := to_regclass('pg_temp.plantsync_signal_staging');
    -- the signals: a JSON batch's, or the session's staged ones
    source text := CASE WHEN p_payload IS NOT NULL
        THEN $s$SELECT $2 ->> 'site' AS site, r.equipment, r.signal, r.at, r.state, r.value
                  FROM jsonb_to_recordset($2 -> 'signals') AS r (equipment text, signal text, at timestamptz, state text, value numeric)$s$
        ELSE 'SELECT s.site, s.equipment, s.signal, s.at, s.state, s.value FROM ONLY pg_temp.plantsync_signal_staging s' END;
BEGIN
    IF p_payload IS NULL AND rel IS NULL THEN
        received := 0;
        refused := 0;
        applied := 0;
        RETURN NEXT;
        RETURN;
    END IF;
    IF p_payload IS NULL THEN
        PERFORM plantsync.check_signal_staging(rel);
    END IF;
    BEGIN
        EXECUTE format(drain, source, '') INTO received, refused, applied USING p_message_id, p_payload;
    EXCEPTION WHEN unique_violation THEN
        EXECUTE format(drain, source, 'ON CONFLICT ON CONSTRAINT machine_signal_key DO NOTHING') INTO received, refused, applied
            USING p_message_id, p_payload;
    END;
    -- drained: a second drain in the transaction starts empty
    IF p_payload IS NULL THEN
        TRUNCATE pg_temp.plantsync_signal_staging;
    END IF;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION plantsync.drain_staged_signals(text, jsonb) IS 'Used by the signal ingest: moves the signals of a JSON batch, or those staged in the session, that are valid into plantsync.machine_signal, once each; returns how many were received, invalid and stored.';
REVOKE EXECUTE ON FUNCTION plantsync.drain_staged_signals(text, jsonb) FROM PUBLIC;

CREATE FUNCTION plantsync.mes_drain_signals(message_id text, payload jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record;
BEGIN
    IF message_id IS NULL OR btrim(message_id) = '' THEN
        RAISE EXCEPTION 'a message id is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO d FROM plantsync.drain_staged_signals(mes_drain_signals.message_id);
    IF d.refused > 0 THEN
        -- the error undoes the COPY and the move
        RAISE EXCEPTION '% staged signals are not valid (unknown equipment, signal, a time in the future, or a missing state or value); nothing was stored', d.refused
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Check them with mes_ingest_signals(), which names the first bad one.';
    END IF;
    RETURN jsonb_build_object('message', 'applied', 'received', d.received, 'stored', d.applied, 'duplicates', d.received - d.applied);
END
$$;
COMMENT ON FUNCTION plantsync.mes_drain_signals(text, jsonb) IS
'MES: moves the signals this transaction COPYed into its session''s staging table (see plantsync.mes_signal_staging) into plantsync.machine_signal (checked as a whole, deduplicated, one statement). Returns how many were received, stored and duplicates.';
REVOKE EXECUTE ON FUNCTION plantsync.mes_drain_signals(text, jsonb) FROM PUBLIC;
