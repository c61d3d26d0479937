-- Canonical logistics and maintenance data: shipments and their lines,
-- equipment counters with thresholds and the maintenance triggers they raise;
-- then the cross-row checks that foreign keys cannot express (a lot of the
-- right material, a serial of a serial-tracked material, a unit that converts).

CREATE TABLE plantsync.shipment (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    shipment_number text NOT NULL,
    status text NOT NULL DEFAULT 'planned',
    customer_code text NOT NULL,
    customer_name text NOT NULL DEFAULT '',
    planned_ship_date date,
    shipped_at timestamptz,
    erp_ref text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT shipment_site_number_key UNIQUE (site_id, shipment_number),
    CONSTRAINT shipment_site_id_key UNIQUE (site_id, id)
);
CREATE UNIQUE INDEX shipment_site_erp_ref_key ON plantsync.shipment (site_id, erp_ref) WHERE erp_ref IS NOT NULL;
CREATE INDEX shipment_customer_idx ON plantsync.shipment (customer_code);
COMMENT ON TABLE plantsync.shipment IS 'Outbound shipments to customers (SAP outbound delivery; ERPNext Delivery Note); the end of forward traceability.';
COMMENT ON COLUMN plantsync.shipment.id IS 'Key of the shipment, unique across plants.';
COMMENT ON COLUMN plantsync.shipment.site_id IS 'Shipping plant.';
COMMENT ON COLUMN plantsync.shipment.shipment_number IS 'Shipment number, unique per plant.';
COMMENT ON COLUMN plantsync.shipment.status IS 'State: planned, picking, packed, shipped, delivered, cancelled.';
COMMENT ON COLUMN plantsync.shipment.customer_code IS 'Customer number.';
COMMENT ON COLUMN plantsync.shipment.customer_name IS 'Customer name.';
COMMENT ON COLUMN plantsync.shipment.planned_ship_date IS 'Planned goods issue date.';
COMMENT ON COLUMN plantsync.shipment.shipped_at IS 'Actual goods issue time.';
COMMENT ON COLUMN plantsync.shipment.erp_ref IS 'Delivery number in the ERP, unique per plant.';
COMMENT ON COLUMN plantsync.shipment.updated_at IS 'When the row was last changed (kept by the guard trigger).';

CREATE TABLE plantsync.shipment_line (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    shipment_id uuid NOT NULL,
    line_number integer NOT NULL
        CONSTRAINT shipment_line_number_positive CHECK (line_number > 0),
    material_id uuid NOT NULL,
    lot_id uuid,
    serial_id uuid,
    quantity numeric NOT NULL
        CONSTRAINT shipment_line_quantity_positive CHECK (quantity > 0),
    uom text NOT NULL REFERENCES plantsync.uom,
    CONSTRAINT shipment_line_shipment_number_key UNIQUE (shipment_id, line_number),
    CONSTRAINT shipment_line_shipment_fk FOREIGN KEY (site_id, shipment_id) REFERENCES plantsync.shipment (site_id, id) ON DELETE CASCADE,
    CONSTRAINT shipment_line_material_fk FOREIGN KEY (site_id, material_id) REFERENCES plantsync.material (site_id, id),
    CONSTRAINT shipment_line_lot_fk FOREIGN KEY (site_id, lot_id) REFERENCES plantsync.lot (site_id, id),
    CONSTRAINT shipment_line_serial_fk FOREIGN KEY (site_id, serial_id) REFERENCES plantsync.serial (site_id, id)
);
CREATE INDEX shipment_line_lot_idx ON plantsync.shipment_line (lot_id);
CREATE INDEX shipment_line_serial_idx ON plantsync.shipment_line (serial_id) WHERE serial_id IS NOT NULL;
COMMENT ON TABLE plantsync.shipment_line IS 'Lines of a shipment: which material, lot and serial went to the customer.';
COMMENT ON COLUMN plantsync.shipment_line.id IS 'Key of the line.';
COMMENT ON COLUMN plantsync.shipment_line.site_id IS 'Shipping plant.';
COMMENT ON COLUMN plantsync.shipment_line.shipment_id IS 'Shipment the line belongs to.';
COMMENT ON COLUMN plantsync.shipment_line.line_number IS 'Line number within the shipment (positive).';
COMMENT ON COLUMN plantsync.shipment_line.material_id IS 'Material shipped.';
COMMENT ON COLUMN plantsync.shipment_line.lot_id IS 'Lot shipped; must be of material_id.';
COMMENT ON COLUMN plantsync.shipment_line.serial_id IS 'Serial shipped, for serial-tracked materials.';
COMMENT ON COLUMN plantsync.shipment_line.quantity IS 'Quantity (positive).';
COMMENT ON COLUMN plantsync.shipment_line.uom IS 'Unit of quantity; the material''s base unit or convertible to it.';

