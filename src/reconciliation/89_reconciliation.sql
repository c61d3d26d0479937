-- Reconciliation: the plant's truth against the ERP's. ERP snapshots
-- (inventory, orders, postings) are loaded as data; reconcile functions
-- compare them with the ledger and the orders as of the snapshot's time and
-- classify every difference; discrepancies are an entity with a state
-- machine, so their life (found, remediating, resolved) goes through the
-- outbox like every other change, and remediations are on record.

CREATE TABLE plantsync.erp_snapshot (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    kind text NOT NULL
        CONSTRAINT erp_snapshot_kind_check CHECK (kind IN ('inventory', 'orders', 'postings')),
    taken_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    source text NOT NULL DEFAULT 'api',
    row_count integer NOT NULL DEFAULT 0,
    loaded_by name NOT NULL DEFAULT current_user
);
CREATE INDEX erp_snapshot_site_kind_idx ON plantsync.erp_snapshot (site_id, kind, taken_at);
COMMENT ON TABLE plantsync.erp_snapshot IS 'An ERP snapshot: what the ERP said at one moment about a plant''s inventory, orders or postings (loaded with plantsync.load_erp_snapshot()).';
COMMENT ON COLUMN plantsync.erp_snapshot.id IS 'Snapshot id.';
COMMENT ON COLUMN plantsync.erp_snapshot.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.erp_snapshot.kind IS 'inventory, orders or postings.';
COMMENT ON COLUMN plantsync.erp_snapshot.taken_at IS 'When the ERP took it: the plant side is compared as of this moment.';
COMMENT ON COLUMN plantsync.erp_snapshot.received_at IS 'When it was loaded.';
COMMENT ON COLUMN plantsync.erp_snapshot.source IS 'Where it came from (api: pushed by the ERP or an adapter; or the name of a pull job).';
COMMENT ON COLUMN plantsync.erp_snapshot.row_count IS 'Rows in the snapshot.';
COMMENT ON COLUMN plantsync.erp_snapshot.loaded_by IS 'Role that loaded it.';

CREATE TABLE plantsync.erp_inventory (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    snapshot_id uuid NOT NULL REFERENCES plantsync.erp_snapshot ON DELETE CASCADE,
    material_number text NOT NULL,
    lot_number text,
    location_code text NOT NULL,
    stock_type text NOT NULL
        CONSTRAINT erp_inventory_stock_type_check CHECK (stock_type IN ('unrestricted', 'quality', 'blocked')),
    quantity numeric NOT NULL,
    uom text NOT NULL,
    material_id uuid,
    lot_id uuid,
    storage_location_id uuid,
    base_quantity numeric
);
CREATE INDEX erp_inventory_snapshot_idx ON plantsync.erp_inventory (snapshot_id);
COMMENT ON TABLE plantsync.erp_inventory IS 'Inventory rows of ERP snapshots, in the ERP''s codes, with the plant''s ids where the codes are known.';
COMMENT ON COLUMN plantsync.erp_inventory.id IS 'Row number.';
COMMENT ON COLUMN plantsync.erp_inventory.snapshot_id IS 'Snapshot.';
COMMENT ON COLUMN plantsync.erp_inventory.material_number IS 'Material number as the ERP has it.';
COMMENT ON COLUMN plantsync.erp_inventory.lot_number IS 'Batch (lot) number; NULL for materials not lot-tracked.';
COMMENT ON COLUMN plantsync.erp_inventory.location_code IS 'Storage location code.';
COMMENT ON COLUMN plantsync.erp_inventory.stock_type IS 'ERP stock type: unrestricted, quality (inspection) or blocked.';
COMMENT ON COLUMN plantsync.erp_inventory.quantity IS 'Quantity in uom.';
COMMENT ON COLUMN plantsync.erp_inventory.uom IS 'Unit of quantity.';
COMMENT ON COLUMN plantsync.erp_inventory.material_id IS 'The plant''s material; NULL when the plant does not know the number.';
COMMENT ON COLUMN plantsync.erp_inventory.lot_id IS 'The plant''s lot; NULL when unknown (or no lot).';
COMMENT ON COLUMN plantsync.erp_inventory.storage_location_id IS 'The plant''s storage location; NULL when unknown.';
COMMENT ON COLUMN plantsync.erp_inventory.base_quantity IS 'Quantity in the material''s base unit (NULL when the material is unknown).';

-- The snapshot summed per material, lot and location when it is loaded, so
-- that a reconciliation compares two tables of one row per key.
CREATE TABLE plantsync.erp_stock (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    snapshot_id uuid NOT NULL REFERENCES plantsync.erp_snapshot ON DELETE CASCADE,
    material_id uuid NOT NULL,
    lot_id uuid,
    storage_location_id uuid NOT NULL,
    base_quantity numeric NOT NULL,
    stock_type_min text,
    stock_type_max text
);
CREATE INDEX erp_stock_snapshot_idx ON plantsync.erp_stock (snapshot_id);
COMMENT ON TABLE plantsync.erp_stock IS 'ERP inventory snapshots summed per material, lot and location (rows whose codes the plant knows), written by plantsync.load_erp_snapshot; what plantsync.reconcile_inventory compares with plantsync.stock_balance.';
COMMENT ON COLUMN plantsync.erp_stock.id IS 'Row number.';
COMMENT ON COLUMN plantsync.erp_stock.snapshot_id IS 'Snapshot.';
COMMENT ON COLUMN plantsync.erp_stock.material_id IS 'The plant''s material.';
COMMENT ON COLUMN plantsync.erp_stock.lot_id IS 'The plant''s lot; NULL for materials not lot-tracked.';
COMMENT ON COLUMN plantsync.erp_stock.storage_location_id IS 'The plant''s storage location.';
COMMENT ON COLUMN plantsync.erp_stock.base_quantity IS 'Sum of the rows in the base unit.';
COMMENT ON COLUMN plantsync.erp_stock.stock_type_min IS 'Lowest stock type (alphabetically) among the rows with a quantity: with stock_type_max, whether the ERP holds it in one stock type.';
COMMENT ON COLUMN plantsync.erp_stock.stock_type_max IS 'Highest stock type among the rows with a quantity.';

CREATE TABLE plantsync.erp_order (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    snapshot_id uuid NOT NULL REFERENCES plantsync.erp_snapshot ON DELETE CASCADE,
    order_number text NOT NULL,
    status text NOT NULL,
    quantity numeric NOT NULL,
    confirmed_quantity numeric NOT NULL DEFAULT 0,
    uom text NOT NULL,
    order_id uuid
);
CREATE INDEX erp_order_snapshot_idx ON plantsync.erp_order (snapshot_id);
COMMENT ON TABLE plantsync.erp_order IS 'Production orders of ERP snapshots (status in the canonical vocabulary of plantsync.state, as the dialect or adapter maps it).';
COMMENT ON COLUMN plantsync.erp_order.id IS 'Row number.';
COMMENT ON COLUMN plantsync.erp_order.snapshot_id IS 'Snapshot.';
COMMENT ON COLUMN plantsync.erp_order.order_number IS 'Order number.';
COMMENT ON COLUMN plantsync.erp_order.status IS 'Order status (draft, released, in_progress, completed, closed, cancelled...).';
COMMENT ON COLUMN plantsync.erp_order.quantity IS 'Order quantity.';
COMMENT ON COLUMN plantsync.erp_order.confirmed_quantity IS 'Yield the ERP has received confirmations for.';
COMMENT ON COLUMN plantsync.erp_order.uom IS 'Unit of the quantities.';
COMMENT ON COLUMN plantsync.erp_order.order_id IS 'The plant''s order; NULL when the plant does not know the number.';

