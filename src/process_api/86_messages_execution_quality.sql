-- More business messages of the process APIs: the MES starting, holding,
-- resuming and finishing operations and reporting downtime; the QMS
-- creating inspection lots, recording results and opening, advancing and
-- closing nonconformances; the ERP changing an order and sending an
-- inventory snapshot. Same rules as every message (src/process_api/86_process_api.sql):
-- a contract, a message id applied once, one transaction, parked when its
-- order is not released yet.

SELECT plantsync.register_contract('mes.operation', '{
  "type": "object", "required": ["site", "order", "operation", "action"],
  "properties": {"site": {"type": "string", "minLength": 1}, "order": {"type": "string", "minLength": 1},
                 "operation": {"type": "string", "minLength": 1},
                 "action": {"enum": ["start", "hold", "resume", "suspend", "complete", "abort"]},
                 "at": {"type": "string", "format": "date-time"}, "reason": {"type": "string"}}}',
  'inbound', 'backward', 'MES starts, holds, resumes, suspends, completes or aborts an operation.');
SELECT plantsync.register_contract('mes.downtime', '{
  "type": "object", "required": ["site", "downtime", "equipment", "started_at", "reason_code"],
  "properties": {"site": {"type": "string", "minLength": 1}, "downtime": {"type": "string", "minLength": 1},
                 "equipment": {"type": "string", "minLength": 1}, "order": {"type": "string"},
                 "started_at": {"type": "string", "format": "date-time"}, "ended_at": {"type": "string", "format": "date-time"},
                 "category": {"enum": ["planned", "unplanned", "changeover", "maintenance", "quality", "material_shortage"]},
                 "reason_code": {"type": "string", "minLength": 1}, "description": {"type": "string"}}}',
  'inbound', 'backward', 'MES reports equipment downtime (its id names it: a second message with the same id ends it).');
SELECT plantsync.register_contract('mes.counter', '{
  "type": "object", "required": ["site", "equipment", "counter"],
  "properties": {"site": {"type": "string", "minLength": 1}, "equipment": {"type": "string", "minLength": 1},
                 "counter": {"type": "string", "minLength": 1}, "add": {"type": "number", "minimum": 0},
                 "value": {"type": "number", "minimum": 0}},
  "oneOf": [{"required": ["add"]}, {"required": ["value"]}]}',
  'inbound', 'backward', 'MES reports a maintenance counter of an equipment: an increment (add) or a reading since the last reset (value).');
SELECT plantsync.register_contract('qms.inspection_lot', '{
  "type": "object", "required": ["site", "inspection_lot", "lot", "type", "quantity", "uom"],
  "properties": {"site": {"type": "string", "minLength": 1}, "inspection_lot": {"type": "string", "minLength": 1},
                 "lot": {"type": "string", "minLength": 1}, "material": {"type": "string"}, "type": {"enum": ["incoming", "in_process", "final"]},
                 "quantity": {"type": "number", "exclusiveMinimum": 0}, "uom": {"type": "string", "minLength": 1},
                 "plan": {"type": "string"}, "qms_ref": {"type": "string"}}}',
  'inbound', 'backward', 'QMS creates an inspection lot for a lot, released for inspection.');
SELECT plantsync.register_contract('qms.results', '{
  "type": "object", "required": ["site", "inspection_lot", "results"],
  "properties": {"site": {"type": "string", "minLength": 1}, "inspection_lot": {"type": "string", "minLength": 1},
                 "results": {"type": "array", "minItems": 1, "items": {
                   "type": "object", "required": ["characteristic", "conforming", "by"],
                   "properties": {"characteristic": {"type": "string", "minLength": 1}, "sample": {"type": "integer", "minimum": 1},
                                  "value": {"type": "number"}, "attribute": {"type": "string"}, "uom": {"type": "string"},
                                  "conforming": {"type": "boolean"}, "by": {"type": "string", "minLength": 1}}}}}}',
  'inbound', 'backward', 'QMS records inspection results of an inspection lot (every reading kept).');
