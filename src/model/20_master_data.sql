-- Canonical master data (ISA-95): equipment hierarchy, storage locations,
-- materials and their units, BOMs, routings (process segments) and the
-- work-center parameters an ERP order is enriched with.
--
-- Every plant row carries site_id, and child rows reference parents through
-- (site_id, id) so a row can never point at another plant's data.

CREATE TABLE plantsync.equipment (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    equipment_code text NOT NULL,
    name text NOT NULL,
    equipment_level text NOT NULL
        CONSTRAINT equipment_level_check CHECK (equipment_level IN (
            'Enterprise', 'Site', 'Area', 'ProcessCell', 'Unit', 'ProductionLine',
            'WorkCell', 'ProductionUnit', 'StorageZone', 'StorageUnit', 'WorkCenter',
            'WorkUnit', 'EquipmentModule', 'ControlModule')),
    parent_id uuid,
    erp_ref text,
    mes_ref text,
    CONSTRAINT equipment_site_code_key UNIQUE (site_id, equipment_code),
    CONSTRAINT equipment_site_id_key UNIQUE (site_id, id),
    CONSTRAINT equipment_parent_fk FOREIGN KEY (site_id, parent_id) REFERENCES plantsync.equipment (site_id, id),
    CONSTRAINT equipment_not_own_parent CHECK (parent_id IS DISTINCT FROM id)
);
CREATE INDEX equipment_parent_idx ON plantsync.equipment (parent_id);
COMMENT ON TABLE plantsync.equipment IS 'Equipment hierarchy of a plant (ISA-95 EquipmentLevel): areas, production lines, work centers, units, storage zones.';
COMMENT ON COLUMN plantsync.equipment.id IS 'Key of the equipment, unique across plants.';
COMMENT ON COLUMN plantsync.equipment.site_id IS 'Plant the equipment belongs to.';
COMMENT ON COLUMN plantsync.equipment.equipment_code IS 'Plant-unique equipment code, e.g. LINE-1 or WC-PRESS-01.';
COMMENT ON COLUMN plantsync.equipment.name IS 'Readable name.';
COMMENT ON COLUMN plantsync.equipment.equipment_level IS 'ISA-95 EquipmentLevel, e.g. ProductionLine, WorkCenter.';
COMMENT ON COLUMN plantsync.equipment.parent_id IS 'Parent equipment in the hierarchy (same site).';
COMMENT ON COLUMN plantsync.equipment.erp_ref IS 'Identifier in the ERP (e.g. SAP work center, ERPNext Workstation).';
COMMENT ON COLUMN plantsync.equipment.mes_ref IS 'Identifier in the MES.';

CREATE TABLE plantsync.storage_location (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    location_code text NOT NULL,
    name text NOT NULL,
    equipment_id uuid,
    is_quarantine boolean NOT NULL DEFAULT false,
    erp_ref text,
    CONSTRAINT storage_location_site_code_key UNIQUE (site_id, location_code),
    CONSTRAINT storage_location_site_id_key UNIQUE (site_id, id),
    CONSTRAINT storage_location_equipment_fk FOREIGN KEY (site_id, equipment_id) REFERENCES plantsync.equipment (site_id, id)
);
CREATE INDEX storage_location_equipment_idx ON plantsync.storage_location (equipment_id);
COMMENT ON TABLE plantsync.storage_location IS 'Storage locations of a plant (SAP storage location, ERPNext Warehouse).';
COMMENT ON COLUMN plantsync.storage_location.id IS 'Key of the location, unique across plants.';
COMMENT ON COLUMN plantsync.storage_location.site_id IS 'Plant the location belongs to.';
COMMENT ON COLUMN plantsync.storage_location.location_code IS 'Plant-unique location code, e.g. RM01 or FG01.';
COMMENT ON COLUMN plantsync.storage_location.name IS 'Readable name.';
COMMENT ON COLUMN plantsync.storage_location.equipment_id IS 'Storage zone or unit in the equipment hierarchy, if modelled.';
COMMENT ON COLUMN plantsync.storage_location.is_quarantine IS 'True for quarantine locations, which is how ERPs without a blocked stock type (ERPNext) hold stock.';
COMMENT ON COLUMN plantsync.storage_location.erp_ref IS 'Identifier in the ERP (SAP LGORT, ERPNext warehouse name).';

