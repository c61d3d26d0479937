#!/usr/bin/env python3
"""Fault test: the ERP answers 503 for a while (PLANTSYNC_OUTAGE_SECONDS,
default 20) while the plant keeps writing at a fixed rate. Writers must see
no error and keep their rate; the circuit opens; nothing is lost; once the
ERP is back the backlog drains and every delivery is delivered.

Run by test/e2e/delivery_outage.sh with the cluster in PG* variables.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_support import E2E  # noqa: E402

OUTAGE = int(os.environ.get("PLANTSYNC_OUTAGE_SECONDS", "20"))
RATE = 200
T = E2E("e2e_outage")
check, psql, mock, wait_for = T.check, T.psql, T.mock, T.wait_for


def run(t):
    mock("/_script", {"rules": [{"path": "/erp", "responses": [{"status": 503}]}], "record_bodies": False})
    psql(f"""
CREATE EXTENSION plantsync;
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('P1', 'Plant');
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('P1', 'L1', 'Store');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http, retry_schedule,
                                circuit_failure_threshold, circuit_probe_interval)
VALUES ('erp', 'erp', 'http://127.0.0.1:{t.port}/erp', true, '{{0, 1 s, 2 s, 2 s, 2 s, 2 s, 2 s, 2 s, 2 s, 2 s}}', 5, '1 s');
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('erp', 'material_movement.*', 'erp');
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) VALUES ('P1', 'M', 'M', 'KG');
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
SELECT 'P1', id, 'L-' || g, 'unrestricted' FROM plantsync.material, generate_series(1, 100) g;
ALTER DATABASE {t.db} SET plantsync.source_system = 'mes';
""")
    script = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False)
    script.write("""\\set lot random(1, 100)
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id)
SELECT 'P1', 'goods_receipt', l.material_id, l.id, 1, 'KG', s.id, 'mes', gen_random_uuid()::text
  FROM plantsync.lot l, plantsync.storage_location s WHERE l.lot_number = 'L-' || :lot AND s.location_code = 'L1';
""")
    script.close()
    bench = subprocess.run(["pgbench", "-n", "-c", "2", "-j", "2", "-R", str(RATE), "-T", str(OUTAGE), "-f", script.name, t.db],
                           capture_output=True, text=True)
    os.unlink(script.name)
    tps = re.search(r"^tps = ([0-9.]+)", bench.stdout, re.M)
    tps = float(tps.group(1)) if tps else 0
    print(f"# writers during the {OUTAGE} s outage: {tps:.0f} tps (target rate {RATE})", flush=True)
    check("writers see no error while the ERP is down", bench.returncode == 0 and "error" not in bench.stderr.lower(),
          bench.stderr[-500:])
    check("writers keep their rate (>= 90 % of it)", tps >= 0.9 * RATE, f"{tps:.0f} tps")
    check("the circuit opened", psql("SELECT circuit FROM plantsync.endpoint_state WHERE endpoint_id = 'erp'") == "open")
    committed = int(psql("SELECT count(*) FROM plantsync.delivery"))
    waiting = int(psql("SELECT count(*) FROM plantsync.delivery WHERE status IN ('pending', 'retrying')"))
    print(f"# {committed} deliveries committed, {waiting} waiting when the ERP comes back", flush=True)
    check("nothing was dead-lettered during the outage", psql("SELECT count(*) FROM plantsync.delivery WHERE status = 'dead'") == "0")
    mock("/_script", {"rules": [], "record_bodies": False})
    started = time.time()
    drained = wait_for("drain", lambda: psql("SELECT count(*) FROM plantsync.delivery WHERE status <> 'delivered'") == "0", 120)
    print(f"# backlog drained {time.time() - started:.1f} s after the ERP came back", flush=True)
    check("after recovery the backlog drains: every delivery is delivered", drained)
    keys = {r["key"] for r in mock("/_requests")}
    check("the ERP received every committed event",
          int(psql("SELECT count(*) FROM plantsync.delivery")) == committed and
          len(keys & set(psql("SELECT coalesce(idempotency_key, id) FROM plantsync.delivery").split("\n"))) == committed)


if __name__ == "__main__":
    T.run("delivery outage test", run)