SELECT plantsync.register_contract('qms.nonconformance', '{
  "type": "object", "required": ["site", "nc", "title"],
  "properties": {"site": {"type": "string", "minLength": 1}, "nc": {"type": "string", "minLength": 1},
                 "title": {"type": "string", "minLength": 1}, "description": {"type": "string"},
                 "severity": {"enum": ["minor", "major", "critical"]}, "lot": {"type": "string"}, "material": {"type": "string"}, "order": {"type": "string"},
                 "status": {"enum": ["draft", "analysis", "action_plan", "in_progress", "closed", "cancelled"]},
                 "qms_ref": {"type": "string"}}}',
  'inbound', 'backward', 'QMS opens a nonconformance or brings it up to date (title, description, severity, status).');
SELECT plantsync.register_contract('erp.order_change', '{
  "type": "object", "required": ["site", "order", "reason"],
  "properties": {"site": {"type": "string", "minLength": 1}, "order": {"type": "string", "minLength": 1},
                 "quantity": {"type": "number", "exclusiveMinimum": 0}, "due_date": {"type": "string", "format": "date"},
                 "priority": {"type": "integer", "minimum": 1, "maximum": 9}, "reason": {"type": "string", "minLength": 1}}}',
  'inbound', 'backward', 'ERP changes a released order: quantity, due date or priority, with its reason.');
SELECT plantsync.register_contract('erp.posting_ack', '{
  "type": "object", "required": ["site", "kind", "reference", "document"],
  "properties": {"site": {"type": "string", "minLength": 1}, "kind": {"enum": ["confirmation", "inspection_lot"]},
                 "reference": {"type": "string", "minLength": 1}, "document": {"type": "string", "minLength": 1}}}',
  'inbound', 'backward', 'ERP acknowledges a posting: the document number of a confirmation, or the stock posting of a usage decision.');
SELECT plantsync.register_contract('erp.inventory_snapshot', '{
  "type": "object", "required": ["site", "taken_at", "rows"],
  "properties": {"site": {"type": "string", "minLength": 1}, "taken_at": {"type": "string", "format": "date-time"},
                 "rows": {"type": "array"}}}',
  'inbound', 'backward', 'ERP sends its inventory for reconciliation (rows as plantsync.load_erp_snapshot takes them).');

