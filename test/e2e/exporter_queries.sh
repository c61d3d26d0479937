#!/usr/bin/env bash
# End-to-end: every query of the postgres_exporter file that plantsync
# installs runs in a plant database with traffic in it, and returns exactly
# the columns its metrics section declares (labels and numbers).
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"

queries=$(pg_config --sharedir)/extension/plantsync_postgres_exporter.yaml
check "the exporter file is installed with the extension" test -s "$queries"

psql_q() { psql -X -q -v ON_ERROR_STOP=1 -d e2e_exporter "$@"; }
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS e2e_exporter" -c "CREATE DATABASE e2e_exporter"
psql_q <<'SQL'
CREATE EXTENSION plantsync;
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('X1', 'Exporter plant');
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('X1', 'WH', 'Store');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http) VALUES ('x-erp', 'erp', 'http://127.0.0.1:9/', true);
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('x-moves', 'material_movement.*', 'x-erp');
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) VALUES ('X1', 'RM', 'Raw', 'KG');
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition) SELECT 'X1', id, 'L-1', 'unrestricted' FROM plantsync.material;
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id)
SELECT 'X1', 'goods_receipt', l.material_id, l.id, 5, 'KG', s.id, 'mes', 'GR-' || g
  FROM plantsync.lot l, plantsync.storage_location s, generate_series(1, 3) g;
SELECT count(*) FROM plantsync.claim_deliveries('x-erp', 1);
SELECT plantsync.settle_deliveries(array_agg(id), array_agg(created_at), array_agg('dead'::text), array_agg(500), array_agg('HTTP 500'::text),
                                   array_agg(NULL::timestamptz), array_agg(now()), array_agg(12), array_agg(''::text))
  FROM plantsync.delivery WHERE status = 'in_flight';
RESET plantsync.source_system;
SELECT plantsync.load_erp_snapshot('X1', 'inventory', now(), '[{"material": "RM", "lot": "L-1", "location": "WH", "quantity": 14, "uom": "KG"}]');
SELECT plantsync.reconcile_inventory('X1');
SELECT plantsync.mes_consume('M-1', '{"site": "X1", "order": "PO-1", "material": "RM", "lot": "L-1", "quantity": 1, "uom": "KG", "location": "WH"}');
SQL
# a delivery worker for this database, for the worker metrics
psql_q -c "ALTER DATABASE e2e_exporter SET plantsync.delivery_enabled = on" -c "SELECT plantsync.wake_workers()" >/dev/null
for _ in $(seq 1 50); do
    [[ $(psql -X -At -d e2e_exporter -c "SELECT count(*) FROM plantsync.worker_status") -gt 0 ]] && break
    sleep 0.2
done

# name, query and declared columns of each metric section (the file's own
# simple layout: one-line queries, one column per "- name:" line)
sections_file=$(mktemp)
trap 'rm -f "$sections_file"' EXIT
python3 - "$queries" >"$sections_file" <<'PY'
import re, sys
name = query = None
cols = []
out = []
for line in open(sys.argv[1]):
    if re.match(r'^[a-z_]+:\s*$', line):
        if name:
            out.append((name, query, cols))
        name, query, cols = line.strip()[:-1], None, []
    elif line.strip().startswith('query:'):
        query = line.split('query:', 1)[1].strip()
        query = query[1:-1] if query.startswith('"') else query
    elif re.match(r'^\s+- [a-z_0-9]+:\s*$', line):
        cols.append(line.strip()[2:-1])
if name:
    out.append((name, query, cols))
for n, q, c in out:
    print(n + "\t" + ",".join(c) + "\t" + q)
PY
sections=0
while IFS=$'\t' read -r name cols query; do
    sections=$((sections + 1))
    got=$(psql -X -A -F, -P footer=off -d e2e_exporter -c "SELECT * FROM ($query) q LIMIT 0" 2>&1 | head -n 1)
    rows=$(psql -X -At -d e2e_exporter -c "SELECT count(*) FROM ($query) q" 2>&1)
    check "$name: the query runs and returns rows ($rows)" test "$rows" -gt 0
    check "$name: its columns are the declared ones ($cols)" test "$got" = "$cols"
done <"$sections_file"
check "five metric sections were checked" test "$sections" = 5
psql -X -q -d postgres -c "DROP DATABASE e2e_exporter WITH (FORCE)" || true
counts_ok
