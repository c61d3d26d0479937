-- Contracts: registering versions, the compatibility rules in each mode,
-- refusing unsupported keywords, and messages that break their contract,
-- for events (in the outbox) and inbound messages.
\set SHOW_CONTEXT never

-- The validator on its own: every failure with its JSON pointer and keyword.
SELECT * FROM plantsync.json_schema_errors(
  '{"type": "object", "required": ["order", "qty", "uom"],
    "properties": {"order": {"type": "string", "pattern": "^PO-[0-9]+$"},
                   "qty": {"type": "number", "exclusiveMinimum": 0},
                   "uom": {"enum": ["EA", "KG"]},
                   "lots": {"type": "array", "items": {"type": "string", "maxLength": 8}, "uniqueItems": true}},
    "additionalProperties": false}',
  '{"order": "4711", "qty": -2, "lots": ["L-1", "L-1", "TOO-LONG-LOT"], "extra": true}');
SELECT plantsync.json_schema_valid('{"type": "string", "format": "date"}', '"2026-02-30"') AS format_annotation_only,
       plantsync.json_schema_valid('{"type": "string", "format": "date"}', '"2026-02-30"', true) AS format_asserted;
SELECT plantsync.json_schema_errors('{}', '1', false, 0);
\echo :SQLSTATE

-- Unsupported keywords and invalid schemas are refused, never ignored.
SELECT plantsync.json_schema_check('{"type": "object", "dependencies": {"a": ["b"]}}');
\echo :SQLSTATE
SELECT plantsync.json_schema_check('{"$dynamicRef": "#meta"}');
\echo :SQLSTATE
SELECT plantsync.json_schema_check('{"$schema": "http://json-schema.org/draft-07/schema#"}');
\echo :SQLSTATE
SELECT plantsync.json_schema_check('{"type": "integr"}');
\echo :SQLSTATE
SELECT plantsync.json_schema_check('{"pattern": "([a-z"}');
\echo :SQLSTATE
SELECT plantsync.json_schema_check('{"$ref": "#/$defs/missing"}');
\echo :SQLSTATE
SELECT plantsync.json_schema_check('{"$ref": "https://example.com/other.json"}');
\echo :SQLSTATE
SELECT plantsync.json_schema_check('{"minLength": -1}');
\echo :SQLSTATE
SELECT plantsync.json_schema_check('{"items": [{"type": "string"}]}');
\echo :SQLSTATE
SELECT plantsync.json_schema_check('{"x-sap-field": "MENGE", "type": "number", "title": "quantity"}') AS vendor_extensions_pass;

-- A production confirmation contract, version 1.
SELECT plantsync.register_contract('production_confirmation.recorded', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["order_id", "operation_id", "yield_quantity", "uom"],
  "properties": {
    "order_id": {"type": "string", "format": "uuid"},
    "operation_id": {"type": "string", "format": "uuid"},
    "yield_quantity": {"type": "number", "minimum": 0},
    "scrap_quantity": {"type": "number", "minimum": 0},
    "uom": {"enum": ["EA", "KG", "L"]},
    "is_final": {"type": "boolean"},
    "shift": {"type": "string"}
  }}', 'event') AS version;
-- The same schema again is the same version.
SELECT plantsync.register_contract('production_confirmation.recorded', schema) AS same_version
  FROM plantsync.contract WHERE subject = 'production_confirmation.recorded' AND version = 1;
