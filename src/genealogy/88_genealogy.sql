-- Genealogy: the links between lots and serials that the movement ledger
-- implies (what was consumed into an order, what the order produced), kept
-- in one table by a trigger, and the traces over them (trace.c): backward,
-- forward, and the recall scope of a suspect lot.

CREATE TABLE plantsync.genealogy_link (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id text NOT NULL REFERENCES plantsync.site,
    parent_kind text NOT NULL
        CONSTRAINT genealogy_link_parent_kind_check CHECK (parent_kind IN ('lot', 'serial')),
    parent_id uuid NOT NULL,
    parent_number text NOT NULL,
    parent_material_id uuid NOT NULL,
    child_kind text NOT NULL
        CONSTRAINT genealogy_link_child_kind_check CHECK (child_kind IN ('lot', 'serial')),
    child_id uuid NOT NULL,
    child_number text NOT NULL,
    child_material_id uuid NOT NULL,
    link_type text NOT NULL
        CONSTRAINT genealogy_link_type_check CHECK (link_type IN ('consumed_into', 'contains', 'split_into')),
    order_id uuid,
    quantity numeric,
    uom text,
    linked_at timestamptz NOT NULL,
    unlinked_at timestamptz,
    consumption_movement_id uuid,
    receipt_movement_id uuid,
    CONSTRAINT genealogy_link_not_self CHECK (parent_id <> child_id),
    CONSTRAINT genealogy_link_interval CHECK (unlinked_at IS NULL OR unlinked_at >= linked_at)
);
-- The traces walk these: the far end, the link's lifetime and what a trace
-- shows of the far end and the link are included, so that on pages VACUUM
-- has marked all visible a trace never reads the table (it makes the two
-- indexes about 1.7 times as large).
CREATE INDEX genealogy_link_parent_idx ON plantsync.genealogy_link (parent_id)
    INCLUDE (child_id, linked_at, unlinked_at, child_kind, child_number, child_material_id, quantity, uom, order_id);
CREATE INDEX genealogy_link_child_idx ON plantsync.genealogy_link (child_id)
    INCLUDE (parent_id, linked_at, unlinked_at, parent_kind, parent_number, parent_material_id, quantity, uom, order_id);
CREATE INDEX genealogy_link_consumption_idx ON plantsync.genealogy_link (consumption_movement_id)
    WHERE consumption_movement_id IS NOT NULL;
CREATE INDEX genealogy_link_receipt_idx ON plantsync.genealogy_link (receipt_movement_id)
    WHERE receipt_movement_id IS NOT NULL;
CREATE INDEX genealogy_link_order_idx ON plantsync.genealogy_link (order_id) WHERE order_id IS NOT NULL;
COMMENT ON TABLE plantsync.genealogy_link IS
'Genealogy: one row per link from a parent lot or serial to a child, derived from the movement ledger (a consumption into an order and a receipt from the same order) or from a serial''s lot. Written only by the ledger trigger; a reversal ends a link (unlinked_at) rather than deleting it, so the genealogy can be read as it stood at any moment.';
COMMENT ON COLUMN plantsync.genealogy_link.id IS 'Link number.';
COMMENT ON COLUMN plantsync.genealogy_link.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.genealogy_link.parent_kind IS 'lot or serial.';
COMMENT ON COLUMN plantsync.genealogy_link.parent_id IS 'The input: a lot or serial id.';
COMMENT ON COLUMN plantsync.genealogy_link.parent_number IS 'Lot or serial number of the input.';
COMMENT ON COLUMN plantsync.genealogy_link.parent_material_id IS 'Material of the input.';
COMMENT ON COLUMN plantsync.genealogy_link.child_kind IS 'lot or serial.';
COMMENT ON COLUMN plantsync.genealogy_link.child_id IS 'The output: a lot or serial id.';
COMMENT ON COLUMN plantsync.genealogy_link.child_number IS 'Lot or serial number of the output.';
COMMENT ON COLUMN plantsync.genealogy_link.child_material_id IS 'Material of the output.';
COMMENT ON COLUMN plantsync.genealogy_link.link_type IS 'consumed_into (the input was consumed by the order that produced the output), contains (a lot and one of its serials) or split_into (a lot and a lot split from it).';
COMMENT ON COLUMN plantsync.genealogy_link.order_id IS 'Production order of a consumed_into link.';
COMMENT ON COLUMN plantsync.genealogy_link.quantity IS 'Quantity of the input consumed (base unit); NULL for contains.';
COMMENT ON COLUMN plantsync.genealogy_link.uom IS 'Unit of quantity (the input material''s base unit).';
COMMENT ON COLUMN plantsync.genealogy_link.linked_at IS 'When the link came to be: the later of the consumption and the receipt (posting times).';
COMMENT ON COLUMN plantsync.genealogy_link.unlinked_at IS 'When a reversal of the consumption or the receipt ended it; NULL while it stands.';
COMMENT ON COLUMN plantsync.genealogy_link.consumption_movement_id IS 'The consumption movement.';
COMMENT ON COLUMN plantsync.genealogy_link.receipt_movement_id IS 'The production receipt movement.';

