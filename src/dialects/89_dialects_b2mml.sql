-- B2MML, MESA International's XML form of ISA-95: exports of production
-- performance and material lot information in the 0700+ namespace, and an
-- importer for production schedules, production performance, material
-- definitions and material information in the three namespaces found in
-- the field (V0401, V0600, 0700+). An import becomes the same canonical
-- messages the process APIs take, applied through the inbox; every element
-- the importer does not map is kept with its path beside the document.
--
-- The Business To Manufacturing Markup Language (B2MML) is used courtesy of
-- MESA International.

-- ---------- the ERP's batch master, as B2MML material information brings it ----------

-- Lots belong to the plant (MES creates them); what an ERP says about its
-- batches (status, expiry, quantities per sublot) is its view, kept here so
-- that nothing of the message is lost and reconciliation can read it.
CREATE TABLE plantsync.erp_batch (
    site_id text NOT NULL REFERENCES plantsync.site,
    material_number text NOT NULL,
    lot_number text NOT NULL,
    sublot_number text NOT NULL DEFAULT '',
    status text,
    expires_on date,
    quantity numeric,
    uom text,
    message_id text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, material_number, lot_number, sublot_number)
);
COMMENT ON TABLE plantsync.erp_batch IS 'The ERP''s view of its batches (B2MML MaterialInformation: SAP batch master, sublot quantities), latest message per batch and sublot. The plant''s own lots are in plantsync.lot; this is what the ERP says about them.';
COMMENT ON COLUMN plantsync.erp_batch.site_id IS 'Plant.';
COMMENT ON COLUMN plantsync.erp_batch.material_number IS 'Material number (the plant''s code).';
COMMENT ON COLUMN plantsync.erp_batch.lot_number IS 'Batch (lot) number.';
COMMENT ON COLUMN plantsync.erp_batch.sublot_number IS 'Sublot number; empty for the lot itself.';
COMMENT ON COLUMN plantsync.erp_batch.status IS 'Status as the ERP names it (e.g. Valid, NotValid).';
COMMENT ON COLUMN plantsync.erp_batch.expires_on IS 'Expiry date the ERP has.';
COMMENT ON COLUMN plantsync.erp_batch.quantity IS 'Quantity the ERP has, in uom.';
COMMENT ON COLUMN plantsync.erp_batch.uom IS 'Unit of the quantity.';
COMMENT ON COLUMN plantsync.erp_batch.message_id IS 'Message that last said it.';
COMMENT ON COLUMN plantsync.erp_batch.received_at IS 'When.';
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON plantsync.erp_batch FROM PUBLIC;

SELECT plantsync.register_contract('erp.material', '{
  "type": "object", "required": ["site", "material", "description", "base_uom"],
  "properties": {"site": {"type": "string", "minLength": 1}, "material": {"type": "string", "minLength": 1},
                 "description": {"type": "string"}, "base_uom": {"type": "string", "minLength": 1},
                 "material_type": {"enum": ["raw", "semi_finished", "finished", "packaging", "consumable", "by_product"]}}}',
  'inbound', 'backward', 'ERP sends a material of its material master (B2MML MaterialDefinition).');
SELECT plantsync.register_contract('erp.batch', '{
  "type": "object", "required": ["site", "material", "lot"],
  "properties": {"site": {"type": "string", "minLength": 1}, "material": {"type": "string", "minLength": 1},
                 "lot": {"type": "string", "minLength": 1}, "sublot": {"type": "string"}, "status": {"type": "string"},
                 "expires_on": {"type": "string", "format": "date"}, "quantity": {"type": "number", "minimum": 0},
                 "uom": {"type": "string"}}}',
  'inbound', 'backward', 'ERP sends what it has of a batch or sublot (B2MML MaterialLot / MaterialSubLot).');

CREATE FUNCTION plantsync.handle_erp_material(m jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    id uuid;
    created boolean := false;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM plantsync.uom WHERE uom_code = m ->> 'base_uom') THEN
        RAISE EXCEPTION 'unit of measure "%" of material "%" is not known', m ->> 'base_uom', m ->> 'material'
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'base_uom', HINT = 'Add it to plantsync.uom, or map the ERP''s unit.';
    END IF;
    UPDATE plantsync.material SET description = m ->> 'description'
     WHERE site_id = m ->> 'site' AND material_number = m ->> 'material' AND description IS DISTINCT FROM m ->> 'description'
    RETURNING material.id INTO id;
    IF id IS NULL THEN
        SELECT material.id INTO id FROM plantsync.material WHERE site_id = m ->> 'site' AND material_number = m ->> 'material';
    END IF;
    IF id IS NULL THEN
        INSERT INTO plantsync.material (site_id, material_number, description, material_type, base_uom)
        VALUES (m ->> 'site', m ->> 'material', m ->> 'description', COALESCE(m ->> 'material_type', 'raw'), m ->> 'base_uom')
        RETURNING material.id INTO id;
        created := true;
    END IF;
    RETURN jsonb_build_object('material_id', id, 'created', created);
END
$$;
COMMENT ON FUNCTION plantsync.handle_erp_material(jsonb) IS 'Handler of erp.material: the material created, or its description brought up to date.';

CREATE FUNCTION plantsync.handle_erp_batch(m jsonb, message_id text) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO plantsync.erp_batch AS b (site_id, material_number, lot_number, sublot_number, status, expires_on, quantity, uom, message_id)
    VALUES (m ->> 'site', m ->> 'material', m ->> 'lot', COALESCE(m ->> 'sublot', ''), m ->> 'status', (m ->> 'expires_on')::date,
            (m ->> 'quantity')::numeric, m ->> 'uom', message_id)
    ON CONFLICT (site_id, material_number, lot_number, sublot_number) DO UPDATE
       SET status = COALESCE(excluded.status, b.status), expires_on = COALESCE(excluded.expires_on, b.expires_on),
           quantity = COALESCE(excluded.quantity, b.quantity), uom = COALESCE(excluded.uom, b.uom),
           message_id = excluded.message_id, received_at = now();
    RETURN jsonb_build_object('batch', m ->> 'lot', 'sublot', m ->> 'sublot',
                              'plant_lot_id', (SELECT l.id FROM plantsync.lot l JOIN plantsync.material mt ON mt.id = l.material_id
                                                WHERE l.site_id = m ->> 'site' AND mt.material_number = m ->> 'material'
                                                  AND l.lot_number = m ->> 'lot'));
END
$$;
COMMENT ON FUNCTION plantsync.handle_erp_batch(jsonb, text) IS 'Handler of erp.batch: the ERP''s view of a batch or sublot kept in plantsync.erp_batch; returns the plant''s lot when there is one.';
REVOKE EXECUTE ON FUNCTION plantsync.handle_erp_material(jsonb), plantsync.handle_erp_batch(jsonb, text) FROM PUBLIC;

