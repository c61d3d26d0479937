-- Canonical quality data: inspection plans and characteristics, inspection
-- lots with their results and usage decisions, nonconformances and CAPA.

CREATE TABLE plantsync.inspection_plan (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    plan_code text NOT NULL,
    version integer NOT NULL DEFAULT 1
        CONSTRAINT inspection_plan_version_positive CHECK (version > 0),
    material_id uuid NOT NULL,
    inspection_type text NOT NULL
        CONSTRAINT inspection_plan_type_check CHECK (inspection_type IN ('incoming', 'in_process', 'final')),
    sample_size integer NOT NULL DEFAULT 1
        CONSTRAINT inspection_plan_sample_size_positive CHECK (sample_size > 0),
    active boolean NOT NULL DEFAULT true,
    qms_ref text,
    CONSTRAINT inspection_plan_site_code_version_key UNIQUE (site_id, plan_code, version),
    CONSTRAINT inspection_plan_site_id_key UNIQUE (site_id, id),
    CONSTRAINT inspection_plan_material_fk FOREIGN KEY (site_id, material_id) REFERENCES plantsync.material (site_id, id)
);
CREATE INDEX inspection_plan_material_idx ON plantsync.inspection_plan (material_id, inspection_type) WHERE active;
COMMENT ON TABLE plantsync.inspection_plan IS 'Inspection plans (ISA-95 TestSpecification; SAP inspection plan; ERPNext Quality Inspection Template).';
COMMENT ON COLUMN plantsync.inspection_plan.id IS 'Key of the plan.';
COMMENT ON COLUMN plantsync.inspection_plan.site_id IS 'Plant of the plan.';
COMMENT ON COLUMN plantsync.inspection_plan.plan_code IS 'Plan code, unique per plant together with version.';
COMMENT ON COLUMN plantsync.inspection_plan.version IS 'Plan version (positive).';
COMMENT ON COLUMN plantsync.inspection_plan.material_id IS 'Material inspected.';
COMMENT ON COLUMN plantsync.inspection_plan.inspection_type IS 'incoming, in_process or final.';
COMMENT ON COLUMN plantsync.inspection_plan.sample_size IS 'Number of samples per inspection lot.';
COMMENT ON COLUMN plantsync.inspection_plan.active IS 'Whether the plan is used for new inspection lots.';
COMMENT ON COLUMN plantsync.inspection_plan.qms_ref IS 'Identifier in the QMS.';

CREATE TABLE plantsync.inspection_characteristic (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    plan_id uuid NOT NULL,
    characteristic_number text NOT NULL,
    name text NOT NULL,
    kind text NOT NULL
        CONSTRAINT inspection_characteristic_kind_check CHECK (kind IN ('quantitative', 'qualitative')),
    target_value numeric,
    lower_limit numeric,
    upper_limit numeric,
    uom text REFERENCES plantsync.uom,
    CONSTRAINT inspection_characteristic_plan_number_key UNIQUE (plan_id, characteristic_number),
    CONSTRAINT inspection_characteristic_site_id_key UNIQUE (site_id, id),
    CONSTRAINT inspection_characteristic_plan_fk FOREIGN KEY (site_id, plan_id) REFERENCES plantsync.inspection_plan (site_id, id) ON DELETE CASCADE,
    CONSTRAINT inspection_characteristic_limits_order CHECK (lower_limit IS NULL OR upper_limit IS NULL OR lower_limit <= upper_limit),
    CONSTRAINT inspection_characteristic_qualitative_no_limits CHECK (kind = 'quantitative' OR (lower_limit IS NULL AND upper_limit IS NULL AND target_value IS NULL))
);
COMMENT ON TABLE plantsync.inspection_characteristic IS 'Characteristics an inspection plan measures (ISA-95 EvaluatedProperty with its criteria).';
COMMENT ON COLUMN plantsync.inspection_characteristic.id IS 'Key of the characteristic.';
COMMENT ON COLUMN plantsync.inspection_characteristic.site_id IS 'Plant of the plan.';
COMMENT ON COLUMN plantsync.inspection_characteristic.plan_id IS 'Plan the characteristic belongs to.';
COMMENT ON COLUMN plantsync.inspection_characteristic.characteristic_number IS 'Number within the plan, e.g. 10.';
COMMENT ON COLUMN plantsync.inspection_characteristic.name IS 'What is measured, e.g. viscosity.';
COMMENT ON COLUMN plantsync.inspection_characteristic.kind IS 'quantitative (measured value within limits) or qualitative (pass/fail attribute).';
COMMENT ON COLUMN plantsync.inspection_characteristic.target_value IS 'Target value, for quantitative characteristics.';
COMMENT ON COLUMN plantsync.inspection_characteristic.lower_limit IS 'Lower specification limit.';
COMMENT ON COLUMN plantsync.inspection_characteristic.upper_limit IS 'Upper specification limit.';
COMMENT ON COLUMN plantsync.inspection_characteristic.uom IS 'Unit of the measured value.';

