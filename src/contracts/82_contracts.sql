-- Contracts: a registry of versioned JSON Schemas (draft 2020-12) per event
-- type and per inbound message type, with compatibility rules between
-- versions, and the validator written in C (json_schema.c, contract.c).

CREATE FUNCTION plantsync.json_schema_check(schema jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'plantsync_json_schema_check'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION plantsync.json_schema_check(jsonb) IS
'Compiles a JSON Schema (draft 2020-12) and refuses it, naming the keyword and location, if it is invalid or uses a keyword the validator does not implement.';

CREATE FUNCTION plantsync.json_schema_valid(schema jsonb, instance jsonb, assert_formats boolean DEFAULT false)
RETURNS boolean
AS 'MODULE_PATHNAME', 'plantsync_json_schema_valid'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION plantsync.json_schema_valid(jsonb, jsonb, boolean) IS
'Whether a jsonb value is valid against a JSON Schema (draft 2020-12). format is an annotation unless assert_formats (date-time, date, uuid, email are then asserted).';

CREATE FUNCTION plantsync.json_schema_errors(schema jsonb, instance jsonb, assert_formats boolean DEFAULT false,
                                             max_errors integer DEFAULT 100)
RETURNS TABLE (instance_path text, keyword text, message text, schema_path text)
AS 'MODULE_PATHNAME', 'plantsync_json_schema_errors'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION plantsync.json_schema_errors(jsonb, jsonb, boolean, integer) IS
'Every failure of a jsonb value against a JSON Schema, up to max_errors: the JSON pointer of the failing value, the keyword it broke, a message and the schema location.';

CREATE TABLE plantsync.contract_subject (
    subject text PRIMARY KEY
        CONSTRAINT contract_subject_format CHECK (subject ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
    kind text NOT NULL
        CONSTRAINT contract_subject_kind_check CHECK (kind IN ('event', 'inbound')),
    compatibility text NOT NULL DEFAULT 'backward'
        CONSTRAINT contract_subject_compatibility_check CHECK (compatibility IN ('backward', 'forward', 'full', 'none')),
    assert_formats boolean NOT NULL DEFAULT true,
    description text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    builtin boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE plantsync.contract_subject IS 'What contracts are kept for: an event type (e.g. production_confirmation.recorded) or an inbound message type (e.g. erp.order_release), with the compatibility rule new versions must keep.';
COMMENT ON COLUMN plantsync.contract_subject.subject IS 'Event type or inbound message type, dotted lower-case names.';
COMMENT ON COLUMN plantsync.contract_subject.kind IS 'event (checked by the outbox) or inbound (checked by the process APIs).';
COMMENT ON COLUMN plantsync.contract_subject.compatibility IS 'backward: a new version accepts everything the previous accepted (consumers upgrade first); forward: the previous accepts everything the new one does (producers upgrade first); full: both; none: no check.';
COMMENT ON COLUMN plantsync.contract_subject.assert_formats IS 'Whether format (date-time, date, uuid, email) is asserted, not only annotated.';
COMMENT ON COLUMN plantsync.contract_subject.description IS 'What the messages of the subject are.';
COMMENT ON COLUMN plantsync.contract_subject.created_at IS 'When the subject was first registered.';
COMMENT ON COLUMN plantsync.contract_subject.builtin IS 'True for rows installed by the extension; pg_dump keeps only the rows a plant added.';

CREATE TABLE plantsync.contract (
    subject text NOT NULL REFERENCES plantsync.contract_subject,
    version integer NOT NULL
        CONSTRAINT contract_version_positive CHECK (version > 0),
    schema jsonb NOT NULL,
    status text NOT NULL DEFAULT 'active'
        CONSTRAINT contract_status_check CHECK (status IN ('active', 'deprecated', 'retired')),
    fingerprint text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    registered_by name NOT NULL DEFAULT current_user,
    status_changed_at timestamptz,
    status_reason text,
    builtin boolean NOT NULL DEFAULT false,
    PRIMARY KEY (subject, version)
);
COMMENT ON TABLE plantsync.contract IS 'Versions of each subject''s JSON Schema. The latest active version is what events and inbound messages are checked against; deprecated versions still check messages that name them; retired ones are kept for the record only.';
COMMENT ON COLUMN plantsync.contract.subject IS 'Subject.';
COMMENT ON COLUMN plantsync.contract.version IS 'Version, 1, 2, 3...';
COMMENT ON COLUMN plantsync.contract.schema IS 'The JSON Schema (draft 2020-12).';
COMMENT ON COLUMN plantsync.contract.status IS 'active, deprecated or retired.';
COMMENT ON COLUMN plantsync.contract.fingerprint IS 'md5 of the schema, so registering the same schema twice returns the existing version.';
COMMENT ON COLUMN plantsync.contract.registered_at IS 'When the version was registered.';
COMMENT ON COLUMN plantsync.contract.registered_by IS 'Role that registered it.';
COMMENT ON COLUMN plantsync.contract.status_changed_at IS 'When the status last changed.';
COMMENT ON COLUMN plantsync.contract.status_reason IS 'Why the status last changed.';
COMMENT ON COLUMN plantsync.contract.builtin IS 'True for rows installed by the extension; pg_dump keeps only the rows a plant added.';

CREATE TRIGGER plantsync_config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON plantsync.contract
    FOR EACH STATEMENT EXECUTE FUNCTION plantsync.config_changed();
CREATE TRIGGER plantsync_config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON plantsync.contract_subject
    FOR EACH STATEMENT EXECUTE FUNCTION plantsync.config_changed();

CREATE FUNCTION plantsync.check_contract(subject text, instance jsonb)
RETURNS text
AS 'MODULE_PATHNAME', 'plantsync_check_contract'
LANGUAGE C STABLE;
COMMENT ON FUNCTION plantsync.check_contract(text, jsonb) IS
'Checks a message against the latest active contract of its subject. Returns the contract''s URI (the CloudEvents dataschema), NULL when the subject has no contract, and refuses a breaking message (SQLSTATE PS010) naming the JSON pointer of the first failing value, with every failure, up to plantsync.contract_max_errors, in the detail.';

-- What a new version may not do to messages the old one accepted. Compares
-- the two schemas structurally; what it cannot compare (combinators, $ref,
-- $defs) must be unchanged, so it never lets a breaking change through.
CREATE FUNCTION plantsync.contract_breaking_changes(old_schema jsonb, new_schema jsonb, field text DEFAULT '')
RETURNS TABLE (field_path text, rule text, detail text)
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f text := CASE WHEN field = '' THEN '/' ELSE field END;
    o jsonb := old_schema;
    n jsonb := new_schema;
    ot text[];
    nt text[];
    t text;
    k text;
    v jsonb;
    kw text;
    oldprop jsonb;
    newprop jsonb;
    i integer;
BEGIN
    IF jsonb_typeof(n) = 'boolean' THEN
        IF n = 'false' AND o <> 'false' THEN
            RETURN QUERY SELECT f, 'closed schema', 'The new version accepts no value here.';
        END IF;
        RETURN;
    END IF;
    IF o = 'false' THEN
        RETURN;                 -- nothing was accepted before: nothing can break
    END IF;
    IF o = 'true' THEN
        o := '{}';
    END IF;

    -- Types: integer is a kind of number.
    IF n ? 'type' THEN
        nt := CASE jsonb_typeof(n->'type') WHEN 'array' THEN ARRAY(SELECT jsonb_array_elements_text(n->'type')) ELSE ARRAY[n->>'type'] END;
        IF NOT o ? 'type' THEN
            RETURN QUERY SELECT f, 'narrowed type', format('Only %s is accepted now; any type was.', array_to_string(nt, ', '));
        ELSE
            ot := CASE jsonb_typeof(o->'type') WHEN 'array' THEN ARRAY(SELECT jsonb_array_elements_text(o->'type')) ELSE ARRAY[o->>'type'] END;
            FOREACH t IN ARRAY ot LOOP
                IF NOT (t = ANY (nt) OR (t = 'integer' AND 'number' = ANY (nt))) THEN
                    RETURN QUERY SELECT f, 'narrowed type', format('Type %s is no longer accepted (now %s).', t, array_to_string(nt, ', '));
                END IF;
            END LOOP;
        END IF;
    END IF;

    IF n ? 'const' AND (NOT o ? 'const' OR o->'const' <> n->'const') THEN
        RETURN QUERY SELECT f, 'narrowed value', format('Only %s is accepted now.', n->'const');
    END IF;
    IF n ? 'enum' THEN
        IF NOT o ? 'enum' THEN
            RETURN QUERY SELECT f, 'added enum', format('Only %s are accepted now.', n->'enum');
        ELSE
            FOR v IN SELECT jsonb_array_elements(o->'enum') LOOP
                IF NOT EXISTS (SELECT 1 FROM jsonb_array_elements(n->'enum') e WHERE e = v) THEN
                    RETURN QUERY SELECT f, 'removed enum value', format('Value %s is no longer accepted.', v);
                END IF;
            END LOOP;
        END IF;
    END IF;

    FOR k IN SELECT jsonb_array_elements_text(coalesce(n->'required', '[]')) LOOP
        IF NOT coalesce(o->'required', '[]') ? k THEN
            RETURN QUERY SELECT rtrim(f, '/') || '/' || k, 'new required field', format('"%s" must now be present.', k);
        END IF;
    END LOOP;

    -- Bounds that may only widen.
    FOREACH kw IN ARRAY ARRAY['minimum', 'exclusiveMinimum', 'minLength', 'minItems', 'minProperties', 'minContains'] LOOP
        IF n ? kw AND (NOT o ? kw OR (n->>kw)::numeric > (o->>kw)::numeric) THEN
            RETURN QUERY SELECT f, 'raised ' || kw, format('%s is now %s (was %s).', kw, n->>kw, coalesce(o->>kw, 'unset'));
        END IF;
    END LOOP;
    FOREACH kw IN ARRAY ARRAY['maximum', 'exclusiveMaximum', 'maxLength', 'maxItems', 'maxProperties', 'maxContains'] LOOP
        IF n ? kw AND (NOT o ? kw OR (n->>kw)::numeric < (o->>kw)::numeric) THEN
            RETURN QUERY SELECT f, 'lowered ' || kw, format('%s is now %s (was %s).', kw, n->>kw, coalesce(o->>kw, 'unset'));
        END IF;
    END LOOP;
    IF n ? 'multipleOf' AND (NOT o ? 'multipleOf' OR (o->>'multipleOf')::numeric % (n->>'multipleOf')::numeric <> 0) THEN
        RETURN QUERY SELECT f, 'changed multipleOf', format('Values must now be multiples of %s.', n->>'multipleOf');
    END IF;
    FOREACH kw IN ARRAY ARRAY['pattern', 'format', 'uniqueItems', 'dependentRequired', 'contains', 'propertyNames',
                              'allOf', 'anyOf', 'oneOf', 'not', 'if', 'then', 'else', '$ref', '$defs',
                              'dependentSchemas', 'patternProperties', 'unevaluatedProperties', 'unevaluatedItems'] LOOP
        IF n ? kw AND (NOT o ? kw OR o->kw <> n->kw) AND NOT (kw = 'uniqueItems' AND n->kw = 'false') THEN
            RETURN QUERY SELECT f, 'changed ' || kw, format('"%s" was added or changed; only identical values are known to be compatible.', kw);
        END IF;
    END LOOP;

    -- Objects: properties present in both are compared; a property only the
    -- old version declared meets the new additionalProperties.
    IF n ? 'additionalProperties' AND n->'additionalProperties' = 'false'
       AND coalesce(o->'additionalProperties', 'true') <> 'false' THEN
        RETURN QUERY SELECT f, 'closed object', 'Properties the new version does not declare are no longer accepted.';
    END IF;
    FOR k, oldprop IN SELECT key, value FROM jsonb_each(coalesce(o->'properties', '{}')) LOOP
        newprop := n->'properties'->k;
        IF newprop IS NULL THEN
            IF n->'additionalProperties' = 'false' THEN
                RETURN QUERY SELECT rtrim(f, '/') || '/' || k, 'removed field', format('"%s" is no longer accepted.', k);
            ELSIF n ? 'additionalProperties' THEN
                RETURN QUERY SELECT * FROM plantsync.contract_breaking_changes(oldprop, n->'additionalProperties', rtrim(f, '/') || '/' || k);
            END IF;
        ELSE
            RETURN QUERY SELECT * FROM plantsync.contract_breaking_changes(oldprop, newprop, rtrim(f, '/') || '/' || k);
        END IF;
    END LOOP;
    -- A property the old version did not declare, in an open object, is a
    -- new optional field: compatible by convention, although old messages
    -- could in theory have carried it with another type.
    IF n ? 'additionalProperties' AND n->'additionalProperties' <> 'false' AND o ? 'additionalProperties' THEN
        RETURN QUERY SELECT * FROM plantsync.contract_breaking_changes(o->'additionalProperties', n->'additionalProperties', rtrim(f, '/') || '/*');
    END IF;

    -- Arrays.
    IF n ? 'items' THEN
        RETURN QUERY SELECT * FROM plantsync.contract_breaking_changes(coalesce(o->'items', 'true'), n->'items', rtrim(f, '/') || '/*');
    END IF;
    FOR i IN 0 .. coalesce(jsonb_array_length(n->'prefixItems'), 0) - 1 LOOP
        RETURN QUERY SELECT * FROM plantsync.contract_breaking_changes(
            coalesce(o->'prefixItems'->i, o->'items', 'true'), n->'prefixItems'->i, rtrim(f, '/') || '/' || i);
    END LOOP;
END
$$;
COMMENT ON FUNCTION plantsync.contract_breaking_changes(jsonb, jsonb, text) IS
'The changes from old_schema to new_schema that would refuse a message the old one accepted (a new required field, a narrowed type, a removed enum value, a raised minimum, a closed object...), each with the field (JSON pointer) and the rule. Backward compatibility is an empty result; forward is the same with the arguments swapped.';

CREATE FUNCTION plantsync.register_contract(subject text, schema jsonb, kind text DEFAULT NULL,
                                            compatibility text DEFAULT NULL, description text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s plantsync.contract_subject;
    prev plantsync.contract;
    fp text := md5(schema::text);
    mode text;
    breaking record;
    msg text;
    details text := '';
    n integer := 0;
    first record;
    next_version integer;
BEGIN
    IF subject IS NULL OR schema IS NULL THEN
        RAISE EXCEPTION 'subject and schema are required' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF subject !~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$' THEN
        RAISE EXCEPTION 'invalid contract subject "%"', subject
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Subjects are dotted lower-case names: an event type such as production_order.released, or a message type such as erp.order_release.';
    END IF;
    IF kind IS NOT NULL AND kind NOT IN ('event', 'inbound') THEN
        RAISE EXCEPTION 'contract kind must be event or inbound, not "%"', kind USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF compatibility IS NOT NULL AND compatibility NOT IN ('backward', 'forward', 'full', 'none') THEN
        RAISE EXCEPTION 'compatibility must be backward, forward, full or none, not "%"', compatibility
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM plantsync.json_schema_check(schema);

    SELECT * INTO s FROM plantsync.contract_subject cs WHERE cs.subject = register_contract.subject FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO plantsync.contract_subject (subject, kind, compatibility, description)
        VALUES (register_contract.subject, coalesce(kind, 'event'), coalesce(compatibility, 'backward'), coalesce(description, ''))
        RETURNING * INTO s;
    ELSIF compatibility IS NOT NULL AND compatibility <> s.compatibility THEN
        UPDATE plantsync.contract_subject cs SET compatibility = register_contract.compatibility
         WHERE cs.subject = register_contract.subject RETURNING * INTO s;
    END IF;
    IF kind IS NOT NULL AND kind <> s.kind THEN
        RAISE EXCEPTION 'subject "%" is of kind "%", not "%"', subject, s.kind, kind
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT * INTO prev FROM plantsync.contract c
     WHERE c.subject = register_contract.subject AND c.status <> 'retired'
     ORDER BY c.version DESC LIMIT 1;
    IF FOUND AND prev.fingerprint = fp THEN
        RETURN prev.version;    -- the same schema again: nothing new
    END IF;

    IF FOUND AND s.compatibility <> 'none' THEN
        FOR breaking IN
            SELECT 'backward' AS direction, * FROM plantsync.contract_breaking_changes(prev.schema, schema)
             WHERE s.compatibility IN ('backward', 'full')
            UNION ALL
            SELECT 'forward', * FROM plantsync.contract_breaking_changes(schema, prev.schema)
             WHERE s.compatibility IN ('forward', 'full')
        LOOP
            n := n + 1;
            IF n = 1 THEN
                first := breaking;
            END IF;
            details := details || format(E'\n%s: %s at "%s": %s', breaking.direction, breaking.rule, breaking.field_path, breaking.detail);
        END LOOP;
        IF n > 0 THEN
            RAISE EXCEPTION 'contract "%" version % is not % compatible with version %: % at "%"',
                subject, prev.version + 1, first.direction, prev.version, first.rule, first.field_path
                USING ERRCODE = 'PS011',
                      DETAIL = format('%s breaking change%s (compatibility mode %s):%s', n, CASE WHEN n > 1 THEN 's' ELSE '' END, s.compatibility, details),
                      HINT = 'Make the change compatible (an optional field instead of a required one, a wider type), or register it under a new subject, or change the subject''s compatibility mode.';
        END IF;
    END IF;

    SELECT coalesce(max(c.version), 0) + 1 INTO next_version FROM plantsync.contract c WHERE c.subject = register_contract.subject;
    INSERT INTO plantsync.contract (subject, version, schema, fingerprint)
    VALUES (register_contract.subject, next_version, schema, fp);
    RETURN next_version;
END
$$;
COMMENT ON FUNCTION plantsync.register_contract(text, jsonb, text, text, text) IS
'Registers a JSON Schema as the next version of a subject''s contract (creating the subject, kind event or inbound, on first use). Refuses unsupported keywords and, per the subject''s compatibility mode, a breaking change (SQLSTATE PS011) naming the field and the rule. Registering the latest schema again returns its version.';

CREATE FUNCTION plantsync.set_contract_status(subject text, version integer, status text, reason text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF status IS NULL OR status NOT IN ('active', 'deprecated', 'retired') THEN
        RAISE EXCEPTION 'status must be active, deprecated or retired, not "%"', status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'a reason is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE plantsync.contract c SET status = set_contract_status.status, status_changed_at = now(),
           status_reason = reason
     WHERE c.subject = set_contract_status.subject AND c.version = set_contract_status.version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contract "%" version % does not exist', subject, version USING ERRCODE = 'undefined_object';
    END IF;
END
$$;
COMMENT ON FUNCTION plantsync.set_contract_status(text, integer, text, text) IS
'Deprecates, retires or reactivates a contract version, with a reason.';
