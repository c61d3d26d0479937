-- Canonical inventory: lots, sublots and serials with their disposition, and
-- the material movement ledger. The ledger is append-only (corrections are
-- reversal movements that reference what they reverse); balances are derived
-- from it, never stored beside it.

CREATE TABLE plantsync.lot (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    material_id uuid NOT NULL,
    lot_number text NOT NULL,
    disposition text NOT NULL DEFAULT 'planned',
    production_order_id uuid,
    manufactured_at timestamptz,
    expires_on date,
    supplier_lot text,
    erp_ref text,
    qms_ref text,
    parent_lot_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT lot_site_material_number_key UNIQUE (site_id, material_id, lot_number),
    CONSTRAINT lot_site_id_key UNIQUE (site_id, id),
    CONSTRAINT lot_parent_fk FOREIGN KEY (site_id, parent_lot_id) REFERENCES plantsync.lot (site_id, id),
    CONSTRAINT lot_not_own_parent CHECK (parent_lot_id <> id),
    CONSTRAINT lot_material_fk FOREIGN KEY (site_id, material_id) REFERENCES plantsync.material (site_id, id),
    CONSTRAINT lot_production_order_fk FOREIGN KEY (site_id, production_order_id) REFERENCES plantsync.production_order (site_id, id)
);
CREATE INDEX lot_production_order_idx ON plantsync.lot (production_order_id);
CREATE INDEX lot_site_number_idx ON plantsync.lot (site_id, lot_number);
CREATE INDEX lot_disposition_idx ON plantsync.lot (site_id, disposition);
COMMENT ON TABLE plantsync.lot IS 'Material lots / batches (ISA-95 MaterialLot; SAP batch; ERPNext Batch) and their disposition.';
COMMENT ON COLUMN plantsync.lot.id IS 'Key of the lot, unique across plants.';
COMMENT ON COLUMN plantsync.lot.site_id IS 'Plant where the lot is.';
COMMENT ON COLUMN plantsync.lot.material_id IS 'Material of the lot; the material must be lot-tracked.';
COMMENT ON COLUMN plantsync.lot.lot_number IS 'Lot (batch) number, unique per plant and material.';
COMMENT ON COLUMN plantsync.lot.disposition IS 'Disposition: planned, in_process, restricted (awaiting quality decision), unrestricted, blocked, rejected, consumed, shipped, scrapped, closed.';
COMMENT ON COLUMN plantsync.lot.production_order_id IS 'Order that produced the lot, for produced lots.';
COMMENT ON COLUMN plantsync.lot.manufactured_at IS 'Manufacturing date and time.';
COMMENT ON COLUMN plantsync.lot.expires_on IS 'Expiry (shelf life end) date.';
COMMENT ON COLUMN plantsync.lot.supplier_lot IS 'Supplier''s lot number, for purchased lots.';
COMMENT ON COLUMN plantsync.lot.erp_ref IS 'Batch identifier in the ERP when it differs from lot_number.';
COMMENT ON COLUMN plantsync.lot.qms_ref IS 'Identifier of the lot in the QMS.';
COMMENT ON COLUMN plantsync.lot.parent_lot_id IS 'The lot this one was split from (a partial usage decision puts the blocked quantity in a lot of its own); its lot_split receipt links it in the genealogy.';
COMMENT ON COLUMN plantsync.lot.created_at IS 'When the lot row was created.';
COMMENT ON COLUMN plantsync.lot.updated_at IS 'When the lot row was last changed (kept by the guard trigger).';