CREATE TABLE plantsync.erp_posting (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    snapshot_id uuid NOT NULL REFERENCES plantsync.erp_snapshot ON DELETE CASCADE,
    reference text NOT NULL,
    document_number text,
    posted_at timestamptz
);
CREATE INDEX erp_posting_snapshot_idx ON plantsync.erp_posting (snapshot_id, reference);
COMMENT ON TABLE plantsync.erp_posting IS 'Postings the ERP has, from ERP snapshots: the plant''s reference (a movement''s external id) and the ERP document.';
COMMENT ON COLUMN plantsync.erp_posting.id IS 'Row number.';
COMMENT ON COLUMN plantsync.erp_posting.snapshot_id IS 'Snapshot.';
COMMENT ON COLUMN plantsync.erp_posting.reference IS 'The plant''s reference the ERP document carries (movement external id).';
COMMENT ON COLUMN plantsync.erp_posting.document_number IS 'ERP document number (material document, Stock Entry).';
COMMENT ON COLUMN plantsync.erp_posting.posted_at IS 'When the ERP posted it.';

CREATE TABLE plantsync.reconciliation_tolerance (
    uom text PRIMARY KEY REFERENCES plantsync.uom,
    absolute numeric NOT NULL DEFAULT 0
        CONSTRAINT reconciliation_tolerance_absolute_check CHECK (absolute >= 0),
    relative numeric NOT NULL DEFAULT 0
        CONSTRAINT reconciliation_tolerance_relative_check CHECK (relative >= 0 AND relative < 1)
);
COMMENT ON TABLE plantsync.reconciliation_tolerance IS 'How far plant and ERP quantities may differ, per base unit, before it is a quantity mismatch: the larger of absolute and relative x the larger quantity. Units not listed: exact.';
COMMENT ON COLUMN plantsync.reconciliation_tolerance.uom IS 'Base unit.';
COMMENT ON COLUMN plantsync.reconciliation_tolerance.absolute IS 'Absolute tolerance in the unit.';
COMMENT ON COLUMN plantsync.reconciliation_tolerance.relative IS 'Relative tolerance (0.001 = 0.1 %).';

CREATE TABLE plantsync.reconciliation_run (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    kind text NOT NULL
        CONSTRAINT reconciliation_run_kind_check CHECK (kind IN ('inventory', 'orders', 'postings')),
    snapshot_id uuid NOT NULL REFERENCES plantsync.erp_snapshot,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    outcome text NOT NULL DEFAULT 'running'
        CONSTRAINT reconciliation_run_outcome_check CHECK (outcome IN ('running', 'compared', 'stale_snapshot')),
    compared integer NOT NULL DEFAULT 0,
    matched integer NOT NULL DEFAULT 0,
    discrepancies integer NOT NULL DEFAULT 0,
    resolved_since integer NOT NULL DEFAULT 0,
    run_by name NOT NULL DEFAULT current_user
);
CREATE INDEX reconciliation_run_site_idx ON plantsync.reconciliation_run (site_id, kind, started_at);
COMMENT ON TABLE plantsync.reconciliation_run IS 'One comparison of the plant with an ERP snapshot: what was compared, how much matched, how many discrepancies it found and how many earlier ones it no longer found.';
COMMENT ON COLUMN plantsync.reconciliation_run.id IS 'Run id.';
COMMENT ON COLUMN plantsync.reconciliation_run.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.reconciliation_run.kind IS 'inventory, orders or postings.';
COMMENT ON COLUMN plantsync.reconciliation_run.snapshot_id IS 'ERP snapshot compared with.';
COMMENT ON COLUMN plantsync.reconciliation_run.started_at IS 'Start.';
COMMENT ON COLUMN plantsync.reconciliation_run.finished_at IS 'End.';
COMMENT ON COLUMN plantsync.reconciliation_run.outcome IS 'compared, or stale_snapshot (too old to compare; nothing else was done).';
COMMENT ON COLUMN plantsync.reconciliation_run.compared IS 'Keys compared (inventory: material, lot, location; orders: order; postings: movement).';
COMMENT ON COLUMN plantsync.reconciliation_run.matched IS 'Keys that agreed.';
COMMENT ON COLUMN plantsync.reconciliation_run.discrepancies IS 'Discrepancies found.';
COMMENT ON COLUMN plantsync.reconciliation_run.resolved_since IS 'Open discrepancies of earlier runs this run no longer found (resolved by it).';
COMMENT ON COLUMN plantsync.reconciliation_run.run_by IS 'Role that ran it.';