CREATE TABLE plantsync.inspection_lot (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    inspection_lot_number text NOT NULL,
    lot_id uuid NOT NULL,
    plan_id uuid,
    production_order_id uuid,
    inspection_type text NOT NULL
        CONSTRAINT inspection_lot_type_check CHECK (inspection_type IN ('incoming', 'in_process', 'final')),
    quantity numeric NOT NULL
        CONSTRAINT inspection_lot_quantity_positive CHECK (quantity > 0),
    uom text NOT NULL REFERENCES plantsync.uom,
    status text NOT NULL DEFAULT 'created',
    qms_ref text,
    erp_ref text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT inspection_lot_site_number_key UNIQUE (site_id, inspection_lot_number),
    CONSTRAINT inspection_lot_site_id_key UNIQUE (site_id, id),
    CONSTRAINT inspection_lot_lot_fk FOREIGN KEY (site_id, lot_id) REFERENCES plantsync.lot (site_id, id),
    CONSTRAINT inspection_lot_plan_fk FOREIGN KEY (site_id, plan_id) REFERENCES plantsync.inspection_plan (site_id, id),
    CONSTRAINT inspection_lot_production_order_fk FOREIGN KEY (site_id, production_order_id) REFERENCES plantsync.production_order (site_id, id)
);
CREATE UNIQUE INDEX inspection_lot_site_qms_ref_key ON plantsync.inspection_lot (site_id, qms_ref) WHERE qms_ref IS NOT NULL;
CREATE INDEX inspection_lot_lot_idx ON plantsync.inspection_lot (lot_id);
CREATE INDEX inspection_lot_status_idx ON plantsync.inspection_lot (site_id, status);
COMMENT ON TABLE plantsync.inspection_lot IS 'Inspection lots: a request to inspect a quantity of a lot (SAP inspection lot; ERPNext Quality Inspection).';
COMMENT ON COLUMN plantsync.inspection_lot.id IS 'Key of the inspection lot, unique across plants.';
COMMENT ON COLUMN plantsync.inspection_lot.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.inspection_lot.inspection_lot_number IS 'Inspection lot number, unique per plant.';
COMMENT ON COLUMN plantsync.inspection_lot.lot_id IS 'Material lot inspected.';
COMMENT ON COLUMN plantsync.inspection_lot.plan_id IS 'Inspection plan used; must be for the lot''s material.';
COMMENT ON COLUMN plantsync.inspection_lot.production_order_id IS 'Order that produced the lot, for in-process and final inspections.';
COMMENT ON COLUMN plantsync.inspection_lot.inspection_type IS 'incoming, in_process or final.';
COMMENT ON COLUMN plantsync.inspection_lot.quantity IS 'Quantity under inspection (positive).';
COMMENT ON COLUMN plantsync.inspection_lot.uom IS 'Unit of quantity; the lot material''s base unit or convertible to it.';
COMMENT ON COLUMN plantsync.inspection_lot.status IS 'State: created, released, results_recorded, accepted, rejected, stock_posted, closed, cancelled.';
COMMENT ON COLUMN plantsync.inspection_lot.qms_ref IS 'Inspection lot identifier in the QMS, unique per plant.';
COMMENT ON COLUMN plantsync.inspection_lot.erp_ref IS 'Inspection lot identifier in the ERP (SAP PRUEFLOS).';
COMMENT ON COLUMN plantsync.inspection_lot.created_at IS 'When the inspection lot was created.';
COMMENT ON COLUMN plantsync.inspection_lot.updated_at IS 'When the row was last changed (kept by the guard trigger).';

