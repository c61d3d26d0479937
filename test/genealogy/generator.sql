-- test/genealogy/generator.sql: builds genealogies for the tests and the
-- benchmark, and the straightforward recursive-CTE traces the C traces are
-- compared with. Creates schema plantsync_test (include it inside the
-- test's transaction, or drop the schema afterwards).
--
--   plantsync_test.generate_genealogy(seed, site, ...)  through the ledger:
--       real consumptions and production receipts of real orders, so the
--       links are derived by the ledger trigger (multi-level BOMs, batch
--       splits, merges into existing lots, rework cycles, serials, reversals);
--   plantsync_test.generate_link_graph(seed, site, lots, ...)  straight into
--       the link table, for graphs of millions of links (benchmark);
--   plantsync_test.ref_forward / ref_backward(id, max_depth, as_of)  the
--       reference: every path by a recursive CTE, then the smallest depth
--       of each node.

CREATE SCHEMA plantsync_test;

CREATE FUNCTION plantsync_test.generate_genealogy(
    p_seed float8, p_site text, p_raw integer DEFAULT 40, p_levels integer DEFAULT 4,
    p_orders_per_level integer DEFAULT 25, p_inputs integer DEFAULT 3, p_outputs integer DEFAULT 3,
    p_cycles integer DEFAULT 2, p_reversals integer DEFAULT 3)
RETURNS TABLE (lots integer, orders integer, movements integer, links bigint, first_posting timestamptz,
               last_posting timestamptz)
LANGUAGE plpgsql
AS $$
DECLARE
    t0 constant timestamptz := '2026-01-01 00:00+00';
    tick integer := 0;
    loc uuid;
    mat uuid[];
    lots_by_level jsonb := '{}';
    o uuid;
    lot uuid;
    input uuid;
    n_out integer;
    n_lots integer := 0;
    n_orders integer := 0;
    n_mov integer := 0;
    candidates uuid[];
    k integer;
    j integer;
    i integer;
    mv uuid;
BEGIN
    PERFORM setseed(p_seed);
    PERFORM set_config('plantsync.source_system', 'hub', true);
    INSERT INTO plantsync.site (site_id, name) VALUES (p_site, 'Genealogy ' || p_site);
    INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES (p_site, 'WH', 'Store') RETURNING id INTO loc;
    PERFORM set_config('plantsync.source_system', 'erp', true);
    FOR k IN 0 .. p_levels LOOP
        INSERT INTO plantsync.material (site_id, material_number, description, material_type, base_uom)
        VALUES (p_site, 'M' || k, 'Level ' || k,
                CASE WHEN k = 0 THEN 'raw' WHEN k = p_levels THEN 'finished' ELSE 'semi_finished' END, 'KG')
        RETURNING id INTO o;
        mat := mat || o;
    END LOOP;

    PERFORM set_config('plantsync.source_system', 'mes', true);
    -- raw lots, received
    FOR i IN 1 .. p_raw LOOP
        INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
        VALUES (p_site, mat[1], p_site || '-L0-' || i, 'unrestricted') RETURNING id INTO lot;
        tick := tick + 1;
        INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id,
                                                 source_system, external_id, posted_at)
        VALUES (p_site, 'goods_receipt', mat[1], lot, 1000, 'KG', loc, 'mes', p_site || '-GR-' || i, t0 + tick * interval '1 minute');
        n_mov := n_mov + 1;
        lots_by_level := jsonb_set(lots_by_level, ARRAY['0'], COALESCE(lots_by_level -> '0', '[]') || to_jsonb(lot::text));
        n_lots := n_lots + 1;
    END LOOP;

    FOR k IN 1 .. p_levels LOOP
        FOR j IN 1 .. p_orders_per_level LOOP
            PERFORM set_config('plantsync.source_system', 'erp', true);
            INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
            VALUES (p_site, p_site || '-O' || k || '-' || j, mat[k + 1], 100, 'KG', 'released', '2027-01-01') RETURNING id INTO o;
            n_orders := n_orders + 1;
            PERFORM set_config('plantsync.source_system', 'mes', true);
            -- outputs first for some orders, inputs first for the others: the
            -- links must not depend on the order of posting
            n_out := 1 + floor(random() * p_outputs)::integer;
            IF random() < 0.3 THEN
                PERFORM plantsync_test.receive(p_site, o, mat[k + 1], loc, k, n_out, lots_by_level, tick);
                tick := tick + n_out;
            END IF;
            -- inputs: mostly the level below, sometimes any level below (a
            -- multi-level BOM)
            FOR i IN 1 .. 1 + floor(random() * p_inputs)::integer LOOP
                DECLARE
                    from_level integer := CASE WHEN random() < 0.8 THEN k - 1 ELSE floor(random() * k)::integer END;
                BEGIN
                    SELECT array_agg(x::uuid) INTO candidates FROM jsonb_array_elements_text(lots_by_level -> from_level::text) x;
                    CONTINUE WHEN candidates IS NULL;
                    input := candidates[1 + floor(random() * array_length(candidates, 1))::integer];
                    tick := tick + 1;
                    INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom,
                                                             from_location_id, order_id, source_system, external_id, posted_at)
                    VALUES (p_site, 'consumption', mat[from_level + 1], input, 1 + floor(random() * 50), 'KG', loc, o, 'mes',
                            p_site || '-C-' || k || '-' || j || '-' || i, t0 + tick * interval '1 minute');
                    n_mov := n_mov + 1;
                END;
            END LOOP;
            IF NOT EXISTS (SELECT 1 FROM plantsync.material_movement WHERE order_id = o AND movement_type = 'production_receipt') THEN
                PERFORM plantsync_test.receive(p_site, o, mat[k + 1], loc, k, n_out, lots_by_level, tick);
                tick := tick + n_out;
            END IF;
            -- the new lots of this order become candidates for the levels above
            SELECT lots_by_level || jsonb_build_object(k::text, COALESCE(lots_by_level -> k::text, '[]') || COALESCE(jsonb_agg(DISTINCT m.lot_id::text), '[]'))
              INTO lots_by_level
              FROM plantsync.material_movement m WHERE m.order_id = o AND m.movement_type = 'production_receipt';
        END LOOP;
    END LOOP;
    SELECT count(*) INTO n_lots FROM plantsync.lot WHERE site_id = p_site;

    -- rework cycles: a finished lot consumed back into a lower-level lot
    FOR i IN 1 .. p_cycles LOOP
        SELECT array_agg(x::uuid) INTO candidates FROM jsonb_array_elements_text(lots_by_level -> p_levels::text) x;
        input := candidates[1 + floor(random() * array_length(candidates, 1))::integer];
        SELECT array_agg(x::uuid) INTO candidates FROM jsonb_array_elements_text(lots_by_level -> '1') x;
        lot := candidates[1 + floor(random() * array_length(candidates, 1))::integer];
        PERFORM set_config('plantsync.source_system', 'erp', true);
        INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
        VALUES (p_site, p_site || '-RW-' || i, mat[2], 10, 'KG', 'released', '2027-01-01') RETURNING id INTO o;
        PERFORM set_config('plantsync.source_system', 'mes', true);
        tick := tick + 1;
        INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom,
                                                 from_location_id, order_id, source_system, external_id, posted_at)
        VALUES (p_site, 'consumption', mat[p_levels + 1], input, 5, 'KG', loc, o, 'mes', p_site || '-RWC-' || i, t0 + tick * interval '1 minute');
        tick := tick + 1;
        INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom,
                                                 to_location_id, order_id, source_system, external_id, posted_at)
        VALUES (p_site, 'production_receipt', mat[2], lot, 5, 'KG', loc, o, 'mes', p_site || '-RWR-' || i, t0 + tick * interval '1 minute');
        n_orders := n_orders + 1;
        n_mov := n_mov + 2;
    END LOOP;

    -- reversals of some consumptions, later: their links end
    FOR mv IN SELECT m.id FROM plantsync.material_movement m
               WHERE m.site_id = p_site AND m.movement_type = 'consumption' ORDER BY m.external_id LIMIT p_reversals LOOP
        tick := tick + 1;
        INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, reverses_movement_id,
                                                 source_system, external_id, posted_at)
        SELECT p_site, 'reversal', m.material_id, m.lot_id, m.quantity, m.uom, m.id, 'mes', m.external_id || '-REV',
               t0 + tick * interval '1 minute'
          FROM plantsync.material_movement m WHERE m.id = mv;
        n_mov := n_mov + 1;
    END LOOP;

    -- devices: some finished lots go into serialized units (lot- and
    -- serial-tracked), each unit a serial in a device lot
    PERFORM set_config('plantsync.source_system', 'erp', true);
    INSERT INTO plantsync.material (site_id, material_number, description, material_type, base_uom, serial_tracked)
    VALUES (p_site, 'DEV', 'Device', 'finished', 'EA', true) RETURNING id INTO o;
    mat := mat || o;
    i := 0;
    FOR input IN SELECT x::uuid FROM jsonb_array_elements_text(lots_by_level -> p_levels::text) x LIMIT 5 LOOP
        i := i + 1;
        PERFORM set_config('plantsync.source_system', 'erp', true);
        INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
        VALUES (p_site, p_site || '-DEV-' || i, mat[p_levels + 2], 2, 'EA', 'released', '2027-01-01') RETURNING id INTO o;
        PERFORM set_config('plantsync.source_system', 'mes', true);
        INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
        VALUES (p_site, mat[p_levels + 2], p_site || '-DL-' || i, 'unrestricted') RETURNING id INTO lot;
        tick := tick + 1;
        INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom,
                                                 from_location_id, order_id, source_system, external_id, posted_at)
        VALUES (p_site, 'consumption', mat[p_levels + 1], input, 2, 'KG', loc, o, 'mes', p_site || '-DC-' || i, t0 + tick * interval '1 minute');
        FOR j IN 1 .. 2 LOOP
            INSERT INTO plantsync.serial (site_id, material_id, serial_number, lot_id)
            VALUES (p_site, mat[p_levels + 2], p_site || '-SN-' || i || '-' || j, lot) RETURNING id INTO mv;
            tick := tick + 1;
            INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, serial_id, quantity, uom,
                                                     to_location_id, order_id, source_system, external_id, posted_at)
            VALUES (p_site, 'production_receipt', mat[p_levels + 2], lot, mv, 1, 'EA', loc, o, 'mes',
                    p_site || '-DR-' || i || '-' || j, t0 + tick * interval '1 minute');
        END LOOP;
        n_orders := n_orders + 1;
        n_mov := n_mov + 3;
    END LOOP;

    RETURN QUERY SELECT n_lots, n_orders, n_mov, (SELECT count(*) FROM plantsync.genealogy_link WHERE site_id = p_site),
                        t0, t0 + tick * interval '1 minute';