-- Readiness: a shipment can go when every lot on it is free to ship. Read
-- at any moment, so a usage decision that releases a lot makes the
-- shipments waiting for it ready at once.
CREATE VIEW plantsync.shipment_readiness WITH (security_invoker = true) AS
SELECT s.site_id, s.id AS shipment_id, s.shipment_number, s.status, count(sl.id) AS lines,
       count(sl.id) FILTER (WHERE l.disposition NOT IN ('unrestricted', 'shipped')) AS lines_held,
       count(sl.id) > 0 AND bool_and(l.disposition IS NULL OR l.disposition IN ('unrestricted', 'shipped')) AS ready,
       array_agg(DISTINCT format('%s (%s)', l.lot_number, l.disposition) ORDER BY format('%s (%s)', l.lot_number, l.disposition))
           FILTER (WHERE l.disposition NOT IN ('unrestricted', 'shipped')) AS held_lots
  FROM plantsync.shipment s
  LEFT JOIN plantsync.shipment_line sl ON sl.shipment_id = s.id
  LEFT JOIN plantsync.lot l ON l.id = sl.lot_id
 GROUP BY s.site_id, s.id, s.shipment_number, s.status;
COMMENT ON VIEW plantsync.shipment_readiness IS 'Whether each shipment may go: ready when it has lines and every lot on them is free (unrestricted, or shipped already by the ERP); the lots holding it back, with their disposition.';
COMMENT ON COLUMN plantsync.shipment_readiness.site_id IS 'Shipping plant.';
COMMENT ON COLUMN plantsync.shipment_readiness.shipment_id IS 'Shipment.';
COMMENT ON COLUMN plantsync.shipment_readiness.shipment_number IS 'Shipment number.';
COMMENT ON COLUMN plantsync.shipment_readiness.status IS 'Status of the shipment.';
COMMENT ON COLUMN plantsync.shipment_readiness.lines IS 'Lines.';
COMMENT ON COLUMN plantsync.shipment_readiness.lines_held IS 'Lines whose lot is held (restricted, blocked, rejected or otherwise not free).';
COMMENT ON COLUMN plantsync.shipment_readiness.ready IS 'Whether every lot on it is free (and it has lines).';
COMMENT ON COLUMN plantsync.shipment_readiness.held_lots IS 'The lots holding it back, as "lot (disposition)".';

-- The quality hold on shipping: goods issue of a shipment with a lot that
-- is not free is refused, whatever system asks.
CREATE FUNCTION plantsync.hold_shipment() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    held record;
BEGIN
    -- the lots are locked, so that a hold committing meanwhile waits for
    -- the goods issue or is seen by it
    PERFORM 1 FROM plantsync.shipment_line sl JOIN plantsync.lot l ON l.id = sl.lot_id
      WHERE sl.shipment_id = NEW.id FOR SHARE OF l;
    SELECT l.lot_number, l.disposition INTO held
      FROM plantsync.shipment_line sl JOIN plantsync.lot l ON l.id = sl.lot_id
     WHERE sl.shipment_id = NEW.id AND l.disposition NOT IN ('unrestricted', 'shipped')
     ORDER BY sl.line_number LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'shipment "%" cannot be shipped: lot "%" on it is %', NEW.shipment_number, held.lot_number, held.disposition
            USING ERRCODE = 'PS006',
                  DETAIL = 'Only unrestricted lots may be consumed or shipped.',
                  HINT = 'See plantsync.shipment_readiness; the lot must be released by a quality usage decision first.';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION plantsync.hold_shipment() IS 'Trigger function: a shipment is not goods-issued (shipped) while a lot on it is not unrestricted.';
REVOKE EXECUTE ON FUNCTION plantsync.hold_shipment() FROM PUBLIC;
CREATE TRIGGER plantsync_hold_shipment BEFORE UPDATE OF status ON plantsync.shipment
    FOR EACH ROW WHEN (NEW.status = 'shipped' AND OLD.status IS DISTINCT FROM 'shipped')
    EXECUTE FUNCTION plantsync.hold_shipment();