CREATE FUNCTION plantsync.erp_material(message_id text, payload jsonb) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.receive('erp.material', message_id, payload) $$;
CREATE FUNCTION plantsync.erp_batch(message_id text, payload jsonb) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.receive('erp.batch', message_id, payload) $$;
COMMENT ON FUNCTION plantsync.erp_material(text, jsonb) IS 'ERP: a material of the material master (contract erp.material).';
COMMENT ON FUNCTION plantsync.erp_batch(text, jsonb) IS 'ERP: what the ERP has of a batch or sublot (contract erp.batch), kept in plantsync.erp_batch.';
REVOKE EXECUTE ON FUNCTION plantsync.erp_material(text, jsonb), plantsync.erp_batch(text, jsonb) FROM PUBLIC;

-- ---------- reading B2MML ----------

-- The text of a leaf below an element, by a path of local names
-- ("Quantity/QuantityString"), whatever the namespace. XMLTABLE gives the
-- text unescaped, as the document meant it.
CREATE FUNCTION plantsync.b2mml_value(p_node xml, p_path text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT NULLIF(btrim(x.v), '')
      FROM XMLTABLE('/*' PASSING p_node
                    COLUMNS v text PATH (SELECT string_agg(format('*[local-name()=''%s'']', s), '/') || '[1]'
                                           FROM unnest(string_to_array(p_path, '/')) s)) x
$$;
COMMENT ON FUNCTION plantsync.b2mml_value(xml, text) IS 'Used by the importer: the text of the first element at a path of local names below an element, or NULL.';

-- The children of an element with a given local name, with their position.
CREATE FUNCTION plantsync.b2mml_children(p_node xml, p_name text)
RETURNS TABLE (node xml, n integer)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c, o::integer FROM unnest(xpath(format('/*/*[local-name()=''%s'']', p_name), p_node)) WITH ORDINALITY AS u (c, o)
$$;
COMMENT ON FUNCTION plantsync.b2mml_children(xml, text) IS 'Used by the importer: the child elements of an element with one local name, numbered from 1.';

-- A material's use, whichever generation wrote it: V0401/V0600 name it in
-- the element (MaterialConsumedActual), 0700+ in MaterialUse.
CREATE FUNCTION plantsync.b2mml_material_use(p_name text, p_node xml)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN p_name IN ('MaterialConsumedActual', 'MaterialConsumedRequirement') THEN 'Consumed'
        WHEN p_name IN ('MaterialProducedActual', 'MaterialProducedRequirement') THEN 'Produced'
        ELSE plantsync.b2mml_value(p_node, 'MaterialUse') END
$$;
COMMENT ON FUNCTION plantsync.b2mml_material_use(text, xml) IS 'Used by the importer: Consumed, Produced or the MaterialUse written in a material requirement or actual.';

-- The elements the importer does not map, with their paths: everything
-- below the root whose local-name path (positions left out) is not in
-- p_known, and properties and material uses the mapping does not read.
CREATE FUNCTION plantsync.b2mml_unmapped(p_node xml, p_path text, p_key text, p_known text[])
RETURNS SETOF jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
    name text;
    key text;
    seen jsonb := '{}';
    pos integer;
    path text;
BEGIN
    FOR c IN SELECT u.c FROM unnest(xpath('/*/*', p_node)) WITH ORDINALITY AS u (c, o) ORDER BY u.o LOOP
        name := (xpath('local-name(/*)', c.c))[1]::text;
        pos := COALESCE((seen ->> name)::integer, 0) + 1;
        seen := seen || jsonb_build_object(name, pos);
        key := ltrim(p_key || '/' || name, '/');
        path := p_path || '/' || name || '[' || pos || ']';
        IF EXISTS (SELECT 1 FROM unnest(p_known) k WHERE k LIKE '%/*' AND (key = left(k, -2) OR key LIKE left(k, -1) || '%')) THEN
            -- a subtree read as a whole
            CONTINUE;
        ELSIF NOT key = ANY (p_known)
           -- only the properties the mapping reads are mapped
           OR (name IN ('MaterialDefinitionProperty', 'MaterialLotProperty')
               AND NOT COALESCE(plantsync.b2mml_value(c.c, 'ID'), '') = ANY (ARRAY['BaseUnitOfMeasure', 'ExpiryDate']))
           -- only consumption and production are mapped
           OR (name IN ('MaterialActual', 'MaterialRequirement')
               AND NOT COALESCE(plantsync.b2mml_material_use(name, c.c), '') = ANY (
                       CASE WHEN name = 'MaterialActual' THEN ARRAY['Consumed', 'Produced'] ELSE ARRAY['Produced'] END)) THEN
            RETURN NEXT jsonb_build_object('path', path, 'xml', c.c::text);
        ELSE
            RETURN QUERY SELECT * FROM plantsync.b2mml_unmapped(c.c, path, key, p_known);
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION plantsync.b2mml_unmapped(xml, text, text, text[]) IS 'Used by the importer: the elements it does not map, each with its path and XML.';

-- Element paths (positions left out, relative to the noun) the mapping
-- reads or walks through; a trailing /* takes a whole subtree.
CREATE FUNCTION plantsync.b2mml_known_paths(p_noun text)
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH quantity (p) AS (VALUES ('Quantity'), ('Quantity/QuantityString'), ('Quantity/UnitOfMeasure'), ('Quantity/DataType')),
    material (p) AS (
        SELECT unnest(ARRAY['MaterialDefinitionID', 'MaterialLotID', 'MaterialUse', 'StorageLocation', 'StorageLocation/Location',
                            'StorageLocation/LocationType', 'Location', 'ID', 'Description']) UNION ALL SELECT p FROM quantity),
    header (p) AS (VALUES ('ID'), ('Description'), ('PublishedDate'), ('StartTime'), ('EndTime'), ('Endtime'), ('Location/*'),
                          ('HierarchyScope/*'), ('OperationsType'), ('PerformanceState'), ('ProductionScheduleID'), ('OperationsScheduleID')),
    paths (p) AS (
        SELECT p FROM header WHERE p_noun IN ('ProductionSchedule', 'OperationsSchedule', 'ProductionPerformance', 'OperationsPerformance')
        UNION ALL
        SELECT r || s FROM unnest(ARRAY['ProductionRequest', 'OperationsRequest']) r,
               unnest(ARRAY['', '/ID', '/Description', '/Priority', '/StartTime', '/EndTime', '/RequestState', '/OperationsType',
                            '/HierarchyScope/*', '/Location/*', '/SegmentRequirement', '/SegmentRequirement/ID',
                            '/SegmentRequirement/ProcessSegmentID', '/SegmentRequirement/EarliestStartTime',
                            '/SegmentRequirement/LatestEndTime', '/SegmentRequirement/EquipmentRequirement',
                            '/SegmentRequirement/EquipmentRequirement/EquipmentID', '/SegmentRequirement/EquipmentRequirement/ID']
                      || ARRAY(SELECT '/SegmentRequirement/' || mr || '/' || p FROM unnest(ARRAY['MaterialProducedRequirement', 'MaterialRequirement']) mr,
                                      material)
                      || ARRAY['/SegmentRequirement/MaterialProducedRequirement', '/SegmentRequirement/MaterialRequirement']) s
         WHERE p_noun IN ('ProductionSchedule', 'OperationsSchedule')
        UNION ALL
        SELECT r || s FROM unnest(ARRAY['ProductionResponse', 'OperationsResponse']) r,
               unnest(ARRAY['', '/ID', '/Description', '/ProductionRequestID', '/OperationsRequestID', '/StartTime', '/EndTime',
                            '/ResponseState', '/OperationsType', '/HierarchyScope/*', '/Location/*', '/SegmentResponse',
                            '/SegmentResponse/ID', '/SegmentResponse/ProcessSegmentID', '/SegmentResponse/ActualStartTime',
                            '/SegmentResponse/ActualEndTime', '/SegmentResponse/SegmentState', '/SegmentResponse/OperationsType',
                            '/SegmentResponse/MaterialConsumedActual', '/SegmentResponse/MaterialProducedActual',
                            '/SegmentResponse/MaterialActual']
                      || ARRAY(SELECT '/SegmentResponse/' || ma || '/' || p
                                 FROM unnest(ARRAY['MaterialConsumedActual', 'MaterialProducedActual', 'MaterialActual']) ma, material)) s
         WHERE p_noun IN ('ProductionPerformance', 'OperationsPerformance')
        UNION ALL
        SELECT pre || s FROM unnest(CASE p_noun WHEN 'MaterialDefinition' THEN ARRAY['']
                                                WHEN 'MaterialInformation' THEN ARRAY['MaterialDefinition'] END) pre,
               unnest(ARRAY['', '/ID', '/Description', '/MaterialDefinitionProperty', '/MaterialDefinitionProperty/ID',
                            '/MaterialDefinitionProperty/Value', '/MaterialDefinitionProperty/Value/*']) s
        UNION ALL
        SELECT pre || s FROM unnest(CASE p_noun WHEN 'MaterialLot' THEN ARRAY['']
                                                WHEN 'MaterialInformation' THEN ARRAY['MaterialLot'] END) pre,
               unnest(ARRAY['', '/ID', '/Description', '/MaterialDefinitionID', '/Status', '/MaterialLotProperty',
                            '/MaterialLotProperty/ID', '/MaterialLotProperty/Value', '/MaterialLotProperty/Value/*',
                            '/MaterialSubLot', '/MaterialSubLot/ID', '/MaterialSubLot/Status']
                      || ARRAY(SELECT '/' || p FROM quantity) || ARRAY(SELECT '/MaterialSubLot/' || p FROM quantity)) s
        UNION ALL
        SELECT unnest(ARRAY['ID', 'Description', 'PublishedDate']) WHERE p_noun = 'MaterialInformation')
    SELECT array_agg(DISTINCT ltrim(p, '/')) FROM paths
$$;
COMMENT ON FUNCTION plantsync.b2mml_known_paths(text) IS 'Used by the importer: the element paths it maps for a noun.';

-- A refusal naming the element and the reason.
CREATE FUNCTION plantsync.b2mml_refuse(p_path text, p_reason text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'B2MML element %: %', p_path, p_reason
        USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Element: %s', p_path),
              HINT = 'Nothing of the document was applied; correct it and send it again (a new message id for a changed document).';
END
$$;
COMMENT ON FUNCTION plantsync.b2mml_refuse(text, text) IS 'Used by the importer: refuses a document, naming the element path and the reason.';

-- A quantity element ({quantity, uom}), refused when it is not a number.
CREATE FUNCTION plantsync.b2mml_quantity(p_node xml, p_path text)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q text := plantsync.b2mml_value(p_node, 'Quantity/QuantityString');
    u text := plantsync.b2mml_value(p_node, 'Quantity/UnitOfMeasure');
BEGIN
    IF q IS NULL THEN
        RETURN NULL;
    END IF;
    IF q !~ '^\s*[+]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$' THEN
        PERFORM plantsync.b2mml_refuse(p_path || '/Quantity/QuantityString', format('quantity "%s" is not a number', q));
    END IF;
    RETURN jsonb_build_object('quantity', q::numeric, 'uom', u);
END
$$;
COMMENT ON FUNCTION plantsync.b2mml_quantity(xml, text) IS 'Used by the importer: the Quantity of an element as {quantity, uom}, or a refusal naming the path.';

-- A B2MML date-time as a date (the due date of an order).
CREATE FUNCTION plantsync.b2mml_date(p_value text, p_path text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- a date, or a time without an offset, is the date written
    IF p_value ~ '^\d{4}-\d{2}-\d{2}' AND p_value !~ '(Z|[+-]\d{2}(:?\d{2})?)$' THEN
        RETURN to_char(left(p_value, 10)::date, 'YYYY-MM-DD');
    END IF;
    RETURN to_char(p_value::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD');
EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow THEN
    PERFORM plantsync.b2mml_refuse(p_path, format('"%s" is not a date and time', p_value));
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION plantsync.b2mml_date(text, text) IS 'Used by the importer: a B2MML DateTime as an ISO date, or a refusal naming the path.';

-- The document read into canonical messages, without applying anything:
-- {namespace, release, root, noun, system, messages: [{type, key, payload}],
-- unmapped: [{path, xml}]}.
CREATE FUNCTION plantsync.parse_b2mml(p_document text, p_site text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    doc xml;
    ns text;
    release text;
    root text;
    noun text;
    verb text;
    prefix text;
    nouns xml[];
    nn xml;
    ni integer;
    messages jsonb := '[]';
    unmapped jsonb := '[]';
    r record;
    s record;
    m record;
    p text;
    sp text;
    mp text;
    use text;
    q jsonb;
    produced jsonb;
    ops jsonb;
    wc text;
    loc text;
    due text;
    ord text;
    system text;
    mat text;
    prop record;
    detail text;
BEGIN
    IF p_document IS NULL THEN
        RAISE EXCEPTION 'the B2MML document is empty' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_site IS NULL OR NOT EXISTS (SELECT 1 FROM plantsync.site WHERE site_id = p_site) THEN
        RAISE EXCEPTION 'site "%" does not exist', COALESCE(p_site, 'null') USING ERRCODE = 'foreign_key_violation', COLUMN = 'site';
    END IF;
    -- B2MML is defined by schemas, not DTDs: a DOCTYPE only ever brings
    -- entities, which are not expanded here (nor fetched)
    IF p_document ~* '<!DOCTYPE' THEN
        RAISE EXCEPTION 'the B2MML document has a DOCTYPE' USING ERRCODE = 'invalid_xml_document',
            HINT = 'Send the document without a DOCTYPE: entity declarations are not read.';
    END IF;
    BEGIN
        -- a byte order mark is common in files written on Windows
        doc := xmlparse(DOCUMENT ltrim(p_document, E'\uFEFF'));
    EXCEPTION WHEN invalid_xml_document OR invalid_xml_content OR invalid_text_representation THEN
        GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
        RAISE EXCEPTION 'the B2MML document is not well-formed XML' USING ERRCODE = 'invalid_xml_document',
            DETAIL = COALESCE(NULLIF(btrim(detail), ''), SQLERRM);
    END;
    ns := (xpath('namespace-uri(/*)', doc))[1]::text;
    root := (xpath('local-name(/*)', doc))[1]::text;
    release := CASE ns WHEN 'http://www.wbf.org/xml/B2MML-V0401' THEN 'V0401' WHEN 'http://www.mesa.org/xml/B2MML-V0600' THEN 'V0600'
                       WHEN 'http://www.mesa.org/xml/B2MML' THEN '0700+' END;
    IF release IS NULL THEN
        RAISE EXCEPTION 'namespace "%" of element % is not a B2MML namespace', ns, root USING ERRCODE = 'invalid_parameter_value',
            HINT = 'B2MML documents are in http://www.wbf.org/xml/B2MML-V0401, http://www.mesa.org/xml/B2MML-V0600 or http://www.mesa.org/xml/B2MML (0700 and later).';
    END IF;

    -- a transaction (verb + noun, ApplicationArea and DataArea) or a bare noun
    IF EXISTS (SELECT 1 FROM plantsync.b2mml_children(doc, 'DataArea')) THEN
        verb := substring(root FROM '^(Process|Sync|Change|Acknowledge|Show|Respond|Get|Cancel|Notify)');
        noun := substring(root FROM length(COALESCE(verb, '')) + 1);
        SELECT array_agg(c.node ORDER BY c.n) INTO nouns
          FROM plantsync.b2mml_children((SELECT d.node FROM plantsync.b2mml_children(doc, 'DataArea') d LIMIT 1), noun) c;
        prefix := '/' || root || '/DataArea[1]/' || noun;
        -- the header and the verb are read as a whole; unknown siblings are kept
        SELECT COALESCE(jsonb_agg(u), '[]') INTO unmapped
          FROM plantsync.b2mml_unmapped(doc, '/' || root, '',
                   ARRAY['ApplicationArea/*', 'DataArea', 'DataArea/' || COALESCE(verb, '?'), 'DataArea/' || COALESCE(verb, '?') || '/*',
                         'DataArea/' || noun, 'DataArea/' || noun || '/*']) u;
    ELSE
        noun := root;
        nouns := ARRAY[doc];
        prefix := '';
    END IF;
    IF noun NOT IN ('ProductionSchedule', 'OperationsSchedule', 'ProductionPerformance', 'OperationsPerformance',
                    'MaterialDefinition', 'MaterialInformation', 'MaterialLot') THEN
        PERFORM plantsync.b2mml_refuse('/' || root, format('%s is not imported', noun));
    END IF;
    IF nouns IS NULL THEN
        PERFORM plantsync.b2mml_refuse('/' || root || '/DataArea[1]', format('no %s element', noun));
    END IF;
    system := CASE WHEN noun IN ('ProductionPerformance', 'OperationsPerformance') THEN 'mes' ELSE 'erp' END;

    ni := 0;
    FOREACH nn IN ARRAY nouns LOOP
        ni := ni + 1;
        p := CASE WHEN prefix = '' THEN '/' || root ELSE prefix || '[' || ni || ']' END;
        SELECT unmapped || COALESCE(jsonb_agg(u), '[]') INTO unmapped
          FROM plantsync.b2mml_unmapped(nn, p, '', plantsync.b2mml_known_paths(noun)) u;

        IF noun IN ('ProductionSchedule', 'OperationsSchedule') THEN
            FOR r IN SELECT c.node, c.n, c.name FROM (
                        SELECT x.node, x.n, 'ProductionRequest' AS name FROM plantsync.b2mml_children(nn, 'ProductionRequest') x
                        UNION ALL SELECT x.node, x.n, 'OperationsRequest' FROM plantsync.b2mml_children(nn, 'OperationsRequest') x) c
                      ORDER BY c.name, c.n LOOP
                sp := p || '/' || r.name || '[' || r.n || ']';
                ord := plantsync.b2mml_value(r.node, 'ID');
                IF ord IS NULL THEN
                    PERFORM plantsync.b2mml_refuse(sp, 'no ID (the order number)');
                END IF;
                produced := NULL;
                ops := '[]';
                due := plantsync.b2mml_value(r.node, 'EndTime');
                FOR s IN SELECT * FROM plantsync.b2mml_children(r.node, 'SegmentRequirement') ORDER BY n LOOP
                    mp := sp || '/SegmentRequirement[' || s.n || ']';
                    due := COALESCE(plantsync.b2mml_value(s.node, 'LatestEndTime'), due);
                    -- the segment's produced material: the last segment's is the order's
                    FOR m IN SELECT x.node, x.n, x.name FROM (
                                SELECT c.node, c.n, 'MaterialProducedRequirement' AS name FROM plantsync.b2mml_children(s.node, 'MaterialProducedRequirement') c
                                UNION ALL SELECT c.node, c.n, 'MaterialRequirement' FROM plantsync.b2mml_children(s.node, 'MaterialRequirement') c) x
                              WHERE plantsync.b2mml_material_use(x.name, x.node) = 'Produced' ORDER BY x.name, x.n LOOP
                        q := plantsync.b2mml_quantity(m.node, mp || '/' || m.name || '[' || m.n || ']');
                        mat := plantsync.b2mml_value(m.node, 'MaterialDefinitionID');
                        IF mat IS NULL OR q IS NULL OR q ->> 'uom' IS NULL THEN
                            PERFORM plantsync.b2mml_refuse(mp || '/' || m.name || '[' || m.n || ']',
                                                           'a produced material needs MaterialDefinitionID and a Quantity with its UnitOfMeasure');
                        END IF;
                        produced := q || jsonb_build_object('material', mat);
                    END LOOP;
                    IF plantsync.b2mml_value(s.node, 'ID') IS NOT NULL OR plantsync.b2mml_value(s.node, 'ProcessSegmentID') IS NOT NULL THEN
                        wc := plantsync.b2mml_value(s.node, 'EquipmentRequirement/EquipmentID');
                        IF wc IS NULL THEN
                            PERFORM plantsync.b2mml_refuse(mp, 'no EquipmentRequirement/EquipmentID (the work center of the operation)');
                        END IF;
                        ops := ops || jsonb_build_object(
                            'operation', COALESCE(plantsync.b2mml_value(s.node, 'ID'), plantsync.b2mml_value(s.node, 'ProcessSegmentID')),
                            'segment', COALESCE(plantsync.b2mml_value(s.node, 'ProcessSegmentID'), plantsync.b2mml_value(s.node, 'ID')),
                            'work_center', wc);
                    END IF;
                END LOOP;
                IF produced IS NULL THEN
                    PERFORM plantsync.b2mml_refuse(sp, 'no produced material (a MaterialProducedRequirement, or a MaterialRequirement with MaterialUse Produced)');
                END IF;
                IF due IS NULL THEN
                    PERFORM plantsync.b2mml_refuse(sp, 'no EndTime or LatestEndTime (the due date)');
                END IF;
                messages := messages || jsonb_build_object('type', 'erp.order_release', 'key', r.name || '/' || ord,
                    'payload', jsonb_strip_nulls(jsonb_build_object(
                        'site', p_site, 'order', ord, 'erp_ref', ord, 'material', produced ->> 'material',
                        'quantity', (produced ->> 'quantity')::numeric, 'uom', produced ->> 'uom',
                        'due_date', plantsync.b2mml_date(due, sp),
                        'priority', CASE WHEN plantsync.b2mml_value(r.node, 'Priority') ~ '^[1-9]$' THEN plantsync.b2mml_value(r.node, 'Priority')::integer END,
                        'operations', (SELECT jsonb_agg(o || jsonb_build_object('quantity', (produced ->> 'quantity')::numeric))
                                         FROM jsonb_array_elements(ops) o))));
            END LOOP;

        ELSIF noun IN ('ProductionPerformance', 'OperationsPerformance') THEN
            FOR r IN SELECT c.node, c.n, c.name FROM (
                        SELECT x.node, x.n, 'ProductionResponse' AS name FROM plantsync.b2mml_children(nn, 'ProductionResponse') x
                        UNION ALL SELECT x.node, x.n, 'OperationsResponse' FROM plantsync.b2mml_children(nn, 'OperationsResponse') x) c
                      ORDER BY c.name, c.n LOOP
                sp := p || '/' || r.name || '[' || r.n || ']';
                ord := COALESCE(plantsync.b2mml_value(r.node, 'ProductionRequestID'), plantsync.b2mml_value(r.node, 'OperationsRequestID'),
                                plantsync.b2mml_value(r.node, 'ID'));
                IF ord IS NULL THEN
                    PERFORM plantsync.b2mml_refuse(sp, 'no ProductionRequestID, OperationsRequestID or ID (the order number)');
                END IF;
                FOR s IN SELECT * FROM plantsync.b2mml_children(r.node, 'SegmentResponse') ORDER BY n LOOP
                    -- consumptions first: a completion closes the order
                    FOR m IN SELECT x.node, x.n, x.name, plantsync.b2mml_material_use(x.name, x.node) AS use FROM (
                                SELECT c.node, c.n, 'MaterialConsumedActual' AS name FROM plantsync.b2mml_children(s.node, 'MaterialConsumedActual') c
                                UNION ALL SELECT c.node, c.n, 'MaterialProducedActual' FROM plantsync.b2mml_children(s.node, 'MaterialProducedActual') c
                                UNION ALL SELECT c.node, c.n, 'MaterialActual' FROM plantsync.b2mml_children(s.node, 'MaterialActual') c) x
                              WHERE plantsync.b2mml_material_use(x.name, x.node) IN ('Consumed', 'Produced')
                              ORDER BY plantsync.b2mml_material_use(x.name, x.node), x.name, x.n LOOP
                        mp := sp || '/SegmentResponse[' || s.n || ']/' || m.name || '[' || m.n || ']';
                        q := plantsync.b2mml_quantity(m.node, mp);
                        loc := COALESCE(plantsync.b2mml_value(m.node, 'StorageLocation/Location'), plantsync.b2mml_value(m.node, 'StorageLocation'),
                                        plantsync.b2mml_value(m.node, 'Location'));
                        IF plantsync.b2mml_value(m.node, 'MaterialLotID') IS NULL THEN
                            PERFORM plantsync.b2mml_refuse(mp, 'no MaterialLotID (the lot)');
                        ELSIF q IS NULL OR q ->> 'uom' IS NULL THEN
                            PERFORM plantsync.b2mml_refuse(mp, 'no Quantity with QuantityString and UnitOfMeasure');
                        ELSIF loc IS NULL THEN
                            PERFORM plantsync.b2mml_refuse(mp, 'no StorageLocation (where the material came from or went to)');
                        END IF;
                        messages := messages || jsonb_build_object(
                            'type', CASE m.use WHEN 'Consumed' THEN 'mes.consume' ELSE 'mes.complete' END,
                            -- unique within the document: its noun, response, segment and actual
                            'key', format('%s/%s/%s/%s/%s', ord, ni, r.n, COALESCE(plantsync.b2mml_value(s.node, 'ID'), s.n::text),
                                          COALESCE(plantsync.b2mml_value(m.node, 'ID'), m.name || m.n)),
                            'payload', jsonb_strip_nulls(jsonb_build_object(
                                'site', p_site, 'order', ord,
                                'material', CASE m.use WHEN 'Consumed' THEN plantsync.b2mml_value(m.node, 'MaterialDefinitionID') END,
                                'lot', plantsync.b2mml_value(m.node, 'MaterialLotID'),
                                'quantity', (q ->> 'quantity')::numeric, 'uom', q ->> 'uom', 'location', loc)));
                        IF m.use = 'Consumed' AND plantsync.b2mml_value(m.node, 'MaterialDefinitionID') IS NULL THEN
                            PERFORM plantsync.b2mml_refuse(mp, 'no MaterialDefinitionID (the material consumed)');
                        END IF;
                    END LOOP;
                END LOOP;
            END LOOP;

        ELSE
            -- material definitions: the noun itself, or inside material information
            FOR r IN SELECT x.node, x.n, x.pp FROM (
                        SELECT nn AS node, 1 AS n, p AS pp WHERE noun = 'MaterialDefinition'
                        UNION ALL SELECT c.node, c.n, p || '/MaterialDefinition[' || c.n || ']' FROM plantsync.b2mml_children(nn, 'MaterialDefinition') c
                         WHERE noun = 'MaterialInformation') x ORDER BY x.n LOOP
                mat := plantsync.b2mml_value(r.node, 'ID');
                IF mat IS NULL THEN
                    PERFORM plantsync.b2mml_refuse(r.pp, 'no ID (the material number)');
                END IF;
                SELECT plantsync.b2mml_value(c.node, 'Value/ValueString') AS v INTO prop
                  FROM plantsync.b2mml_children(r.node, 'MaterialDefinitionProperty') c
                 WHERE plantsync.b2mml_value(c.node, 'ID') = 'BaseUnitOfMeasure' LIMIT 1;
                IF prop.v IS NULL THEN
                    PERFORM plantsync.b2mml_refuse(r.pp, 'no base unit of measure (a MaterialDefinitionProperty with ID BaseUnitOfMeasure)');
                END IF;
                messages := messages || jsonb_build_object('type', 'erp.material', 'key', 'MaterialDefinition/' || mat,
                    'payload', jsonb_build_object('site', p_site, 'material', mat,
                                                  'description', COALESCE(plantsync.b2mml_value(r.node, 'Description'), mat),
                                                  'base_uom', prop.v));
            END LOOP;
            -- lots and their sublots: the ERP's view of its batches
            FOR r IN SELECT x.node, x.n, x.pp FROM (
                        SELECT nn AS node, 1 AS n, p AS pp WHERE noun = 'MaterialLot'
                        UNION ALL SELECT c.node, c.n, p || '/MaterialLot[' || c.n || ']' FROM plantsync.b2mml_children(nn, 'MaterialLot') c
                         WHERE noun = 'MaterialInformation') x ORDER BY x.n LOOP
                -- a lot without MaterialDefinitionID belongs to the material the information is about
                mat := COALESCE(plantsync.b2mml_value(r.node, 'MaterialDefinitionID'),
                                CASE WHEN noun = 'MaterialInformation' THEN plantsync.b2mml_value(nn, 'ID') END);
                IF plantsync.b2mml_value(r.node, 'ID') IS NULL THEN
                    PERFORM plantsync.b2mml_refuse(r.pp, 'no ID (the lot number)');
                ELSIF mat IS NULL THEN
                    PERFORM plantsync.b2mml_refuse(r.pp, 'no MaterialDefinitionID (the material of the lot)');
                END IF;
                SELECT plantsync.b2mml_value(c.node, 'Value/ValueString') AS v INTO prop
                  FROM plantsync.b2mml_children(r.node, 'MaterialLotProperty') c
                 WHERE plantsync.b2mml_value(c.node, 'ID') = 'ExpiryDate' LIMIT 1;
                q := plantsync.b2mml_quantity(r.node, r.pp);
                messages := messages || jsonb_build_object('type', 'erp.batch', 'key', 'MaterialLot/' || mat || '/' || plantsync.b2mml_value(r.node, 'ID'),
                    'payload', jsonb_strip_nulls(jsonb_build_object(
                        'site', p_site, 'material', mat, 'lot', plantsync.b2mml_value(r.node, 'ID'),
                        'status', plantsync.b2mml_value(r.node, 'Status'),
                        'expires_on', CASE WHEN prop.v IS NOT NULL THEN plantsync.b2mml_date(prop.v, r.pp || '/MaterialLotProperty') END,
                        'quantity', (q ->> 'quantity')::numeric, 'uom', q ->> 'uom')));
                FOR s IN SELECT * FROM plantsync.b2mml_children(r.node, 'MaterialSubLot') ORDER BY n LOOP
                    mp := r.pp || '/MaterialSubLot[' || s.n || ']';
                    IF plantsync.b2mml_value(s.node, 'ID') IS NULL THEN
                        PERFORM plantsync.b2mml_refuse(mp, 'no ID (the sublot number)');
                    END IF;
                    q := plantsync.b2mml_quantity(s.node, mp);
                    messages := messages || jsonb_build_object('type', 'erp.batch',
                        'key', 'MaterialSubLot/' || mat || '/' || plantsync.b2mml_value(r.node, 'ID') || '/' || plantsync.b2mml_value(s.node, 'ID'),
                        'payload', jsonb_strip_nulls(jsonb_build_object(
                            'site', p_site, 'material', mat, 'lot', plantsync.b2mml_value(r.node, 'ID'),
                            'sublot', plantsync.b2mml_value(s.node, 'ID'), 'status', plantsync.b2mml_value(s.node, 'Status'),
                            'quantity', (q ->> 'quantity')::numeric, 'uom', q ->> 'uom')));
                END LOOP;
            END LOOP;
        END IF;
    END LOOP;
    IF jsonb_array_length(messages) = 0 THEN
        PERFORM plantsync.b2mml_refuse(COALESCE(NULLIF(prefix, ''), '/' || root), 'nothing in it can be imported');
    END IF;
    RETURN jsonb_build_object('namespace', ns, 'release', release, 'root', root, 'noun', noun, 'system', system,
                              'messages', messages, 'unmapped', unmapped);
END
$$;
COMMENT ON FUNCTION plantsync.parse_b2mml(text, text) IS
'Reads a B2MML document (V0401, V0600 or 0700+ namespace; a transaction such as ProcessProductionSchedule or SyncMaterialInformation, or a bare noun) into the canonical messages it carries, without applying them: production schedules become erp.order_release (the produced material of the last segment, the latest end as due date, one operation per segment with its equipment as work center), production performance becomes mes.consume and mes.complete per material actual, material definitions erp.material and material lots and sublots erp.batch. Returns {namespace, release, root, noun, system, messages [{type, key, payload}], unmapped [{path, xml}]}. A document that cannot be mapped is refused with the element path and the reason.';

-- ---------- imports ----------

CREATE TABLE plantsync.b2mml_import (
    id uuid PRIMARY KEY DEFAULT plantsync.uuid_v7(),
    system_code text NOT NULL REFERENCES plantsync.source_system,
    message_id text NOT NULL
        CONSTRAINT b2mml_import_message_id_length CHECK (length(message_id) BETWEEN 1 AND 150),
    site_id text NOT NULL REFERENCES plantsync.site,
    namespace text NOT NULL,
    release text NOT NULL,
    root text NOT NULL,
    document text NOT NULL,
    messages jsonb NOT NULL,
    unmapped jsonb NOT NULL,
    outcome jsonb NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now(),
    imported_by name NOT NULL DEFAULT session_user,
    CONSTRAINT b2mml_import_message_key UNIQUE (system_code, message_id)
);
COMMENT ON TABLE plantsync.b2mml_import IS 'Every B2MML document imported: the document as received, the canonical messages it became (each applied through plantsync.inbox), the elements that were not mapped (kept with their paths, never dropped) and the outcome.';
COMMENT ON COLUMN plantsync.b2mml_import.id IS 'Key of the import.';
COMMENT ON COLUMN plantsync.b2mml_import.system_code IS 'Sending system.';
COMMENT ON COLUMN plantsync.b2mml_import.message_id IS 'The sender''s id of the document (unique per system); each canonical message gets <message_id>/<key>.';
COMMENT ON COLUMN plantsync.b2mml_import.site_id IS 'Plant the document is for.';
COMMENT ON COLUMN plantsync.b2mml_import.namespace IS 'Namespace of the document.';
COMMENT ON COLUMN plantsync.b2mml_import.release IS 'V0401, V0600 or 0700+.';
COMMENT ON COLUMN plantsync.b2mml_import.root IS 'Root element (e.g. ProcessProductionSchedule).';
COMMENT ON COLUMN plantsync.b2mml_import.document IS 'The document as received.';
COMMENT ON COLUMN plantsync.b2mml_import.messages IS 'The canonical messages read from it: [{type, key, payload}].';
COMMENT ON COLUMN plantsync.b2mml_import.unmapped IS 'Elements not mapped: [{path, xml}].';
COMMENT ON COLUMN plantsync.b2mml_import.outcome IS 'What applying each message returned, by key.';
COMMENT ON COLUMN plantsync.b2mml_import.imported_at IS 'When.';
COMMENT ON COLUMN plantsync.b2mml_import.imported_by IS 'Role that sent it.';
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON plantsync.b2mml_import FROM PUBLIC;

CREATE FUNCTION plantsync.import_b2mml(p_system text, p_message_id text, p_site text, p_document text)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    seen plantsync.b2mml_import;
    parsed jsonb;
    msg jsonb;
    outcome jsonb := '{}';
BEGIN
    IF p_message_id IS NULL OR btrim(p_message_id) = '' THEN
        RAISE EXCEPTION 'a message id is required' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Send the id your system gives the document (its BODID or file name); a document sent again with the same id is applied once.';
    END IF;
    SELECT * INTO seen FROM plantsync.b2mml_import WHERE system_code = p_system AND message_id = p_message_id;
    IF FOUND THEN
        IF seen.document IS DISTINCT FROM p_document THEN
            RAISE EXCEPTION 'B2MML document "%" of % was received before with other content', p_message_id, p_system
                USING ERRCODE = 'PS012', DETAIL = format('First received %s.', seen.imported_at),
                      HINT = 'A message id names one document; give a new document a new id.';
        END IF;
        RETURN seen.outcome || jsonb_build_object('message', 'duplicate', 'first_received_at', seen.imported_at);
    END IF;
    parsed := plantsync.parse_b2mml(p_document, p_site);
    IF parsed ->> 'system' <> p_system THEN
        RAISE EXCEPTION '% documents come from %, not from %', parsed ->> 'noun', upper(parsed ->> 'system'), upper(p_system)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('Send it with plantsync.%s_import_b2mml.', parsed ->> 'system');
    END IF;
    FOR msg IN SELECT * FROM jsonb_array_elements(parsed -> 'messages') LOOP
        outcome := outcome || jsonb_build_object(msg ->> 'key',
            plantsync.receive(msg ->> 'type', p_message_id || '/' || (msg ->> 'key'), msg -> 'payload'));
    END LOOP;
    INSERT INTO plantsync.b2mml_import (system_code, message_id, site_id, namespace, release, root, document, messages, unmapped, outcome)
    VALUES (p_system, p_message_id, p_site, parsed ->> 'namespace', parsed ->> 'release', parsed ->> 'root', p_document,
            parsed -> 'messages', parsed -> 'unmapped', jsonb_build_object('messages', outcome));
    RETURN jsonb_build_object('message', 'applied', 'release', parsed ->> 'release', 'noun', parsed ->> 'noun',
                              'messages', outcome, 'unmapped', jsonb_array_length(parsed -> 'unmapped'));
END
$$;
COMMENT ON FUNCTION plantsync.import_b2mml(text, text, text, text) IS 'Used by erp_import_b2mml and mes_import_b2mml: reads the document (plantsync.parse_b2mml), applies each canonical message through plantsync.receive in this transaction (all or nothing) and keeps the document, its messages and its unmapped elements in plantsync.b2mml_import.';
REVOKE EXECUTE ON FUNCTION plantsync.import_b2mml(text, text, text, text) FROM PUBLIC;

CREATE FUNCTION plantsync.erp_import_b2mml(message_id text, site text, document text) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.import_b2mml('erp', message_id, site, document) $$;
CREATE FUNCTION plantsync.mes_import_b2mml(message_id text, site text, document text) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT plantsync.import_b2mml('mes', message_id, site, document) $$;
COMMENT ON FUNCTION plantsync.erp_import_b2mml(text, text, text) IS 'ERP: import a B2MML production schedule, material definition or material information document (V0401, V0600 or 0700+) for a site; returns what each message it carried did. See plantsync.parse_b2mml.';
COMMENT ON FUNCTION plantsync.mes_import_b2mml(text, text, text) IS 'MES: import a B2MML production performance document (V0401, V0600 or 0700+) for a site: its consumptions and completions. See plantsync.parse_b2mml.';
REVOKE EXECUTE ON FUNCTION plantsync.erp_import_b2mml(text, text, text), plantsync.mes_import_b2mml(text, text, text) FROM PUBLIC;

-- ---------- writing B2MML (0700+ namespace, validated against the 0701 schemas) ----------

CREATE FUNCTION plantsync.b2mml_quantity_element(p_quantity numeric, p_uom text)
RETURNS xml
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT xmlelement(name "Quantity",
                      xmlelement(name "QuantityString", trim_scale(p_quantity)),
                      xmlelement(name "DataType", 'Quantity'),
                      xmlelement(name "UnitOfMeasure", p_uom))
$$;
COMMENT ON FUNCTION plantsync.b2mml_quantity_element(numeric, text) IS 'Used by the exports: a B2MML Quantity element.';

CREATE FUNCTION plantsync.b2mml_application_area(p_site text)
RETURNS xml
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT xmlelement(name "ApplicationArea",
                      xmlelement(name "Sender", xmlelement(name "LogicalID", 'plantsync'), xmlelement(name "ComponentID", p_site)),
                      xmlelement(name "CreationDateTime", to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
                      xmlelement(name "BODID", plantsync.uuid_v7()))
$$;
COMMENT ON FUNCTION plantsync.b2mml_application_area(text) IS 'Used by the exports: the ApplicationArea of a B2MML transaction (sender plantsync and the site, creation time, a new BODID).';

-- B2MML's Disposition for a lot's disposition; Status keeps the plant's own word.
CREATE FUNCTION plantsync.b2mml_disposition(p_disposition text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE p_disposition WHEN 'planned' THEN 'Planned' WHEN 'in_process' THEN 'In-Process' WHEN 'unrestricted' THEN 'UnRestricted'
                              WHEN 'restricted' THEN 'Restricted' WHEN 'blocked' THEN 'Restricted' WHEN 'rejected' THEN 'Restricted'
                              ELSE 'Closed' END
$$;
COMMENT ON FUNCTION plantsync.b2mml_disposition(text) IS 'Used by the exports: B2MML Disposition (Planned, In-Process, Restricted, UnRestricted, Closed) of a lot disposition.';

CREATE FUNCTION plantsync.b2mml_operations_performance(p_order_id uuid)
RETURNS xml
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o plantsync.production_order;
    segments xml;
BEGIN
    SELECT * INTO o FROM plantsync.production_order WHERE id = p_order_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'production order % does not exist', COALESCE(p_order_id::text, 'null') USING ERRCODE = 'undefined_object';
    END IF;
    -- one segment response per operation that has actuals, and one for the
    -- order's movements that name no operation
    SELECT xmlagg(seg ORDER BY k) INTO segments FROM (
        SELECT COALESCE(op.operation_number, '') AS k,
               xmlelement(name "SegmentResponse",
                   xmlelement(name "ID", COALESCE(op.operation_number, o.order_number)),
                   CASE WHEN op.process_segment IS NOT NULL THEN xmlelement(name "ProcessSegmentID", op.process_segment) END,
                   xmlelement(name "SegmentState", CASE WHEN op.id IS NULL OR op.status IN ('completed', 'closed')
                                                             OR o.status IN ('completed', 'closed') THEN 'Completed'
                                                        WHEN op.status IN ('held', 'suspended') THEN 'Held' ELSE 'Running' END),
                   xmlagg(xmlelement(name "MaterialActual",
                              xmlelement(name "ID", mv.external_id),
                              xmlelement(name "MaterialDefinitionID", m.material_number),
                              CASE WHEN l.lot_number IS NOT NULL THEN xmlelement(name "MaterialLotID", l.lot_number) END,
                              xmlelement(name "MaterialUse", CASE mv.movement_type WHEN 'consumption' THEN 'Consumed' ELSE 'Produced' END),
                              xmlelement(name "StorageLocation",
                                         xmlelement(name "Location", COALESCE(f.location_code, t.location_code)),
                                         xmlelement(name "LocationType", 'Operational Location ID')),
                              plantsync.b2mml_quantity_element(mv.quantity, mv.uom))
                          ORDER BY mv.movement_type, mv.posted_at, mv.id)) AS seg
          FROM plantsync.material_movement mv
          JOIN plantsync.material m ON m.id = mv.material_id
          LEFT JOIN plantsync.lot l ON l.id = mv.lot_id
          LEFT JOIN plantsync.production_operation op ON op.id = mv.operation_id
          LEFT JOIN plantsync.storage_location f ON f.id = mv.from_location_id
          LEFT JOIN plantsync.storage_location t ON t.id = mv.to_location_id
         WHERE mv.order_id = o.id AND mv.movement_type IN ('consumption', 'production_receipt')
           AND NOT EXISTS (SELECT 1 FROM plantsync.material_movement r WHERE r.reverses_movement_id = mv.id)
         GROUP BY op.id, op.operation_number, op.process_segment, op.status) s;
    IF segments IS NULL THEN
        RAISE EXCEPTION 'production order "%" has no consumption or production receipt to report', o.order_number
            USING ERRCODE = 'no_data_found', HINT = 'B2MML performance needs at least one material actual.';
    END IF;
    RETURN xmlelement(name "ProcessOperationsPerformance",
        xmlattributes('http://www.mesa.org/xml/B2MML' AS xmlns, '0701' AS "releaseID"),
        plantsync.b2mml_application_area(o.site_id),
        xmlelement(name "DataArea",
            xmlelement(name "Process"),
            xmlelement(name "OperationsPerformance",
                xmlelement(name "ID", o.order_number),
                xmlelement(name "HierarchyScope", xmlelement(name "EquipmentID", o.site_id), xmlelement(name "EquipmentLevel", 'Site')),
                xmlelement(name "OperationsType", 'Production'),
                xmlelement(name "PerformanceState", plantsync.b2mml_response_state(o.status)),
                xmlelement(name "OperationsResponse",
                    xmlelement(name "ID", o.order_number),
                    xmlelement(name "OperationsType", 'Production'),
                    xmlelement(name "OperationsRequestID", o.order_number),
                    xmlelement(name "ResponseState", plantsync.b2mml_response_state(o.status)),
                    segments))));
END
$$;

CREATE FUNCTION plantsync.b2mml_response_state(p_status text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE p_status WHEN 'released' THEN 'Ready' WHEN 'in_progress' THEN 'Running' WHEN 'held' THEN 'Held'
                         WHEN 'completed' THEN 'Completed' WHEN 'closed' THEN 'Closed' WHEN 'aborted' THEN 'Aborted'
                         WHEN 'cancelled' THEN 'Aborted' ELSE 'Waiting' END
$$;
COMMENT ON FUNCTION plantsync.b2mml_response_state(text) IS 'Used by the exports: B2MML ResponseState of an order status.';
COMMENT ON FUNCTION plantsync.b2mml_operations_performance(uuid) IS
'A production order''s actuals as a B2MML ProcessOperationsPerformance (0700+ namespace, release 0701): per operation a SegmentResponse with a MaterialActual for each consumption (Consumed) and production receipt (Produced) not reversed, with material, lot, storage location and quantity. plantsync.parse_b2mml reads it back into the same consumptions and completions.';

CREATE FUNCTION plantsync.b2mml_material_lot(p_lot_id uuid)
RETURNS xml
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    l plantsync.lot;
    mat text;
    base_uom text;
    on_hand numeric;
    assembly xml;
BEGIN
    SELECT * INTO l FROM plantsync.lot WHERE id = p_lot_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'lot % does not exist', COALESCE(p_lot_id::text, 'null') USING ERRCODE = 'undefined_object';
    END IF;
    SELECT m.material_number, m.base_uom INTO mat, base_uom FROM plantsync.material m WHERE m.id = l.material_id;
    SELECT sum(b.base_quantity) INTO on_hand FROM plantsync.inventory_balance b WHERE b.lot_id = l.id;
    SELECT xmlagg(xmlelement(name "AssemblyLot",
                      xmlelement(name "ID", t.node_number),
                      xmlelement(name "MaterialDefinitionID", m.material_number),
                      plantsync.b2mml_quantity_element(t.quantity, t.uom))
                  ORDER BY t.node_number)
      INTO assembly
      FROM plantsync.trace_backward(l.id, 1) t JOIN plantsync.material m ON m.id = t.material_id
     WHERE t.depth = 1 AND t.node_kind = 'lot';
    RETURN xmlelement(name "SyncMaterialLot",
        xmlattributes('http://www.mesa.org/xml/B2MML' AS xmlns, '0701' AS "releaseID"),
        plantsync.b2mml_application_area(l.site_id),
        xmlelement(name "DataArea",
            xmlelement(name "Sync"),
            xmlelement(name "MaterialLot",
                xmlelement(name "ID", l.lot_number),
                xmlelement(name "HierarchyScope", xmlelement(name "EquipmentID", l.site_id), xmlelement(name "EquipmentLevel", 'Site')),
                xmlelement(name "MaterialDefinitionID", mat),
                xmlelement(name "Status", l.disposition),
                xmlelement(name "Disposition", plantsync.b2mml_disposition(l.disposition)),
                (SELECT xmlagg(xmlelement(name "MaterialLotProperty",
                                   xmlelement(name "ID", p.id),
                                   xmlelement(name "Value", xmlelement(name "ValueString", p.v), xmlelement(name "DataType", p.t)))
                               ORDER BY p.id)
                   FROM (VALUES ('ExpiryDate', to_char(l.expires_on, 'YYYY-MM-DD'), 'DateTime'),
                                ('ManufacturingDate', to_char(l.manufactured_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'DateTime'),
                                ('SupplierLot', l.supplier_lot, 'Text')) p (id, v, t)
                  WHERE p.v IS NOT NULL),
                (SELECT xmlagg(xmlelement(name "MaterialSubLot", xmlelement(name "ID", s.sublot_number)) ORDER BY s.sublot_number)
                   FROM plantsync.sublot s WHERE s.lot_id = l.id),
                plantsync.b2mml_quantity_element(COALESCE(on_hand, 0), base_uom),
                -- what went into it: the lots consumed by the order that made it
                assembly,
                CASE WHEN assembly IS NOT NULL
                     THEN xmlconcat(xmlelement(name "AssemblyType", 'Physical'), xmlelement(name "AssemblyRelationship", 'Permanent')) END)));
END
$$;
COMMENT ON FUNCTION plantsync.b2mml_material_lot(uuid) IS
'A lot as a B2MML SyncMaterialLot (0700+ namespace, release 0701): number, site, material, status (the plant''s disposition) and B2MML Disposition, expiry, manufacturing date and supplier lot as properties, sublots, quantity on hand in the base unit, and the lots it was made from as AssemblyLot (physical, permanent) with the quantity consumed.';

-- Route transforms: the document as a JSON string, sent as it is (give the
-- endpoint a Content-Type header of application/xml).
CREATE FUNCTION plantsync.b2mml_performance_transform(ev plantsync.event)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM plantsync.require_event_entity(ev, 'production_order', 'b2mml_performance_transform');
    RETURN to_jsonb(xmlserialize(DOCUMENT plantsync.b2mml_operations_performance(ev.entity_id) AS text));
END
$$;
COMMENT ON FUNCTION plantsync.b2mml_performance_transform(plantsync.event) IS
'Route transform: for a production_order event (e.g. production_order.completed), the order''s B2MML ProcessOperationsPerformance. A transform that returns a JSON string has the string sent as the body: give the endpoint the header {"Content-Type": "application/xml"}.';

CREATE FUNCTION plantsync.b2mml_material_lot_transform(ev plantsync.event)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM plantsync.require_event_entity(ev, 'lot', 'b2mml_material_lot_transform');
    RETURN to_jsonb(xmlserialize(DOCUMENT plantsync.b2mml_material_lot(ev.entity_id) AS text));
END
$$;
COMMENT ON FUNCTION plantsync.b2mml_material_lot_transform(plantsync.event) IS
'Route transform: for a lot event, the lot''s B2MML SyncMaterialLot, sent as XML (give the endpoint the header {"Content-Type": "application/xml"}).';
