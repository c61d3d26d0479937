-- Site isolation: a role mapped to plants (plantsync.site_role) sees and
-- writes the rows of those plants only, in every table and view, enforced by
-- row-level security forced on the table owner too. Roles mapped to no plant
-- are not restricted by plant (the hub's administrators and workers); what
-- they may touch at all is still decided by their privileges.

CREATE TABLE plantsync.site_role (
    role_name name NOT NULL,
    site_id text NOT NULL REFERENCES plantsync.site ON DELETE CASCADE,
    granted_at timestamptz NOT NULL DEFAULT now(),
    granted_by name NOT NULL DEFAULT session_user,
    PRIMARY KEY (role_name, site_id)
);
COMMENT ON TABLE plantsync.site_role IS 'Which plants a role (or any member of it) is restricted to. A role with no row here is not restricted by plant.';
COMMENT ON COLUMN plantsync.site_role.role_name IS 'Role; its members are restricted the same way.';
COMMENT ON COLUMN plantsync.site_role.site_id IS 'A plant the role may see and write.';
COMMENT ON COLUMN plantsync.site_role.granted_at IS 'When.';
COMMENT ON COLUMN plantsync.site_role.granted_by IS 'Who mapped it.';
-- which roles see which plants is no secret; changing it is the administrator's
GRANT SELECT ON plantsync.site_role TO PUBLIC;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON plantsync.site_role FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('plantsync.site_role', '');
CREATE TRIGGER plantsync_audit AFTER INSERT OR UPDATE OR DELETE ON plantsync.site_role
    FOR EACH ROW EXECUTE FUNCTION plantsync.audit('role_name');

CREATE FUNCTION plantsync.sites_of(p_role name)
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(DISTINCT r.site_id ORDER BY r.site_id)
      FROM plantsync.site_role r
     WHERE pg_has_role(p_role, r.role_name, 'USAGE')
$$;
COMMENT ON FUNCTION plantsync.sites_of(name) IS 'The plants a role is restricted to (through its own mapping or a role it inherits from), or NULL when it is not restricted. The process APIs, which run with their owner''s rights, check the login role''s (session_user) with it.';
CREATE FUNCTION plantsync.visible_sites()
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.sites_of(current_user) $$;
COMMENT ON FUNCTION plantsync.visible_sites() IS 'The plants the current role is restricted to (through its own mapping or a role it inherits from), or NULL when it is not restricted. The row-level security policies evaluate it once per statement.';

CREATE FUNCTION plantsync.restrict_role_to_site(p_role name, p_site_id text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_role) THEN
        RAISE EXCEPTION 'role "%" does not exist', p_role USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM plantsync.site WHERE site_id = p_site_id) THEN
        RAISE EXCEPTION 'site "%" does not exist', p_site_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = p_role) THEN
        RAISE EXCEPTION 'role "%" bypasses row-level security and cannot be restricted to a plant', p_role
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use a role without SUPERUSER and BYPASSRLS.';
    END IF;
    INSERT INTO plantsync.site_role (role_name, site_id) VALUES (p_role, p_site_id) ON CONFLICT DO NOTHING;
END
$$;
COMMENT ON FUNCTION plantsync.restrict_role_to_site(name, text) IS 'Restricts a role (and its members) to a plant; call again for each further plant. Refuses roles that bypass row-level security.';
REVOKE EXECUTE ON FUNCTION plantsync.restrict_role_to_site(name, text) FROM PUBLIC;

DO $$
DECLARE
    t record;
    unrestricted constant text := '(SELECT plantsync.visible_sites()) IS NULL';
    visible constant text := 'site_id = ANY ((SELECT plantsync.visible_sites())::text[])';
    rule text;
