-- Canonical execution data: production orders and their operations (jobs),
-- production confirmations and downtime. State columns are governed by the
-- state machines in src/state_machine, not by CHECK constraints, so a plant
-- can add a state or transition as data.

CREATE TABLE plantsync.production_order (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    order_number text NOT NULL,
    material_id uuid NOT NULL,
    bom_id uuid,
    routing_id uuid,
    line_id uuid,
    quantity numeric NOT NULL
        CONSTRAINT production_order_quantity_positive CHECK (quantity > 0),
    uom text NOT NULL REFERENCES plantsync.uom,
    status text NOT NULL DEFAULT 'draft',
    priority smallint NOT NULL DEFAULT 5
        CONSTRAINT production_order_priority_range CHECK (priority BETWEEN 1 AND 9),
    due_date date NOT NULL,
    scheduled_start timestamptz,
    scheduled_end timestamptz,
    erp_ref text,
    mes_ref text,
    qms_ref text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT production_order_site_number_key UNIQUE (site_id, order_number),
    CONSTRAINT production_order_site_id_key UNIQUE (site_id, id),
    CONSTRAINT production_order_material_fk FOREIGN KEY (site_id, material_id) REFERENCES plantsync.material (site_id, id),
    CONSTRAINT production_order_bom_fk FOREIGN KEY (site_id, bom_id) REFERENCES plantsync.bom (site_id, id),
    CONSTRAINT production_order_routing_fk FOREIGN KEY (site_id, routing_id) REFERENCES plantsync.routing (site_id, id),
    CONSTRAINT production_order_line_fk FOREIGN KEY (site_id, line_id) REFERENCES plantsync.equipment (site_id, id),
    CONSTRAINT production_order_schedule_order CHECK (scheduled_start IS NULL OR scheduled_end IS NULL OR scheduled_start <= scheduled_end)
);
CREATE UNIQUE INDEX production_order_site_erp_ref_key ON plantsync.production_order (site_id, erp_ref) WHERE erp_ref IS NOT NULL;
CREATE UNIQUE INDEX production_order_site_mes_ref_key ON plantsync.production_order (site_id, mes_ref) WHERE mes_ref IS NOT NULL;
CREATE INDEX production_order_status_idx ON plantsync.production_order (site_id, status, due_date);
CREATE INDEX production_order_material_idx ON plantsync.production_order (material_id);
COMMENT ON TABLE plantsync.production_order IS 'Production orders (ISA-95 OperationsRequest / ProductionRequest; ERPNext Work Order; SAP production order). ERP owns what to make and when; MES owns the execution status.';
COMMENT ON COLUMN plantsync.production_order.id IS 'Key of the order, unique across plants.';
COMMENT ON COLUMN plantsync.production_order.site_id IS 'Plant that executes the order.';
COMMENT ON COLUMN plantsync.production_order.order_number IS 'Order number, unique within the plant.';
COMMENT ON COLUMN plantsync.production_order.material_id IS 'Material to produce.';
COMMENT ON COLUMN plantsync.production_order.bom_id IS 'BOM the order consumes against.';
COMMENT ON COLUMN plantsync.production_order.routing_id IS 'Routing the order follows.';
COMMENT ON COLUMN plantsync.production_order.line_id IS 'Production line (equipment) the order is scheduled on.';
COMMENT ON COLUMN plantsync.production_order.quantity IS 'Quantity to produce (positive).';
COMMENT ON COLUMN plantsync.production_order.uom IS 'Unit of quantity; the material''s base unit or convertible to it.';
COMMENT ON COLUMN plantsync.production_order.status IS 'State: draft, released, in_progress, held, completed, closed, cancelled, aborted (see plantsync.state_transition).';
COMMENT ON COLUMN plantsync.production_order.priority IS 'Priority 1 (highest) to 9.';
COMMENT ON COLUMN plantsync.production_order.due_date IS 'Date the ERP expects the order finished.';
COMMENT ON COLUMN plantsync.production_order.scheduled_start IS 'Scheduled start.';
COMMENT ON COLUMN plantsync.production_order.scheduled_end IS 'Scheduled end.';
COMMENT ON COLUMN plantsync.production_order.erp_ref IS 'Order number in the ERP (SAP AUFNR, ERPNext Work Order name), unique per plant.';
COMMENT ON COLUMN plantsync.production_order.mes_ref IS 'Order or job identifier in the MES, unique per plant.';
COMMENT ON COLUMN plantsync.production_order.qms_ref IS 'Reference of the order in the QMS.';
COMMENT ON COLUMN plantsync.production_order.created_at IS 'When the order row was created.';
COMMENT ON COLUMN plantsync.production_order.updated_at IS 'When the order row was last changed (kept by the guard trigger).';