-- The link table is derived: only the trigger below writes it.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON plantsync.genealogy_link FROM PUBLIC;

CREATE FUNCTION plantsync.genealogy_from_movement() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    orig plantsync.material_movement;
BEGIN
    IF NEW.movement_type = 'reversal' THEN
        SELECT * INTO orig FROM plantsync.material_movement WHERE id = NEW.reverses_movement_id;
        IF orig.movement_type = 'consumption' THEN
            UPDATE plantsync.genealogy_link SET unlinked_at = greatest(NEW.posted_at, linked_at)
             WHERE consumption_movement_id = orig.id AND unlinked_at IS NULL;
        ELSIF orig.movement_type IN ('production_receipt', 'lot_split') THEN
            UPDATE plantsync.genealogy_link SET unlinked_at = greatest(NEW.posted_at, linked_at)
             WHERE receipt_movement_id = orig.id AND unlinked_at IS NULL;
        END IF;
        RETURN NULL;
    END IF;
    -- the receiving half of a split links the lot it was split from
    IF NEW.movement_type = 'lot_split' THEN
        INSERT INTO plantsync.genealogy_link
            (site_id, parent_kind, parent_id, parent_number, parent_material_id,
             child_kind, child_id, child_number, child_material_id, link_type, quantity, uom, linked_at, receipt_movement_id)
        SELECT NEW.site_id, 'lot', p.id, p.lot_number, p.material_id, 'lot', c.id, c.lot_number, c.material_id, 'split_into',
               NEW.base_quantity, m.base_uom, NEW.posted_at, NEW.id
          FROM plantsync.lot c
          JOIN plantsync.lot p ON p.id = c.parent_lot_id
          JOIN plantsync.material m ON m.id = c.material_id
         WHERE c.id = NEW.lot_id AND NEW.to_location_id IS NOT NULL;
        RETURN NULL;
    END IF;
    IF NEW.order_id IS NULL OR (NEW.lot_id IS NULL AND NEW.serial_id IS NULL) THEN
        RETURN NULL;
    END IF;

    -- A consumption links the input to every output the order has produced
    -- so far; a receipt links every input consumed so far to the output.
    -- Movements already reversed link nothing.
    INSERT INTO plantsync.genealogy_link
        (site_id, parent_kind, parent_id, parent_number, parent_material_id,
         child_kind, child_id, child_number, child_material_id, link_type, order_id, quantity, uom,
         linked_at, consumption_movement_id, receipt_movement_id)
    SELECT c.site_id,
           CASE WHEN c.serial_id IS NOT NULL THEN 'serial' ELSE 'lot' END,
           COALESCE(c.serial_id, c.lot_id), COALESCE(cs.serial_number, cl.lot_number), c.material_id,
           CASE WHEN r.serial_id IS NOT NULL THEN 'serial' ELSE 'lot' END,
           COALESCE(r.serial_id, r.lot_id), COALESCE(rs.serial_number, rl.lot_number), r.material_id,
           'consumed_into', c.order_id, c.base_quantity, m.base_uom,
           greatest(c.posted_at, r.posted_at), c.id, r.id
      FROM plantsync.material_movement c
      JOIN plantsync.material_movement r
        ON r.order_id = c.order_id AND r.movement_type = 'production_receipt'
       AND (r.lot_id IS NOT NULL OR r.serial_id IS NOT NULL)
      JOIN plantsync.material m ON m.id = c.material_id
      LEFT JOIN plantsync.lot cl ON cl.id = c.lot_id
      LEFT JOIN plantsync.serial cs ON cs.id = c.serial_id
      LEFT JOIN plantsync.lot rl ON rl.id = r.lot_id
      LEFT JOIN plantsync.serial rs ON rs.id = r.serial_id
     WHERE c.order_id = NEW.order_id AND c.movement_type = 'consumption'
       AND (c.lot_id IS NOT NULL OR c.serial_id IS NOT NULL)
       AND CASE WHEN NEW.movement_type = 'consumption' THEN c.id = NEW.id ELSE r.id = NEW.id END
       AND COALESCE(c.serial_id, c.lot_id) <> COALESCE(r.serial_id, r.lot_id)
       AND NOT EXISTS (SELECT 1 FROM plantsync.material_movement x WHERE x.reverses_movement_id IN (c.id, r.id));
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION plantsync.genealogy_from_movement() IS
'Trigger function on the movement ledger: derives genealogy links from consumptions and production receipts of the same order and from lot splits, and ends them when a movement they come from is reversed.';