BEGIN
    FOR t IN SELECT c.relname,
                    CASE
                        -- the mapping itself is read by the policies
                        WHEN c.relname = 'site_role' THEN NULL
                        -- global unit conversions have no plant: everyone sees them
                        WHEN c.relname = 'uom_conversion' THEN format('%s OR site_id IS NULL OR %s', unrestricted, visible)
                        WHEN EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'site_id' AND NOT a.attisdropped)
                            THEN format('%s OR %s', unrestricted, visible)
                        -- rows that belong to a plant through another row: visible with it
                        WHEN c.relname = 'delivery' THEN format('%s OR EXISTS (SELECT 1 FROM plantsync.event e WHERE e.id = event_id AND e.recorded_at = event_recorded_at)', unrestricted)
                        WHEN c.relname = 'delivery_attempt' THEN format('%s OR EXISTS (SELECT 1 FROM plantsync.delivery d WHERE d.id = delivery_id)', unrestricted)
                        WHEN c.relname IN ('erp_inventory', 'erp_stock', 'erp_order', 'erp_posting')
                            THEN format('%s OR EXISTS (SELECT 1 FROM plantsync.erp_snapshot s WHERE s.id = snapshot_id)', unrestricted)
                        WHEN c.relname = 'audit_log' THEN unrestricted
                    END AS rule
               FROM pg_class c
              WHERE c.relnamespace = 'plantsync'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
              ORDER BY c.relname LOOP
        CONTINUE WHEN t.rule IS NULL;
        EXECUTE format('ALTER TABLE plantsync.%I ENABLE ROW LEVEL SECURITY', t.relname);
        EXECUTE format('ALTER TABLE plantsync.%I FORCE ROW LEVEL SECURITY', t.relname);
        EXECUTE format('CREATE POLICY plantsync_site_isolation ON plantsync.%I USING (%s) WITH CHECK (%s)', t.relname, t.rule, t.rule);
    END LOOP;
END
$$;

-- The standard roles of a plant's hub, least privilege: what each may do is
-- granted here, nothing else.
CREATE FUNCTION plantsync.grant_standard_role(p_role name, p_kind text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_role) THEN
        RAISE EXCEPTION 'role "%" does not exist', p_role USING ERRCODE = 'undefined_object';
    END IF;
    IF p_kind IN ('erp', 'mes', 'qms') THEN
        PERFORM plantsync.grant_integration_role(p_kind, p_role);
        RETURN format('%s: integration role of %s (its process APIs only)', p_role, p_kind);
    END IF;
    IF p_kind NOT IN ('administrator', 'operator', 'auditor') THEN
        RAISE EXCEPTION 'role kind "%" is not known', p_kind USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use administrator, operator, auditor, erp, mes or qms.';
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA plantsync TO %I', p_role);
    IF p_kind = 'administrator' THEN
        EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA plantsync TO %I', p_role);
        EXECUTE format('GRANT ALL ON ALL SEQUENCES IN SCHEMA plantsync TO %I', p_role);
        EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA plantsync TO %I', p_role);
        RETURN format('%s: administrator (everything, secrets included)', p_role);
    END IF;
    -- reading: everything but the secrets (and, for operators, the audit trail)
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA plantsync TO %I', p_role);
    EXECUTE format('REVOKE ALL ON plantsync.endpoint_secret FROM %I', p_role);
    IF p_kind = 'auditor' THEN
        RETURN format('%s: auditor (reads everything but secrets, audit trail included; writes nothing)', p_role);
    END IF;
    EXECUTE format('REVOKE ALL ON plantsync.audit_log FROM %I', p_role);
    -- operating: replays and discards, reconciliation and remediation, alerts
    EXECUTE format('GRANT INSERT, UPDATE ON plantsync.delivery, plantsync.delivery_action, plantsync.erp_snapshot, plantsync.erp_inventory, plantsync.erp_stock,
                           plantsync.erp_order, plantsync.erp_posting, plantsync.reconciliation_run, plantsync.discrepancy,
                           plantsync.alert TO %I', p_role);
    RETURN format('%s: operator (reads everything but secrets and the audit trail; replays, discards, reconciles, remediates, closes alerts)', p_role);
END
$$;
COMMENT ON FUNCTION plantsync.grant_standard_role(name, text) IS
'Gives a role one of the standard kinds: administrator (everything, secrets included), operator (reads all but secrets and the audit trail; replays and discards dead letters, loads snapshots and reconciles, remediates discrepancies, closes alerts), auditor (reads everything but secrets, the audit trail included; writes nothing), or erp, mes, qms (that system''s process APIs only). Returns what it granted.';
REVOKE EXECUTE ON FUNCTION plantsync.grant_standard_role(name, text) FROM PUBLIC;