-- Moves a row along a path of its state machine to a target state, one
-- allowed transition at a time (the guard checks each): a message says
-- where a thing is now, not every step it took to get there.
CREATE FUNCTION plantsync.advance_state(p_table text, p_id uuid, p_state_column text, p_path text[], p_target text, p_what text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur text;
    i integer;
    j integer;
BEGIN
    EXECUTE format('SELECT %I FROM plantsync.%I WHERE id = $1', p_state_column, p_table) INTO cur USING p_id;
    i := array_position(p_path, cur);
    j := array_position(p_path, p_target);
    IF cur = p_target THEN
        RETURN cur;
    END IF;
    IF i IS NULL OR j IS NULL OR j < i THEN
        -- not forward along the path: one direct transition, which the
        -- guard allows or refuses with the state machine's own words
        EXECUTE format('UPDATE plantsync.%I SET %I = $1 WHERE id = $2', p_table, p_state_column) USING p_target, p_id;
        RETURN p_target;
    END IF;
    FOR k IN i + 1 .. j LOOP
        EXECUTE format('UPDATE plantsync.%I SET %I = $1 WHERE id = $2', p_table, p_state_column) USING p_path[k], p_id;
    END LOOP;
    RETURN p_target;
END
$$;
COMMENT ON FUNCTION plantsync.advance_state(text, uuid, text, text[], text, text) IS 'Used by the handlers: moves a row forward along a path of states to a target, one transition at a time; a target off the path is one direct transition (the guard decides).';
REVOKE EXECUTE ON FUNCTION plantsync.advance_state(text, uuid, text, text[], text, text) FROM PUBLIC;

CREATE FUNCTION plantsync.handle_mes_operation(m jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o plantsync.production_order := plantsync.released_order(m ->> 'site', m ->> 'order');
    op plantsync.production_operation;
    at timestamptz := COALESCE((m ->> 'at')::timestamptz, now());
    target text := CASE m ->> 'action' WHEN 'start' THEN 'running' WHEN 'resume' THEN 'running' WHEN 'hold' THEN 'held'
                                       WHEN 'suspend' THEN 'suspended' WHEN 'complete' THEN 'completed' WHEN 'abort' THEN 'aborted' END;
    state text;
BEGIN
    SELECT * INTO op FROM plantsync.production_operation WHERE order_id = o.id AND operation_number = m ->> 'operation';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'operation "%" of order "%" does not exist', m ->> 'operation', o.order_number
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'operation';
    END IF;
    IF m ->> 'action' IN ('start', 'resume') AND op.status IN ('held', 'suspended') <> (m ->> 'action' = 'resume') THEN
        RAISE EXCEPTION 'operation "%" of order "%" is % and cannot be %ed', op.operation_number, o.order_number, op.status,
            CASE m ->> 'action' WHEN 'start' THEN 'start' ELSE 'resum' END
            USING ERRCODE = 'PS001', HINT = CASE WHEN op.status IN ('held', 'suspended') THEN 'Send action resume.' ELSE 'Send action start.' END;
    END IF;
    IF m ? 'reason' THEN
        PERFORM set_config('plantsync.change_reason', m ->> 'reason', true);
    END IF;
    IF o.status = 'released' AND target = 'running' THEN
        UPDATE plantsync.production_order SET status = 'in_progress' WHERE id = o.id;
    END IF;
    state := plantsync.advance_state('production_operation', op.id, 'status',
                                     ARRAY['waiting', 'ready', 'dispatched', 'running', 'completed'], target, 'operation');
    UPDATE plantsync.production_operation
       SET actual_start = CASE WHEN target = 'running' AND actual_start IS NULL THEN at ELSE actual_start END,
           actual_end = CASE WHEN target IN ('completed', 'aborted') THEN at ELSE actual_end END
     WHERE id = op.id AND (target IN ('completed', 'aborted') OR (target = 'running' AND actual_start IS NULL));
    RETURN jsonb_build_object('operation_id', op.id, 'operation_status', state);
END
$$;
COMMENT ON FUNCTION plantsync.handle_mes_operation(jsonb) IS 'Handler of mes.operation: the operation moved to running (start, through ready and dispatched; resume), held, suspended, completed or aborted, with its actual start and end; the order is in progress from the first start.';

-- An ended downtime adds its minutes to the equipment's downtime_minutes
-- counter, where it has one (planned downtime does not wear a machine).
CREATE FUNCTION plantsync.count_downtime(p_downtime_id uuid)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d plantsync.downtime_event;
    c uuid;
BEGIN
    SELECT * INTO d FROM plantsync.downtime_event WHERE id = p_downtime_id;
    SELECT id INTO c FROM plantsync.maintenance_counter WHERE equipment_id = d.equipment_id AND counter_name = 'downtime_minutes';
    IF c IS NULL OR d.ended_at IS NULL OR d.category IN ('planned', 'changeover') THEN
        RETURN NULL;
    END IF;
    RETURN plantsync.count_for_maintenance(c, extract(epoch FROM d.ended_at - d.started_at) / 60, NULL, d.id);
END
$$;
COMMENT ON FUNCTION plantsync.count_downtime(uuid) IS 'Used by the downtime handler: an ended, unplanned downtime adds its minutes to the equipment''s downtime_minutes counter (if it has one); returns the maintenance trigger raised.';
REVOKE EXECUTE ON FUNCTION plantsync.count_downtime(uuid) FROM PUBLIC;

CREATE FUNCTION plantsync.handle_mes_downtime(m jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    site text := m ->> 'site';
    eq uuid := plantsync.lookup_id('equipment', site, 'equipment_code', m ->> 'equipment', 'equipment');
    o uuid;
    d plantsync.downtime_event;
    t uuid;
BEGIN
    IF m ? 'order' THEN
        o := (plantsync.released_order(site, m ->> 'order')).id;
    END IF;
    SELECT * INTO d FROM plantsync.downtime_event WHERE site_id = site AND source_system = 'mes' AND external_id = m ->> 'downtime';
    IF FOUND THEN
        -- the same downtime again: it has ended, or its end is corrected
        IF d.equipment_id <> eq THEN
            RAISE EXCEPTION 'downtime "%" is of another equipment', m ->> 'downtime' USING ERRCODE = 'invalid_parameter_value', COLUMN = 'equipment';
        END IF;
        UPDATE plantsync.downtime_event
           SET ended_at = COALESCE((m ->> 'ended_at')::timestamptz, ended_at), reason_code = m ->> 'reason_code',
               category = COALESCE(m ->> 'category', category), description = COALESCE(m ->> 'description', description)
         WHERE id = d.id;
        IF d.ended_at IS NULL AND m ? 'ended_at' THEN
            t := plantsync.count_downtime(d.id);
        END IF;
        RETURN jsonb_strip_nulls(jsonb_build_object('downtime_id', d.id, 'ended', m ? 'ended_at', 'maintenance_trigger_id', t));
    END IF;
    INSERT INTO plantsync.downtime_event (site_id, equipment_id, order_id, started_at, ended_at, category, reason_code, description,
                                          source_system, external_id)
    VALUES (site, eq, o, (m ->> 'started_at')::timestamptz, (m ->> 'ended_at')::timestamptz, COALESCE(m ->> 'category', 'unplanned'),
            m ->> 'reason_code', COALESCE(m ->> 'description', ''), 'mes', m ->> 'downtime')
    RETURNING * INTO d;
    IF m ? 'ended_at' THEN
        t := plantsync.count_downtime(d.id);
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object('downtime_id', d.id, 'ended', m ? 'ended_at', 'maintenance_trigger_id', t));
END
$$;
COMMENT ON FUNCTION plantsync.handle_mes_downtime(jsonb) IS 'Handler of mes.downtime: a downtime event of the equipment (named by the MES''s downtime id); the same id again records its end, which feeds the equipment''s downtime_minutes counter.';

-- A counter moved on; past its threshold the hub raises one maintenance
-- trigger (an event routes send to the maintenance system) until that one
-- is closed. Downtime feeds a counter named downtime_minutes, where an
-- equipment has one.
CREATE FUNCTION plantsync.count_for_maintenance(p_counter_id uuid, p_add numeric, p_value numeric, p_downtime_id uuid)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c plantsync.maintenance_counter;
    t uuid;
    sys text := current_setting('plantsync.source_system');
BEGIN
    UPDATE plantsync.maintenance_counter SET current_value = COALESCE(p_value, current_value + p_add)
     WHERE id = p_counter_id RETURNING * INTO c;
    IF c.current_value >= c.threshold
       AND NOT EXISTS (SELECT 1 FROM plantsync.maintenance_trigger mt WHERE mt.counter_id = c.id AND mt.status <> 'closed') THEN
        -- maintenance requests are the hub's to raise
        PERFORM set_config('plantsync.source_system', 'hub', true);
        INSERT INTO plantsync.maintenance_trigger (site_id, equipment_id, counter_id, downtime_event_id, reason)
        VALUES (c.site_id, c.equipment_id, c.id, p_downtime_id,
                format('%s at %s %s reached its threshold of %s', c.counter_name, trim_scale(c.current_value), c.uom, trim_scale(c.threshold)))
        RETURNING id INTO t;
        PERFORM set_config('plantsync.source_system', sys, true);
    END IF;
    RETURN t;
END
$$;
COMMENT ON FUNCTION plantsync.count_for_maintenance(uuid, numeric, numeric, uuid) IS 'Used by the handlers: moves a maintenance counter on (an increment or a reading) and raises a maintenance trigger when it reaches its threshold and none is open for it; returns the trigger raised.';
REVOKE EXECUTE ON FUNCTION plantsync.count_for_maintenance(uuid, numeric, numeric, uuid) FROM PUBLIC;

CREATE FUNCTION plantsync.handle_mes_counter(m jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    site text := m ->> 'site';
    eq uuid := plantsync.lookup_id('equipment', site, 'equipment_code', m ->> 'equipment', 'equipment');
    c uuid;
    t uuid;
BEGIN
    SELECT id INTO c FROM plantsync.maintenance_counter WHERE equipment_id = eq AND counter_name = m ->> 'counter';
    IF c IS NULL THEN
        RAISE EXCEPTION 'equipment "%" has no counter "%"', m ->> 'equipment', m ->> 'counter'
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'counter',
                  HINT = 'Counters and their thresholds are plant configuration (plantsync.maintenance_counter).';
    END IF;
    t := plantsync.count_for_maintenance(c, (m ->> 'add')::numeric, (m ->> 'value')::numeric, NULL);
    RETURN jsonb_strip_nulls(jsonb_build_object('counter_id', c, 'value', (SELECT current_value FROM plantsync.maintenance_counter WHERE id = c),
                                                'maintenance_trigger_id', t));
END
$$;
COMMENT ON FUNCTION plantsync.handle_mes_counter(jsonb) IS 'Handler of mes.counter: the counter moved on; a maintenance trigger when it reaches its threshold.';

CREATE FUNCTION plantsync.handle_qms_inspection_lot(m jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    site text := m ->> 'site';
    l plantsync.lot;
    plan uuid;
    il uuid;
BEGIN
    l := plantsync.lot_of_message(m);
    IF m ? 'plan' THEN
        SELECT p.id INTO plan FROM plantsync.inspection_plan p WHERE p.site_id = site AND p.plan_code = m ->> 'plan' ORDER BY p.version DESC LIMIT 1;
        IF plan IS NULL THEN
            RAISE EXCEPTION 'inspection plan "%" does not exist at site "%"', m ->> 'plan', site
                USING ERRCODE = 'foreign_key_violation', COLUMN = 'plan';
        END IF;
    ELSE
        SELECT p.id INTO plan FROM plantsync.inspection_plan p
         WHERE p.site_id = site AND p.material_id = l.material_id AND p.inspection_type = m ->> 'type' AND p.active
         ORDER BY p.version DESC LIMIT 1;
    END IF;
    INSERT INTO plantsync.inspection_lot (site_id, inspection_lot_number, lot_id, plan_id, production_order_id, inspection_type, quantity, uom,
                                          status, qms_ref)
    VALUES (site, m ->> 'inspection_lot', l.id, plan, l.production_order_id, m ->> 'type', (m ->> 'quantity')::numeric, m ->> 'uom',
            'released', m ->> 'qms_ref')
    RETURNING id INTO il;
    RETURN jsonb_build_object('inspection_lot_id', il, 'plan_id', plan, 'inspection_lot_status', 'released');
END
$$;
COMMENT ON FUNCTION plantsync.handle_qms_inspection_lot(jsonb) IS 'Handler of qms.inspection_lot: the inspection lot of a lot, released for inspection, with the plan named or the active plan of its material and type.';

CREATE FUNCTION plantsync.handle_qms_results(m jsonb, message_id text) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    site text := m ->> 'site';
    il plantsync.inspection_lot;
    bad record;
    n integer;
BEGIN
    SELECT * INTO il FROM plantsync.inspection_lot WHERE site_id = site AND inspection_lot_number = m ->> 'inspection_lot';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'inspection lot "%" does not exist at site "%"', m ->> 'inspection_lot', site
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'inspection_lot';
    END IF;
    IF il.status NOT IN ('created', 'released', 'results_recorded') THEN
        RAISE EXCEPTION 'inspection lot "%" is % and takes no more results', il.inspection_lot_number, il.status
            USING ERRCODE = 'PS001', HINT = 'Results are recorded before the usage decision.';
    END IF;
    SELECT r.ord, r.v ->> 'characteristic' AS c INTO bad
      FROM jsonb_array_elements(m -> 'results') WITH ORDINALITY r (v, ord)
     WHERE NOT EXISTS (SELECT 1 FROM plantsync.inspection_characteristic c WHERE c.plan_id = il.plan_id
                          AND c.characteristic_number = r.v ->> 'characteristic')
     ORDER BY r.ord LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'result % names characteristic "%", which the plan of inspection lot "%" does not have', bad.ord, bad.c,
            il.inspection_lot_number USING ERRCODE = 'foreign_key_violation', COLUMN = 'characteristic';
    END IF;
    INSERT INTO plantsync.inspection_result (site_id, inspection_lot_id, characteristic_id, sample_number, measured_value, attribute_value, uom,
                                             is_conforming, recorded_by, source_system, external_id)
    SELECT site, il.id, c.id, COALESCE((r.v ->> 'sample')::numeric::integer, 1), (r.v ->> 'value')::numeric, r.v ->> 'attribute',
           COALESCE(r.v ->> 'uom', c.uom), (r.v ->> 'conforming')::boolean, r.v ->> 'by', 'qms', message_id || '/' || r.ord
      FROM jsonb_array_elements(m -> 'results') WITH ORDINALITY r (v, ord)
      JOIN plantsync.inspection_characteristic c ON c.plan_id = il.plan_id AND c.characteristic_number = r.v ->> 'characteristic';
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM plantsync.advance_state('inspection_lot', il.id, 'status', ARRAY['created', 'released', 'results_recorded'], 'results_recorded',
                                    'inspection lot');
    RETURN jsonb_build_object('inspection_lot_id', il.id, 'results', n, 'inspection_lot_status', 'results_recorded',
                              'nonconforming', (SELECT count(*) FROM jsonb_array_elements(m -> 'results') r WHERE NOT (r ->> 'conforming')::boolean));
END
$$;
COMMENT ON FUNCTION plantsync.handle_qms_results(jsonb, text) IS 'Handler of qms.results: every reading kept (each under <message id>/<position>), characteristics of the inspection lot''s plan only; the inspection lot moves to results_recorded.';

CREATE FUNCTION plantsync.handle_qms_nonconformance(m jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    site text := m ->> 'site';
    nc plantsync.nonconformance;
    l plantsync.lot;
    o uuid;
    created boolean := false;
BEGIN
    IF m ? 'lot' THEN
        l := plantsync.lot_of_message(m);
    END IF;
    IF m ? 'order' THEN
        o := plantsync.lookup_id('production_order', site, 'order_number', m ->> 'order', 'order');
    END IF;
    SELECT * INTO nc FROM plantsync.nonconformance WHERE site_id = site AND nc_number = m ->> 'nc';
    IF NOT FOUND THEN
        INSERT INTO plantsync.nonconformance (site_id, nc_number, severity, title, description, material_id, lot_id, production_order_id, qms_ref)
        VALUES (site, m ->> 'nc', COALESCE(m ->> 'severity', 'major'), m ->> 'title', COALESCE(m ->> 'description', ''),
                l.material_id, l.id, COALESCE(o, l.production_order_id), m ->> 'qms_ref')
        RETURNING * INTO nc;
        created := true;
    ELSE
        UPDATE plantsync.nonconformance
           SET title = m ->> 'title', description = COALESCE(m ->> 'description', description),
               severity = COALESCE(m ->> 'severity', severity), qms_ref = COALESCE(m ->> 'qms_ref', qms_ref)
         WHERE id = nc.id AND (title, description, severity, qms_ref) IS DISTINCT FROM
                              (m ->> 'title', COALESCE(m ->> 'description', description), COALESCE(m ->> 'severity', severity),
                               COALESCE(m ->> 'qms_ref', qms_ref));
    END IF;
    IF m ? 'status' THEN
        PERFORM plantsync.advance_state('nonconformance', nc.id, 'status',
                                        ARRAY['draft', 'analysis', 'action_plan', 'in_progress', 'closed'], m ->> 'status', 'nonconformance');
        UPDATE plantsync.nonconformance SET closed_at = now() WHERE id = nc.id AND m ->> 'status' = 'closed' AND closed_at IS NULL;
    END IF;
    RETURN jsonb_build_object('nonconformance_id', nc.id, 'created', created,
                              'nonconformance_status', (SELECT status FROM plantsync.nonconformance WHERE id = nc.id));
END
$$;
COMMENT ON FUNCTION plantsync.handle_qms_nonconformance(jsonb) IS 'Handler of qms.nonconformance: the case opened (with its lot, material and order) or brought up to date, and moved forward to the status sent (through the states between; closed sets closed_at).';

CREATE FUNCTION plantsync.handle_erp_order_change(m jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o plantsync.production_order;
BEGIN
    SELECT * INTO o FROM plantsync.production_order WHERE site_id = m ->> 'site' AND order_number = m ->> 'order';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'order "%" does not exist at site "%"', m ->> 'order', m ->> 'site'
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'order';
    END IF;
    IF o.status IN ('completed', 'closed', 'cancelled', 'aborted') THEN
        RAISE EXCEPTION 'order "%" is % and cannot be changed', o.order_number, o.status
            USING ERRCODE = 'PS001', HINT = 'Only orders not yet finished take changes.';
    END IF;
    PERFORM set_config('plantsync.change_reason', m ->> 'reason', true);
    UPDATE plantsync.production_order
       SET quantity = COALESCE((m ->> 'quantity')::numeric, quantity), due_date = COALESCE((m ->> 'due_date')::date, due_date),
           priority = COALESCE((m ->> 'priority')::numeric::smallint, priority)
     WHERE id = o.id;
    UPDATE plantsync.production_operation SET planned_quantity = (m ->> 'quantity')::numeric
     WHERE order_id = o.id AND m ? 'quantity' AND status IN ('waiting', 'ready', 'dispatched');
    RETURN jsonb_build_object('order_id', o.id, 'changed', (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(m) k
                                                             WHERE k IN ('quantity', 'due_date', 'priority')));
END
$$;
COMMENT ON FUNCTION plantsync.handle_erp_order_change(jsonb) IS 'Handler of erp.order_change: the order''s quantity (and the planned quantity of its operations not started), due date or priority changed, with the ERP''s reason; a finished order is refused.';

CREATE FUNCTION plantsync.handle_erp_posting_ack(m jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    site text := m ->> 'site';
    target uuid;
    st text;
BEGIN
    IF m ->> 'kind' = 'confirmation' THEN
        UPDATE plantsync.production_confirmation c SET erp_document = m ->> 'document'
         WHERE c.site_id = site AND c.external_id = m ->> 'reference'
        RETURNING c.id INTO target;
        IF target IS NULL THEN
            RAISE EXCEPTION 'confirmation "%" does not exist at site "%"', m ->> 'reference', site
                USING ERRCODE = 'foreign_key_violation', COLUMN = 'reference';
        END IF;
        RETURN jsonb_build_object('confirmation_id', target, 'erp_document', m ->> 'document');
    END IF;
    SELECT i.id, i.status INTO target, st FROM plantsync.inspection_lot i WHERE i.site_id = site AND i.inspection_lot_number = m ->> 'reference';
    IF target IS NULL THEN
        RAISE EXCEPTION 'inspection lot "%" does not exist at site "%"', m ->> 'reference', site
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'reference';
    END IF;
    -- the ERP posted the stock of the usage decision: the state machine
    -- says from which states (accepted, rejected)
    UPDATE plantsync.inspection_lot SET status = 'stock_posted' WHERE inspection_lot.id = target;
    RETURN jsonb_build_object('inspection_lot_id', target, 'inspection_lot_status', 'stock_posted', 'erp_document', m ->> 'document');
END
$$;
COMMENT ON FUNCTION plantsync.handle_erp_posting_ack(jsonb) IS 'Handler of erp.posting_ack: a confirmation gets the ERP''s document number; an inspection lot whose usage decision the ERP has posted moves to stock_posted (the document is kept in the inbox outcome).';

CREATE FUNCTION plantsync.handle_erp_inventory_snapshot(m jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN jsonb_build_object('snapshot_id', plantsync.load_erp_snapshot(m ->> 'site', 'inventory', (m ->> 'taken_at')::timestamptz, m -> 'rows', 'erp'),
                              'rows', jsonb_array_length(m -> 'rows'));
END
$$;
COMMENT ON FUNCTION plantsync.handle_erp_inventory_snapshot(jsonb) IS 'Handler of erp.inventory_snapshot: the snapshot loaded for reconciliation (see plantsync.load_erp_snapshot).';

REVOKE EXECUTE ON FUNCTION plantsync.handle_mes_operation(jsonb), plantsync.handle_mes_downtime(jsonb), plantsync.handle_mes_counter(jsonb),
    plantsync.handle_qms_inspection_lot(jsonb), plantsync.handle_qms_results(jsonb, text), plantsync.handle_qms_nonconformance(jsonb),
    plantsync.handle_erp_order_change(jsonb), plantsync.handle_erp_inventory_snapshot(jsonb), plantsync.handle_erp_posting_ack(jsonb) FROM PUBLIC;

CREATE FUNCTION plantsync.mes_operation(message_id text, payload jsonb) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.receive('mes.operation', message_id, payload) $$;
CREATE FUNCTION plantsync.mes_downtime(message_id text, payload jsonb) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.receive('mes.downtime', message_id, payload) $$;
CREATE FUNCTION plantsync.mes_counter(message_id text, payload jsonb) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.receive('mes.counter', message_id, payload) $$;
CREATE FUNCTION plantsync.qms_inspection_lot(message_id text, payload jsonb) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.receive('qms.inspection_lot', message_id, payload) $$;
CREATE FUNCTION plantsync.qms_results(message_id text, payload jsonb) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.receive('qms.results', message_id, payload) $$;
CREATE FUNCTION plantsync.qms_nonconformance(message_id text, payload jsonb) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.receive('qms.nonconformance', message_id, payload) $$;
CREATE FUNCTION plantsync.erp_change_order(message_id text, payload jsonb) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.receive('erp.order_change', message_id, payload) $$;
CREATE FUNCTION plantsync.erp_acknowledge_posting(message_id text, payload jsonb) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.receive('erp.posting_ack', message_id, payload) $$;
CREATE FUNCTION plantsync.erp_inventory_snapshot(message_id text, payload jsonb) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.receive('erp.inventory_snapshot', message_id, payload) $$;
COMMENT ON FUNCTION plantsync.mes_operation(text, jsonb) IS 'MES: start, hold, resume, suspend, complete or abort an operation (contract mes.operation); parked until the order is released.';
COMMENT ON FUNCTION plantsync.mes_downtime(text, jsonb) IS 'MES: report equipment downtime, or its end (contract mes.downtime).';
COMMENT ON FUNCTION plantsync.mes_counter(text, jsonb) IS 'MES: report a maintenance counter (contract mes.counter); past its threshold the hub raises a maintenance trigger.';
COMMENT ON FUNCTION plantsync.qms_inspection_lot(text, jsonb) IS 'QMS: create an inspection lot for a lot (contract qms.inspection_lot).';
COMMENT ON FUNCTION plantsync.qms_results(text, jsonb) IS 'QMS: record inspection results (contract qms.results).';
COMMENT ON FUNCTION plantsync.qms_nonconformance(text, jsonb) IS 'QMS: open a nonconformance or bring it up to date (contract qms.nonconformance).';
COMMENT ON FUNCTION plantsync.erp_change_order(text, jsonb) IS 'ERP: change a released order''s quantity, due date or priority (contract erp.order_change).';
COMMENT ON FUNCTION plantsync.erp_acknowledge_posting(text, jsonb) IS 'ERP: acknowledge a posting (contract erp.posting_ack): a confirmation''s document number, or the stock posting of a usage decision.';
COMMENT ON FUNCTION plantsync.erp_inventory_snapshot(text, jsonb) IS 'ERP: send an inventory snapshot for reconciliation (contract erp.inventory_snapshot).';
REVOKE EXECUTE ON FUNCTION plantsync.mes_operation(text, jsonb), plantsync.mes_downtime(text, jsonb), plantsync.mes_counter(text, jsonb),
    plantsync.qms_inspection_lot(text, jsonb),
    plantsync.qms_results(text, jsonb), plantsync.qms_nonconformance(text, jsonb), plantsync.erp_change_order(text, jsonb),
    plantsync.erp_inventory_snapshot(text, jsonb), plantsync.erp_acknowledge_posting(text, jsonb) FROM PUBLIC;