REVOKE EXECUTE ON FUNCTION plantsync.genealogy_from_movement() FROM PUBLIC;

CREATE TRIGGER plantsync_genealogy AFTER INSERT ON plantsync.material_movement
    FOR EACH ROW
    WHEN (NEW.movement_type IN ('consumption', 'production_receipt', 'reversal', 'lot_split'))
    EXECUTE FUNCTION plantsync.genealogy_from_movement();

CREATE FUNCTION plantsync.genealogy_from_serial() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO plantsync.genealogy_link
        (site_id, parent_kind, parent_id, parent_number, parent_material_id,
         child_kind, child_id, child_number, child_material_id, link_type, linked_at)
    SELECT NEW.site_id, 'lot', l.id, l.lot_number, l.material_id,
           'serial', NEW.id, NEW.serial_number, NEW.material_id, 'contains', NEW.created_at
      FROM plantsync.lot l WHERE l.id = NEW.lot_id;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION plantsync.genealogy_from_serial() IS
'Trigger function on serials: a serial that belongs to a lot is linked to it (contains).';

REVOKE EXECUTE ON FUNCTION plantsync.genealogy_from_serial() FROM PUBLIC;

CREATE TRIGGER plantsync_genealogy AFTER INSERT ON plantsync.serial
    FOR EACH ROW
    WHEN (NEW.lot_id IS NOT NULL)
    EXECUTE FUNCTION plantsync.genealogy_from_serial();

CREATE FUNCTION plantsync.trace_backward(p_node_id uuid, p_max_depth integer DEFAULT 100, p_as_of timestamptz DEFAULT NULL)
RETURNS TABLE (node_kind text, node_id uuid, node_number text, material_id uuid, depth integer, path uuid[],
               quantity numeric, uom text, order_id uuid, linked_at timestamptz)
AS 'MODULE_PATHNAME', 'plantsync_trace_backward'
LANGUAGE C STABLE;
COMMENT ON FUNCTION plantsync.trace_backward(uuid, integer, timestamptz) IS
'Where did this lot or serial come from: every input reachable backwards through the genealogy, once each at its smallest depth, with one shortest path (from the start to the input), the quantity of the input consumed on the last link of that path and its order. p_max_depth limits the depth; p_as_of reads the genealogy as it stood at that moment (default: now). Cycles are harmless.';

CREATE FUNCTION plantsync.trace_forward(p_node_id uuid, p_max_depth integer DEFAULT 100, p_as_of timestamptz DEFAULT NULL)
RETURNS TABLE (node_kind text, node_id uuid, node_number text, material_id uuid, depth integer, path uuid[],
               quantity numeric, uom text, order_id uuid, linked_at timestamptz)
AS 'MODULE_PATHNAME', 'plantsync_trace_forward'
LANGUAGE C STABLE;
COMMENT ON FUNCTION plantsync.trace_forward(uuid, integer, timestamptz) IS
'Where did this lot or serial go: every output reachable forwards through the genealogy, once each at its smallest depth, with one shortest path (from the start to the output), the quantity consumed on the last link of that path and its order. p_max_depth limits the depth; p_as_of reads the genealogy as it stood at that moment (default: now). Cycles are harmless.';

