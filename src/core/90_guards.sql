-- Installs the generic guard trigger (src/state_machine/guard.c) on every
-- registered entity, the reload triggers on the configuration it reads, and
-- the TRUNCATE barrier on append-only ledgers.

CREATE FUNCTION plantsync.guard() RETURNS trigger
AS 'MODULE_PATHNAME', 'plantsync_guard'
LANGUAGE C;
COMMENT ON FUNCTION plantsync.guard() IS
'Generic row trigger of every canonical table: enforces system-of-record ownership, the entity''s state machine and append-only ledgers, keeps updated_at, and records state changes.';

CREATE FUNCTION plantsync.refuse_truncate() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION '% is append-only and cannot be truncated', TG_TABLE_NAME
        USING ERRCODE = 'PS005',
              HINT = 'Old data leaves the ledger only through its retention policy.';
END
$$;
COMMENT ON FUNCTION plantsync.refuse_truncate() IS 'Trigger function: refuses TRUNCATE of append-only ledgers.';

-- Built-in rows are marked before the guard exists (see the dump policy below).
UPDATE plantsync.source_system SET builtin = true;
UPDATE plantsync.uom SET builtin = true;
UPDATE plantsync.uom_conversion SET builtin = true;
UPDATE plantsync.state_machine SET builtin = true;
UPDATE plantsync.state SET builtin = true;
UPDATE plantsync.state_transition SET builtin = true;
UPDATE plantsync.entity SET builtin = true;
UPDATE plantsync.column_owner SET builtin = true;
UPDATE plantsync.event_source SET builtin = true;
UPDATE plantsync.contract_subject SET builtin = true;
UPDATE plantsync.contract SET builtin = true;

DO $$
DECLARE
    e record;
BEGIN
    FOR e IN SELECT entity, append_only FROM plantsync.entity ORDER BY entity LOOP
        EXECUTE format('CREATE TRIGGER plantsync_guard BEFORE INSERT OR UPDATE OR DELETE ON plantsync.%I
                            FOR EACH ROW EXECUTE FUNCTION plantsync.guard()', e.entity);
        IF e.append_only THEN
            EXECUTE format('CREATE TRIGGER plantsync_refuse_truncate BEFORE TRUNCATE ON plantsync.%I
                                FOR EACH STATEMENT EXECUTE FUNCTION plantsync.refuse_truncate()', e.entity);
        END IF;
    END LOOP;
END
$$;

CREATE TRIGGER plantsync_config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON plantsync.entity
    FOR EACH STATEMENT EXECUTE FUNCTION plantsync.config_changed();
CREATE TRIGGER plantsync_config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON plantsync.column_owner
    FOR EACH STATEMENT EXECUTE FUNCTION plantsync.config_changed();
CREATE TRIGGER plantsync_config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON plantsync.state
    FOR EACH STATEMENT EXECUTE FUNCTION plantsync.config_changed();
CREATE TRIGGER plantsync_config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON plantsync.state_transition
    FOR EACH STATEMENT EXECUTE FUNCTION plantsync.config_changed();
CREATE TRIGGER plantsync_config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON plantsync.system_role
    FOR EACH STATEMENT EXECUTE FUNCTION plantsync.config_changed();
CREATE TRIGGER plantsync_config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON plantsync.event_source
    FOR EACH STATEMENT EXECUTE FUNCTION plantsync.config_changed();

-- The outbox trigger: AFTER, so it sees the row as stored; on UPDATE only
-- when the state column is named, since only state changes are events.
DO $$
DECLARE
    s record;
BEGIN
    FOR s IN SELECT es.entity, e.state_column FROM plantsync.event_source es JOIN plantsync.entity e USING (entity)
              ORDER BY es.entity LOOP
        IF s.state_column IS NULL THEN
            EXECUTE format('CREATE TRIGGER plantsync_outbox AFTER INSERT ON plantsync.%I
                                FOR EACH ROW EXECUTE FUNCTION plantsync.outbox()', s.entity);
        ELSE
            EXECUTE format('CREATE TRIGGER plantsync_outbox AFTER INSERT OR UPDATE OF %I ON plantsync.%I
                                FOR EACH ROW EXECUTE FUNCTION plantsync.outbox()', s.state_column, s.entity);
        END IF;
    END LOOP;
END
$$;

-- pg_dump skips the tables of an extension unless told otherwise: the plant's
-- data is dumped whole, the configuration tables only with the rows a plant
-- added (the built-in ones come back with CREATE EXTENSION).

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT c.relname,
                    EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                             WHERE a.attrelid = c.oid AND a.attname = 'builtin' AND NOT a.attisdropped) AS has_builtin
               FROM pg_catalog.pg_class c
              WHERE c.relnamespace = 'plantsync'::regnamespace AND c.relkind IN ('r', 'p')
              ORDER BY c.relname LOOP
        PERFORM pg_catalog.pg_extension_config_dump(format('plantsync.%I', t.relname)::regclass,
                    CASE WHEN t.has_builtin THEN 'WHERE NOT builtin' ELSE '' END);
    END LOOP;
END
$$;

-- Start this database's delivery workers when the installing transaction commits.
SELECT plantsync.wake_workers();