-- Backward mode (the default): each breaking rule is refused with its field.
CREATE FUNCTION regress.try_version(change jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v int;
BEGIN
    v := plantsync.register_contract('production_confirmation.recorded',
            (SELECT schema FROM plantsync.contract WHERE subject = 'production_confirmation.recorded' ORDER BY version DESC LIMIT 1) || change);
    RETURN 'registered as version ' || v;
EXCEPTION WHEN SQLSTATE 'PS011' THEN
    RETURN SQLERRM;
END
$$;
-- one change at a time against version 1:
SELECT regress.try_version('{"required": ["order_id", "operation_id", "yield_quantity", "uom", "operator"]}');
SELECT regress.try_version(jsonb_build_object('properties', (SELECT schema->'properties' FROM plantsync.contract WHERE version = 1 AND subject = 'production_confirmation.recorded')
                                                            || '{"yield_quantity": {"type": "integer", "minimum": 0}}'));
SELECT regress.try_version(jsonb_build_object('properties', (SELECT schema->'properties' FROM plantsync.contract WHERE version = 1 AND subject = 'production_confirmation.recorded')
                                                            || '{"uom": {"enum": ["EA", "KG"]}}'));
SELECT regress.try_version(jsonb_build_object('properties', (SELECT schema->'properties' FROM plantsync.contract WHERE version = 1 AND subject = 'production_confirmation.recorded')
                                                            || '{"yield_quantity": {"type": "number", "minimum": 1}}'));
SELECT regress.try_version(jsonb_build_object('properties', (SELECT schema->'properties' FROM plantsync.contract WHERE version = 1 AND subject = 'production_confirmation.recorded')
                                                            || '{"shift": {"type": "string", "maxLength": 2}}'));
SELECT regress.try_version(jsonb_build_object('properties', (SELECT schema->'properties' FROM plantsync.contract WHERE version = 1 AND subject = 'production_confirmation.recorded')
                                                            || '{"shift": {"type": "string", "pattern": "^[ABC]$"}}'));
SELECT regress.try_version('{"additionalProperties": false}');
-- Compatible changes pass: a new optional field, a widened type, a new enum value, a dropped requirement.
SELECT regress.try_version(jsonb_build_object(
    'required', '["order_id", "yield_quantity", "uom"]'::jsonb,
    'properties', (SELECT schema->'properties' FROM plantsync.contract WHERE version = 1 AND subject = 'production_confirmation.recorded')
                  || '{"uom": {"enum": ["EA", "KG", "L", "M"]}, "shift": {"type": ["string", "null"]},
                       "rework_quantity": {"type": "number", "minimum": 0}}'));
-- The full error, with every breaking change in the detail.
SELECT plantsync.register_contract('production_confirmation.recorded', '{"type": "object", "required": ["order_id", "operator"], "additionalProperties": false, "properties": {"order_id": {"type": "integer"}}}');
\echo :SQLSTATE

-- Forward mode: the old version must accept what the new one sends, so a
-- new optional field is breaking when the old one closed the object...
SELECT plantsync.register_contract('regress.order_release', '{"type": "object", "required": ["order"], "properties": {"order": {"type": "string"}}, "additionalProperties": false}', 'inbound', 'forward');
SELECT plantsync.register_contract('regress.order_release', '{"type": "object", "required": ["order"], "properties": {"order": {"type": "string"}, "priority": {"type": "integer"}}, "additionalProperties": false}');
\echo :SQLSTATE
-- ...while a new required field is fine.
SELECT plantsync.register_contract('regress.order_release', '{"type": "object", "required": ["order"], "properties": {"order": {"type": "string", "maxLength": 12}}, "additionalProperties": false}') AS forward_ok;
-- Full mode refuses both directions; none accepts anything valid.
SELECT plantsync.register_contract('regress.usage_decision', '{"type": "object", "properties": {"decision": {"enum": ["accept", "reject"]}}}', 'inbound', 'full');
SELECT plantsync.register_contract('regress.usage_decision', '{"type": "object", "properties": {"decision": {"enum": ["accept", "reject", "partial"]}}}');
\echo :SQLSTATE
SELECT plantsync.register_contract('regress.usage_decision', '{"type": "object", "properties": {"decision": {"enum": ["accept"]}}}');
\echo :SQLSTATE
SELECT plantsync.register_contract('regress.usage_decision', '{"type": "object", "properties": {"decision": {"enum": ["accept"]}}}', compatibility => 'none') AS none_ok;
-- Bad registrations.
SELECT plantsync.register_contract('Bad Subject', '{}');
\echo :SQLSTATE
SELECT plantsync.register_contract('erp.x', '{}', compatibility => 'sideways');
\echo :SQLSTATE
SELECT plantsync.register_contract('regress.order_release', '{}', 'event');
\echo :SQLSTATE
SELECT plantsync.register_contract('erp.x', '{}', 'stream');
\echo :SQLSTATE
SELECT plantsync.register_contract('erp.x', '{"maxLength": "ten"}');
\echo :SQLSTATE
SELECT subject, kind, compatibility FROM plantsync.contract_subject ORDER BY subject;
SELECT subject, version, status FROM plantsync.contract ORDER BY subject, version;

-- Inbound messages: checked against the latest active version.
SELECT plantsync.check_contract('regress.order_release', '{"order": "PO-1"}') AS dataschema;
SELECT plantsync.check_contract('regress.order_release', '{"order": "PO-123456789012345", "plant": "1000"}');
\echo :SQLSTATE
SELECT plantsync.check_contract('no.contract', '{"anything": 1}') AS no_contract;
SET plantsync.contract_max_errors = 1;
SELECT plantsync.check_contract('regress.order_release', '{"plant": "1000", "extra": 2}');
RESET plantsync.contract_max_errors;
-- Lifecycle: deprecating the latest version makes the previous one current.
SELECT plantsync.set_contract_status('regress.order_release', 2, 'deprecated', 'field length rolled back');
SELECT plantsync.check_contract('regress.order_release', '{"order": "PO-123456789012345"}') AS dataschema;
SELECT plantsync.set_contract_status('regress.order_release', 9, 'retired', 'x');
\echo :SQLSTATE
SELECT plantsync.set_contract_status('regress.order_release', 1, 'gone', 'x');
\echo :SQLSTATE
SELECT plantsync.set_contract_status('regress.order_release', 1, 'retired', ' ');
\echo :SQLSTATE

-- Events: the outbox checks each event against its type's contract and
-- names it as the event's dataschema; a breaking event stops the write.
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.production_confirmation (site_id, order_id, operation_id, yield_quantity, uom, source_system, external_id)
VALUES ('P100', regress.ord('PO-5001'), regress.op('PO-5001', '0010'), 50, 'EA', 'mes', 'CONF-C1');
SELECT type, dataschema FROM plantsync.event WHERE type = 'production_confirmation.recorded' AND data->>'external_id' = 'CONF-C1';
SET plantsync.source_system = 'hub';
SELECT plantsync.register_contract('production_confirmation.recorded', schema || '{"properties": {"yield_quantity": {"type": "number", "minimum": 0, "maximum": 10000}}}', compatibility => 'none')
  FROM plantsync.contract WHERE subject = 'production_confirmation.recorded' ORDER BY version DESC LIMIT 1;
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.production_confirmation (site_id, order_id, operation_id, yield_quantity, uom, source_system, external_id)
VALUES ('P100', regress.ord('PO-5001'), regress.op('PO-5001', '0010'), 20000, 'EA', 'mes', 'CONF-C2');
\echo :SQLSTATE
SELECT count(*) AS rows_left_by_the_refused_event FROM plantsync.production_confirmation WHERE external_id = 'CONF-C2';
RESET plantsync.source_system;
