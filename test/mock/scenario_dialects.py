#!/usr/bin/env python3
"""End-to-end: the reference scenario, order release to quality release,
against an ERPNext-style and a SAP-style ERP chosen by endpoint and route
configuration only, with a QMS that receives CloudEvents.

For each dialect, three orders run through the process APIs: one passes
quality, one is rejected, one gets a partial decision (60 freed, 30 blocked
in a split-off lot, 10 scrapped). Along the way: a consumption that arrives before
its order (parked, then applied), a message sent twice (applied once), a
consumption of the rejected lot (refused: the quality hold holds). Then the
test checks what the mock ERP and QMS received, document by document.

Run by test/e2e/scenario_dialects.sh with the cluster in PG* variables.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_support import E2E  # noqa: E402

T = E2E("e2e_scenario_dialects")
check, psql, mock, wait_for = T.check, T.psql, T.mock, T.wait_for

SITES = {"erpnext": "EN", "sap": "SP"}
ROUTES = {
    "erpnext": [
        # endpoint, path, event pattern, transform
        ("erpnext-wo", "/erpnext/api/resource/Work%20Order", "production_order.*", "plantsync.erpnext_work_order"),
        ("erpnext-se", "/erpnext/api/resource/Stock%20Entry", "material_movement.*", "plantsync.erpnext_stock_entry"),
        ("erpnext-lot", "/erpnext/api/resource/Stock%20Entry/lot", "lot.*", "plantsync.erpnext_lot_transfer"),
        ("erpnext-qi", "/erpnext/api/resource/Quality%20Inspection", "usage_decision.*", "plantsync.erpnext_quality_inspection"),
        ("erpnext-nc", "/erpnext/api/resource/Non%20Conformance", "nonconformance.*", "plantsync.erpnext_non_conformance"),
    ],
    "sap": [
        ("sap-gr", "/sap/API_MATERIAL_DOCUMENT_SRV/A_MaterialDocumentHeader", "material_movement.*", "plantsync.sap_material_document",
         '($.movement_type == "production_receipt" || $.movement_type == "scrap" || $.movement_type == "lot_split")'),
        ("sap-conf", "/sap/API_PROD_ORDER_CONFIRMATION_2_SRV/ProdnOrdConf2", "production_confirmation.*",
         "plantsync.sap_production_confirmation"),
        ("sap-lot", "/sap/API_MATERIAL_DOCUMENT_SRV/A_MaterialDocumentHeader", "lot.*", "plantsync.sap_lot_stock_transfer"),
        ("sap-ud", "/sap/API_INSPECTIONLOT_SRV/A_InspLotUsageDecision", "usage_decision.*", "plantsync.sap_usage_decision"),
    ],
}


def run_scenario(dialect, site):
    """The reference scenario at one plant, its ERP speaking one dialect."""
    msg = lambda kind, n: f"{site}-{kind}-{n}"  # noqa: E731
    api = lambda fn, m, payload: json.loads(psql(f"SELECT plantsync.{fn}('{m}', '{json.dumps(payload)}')"))  # noqa: E731
    release = lambda order, qty: api("erp_release_order", msg("rel", order), {  # noqa: E731
        "site": site, "order": order, "material": "SYRUP", "quantity": qty, "uom": "KG", "due_date": "2026-12-20",
        "erp_ref": f"{order}-ERP", "operations": [{"operation": "0010", "work_center": "WC1", "segment": "MIX", "quantity": qty}]})

    out = {}
    # out of order: the MES consumes before the ERP has released the order
    out["parked"] = api("mes_consume", msg("con", 1), {"site": site, "order": f"{site}-PASS", "material": "SUGAR",
                                                        "lot": "S-1", "quantity": 60, "uom": "KG", "location": "RM01"})
    out["release_pass"] = release(f"{site}-PASS", 100)
    out["release_fail"] = release(f"{site}-FAIL", 50)
    out["duplicate"] = release(f"{site}-FAIL", 50)
    out["release_part"] = release(f"{site}-PART", 100)
    for order, qty, lot in ((f"{site}-PASS", 100, f"{site}-FG-PASS"), (f"{site}-FAIL", 50, f"{site}-FG-FAIL"),
                            (f"{site}-PART", 100, f"{site}-FG-PART")):
        api("mes_operation", msg("op", order), {"site": site, "order": order, "operation": "0010", "action": "start"})
        if order.endswith("FAIL"):
            api("mes_consume", msg("con", order), {"site": site, "order": order, "material": "SUGAR", "lot": "S-1",
                                                   "quantity": 30, "uom": "KG", "location": "RM01"})
        api("mes_confirm", msg("conf", order), {"site": site, "order": order, "operation": "0010", "yield": qty, "uom": "KG",
                                                "final": True})
        api("mes_complete", msg("done", order), {"site": site, "order": order, "lot": lot, "quantity": qty, "uom": "KG",
                                                 "location": "FG01"})
    out["accept"] = api("qms_usage_decision", msg("ud", "pass"), {"site": site, "lot": f"{site}-FG-PASS", "decision": "accept",
                                                                  "decided_by": "qa.lead"})
    out["reject"] = api("qms_usage_decision", msg("ud", "fail"), {"site": site, "lot": f"{site}-FG-FAIL", "decision": "reject",
                                                                  "decided_by": "qa.lead", "comment": "viscosity out of spec"})
    # partial: 60 freed, 30 blocked (split off into a lot of its own), 10 scrapped
    out["partial"] = api("qms_usage_decision", msg("ud", "part"), {
        "site": site, "lot": f"{site}-FG-PART", "decision": "partial", "decided_by": "qa.lead", "comment": "fill level",
        "quantities": {"unrestricted": 60, "blocked": 30, "scrapped": 10}})
    # the rejected lot is held whatever system asks
    # (the block succeeds only when the consumption is refused with PS006)
    out["held"] = psql(f"""DO $$ BEGIN
        BEGIN
            PERFORM plantsync.mes_consume('{msg("con", "held")}', '{{"site": "{site}", "order": "{site}-PASS", "material": "SYRUP",
                "lot": "{site}-FG-FAIL", "quantity": 1, "uom": "KG", "location": "FG01"}}');
        EXCEPTION WHEN SQLSTATE 'PS006' THEN RETURN;
        END;
        RAISE EXCEPTION 'the rejected lot was consumed';
    END $$""", check_errors=False)
    # ... and cannot be shipped: the ERP's shipment line for it is refused
    out["ship_held"] = psql(f"""DO $$ BEGIN
        SET LOCAL plantsync.source_system = 'erp';
        INSERT INTO plantsync.shipment (site_id, shipment_number, customer_code) VALUES ('{site}', '{site}-SH-1', 'C-1');
        BEGIN
            INSERT INTO plantsync.shipment_line (site_id, shipment_id, line_number, material_id, lot_id, quantity, uom)
            SELECT s.site_id, s.id, 1, l.material_id, l.id, 1, 'KG' FROM plantsync.shipment s, plantsync.lot l
             WHERE s.shipment_number = '{site}-SH-1' AND l.site_id = '{site}' AND l.lot_number = '{site}-FG-FAIL';
        EXCEPTION WHEN SQLSTATE 'PS006' THEN RETURN;
        END;
        RAISE EXCEPTION 'the rejected lot was put on a shipment';
    END $$""", check_errors=False)
    return out


def run(t):
    port = t.port
    psql("CREATE EXTENSION plantsync")
    setup = ["SET plantsync.source_system = 'hub';"]
    for dialect, site in (("erpnext", "EN"), ("sap", "SP")):
        setup.append(f"""