CREATE TABLE plantsync.maintenance_counter (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    equipment_id uuid NOT NULL,
    counter_name text NOT NULL,
    uom text NOT NULL REFERENCES plantsync.uom,
    current_value numeric NOT NULL DEFAULT 0
        CONSTRAINT maintenance_counter_value_nonnegative CHECK (current_value >= 0),
    threshold numeric NOT NULL
        CONSTRAINT maintenance_counter_threshold_positive CHECK (threshold > 0),
    last_reset_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT maintenance_counter_equipment_name_key UNIQUE (equipment_id, counter_name),
    CONSTRAINT maintenance_counter_site_id_key UNIQUE (site_id, id),
    CONSTRAINT maintenance_counter_equipment_fk FOREIGN KEY (site_id, equipment_id) REFERENCES plantsync.equipment (site_id, id)
);
COMMENT ON TABLE plantsync.maintenance_counter IS 'Equipment counters (strokes, cycles, operating hours) with the threshold at which maintenance is due.';
COMMENT ON COLUMN plantsync.maintenance_counter.id IS 'Key of the counter.';
COMMENT ON COLUMN plantsync.maintenance_counter.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.maintenance_counter.equipment_id IS 'Equipment counted.';
COMMENT ON COLUMN plantsync.maintenance_counter.counter_name IS 'Counter name, unique per equipment, e.g. press_strokes.';
COMMENT ON COLUMN plantsync.maintenance_counter.uom IS 'Unit of the counter.';
COMMENT ON COLUMN plantsync.maintenance_counter.current_value IS 'Value since the last reset (zero or more).';
COMMENT ON COLUMN plantsync.maintenance_counter.threshold IS 'Value at which a maintenance trigger is raised (positive).';
COMMENT ON COLUMN plantsync.maintenance_counter.last_reset_at IS 'When maintenance last reset the counter.';
COMMENT ON COLUMN plantsync.maintenance_counter.updated_at IS 'When the row was last changed (kept by the guard trigger).';

CREATE TABLE plantsync.maintenance_trigger (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    equipment_id uuid NOT NULL,
    counter_id uuid,
    downtime_event_id uuid,
    reason text NOT NULL,
    status text NOT NULL DEFAULT 'open'
        CONSTRAINT maintenance_trigger_status_check CHECK (status IN ('open', 'acknowledged', 'closed')),
    raised_at timestamptz NOT NULL DEFAULT now(),
    external_ref text,
    CONSTRAINT maintenance_trigger_equipment_fk FOREIGN KEY (site_id, equipment_id) REFERENCES plantsync.equipment (site_id, id),
    CONSTRAINT maintenance_trigger_counter_fk FOREIGN KEY (site_id, counter_id) REFERENCES plantsync.maintenance_counter (site_id, id),
    CONSTRAINT maintenance_trigger_downtime_fk FOREIGN KEY (downtime_event_id) REFERENCES plantsync.downtime_event (id),
    CONSTRAINT maintenance_trigger_has_cause CHECK (counter_id IS NOT NULL OR downtime_event_id IS NOT NULL)
);
CREATE INDEX maintenance_trigger_equipment_idx ON plantsync.maintenance_trigger (equipment_id, status);
COMMENT ON TABLE plantsync.maintenance_trigger IS 'Maintenance requests raised by a counter past its threshold or by downtime, for the maintenance system.';
COMMENT ON COLUMN plantsync.maintenance_trigger.id IS 'Key of the trigger.';
COMMENT ON COLUMN plantsync.maintenance_trigger.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.maintenance_trigger.equipment_id IS 'Equipment that needs maintenance.';
COMMENT ON COLUMN plantsync.maintenance_trigger.counter_id IS 'Counter that crossed its threshold, if that was the cause.';
COMMENT ON COLUMN plantsync.maintenance_trigger.downtime_event_id IS 'Downtime that raised it, if that was the cause.';
COMMENT ON COLUMN plantsync.maintenance_trigger.reason IS 'Why maintenance is requested.';
COMMENT ON COLUMN plantsync.maintenance_trigger.status IS 'open, acknowledged or closed.';
COMMENT ON COLUMN plantsync.maintenance_trigger.raised_at IS 'When it was raised.';
COMMENT ON COLUMN plantsync.maintenance_trigger.external_ref IS 'Notification or work order number in the maintenance system.';

-- Cross-row checks, one trigger function for the tables whose rows must agree
-- with their material: FKs prove a row exists, not that it is the right one.
CREATE FUNCTION plantsync.check_material_consistency() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mat record;
    other record;
    v_material_id uuid;