CREATE TABLE plantsync.sublot (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    lot_id uuid NOT NULL,
    sublot_number text NOT NULL,
    storage_location_id uuid,
    container text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sublot_lot_number_key UNIQUE (lot_id, sublot_number),
    CONSTRAINT sublot_site_id_key UNIQUE (site_id, id),
    CONSTRAINT sublot_lot_fk FOREIGN KEY (site_id, lot_id) REFERENCES plantsync.lot (site_id, id),
    CONSTRAINT sublot_storage_location_fk FOREIGN KEY (site_id, storage_location_id) REFERENCES plantsync.storage_location (site_id, id)
);
COMMENT ON TABLE plantsync.sublot IS 'Sublots of a lot (ISA-95 MaterialSubLot): containers, drums, pallets. A sublot shares its lot''s disposition.';
COMMENT ON COLUMN plantsync.sublot.id IS 'Key of the sublot, unique across plants.';
COMMENT ON COLUMN plantsync.sublot.site_id IS 'Plant of the lot.';
COMMENT ON COLUMN plantsync.sublot.lot_id IS 'Lot the sublot belongs to.';
COMMENT ON COLUMN plantsync.sublot.sublot_number IS 'Sublot number, unique within the lot.';
COMMENT ON COLUMN plantsync.sublot.storage_location_id IS 'Where the sublot is stored.';
COMMENT ON COLUMN plantsync.sublot.container IS 'Container or handling unit identifier (SSCC).';
COMMENT ON COLUMN plantsync.sublot.created_at IS 'When the sublot row was created.';

CREATE TABLE plantsync.serial (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    material_id uuid NOT NULL,
    serial_number text NOT NULL,
    lot_id uuid,
    disposition text NOT NULL DEFAULT 'planned',
    production_order_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT serial_site_material_number_key UNIQUE (site_id, material_id, serial_number),
    CONSTRAINT serial_site_id_key UNIQUE (site_id, id),
    CONSTRAINT serial_material_fk FOREIGN KEY (site_id, material_id) REFERENCES plantsync.material (site_id, id),
    CONSTRAINT serial_lot_fk FOREIGN KEY (site_id, lot_id) REFERENCES plantsync.lot (site_id, id),
    CONSTRAINT serial_production_order_fk FOREIGN KEY (site_id, production_order_id) REFERENCES plantsync.production_order (site_id, id)
);
CREATE INDEX serial_lot_idx ON plantsync.serial (lot_id);
CREATE INDEX serial_production_order_idx ON plantsync.serial (production_order_id);
COMMENT ON TABLE plantsync.serial IS 'Serialized units of serial-tracked materials, optionally within a lot.';
COMMENT ON COLUMN plantsync.serial.id IS 'Key of the serial, unique across plants.';
COMMENT ON COLUMN plantsync.serial.site_id IS 'Plant of the unit.';
COMMENT ON COLUMN plantsync.serial.material_id IS 'Material; must be serial-tracked.';
COMMENT ON COLUMN plantsync.serial.serial_number IS 'Serial number, unique per plant and material.';
COMMENT ON COLUMN plantsync.serial.lot_id IS 'Lot the unit belongs to; must be of the same material.';
COMMENT ON COLUMN plantsync.serial.disposition IS 'Disposition, same states as a lot.';
COMMENT ON COLUMN plantsync.serial.production_order_id IS 'Order that produced the unit.';
COMMENT ON COLUMN plantsync.serial.created_at IS 'When the serial row was created.';
COMMENT ON COLUMN plantsync.serial.updated_at IS 'When the row was last changed (kept by the guard trigger).';