CREATE TABLE plantsync.discrepancy (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    run_id uuid NOT NULL REFERENCES plantsync.reconciliation_run,
    scope text NOT NULL
        CONSTRAINT discrepancy_scope_check CHECK (scope IN ('inventory', 'orders', 'postings')),
    kind text NOT NULL
        CONSTRAINT discrepancy_kind_check CHECK (kind IN ('missing_in_erp', 'missing_in_plant', 'quantity_mismatch',
                                                          'status_mismatch', 'posting_not_acknowledged', 'stale_snapshot')),
    subject_key text NOT NULL,
    status text NOT NULL DEFAULT 'open',
    material_id uuid,
    lot_id uuid,
    storage_location_id uuid,
    order_id uuid,
    plant_quantity numeric,
    erp_quantity numeric,
    uom text,
    plant_status text,
    erp_status text,
    detail jsonb NOT NULL DEFAULT '{}',
    remediation text NOT NULL
        CONSTRAINT discrepancy_remediation_check CHECK (remediation IN ('replay_delivery', 'post_correction', 'ask_person', 'reload_snapshot')),
    found_at timestamptz NOT NULL DEFAULT now(),
    remediated_at timestamptz,
    remediated_by name,
    remediation_note text,
    resolved_at timestamptz,
    resolution text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX discrepancy_open_idx ON plantsync.discrepancy (site_id, scope, subject_key, kind) WHERE status IN ('open', 'remediating');
CREATE INDEX discrepancy_run_idx ON plantsync.discrepancy (run_id);
COMMENT ON TABLE plantsync.discrepancy IS 'A difference between the plant and the ERP, classified, with a suggested remediation. Its status follows the discrepancy state machine (open, remediating, resolved, ignored); each change is an event in the outbox.';
COMMENT ON COLUMN plantsync.discrepancy.id IS 'Discrepancy id.';
COMMENT ON COLUMN plantsync.discrepancy.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.discrepancy.run_id IS 'Run that found it.';
COMMENT ON COLUMN plantsync.discrepancy.scope IS 'inventory, orders or postings.';
COMMENT ON COLUMN plantsync.discrepancy.kind IS 'missing_in_erp, missing_in_plant, quantity_mismatch (beyond the unit''s tolerance), status_mismatch (e.g. blocked in the plant, unrestricted in the ERP), posting_not_acknowledged (a movement the ERP never got or never posted) or stale_snapshot.';
COMMENT ON COLUMN plantsync.discrepancy.subject_key IS 'What differs, as a stable key (e.g. material/lot/location numbers), so later runs find the same discrepancy again.';
COMMENT ON COLUMN plantsync.discrepancy.status IS 'open, remediating, resolved or ignored.';
COMMENT ON COLUMN plantsync.discrepancy.material_id IS 'Material, when known to the plant.';
COMMENT ON COLUMN plantsync.discrepancy.lot_id IS 'Lot, when known to the plant.';
COMMENT ON COLUMN plantsync.discrepancy.storage_location_id IS 'Storage location, when known to the plant.';
COMMENT ON COLUMN plantsync.discrepancy.order_id IS 'Production order, when known to the plant.';
COMMENT ON COLUMN plantsync.discrepancy.plant_quantity IS 'The plant''s quantity (base unit).';
COMMENT ON COLUMN plantsync.discrepancy.erp_quantity IS 'The ERP''s quantity (base unit).';
COMMENT ON COLUMN plantsync.discrepancy.uom IS 'Unit of both quantities.';
COMMENT ON COLUMN plantsync.discrepancy.plant_status IS 'The plant''s stock type or order status.';
COMMENT ON COLUMN plantsync.discrepancy.erp_status IS 'The ERP''s stock type or order status.';
COMMENT ON COLUMN plantsync.discrepancy.detail IS 'Codes, the deliveries concerned, the correction to post.';
COMMENT ON COLUMN plantsync.discrepancy.remediation IS 'Suggested remediation: replay_delivery (the ERP never got it), post_correction (post the difference to the ERP), ask_person (someone has to look: count the stock, check the order), reload_snapshot.';
COMMENT ON COLUMN plantsync.discrepancy.found_at IS 'When it was found.';
COMMENT ON COLUMN plantsync.discrepancy.remediated_at IS 'When a remediation was applied.';
COMMENT ON COLUMN plantsync.discrepancy.remediated_by IS 'Role that applied it.';
COMMENT ON COLUMN plantsync.discrepancy.remediation_note IS 'The reason given with the remediation.';
COMMENT ON COLUMN plantsync.discrepancy.resolved_at IS 'When it was resolved or ignored.';
COMMENT ON COLUMN plantsync.discrepancy.resolution IS 'How (a person''s note, or the run that no longer found it).';
COMMENT ON COLUMN plantsync.discrepancy.updated_at IS 'Last change.';

-- The discrepancy is a canonical entity of the hub: guarded, with history
-- and events (installed with the other entities' triggers).
INSERT INTO plantsync.state_machine (machine, description) VALUES
    ('discrepancy', 'Plant-versus-ERP discrepancy: found, being remediated, resolved or ignored.');
INSERT INTO plantsync.state (machine, state, is_initial, is_final, description) VALUES
    ('discrepancy', 'open', true, false, 'Found by a reconciliation run.'),
    ('discrepancy', 'remediating', false, false, 'A remediation was applied; waiting for the next run to confirm.'),
    ('discrepancy', 'resolved', false, true, 'No longer found, or resolved by a person.'),
    ('discrepancy', 'ignored', false, true, 'Accepted as is, with a reason.');
INSERT INTO plantsync.state_transition (machine, from_state, to_state, owner_system, description) VALUES
    ('discrepancy', 'open', 'remediating', NULL, 'A remediation is applied.'),
    ('discrepancy', 'open', 'resolved', NULL, 'Resolved (by a person, or no longer found).'),
    ('discrepancy', 'open', 'ignored', NULL, 'Accepted as is.'),
    ('discrepancy', 'remediating', 'resolved', NULL, 'The remediation worked.'),
    ('discrepancy', 'remediating', 'open', NULL, 'The remediation did not work.'),
    ('discrepancy', 'remediating', 'ignored', NULL, 'Accepted as is.');
INSERT INTO plantsync.entity (entity, owner_system, key_column, state_column, machine, append_only, description) VALUES
    ('discrepancy', 'hub', 'subject_key', 'status', 'discrepancy', false, 'Reconciliation discrepancies.');
INSERT INTO plantsync.event_source (entity, emit_insert, aggregate_columns, aggregate_types, order_column, lot_column, line_column) VALUES
    ('discrepancy', NULL, '{id}', '{discrepancy}', 'order_id', 'lot_id', NULL);

-- Snapshots: only the hub writes them, through the functions below.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON plantsync.erp_snapshot, plantsync.erp_inventory, plantsync.erp_order,
    plantsync.erp_posting, plantsync.reconciliation_run FROM PUBLIC;

CREATE FUNCTION plantsync.load_erp_snapshot(p_site_id text, p_kind text, p_taken_at timestamptz, p_rows jsonb,
                                            p_source text DEFAULT 'api')
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    snap uuid;
    bad record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM plantsync.site WHERE site_id = p_site_id) THEN
        RAISE EXCEPTION 'site "%" does not exist', p_site_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF p_kind IS NULL OR p_kind NOT IN ('inventory', 'orders', 'postings') THEN
        RAISE EXCEPTION 'snapshot kind "%" is not valid', p_kind
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use inventory, orders or postings.';
    END IF;
    IF p_taken_at IS NULL OR p_taken_at > now() + interval '5 minutes' THEN
        RAISE EXCEPTION 'p_taken_at must be the time the ERP took the snapshot, not %', COALESCE(p_taken_at::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'A snapshot from the future means the clocks disagree.';
    END IF;
    IF p_rows IS NULL OR jsonb_typeof(p_rows) <> 'array' THEN
        RAISE EXCEPTION 'p_rows must be a JSON array of rows, not %', COALESCE(jsonb_typeof(p_rows), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    INSERT INTO plantsync.erp_snapshot (site_id, kind, taken_at, source) VALUES (p_site_id, p_kind, p_taken_at, p_source)
    RETURNING id INTO snap;

    IF p_kind = 'inventory' THEN
        -- the first row that lacks a field or has a bad one is named
        SELECT r.ord, r.v INTO bad FROM jsonb_array_elements(p_rows) WITH ORDINALITY r (v, ord)
         WHERE jsonb_typeof(r.v) <> 'object' OR r.v ->> 'material' IS NULL OR r.v ->> 'location' IS NULL
            OR r.v ->> 'quantity' IS NULL OR r.v ->> 'uom' IS NULL
            OR COALESCE(r.v ->> 'stock_type', 'unrestricted') NOT IN ('unrestricted', 'quality', 'blocked')
            OR jsonb_typeof(r.v -> 'quantity') <> 'number'
         ORDER BY r.ord LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'inventory row % is not valid: %', bad.ord, bad.v
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Each row needs material, location, quantity (a number) and uom; lot and stock_type (unrestricted, quality or blocked; default unrestricted) are optional.';
        END IF;
        -- codes resolved to the plant's ids as the rows go in, quantities
        -- converted to the base unit (a function call only where it differs)
        INSERT INTO plantsync.erp_inventory (snapshot_id, material_number, lot_number, location_code, stock_type, quantity, uom,
                                             material_id, lot_id, storage_location_id, base_quantity)
        SELECT snap, r.material, r.lot, r.location, COALESCE(r.stock_type, 'unrestricted'), r.quantity, r.uom,
               m.id, l.id, s.id,
               CASE WHEN m.id IS NULL THEN NULL
                    WHEN r.uom = m.base_uom THEN r.quantity
                    ELSE plantsync.to_base_quantity(m.id, r.quantity, r.uom) END
          FROM jsonb_to_recordset(p_rows) AS r (material text, lot text, location text, stock_type text, quantity numeric, uom text)
          LEFT JOIN plantsync.material m ON m.site_id = p_site_id AND m.material_number = r.material
          LEFT JOIN plantsync.lot l ON l.site_id = p_site_id AND l.material_id = m.id AND l.lot_number = r.lot
          LEFT JOIN plantsync.storage_location s ON s.site_id = p_site_id AND s.location_code = r.location;
        INSERT INTO plantsync.erp_stock (snapshot_id, material_id, lot_id, storage_location_id, base_quantity, stock_type_min, stock_type_max)
        SELECT snap, i.material_id, i.lot_id, i.storage_location_id, sum(i.base_quantity),
               min(i.stock_type) FILTER (WHERE i.base_quantity <> 0), max(i.stock_type) FILTER (WHERE i.base_quantity <> 0)
          FROM plantsync.erp_inventory i
         WHERE i.snapshot_id = snap AND i.material_id IS NOT NULL AND i.storage_location_id IS NOT NULL
           AND (i.lot_number IS NULL OR i.lot_id IS NOT NULL)
         GROUP BY i.material_id, i.lot_id, i.storage_location_id;
    ELSIF p_kind = 'orders' THEN
        SELECT r.ord, r.v INTO bad FROM jsonb_array_elements(p_rows) WITH ORDINALITY r (v, ord)
         WHERE jsonb_typeof(r.v) <> 'object' OR r.v ->> 'order' IS NULL OR r.v ->> 'status' IS NULL
            OR jsonb_typeof(r.v -> 'quantity') IS DISTINCT FROM 'number' OR r.v ->> 'uom' IS NULL
            OR (r.v ? 'confirmed_quantity' AND jsonb_typeof(r.v -> 'confirmed_quantity') <> 'number')
         ORDER BY r.ord LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'order row % is not valid: %', bad.ord, bad.v
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Each row needs order, status, quantity (a number) and uom; confirmed_quantity is optional.';
        END IF;
        INSERT INTO plantsync.erp_order (snapshot_id, order_number, status, quantity, confirmed_quantity, uom, order_id)
        SELECT snap, r.order, r.status, r.quantity, COALESCE(r.confirmed_quantity, 0), r.uom, o.id
          FROM jsonb_to_recordset(p_rows) AS r ("order" text, status text, quantity numeric, confirmed_quantity numeric, uom text)
          LEFT JOIN plantsync.production_order o ON o.site_id = p_site_id AND o.order_number = r.order;
    ELSE
        SELECT r.ord, r.v INTO bad FROM jsonb_array_elements(p_rows) WITH ORDINALITY r (v, ord)
         WHERE jsonb_typeof(r.v) <> 'object' OR r.v ->> 'reference' IS NULL
         ORDER BY r.ord LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'posting row % is not valid: %', bad.ord, bad.v
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Each row needs reference (the movement''s external id); document and posted_at are optional.';
        END IF;
        INSERT INTO plantsync.erp_posting (snapshot_id, reference, document_number, posted_at)
        SELECT snap, r.reference, r.document, r.posted_at
          FROM jsonb_to_recordset(p_rows) AS r (reference text, document text, posted_at timestamptz);
    END IF;
    UPDATE plantsync.erp_snapshot SET row_count = jsonb_array_length(p_rows) WHERE id = snap;
    RETURN snap;
END
$$;
COMMENT ON FUNCTION plantsync.load_erp_snapshot(text, text, timestamptz, jsonb, text) IS
'Loads an ERP snapshot for a plant: kind inventory (rows {material, lot, location, stock_type, quantity, uom}), orders ({order, status, quantity, confirmed_quantity, uom}) or postings ({reference, document, posted_at}), taken at p_taken_at. Codes are resolved to the plant''s ids where known; a row that cannot be read is refused with its number. Returns the snapshot id.';

-- Opens the discrepancies a run found (those found open already by an
-- earlier run are kept, not duplicated) and resolves the earlier open ones
-- the run no longer found. Returns (found, resolved).
CREATE FUNCTION plantsync.record_discrepancies(p_run_id uuid, p_resolve boolean)
RETURNS TABLE (n_found integer, n_resolved integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plantsync.source_system = 'hub'
AS $$
DECLARE
    run plantsync.reconciliation_run;
    outer_reason text;
BEGIN
    SELECT * INTO run FROM plantsync.reconciliation_run WHERE id = p_run_id;
    -- thousands of rows at times: the anti-joins below must know it
    ANALYZE pg_temp.plantsync_found;
    INSERT INTO plantsync.discrepancy (site_id, run_id, scope, kind, subject_key, material_id, lot_id, storage_location_id,
                                       order_id, plant_quantity, erp_quantity, uom, plant_status, erp_status, detail, remediation)
    -- (one subject found twice in a run, e.g. a movement sent to two ERP
    -- endpoints, is one discrepancy)
    SELECT DISTINCT ON (f.kind, f.subject_key)
           run.site_id, p_run_id, run.kind, f.kind, f.subject_key, f.material_id, f.lot_id, f.storage_location_id, f.order_id,
           f.plant_quantity, f.erp_quantity, f.uom, f.plant_status, f.erp_status, f.detail, f.remediation
      FROM pg_temp.plantsync_found f
     WHERE NOT EXISTS (SELECT 1 FROM plantsync.discrepancy d
                        WHERE d.site_id = run.site_id AND d.scope = run.kind AND d.subject_key = f.subject_key AND d.kind = f.kind
                          AND d.status IN ('open', 'remediating'));
    GET DIAGNOSTICS n_found = ROW_COUNT;
    n_found := n_found + (SELECT count(DISTINCT (f.kind, f.subject_key)) FROM pg_temp.plantsync_found f
                       WHERE EXISTS (SELECT 1 FROM plantsync.discrepancy d
                                      WHERE d.site_id = run.site_id AND d.scope = run.kind AND d.subject_key = f.subject_key
                                        AND d.kind = f.kind AND d.status IN ('open', 'remediating') AND d.run_id <> p_run_id));
    -- (a run that did not compare, the snapshot being stale, resolves nothing)
    UPDATE plantsync.discrepancy d
       SET status = 'resolved', resolved_at = now(), resolution = format('no longer found by run %s', p_run_id)
     WHERE p_resolve AND d.site_id = run.site_id AND d.scope = run.kind AND d.status IN ('open', 'remediating') AND d.run_id <> p_run_id
       AND NOT EXISTS (SELECT 1 FROM pg_temp.plantsync_found f WHERE f.subject_key = d.subject_key AND f.kind = d.kind);
    GET DIAGNOSTICS n_resolved = ROW_COUNT;
    outer_reason := current_setting('plantsync.change_reason', true);
    -- a remediation that did not work: the difference is still there in a
    -- snapshot taken after it was applied, so the discrepancy is open again
    -- (one taken before cannot show it yet)
    PERFORM set_config('plantsync.change_reason', format('still found by run %s after the remediation', p_run_id), true);
    UPDATE plantsync.discrepancy d SET status = 'open'
     WHERE p_resolve AND d.site_id = run.site_id AND d.scope = run.kind AND d.status = 'remediating'
       AND d.remediated_at <= (SELECT s.taken_at FROM plantsync.erp_snapshot s WHERE s.id = run.snapshot_id)
       AND EXISTS (SELECT 1 FROM pg_temp.plantsync_found f WHERE f.subject_key = d.subject_key AND f.kind = d.kind);
    PERFORM set_config('plantsync.change_reason', COALESCE(outer_reason, ''), true);
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION plantsync.record_discrepancies(uuid, boolean) IS 'Used by the reconcile functions: records what a run found and resolves what it no longer finds.';

-- The run skeleton every reconcile function shares: the snapshot (the
-- latest of its kind by default), the run row, the stale check.
CREATE FUNCTION plantsync.start_run(p_site_id text, p_kind text, p_snapshot_id uuid, p_max_age interval,
                                    OUT run_id uuid, OUT snapshot plantsync.erp_snapshot, OUT stale boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_max_age IS NULL OR p_max_age <= interval '0' THEN
        RAISE EXCEPTION 'p_max_age must be positive, not %', COALESCE(p_max_age::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_snapshot_id IS NULL THEN
        SELECT * INTO snapshot FROM plantsync.erp_snapshot s WHERE s.site_id = p_site_id AND s.kind = p_kind
         ORDER BY s.taken_at DESC, s.received_at DESC LIMIT 1;
    ELSE
        SELECT * INTO snapshot FROM plantsync.erp_snapshot s WHERE s.id = p_snapshot_id;
        IF FOUND AND (snapshot.site_id <> p_site_id OR snapshot.kind <> p_kind) THEN
            RAISE EXCEPTION 'snapshot "%" is a % snapshot of site "%", not a % snapshot of site "%"',
                p_snapshot_id, snapshot.kind, snapshot.site_id, p_kind, p_site_id USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    IF snapshot.id IS NULL THEN
        RAISE EXCEPTION 'no % snapshot of site "%"%', p_kind, p_site_id,
            CASE WHEN p_snapshot_id IS NOT NULL THEN format(' with id "%s"', p_snapshot_id) ELSE '' END
            USING ERRCODE = 'no_data_found', HINT = 'Load one with plantsync.load_erp_snapshot().';
    END IF;
    -- one run of a kind for a site at a time: two at once each recorded
    -- what the other had not committed yet, so every difference twice
    PERFORM pg_advisory_xact_lock(hashtext('plantsync.reconcile'), hashtext(p_site_id || '/' || p_kind));
    INSERT INTO plantsync.reconciliation_run (site_id, kind, snapshot_id) VALUES (p_site_id, p_kind, snapshot.id) RETURNING id INTO run_id;
    stale := snapshot.taken_at < now() - p_max_age;
    IF to_regclass('pg_temp.plantsync_found') IS NOT NULL THEN
        DROP TABLE pg_temp.plantsync_found;
    END IF;
    CREATE TEMP TABLE plantsync_found (
        kind text, subject_key text, material_id uuid, lot_id uuid, storage_location_id uuid, order_id uuid,
        plant_quantity numeric, erp_quantity numeric, uom text, plant_status text, erp_status text,
        detail jsonb, remediation text) ON COMMIT DROP;
    IF stale THEN
        INSERT INTO pg_temp.plantsync_found (kind, subject_key, detail, remediation)
        VALUES ('stale_snapshot', p_kind, jsonb_build_object('snapshot_id', snapshot.id, 'taken_at', snapshot.taken_at,
                                                             'max_age', p_max_age), 'reload_snapshot');
    END IF;
END
$$;
COMMENT ON FUNCTION plantsync.start_run(text, text, uuid, interval) IS 'Used by the reconcile functions: picks the snapshot, opens the run and says whether the snapshot is too old to compare.';

CREATE FUNCTION plantsync.finish_run(p_run_id uuid, p_compared integer, p_stale boolean)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    n_found integer := (SELECT count(*) FROM pg_temp.plantsync_found);
BEGIN
    SELECT * INTO r FROM plantsync.record_discrepancies(p_run_id, NOT p_stale);
    UPDATE plantsync.reconciliation_run
       SET finished_at = clock_timestamp(), outcome = CASE WHEN p_stale THEN 'stale_snapshot' ELSE 'compared' END,
           compared = p_compared, matched = CASE WHEN p_stale THEN 0 ELSE p_compared - n_found END,
           discrepancies = r.n_found, resolved_since = r.n_resolved
     WHERE id = p_run_id;
    DROP TABLE pg_temp.plantsync_found;
    RETURN p_run_id;
END
$$;
COMMENT ON FUNCTION plantsync.finish_run(uuid, integer, boolean) IS 'Used by the reconcile functions: records the discrepancies and closes the run.';

CREATE FUNCTION plantsync.reconcile_inventory(p_site_id text, p_snapshot_id uuid DEFAULT NULL, p_max_age interval DEFAULT '1 day')
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- a million keys on each side: hash them in memory rather than sort them,
-- and never spend a second compiling what runs once
SET work_mem = '256MB'
SET enable_mergejoin = off
SET jit = off
AS $$
DECLARE
    s record;
    compared integer := 0;
    differences jsonb;
BEGIN
    SELECT * INTO s FROM plantsync.start_run(p_site_id, 'inventory', p_snapshot_id, p_max_age);
    IF NOT s.stale THEN
        -- movements to ERP endpoints that never got through, by lot: they
        -- explain a difference (replay them) rather than call for a correction
        CREATE TEMP TABLE plantsync_undelivered ON COMMIT DROP AS
        SELECT (ev.data ->> 'material_id')::uuid AS material_id, (ev.data ->> 'lot_id')::uuid AS lot_id,
               array_agg(d.id ORDER BY d.created_at) AS deliveries
          FROM plantsync.delivery d
          JOIN plantsync.endpoint e ON e.endpoint_id = d.endpoint_id AND e.system_code = 'erp'
          JOIN plantsync.event ev ON ev.id = d.event_id AND ev.recorded_at = d.event_recorded_at
         WHERE d.status = 'dead' AND ev.entity = 'material_movement' AND ev.site_id = p_site_id
         GROUP BY 1, 2;

        -- the plant's stock at the snapshot's time: the balance less what
        -- was posted after it; compared key by key on ids, names looked up
        -- for the differences only
        CREATE TEMP TABLE plantsync_late ON COMMIT DROP AS
        SELECT legs.material_id, legs.lot_id, legs.location_id, sum(legs.q) AS q
          FROM (SELECT mv.material_id, mv.lot_id, mv.to_location_id AS location_id, mv.base_quantity AS q
                  FROM plantsync.material_movement mv
                 WHERE mv.site_id = p_site_id AND mv.to_location_id IS NOT NULL AND mv.posted_at > (s.snapshot).taken_at
                UNION ALL
                SELECT mv.material_id, mv.lot_id, mv.from_location_id, -mv.base_quantity
                  FROM plantsync.material_movement mv
                 WHERE mv.site_id = p_site_id AND mv.from_location_id IS NOT NULL AND mv.posted_at > (s.snapshot).taken_at) legs
         GROUP BY 1, 2, 3;
        -- usually empty or small: the planner must know, to hash it and not the balance
        ANALYZE pg_temp.plantsync_late;
        WITH late AS (
            SELECT * FROM pg_temp.plantsync_late
        ), plant AS (
            SELECT b.material_id, b.lot_id, b.storage_location_id AS location_id, b.base_quantity - COALESCE(a.q, 0) AS qty
              FROM plantsync.stock_balance b
              LEFT JOIN late a ON a.material_id = b.material_id AND a.location_id = b.storage_location_id
                              AND a.lot_id IS NOT DISTINCT FROM b.lot_id
             WHERE b.site_id = p_site_id
            UNION ALL
            -- stock that left after the snapshot from keys the balance no longer has
            SELECT a.material_id, a.lot_id, a.location_id, -a.q
              FROM late a
             WHERE NOT EXISTS (SELECT 1 FROM plantsync.stock_balance b
                                WHERE b.site_id = p_site_id AND b.material_id = a.material_id AND b.storage_location_id = a.location_id
                                  AND b.lot_id IS NOT DISTINCT FROM a.lot_id)
        ), held AS MATERIALIZED (
            -- lots whose stock is not unrestricted: few, so the disposition of
            -- the others need not be read
            SELECT l.id, CASE l.disposition WHEN 'restricted' THEN 'quality' ELSE 'blocked' END AS stock_type
              FROM plantsync.lot l
             WHERE l.site_id = p_site_id AND l.disposition IN ('restricted', 'blocked', 'rejected')
        ), cmp AS (
            SELECT COALESCE(p.material_id, e.material_id) AS material_id, COALESCE(p.lot_id, e.lot_id) AS lot_id,
                   COALESCE(p.location_id, e.storage_location_id) AS location_id, NULLIF(p.qty, 0) AS plant_qty, e.base_quantity AS erp_qty,
                   e.stock_type_min AS erp_stock_type, e.stock_type_max AS erp_stock_type_max
              FROM (SELECT * FROM plant WHERE qty <> 0) p
              FULL JOIN (SELECT * FROM plantsync.erp_stock WHERE snapshot_id = (s.snapshot).id) e
                ON e.material_id = p.material_id AND e.storage_location_id = p.location_id
               AND COALESCE(e.lot_id, '00000000-0000-0000-0000-000000000000') = COALESCE(p.lot_id, '00000000-0000-0000-0000-000000000000')
        )
        -- a key whose quantities agree, held nowhere in the ERP and not held in
        -- the plant, matches: only the others (a percent, typically) are
        -- looked at more closely
        SELECT count(*),
               jsonb_agg(jsonb_build_object('material_id', c.material_id, 'lot_id', c.lot_id, 'location_id', c.location_id,
                                            'plant_qty', c.plant_qty, 'erp_qty', c.erp_qty, 'erp_status', c.erp_stock_type,
                                            'erp_status_max', c.erp_stock_type_max,
                                            'plant_status', COALESCE(h.stock_type, 'unrestricted')))
                   FILTER (WHERE c.plant_qty IS DISTINCT FROM c.erp_qty OR c.erp_stock_type <> 'unrestricted'
                                 OR c.erp_stock_type_max <> 'unrestricted' OR h.id IS NOT NULL)
          INTO compared, differences
          FROM cmp c
          LEFT JOIN held h ON h.id = c.lot_id;

        -- the candidates classified (the unit's tolerance) and named
        INSERT INTO pg_temp.plantsync_found (kind, subject_key, material_id, lot_id, storage_location_id, plant_quantity,
                                             erp_quantity, uom, plant_status, erp_status, detail, remediation)
        SELECT k.kind, concat_ws('/', m.material_number, l.lot_number, loc.location_code), f.material_id, f.lot_id, f.location_id,
               f.plant_qty, f.erp_qty, m.base_uom, f.plant_status, f.erp_status,
               jsonb_strip_nulls(jsonb_build_object('material', m.material_number, 'lot', l.lot_number, 'location', loc.location_code,
                                                    'difference', COALESCE(f.plant_qty, 0) - COALESCE(f.erp_qty, 0),
                                                    'dead_deliveries', u.deliveries)),
               CASE WHEN u.deliveries IS NOT NULL AND k.kind IN ('missing_in_erp', 'quantity_mismatch') THEN 'replay_delivery'
                    WHEN k.kind = 'missing_in_plant' THEN 'ask_person'
                    ELSE 'post_correction' END
          FROM jsonb_to_recordset(COALESCE(differences, '[]')) AS f (material_id uuid, lot_id uuid, location_id uuid, plant_qty numeric,
                                                                     erp_qty numeric, erp_status text, erp_status_max text, plant_status text)
          JOIN plantsync.material m ON m.id = f.material_id
          JOIN plantsync.storage_location loc ON loc.id = f.location_id
          LEFT JOIN plantsync.lot l ON l.id = f.lot_id
          LEFT JOIN plantsync.reconciliation_tolerance t ON t.uom = m.base_uom
          LEFT JOIN pg_temp.plantsync_undelivered u ON u.material_id = f.material_id AND u.lot_id IS NOT DISTINCT FROM f.lot_id
          CROSS JOIN LATERAL (SELECT CASE
                WHEN f.plant_qty IS NULL AND f.erp_qty = 0 THEN NULL
                WHEN f.plant_qty IS NULL THEN 'missing_in_plant'
                WHEN f.erp_qty IS NULL OR f.erp_qty = 0 THEN 'missing_in_erp'
                WHEN abs(f.plant_qty - f.erp_qty) > greatest(COALESCE(t.absolute, 0),
                                                           COALESCE(t.relative, 0) * greatest(abs(f.plant_qty), abs(f.erp_qty))) THEN 'quantity_mismatch'
                WHEN f.erp_status <> f.plant_status OR f.erp_status_max <> f.plant_status THEN 'status_mismatch'
                END AS kind) k
         WHERE k.kind IS NOT NULL;

        -- rows the plant cannot place at all: an unknown material, lot or location
        INSERT INTO pg_temp.plantsync_found (kind, subject_key, material_id, erp_quantity, uom, erp_status, detail, remediation)
        SELECT 'missing_in_plant', concat_ws('/', i.material_number, i.lot_number, i.location_code), i.material_id,
               sum(i.base_quantity), min(i.uom), min(i.stock_type),
               jsonb_strip_nulls(jsonb_build_object('material', i.material_number, 'lot', i.lot_number, 'location', i.location_code,
                                                    'unknown', concat_ws(', ', CASE WHEN i.material_id IS NULL THEN 'material' END,
                                                                         CASE WHEN i.lot_number IS NOT NULL AND i.lot_id IS NULL THEN 'lot' END,
                                                                         CASE WHEN i.storage_location_id IS NULL THEN 'location' END),
                                                    'quantity', sum(i.quantity))),
               'ask_person'
          FROM plantsync.erp_inventory i
         WHERE i.snapshot_id = (s.snapshot).id
           AND (i.material_id IS NULL OR i.storage_location_id IS NULL OR (i.lot_number IS NOT NULL AND i.lot_id IS NULL))
         GROUP BY i.material_number, i.lot_number, i.location_code, i.material_id, i.lot_id, i.storage_location_id;
        compared := compared + (SELECT count(*) FROM pg_temp.plantsync_found WHERE detail ? 'unknown');
        DROP TABLE pg_temp.plantsync_undelivered;
        DROP TABLE pg_temp.plantsync_late;
    END IF;
    RETURN plantsync.finish_run(s.run_id, compared, s.stale);
END
$$;
COMMENT ON FUNCTION plantsync.reconcile_inventory(text, uuid, interval) IS
'Compares the plant''s stock (from the movement ledger, as of the snapshot''s time, per material, lot and location; stock type from the lot''s disposition) with an ERP inventory snapshot (default: the latest) and records a run with its discrepancies: missing_in_erp, missing_in_plant, quantity_mismatch (beyond the unit''s tolerance), status_mismatch, or stale_snapshot when the snapshot is older than p_max_age. Returns the run id.';

-- An ERP's quantity in the material's base unit, or NULL when its unit
-- does not convert (the difference is then reported, not the run refused).
CREATE FUNCTION plantsync.erp_base_quantity(p_material_id uuid, p_quantity numeric, p_uom text)
RETURNS numeric
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN plantsync.to_base_quantity(p_material_id, p_quantity, p_uom);
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION plantsync.erp_base_quantity(uuid, numeric, text) IS 'Used by plantsync.reconcile_orders: an ERP quantity in the material''s base unit, NULL when its unit does not convert.';

CREATE FUNCTION plantsync.reconcile_orders(p_site_id text, p_snapshot_id uuid DEFAULT NULL, p_max_age interval DEFAULT '1 day')
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    compared integer := 0;
BEGIN
    SELECT * INTO s FROM plantsync.start_run(p_site_id, 'orders', p_snapshot_id, p_max_age);
    IF NOT s.stale THEN
        -- quantities compared in the material's base unit, whatever units
        -- the order, its confirmations and the ERP use
        WITH plant AS (
            SELECT o.id, o.order_number, o.status, o.material_id, m.base_uom AS uom,
                   plantsync.to_base_quantity(o.material_id, o.quantity, o.uom) AS quantity,
                   -- the order's yield is what its last operation confirmed
                   -- (last by number: 0090 before 0100, and 90 before 100)
                   COALESCE((SELECT sum(plantsync.to_base_quantity(o.material_id, c.yield_quantity, c.uom))
                               FROM plantsync.production_confirmation c
                              WHERE c.order_id = o.id AND c.confirmed_at <= (s.snapshot).taken_at
                                AND c.operation_id = (SELECT op2.id FROM plantsync.production_operation op2 WHERE op2.order_id = o.id
                                                       ORDER BY CASE WHEN op2.operation_number ~ '^[0-9]{1,30}$' THEN op2.operation_number::numeric END
                                                                DESC NULLS LAST, op2.operation_number DESC
                                                       LIMIT 1)), 0) AS confirmed
              FROM plantsync.production_order o
              JOIN plantsync.material m ON m.id = o.material_id
             WHERE o.site_id = p_site_id AND o.status <> 'draft' AND o.created_at <= (s.snapshot).taken_at
        ), erp AS (
            SELECT * FROM plantsync.erp_order e WHERE e.snapshot_id = (s.snapshot).id
        ), cmp AS (
            SELECT p.id, COALESCE(p.order_number, e.order_number) AS order_number, p.status AS plant_status, e.status AS erp_status,
                   p.quantity AS plant_qty, p.confirmed AS plant_confirmed,
                   CASE WHEN p.id IS NULL OR e.uom = p.uom THEN e.quantity
                        ELSE plantsync.erp_base_quantity(p.material_id, e.quantity, e.uom) END AS erp_qty,
                   CASE WHEN p.id IS NULL OR e.uom = p.uom THEN e.confirmed_quantity
                        ELSE plantsync.erp_base_quantity(p.material_id, e.confirmed_quantity, e.uom) END AS erp_confirmed,
                   COALESCE(p.uom, e.uom) AS uom, e.uom AS erp_uom,
                   e.order_number IS NOT NULL AS in_erp, p.order_number IS NOT NULL AS in_plant
              FROM plant p FULL JOIN erp e ON e.order_number = p.order_number
        ), counted AS (
            SELECT count(*) AS n FROM cmp
        ), found AS (
            INSERT INTO pg_temp.plantsync_found (kind, subject_key, order_id, plant_quantity, erp_quantity, uom, plant_status,
                                                 erp_status, detail, remediation)
            SELECT k.kind, c.order_number, c.id,
                   CASE WHEN k.kind = 'quantity_mismatch' AND c.plant_qty = c.erp_qty THEN c.plant_confirmed ELSE c.plant_qty END,
                   CASE WHEN k.kind = 'quantity_mismatch' AND c.plant_qty = c.erp_qty THEN c.erp_confirmed ELSE c.erp_qty END,
                   c.uom, c.plant_status, c.erp_status,
                   jsonb_strip_nulls(jsonb_build_object('order', c.order_number, 'plant_quantity', c.plant_qty, 'erp_quantity', c.erp_qty,
                                                        'plant_confirmed', c.plant_confirmed, 'erp_confirmed', c.erp_confirmed,
                                                        'erp_uom', NULLIF(c.erp_uom, c.uom),
                                                        'problem', CASE WHEN c.in_plant AND c.in_erp AND c.erp_qty IS NULL
                                                                        THEN format('the ERP''s unit %s does not convert to %s', c.erp_uom, c.uom) END)),
                   CASE WHEN k.kind = 'missing_in_plant' THEN 'ask_person'
                        WHEN k.kind = 'quantity_mismatch' AND c.plant_qty = c.erp_qty THEN 'post_correction'
                        ELSE 'ask_person' END
              FROM cmp c
              CROSS JOIN LATERAL (SELECT CASE
                    WHEN NOT c.in_erp THEN 'missing_in_erp'
                    WHEN NOT c.in_plant THEN CASE WHEN c.erp_status IN ('draft', 'cancelled', 'closed') THEN NULL ELSE 'missing_in_plant' END
                    WHEN c.plant_qty IS DISTINCT FROM c.erp_qty OR c.plant_confirmed IS DISTINCT FROM c.erp_confirmed THEN 'quantity_mismatch'
                    WHEN c.plant_status <> c.erp_status THEN 'status_mismatch'
                    END AS kind) k
             WHERE k.kind IS NOT NULL
            RETURNING 1
        )
        SELECT n INTO compared FROM counted;
    END IF;
    RETURN plantsync.finish_run(s.run_id, compared, s.stale);
END
$$;
COMMENT ON FUNCTION plantsync.reconcile_orders(text, uuid, interval) IS
'Compares the plant''s production orders (released or later, as of the snapshot''s time; confirmed yield from the confirmations) with an ERP orders snapshot: missing_in_erp, missing_in_plant (an ERP order whose release never reached the plant), quantity_mismatch (order quantity or confirmed yield), status_mismatch. Returns the run id.';

CREATE FUNCTION plantsync.reconcile_postings(p_site_id text, p_snapshot_id uuid DEFAULT NULL, p_max_age interval DEFAULT '1 day')
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    compared integer := 0;
BEGIN
    SELECT * INTO s FROM plantsync.start_run(p_site_id, 'postings', p_snapshot_id, p_max_age);
    IF NOT s.stale THEN
        -- every movement of the plant sent (or meant) to an ERP endpoint
        -- before the snapshot: the ERP must have it, unless it is still on
        -- its way
        -- (for each movement and endpoint its latest delivery: a replay,
        -- if it was replayed, says where it is now)
        WITH sent AS (
            SELECT DISTINCT ON (ev.id, d.endpoint_id)
                   mv.id AS movement_id, mv.external_id, mv.material_id, mv.lot_id, mv.base_quantity, mv.posted_at,
                   d.id AS delivery_id, d.status AS delivery_status, d.last_error, d.endpoint_id
              FROM plantsync.delivery d
              JOIN plantsync.endpoint e ON e.endpoint_id = d.endpoint_id AND e.system_code = 'erp'
              JOIN plantsync.event ev ON ev.id = d.event_id AND ev.recorded_at = d.event_recorded_at
              JOIN plantsync.material_movement mv ON mv.id = ev.entity_id
             WHERE ev.entity = 'material_movement' AND ev.site_id = p_site_id AND mv.posted_at <= (s.snapshot).taken_at
               AND d.mode <> 'reconcile_only'
             ORDER BY ev.id, d.endpoint_id, d.created_at DESC, d.id DESC
        ), counted AS (
            SELECT count(*) AS n FROM sent
        ), found AS (
            INSERT INTO pg_temp.plantsync_found (kind, subject_key, material_id, lot_id, plant_quantity, plant_status, detail, remediation)
            SELECT 'posting_not_acknowledged', x.external_id, x.material_id, x.lot_id, x.base_quantity, x.delivery_status,
                   jsonb_strip_nulls(jsonb_build_object('movement_id', x.movement_id, 'delivery_id', x.delivery_id,
                                                        'endpoint_id', x.endpoint_id, 'delivery_status', x.delivery_status,
                                                        'last_error', x.last_error)),
                   CASE WHEN x.delivery_status IN ('dead', 'delivered') THEN 'replay_delivery' ELSE 'ask_person' END
              FROM sent x
             WHERE NOT EXISTS (SELECT 1 FROM plantsync.erp_posting p WHERE p.snapshot_id = (s.snapshot).id AND p.reference = x.external_id)
               AND x.delivery_status NOT IN ('pending', 'in_flight', 'retrying', 'discarded')
            RETURNING 1
        )
        SELECT n INTO compared FROM counted;
    END IF;
    RETURN plantsync.finish_run(s.run_id, compared, s.stale);
END
$$;
COMMENT ON FUNCTION plantsync.reconcile_postings(text, uuid, interval) IS
'Compares the movements sent to ERP endpoints before the snapshot''s time with the postings the ERP reports: a movement dead-lettered, or delivered but not posted, is posting_not_acknowledged (remediation: replay its delivery). Movements still on their way are not counted against the ERP. Returns the run id.';

CREATE FUNCTION plantsync.reconcile(p_site_id text, p_max_age interval DEFAULT '1 day')
RETURNS TABLE (kind text, run_id uuid)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM plantsync.site WHERE site_id = p_site_id) THEN
        RAISE EXCEPTION 'site "%" does not exist', p_site_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    FOREACH k IN ARRAY ARRAY['inventory', 'orders', 'postings'] LOOP
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM plantsync.erp_snapshot s WHERE s.site_id = p_site_id AND s.kind = k);
        kind := k;
        run_id := CASE k WHEN 'inventory' THEN plantsync.reconcile_inventory(p_site_id, NULL, p_max_age)
                         WHEN 'orders' THEN plantsync.reconcile_orders(p_site_id, NULL, p_max_age)
                         ELSE plantsync.reconcile_postings(p_site_id, NULL, p_max_age) END;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION plantsync.reconcile(text, interval) IS
'Runs every reconciliation of a plant for which an ERP snapshot exists (inventory, orders, postings) against its latest snapshot; what pg_cron runs.';

CREATE FUNCTION plantsync.apply_remediation(p_discrepancy_id uuid, p_reason text, p_action text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plantsync.source_system = 'hub'
AS $$
DECLARE
    d plantsync.discrepancy;
    action text;
    ids uuid[];
BEGIN
    PERFORM plantsync.check_selection_reason(p_reason);
    SELECT * INTO d FROM plantsync.discrepancy WHERE id = p_discrepancy_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'discrepancy "%" does not exist', p_discrepancy_id USING ERRCODE = 'no_data_found';
    END IF;
    IF d.status <> 'open' THEN
        RAISE EXCEPTION 'discrepancy "%" is %, not open', d.subject_key, d.status
            USING ERRCODE = 'PS001', HINT = 'Only open discrepancies can be remediated; a remediation that did not work sends it back to open at the next run.';
    END IF;
    action := COALESCE(p_action, d.remediation);
    IF action NOT IN ('replay_delivery', 'post_correction', 'ask_person', 'reload_snapshot') THEN
        RAISE EXCEPTION 'remediation "%" is not valid', action
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use replay_delivery, post_correction, ask_person or reload_snapshot.';
    END IF;
    IF action = 'replay_delivery' THEN
        SELECT array_agg(x::uuid) INTO ids
          FROM (SELECT jsonb_array_elements_text(d.detail -> 'dead_deliveries') AS x
                UNION SELECT d.detail ->> 'delivery_id' WHERE d.detail ? 'delivery_id') s WHERE x IS NOT NULL;
        IF ids IS NULL THEN
            RAISE EXCEPTION 'discrepancy "%" names no delivery to replay', d.subject_key
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Choose post_correction or ask_person.';
        END IF;
        -- each replay is a new delivery through the outbox, on record
        PERFORM plantsync.replay_deliveries(format('%s (discrepancy %s)', p_reason, d.id), delivery_id => x, include_delivered => true)
           FROM unnest(ids) x;
    END IF;
    -- the state change is an event: a route for discrepancy.remediating takes
    -- the correction (its detail) to the ERP, or the question to a person
    UPDATE plantsync.discrepancy
       SET status = 'remediating', remediated_at = now(), remediated_by = session_user, remediation_note = p_reason,
           detail = detail || jsonb_build_object('action', action)
     WHERE id = d.id;
    RETURN action;
END
$$;
COMMENT ON FUNCTION plantsync.apply_remediation(uuid, text, text) IS
'Applies a remediation to an open discrepancy, with a reason: replay_delivery replays the deliveries it names (new deliveries through the outbox, same idempotency keys); post_correction and ask_person move it to remediating, an event a route can take to the ERP (the correction is in its detail) or to a person. The next run resolves it if the difference is gone. Returns the action applied.';

CREATE FUNCTION plantsync.resolve_discrepancy(p_discrepancy_id uuid, p_resolution text, p_ignore boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plantsync.source_system = 'hub'
AS $$
BEGIN
    PERFORM plantsync.check_selection_reason(p_resolution);
    IF NOT EXISTS (SELECT 1 FROM plantsync.discrepancy WHERE id = p_discrepancy_id) THEN
        RAISE EXCEPTION 'discrepancy "%" does not exist', p_discrepancy_id USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE plantsync.discrepancy
       SET status = CASE WHEN p_ignore THEN 'ignored' ELSE 'resolved' END, resolved_at = now(),
           resolution = format('%s (%s)', p_resolution, session_user)
     WHERE id = p_discrepancy_id;
END
$$;
COMMENT ON FUNCTION plantsync.resolve_discrepancy(uuid, text, boolean) IS
'Resolves a discrepancy by hand (or, with p_ignore, accepts it as is), with a reason; the state machine refuses it once resolved or ignored.';

CREATE VIEW plantsync.reconciliation_kpi WITH (security_invoker = true) AS
SELECT r.site_id, r.kind, r.id AS run_id, r.started_at, r.finished_at - r.started_at AS duration, r.outcome,
       s.taken_at AS snapshot_taken_at, r.compared, r.matched,
       CASE WHEN r.compared > 0 THEN round(100.0 * r.matched / r.compared, 2) END AS accuracy_percent,
       r.discrepancies, r.resolved_since,
       (SELECT jsonb_object_agg(k.kind, k.n) FROM (SELECT d.kind, count(*) AS n FROM plantsync.discrepancy d
                                                    WHERE d.run_id = r.id GROUP BY d.kind) k) AS new_by_kind
  FROM plantsync.reconciliation_run r
  JOIN plantsync.erp_snapshot s ON s.id = r.snapshot_id;
COMMENT ON VIEW plantsync.reconciliation_kpi IS 'One row per reconciliation run: what was compared, accuracy (matched / compared, e.g. inventory accuracy), discrepancies found, earlier ones no longer found, and the new ones by kind.';
COMMENT ON COLUMN plantsync.reconciliation_kpi.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.reconciliation_kpi.kind IS 'inventory, orders or postings.';
COMMENT ON COLUMN plantsync.reconciliation_kpi.run_id IS 'Run.';
COMMENT ON COLUMN plantsync.reconciliation_kpi.started_at IS 'Start.';
COMMENT ON COLUMN plantsync.reconciliation_kpi.duration IS 'How long it took.';
COMMENT ON COLUMN plantsync.reconciliation_kpi.outcome IS 'compared or stale_snapshot.';
COMMENT ON COLUMN plantsync.reconciliation_kpi.snapshot_taken_at IS 'When the ERP took the snapshot.';
COMMENT ON COLUMN plantsync.reconciliation_kpi.compared IS 'Keys compared.';
COMMENT ON COLUMN plantsync.reconciliation_kpi.matched IS 'Keys that agreed.';
COMMENT ON COLUMN plantsync.reconciliation_kpi.accuracy_percent IS 'matched / compared, in percent.';
COMMENT ON COLUMN plantsync.reconciliation_kpi.discrepancies IS 'Discrepancies found (new and still open).';
COMMENT ON COLUMN plantsync.reconciliation_kpi.resolved_since IS 'Earlier discrepancies this run no longer found.';
COMMENT ON COLUMN plantsync.reconciliation_kpi.new_by_kind IS 'New discrepancies by kind.';

CREATE VIEW plantsync.discrepancy_kpi WITH (security_invoker = true) AS
SELECT d.site_id, d.scope,
       count(*) FILTER (WHERE d.status IN ('open', 'remediating')) AS open,
       count(*) FILTER (WHERE d.status = 'remediating') AS remediating,
       count(*) FILTER (WHERE d.status = 'resolved') AS resolved,
       count(*) FILTER (WHERE d.status = 'ignored') AS ignored,
       count(*) FILTER (WHERE d.remediated_at IS NOT NULL) AS manual_touches,
       avg(d.resolved_at - d.found_at) FILTER (WHERE d.status = 'resolved') AS mean_time_to_resolve,
       min(d.found_at) FILTER (WHERE d.status IN ('open', 'remediating')) AS oldest_open_since
  FROM plantsync.discrepancy d
 GROUP BY d.site_id, d.scope;
COMMENT ON VIEW plantsync.discrepancy_kpi IS 'Discrepancies per plant and scope: open, remediating, resolved, ignored, manual touches (remediations applied by people), mean time to resolve, oldest open.';
COMMENT ON COLUMN plantsync.discrepancy_kpi.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.discrepancy_kpi.scope IS 'inventory, orders or postings.';
COMMENT ON COLUMN plantsync.discrepancy_kpi.open IS 'Open or being remediated.';
COMMENT ON COLUMN plantsync.discrepancy_kpi.remediating IS 'Being remediated.';
COMMENT ON COLUMN plantsync.discrepancy_kpi.resolved IS 'Resolved.';
COMMENT ON COLUMN plantsync.discrepancy_kpi.ignored IS 'Accepted as is.';
COMMENT ON COLUMN plantsync.discrepancy_kpi.manual_touches IS 'Remediations applied by people.';
COMMENT ON COLUMN plantsync.discrepancy_kpi.mean_time_to_resolve IS 'Mean time from found to resolved.';
COMMENT ON COLUMN plantsync.discrepancy_kpi.oldest_open_since IS 'When the oldest open one was found.';

CREATE FUNCTION plantsync.schedule_reconciliation(p_site_id text, p_schedule text DEFAULT '30 * * * *',
                                                  p_max_age interval DEFAULT '1 day')
RETURNS TABLE (job_name text, schedule text, command text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM plantsync.site WHERE site_id = p_site_id) THEN
        RAISE EXCEPTION 'site "%" does not exist', p_site_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF to_regnamespace('cron') IS NULL THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', current_database()
            USING ERRCODE = 'undefined_object',
                  HINT = 'Run CREATE EXTENSION pg_cron in the database named by cron.database_name, then call plantsync.schedule_reconciliation() there.';
    END IF;
    job_name := format('plantsync-reconcile-%s-%s', current_database(), p_site_id);
    schedule := p_schedule;
    command := format('SELECT * FROM plantsync.reconcile(%L, %L::interval)', p_site_id, p_max_age);
    -- scheduling by name replaces the job of that name: calling again is harmless
    EXECUTE 'SELECT cron.schedule_in_database($1, $2, $3, $4)' USING job_name, schedule, command, current_database();
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION plantsync.schedule_reconciliation(text, text, interval) IS
'Installs (or updates) the pg_cron job that reconciles a plant against its latest ERP snapshots (default: every hour at :30). Idempotent: the job is scheduled by name.';