CREATE TABLE plantsync.material (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    material_number text NOT NULL,
    description text NOT NULL,
    material_type text NOT NULL DEFAULT 'raw'
        CONSTRAINT material_type_check CHECK (material_type IN ('raw', 'semi_finished', 'finished', 'packaging', 'consumable', 'by_product')),
    base_uom text NOT NULL REFERENCES plantsync.uom,
    lot_tracked boolean NOT NULL DEFAULT true,
    serial_tracked boolean NOT NULL DEFAULT false,
    shelf_life_days integer
        CONSTRAINT material_shelf_life_positive CHECK (shelf_life_days > 0),
    erp_ref text,
    CONSTRAINT material_site_number_key UNIQUE (site_id, material_number),
    CONSTRAINT material_site_id_key UNIQUE (site_id, id)
);
CREATE UNIQUE INDEX material_site_erp_ref_key ON plantsync.material (site_id, erp_ref) WHERE erp_ref IS NOT NULL;
COMMENT ON TABLE plantsync.material IS 'Materials as the plant knows them (ISA-95 MaterialDefinition; the plant view of the ERP material master).';
COMMENT ON COLUMN plantsync.material.id IS 'Key of the material, unique across plants.';
COMMENT ON COLUMN plantsync.material.site_id IS 'Plant this material view belongs to.';
COMMENT ON COLUMN plantsync.material.material_number IS 'Material number, unique within the plant (ERP material / item code).';
COMMENT ON COLUMN plantsync.material.description IS 'Readable description.';
COMMENT ON COLUMN plantsync.material.material_type IS 'raw, semi_finished, finished, packaging, consumable or by_product.';
COMMENT ON COLUMN plantsync.material.base_uom IS 'Base unit of measure: inventory balances and ledger base quantities are kept in it.';
COMMENT ON COLUMN plantsync.material.lot_tracked IS 'True when every movement must name a lot (batch management).';
COMMENT ON COLUMN plantsync.material.serial_tracked IS 'True when units carry serial numbers; serial rows are refused for other materials.';
COMMENT ON COLUMN plantsync.material.shelf_life_days IS 'Shelf life used to derive lot expiry dates.';
COMMENT ON COLUMN plantsync.material.erp_ref IS 'Identifier in the ERP when it differs from material_number.';