CREATE TABLE plantsync.material_movement (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    movement_type text NOT NULL
        CONSTRAINT material_movement_type_check CHECK (movement_type IN (
            'goods_receipt', 'consumption', 'production_receipt', 'scrap',
            'transfer', 'status_change', 'shipment', 'reversal', 'lot_split')),
    material_id uuid NOT NULL,
    lot_id uuid,
    sublot_id uuid,
    serial_id uuid,
    quantity numeric NOT NULL
        CONSTRAINT material_movement_quantity_positive CHECK (quantity > 0),
    uom text NOT NULL REFERENCES plantsync.uom,
    base_quantity numeric NOT NULL,
    from_location_id uuid,
    to_location_id uuid,
    from_stock_type text
        CONSTRAINT material_movement_from_stock_type_check CHECK (from_stock_type IN ('unrestricted', 'quality', 'blocked')),
    to_stock_type text
        CONSTRAINT material_movement_to_stock_type_check CHECK (to_stock_type IN ('unrestricted', 'quality', 'blocked')),
    order_id uuid,
    operation_id uuid,
    reverses_movement_id uuid,
    posted_at timestamptz NOT NULL DEFAULT now(),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    source_system text NOT NULL REFERENCES plantsync.source_system,
    external_id text NOT NULL,
    reason text,
    CONSTRAINT material_movement_external_id_key UNIQUE (site_id, source_system, external_id),
    CONSTRAINT material_movement_material_fk FOREIGN KEY (site_id, material_id) REFERENCES plantsync.material (site_id, id),
    CONSTRAINT material_movement_lot_fk FOREIGN KEY (site_id, lot_id) REFERENCES plantsync.lot (site_id, id),
    CONSTRAINT material_movement_sublot_fk FOREIGN KEY (site_id, sublot_id) REFERENCES plantsync.sublot (site_id, id),
    CONSTRAINT material_movement_serial_fk FOREIGN KEY (site_id, serial_id) REFERENCES plantsync.serial (site_id, id),
    CONSTRAINT material_movement_from_location_fk FOREIGN KEY (site_id, from_location_id) REFERENCES plantsync.storage_location (site_id, id),
    CONSTRAINT material_movement_to_location_fk FOREIGN KEY (site_id, to_location_id) REFERENCES plantsync.storage_location (site_id, id),
    CONSTRAINT material_movement_order_fk FOREIGN KEY (site_id, order_id) REFERENCES plantsync.production_order (site_id, id),
    CONSTRAINT material_movement_operation_fk FOREIGN KEY (site_id, operation_id) REFERENCES plantsync.production_operation (site_id, id),
    CONSTRAINT material_movement_reverses_fk FOREIGN KEY (reverses_movement_id) REFERENCES plantsync.material_movement (id),
    -- Where stock comes from and goes to follows from the movement type.
    CONSTRAINT material_movement_locations_match_type CHECK (CASE movement_type
        WHEN 'goods_receipt' THEN from_location_id IS NULL AND to_location_id IS NOT NULL
        WHEN 'production_receipt' THEN from_location_id IS NULL AND to_location_id IS NOT NULL
        WHEN 'consumption' THEN from_location_id IS NOT NULL AND to_location_id IS NULL
        WHEN 'scrap' THEN from_location_id IS NOT NULL AND to_location_id IS NULL
        WHEN 'shipment' THEN from_location_id IS NOT NULL AND to_location_id IS NULL
        WHEN 'transfer' THEN from_location_id IS NOT NULL AND to_location_id IS NOT NULL AND from_location_id <> to_location_id
        WHEN 'status_change' THEN from_location_id IS NOT NULL AND to_location_id = from_location_id
        -- a split is a pair: out of the lot split, into the lot split from it
        WHEN 'lot_split' THEN (from_location_id IS NULL) <> (to_location_id IS NULL)
        ELSE from_location_id IS NOT NULL OR to_location_id IS NOT NULL END),
    CONSTRAINT material_movement_stock_types_match_type CHECK (
        movement_type IN ('status_change', 'reversal')
        OR (from_stock_type IS NULL AND to_stock_type IS NULL)),
    CONSTRAINT material_movement_status_change_stock_types CHECK (
        movement_type <> 'status_change'
        OR (from_stock_type IS NOT NULL AND to_stock_type IS NOT NULL AND from_stock_type <> to_stock_type)),
    CONSTRAINT material_movement_reversal_reference CHECK ((movement_type = 'reversal') = (reverses_movement_id IS NOT NULL)),
    CONSTRAINT material_movement_order_required CHECK (movement_type NOT IN ('consumption', 'production_receipt') OR order_id IS NOT NULL)
);
CREATE UNIQUE INDEX material_movement_reversed_once ON plantsync.material_movement (reverses_movement_id) WHERE reverses_movement_id IS NOT NULL;
CREATE INDEX material_movement_lot_idx ON plantsync.material_movement (lot_id, posted_at);
CREATE INDEX material_movement_order_idx ON plantsync.material_movement (order_id, movement_type);
CREATE INDEX material_movement_material_idx ON plantsync.material_movement (material_id, lot_id);
CREATE INDEX material_movement_serial_idx ON plantsync.material_movement (serial_id) WHERE serial_id IS NOT NULL;
CREATE INDEX material_movement_recorded_idx ON plantsync.material_movement USING brin (recorded_at);
COMMENT ON TABLE plantsync.material_movement IS 'Append-only ledger of material movements (ISA-95 MaterialActual; SAP material documents; ERPNext Stock Entry rows). Balances are derived from it; a mistake is corrected by a reversal movement, never by UPDATE or DELETE.';
COMMENT ON COLUMN plantsync.material_movement.id IS 'Key of the movement, unique across plants.';
COMMENT ON COLUMN plantsync.material_movement.site_id IS 'Plant where the movement happened.';
COMMENT ON COLUMN plantsync.material_movement.movement_type IS 'goods_receipt, consumption, production_receipt, scrap, transfer, status_change, shipment, reversal or lot_split (a pair: out of a lot, from a location; into the lot split from it, at a location).';
COMMENT ON COLUMN plantsync.material_movement.material_id IS 'Material moved.';
COMMENT ON COLUMN plantsync.material_movement.lot_id IS 'Lot moved; required for lot-tracked materials, and must be of the same material.';
COMMENT ON COLUMN plantsync.material_movement.sublot_id IS 'Sublot moved; must belong to lot_id.';
COMMENT ON COLUMN plantsync.material_movement.serial_id IS 'Serial moved; required for serial-tracked materials (one unit per movement).';
COMMENT ON COLUMN plantsync.material_movement.quantity IS 'Quantity moved (positive; the direction follows from the locations).';
COMMENT ON COLUMN plantsync.material_movement.uom IS 'Unit of quantity; the material''s base unit or convertible to it.';
COMMENT ON COLUMN plantsync.material_movement.base_quantity IS 'Quantity in the material''s base unit, computed on insert.';
COMMENT ON COLUMN plantsync.material_movement.from_location_id IS 'Location the stock leaves.';
COMMENT ON COLUMN plantsync.material_movement.to_location_id IS 'Location the stock enters.';
COMMENT ON COLUMN plantsync.material_movement.from_stock_type IS 'For status changes: stock type before (unrestricted, quality, blocked).';
COMMENT ON COLUMN plantsync.material_movement.to_stock_type IS 'For status changes: stock type after.';
COMMENT ON COLUMN plantsync.material_movement.order_id IS 'Production order consumed into or received from; required for consumption and production receipts.';
COMMENT ON COLUMN plantsync.material_movement.operation_id IS 'Operation of order_id, if known.';
COMMENT ON COLUMN plantsync.material_movement.reverses_movement_id IS 'For reversals: the movement reversed (each movement can be reversed once).';
COMMENT ON COLUMN plantsync.material_movement.posted_at IS 'Business time of the movement (when it happened on the floor).';
COMMENT ON COLUMN plantsync.material_movement.recorded_at IS 'When the hub recorded it.';
COMMENT ON COLUMN plantsync.material_movement.source_system IS 'System that reported the movement.';
COMMENT ON COLUMN plantsync.material_movement.external_id IS 'Identifier in the reporting system; unique per plant and system, so a repeated report is refused.';
COMMENT ON COLUMN plantsync.material_movement.reason IS 'Why (scrap reason, reversal reason).';