BEGIN
    CASE TG_TABLE_NAME
    WHEN 'lot' THEN
        SELECT material_number, lot_tracked INTO mat FROM plantsync.material WHERE id = NEW.material_id;
        IF FOUND AND NOT mat.lot_tracked THEN
            RAISE EXCEPTION 'material "%" is not lot-tracked: lot "%" cannot be created for it', mat.material_number, NEW.lot_number
                USING ERRCODE = 'invalid_parameter_value', COLUMN = 'material_id',
                      HINT = 'Set lot_tracked on the material in the ERP, or move it without a lot.';
        END IF;
    WHEN 'serial' THEN
        SELECT material_number, serial_tracked INTO mat FROM plantsync.material WHERE id = NEW.material_id;
        IF FOUND AND NOT mat.serial_tracked THEN
            RAISE EXCEPTION 'material "%" is not serial-tracked: serial "%" cannot be created for it', mat.material_number, NEW.serial_number
                USING ERRCODE = 'invalid_parameter_value', COLUMN = 'material_id';
        END IF;
        IF NEW.lot_id IS NOT NULL THEN
            SELECT l.lot_number, m.material_number, l.material_id INTO other
              FROM plantsync.lot l JOIN plantsync.material m ON m.id = l.material_id WHERE l.id = NEW.lot_id;
            IF FOUND AND other.material_id <> NEW.material_id THEN
                RAISE EXCEPTION 'lot "%" is of material "%", not of material "%"', other.lot_number, other.material_number, mat.material_number
                    USING ERRCODE = 'invalid_parameter_value', COLUMN = 'lot_id';
            END IF;
        END IF;
    WHEN 'inspection_lot' THEN
        SELECT l.material_id, l.lot_number, m.material_number INTO other
          FROM plantsync.lot l JOIN plantsync.material m ON m.id = l.material_id WHERE l.id = NEW.lot_id;
        IF FOUND THEN
            IF NEW.plan_id IS NOT NULL THEN
                SELECT p.plan_code, p.material_id, m.material_number INTO mat
                  FROM plantsync.inspection_plan p JOIN plantsync.material m ON m.id = p.material_id WHERE p.id = NEW.plan_id;
                IF FOUND AND mat.material_id <> other.material_id THEN
                    RAISE EXCEPTION 'inspection plan "%" is for material "%", not for material "%" of lot "%"',
                        mat.plan_code, mat.material_number, other.material_number, other.lot_number
                        USING ERRCODE = 'invalid_parameter_value', COLUMN = 'plan_id';
                END IF;
            END IF;
            PERFORM plantsync.to_base_quantity(other.material_id, NEW.quantity, NEW.uom);
        END IF;
    WHEN 'shipment_line' THEN
        SELECT material_number, serial_tracked, lot_tracked INTO mat FROM plantsync.material WHERE id = NEW.material_id;
        IF NOT FOUND THEN
            RETURN NEW;
        END IF;
        IF NEW.lot_id IS NULL AND mat.lot_tracked THEN
            RAISE EXCEPTION 'material "%" is lot-tracked: shipment line % must name its lot', mat.material_number, NEW.line_number
                USING ERRCODE = 'not_null_violation', COLUMN = 'lot_id';
        END IF;
        IF NEW.lot_id IS NOT NULL THEN
            SELECT l.lot_number, l.disposition, l.material_id, m.material_number INTO other
              FROM plantsync.lot l JOIN plantsync.material m ON m.id = l.material_id WHERE l.id = NEW.lot_id;
            IF FOUND AND other.material_id <> NEW.material_id THEN
                RAISE EXCEPTION 'lot "%" is of material "%", not of material "%"', other.lot_number, other.material_number, mat.material_number
                    USING ERRCODE = 'invalid_parameter_value', COLUMN = 'lot_id';
            END IF;
            IF FOUND AND other.disposition NOT IN ('unrestricted', 'shipped') THEN
                RAISE EXCEPTION 'lot "%" of material "%" is % and cannot be shipped', other.lot_number, mat.material_number, other.disposition
                    USING ERRCODE = 'PS006',
                          DETAIL = 'Only unrestricted lots may be shipped.',
                          HINT = 'The lot must be released by a quality usage decision first.';
            END IF;
        END IF;
        IF NEW.serial_id IS NOT NULL AND NOT mat.serial_tracked THEN
            RAISE EXCEPTION 'material "%" is not serial-tracked: shipment line % cannot name a serial', mat.material_number, NEW.line_number
                USING ERRCODE = 'invalid_parameter_value', COLUMN = 'serial_id';
        END IF;
        PERFORM plantsync.to_base_quantity(NEW.material_id, NEW.quantity, NEW.uom);
    WHEN 'production_order' THEN
        SELECT material_number INTO mat FROM plantsync.material WHERE id = NEW.material_id;
        IF NOT FOUND THEN
            RETURN NEW;         -- the foreign key reports it
        END IF;
        PERFORM plantsync.to_base_quantity(NEW.material_id, NEW.quantity, NEW.uom);
        IF NEW.bom_id IS NOT NULL THEN
            SELECT m.material_number, b.alternative, b.material_id INTO other
              FROM plantsync.bom b JOIN plantsync.material m ON m.id = b.material_id WHERE b.id = NEW.bom_id;
            IF FOUND AND other.material_id <> NEW.material_id THEN
                RAISE EXCEPTION 'BOM % of material "%" cannot be used for order "%" of material "%"',
                    other.alternative, other.material_number, NEW.order_number, mat.material_number
                    USING ERRCODE = 'invalid_parameter_value', COLUMN = 'bom_id';
            END IF;
        END IF;
        IF NEW.routing_id IS NOT NULL THEN
            SELECT m.material_number, r.alternative, r.material_id INTO other
              FROM plantsync.routing r JOIN plantsync.material m ON m.id = r.material_id WHERE r.id = NEW.routing_id;
            IF FOUND AND other.material_id <> NEW.material_id THEN
                RAISE EXCEPTION 'routing % of material "%" cannot be used for order "%" of material "%"',
                    other.alternative, other.material_number, NEW.order_number, mat.material_number
                    USING ERRCODE = 'invalid_parameter_value', COLUMN = 'routing_id';
            END IF;
        END IF;
    WHEN 'production_confirmation' THEN
        SELECT o.material_id, o.order_number, op.operation_number, op.order_id INTO other
          FROM plantsync.production_operation op JOIN plantsync.production_order o ON o.id = op.order_id
         WHERE op.id = NEW.operation_id;
        IF FOUND THEN
            IF other.order_id <> NEW.order_id THEN
                RAISE EXCEPTION 'operation "%" of order "%" does not belong to order "%"', other.operation_number, other.order_number,
                    (SELECT order_number FROM plantsync.production_order WHERE id = NEW.order_id)
                    USING ERRCODE = 'invalid_parameter_value', COLUMN = 'operation_id';
            END IF;
            PERFORM plantsync.to_base_quantity(other.material_id, NEW.yield_quantity + NEW.scrap_quantity + NEW.rework_quantity, NEW.uom);
        END IF;
    WHEN 'bom_item' THEN
        PERFORM plantsync.to_base_quantity(NEW.component_material_id, NEW.quantity, NEW.uom);
    ELSE
        RAISE EXCEPTION 'plantsync.check_material_consistency() is not meant for table "%"', TG_TABLE_NAME
            USING ERRCODE = 'feature_not_supported';
    END CASE;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION plantsync.check_material_consistency() IS