CREATE TABLE plantsync.uom_conversion (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text REFERENCES plantsync.site,
    material_id uuid,
    from_uom text NOT NULL REFERENCES plantsync.uom,
    to_uom text NOT NULL REFERENCES plantsync.uom,
    factor numeric NOT NULL
        CONSTRAINT uom_conversion_factor_positive CHECK (factor > 0),
    CONSTRAINT uom_conversion_material_fk FOREIGN KEY (site_id, material_id) REFERENCES plantsync.material (site_id, id),
    CONSTRAINT uom_conversion_distinct_units CHECK (from_uom <> to_uom),
    CONSTRAINT uom_conversion_material_needs_site CHECK (material_id IS NULL OR site_id IS NOT NULL),
    builtin boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX uom_conversion_key ON plantsync.uom_conversion
    (COALESCE(material_id, '00000000-0000-0000-0000-000000000000'::uuid), from_uom, to_uom);
COMMENT ON COLUMN plantsync.uom_conversion.builtin IS 'True for rows installed by the extension; pg_dump keeps only the rows a plant added.';
COMMENT ON TABLE plantsync.uom_conversion IS 'Unit conversions: global ones (no material) and material-specific ones (e.g. 1 BOX of a material = 12 EA). quantity_in_to_uom = quantity_in_from_uom * factor.';
COMMENT ON COLUMN plantsync.uom_conversion.id IS 'Key of the conversion.';
COMMENT ON COLUMN plantsync.uom_conversion.site_id IS 'Plant of the material, for material-specific conversions; NULL for global ones.';
COMMENT ON COLUMN plantsync.uom_conversion.material_id IS 'Material the conversion applies to; NULL for a global conversion.';
COMMENT ON COLUMN plantsync.uom_conversion.from_uom IS 'Unit converted from.';
COMMENT ON COLUMN plantsync.uom_conversion.to_uom IS 'Unit converted to.';
COMMENT ON COLUMN plantsync.uom_conversion.factor IS 'Multiplier from from_uom to to_uom (positive).';

INSERT INTO plantsync.uom_conversion (from_uom, to_uom, factor) VALUES
    ('G', 'KG', 0.001), ('KG', 'G', 1000), ('T', 'KG', 1000), ('KG', 'T', 0.001),
    ('ML', 'L', 0.001), ('L', 'ML', 1000), ('MM', 'M', 0.001), ('M', 'MM', 1000),
    ('H', 'MIN', 60), ('MIN', 'H', 1.0 / 60), ('PC', 'EA', 1), ('EA', 'PC', 1);

CREATE TABLE plantsync.bom (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    material_id uuid NOT NULL,
    alternative text NOT NULL DEFAULT '1',
    base_quantity numeric NOT NULL DEFAULT 1
        CONSTRAINT bom_base_quantity_positive CHECK (base_quantity > 0),
    base_uom text NOT NULL REFERENCES plantsync.uom,
    valid_from date NOT NULL DEFAULT '-infinity',
    valid_to date NOT NULL DEFAULT 'infinity',
    erp_ref text,
    CONSTRAINT bom_site_material_alternative_key UNIQUE (site_id, material_id, alternative),
    CONSTRAINT bom_site_id_key UNIQUE (site_id, id),
    CONSTRAINT bom_material_fk FOREIGN KEY (site_id, material_id) REFERENCES plantsync.material (site_id, id),
    CONSTRAINT bom_validity_order CHECK (valid_from <= valid_to)
);
COMMENT ON TABLE plantsync.bom IS 'Bills of materials: which components make base_quantity of a material (ISA-95 MaterialSpecification of a work master).';
COMMENT ON COLUMN plantsync.bom.id IS 'Key of the BOM.';
COMMENT ON COLUMN plantsync.bom.site_id IS 'Plant of the BOM.';
COMMENT ON COLUMN plantsync.bom.material_id IS 'Material the BOM produces.';
COMMENT ON COLUMN plantsync.bom.alternative IS 'BOM alternative (SAP STLAL); ERPNext BOM name suffix.';
COMMENT ON COLUMN plantsync.bom.base_quantity IS 'Quantity of the produced material the item quantities refer to.';
COMMENT ON COLUMN plantsync.bom.base_uom IS 'Unit of base_quantity.';
COMMENT ON COLUMN plantsync.bom.valid_from IS 'First day the BOM is valid.';
COMMENT ON COLUMN plantsync.bom.valid_to IS 'Last day the BOM is valid.';
COMMENT ON COLUMN plantsync.bom.erp_ref IS 'Identifier in the ERP.';

CREATE TABLE plantsync.bom_item (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    bom_id uuid NOT NULL,
    item_number text NOT NULL,
    component_material_id uuid NOT NULL,
    quantity numeric NOT NULL
        CONSTRAINT bom_item_quantity_positive CHECK (quantity > 0),
    uom text NOT NULL REFERENCES plantsync.uom,
    scrap_percent numeric NOT NULL DEFAULT 0
        CONSTRAINT bom_item_scrap_percent_range CHECK (scrap_percent >= 0 AND scrap_percent < 100),
    backflush boolean NOT NULL DEFAULT false,
    operation_number text,
    CONSTRAINT bom_item_bom_item_number_key UNIQUE (bom_id, item_number),
    CONSTRAINT bom_item_bom_fk FOREIGN KEY (site_id, bom_id) REFERENCES plantsync.bom (site_id, id) ON DELETE CASCADE,
    CONSTRAINT bom_item_component_fk FOREIGN KEY (site_id, component_material_id) REFERENCES plantsync.material (site_id, id)
);
CREATE INDEX bom_item_component_idx ON plantsync.bom_item (component_material_id);
COMMENT ON TABLE plantsync.bom_item IS 'Components of a BOM.';
COMMENT ON COLUMN plantsync.bom_item.id IS 'Key of the BOM item.';
COMMENT ON COLUMN plantsync.bom_item.site_id IS 'Plant of the BOM.';
COMMENT ON COLUMN plantsync.bom_item.bom_id IS 'BOM the item belongs to.';
COMMENT ON COLUMN plantsync.bom_item.item_number IS 'Item number within the BOM, e.g. 0010.';
COMMENT ON COLUMN plantsync.bom_item.component_material_id IS 'Component material consumed.';
COMMENT ON COLUMN plantsync.bom_item.quantity IS 'Component quantity per BOM base quantity (positive).';
COMMENT ON COLUMN plantsync.bom_item.uom IS 'Unit of quantity; must be the component''s base unit or convertible to it.';
COMMENT ON COLUMN plantsync.bom_item.scrap_percent IS 'Planned component scrap in percent, 0 to below 100.';
COMMENT ON COLUMN plantsync.bom_item.backflush IS 'True when consumption is posted automatically at confirmation (backflush).';
COMMENT ON COLUMN plantsync.bom_item.operation_number IS 'Routing operation the component is staged for, if assigned.';

CREATE TABLE plantsync.routing (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    material_id uuid NOT NULL,
    alternative text NOT NULL DEFAULT '1',
    description text NOT NULL DEFAULT '',
    erp_ref text,
    CONSTRAINT routing_site_material_alternative_key UNIQUE (site_id, material_id, alternative),
    CONSTRAINT routing_site_id_key UNIQUE (site_id, id),
    CONSTRAINT routing_material_fk FOREIGN KEY (site_id, material_id) REFERENCES plantsync.material (site_id, id)
);
COMMENT ON TABLE plantsync.routing IS 'Routings: the sequence of operations that makes a material (ISA-95 work master / process segments).';
COMMENT ON COLUMN plantsync.routing.id IS 'Key of the routing.';
COMMENT ON COLUMN plantsync.routing.site_id IS 'Plant of the routing.';
COMMENT ON COLUMN plantsync.routing.material_id IS 'Material the routing makes.';
COMMENT ON COLUMN plantsync.routing.alternative IS 'Routing alternative (group counter).';
COMMENT ON COLUMN plantsync.routing.description IS 'Readable description.';
COMMENT ON COLUMN plantsync.routing.erp_ref IS 'Identifier in the ERP.';

CREATE TABLE plantsync.routing_operation (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    routing_id uuid NOT NULL,
    operation_number text NOT NULL,
    process_segment text NOT NULL,
    description text NOT NULL DEFAULT '',
    work_center_id uuid NOT NULL,
    setup_minutes numeric NOT NULL DEFAULT 0
        CONSTRAINT routing_operation_setup_minutes_nonnegative CHECK (setup_minutes >= 0),
    run_minutes_per_unit numeric NOT NULL DEFAULT 0
        CONSTRAINT routing_operation_run_minutes_nonnegative CHECK (run_minutes_per_unit >= 0),
    CONSTRAINT routing_operation_routing_number_key UNIQUE (routing_id, operation_number),
    CONSTRAINT routing_operation_site_id_key UNIQUE (site_id, id),
    CONSTRAINT routing_operation_routing_fk FOREIGN KEY (site_id, routing_id) REFERENCES plantsync.routing (site_id, id) ON DELETE CASCADE,
    CONSTRAINT routing_operation_work_center_fk FOREIGN KEY (site_id, work_center_id) REFERENCES plantsync.equipment (site_id, id)
);
CREATE INDEX routing_operation_work_center_idx ON plantsync.routing_operation (work_center_id);
COMMENT ON TABLE plantsync.routing_operation IS 'Operations of a routing (ISA-95 process segments) with their work center and standard times.';
COMMENT ON COLUMN plantsync.routing_operation.id IS 'Key of the routing operation.';
COMMENT ON COLUMN plantsync.routing_operation.site_id IS 'Plant of the routing.';
COMMENT ON COLUMN plantsync.routing_operation.routing_id IS 'Routing the operation belongs to.';
COMMENT ON COLUMN plantsync.routing_operation.operation_number IS 'Operation number, e.g. 0010; operations run in this order.';
COMMENT ON COLUMN plantsync.routing_operation.process_segment IS 'ISA-95 ProcessSegmentID, e.g. MIX, FILL, PACK.';
COMMENT ON COLUMN plantsync.routing_operation.description IS 'Readable description.';
COMMENT ON COLUMN plantsync.routing_operation.work_center_id IS 'Work center (equipment) that performs the operation.';
COMMENT ON COLUMN plantsync.routing_operation.setup_minutes IS 'Standard setup time in minutes.';
COMMENT ON COLUMN plantsync.routing_operation.run_minutes_per_unit IS 'Standard run time per unit of the produced material, in minutes.';

CREATE TABLE plantsync.work_center_parameter (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    site_id text NOT NULL REFERENCES plantsync.site,
    work_center_id uuid NOT NULL,
    material_id uuid,
    parameter_name text NOT NULL
        CONSTRAINT work_center_parameter_name_format CHECK (parameter_name ~ '^[A-Za-z][A-Za-z0-9_.-]*$'),
    parameter_value text NOT NULL,
    uom text REFERENCES plantsync.uom,
    valid_from timestamptz NOT NULL DEFAULT '-infinity',
    CONSTRAINT work_center_parameter_work_center_fk FOREIGN KEY (site_id, work_center_id) REFERENCES plantsync.equipment (site_id, id),
    CONSTRAINT work_center_parameter_material_fk FOREIGN KEY (site_id, material_id) REFERENCES plantsync.material (site_id, id)
);
CREATE UNIQUE INDEX work_center_parameter_key ON plantsync.work_center_parameter
    (work_center_id, COALESCE(material_id, '00000000-0000-0000-0000-000000000000'::uuid), parameter_name, valid_from);
COMMENT ON TABLE plantsync.work_center_parameter IS 'Plant-specific parameters of a work center (optionally per material) that an ERP order is enriched with before it becomes an MES work package: set points, tooling, recipes.';
COMMENT ON COLUMN plantsync.work_center_parameter.id IS 'Key of the parameter row.';
COMMENT ON COLUMN plantsync.work_center_parameter.site_id IS 'Plant of the work center.';
COMMENT ON COLUMN plantsync.work_center_parameter.work_center_id IS 'Work center the parameter applies to.';
COMMENT ON COLUMN plantsync.work_center_parameter.material_id IS 'Material the parameter is specific to; NULL for all materials.';
COMMENT ON COLUMN plantsync.work_center_parameter.parameter_name IS 'Parameter name, e.g. oven_temperature.';
COMMENT ON COLUMN plantsync.work_center_parameter.parameter_value IS 'Parameter value as text.';
COMMENT ON COLUMN plantsync.work_center_parameter.uom IS 'Unit of the value, if it has one.';
COMMENT ON COLUMN plantsync.work_center_parameter.valid_from IS 'From when the value applies; the latest valid_from not after the order release wins.';