CREATE FUNCTION plantsync.to_base_quantity(p_material_id uuid, p_quantity numeric, p_uom text)
RETURNS numeric
LANGUAGE plpgsql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m record;
    f numeric;
    result numeric;
BEGIN
    SELECT mat.material_number, mat.base_uom, u.dimension, u.decimals
      INTO m
      FROM plantsync.material mat JOIN plantsync.uom u ON u.uom_code = mat.base_uom
     WHERE mat.id = p_material_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'material "%" does not exist', p_material_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF p_uom = m.base_uom THEN
        result := p_quantity;
    ELSE
        SELECT c.factor INTO f
          FROM plantsync.uom_conversion c
         WHERE c.from_uom = p_uom AND c.to_uom = m.base_uom
           AND (c.material_id = p_material_id OR c.material_id IS NULL)
         ORDER BY c.material_id IS NULL
         LIMIT 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'unit of measure "%" cannot be converted to the base unit "%" of material "%"',
                p_uom, m.base_uom, m.material_number
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Report the quantity in the base unit, or add the conversion to plantsync.uom_conversion.';
        END IF;
        result := p_quantity * f;
    END IF;
    IF m.decimals = 0 AND result <> trunc(result) THEN
        RAISE EXCEPTION 'quantity % % of material "%" is not a whole number of %', p_quantity, p_uom, m.material_number, m.base_uom
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It converts to %s %s; %s is counted in whole units.', result, m.base_uom, m.base_uom);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION plantsync.to_base_quantity(uuid, numeric, text) IS
'Converts a quantity of a material into its base unit (material-specific conversions first, then global ones); refuses a unit that cannot be converted and fractions of counted units.';

