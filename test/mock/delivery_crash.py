#!/usr/bin/env python3
"""Fault test: the postmaster is killed with SIGKILL three times while the
delivery worker sends a backlog to the mock server. After recovery every
committed event must have reached the server, none from a rolled-back
transaction, and any duplicate must carry the same idempotency key (the
count of duplicates is printed).

Run by test/e2e/delivery_crash.sh with the cluster in PG* variables and the
cluster's helpers reachable through the shell wrapper. PLANTSYNC_CRASH_EVENTS
sets the backlog (default 20000; the issue's figure is 100000).
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_support import E2E  # noqa: E402

DATA = os.path.join(os.environ["PLANTSYNC_CLUSTER_DIR"], "data")
EVENTS = int(os.environ.get("PLANTSYNC_CRASH_EVENTS", "20000"))
T = E2E("e2e_crash")
check, psql, mock = T.check, T.psql, T.mock


def kill_and_restart():
    pid = int(open(os.path.join(DATA, "postmaster.pid")).readline())
    os.kill(pid, 9)
    deadline = time.time() + 60
    while time.time() < deadline:
        r = subprocess.run(["bash", "-c", 'source "$PLANTSYNC_COMMON"; cluster_pg_ctl -l "$PLANTSYNC_SERVER_LOG" -w -t 30 start'],
                           capture_output=True, text=True)
        if r.returncode == 0:
            return True
        time.sleep(1)
    return False


def run(t):
    PORT = t.port
    # a little slower than the worker could go, so the kills land mid-flight
    mock("/_script", {"rules": [{"path": "/sink", "responses": [{"delay_ms": 3}]}], "record_bodies": False})
    psql(f"""
CREATE EXTENSION plantsync;
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('P1', 'Plant');
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('P1', 'L1', 'Store');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http, enabled, max_in_flight)
VALUES ('sink', 'erp', 'http://127.0.0.1:{PORT}/sink', true, false, 8);
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('sink', 'material_movement.*', 'sink');
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) VALUES ('P1', 'M', 'M', 'KG');
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
SELECT 'P1', id, 'L-' || g, 'unrestricted' FROM plantsync.material, generate_series(1, 200) g;
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id)
SELECT 'P1', 'goods_receipt', l.material_id, l.id, 1, 'KG', s.id, 'mes', 'C-' || g
  FROM generate_series(1, {EVENTS}) g JOIN plantsync.lot l ON l.lot_number = 'L-' || (g % 200 + 1)
 CROSS JOIN plantsync.storage_location s;
BEGIN;
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id)
SELECT 'P1', 'goods_receipt', l.material_id, l.id, 1, 'KG', s.id, 'mes', 'ROLLED-BACK-' || g
  FROM generate_series(1, 100) g JOIN plantsync.lot l ON l.lot_number = 'L-1' CROSS JOIN plantsync.storage_location s;
ROLLBACK;
SET plantsync.source_system = 'hub';
UPDATE plantsync.endpoint SET enabled = true;
""")
    committed = int(psql("SELECT count(*) FROM plantsync.delivery"))
    print(f"# {committed} deliveries committed; sending starts", flush=True)
    for round_ in range(1, 4):
        # let some of the backlog go, then kill the postmaster mid-flight
        target = committed * round_ // 4
        deadline = time.time() + 120
        while time.time() < deadline:
            got = mock("/_count")["count"]
            if got >= target:
                break
            time.sleep(0.2)
        check(f"crash {round_}: the postmaster is killed with SIGKILL mid-delivery and the cluster recovers",
              kill_and_restart())
        print(f"# crash {round_} after {mock('/_count')['count']} requests received", flush=True)
    deadline = time.time() + 600
    while time.time() < deadline:
        left = psql("SELECT count(*) FROM plantsync.delivery WHERE status <> 'delivered'", check_errors=False)
        if left == "0":
            break
        time.sleep(1)
    check("after recovery every committed delivery is delivered", left == "0", f"{left} not delivered")

    received = mock("/_requests")
    keys = [r["key"] for r in received]
    expected = set(psql("SELECT coalesce(idempotency_key, id) FROM plantsync.delivery").split("\n"))
    got = set(keys)
    check("every committed event reached the server", expected <= got, f"{len(expected - got)} missing")
    check("nothing else reached it (no rolled-back event)", got <= expected, f"{len(got - expected)} unexpected")
    duplicates = len(keys) - len(got)
    print(f"# requests received: {len(keys)}, distinct idempotency keys: {len(got)}, duplicates: {duplicates} "
          f"(each a resend of an unsettled request, with the same Idempotency-Key)", flush=True)
    seen = set()
    dup_keys = [k for k in keys if k in seen or seen.add(k)]
    check("duplicates are resends of committed deliveries, with their own idempotency key",
          all(k in expected for k in dup_keys))


if __name__ == "__main__":
    T.run("delivery crash test", run)