CREATE TABLE plantsync.inspection_result (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    inspection_lot_id uuid NOT NULL,
    characteristic_id uuid NOT NULL,
    sample_number integer NOT NULL DEFAULT 1
        CONSTRAINT inspection_result_sample_number_positive CHECK (sample_number > 0),
    measured_value numeric,
    attribute_value text,
    uom text REFERENCES plantsync.uom,
    is_conforming boolean NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    recorded_by text NOT NULL,
    source_system text NOT NULL REFERENCES plantsync.source_system,
    external_id text NOT NULL,
    CONSTRAINT inspection_result_external_id_key UNIQUE (site_id, source_system, external_id),
    CONSTRAINT inspection_result_inspection_lot_fk FOREIGN KEY (site_id, inspection_lot_id) REFERENCES plantsync.inspection_lot (site_id, id),
    CONSTRAINT inspection_result_characteristic_fk FOREIGN KEY (site_id, characteristic_id) REFERENCES plantsync.inspection_characteristic (site_id, id),
    CONSTRAINT inspection_result_has_value CHECK (measured_value IS NOT NULL OR attribute_value IS NOT NULL)
);
CREATE INDEX inspection_result_inspection_lot_idx ON plantsync.inspection_result (inspection_lot_id, characteristic_id, sample_number);
COMMENT ON TABLE plantsync.inspection_result IS 'Inspection results per characteristic and sample (ISA-95 TestResult). Every reading is kept, including superseded ones: regulators cite systems that keep only the last value.';
COMMENT ON COLUMN plantsync.inspection_result.id IS 'Key of the result.';
COMMENT ON COLUMN plantsync.inspection_result.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.inspection_result.inspection_lot_id IS 'Inspection lot the result belongs to.';
COMMENT ON COLUMN plantsync.inspection_result.characteristic_id IS 'Characteristic measured.';
COMMENT ON COLUMN plantsync.inspection_result.sample_number IS 'Sample number (1-based).';
COMMENT ON COLUMN plantsync.inspection_result.measured_value IS 'Measured value, for quantitative characteristics.';
COMMENT ON COLUMN plantsync.inspection_result.attribute_value IS 'Observed attribute, for qualitative characteristics.';
COMMENT ON COLUMN plantsync.inspection_result.uom IS 'Unit of measured_value.';
COMMENT ON COLUMN plantsync.inspection_result.is_conforming IS 'Whether the reading is within specification.';
COMMENT ON COLUMN plantsync.inspection_result.recorded_at IS 'When the reading was taken.';
COMMENT ON COLUMN plantsync.inspection_result.recorded_by IS 'Inspector or instrument that took the reading.';
COMMENT ON COLUMN plantsync.inspection_result.source_system IS 'System that reported the reading.';
COMMENT ON COLUMN plantsync.inspection_result.external_id IS 'Identifier in the reporting system; unique per plant and system.';