CREATE FUNCTION plantsync.check_material_movement() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mat record;
    l record;
    orig record;
    s record;
BEGIN
    SELECT id, material_number, lot_tracked, serial_tracked, base_uom INTO mat
      FROM plantsync.material WHERE id = NEW.material_id AND site_id = NEW.site_id;
    IF NOT FOUND THEN
        -- base_quantity cannot be computed, and NOT NULL would fire before
        -- the foreign key: say what is really wrong.
        IF NEW.material_id IS NOT NULL THEN
            RAISE EXCEPTION 'material "%" does not exist at site "%"', NEW.material_id, NEW.site_id
                USING ERRCODE = 'foreign_key_violation', COLUMN = 'material_id';
        END IF;
        RETURN NEW;
    END IF;

    IF NEW.movement_type = 'reversal' THEN
        SELECT * INTO orig FROM plantsync.material_movement WHERE id = NEW.reverses_movement_id;
        IF NOT FOUND THEN
            RETURN NEW;         -- the foreign key reports it
        END IF;
        IF orig.movement_type = 'reversal' THEN
            RAISE EXCEPTION 'movement "%" is itself a reversal and cannot be reversed', orig.external_id
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Post the original movement again instead.';
        END IF;
        IF orig.site_id <> NEW.site_id OR orig.material_id <> NEW.material_id
           OR orig.lot_id IS DISTINCT FROM NEW.lot_id OR orig.serial_id IS DISTINCT FROM NEW.serial_id
           OR orig.quantity <> NEW.quantity OR orig.uom <> NEW.uom THEN
            RAISE EXCEPTION 'reversal does not match movement "%"', orig.external_id
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('A reversal must repeat the site, material, lot, serial, quantity and unit of the movement it reverses (%s %s).', orig.quantity, orig.uom);
        END IF;
        NEW.from_location_id := orig.to_location_id;
        NEW.to_location_id := orig.from_location_id;
        NEW.from_stock_type := orig.to_stock_type;
        NEW.to_stock_type := orig.from_stock_type;
        NEW.sublot_id := orig.sublot_id;
        NEW.order_id := COALESCE(NEW.order_id, orig.order_id);
        NEW.operation_id := COALESCE(NEW.operation_id, orig.operation_id);
    END IF;

    IF NEW.lot_id IS NULL THEN
        IF mat.lot_tracked THEN
            RAISE EXCEPTION 'material "%" is lot-tracked: a % movement must name its lot', mat.material_number, NEW.movement_type
                USING ERRCODE = 'not_null_violation', COLUMN = 'lot_id';
        END IF;
    ELSE
        IF NOT mat.lot_tracked THEN
            RAISE EXCEPTION 'material "%" is not lot-tracked: a movement of it cannot name a lot', mat.material_number
                USING ERRCODE = 'invalid_parameter_value', COLUMN = 'lot_id';
        END IF;
        SELECT lot.lot_number, lot.disposition, lot.material_id, lm.material_number INTO l
          FROM plantsync.lot JOIN plantsync.material lm ON lm.id = lot.material_id
         WHERE lot.id = NEW.lot_id;
        IF FOUND AND l.material_id <> NEW.material_id THEN
            RAISE EXCEPTION 'lot "%" is of material "%", not of material "%"', l.lot_number, l.material_number, mat.material_number
                USING ERRCODE = 'invalid_parameter_value', COLUMN = 'lot_id';
        END IF;
        IF FOUND AND NEW.movement_type = 'lot_split' AND NEW.to_location_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM plantsync.lot WHERE id = NEW.lot_id AND parent_lot_id IS NOT NULL) THEN
            RAISE EXCEPTION 'lot "%" was not split from another lot: a lot_split cannot put stock into it', l.lot_number
                USING ERRCODE = 'invalid_parameter_value', COLUMN = 'lot_id',
                      HINT = 'The receiving lot of a split names the lot it was split from (parent_lot_id).';
        END IF;
        IF FOUND AND NEW.movement_type IN ('consumption', 'shipment')
           AND l.disposition NOT IN ('unrestricted', 'in_process') THEN
            RAISE EXCEPTION 'lot "%" of material "%" is % and cannot be used for %', l.lot_number, mat.material_number, l.disposition, NEW.movement_type
                USING ERRCODE = 'PS006',
                      DETAIL = 'Only unrestricted or in-process lots may be consumed or shipped.',
                      HINT = 'The lot must be released by a quality usage decision first.';
        END IF;
    END IF;

    IF NEW.sublot_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM plantsync.sublot WHERE id = NEW.sublot_id AND lot_id IS NOT DISTINCT FROM NEW.lot_id) THEN
        RAISE EXCEPTION 'sublot "%" does not belong to the lot of the movement',
            (SELECT sublot_number FROM plantsync.sublot WHERE id = NEW.sublot_id)
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'sublot_id';
    END IF;

    IF NEW.serial_id IS NULL THEN
        IF mat.serial_tracked AND NEW.movement_type <> 'status_change' THEN
            RAISE EXCEPTION 'material "%" is serial-tracked: a % movement must name its serial', mat.material_number, NEW.movement_type
                USING ERRCODE = 'not_null_violation', COLUMN = 'serial_id';
        END IF;
    ELSE
        IF NOT mat.serial_tracked THEN
            RAISE EXCEPTION 'material "%" is not serial-tracked: a movement of it cannot name a serial', mat.material_number
                USING ERRCODE = 'invalid_parameter_value', COLUMN = 'serial_id';
        END IF;
        SELECT serial_number, material_id, lot_id INTO s FROM plantsync.serial WHERE id = NEW.serial_id;
        IF FOUND AND (s.material_id <> NEW.material_id OR s.lot_id IS DISTINCT FROM COALESCE(NEW.lot_id, s.lot_id)) THEN
            RAISE EXCEPTION 'serial "%" is not a unit of material "%" in the lot of the movement', s.serial_number, mat.material_number
                USING ERRCODE = 'invalid_parameter_value', COLUMN = 'serial_id';
        END IF;
    END IF;

    NEW.base_quantity := plantsync.to_base_quantity(NEW.material_id, NEW.quantity, NEW.uom);
    IF NEW.serial_id IS NOT NULL AND NEW.base_quantity <> 1 THEN
        RAISE EXCEPTION 'a movement of serial-tracked material "%" moves one unit, not % %', mat.material_number, NEW.base_quantity, mat.base_uom
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'quantity';
    END IF;

    IF NEW.operation_id IS NOT NULL THEN
        SELECT op.order_id, op.operation_number, o.order_number INTO l
          FROM plantsync.production_operation op JOIN plantsync.production_order o ON o.id = op.order_id
         WHERE op.id = NEW.operation_id;
        IF FOUND AND NEW.order_id IS NULL THEN
            NEW.order_id := l.order_id;
        ELSIF FOUND AND l.order_id <> NEW.order_id THEN
            RAISE EXCEPTION 'operation "%" of order "%" does not belong to order "%"', l.operation_number, l.order_number,
                (SELECT order_number FROM plantsync.production_order WHERE id = NEW.order_id)
                USING ERRCODE = 'invalid_parameter_value', COLUMN = 'operation_id';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION plantsync.check_material_movement() IS