INSERT INTO plantsync.site (site_id, name) VALUES ('{site}', '{dialect} plant');
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('{site}', 'RM01', 'Raw'), ('{site}', 'FG01', 'Finished');
INSERT INTO plantsync.equipment (site_id, equipment_code, name, equipment_level) VALUES ('{site}', 'WC1', 'Mixer', 'WorkCenter');""")
        for endpoint, path, pattern, transform, *extra in ROUTES[dialect]:
            flt = " && ".join([f'$.site_id == "{site}"'] + extra)
            setup.append(f"""
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http, path_template, retry_schedule)
VALUES ('{endpoint}', 'erp', 'http://127.0.0.1:{port}{path}', true, '', '{{0, 200 ms}}');
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id, transform, filter)
VALUES ('{endpoint}', '{pattern}', '{endpoint}', '{transform}', '{flt}');""")
    setup.append(f"""
INSERT INTO plantsync.dialect_mapping VALUES
    ('EN', 'erpnext', 'company', '*', 'ACME Syrups'), ('EN', 'erpnext', 'quarantine_warehouse', '*', 'Quarantine - ACME'),
    ('EN', 'erpnext', 'quality_procedure', '*', 'QP-0001'), ('EN', 'erpnext', 'warehouse', 'RM01', 'Stores - ACME'),
    ('EN', 'erpnext', 'warehouse', 'FG01', 'Finished Goods - ACME'),
    ('SP', 'sap', 'plant', '*', '1010'), ('SP', 'sap', 'warehouse', 'RM01', '0001'), ('SP', 'sap', 'warehouse', 'FG01', '0002'),
    ('SP', 'sap', 'item', 'SUGAR', 'RM-100'), ('SP', 'sap', 'item', 'SYRUP', 'FG-200');