CREATE TABLE plantsync.production_operation (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    order_id uuid NOT NULL,
    operation_number text NOT NULL,
    routing_operation_id uuid,
    work_center_id uuid NOT NULL,
    process_segment text NOT NULL,
    status text NOT NULL DEFAULT 'waiting',
    planned_quantity numeric NOT NULL
        CONSTRAINT production_operation_planned_quantity_positive CHECK (planned_quantity > 0),
    actual_start timestamptz,
    actual_end timestamptz,
    erp_ref text,
    mes_ref text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT production_operation_order_number_key UNIQUE (order_id, operation_number),
    CONSTRAINT production_operation_site_id_key UNIQUE (site_id, id),
    CONSTRAINT production_operation_order_fk FOREIGN KEY (site_id, order_id) REFERENCES plantsync.production_order (site_id, id),
    CONSTRAINT production_operation_routing_operation_fk FOREIGN KEY (site_id, routing_operation_id) REFERENCES plantsync.routing_operation (site_id, id),
    CONSTRAINT production_operation_work_center_fk FOREIGN KEY (site_id, work_center_id) REFERENCES plantsync.equipment (site_id, id),
    CONSTRAINT production_operation_actual_order CHECK (actual_start IS NULL OR actual_end IS NULL OR actual_start <= actual_end)
);
CREATE UNIQUE INDEX production_operation_site_mes_ref_key ON plantsync.production_operation (site_id, mes_ref) WHERE mes_ref IS NOT NULL;
CREATE INDEX production_operation_work_center_idx ON plantsync.production_operation (work_center_id, status);
COMMENT ON TABLE plantsync.production_operation IS 'Operations of a production order as executed (ISA-95 JobOrder; ERPNext Job Card; SAP order operation).';
COMMENT ON COLUMN plantsync.production_operation.id IS 'Key of the operation, unique across plants.';
COMMENT ON COLUMN plantsync.production_operation.site_id IS 'Plant of the order.';
COMMENT ON COLUMN plantsync.production_operation.order_id IS 'Production order the operation belongs to.';
COMMENT ON COLUMN plantsync.production_operation.operation_number IS 'Operation number within the order, e.g. 0010.';
COMMENT ON COLUMN plantsync.production_operation.routing_operation_id IS 'Routing operation it was created from.';
COMMENT ON COLUMN plantsync.production_operation.work_center_id IS 'Work center that executes it.';
COMMENT ON COLUMN plantsync.production_operation.process_segment IS 'ISA-95 ProcessSegmentID.';
COMMENT ON COLUMN plantsync.production_operation.status IS 'State: waiting, ready, dispatched, running, held, suspended, completed, closed, cancelled, aborted.';
COMMENT ON COLUMN plantsync.production_operation.planned_quantity IS 'Quantity planned for this operation (positive), in the order''s unit.';
COMMENT ON COLUMN plantsync.production_operation.actual_start IS 'When execution started.';
COMMENT ON COLUMN plantsync.production_operation.actual_end IS 'When execution ended.';
COMMENT ON COLUMN plantsync.production_operation.erp_ref IS 'Operation reference in the ERP (SAP VORNR / confirmation counter).';
COMMENT ON COLUMN plantsync.production_operation.mes_ref IS 'Job identifier in the MES, unique per plant.';
COMMENT ON COLUMN plantsync.production_operation.updated_at IS 'When the row was last changed (kept by the guard trigger).';