'Trigger function: validates a ledger row against its material (lot and serial tracking, unit conversion), lot, serial, order and the quality hold, and fills base_quantity and the sides of a reversal.';

CREATE TRIGGER plantsync_check_material_movement BEFORE INSERT ON plantsync.material_movement
    FOR EACH ROW EXECUTE FUNCTION plantsync.check_material_movement();

CREATE VIEW plantsync.inventory_balance WITH (security_invoker = true) AS
SELECT b.site_id, b.material_id, b.lot_id, b.sublot_id, b.storage_location_id,
       CASE l.disposition
           WHEN 'restricted' THEN 'quality'
           WHEN 'blocked' THEN 'blocked'
           WHEN 'rejected' THEN 'blocked'
           ELSE 'unrestricted' END AS stock_type,
       b.base_quantity, m.base_uom
  FROM (SELECT site_id, material_id, lot_id, sublot_id, storage_location_id, sum(q) AS base_quantity
          FROM (SELECT site_id, material_id, lot_id, sublot_id, to_location_id AS storage_location_id, base_quantity AS q
                  FROM plantsync.material_movement WHERE to_location_id IS NOT NULL
                UNION ALL
                SELECT site_id, material_id, lot_id, sublot_id, from_location_id, -base_quantity
                  FROM plantsync.material_movement WHERE from_location_id IS NOT NULL) AS legs
         GROUP BY site_id, material_id, lot_id, sublot_id, storage_location_id
        HAVING sum(q) <> 0) AS b
  JOIN plantsync.material m ON m.id = b.material_id
  LEFT JOIN plantsync.lot l ON l.id = b.lot_id;
