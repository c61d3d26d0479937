#!/usr/bin/env python3
"""End-to-end test of per-key order at the receiver: four concurrent writers
(pgbench) post goods movements on six lots while the worker delivers them
(one ordering key per lot). The ERP answers 503 to the first attempts of lot
A's first event. At the mock, in arrival order, each lot's requests must be
its sequence numbers 1, 2, 3, ... with no gap and no inversion (lot A: its
first event repeated until it got through, nothing of lot A sent meanwhile),
while the other lots' events keep being delivered during lot A's failures.

Run by test/e2e/delivery_order.sh with the cluster in PG* variables.
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_support import E2E  # noqa: E402

T = E2E("e2e_order")
check, psql, mock, wait_for = T.check, T.psql, T.mock, T.wait_for
LOTS = ["A", "B", "C", "D", "E", "F"]
MOVEMENTS = 600
FAILURES = 20


def run(t):
    psql("CREATE EXTENSION plantsync")
    mock("/_script", {"rules": [{"path": "/ord/A", "responses": [{"status": 503}] * FAILURES + [{"status": 200}]}]})
    psql(f"""
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('P1', 'Plant');
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('P1', 'L1', 'Store');
-- retries 100 ms apart; a circuit that does not open on one key's failures
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http, path_template, retry_schedule,
                                circuit_failure_threshold)
VALUES ('ord', 'erp', 'http://127.0.0.1:{t.port}/ord', true, '/{{lot}}', array_fill('100 ms'::interval, ARRAY[40]), 1000);
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('ord-movements', 'material_movement.*', 'ord');
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) VALUES ('P1', 'RM', 'Raw', 'KG');
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
SELECT 'P1', id, l, 'unrestricted' FROM plantsync.material, unnest(ARRAY[{", ".join(f"'{x}'" for x in LOTS)}]) l;
""")
    script = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False)
    script.write(f"""\\set lot random(1, {len(LOTS)})
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id)
SELECT 'P1', 'goods_receipt', l.material_id, l.id, 1, 'KG', s.id, 'mes', gen_random_uuid()::text
  FROM plantsync.lot l, plantsync.storage_location s
 WHERE l.lot_number = (ARRAY[{", ".join(f"'{x}'" for x in LOTS)}])[:lot] AND s.location_code = 'L1';
""")
    script.close()
    # 4 writers at 200 movements/s in all: about 3 s of writing while the worker sends
    bench = subprocess.run(["pgbench", "-n", "-c", "4", "-j", "4", "-R", "200", "-t", str(MOVEMENTS // 4),
                            "-f", script.name, t.db], capture_output=True, text=True)
    os.unlink(script.name)
    check("4 concurrent writers committed every movement", bench.returncode == 0 and
          psql("SELECT count(*) FROM plantsync.material_movement") == str(MOVEMENTS), bench.stderr[-500:])
    check("every delivery is delivered",
          wait_for("delivered", lambda: psql("SELECT count(*) FROM plantsync.delivery WHERE endpoint_id = 'ord' "
                                             "AND status = 'delivered'") == str(MOVEMENTS), 60))

    got = {}
    for r in mock("/_requests"):
        if r["path"].startswith("/ord/"):
            body = json.loads(r["body"])
            got.setdefault(body["lot_number"], []).append(body["aggregate_seq"])
    wanted = {lot: [int(x) for x in psql(
        f"SELECT string_agg(aggregate_seq::text, ' ' ORDER BY aggregate_seq) FROM plantsync.event "
        f"WHERE type = 'material_movement.recorded' AND lot_number = '{lot}'").split()] for lot in LOTS}
    check("every lot was written", all(wanted[lot] for lot in LOTS), str({k: len(v) for k, v in wanted.items()}))
    for lot in LOTS[1:]:
        check(f"lot {lot}: its events arrived in sequence order, each once", got.get(lot) == wanted[lot],
              f"{got.get(lot, [])[:12]}... vs {wanted[lot][:12]}...")
    a = got.get("A", [])
    check(f"lot A: its first event was sent {FAILURES + 1} times (503 until it got through), nothing of lot A meanwhile",
          a[:FAILURES + 1] == [wanted["A"][0]] * (FAILURES + 1), str(a[:FAILURES + 3]))
    check("lot A: then its events arrived in sequence order, each once", a[FAILURES:] == wanted["A"],
          f"{a[FAILURES:FAILURES + 12]}... vs {wanted['A'][:12]}...")

    # the other lots went on while lot A's first event failed
    order = [(json.loads(r["body"])["lot_number"]) for r in mock("/_requests") if r["path"].startswith("/ord/")]
    first_ok_a = [i for i, lot in enumerate(order) if lot == "A"][FAILURES] if a else 0
    others = sum(1 for lot in order[:first_ok_a] if lot != "A")
    check("lot A's failures held back only lot A: other lots' events were delivered meanwhile", others >= 20,
          f"{others} other deliveries before lot A's first got through")
    print(f"# {others} deliveries of other lots went through while lot A's first event was failing", flush=True)


if __name__ == "__main__":
    T.run("delivery order test", run)