-- the QMS hears of every lot waiting for quality, as CloudEvents
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http, path_template, headers, retry_schedule)
VALUES ('qms', 'qms', 'http://127.0.0.1:{port}/qms/events', true, '', '{{"Content-Type": "application/cloudevents+json"}}', '{{0, 200 ms}}');
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id, transform)
VALUES ('qms-inspections', 'lot.restricted', 'qms', 'plantsync.cloudevent');
RESET plantsync.source_system;""")
    psql("\n".join(setup))
    for site in ("EN", "SP"):
        psql(f"""
SELECT plantsync.erp_material('{site}-M1', '{{"site": "{site}", "material": "SUGAR", "description": "Sugar", "base_uom": "KG"}}');
SELECT plantsync.erp_material('{site}-M2', '{{"site": "{site}", "material": "SYRUP", "description": "Syrup", "base_uom": "KG", "material_type": "finished"}}');
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
SELECT '{site}', id, 'S-1', 'unrestricted' FROM plantsync.material WHERE site_id = '{site}' AND material_number = 'SUGAR';
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id)
SELECT '{site}', 'goods_receipt', l.material_id, l.id, 500, 'KG', s.id, 'mes', '{site}-GR-1'
  FROM plantsync.lot l JOIN plantsync.storage_location s ON s.site_id = l.site_id AND s.location_code = 'RM01'
 WHERE l.site_id = '{site}' AND l.lot_number = 'S-1';""")

    results = {dialect: run_scenario(dialect, site) for dialect, site in (("erpnext", "EN"), ("sap", "SP"))}
    for dialect, out in results.items():
        check(f"{dialect}: a consumption before its order is parked", out["parked"].get("message") == "parked", str(out["parked"]))
        check(f"{dialect}: the releases are applied", out["release_pass"].get("message") == "applied" == out["release_fail"].get("message"))
        check(f"{dialect}: a release sent twice is applied once", out["duplicate"].get("message") == "duplicate", str(out["duplicate"]))
        check(f"{dialect}: the pass lot is released", out["accept"].get("disposition") == "unrestricted", str(out["accept"]))
        check(f"{dialect}: the rejected lot cannot be consumed (quality hold, PS006)", out["held"] == "", str(out["held"]))
        check(f"{dialect}: nor shipped (PS006)", out["ship_held"] == "", str(out["ship_held"]))
        check(f"{dialect}: the partial decision frees the lot and splits off the blocked part",
              out["partial"].get("disposition") == "unrestricted" and out["partial"].get("blocked_lot") == f"{SITES[dialect]}-FG-PART-B",
              str(out["partial"]))
        check(f"{dialect}: the fail lot is rejected with a nonconformance",
              out["reject"].get("disposition") == "rejected" and "nonconformance_id" in out["reject"], str(out["reject"]))
    check("the parked consumptions were applied when their orders arrived",
          psql("SELECT string_agg(status, ',') FROM plantsync.inbox WHERE message_id IN ('EN-con-1', 'SP-con-1')") == "applied,applied")

    ok = wait_for("deliveries settled", lambda: psql("SELECT count(*) FROM plantsync.delivery WHERE status <> 'delivered'") == "0", 40)
    check("every delivery to the ERPs and the QMS is delivered", ok,
          psql("SELECT string_agg(route_id || ':' || status || ':' || COALESCE(last_error, ''), '; ') FROM plantsync.delivery WHERE status <> 'delivered'"))
    reqs = mock("/_requests")
    body = lambda r: json.loads(r["body"])  # noqa: E731
    at = lambda prefix: [body(r) for r in reqs if r["path"].startswith(prefix)]  # noqa: E731

    # ---------- ERPNext ----------
    wo = at("/erpnext/api/resource/Work%20Order")
    check("ERPNext: each order's life as Work Order statuses",
          sorted({(d["name"], d["status"]) for d in wo}) ==
          sorted({(f"EN-{k}-ERP", s) for s in ("Not Started", "In Process", "Completed") for k in ("PASS", "FAIL", "PART")}),
          str(sorted({(d["name"], d["status"]) for d in wo})))
    se_moves = [d for r in reqs if r["path"] == "/erpnext/api/resource/Stock%20Entry" for d in [body(r)]]
    purposes = sorted((d["purpose"], d.get("work_order"), d["items"][0]["batch_no"], d["items"][0]["qty"]) for d in se_moves)
    check("ERPNext: consumptions and production receipts as Stock Entries with their work orders",
          purposes == sorted([("Material Receipt", None, "S-1", 500),
                              ("Material Consumption for Manufacture", "EN-PASS-ERP", "S-1", 60),
                              ("Material Consumption for Manufacture", "EN-FAIL-ERP", "S-1", 30),
                              ("Manufacture", "EN-PASS-ERP", "EN-FG-PASS", 100),
                              ("Manufacture", "EN-FAIL-ERP", "EN-FG-FAIL", 50),
                              ("Manufacture", "EN-PART-ERP", "EN-FG-PART", 100),
                              ("Material Issue", None, "EN-FG-PART", 10)]), str(purposes))
    check("ERPNext: the produced lots, in quality inspection, are received into the quarantine warehouse",
          sorted((i["batch_no"], i["t_warehouse"]) for d in se_moves if d["purpose"] == "Manufacture" for i in d["items"])
          == [("EN-FG-FAIL", "Quarantine - ACME"), ("EN-FG-PART", "Quarantine - ACME"), ("EN-FG-PASS", "Quarantine - ACME")],
          str([(i["batch_no"], i.get("t_warehouse")) for d in se_moves if d["purpose"] == "Manufacture" for i in d["items"]]))
    lot_moves = [d for r in reqs if r["path"] == "/erpnext/api/resource/Stock%20Entry/lot" for d in [body(r)]]
    check("ERPNext: the released lot leaves the quarantine warehouse, and the freed part of the partial one; the rejected and the blocked stay",
          sorted((i["batch_no"], i["s_warehouse"], i["t_warehouse"], i["qty"]) for d in lot_moves for i in d["items"])
          == [("EN-FG-PART", "Quarantine - ACME", "Finished Goods - ACME", 60), ("EN-FG-PASS", "Quarantine - ACME", "Finished Goods - ACME", 100)],
          json.dumps(lot_moves)[:300])
    check("ERPNext: the partial decision's scrap leaves from the quarantine warehouse; its split moves nothing",
          [(i["batch_no"], i["s_warehouse"], i["qty"]) for d in se_moves if d["purpose"] == "Material Issue" for i in d["items"]]
          == [("EN-FG-PART", "Quarantine - ACME", 10)], str([d["items"] for d in se_moves if d["purpose"] == "Material Issue"]))
    qi = at("/erpnext/api/resource/Quality%20Inspection")
    check("ERPNext: a Quality Inspection per decision, Accepted and Rejected",
          sorted((d["batch_no"], d["status"]) for d in qi) == [("EN-FG-FAIL", "Rejected"), ("EN-FG-PART", "Accepted"), ("EN-FG-PASS", "Accepted")],
          str(qi)[:300])
    nc = at("/erpnext/api/resource/Non%20Conformance")
    check("ERPNext: the rejection and the partial decision as open Non Conformances",
          sorted((d["status"], d["procedure"], "EN-FG-FAIL" in d["details"], "EN-FG-PART" in d["details"]) for d in nc)
          == [("Open", "QP-0001", False, True), ("Open", "QP-0001", True, False)], str(nc)[:300])

    # ---------- SAP ----------
    conf = at("/sap/API_PROD_ORDER_CONFIRMATION_2_SRV/ProdnOrdConf2")
    got = sorted((d["OrderID"], d["IsFinalConfirmation"], d["ConfirmationYieldQuantity"],
                  tuple(sorted((i["GoodsMovementType"], i.get("Batch"), i["QuantityInEntryUnit"]) for i in d["to_ProdnOrdConfMatlDocItm"]["results"])))
                 for d in conf)
    check("SAP: one final confirmation per order, with the consumption (261) posted before it",
          got == [("SP-FAIL-ERP", True, "50", (("261", "S-1", "30"),)), ("SP-PART-ERP", True, "100", ()),
                  ("SP-PASS-ERP", True, "100", (("261", "S-1", "60"),))], str(got))
    docs = at("/sap/API_MATERIAL_DOCUMENT_SRV/A_MaterialDocumentHeader")
    got = sorted((i["Batch"], i["GoodsMovementType"], i["QuantityInEntryUnit"], i["StorageLocation"], i["Material"])
                 for d in docs for i in d["to_MaterialDocumentItem"]["results"])
    check("SAP: the produced lots received against their orders (101), then released from quality inspection (321) or blocked (350); "
          "the partial one in the same batch: 10 scrapped from quality inspection (553), 30 blocked (350), 60 released (321)",
          got == [("SP-FG-FAIL", "101", "50", "0002", "FG-200"), ("SP-FG-FAIL", "350", "50", "0002", "FG-200"),
                  ("SP-FG-PART", "101", "100", "0002", "FG-200"), ("SP-FG-PART", "321", "60", "0002", "FG-200"),
                  ("SP-FG-PART", "350", "30", "0002", "FG-200"), ("SP-FG-PART", "553", "10", "0002", "FG-200"),
                  ("SP-FG-PASS", "101", "100", "0002", "FG-200"), ("SP-FG-PASS", "321", "100", "0002", "FG-200")], str(got))
    ud = at("/sap/API_INSPECTIONLOT_SRV/A_InspLotUsageDecision")
    check("SAP: the usage decisions with valuation A and R (the partial one without a single valuation)",
          sorted((d["Batch"], d.get("InspLotUsageDecisionValuation", ""), d["Plant"]) for d in ud)
          == [("SP-FG-FAIL", "R", "1010"), ("SP-FG-PART", "", "1010"), ("SP-FG-PASS", "A", "1010")],
          str(ud)[:300])

    # ---------- QMS, and what holds for every request ----------
    ce = [(body(r), r) for r in reqs if r["path"] == "/qms/events"]
    check("the QMS is asked for a final inspection of each produced lot, as a CloudEvent correlated to its order",
          sorted((e["plantlot"], e["type"], e.get("plantorder")) for e, _ in ce) ==
          sorted([(f"{s}-FG-{k}", "lot.restricted", f"{s}-{k}") for s in ("EN", "SP") for k in ("PASS", "FAIL", "PART")]),
          str([(e.get("plantlot"), e.get("plantorder")) for e, _ in ce]))
    check("every request carries an Idempotency-Key, none twice",
          all(r["headers"].get("idempotency-key") for r in reqs)
          and len({r["headers"]["idempotency-key"] for r in reqs}) == len(reqs), f"{len(reqs)} requests")
    check("nothing was sent to an ERP about the other plant",
          not [r for r in reqs if r["path"].startswith("/sap") and "EN-" in r["body"]]
          and not [r for r in reqs if r["path"].startswith("/erpnext") and "SP-" in r["body"]])


def summary(r):
    """One line of what a request carried, for people."""
    p, d = r["path"], json.loads(r["body"])
    if p == "/qms/events":
        return "QMS", f"CloudEvent {d['type']}: lot {d.get('plantlot')} of order {d.get('plantorder')}"
    if p.startswith("/erpnext"):
        doc = p.split("/")[4].replace("%20", " ")
        if doc == "Stock Entry":
            rows = "; ".join(f"{i['qty']} {i.get('uom', '')} {i.get('batch_no', '')} "
                             f"{i.get('s_warehouse', '-')} -> {i.get('t_warehouse', '-')}" for i in d["items"])
            return "ERPNext", f"Stock Entry {d['purpose']}{' for ' + d['work_order'] if d.get('work_order') else ''}: {rows}"
        if doc == "Work Order":
            return "ERPNext", f"Work Order {d['name']}: {d['status']}"
        if doc == "Quality Inspection":
            return "ERPNext", f"Quality Inspection of batch {d['batch_no']}: {d['status']}"
        return "ERPNext", f"{doc}: {d.get('subject')} ({d.get('status')})"
    if "ProdnOrdConf2" in p:
        moves = "; ".join(f"{i['GoodsMovementType']} {i['QuantityInEntryUnit']} {i.get('Batch', '')}" for i in d["to_ProdnOrdConfMatlDocItm"]["results"])
        return "SAP", (f"confirmation of {d['OrderID']} operation {d['OrderOperation']}: yield {d['ConfirmationYieldQuantity']}"
                       f"{', final' if d['IsFinalConfirmation'] else ''}; goods movements {moves or 'none'}")
    if "A_MaterialDocumentHeader" in p:
        items = "; ".join(f"{i['GoodsMovementType']} {i['QuantityInEntryUnit']} {i['EntryUnit']} batch {i['Batch']} "
                          f"plant {i['Plant']} sloc {i['StorageLocation']}" for i in d["to_MaterialDocumentItem"]["results"])
        return "SAP", f"material document: {items}"
    if "A_InspLotUsageDecision" in p:
        return "SAP", f"usage decision of batch {d['Batch']}: valuation {d.get('InspLotUsageDecisionValuation', 'none (partial)')}"
    return "?", p


def show(t):
    """The demo's view: what each system received, in the order it arrived."""
    print("\nWhat the ERPs (an ERPNext-style one for plant EN, a SAP-style one for plant SP) and the QMS received:\n")
    for r in sorted(t.mock("/_requests"), key=lambda r: r["n"]):
        system, line = summary(r)
        print(f"  {system:8} {line}")
    print()


T.run("scenario_dialects", (lambda t: (run(t), show(t))) if os.environ.get("PLANTSYNC_DEMO") else run)