CREATE FUNCTION plantsync.trace_json(p_node_id uuid, p_direction text DEFAULT 'backward', p_max_depth integer DEFAULT 100,
                                     p_as_of timestamptz DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result jsonb;
BEGIN
    IF p_direction = 'backward' THEN
        SELECT COALESCE(jsonb_agg(to_jsonb(t) ORDER BY t.depth, t.node_number), '[]') INTO result
          FROM plantsync.trace_backward(p_node_id, p_max_depth, p_as_of) t;
    ELSIF p_direction = 'forward' THEN
        SELECT COALESCE(jsonb_agg(to_jsonb(t) ORDER BY t.depth, t.node_number), '[]') INTO result
          FROM plantsync.trace_forward(p_node_id, p_max_depth, p_as_of) t;
    ELSE
        RAISE EXCEPTION 'direction "%" is not valid', p_direction
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use backward or forward.';
    END IF;
    RETURN jsonb_build_object('node_id', p_node_id, 'direction', p_direction, 'as_of', COALESCE(p_as_of, now()),
                              'max_depth', p_max_depth, 'nodes', result);
END
$$;
COMMENT ON FUNCTION plantsync.trace_json(uuid, text, integer, timestamptz) IS
'A backward or forward trace as one JSON document for APIs: {node_id, direction, as_of, max_depth, nodes: [...]}, nodes ordered by depth and number.';

CREATE FUNCTION plantsync.recall_scope(p_lot_id uuid, p_max_depth integer DEFAULT 100, p_as_of timestamptz DEFAULT NULL)
RETURNS TABLE (category text, object_id uuid, object_number text, material_id uuid, quantity numeric, uom text,
               depth integer, detail jsonb)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM plantsync.lot l WHERE l.id = p_lot_id)
       AND NOT EXISTS (SELECT 1 FROM plantsync.serial s WHERE s.id = p_lot_id) THEN
        RAISE EXCEPTION 'lot or serial "%" does not exist', p_lot_id
            USING ERRCODE = 'no_data_found', HINT = 'Pass the id of a lot or serial (plantsync.lot.id, plantsync.serial.id).';
    END IF;
    RETURN QUERY
    WITH affected AS (
        SELECT t.node_kind, t.node_id, t.node_number, t.material_id, t.depth
          FROM plantsync.trace_forward(p_lot_id, p_max_depth, p_as_of) t
        UNION ALL
        SELECT CASE WHEN EXISTS (SELECT 1 FROM plantsync.serial s WHERE s.id = p_lot_id) THEN 'serial' ELSE 'lot' END,
               p_lot_id, NULL, NULL, 0
    ), lots AS (
        SELECT a.node_id, a.depth FROM affected a WHERE a.node_kind = 'lot'
    ), serials AS (
        SELECT a.node_id, a.depth FROM affected a WHERE a.node_kind = 'serial'
    ), stock AS (
        SELECT legs.lot_id, legs.serial_id, legs.material_id, legs.location_id, sum(legs.q) AS on_hand
          FROM (SELECT mv.lot_id, mv.serial_id, mv.material_id, mv.to_location_id AS location_id, mv.base_quantity AS q
                  FROM plantsync.material_movement mv
                 WHERE mv.to_location_id IS NOT NULL AND mv.posted_at <= COALESCE(p_as_of, now())
                   AND (mv.lot_id IN (SELECT node_id FROM lots) OR mv.serial_id IN (SELECT node_id FROM serials))
                UNION ALL
                SELECT mv.lot_id, mv.serial_id, mv.material_id, mv.from_location_id, -mv.base_quantity
                  FROM plantsync.material_movement mv
                 WHERE mv.from_location_id IS NOT NULL AND mv.posted_at <= COALESCE(p_as_of, now())
                   AND (mv.lot_id IN (SELECT node_id FROM lots) OR mv.serial_id IN (SELECT node_id FROM serials))) AS legs
         GROUP BY 1, 2, 3, 4
    )
    -- affected lots and serials, finished ones marked
    SELECT CASE WHEN a.depth = 0 THEN 'suspect_' WHEN m.material_type = 'finished' THEN 'finished_'
                ELSE 'intermediate_' END || a.node_kind,
           a.node_id, COALESCE(l.lot_number, s.serial_number), COALESCE(l.material_id, s.material_id),
           NULL::numeric, m.base_uom, a.depth,
           jsonb_build_object('material_number', m.material_number, 'disposition', COALESCE(l.disposition, s.disposition))
      FROM affected a
      LEFT JOIN plantsync.lot l ON a.node_kind = 'lot' AND l.id = a.node_id
      LEFT JOIN plantsync.serial s ON a.node_kind = 'serial' AND s.id = a.node_id
      JOIN plantsync.material m ON m.id = COALESCE(l.material_id, s.material_id)
    UNION ALL
    -- shipments that carried them, with the customer
    SELECT 'shipment', sh.id, sh.shipment_number, sl.material_id, sum(sl.quantity), min(sl.uom), min(a.depth),
           jsonb_build_object('customer_code', sh.customer_code, 'customer_name', sh.customer_name, 'status', sh.status,
                              'shipped_at', sh.shipped_at)
      FROM plantsync.shipment_line sl
      JOIN plantsync.shipment sh ON sh.id = sl.shipment_id
      JOIN affected a ON a.node_id = sl.lot_id OR a.node_id = sl.serial_id
     WHERE sh.status <> 'cancelled'
     GROUP BY sh.id, sh.shipment_number, sl.material_id, sh.customer_code, sh.customer_name, sh.status, sh.shipped_at
    UNION ALL
    SELECT 'customer', NULL, sh.customer_code, NULL, NULL, NULL, min(a.depth),
           jsonb_build_object('customer_name', min(sh.customer_name), 'shipments', count(DISTINCT sh.id))
      FROM plantsync.shipment_line sl
      JOIN plantsync.shipment sh ON sh.id = sl.shipment_id
      JOIN affected a ON a.node_id = sl.lot_id OR a.node_id = sl.serial_id
     WHERE sh.status <> 'cancelled'
     GROUP BY sh.customer_code
    UNION ALL
    -- open orders that consumed them: their output is at risk too
    SELECT 'open_order', o.id, o.order_number, o.material_id, sum(mv.base_quantity), min(m.base_uom), min(a.depth),
           jsonb_build_object('status', o.status)
      FROM plantsync.material_movement mv
      JOIN affected a ON a.node_id = COALESCE(mv.serial_id, mv.lot_id)
      JOIN plantsync.production_order o ON o.id = mv.order_id
      JOIN plantsync.material m ON m.id = mv.material_id
     WHERE mv.movement_type = 'consumption' AND o.status NOT IN ('completed', 'closed', 'cancelled')
       AND NOT EXISTS (SELECT 1 FROM plantsync.material_movement rv WHERE rv.reverses_movement_id = mv.id)
     GROUP BY o.id, o.order_number, o.material_id, o.status
    UNION ALL
    -- stock still on hand, per location
    SELECT 'stock', COALESCE(st.serial_id, st.lot_id), COALESCE(s.serial_number, l.lot_number), st.material_id,
           st.on_hand, m.base_uom, NULL::integer,
           jsonb_build_object('storage_location_id', st.location_id, 'location_code', loc.location_code,
                              'stock_type', CASE COALESCE(l.disposition, s.disposition)
                                                WHEN 'restricted' THEN 'quality' WHEN 'blocked' THEN 'blocked'
                                                WHEN 'rejected' THEN 'blocked' ELSE 'unrestricted' END)
      FROM stock st
      JOIN plantsync.material m ON m.id = st.material_id
      LEFT JOIN plantsync.lot l ON l.id = st.lot_id
      LEFT JOIN plantsync.serial s ON s.id = st.serial_id
      LEFT JOIN plantsync.storage_location loc ON loc.id = st.location_id
     WHERE st.on_hand > 0;
END
$$;
COMMENT ON FUNCTION plantsync.recall_scope(uuid, integer, timestamptz) IS
'Recall scope of a suspect lot or serial: every lot and serial it went into (finished_lot, intermediate_lot, finished_serial, intermediate_serial, and suspect_lot or suspect_serial at depth 0), the shipments that carried any of them and their customers, the open orders that consumed them, and the stock still on hand per location, with quantities in base units. Built on plantsync.trace_forward.';
