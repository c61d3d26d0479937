-- Audit trail (21 CFR Part 11, EU GMP Annex 11): every create, change and
-- delete of regulated data and of the hub's configuration, with who, from
-- where, when, the old and new values and the reason given. The trail is
-- append-only and hash-chained: each record's hash covers the previous
-- record's hash, so plantsync.audit_verify() finds any record changed,
-- removed or inserted afterwards.

CREATE TABLE plantsync.audit_log (
    id bigint PRIMARY KEY,
    logged_at timestamptz NOT NULL,
    table_name name NOT NULL,
    row_key text NOT NULL,
    action text NOT NULL
        CONSTRAINT audit_log_action_check CHECK (action IN ('INSERT', 'UPDATE', 'DELETE')),
    old_values jsonb,
    new_values jsonb,
    changed_columns text[],
    db_role name NOT NULL,
    session_role name NOT NULL,
    application_name text,
    client_address inet,
    source_system text,
    reason text,
    transaction_id xid8 NOT NULL,
    previous_hash bytea,
    hash bytea NOT NULL
);
CREATE INDEX audit_log_row_idx ON plantsync.audit_log (table_name, row_key, id);
CREATE INDEX audit_log_time_idx ON plantsync.audit_log USING brin (logged_at);
COMMENT ON TABLE plantsync.audit_log IS 'Audit trail of regulated data (lots, serials, inspection lots and results, usage decisions, nonconformances, CAPA, ownership overrides) and of the hub''s configuration (endpoints, routes, contracts, state machines, ownership, tolerances): one record per row created, changed or deleted. Append-only and hash-chained; check it with plantsync.audit_verify().';
COMMENT ON COLUMN plantsync.audit_log.id IS 'Position in the chain (1, 2, 3... in commit order of the records).';
COMMENT ON COLUMN plantsync.audit_log.logged_at IS 'When (UTC on output with TimeZone UTC; stored as an absolute time).';
COMMENT ON COLUMN plantsync.audit_log.table_name IS 'Table changed.';
COMMENT ON COLUMN plantsync.audit_log.row_key IS 'The row''s business key (or id).';
COMMENT ON COLUMN plantsync.audit_log.action IS 'INSERT, UPDATE or DELETE.';
COMMENT ON COLUMN plantsync.audit_log.old_values IS 'The row before (UPDATE, DELETE); secret values are never recorded.';
COMMENT ON COLUMN plantsync.audit_log.new_values IS 'The row after (INSERT, UPDATE); secret values are never recorded.';
COMMENT ON COLUMN plantsync.audit_log.changed_columns IS 'For an UPDATE, the columns whose value changed.';
COMMENT ON COLUMN plantsync.audit_log.db_role IS 'Role that acted (SET ROLE included), outside any SECURITY DEFINER function: an integration role calling a process API, a person''s role.';
COMMENT ON COLUMN plantsync.audit_log.session_role IS 'Role that logged in (session_user): the person or integration account.';
COMMENT ON COLUMN plantsync.audit_log.application_name IS 'The client''s application_name.';
COMMENT ON COLUMN plantsync.audit_log.client_address IS 'The client''s address (NULL over a local socket).';
COMMENT ON COLUMN plantsync.audit_log.source_system IS 'plantsync.source_system of the change.';
COMMENT ON COLUMN plantsync.audit_log.reason IS 'plantsync.change_reason of the change (an override''s reason, a cancellation''s reason...).';
COMMENT ON COLUMN plantsync.audit_log.transaction_id IS 'Transaction.';
COMMENT ON COLUMN plantsync.audit_log.previous_hash IS 'hash of the record before (NULL for the first).';
COMMENT ON COLUMN plantsync.audit_log.hash IS 'SHA-256 of previous_hash and this record''s content.';
REVOKE ALL ON plantsync.audit_log FROM PUBLIC;

CREATE FUNCTION plantsync.acting_role()
RETURNS name
AS 'MODULE_PATHNAME', 'plantsync_acting_role'
LANGUAGE C STABLE;
COMMENT ON FUNCTION plantsync.acting_role() IS 'The role that acted (after SET ROLE), outside any SECURITY DEFINER function.';