CREATE TABLE plantsync.usage_decision (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    inspection_lot_id uuid NOT NULL,
    decision text NOT NULL
        CONSTRAINT usage_decision_decision_check CHECK (decision IN ('accept', 'reject', 'partial')),
    decision_code text,
    quantity_unrestricted numeric NOT NULL DEFAULT 0
        CONSTRAINT usage_decision_unrestricted_nonnegative CHECK (quantity_unrestricted >= 0),
    quantity_blocked numeric NOT NULL DEFAULT 0
        CONSTRAINT usage_decision_blocked_nonnegative CHECK (quantity_blocked >= 0),
    quantity_scrapped numeric NOT NULL DEFAULT 0
        CONSTRAINT usage_decision_scrapped_nonnegative CHECK (quantity_scrapped >= 0),
    decided_at timestamptz NOT NULL DEFAULT now(),
    decided_by text NOT NULL,
    comment text,
    qms_ref text,
    CONSTRAINT usage_decision_inspection_lot_key UNIQUE (inspection_lot_id),
    CONSTRAINT usage_decision_inspection_lot_fk FOREIGN KEY (site_id, inspection_lot_id) REFERENCES plantsync.inspection_lot (site_id, id),
    CONSTRAINT usage_decision_partial_quantities CHECK (decision <> 'partial' OR quantity_unrestricted + quantity_blocked + quantity_scrapped > 0)
);
COMMENT ON TABLE plantsync.usage_decision IS 'Usage decisions on inspection lots: accept, reject, or partial with the quantities to free, block and scrap (SAP usage decision; ERPNext Quality Inspection status).';
COMMENT ON COLUMN plantsync.usage_decision.id IS 'Key of the decision.';
COMMENT ON COLUMN plantsync.usage_decision.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.usage_decision.inspection_lot_id IS 'Inspection lot decided (one decision per inspection lot).';
COMMENT ON COLUMN plantsync.usage_decision.decision IS 'accept, reject or partial.';
COMMENT ON COLUMN plantsync.usage_decision.decision_code IS 'Decision code in the QMS or ERP (SAP VCODE), e.g. A1.';
COMMENT ON COLUMN plantsync.usage_decision.quantity_unrestricted IS 'Quantity released to unrestricted stock (partial decisions).';
COMMENT ON COLUMN plantsync.usage_decision.quantity_blocked IS 'Quantity moved to blocked stock (partial decisions).';
COMMENT ON COLUMN plantsync.usage_decision.quantity_scrapped IS 'Quantity scrapped (partial decisions).';
COMMENT ON COLUMN plantsync.usage_decision.decided_at IS 'When the decision was taken.';
COMMENT ON COLUMN plantsync.usage_decision.decided_by IS 'Person who took the decision.';
COMMENT ON COLUMN plantsync.usage_decision.comment IS 'Free text.';
COMMENT ON COLUMN plantsync.usage_decision.qms_ref IS 'Identifier in the QMS.';

