-- pgTAP: a hostile search_path. Look-alike functions and operators planted
-- in a schema searched before pg_catalog are never called by plantsync's
-- triggers, process APIs, traces or reconciliation: everything it runs with
-- other rights resolves names in pg_catalog only.
BEGIN;
SELECT * FROM no_plan();
\ir fixtures/plant.sql

CREATE SCHEMA evil;
CREATE TABLE evil.calls (what text, at timestamptz DEFAULT clock_timestamp());
GRANT ALL ON SCHEMA evil TO PUBLIC;
GRANT ALL ON evil.calls TO PUBLIC;
CREATE FUNCTION evil.to_jsonb(anyelement) RETURNS jsonb LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO evil.calls (what) VALUES ('to_jsonb'); RETURN pg_catalog.to_jsonb($1); END $$;
CREATE FUNCTION evil.jsonb_path_exists(jsonb, jsonpath, jsonb, boolean) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO evil.calls (what) VALUES ('jsonb_path_exists'); RETURN pg_catalog.jsonb_path_exists($1, $2, $3, $4); END $$;
CREATE FUNCTION evil.texteq(text, text) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO evil.calls (what) VALUES ('text ='); RETURN pg_catalog.texteq($1, $2); END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq);
CREATE FUNCTION evil.textcat(text, text) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO evil.calls (what) VALUES ('text ||'); RETURN pg_catalog.textcat($1, $2); END $$;
CREATE OPERATOR evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.textcat);
CREATE FUNCTION evil.uuideq(uuid, uuid) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO evil.calls (what) VALUES ('uuid ='); RETURN pg_catalog.uuid_eq($1, $2); END $$;
CREATE OPERATOR evil.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = evil.uuideq);

-- the trap works: a query of the caller's own does call them
SET LOCAL search_path = evil, pg_catalog, public;
SELECT 'a' = 'a';
RESET search_path;
SELECT is((SELECT count(*) FROM evil.calls), 1::bigint, 'the look-alike operator is what the caller''s own queries get');
DELETE FROM evil.calls;

-- (the statements below avoid = of their own: every call recorded is plantsync's)
SET LOCAL search_path = evil, pg_catalog, public;
SET LOCAL plantsync.source_system = 'erp';
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
SELECT 'T100', 'O-EVIL', id, 5, 'EA', 'released', '2027-01-01' FROM plantsync.material
 WHERE site_id OPERATOR(pg_catalog.=) 'T100' AND material_number OPERATOR(pg_catalog.=) 'FG';
SET LOCAL plantsync.source_system = 'mes';
UPDATE plantsync.production_order SET status = 'in_progress' WHERE order_number OPERATOR(pg_catalog.=) 'O-EVIL';
UPDATE plantsync.lot SET disposition = 'in_process' WHERE lot_number OPERATOR(pg_catalog.=) 'LOT-1';
RESET plantsync.source_system;
CREATE TEMP TABLE evil_results AS
SELECT plantsync.mes_confirm('evil-1', '{"site": "T100", "order": "O-1", "operation": "0010", "yield": 1, "uom": "EA"}') AS confirm,
       (SELECT count(*) FROM plantsync.trace_forward((SELECT id FROM plantsync.lot WHERE lot_number OPERATOR(pg_catalog.=) 'LOT-1'))) AS traced,
       (SELECT count(*) FROM plantsync.claim_deliveries('t-erp', 10)) AS claimed,
       (SELECT count(*) FROM plantsync.recall_scope((SELECT id FROM plantsync.lot WHERE lot_number OPERATOR(pg_catalog.=) 'LOT-1'))) AS recalled;
RESET search_path;

SELECT is((SELECT count(*) FROM plantsync.event WHERE order_number = 'O-EVIL'), 2::bigint, 'the writes went through (guard, outbox)');
SELECT is((SELECT confirm ->> 'message' FROM evil_results), 'applied', 'the process API applied its message');
SELECT is_empty($$SELECT what FROM evil.calls$$, 'no look-alike function or operator was called by plantsync');

SELECT * FROM finish();
ROLLBACK;