END
$$;

-- Production receipts of an order: new lots (a batch split into several),
-- or now and then into a lot of the same level that exists already (a merge).
CREATE FUNCTION plantsync_test.receive(p_site text, p_order uuid, p_material uuid, p_loc uuid, p_level integer,
                                       p_count integer, p_lots_by_level jsonb, p_tick integer)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    lot uuid;
    existing uuid[];
    n integer;
BEGIN
    SELECT array_agg(x::uuid) INTO existing FROM jsonb_array_elements_text(p_lots_by_level -> p_level::text) x;
    FOR n IN 1 .. p_count LOOP
        IF existing IS NOT NULL AND random() < 0.1 THEN
            lot := existing[1 + floor(random() * array_length(existing, 1))::integer];
        ELSE
            INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
            VALUES (p_site, p_material, (SELECT order_number FROM plantsync.production_order WHERE id = p_order) || '-' || n, 'unrestricted')
            RETURNING id INTO lot;
        END IF;
        INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom,
                                                 to_location_id, order_id, source_system, external_id, posted_at)
        VALUES (p_site, 'production_receipt', p_material, lot, 10 + floor(random() * 40), 'KG', p_loc, p_order, 'mes',
                (SELECT order_number FROM plantsync.production_order WHERE id = p_order) || '-R-' || n,
                '2026-01-01 00:00+00'::timestamptz + (p_tick + n) * interval '1 minute');
    END LOOP;
