#!/usr/bin/env python3
"""End-to-end: what two sessions doing the same thing at once must not break.

- the same message sent from two sessions at once is applied once, and the
  second copy is answered "duplicate" (it was a unique-key error);
- an MES message parked for an order while that order's release is being
  received in another session is applied by the release (neither saw the
  other's uncommitted row, and the message stayed parked for good);
- two reconciliation runs of a plant at once record each difference once
  (each recorded what the other had not committed yet).

Run by test/e2e/concurrent_sessions.sh with the cluster in PG* variables.
"""
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_support import E2E  # noqa: E402

T = E2E("e2e_concurrent")
check, psql = T.check, T.psql
RELEASE = ('{"site": "P1", "order": "%s", "material": "FG", "quantity": 10, "uom": "KG", "due_date": "2026-12-15", '
           '"operations": [{"operation": "0010", "work_center": "WC1", "segment": "MIX", "quantity": 10}]}')


def open_transaction(sql):
    """A session that runs sql inside a transaction it leaves open."""
    p = subprocess.Popen(["psql", "-X", "-q", "-At", "-d", T.db], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    p.stdin.write("BEGIN;\n" + sql + "\n")
    p.stdin.flush()
    return p


def finish(p, sql="COMMIT;"):
    out, _ = p.communicate(sql + "\n", timeout=60)
    return out.strip()


def in_background(sql):
    """Runs sql in its own session in a thread; returns (thread, result list)."""
    result = []

    def run():
        out = subprocess.run(["psql", "-X", "-q", "-At", "-d", T.db, "-c", sql], capture_output=True, text=True)
        result.append((out.stdout + out.stderr).strip())
    t = threading.Thread(target=run)
    t.start()
    return t, result


def run(t):
    psql("CREATE EXTENSION plantsync")
    psql("""
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('P1', 'Plant');
INSERT INTO plantsync.equipment (site_id, equipment_code, name, equipment_level) VALUES ('P1', 'WC1', 'Mixer', 'WorkCenter');
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, material_type, base_uom) VALUES ('P1', 'FG', 'Syrup', 'finished', 'KG');
""")

    # the same message twice at once
    a = open_transaction(f"SELECT plantsync.erp_release_order('rel-1', '{RELEASE % 'PO-1'}') ->> 'message';")
    time.sleep(0.5)
    b, b_out = in_background(f"SELECT plantsync.erp_release_order('rel-1', '{RELEASE % 'PO-1'}') ->> 'message';")
    time.sleep(1.0)
    waited = b.is_alive()
    a_out = finish(a)
    b.join(60)
    check("the same message sent twice at once: the second copy waits for the first",
          waited and a_out.splitlines()[-1:] == ["applied"], a_out)
    check("and is answered duplicate, not a unique-key error", b_out == ["duplicate"], str(b_out))
    check("applied once", psql("SELECT count(*) FROM plantsync.production_order WHERE order_number = 'PO-1'") == "1"
          and psql("SELECT count(*) FROM plantsync.inbox WHERE message_id = 'rel-1'") == "1")

    # a message parked while its order's release is being received
    a = open_transaction("SELECT plantsync.mes_operation('op-1', "
                         "'{\"site\": \"P1\", \"order\": \"PO-2\", \"operation\": \"0010\", \"action\": \"start\"}') ->> 'message';")
    time.sleep(0.5)
    b, b_out = in_background(f"SELECT plantsync.erp_release_order('rel-2', '{RELEASE % 'PO-2'}') ->> 'message';")
    time.sleep(1.0)
    a_out = finish(a)
    b.join(60)
    check("an MES message for an order not yet released is parked", a_out.splitlines()[-1:] == ["parked"], a_out)
    check("the release received meanwhile is applied", b_out == ["applied"], str(b_out))
    status = psql("SELECT status FROM plantsync.inbox WHERE message_id = 'op-1'")
    check("and applies the parked message (it stayed parked for good)", status == "applied", status)
    check("the operation runs", psql("SELECT op.status FROM plantsync.production_operation op JOIN plantsync.production_order o "
                                     "ON o.id = op.order_id WHERE o.order_number = 'PO-2'") == "running")

    # two reconciliation runs at once
    psql("""SET plantsync.source_system = 'hub';
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('P1', 'WH', 'Store');
SELECT plantsync.load_erp_snapshot('P1', 'inventory', now() - interval '5 minutes',
       '[{"material": "FG", "lot": "B-1", "location": "WH", "quantity": 5, "uom": "KG"},
         {"material": "FG", "lot": "B-2", "location": "WH", "quantity": 7, "uom": "KG"}]');""")
    a = open_transaction("SELECT plantsync.reconcile_inventory('P1') IS NOT NULL;")
    time.sleep(0.5)
    b, b_out = in_background("SELECT plantsync.reconcile_inventory('P1') IS NOT NULL;")
    time.sleep(1.0)
    waited = b.is_alive()
    finish(a)
    b.join(60)
    found = psql("SELECT count(*) || ' ' || count(DISTINCT subject_key) FROM plantsync.discrepancy WHERE site_id = 'P1'")
    check("two reconciliation runs at once: the second waits for the first", waited and b_out == ["t"], str(b_out))
    check("and each difference is recorded once", found.split()[0] == found.split()[1] and found.split()[0] != "0", found)


if __name__ == "__main__":
    T.run("concurrent sessions test", run)
