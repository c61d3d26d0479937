#!/usr/bin/env bash
# End-to-end: CREATE EXTENSION in a database whose search_path puts a
# hostile schema first, with look-alike functions and operators planted in
# it: the install script and the first writes never call them.
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"

db=e2e_hostile
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
psql -X -q -v ON_ERROR_STOP=1 -d "$db" <<'SQL'
CREATE SCHEMA evil;
CREATE TABLE evil.calls (what text);
GRANT ALL ON SCHEMA evil TO PUBLIC;
GRANT ALL ON evil.calls TO PUBLIC;
CREATE FUNCTION evil.texteq(text, text) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO evil.calls VALUES ('text ='); RETURN pg_catalog.texteq($1, $2); END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq);
CREATE FUNCTION evil.textcat(text, text) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO evil.calls VALUES ('text ||'); RETURN pg_catalog.textcat($1, $2); END $$;
CREATE OPERATOR evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.textcat);
CREATE FUNCTION evil.format(text, VARIADIC text[]) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO evil.calls VALUES ('format'); RETURN pg_catalog.format($1, VARIADIC $2); END $$;
CREATE FUNCTION evil.lower(text) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO evil.calls VALUES ('lower'); RETURN pg_catalog.lower($1); END $$;
CREATE FUNCTION evil.to_jsonb(anyelement) RETURNS jsonb LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO evil.calls VALUES ('to_jsonb'); RETURN pg_catalog.to_jsonb($1); END $$;
SQL
psql -X -q -d postgres -c "ALTER DATABASE $db SET search_path = evil, pg_catalog, public"
check "the trap works for the caller's own queries" \
    test "$(psql -X -At -d "$db" -c "SELECT 'a' = 'a'" -c "SELECT count(*) FROM evil.calls" | tail -n 1)" = 1
psql -X -q -d "$db" -c "DELETE FROM evil.calls"

psql -X -q -v ON_ERROR_STOP=1 -d "$db" <<'SQL'
CREATE EXTENSION plantsync;
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('H1', 'Hostile plant');
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('H1', 'WH', 'Store');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http) VALUES ('h-erp', 'erp', 'http://127.0.0.1:9/', true);
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('h-all', '*', 'h-erp');
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) VALUES ('H1', 'RM', 'Raw', 'KG');
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition) SELECT 'H1', id, 'L-1', 'unrestricted' FROM plantsync.material;
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id)
SELECT 'H1', 'goods_receipt', l.material_id, l.id, 5, 'KG', s.id, 'mes', 'GR-1' FROM plantsync.lot l, plantsync.storage_location s;
SQL
check "the extension installed and took writes" \
    test "$(psql -X -At -d "$db" -c "SELECT count(*) FROM plantsync.event")" -ge 2
calls=$(psql -X -At -d "$db" -c "SELECT coalesce(string_agg(DISTINCT what, ', '), '') FROM evil.calls")
check "no look-alike function or operator was called by the install or by plantsync's triggers (called: '$calls')" test -z "$calls"
psql -X -q -d postgres -c "DROP DATABASE $db WITH (FORCE)" || true
counts_ok
