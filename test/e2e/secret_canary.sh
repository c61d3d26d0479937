#!/usr/bin/env bash
# End-to-end: a secret canary. With every statement logged, an endpoint's
# token (set the documented way, with statement logging off for that
# statement) is used for deliveries that fail, is rotated, and the plant is
# dumped by an auditor: the canary appears in no server log line, error,
# view, attempt, audit record or dump.
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"

canary="canary-$(od -An -tx8 -N8 /dev/urandom | tr -d ' ')"
db=e2e_canary
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -d "$db" "$@"; }
log_start=$(wc -l <"$PLANTSYNC_SERVER_LOG")
psql -X -q -d postgres -c "ALTER SYSTEM SET log_statement = 'all'" -c "SELECT pg_reload_conf()" >/dev/null
restore() { psql -X -q -d postgres -c "ALTER SYSTEM RESET log_statement" -c "SELECT pg_reload_conf()" >/dev/null || true; }
trap restore EXIT
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
psql_q <<SQL
CREATE EXTENSION plantsync;
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('K1', 'Canary plant');
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('K1', 'WH', 'Store');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http, auth_type, retry_schedule)
VALUES ('k-erp', 'erp', 'http://127.0.0.1:9/erp', true, 'bearer', '{0, 100 milliseconds}');
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('k-moves', 'material_movement.*', 'k-erp');
-- the documented way: the statement that carries a secret is not logged,
-- not even if it fails
SET log_statement = 'none';
SET log_min_error_statement = 'panic';
INSERT INTO plantsync.endpoint_secret (endpoint_id, name, value) VALUES ('k-erp', 'token', '$canary');
RESET log_statement;
RESET log_min_error_statement;
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, base_uom, lot_tracked) VALUES ('K1', 'RM', 'Raw', 'KG', false);
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, quantity, uom, to_location_id, source_system, external_id)
SELECT 'K1', 'goods_receipt', m.id, 1, 'KG', s.id, 'mes', 'K-' || g FROM plantsync.material m, plantsync.storage_location s, generate_series(1, 3) g;
SQL
# deliveries with the token go out (to a closed port) until they are dead
psql_q -c "ALTER DATABASE $db SET plantsync.delivery_enabled = on" -c "SELECT plantsync.wake_workers()" >/dev/null
for _ in $(seq 1 100); do
    [[ $(psql -X -At -d "$db" -c "SELECT count(*) FROM plantsync.delivery WHERE status = 'dead'") == 3 ]] && break
    sleep 0.2
done
check "the deliveries that carried the token were attempted and are dead" \
    test "$(psql -X -At -d "$db" -c "SELECT count(*) FROM plantsync.delivery WHERE status = 'dead'")" = 3
# a rotation, and a refused secret, with logging off as documented
psql_q -c "SET log_statement = 'none'" -c "SET log_min_error_statement = 'panic'" -c "UPDATE plantsync.endpoint_secret SET value = '$canary-2' WHERE endpoint_id = 'k-erp'"
out=$(psql -X -d "$db" -c "SET log_statement = 'none'" -c "SET log_min_error_statement = 'panic'" -c "INSERT INTO plantsync.endpoint_secret (endpoint_id, name, value) VALUES ('k-erp', 'tokn', '$canary-3')" 2>&1 || true)
check "a refused secret is refused" grep -q "ERROR" <<<"$out"
check "and the refusal does not repeat it" bash -c '! grep -q "$1" <<<"$2"' _ "$canary" "$out"

# everywhere an operator or auditor can look
views=$(psql -X -At -d "$db" -c "SELECT string_agg(t::text, ' ') FROM (
    SELECT to_jsonb(x)::text AS t FROM plantsync.delivery_attempt x UNION ALL SELECT to_jsonb(x)::text FROM plantsync.delivery x
    UNION ALL SELECT to_jsonb(x)::text FROM plantsync.dead_letter x UNION ALL SELECT to_jsonb(x)::text FROM plantsync.message_path x
    UNION ALL SELECT to_jsonb(x)::text FROM plantsync.endpoint_health x UNION ALL SELECT to_jsonb(x)::text FROM plantsync.endpoint x
    UNION ALL SELECT to_jsonb(x)::text FROM plantsync.audit_log x UNION ALL SELECT to_jsonb(x)::text FROM plantsync.event x) s")
check "the canary is in no attempt, delivery, view, endpoint, event or audit record" bash -c '! grep -q "$1" <<<"$2"' _ "$canary" "$views"
psql -X -q -d "$db" -c "CREATE ROLE canary_auditor LOGIN" -c "SELECT plantsync.grant_standard_role('canary_auditor', 'auditor')" >/dev/null
dump=$(pg_dump -U canary_auditor -d "$db" 2>&1 || true)
check "an auditor's pg_dump does not contain it" bash -c '! grep -q "$1" <<<"$2"' _ "$canary" "$dump"
dump=$(pg_dump -U canary_auditor -d "$db" --enable-row-security --exclude-table-data=plantsync.endpoint_secret 2>&1)
check "(a dump without the secrets table runs and does not contain it either)" bash -c '! grep -q "$1" <<<"$2"' _ "$canary" "$dump"
sleep 1
check "no server log line contains it (log_statement = all)" \
    bash -c '! tail -n +"$1" "$2" | grep -q "$3"' _ "$log_start" "$PLANTSYNC_SERVER_LOG" "$canary"
check "the log did record statements (the check can fail)" \
    bash -c 'tail -n +"$1" "$2" | grep -q "statement: .*material_movement"' _ "$log_start" "$PLANTSYNC_SERVER_LOG"

psql -X -q -d postgres -c "DROP DATABASE $db WITH (FORCE)" -c "DROP ROLE canary_auditor" || true
counts_ok