CREATE TABLE plantsync.nonconformance (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    nc_number text NOT NULL,
    status text NOT NULL DEFAULT 'draft',
    severity text NOT NULL DEFAULT 'major'
        CONSTRAINT nonconformance_severity_check CHECK (severity IN ('minor', 'major', 'critical')),
    title text NOT NULL,
    description text NOT NULL DEFAULT '',
    material_id uuid,
    lot_id uuid,
    inspection_lot_id uuid,
    production_order_id uuid,
    opened_at timestamptz NOT NULL DEFAULT now(),
    closed_at timestamptz,
    qms_ref text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT nonconformance_site_number_key UNIQUE (site_id, nc_number),
    CONSTRAINT nonconformance_site_id_key UNIQUE (site_id, id),
    CONSTRAINT nonconformance_material_fk FOREIGN KEY (site_id, material_id) REFERENCES plantsync.material (site_id, id),
    CONSTRAINT nonconformance_lot_fk FOREIGN KEY (site_id, lot_id) REFERENCES plantsync.lot (site_id, id),
    CONSTRAINT nonconformance_inspection_lot_fk FOREIGN KEY (site_id, inspection_lot_id) REFERENCES plantsync.inspection_lot (site_id, id),
    CONSTRAINT nonconformance_production_order_fk FOREIGN KEY (site_id, production_order_id) REFERENCES plantsync.production_order (site_id, id),
    CONSTRAINT nonconformance_closed_after_opened CHECK (closed_at IS NULL OR closed_at >= opened_at)
);
CREATE UNIQUE INDEX nonconformance_site_qms_ref_key ON plantsync.nonconformance (site_id, qms_ref) WHERE qms_ref IS NOT NULL;
CREATE INDEX nonconformance_lot_idx ON plantsync.nonconformance (lot_id);
CREATE INDEX nonconformance_status_idx ON plantsync.nonconformance (site_id, status);
COMMENT ON TABLE plantsync.nonconformance IS 'Nonconformance cases (ERPNext Non Conformance; OCA mgmtsystem.nonconformity).';
COMMENT ON COLUMN plantsync.nonconformance.id IS 'Key of the case, unique across plants.';
COMMENT ON COLUMN plantsync.nonconformance.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.nonconformance.nc_number IS 'Case number, unique per plant.';
COMMENT ON COLUMN plantsync.nonconformance.status IS 'State: draft, analysis, action_plan, in_progress, closed, cancelled.';
COMMENT ON COLUMN plantsync.nonconformance.severity IS 'minor, major or critical.';
COMMENT ON COLUMN plantsync.nonconformance.title IS 'Short statement of the problem.';
COMMENT ON COLUMN plantsync.nonconformance.description IS 'Full description.';
COMMENT ON COLUMN plantsync.nonconformance.material_id IS 'Material concerned.';
COMMENT ON COLUMN plantsync.nonconformance.lot_id IS 'Lot concerned.';
COMMENT ON COLUMN plantsync.nonconformance.inspection_lot_id IS 'Inspection lot that found it.';
COMMENT ON COLUMN plantsync.nonconformance.production_order_id IS 'Order concerned.';
COMMENT ON COLUMN plantsync.nonconformance.opened_at IS 'When the case was opened.';
COMMENT ON COLUMN plantsync.nonconformance.closed_at IS 'When the case was closed.';
COMMENT ON COLUMN plantsync.nonconformance.qms_ref IS 'Case identifier in the QMS, unique per plant.';
COMMENT ON COLUMN plantsync.nonconformance.updated_at IS 'When the row was last changed (kept by the guard trigger).';

CREATE TABLE plantsync.capa_action (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    nonconformance_id uuid NOT NULL,
    action_number text NOT NULL,
    kind text NOT NULL
        CONSTRAINT capa_action_kind_check CHECK (kind IN ('corrective', 'preventive')),
    status text NOT NULL DEFAULT 'open',
    description text NOT NULL,
    responsible text NOT NULL,
    due_date date,
    completed_at timestamptz,
    qms_ref text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT capa_action_nonconformance_number_key UNIQUE (nonconformance_id, action_number),
    CONSTRAINT capa_action_site_id_key UNIQUE (site_id, id),
    CONSTRAINT capa_action_nonconformance_fk FOREIGN KEY (site_id, nonconformance_id) REFERENCES plantsync.nonconformance (site_id, id)
);
CREATE INDEX capa_action_status_idx ON plantsync.capa_action (site_id, status, due_date);
COMMENT ON TABLE plantsync.capa_action IS 'Corrective and preventive actions of a nonconformance (ERPNext Quality Action).';
COMMENT ON COLUMN plantsync.capa_action.id IS 'Key of the action.';
COMMENT ON COLUMN plantsync.capa_action.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.capa_action.nonconformance_id IS 'Case the action belongs to.';
COMMENT ON COLUMN plantsync.capa_action.action_number IS 'Action number within the case.';
COMMENT ON COLUMN plantsync.capa_action.kind IS 'corrective or preventive.';
COMMENT ON COLUMN plantsync.capa_action.status IS 'State: open, in_progress, completed, cancelled.';
COMMENT ON COLUMN plantsync.capa_action.description IS 'What is to be done.';
COMMENT ON COLUMN plantsync.capa_action.responsible IS 'Person or function responsible.';
COMMENT ON COLUMN plantsync.capa_action.due_date IS 'When it is due.';
COMMENT ON COLUMN plantsync.capa_action.completed_at IS 'When it was completed.';
COMMENT ON COLUMN plantsync.capa_action.qms_ref IS 'Identifier in the QMS.';
COMMENT ON COLUMN plantsync.capa_action.updated_at IS 'When the row was last changed (kept by the guard trigger).';