'Trigger function: checks what foreign keys cannot (a lot of the right material, serials only for serial-tracked materials, units that convert to the base unit, quality holds on shipment lines).';

CREATE TRIGGER plantsync_check_material_consistency BEFORE INSERT OR UPDATE OF material_id ON plantsync.lot
    FOR EACH ROW EXECUTE FUNCTION plantsync.check_material_consistency();
CREATE TRIGGER plantsync_check_material_consistency BEFORE INSERT OR UPDATE OF material_id, lot_id ON plantsync.serial
    FOR EACH ROW EXECUTE FUNCTION plantsync.check_material_consistency();
CREATE TRIGGER plantsync_check_material_consistency BEFORE INSERT OR UPDATE OF lot_id, plan_id, quantity, uom ON plantsync.inspection_lot
    FOR EACH ROW EXECUTE FUNCTION plantsync.check_material_consistency();
CREATE TRIGGER plantsync_check_material_consistency BEFORE INSERT OR UPDATE ON plantsync.shipment_line
    FOR EACH ROW EXECUTE FUNCTION plantsync.check_material_consistency();
CREATE TRIGGER plantsync_check_material_consistency BEFORE INSERT OR UPDATE OF material_id, quantity, uom, bom_id, routing_id ON plantsync.production_order
    FOR EACH ROW EXECUTE FUNCTION plantsync.check_material_consistency();
CREATE TRIGGER plantsync_check_material_consistency BEFORE INSERT OR UPDATE ON plantsync.production_confirmation
    FOR EACH ROW EXECUTE FUNCTION plantsync.check_material_consistency();
CREATE TRIGGER plantsync_check_material_consistency BEFORE INSERT OR UPDATE ON plantsync.bom_item
    FOR EACH ROW EXECUTE FUNCTION plantsync.check_material_consistency();
