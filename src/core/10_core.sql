-- Core objects every capability uses: time-ordered identifiers, the systems
-- the hub connects, units of measure and sites.

CREATE FUNCTION plantsync.uuid_v7()
RETURNS uuid
AS 'MODULE_PATHNAME', 'plantsync_uuid_v7'
LANGUAGE C VOLATILE PARALLEL SAFE STRICT;
COMMENT ON FUNCTION plantsync.uuid_v7() IS
'Returns a time-ordered UUID (RFC 9562 version 7). Keys made of it are unique across plant databases, so many plants replicate into one enterprise database without collisions, and they keep B-tree inserts local.';

CREATE TABLE plantsync.source_system (
    system_code text PRIMARY KEY
        CONSTRAINT source_system_code_format CHECK (system_code ~ '^[a-z][a-z0-9_]*$'),
    description text NOT NULL,
    builtin boolean NOT NULL DEFAULT false
);
COMMENT ON COLUMN plantsync.source_system.builtin IS 'True for rows installed by the extension; pg_dump keeps only the rows a plant added.';
COMMENT ON TABLE plantsync.source_system IS
'The systems the hub connects (ERP, MES, QMS) and the hub itself. Every owned entity and column, every state transition and every write is attributed to one of them.';
COMMENT ON COLUMN plantsync.source_system.system_code IS 'Short code of the system, as used in plantsync.source_system (the setting) and in ownership rows.';
COMMENT ON COLUMN plantsync.source_system.description IS 'What the system is and what it is authoritative for.';

INSERT INTO plantsync.source_system VALUES
    ('erp', 'Enterprise resource planning: orders, BOMs, routings, inventory valuation, shipments.'),
    ('mes', 'Manufacturing execution: execution status, consumption, confirmations, downtime.'),
    ('qms', 'Quality management: inspections, results, usage decisions, nonconformances, CAPA.'),
    ('hub', 'plantsync itself: plant configuration and the integration machinery.');

CREATE TABLE plantsync.uom (
    uom_code text PRIMARY KEY
        CONSTRAINT uom_code_format CHECK (uom_code ~ '^[A-Za-z0-9_%/.-]{1,12}$'),
    description text NOT NULL,
    dimension text NOT NULL
        CONSTRAINT uom_dimension_check CHECK (dimension IN ('count', 'mass', 'volume', 'length', 'area', 'time', 'other')),
    decimals smallint NOT NULL DEFAULT 3
        CONSTRAINT uom_decimals_range CHECK (decimals BETWEEN 0 AND 6),
    builtin boolean NOT NULL DEFAULT false
);
COMMENT ON COLUMN plantsync.uom.builtin IS 'True for rows installed by the extension; pg_dump keeps only the rows a plant added.';
COMMENT ON TABLE plantsync.uom IS 'Units of measure (UN/CEFACT-style codes) used by materials, orders, movements and results.';
COMMENT ON COLUMN plantsync.uom.uom_code IS 'Unit code, e.g. EA, KG, L, M, MIN.';
COMMENT ON COLUMN plantsync.uom.description IS 'Readable name of the unit.';
COMMENT ON COLUMN plantsync.uom.dimension IS 'Physical dimension; conversions are only meaningful between units of the same dimension unless a material says otherwise.';
COMMENT ON COLUMN plantsync.uom.decimals IS 'Decimal places quantities in this unit are rounded to when converted.';

INSERT INTO plantsync.uom VALUES
    ('EA', 'each', 'count', 0),
    ('PC', 'piece', 'count', 0),
    ('BOX', 'box', 'count', 0),
    ('KG', 'kilogram', 'mass', 3),
    ('G', 'gram', 'mass', 3),
    ('T', 'tonne', 'mass', 3),
    ('L', 'litre', 'volume', 3),
    ('ML', 'millilitre', 'volume', 3),
    ('M', 'metre', 'length', 3),
    ('MM', 'millimetre', 'length', 3),
    ('M2', 'square metre', 'area', 3),
    ('MIN', 'minute', 'time', 3),
    ('H', 'hour', 'time', 3);

CREATE TABLE plantsync.site (
    site_id text PRIMARY KEY
        CONSTRAINT site_id_format CHECK (site_id ~ '^[A-Z0-9][A-Z0-9_-]{0,19}$'),
    name text NOT NULL,
    enterprise text NOT NULL DEFAULT '',
    time_zone text NOT NULL DEFAULT 'UTC',
    erp_plant_code text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT site_erp_plant_code_key UNIQUE (erp_plant_code)
);
COMMENT ON TABLE plantsync.site IS 'Plants (ISA-95 Site). Every plant row carries its site; site codes are unique across the enterprise so that many plant databases replicate into one.';
COMMENT ON COLUMN plantsync.site.site_id IS 'Enterprise-wide plant code, e.g. P100 (upper case letters, digits, _ and -).';
COMMENT ON COLUMN plantsync.site.name IS 'Readable plant name.';
COMMENT ON COLUMN plantsync.site.enterprise IS 'Enterprise or company the plant belongs to.';
COMMENT ON COLUMN plantsync.site.time_zone IS 'IANA time zone of the plant, for shift and posting dates.';
COMMENT ON COLUMN plantsync.site.erp_plant_code IS 'Plant code in the ERP (SAP WERKS, ERPNext company), when it differs from site_id.';
COMMENT ON COLUMN plantsync.site.created_at IS 'When the site was registered.';

CREATE FUNCTION plantsync.check_time_zone() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_names WHERE name = NEW.time_zone) THEN
        RAISE EXCEPTION 'unknown time zone "%" for site "%"', NEW.time_zone, NEW.site_id
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use an IANA time zone name such as Europe/Berlin; see pg_timezone_names.';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION plantsync.check_time_zone() IS 'Trigger function: refuses a site whose time zone PostgreSQL does not know.';

CREATE TRIGGER plantsync_check_time_zone BEFORE INSERT OR UPDATE OF time_zone ON plantsync.site
    FOR EACH ROW EXECUTE FUNCTION plantsync.check_time_zone();