CREATE TABLE plantsync.production_confirmation (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    order_id uuid NOT NULL,
    operation_id uuid NOT NULL,
    yield_quantity numeric NOT NULL DEFAULT 0
        CONSTRAINT production_confirmation_yield_nonnegative CHECK (yield_quantity >= 0),
    scrap_quantity numeric NOT NULL DEFAULT 0
        CONSTRAINT production_confirmation_scrap_nonnegative CHECK (scrap_quantity >= 0),
    rework_quantity numeric NOT NULL DEFAULT 0
        CONSTRAINT production_confirmation_rework_nonnegative CHECK (rework_quantity >= 0),
    uom text NOT NULL REFERENCES plantsync.uom,
    labour_minutes numeric NOT NULL DEFAULT 0
        CONSTRAINT production_confirmation_labour_nonnegative CHECK (labour_minutes >= 0),
    machine_minutes numeric NOT NULL DEFAULT 0
        CONSTRAINT production_confirmation_machine_nonnegative CHECK (machine_minutes >= 0),
    is_final boolean NOT NULL DEFAULT false,
    confirmed_at timestamptz NOT NULL DEFAULT now(),
    source_system text NOT NULL REFERENCES plantsync.source_system,
    external_id text NOT NULL,
    erp_document text,
    CONSTRAINT production_confirmation_external_id_key UNIQUE (site_id, source_system, external_id),
    CONSTRAINT production_confirmation_order_fk FOREIGN KEY (site_id, order_id) REFERENCES plantsync.production_order (site_id, id),
    CONSTRAINT production_confirmation_operation_fk FOREIGN KEY (site_id, operation_id) REFERENCES plantsync.production_operation (site_id, id),
    CONSTRAINT production_confirmation_something_confirmed CHECK (yield_quantity + scrap_quantity + rework_quantity > 0 OR labour_minutes + machine_minutes > 0 OR is_final)
);
CREATE INDEX production_confirmation_order_idx ON plantsync.production_confirmation (order_id, confirmed_at);
CREATE INDEX production_confirmation_operation_idx ON plantsync.production_confirmation (operation_id);
COMMENT ON TABLE plantsync.production_confirmation IS 'Production confirmations reported by the MES (ISA-95 SegmentResponse; SAP ProdnOrdConf2; ERPNext Job Card time logs): yield, scrap, rework and times.';
COMMENT ON COLUMN plantsync.production_confirmation.id IS 'Key of the confirmation.';
COMMENT ON COLUMN plantsync.production_confirmation.site_id IS 'Plant of the order.';
COMMENT ON COLUMN plantsync.production_confirmation.order_id IS 'Production order confirmed.';
COMMENT ON COLUMN plantsync.production_confirmation.operation_id IS 'Operation confirmed; must belong to order_id.';
COMMENT ON COLUMN plantsync.production_confirmation.yield_quantity IS 'Good quantity (zero or more).';
COMMENT ON COLUMN plantsync.production_confirmation.scrap_quantity IS 'Scrapped quantity (zero or more).';
COMMENT ON COLUMN plantsync.production_confirmation.rework_quantity IS 'Quantity sent to rework (zero or more).';
COMMENT ON COLUMN plantsync.production_confirmation.uom IS 'Unit of the quantities; the order''s unit or convertible to it.';
COMMENT ON COLUMN plantsync.production_confirmation.labour_minutes IS 'Labour time in minutes.';
COMMENT ON COLUMN plantsync.production_confirmation.machine_minutes IS 'Machine time in minutes.';
COMMENT ON COLUMN plantsync.production_confirmation.is_final IS 'True for the final confirmation of the operation.';
COMMENT ON COLUMN plantsync.production_confirmation.confirmed_at IS 'When the work was confirmed on the floor.';
COMMENT ON COLUMN plantsync.production_confirmation.source_system IS 'System that reported the confirmation.';
COMMENT ON COLUMN plantsync.production_confirmation.external_id IS 'Identifier of the confirmation in the reporting system; unique per plant and system, so a repeated report is refused.';
COMMENT ON COLUMN plantsync.production_confirmation.erp_document IS 'Confirmation number the ERP returned (SAP RUECK/RMZHL, ERPNext Job Card).';

CREATE TABLE plantsync.downtime_event (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    equipment_id uuid NOT NULL,
    order_id uuid,
    started_at timestamptz NOT NULL,
    ended_at timestamptz,
    category text NOT NULL DEFAULT 'unplanned'
        CONSTRAINT downtime_event_category_check CHECK (category IN ('planned', 'unplanned', 'changeover', 'maintenance', 'quality', 'material_shortage')),
    reason_code text NOT NULL,
    description text NOT NULL DEFAULT '',
    source_system text NOT NULL REFERENCES plantsync.source_system,
    external_id text NOT NULL,
    CONSTRAINT downtime_event_external_id_key UNIQUE (site_id, source_system, external_id),
    CONSTRAINT downtime_event_equipment_fk FOREIGN KEY (site_id, equipment_id) REFERENCES plantsync.equipment (site_id, id),
    CONSTRAINT downtime_event_order_fk FOREIGN KEY (site_id, order_id) REFERENCES plantsync.production_order (site_id, id),
    CONSTRAINT downtime_event_period_order CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE INDEX downtime_event_equipment_idx ON plantsync.downtime_event (equipment_id, started_at);
COMMENT ON TABLE plantsync.downtime_event IS 'Equipment downtime reported by the MES (for OEE, maintenance triggers and ERP capacity).';
COMMENT ON COLUMN plantsync.downtime_event.id IS 'Key of the downtime event.';
COMMENT ON COLUMN plantsync.downtime_event.site_id IS 'Plant of the equipment.';
COMMENT ON COLUMN plantsync.downtime_event.equipment_id IS 'Equipment that was down.';
COMMENT ON COLUMN plantsync.downtime_event.order_id IS 'Order running when it went down, if any.';
COMMENT ON COLUMN plantsync.downtime_event.started_at IS 'Start of the downtime.';
COMMENT ON COLUMN plantsync.downtime_event.ended_at IS 'End of the downtime; NULL while ongoing.';
COMMENT ON COLUMN plantsync.downtime_event.category IS 'planned, unplanned, changeover, maintenance, quality or material_shortage.';
COMMENT ON COLUMN plantsync.downtime_event.reason_code IS 'Plant reason code.';
COMMENT ON COLUMN plantsync.downtime_event.description IS 'Free text.';
COMMENT ON COLUMN plantsync.downtime_event.source_system IS 'System that reported it.';
COMMENT ON COLUMN plantsync.downtime_event.external_id IS 'Identifier in the reporting system; unique per plant and system.';