-- The content a record's hash covers, in a form that does not depend on the
-- session's settings (times in UTC, jsonb's own key order).
CREATE FUNCTION plantsync.audit_hash(r plantsync.audit_log)
RETURNS bytea
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT sha256(convert_to(concat_ws(E'\x1f', encode(r.previous_hash, 'hex'), r.id::text,
                                       to_char(r.logged_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
                                       r.table_name, r.row_key, r.action, r.old_values::text, r.new_values::text,
                                       array_to_string(r.changed_columns, ','), r.db_role, r.session_role, r.application_name,
                                       host(r.client_address), r.source_system, r.reason, r.transaction_id::text), 'UTF8'))
$$;
COMMENT ON FUNCTION plantsync.audit_hash(plantsync.audit_log) IS 'The SHA-256 an audit record must carry: over the previous record''s hash and every field of this one.';

CREATE FUNCTION plantsync.audit() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r plantsync.audit_log;
    o jsonb;
    n jsonb;
    key_column name := TG_ARGV[0];
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        o := to_jsonb(OLD);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        n := to_jsonb(NEW);
    END IF;
    -- a secret's value never enters the trail, only that it changed
    IF TG_TABLE_NAME = 'endpoint_secret' THEN
        o := o - 'value';
        n := n - 'value';
        IF TG_OP = 'UPDATE' AND OLD.value IS DISTINCT FROM NEW.value THEN
            n := n || '{"value": "(changed)"}';
        END IF;
    END IF;
    IF TG_OP = 'UPDATE' AND o = n THEN
        RETURN NULL;
    END IF;
    -- people (roles with plantsync.require_change_reason) say why
    IF current_setting('plantsync.require_change_reason') = 'on'
       AND COALESCE(current_setting('plantsync.change_reason', true), '') = '' THEN
        RAISE EXCEPTION 'a reason is required to % % "%"', lower(TG_OP), TG_TABLE_NAME, COALESCE(n, o) ->> key_column
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'SET LOCAL plantsync.change_reason = ''...'' in the transaction; it is recorded in plantsync.audit_log.';
    END IF;

    -- one chain: the records are numbered and hashed one transaction at a
    -- time, in commit order (the lock is held until commit)
    PERFORM pg_advisory_xact_lock(hashtext('plantsync.audit_log'));
    SELECT a.id + 1, a.hash INTO r.id, r.previous_hash FROM plantsync.audit_log a ORDER BY a.id DESC LIMIT 1;
    r.id := COALESCE(r.id, 1);
    r.logged_at := clock_timestamp();
    r.table_name := TG_TABLE_NAME;
    r.row_key := COALESCE(n, o) ->> key_column;
    r.action := TG_OP;
    r.old_values := o;
    r.new_values := n;
    IF TG_OP = 'UPDATE' THEN
        SELECT array_agg(k ORDER BY k) INTO r.changed_columns
          FROM jsonb_object_keys(n) k WHERE n -> k IS DISTINCT FROM o -> k;
    END IF;
    r.db_role := plantsync.acting_role();
    r.session_role := session_user;
    r.application_name := NULLIF(current_setting('application_name', true), '');
    r.client_address := inet_client_addr();
    r.source_system := NULLIF(current_setting('plantsync.source_system', true), '');
    r.reason := NULLIF(current_setting('plantsync.change_reason', true), '');
    r.transaction_id := pg_current_xact_id();
    r.hash := plantsync.audit_hash(r);
    INSERT INTO plantsync.audit_log VALUES (r.*);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION plantsync.audit() IS 'Trigger function of audited tables (argument: the key column): appends a hash-chained record to plantsync.audit_log.';
REVOKE EXECUTE ON FUNCTION plantsync.audit() FROM PUBLIC;

CREATE FUNCTION plantsync.refuse_audit_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: % refused', TG_OP
        USING ERRCODE = 'PS005', HINT = 'Audit records are never changed or removed; plantsync.audit_verify() detects any attempt that bypassed this.';
END
$$;
COMMENT ON FUNCTION plantsync.refuse_audit_change() IS 'Trigger function: refuses UPDATE, DELETE and TRUNCATE of the audit trail, whoever asks.';
CREATE TRIGGER plantsync_append_only BEFORE UPDATE OR DELETE ON plantsync.audit_log
    FOR EACH ROW EXECUTE FUNCTION plantsync.refuse_audit_change();
CREATE TRIGGER plantsync_append_only_truncate BEFORE TRUNCATE ON plantsync.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION plantsync.refuse_audit_change();

CREATE FUNCTION plantsync.audit_verify()
RETURNS TABLE (intact boolean, records bigint, first_bad_id bigint, problem text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r plantsync.audit_log;
    expected_id bigint := 1;
    previous bytea := NULL;
BEGIN
    records := 0;
    FOR r IN SELECT * FROM plantsync.audit_log ORDER BY id LOOP
        records := records + 1;
        IF r.id <> expected_id THEN
            intact := false; first_bad_id := r.id;
            problem := format('record %s is missing (the next one is %s)', expected_id, r.id);
            RETURN NEXT; RETURN;
        END IF;
        IF r.previous_hash IS DISTINCT FROM previous THEN
            intact := false; first_bad_id := r.id;
            problem := format('record %s does not follow record %s (previous_hash differs)', r.id, r.id - 1);
            RETURN NEXT; RETURN;
        END IF;
        IF r.hash IS DISTINCT FROM plantsync.audit_hash(r) THEN
            intact := false; first_bad_id := r.id;
            problem := format('record %s was changed after it was written (its hash does not match its content)', r.id);
            RETURN NEXT; RETURN;
        END IF;
        previous := r.hash;
        expected_id := expected_id + 1;
    END LOOP;
    intact := true;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION plantsync.audit_verify() IS
'Checks the whole audit trail: numbering without gaps, each record chained to the one before, each hash matching its content. Returns intact, the records checked and, if not intact, the first bad record and what is wrong with it. (Records removed from the end leave no trace in the chain itself: compare records with what you last verified.)';

-- The audited tables and the column that names a row in the trail.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
                ('lot', 'lot_number'), ('serial', 'serial_number'), ('inspection_lot', 'inspection_lot_number'),
                ('inspection_result', 'external_id'), ('usage_decision', 'inspection_lot_id'), ('usage_decision_signature', 'signer'), ('nonconformance', 'nc_number'),
                ('capa_action', 'action_number'), ('ownership_override', 'id'),
                ('endpoint', 'endpoint_id'), ('endpoint_secret', 'endpoint_id'), ('route', 'route_id'), ('poll', 'poll_id'),
                ('contract_subject', 'subject'), ('contract', 'subject'), ('state_machine', 'machine'),
                ('state', 'state'), ('state_transition', 'machine'), ('entity', 'entity'), ('column_owner', 'entity'),
                ('system_role', 'role_name'), ('reconciliation_tolerance', 'uom'), ('sla', 'sla_id')) AS v (tbl, key_column) ORDER BY 1 LOOP
        EXECUTE format('CREATE TRIGGER plantsync_audit AFTER INSERT OR UPDATE OR DELETE ON plantsync.%I
                            FOR EACH ROW EXECUTE FUNCTION plantsync.audit(%L)', t.tbl, t.key_column);
    END LOOP;
END
$$;

SELECT pg_catalog.pg_extension_config_dump('plantsync.audit_log', '');