COMMENT ON VIEW plantsync.inventory_balance IS 'Stock on hand per plant, material, lot, sublot and location, derived from the movement ledger; stock_type follows the lot disposition (restricted = quality inspection stock).';
COMMENT ON COLUMN plantsync.inventory_balance.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.inventory_balance.material_id IS 'Material.';
COMMENT ON COLUMN plantsync.inventory_balance.lot_id IS 'Lot, for lot-tracked materials.';
COMMENT ON COLUMN plantsync.inventory_balance.sublot_id IS 'Sublot, when movements named one.';
COMMENT ON COLUMN plantsync.inventory_balance.storage_location_id IS 'Storage location.';
COMMENT ON COLUMN plantsync.inventory_balance.stock_type IS 'unrestricted, quality or blocked, from the lot disposition.';
COMMENT ON COLUMN plantsync.inventory_balance.base_quantity IS 'Quantity on hand in the base unit.';
COMMENT ON COLUMN plantsync.inventory_balance.base_uom IS 'Base unit of the material.';

-- What is on hand per plant, material, lot and location, kept as the ledger
-- is written: reconciling a million lots then reads a million rows instead
-- of summing the whole ledger. One statement trigger adds each statement's
-- movements, summed per key and applied in key order, so that two
-- transactions moving stock between the same places never deadlock.
CREATE TABLE plantsync.stock_balance (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id text NOT NULL REFERENCES plantsync.site,
    material_id uuid NOT NULL,
    lot_id uuid,
    storage_location_id uuid NOT NULL,
    base_quantity numeric NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT stock_balance_key UNIQUE NULLS NOT DISTINCT (site_id, material_id, lot_id, storage_location_id)
);
COMMENT ON TABLE plantsync.stock_balance IS 'Stock on hand per plant, material, lot and location in the base unit, kept by the movement ledger''s trigger (plantsync.inventory_balance has sublots and stock types; this is what reconciliation reads). plantsync.rebuild_stock_balance() recomputes it from the ledger.';
COMMENT ON COLUMN plantsync.stock_balance.id IS 'Row number.';
COMMENT ON COLUMN plantsync.stock_balance.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.stock_balance.material_id IS 'Material.';
COMMENT ON COLUMN plantsync.stock_balance.lot_id IS 'Lot; NULL for materials not lot-tracked.';
COMMENT ON COLUMN plantsync.stock_balance.storage_location_id IS 'Storage location.';
COMMENT ON COLUMN plantsync.stock_balance.base_quantity IS 'Quantity on hand in the material''s base unit (zero once all of it has left).';
COMMENT ON COLUMN plantsync.stock_balance.updated_at IS 'When a movement last changed it.';
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON plantsync.stock_balance FROM PUBLIC;