END
$$;

-- A large genealogy straight into the link table (no ledger rows), shaped
-- like a plant's: few raw lots, more intermediates, many finished lots (a
-- bulk batch is split into many finished lots), so one raw lot feeds
-- thousands of finished lots. Production runs in campaigns: a lot's inputs
-- are mostly neighbours in the level below (lots made around the same
-- time), so ancestries reconverge, as they do in plants. p_level_sizes gives
-- the lots per level (raw first); each lot above the raw level has p_fanin
-- inputs: 80% from a window of p_window lots of the level below around its
-- position, the rest from anywhere in any level below. Run with
-- session_replication_role = replica to skip the plant's triggers.
CREATE FUNCTION plantsync_test.generate_link_graph(p_seed float8, p_site text, p_level_sizes integer[], p_fanin integer,
                                                   p_window integer DEFAULT 16, p_random_ids boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    levels integer := array_length(p_level_sizes, 1) - 1;
    n bigint;
BEGIN
    PERFORM setseed(p_seed);
    INSERT INTO plantsync.site (site_id, name) VALUES (p_site, 'Genealogy ' || p_site);
    INSERT INTO plantsync.material (site_id, material_number, description, material_type, base_uom)
    SELECT p_site, 'M' || k, 'Level ' || k, CASE WHEN k = 0 THEN 'raw' WHEN k = levels THEN 'finished' ELSE 'semi_finished' END, 'KG'
      FROM generate_series(0, levels) k;
    CREATE TEMP TABLE gen_lot ON COMMIT DROP AS
    -- ids made now are time-ordered (UUIDv7); random ones (p_random_ids)
    -- stand for lots whose ids came from elsewhere
    SELECT CASE WHEN p_random_ids THEN gen_random_uuid() ELSE plantsync.uuid_v7() END AS id, k AS level, i, p_site || '-L' || k || '-' || i AS lot_number,
           (SELECT id FROM plantsync.material WHERE site_id = p_site AND material_number = 'M' || k) AS material_id
      FROM generate_series(0, levels) k, generate_series(1, p_level_sizes[k + 1]) i;
    CREATE INDEX ON gen_lot (level, i);
    INSERT INTO plantsync.lot (id, site_id, material_id, lot_number, disposition)
    SELECT id, p_site, material_id, lot_number, 'unrestricted' FROM gen_lot;
    INSERT INTO plantsync.genealogy_link (site_id, parent_kind, parent_id, parent_number, parent_material_id,
                                          child_kind, child_id, child_number, child_material_id, link_type,
                                          quantity, uom, linked_at)
    SELECT DISTINCT ON (p.id, c.id)
           p_site, 'lot', p.id, p.lot_number, p.material_id, 'lot', c.id, c.lot_number, c.material_id, 'consumed_into',
           1 + (c.i % 50), 'KG', '2026-01-01 00:00+00'::timestamptz + c.i * interval '1 second'
      FROM gen_lot c
      CROSS JOIN LATERAL (
            SELECT x.lvl,
                   CASE WHEN x.near THEN
                            (((c.i - 1)::bigint * p_level_sizes[x.lvl + 1] / p_level_sizes[c.level + 1]
                              + floor(random() * p_window)::integer - p_window / 2) % p_level_sizes[x.lvl + 1]
                             + p_level_sizes[x.lvl + 1]) % p_level_sizes[x.lvl + 1] + 1
                        ELSE 1 + floor(random() * p_level_sizes[x.lvl + 1])::integer END AS pick
              FROM (SELECT r < 0.8 OR c.level = 1 AS near,
                           CASE WHEN r < 0.8 OR c.level = 1 THEN c.level - 1 ELSE floor(random() * (c.level - 1))::integer END AS lvl
                      FROM (SELECT random() AS r FROM generate_series(1, p_fanin) f WHERE c.level > 0) rr) x) pk
      JOIN gen_lot p ON p.level = pk.lvl AND p.i = pk.pick;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

CREATE FUNCTION plantsync_test.ref_forward(p_id uuid, p_max_depth integer DEFAULT 100, p_as_of timestamptz DEFAULT NULL)
RETURNS TABLE (node_id uuid, depth integer)
LANGUAGE sql STABLE
AS $$
    WITH RECURSIVE t (node, depth, path) AS (
        SELECT p_id, 0, ARRAY[p_id]
        UNION ALL
        SELECT l.child_id, t.depth + 1, t.path || l.child_id
          FROM t JOIN plantsync.genealogy_link l ON l.parent_id = t.node
         WHERE t.depth < p_max_depth AND NOT l.child_id = ANY (t.path)
           AND CASE WHEN p_as_of IS NULL THEN l.unlinked_at IS NULL
                    ELSE l.linked_at <= p_as_of AND (l.unlinked_at IS NULL OR l.unlinked_at > p_as_of) END
    )
    SELECT node, min(depth) FROM t WHERE node <> p_id GROUP BY node
$$;

CREATE FUNCTION plantsync_test.ref_backward(p_id uuid, p_max_depth integer DEFAULT 100, p_as_of timestamptz DEFAULT NULL)
RETURNS TABLE (node_id uuid, depth integer)
LANGUAGE sql STABLE
AS $$
    WITH RECURSIVE t (node, depth, path) AS (
        SELECT p_id, 0, ARRAY[p_id]
        UNION ALL
        SELECT l.parent_id, t.depth + 1, t.path || l.parent_id
          FROM t JOIN plantsync.genealogy_link l ON l.child_id = t.node
         WHERE t.depth < p_max_depth AND NOT l.parent_id = ANY (t.path)
           AND CASE WHEN p_as_of IS NULL THEN l.unlinked_at IS NULL
                    ELSE l.linked_at <= p_as_of AND (l.unlinked_at IS NULL OR l.unlinked_at > p_as_of) END
    )
    SELECT node, min(depth) FROM t WHERE node <> p_id GROUP BY node
$$;