CREATE FUNCTION plantsync.keep_stock_balance() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO plantsync.stock_balance AS b (site_id, material_id, lot_id, storage_location_id, base_quantity)
    SELECT legs.site_id, legs.material_id, legs.lot_id, legs.location_id, sum(legs.q)
      FROM (SELECT n.site_id, n.material_id, n.lot_id, n.to_location_id AS location_id, n.base_quantity AS q
              FROM new_movements n WHERE n.to_location_id IS NOT NULL
            UNION ALL
            SELECT n.site_id, n.material_id, n.lot_id, n.from_location_id, -n.base_quantity
              FROM new_movements n WHERE n.from_location_id IS NOT NULL) legs
     GROUP BY 1, 2, 3, 4
    -- a status change in place moves nothing
    HAVING sum(legs.q) <> 0
     ORDER BY 1, 2, 3, 4
    ON CONFLICT ON CONSTRAINT stock_balance_key
    DO UPDATE SET base_quantity = b.base_quantity + excluded.base_quantity, updated_at = now();
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION plantsync.keep_stock_balance() IS 'Statement trigger of the movement ledger: adds the statement''s movements to plantsync.stock_balance.';
REVOKE EXECUTE ON FUNCTION plantsync.keep_stock_balance() FROM PUBLIC;
CREATE TRIGGER plantsync_stock_balance AFTER INSERT ON plantsync.material_movement
    REFERENCING NEW TABLE AS new_movements FOR EACH STATEMENT EXECUTE FUNCTION plantsync.keep_stock_balance();

CREATE FUNCTION plantsync.rebuild_stock_balance(p_site_id text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM plantsync.site WHERE site_id = p_site_id) THEN
        RAISE EXCEPTION 'site "%" does not exist', COALESCE(p_site_id, 'null') USING ERRCODE = 'foreign_key_violation';
    END IF;
    -- no movement may be written while the balance is recomputed
    LOCK TABLE plantsync.material_movement IN SHARE MODE;
    DELETE FROM plantsync.stock_balance WHERE site_id = p_site_id;
    INSERT INTO plantsync.stock_balance (site_id, material_id, lot_id, storage_location_id, base_quantity)
    SELECT p_site_id, legs.material_id, legs.lot_id, legs.location_id, sum(legs.q)
      FROM (SELECT m.material_id, m.lot_id, m.to_location_id AS location_id, m.base_quantity AS q
              FROM plantsync.material_movement m WHERE m.site_id = p_site_id AND m.to_location_id IS NOT NULL
            UNION ALL
            SELECT m.material_id, m.lot_id, m.from_location_id, -m.base_quantity
              FROM plantsync.material_movement m WHERE m.site_id = p_site_id AND m.from_location_id IS NOT NULL) legs
     GROUP BY legs.material_id, legs.lot_id, legs.location_id
    HAVING sum(legs.q) <> 0;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION plantsync.rebuild_stock_balance(text) IS 'Recomputes a plant''s plantsync.stock_balance from the movement ledger (after a bulk load that bypassed triggers, or to check it); returns the rows written. Blocks ledger writes while it runs.';
REVOKE EXECUTE ON FUNCTION plantsync.rebuild_stock_balance(text) FROM PUBLIC;
