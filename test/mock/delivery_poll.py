#!/usr/bin/env python3
"""End-to-end test of polling: the workers GET an ERP that does not push,
every second, and hand each page to a SQL handler that releases the work
orders through the process API and returns the next cursor.

- the cursor travels URL-encoded in the path; the request is a GET with the
  endpoint's authentication and no Idempotency-Key;
- a page read twice (an overlap) releases nothing twice;
- an HTTP 500 and a handler that fails (a draft work order on the page)
  are recorded, keep the cursor (the same page is asked for again) and
  apply nothing of the page;
- a response larger than the endpoint's max_response_bytes is refused;
- a host outside the endpoint's allowed_networks is never called;
- a disabled poll is not made.

Run by test/e2e/delivery_poll.sh with the cluster in PG* variables.
"""
import json
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_support import E2E  # noqa: E402

T = E2E("e2e_delivery_poll")
check, psql, mock, wait_for = T.check, T.psql, T.mock, T.wait_for
SECRET = "s3cret-poll"


def work_order(name, modified, docstatus=1):
    return {"name": name, "doctype": "Work Order", "docstatus": docstatus, "modified": modified,
            "company": "ACME Syrups", "production_item": "FG-SYRUP", "qty": 100.0, "stock_uom": "Kg",
            "expected_delivery_date": "2026-12-20",
            "operations": [{"idx": 1, "operation": "MIX", "workstation": "Mixer 1 - ACME"}]}


PAGES = [
    {"status": 200, "body": {"data": [work_order("WO-1", "2026-11-02 10:00:00"), work_order("WO-2", "2026-11-02 11:00:00")]}},
    {"status": 200, "body": {"data": [work_order("WO-2", "2026-11-02 11:00:00"), work_order("WO-3", "2026-11-03 09:00:00")]}},
    {"status": 500, "body": {"exc_type": "InternalServerError"}},
    {"status": 200, "body": {"data": [work_order("WO-4", "2026-11-04 08:00:00"), work_order("WO-5", "2026-11-04 09:00:00", 0)]}},
    {"status": 200, "body": {"data": [work_order("WO-4", "2026-11-04 08:00:00")]}},
    {"status": 200, "body": {"data": []}},
]


def run(t):
    port = t.port
    mock("/_script", {"rules": [
        {"path": "/api/resource/Work%20Order", "responses": PAGES},
        {"path": "/big", "responses": [{"status": 200, "body": {"data": [work_order("WO-9", "2026-11-09 00:00:00")] * 20}}]},
        {"path": "/off", "responses": [{"status": 200, "body": {"data": []}}]},
    ]})
    psql(f"""
CREATE EXTENSION plantsync;
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('PL', 'Poll plant');
INSERT INTO plantsync.equipment (site_id, equipment_code, name, equipment_level) VALUES ('PL', 'MIXER-1', 'Mixer', 'WorkCenter');
INSERT INTO plantsync.dialect_mapping VALUES
    ('PL', 'erpnext', 'company', '*', 'ACME Syrups'), ('PL', 'erpnext', 'item', 'SYRUP', 'FG-SYRUP'),
    ('PL', 'erpnext', 'uom', 'KG', 'Kg'), ('PL', 'erpnext', 'work_center', 'MIXER-1', 'Mixer 1 - ACME');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http, auth_type, max_response_bytes, allowed_networks)
VALUES ('erpnext', 'erp', 'http://127.0.0.1:{port}', true, 'erpnext_token', 65536, NULL),
       ('small', 'erp', 'http://127.0.0.1:{port}', true, 'none', 400, NULL),
       ('fenced', 'erp', 'http://127.0.0.1:{port}', true, 'none', 65536, '{{10.0.0.0/8}}');
INSERT INTO plantsync.endpoint_secret VALUES ('erpnext', 'api_key', 'key-1'), ('erpnext', 'api_secret', '{SECRET}');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http, auth_type, token_url)
VALUES ('notoken', 'erp', 'http://127.0.0.1:{port}', true, 'oauth2_client_credentials', 'http://127.0.0.1:1/token');
RESET plantsync.source_system;
SELECT plantsync.erp_material('PL-M1', '{{"site": "PL", "material": "SYRUP", "description": "Syrup", "base_uom": "KG", "material_type": "finished"}}') IS NOT NULL;

-- The handler: every submitted work order of the page released through the
-- process API (message id = name and modification time), the newest
-- modification time as the next cursor.
CREATE FUNCTION public.erpnext_work_orders(p_poll_id text, p_cursor text, p_body text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    wo jsonb;
BEGIN
    FOR wo IN SELECT d FROM jsonb_array_elements(p_body::jsonb -> 'data') d ORDER BY d ->> 'modified' LOOP
        PERFORM plantsync.erp_release_order_erpnext((wo ->> 'name') || '@' || (wo ->> 'modified'), wo);
    END LOOP;
    RETURN (SELECT max(d ->> 'modified') FROM jsonb_array_elements(p_body::jsonb -> 'data') d);
END
$$;
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.poll (poll_id, endpoint_id, path_template, every, handler, initial_cursor, enabled)
VALUES ('work-orders', 'erpnext',
        '/api/resource/Work%20Order?fields=%5B%22*%22%5D&filters=%5B%5B%22modified%22,%22%3E%22,%22{{cursor}}%22%5D%5D',
        '1 second', 'public.erpnext_work_orders(text,text,text)', '2026-11-01 00:00:00', true),
       ('big', 'small', '/big', '1 second', 'public.erpnext_work_orders(text,text,text)', 'c0', true),
       ('fenced', 'fenced', '/fenced', '1 second', 'public.erpnext_work_orders(text,text,text)', NULL, true),
       ('off', 'erpnext', '/off', '1 second', 'public.erpnext_work_orders(text,text,text)', NULL, false),
       ('needs-token', 'notoken', '/tokpoll', '1 second', 'public.erpnext_work_orders(text,text,text)', 'c0', true);
""")
    ok = wait_for("six polls of the work orders", lambda: int(psql(
        "SELECT polls FROM plantsync.poll_state WHERE poll_id = 'work-orders'")) >= 6, 40)
    check("the work orders are polled about every second", ok,
          psql("SELECT row_to_json(s) FROM plantsync.poll_state s WHERE poll_id = 'work-orders'"))

    reqs = [r for r in mock("/_requests") if r["path"].startswith("/api/resource/")]
    cursors = [json.loads(urllib.parse.parse_qs(urllib.parse.urlsplit(r["path"]).query)["filters"][0])[0][2] for r in reqs]
    check("the first request carries the initial cursor", cursors[:1] == ["2026-11-01 00:00:00"], str(cursors))
    check("each request carries the cursor the last good page moved to, URL-encoded; a failed page is asked for again",
          cursors[:6] == ["2026-11-01 00:00:00", "2026-11-02 11:00:00", "2026-11-03 09:00:00",
                          "2026-11-03 09:00:00", "2026-11-03 09:00:00", "2026-11-04 08:00:00"], str(cursors[:6]))
    check("polls are GETs with the endpoint's authentication and no idempotency key or body",
          all(r["method"] == "GET" and r["headers"].get("authorization") == f"token key-1:{SECRET}"
              and "idempotency-key" not in r["headers"] and r["body"] == "" for r in reqs),
          str([(r["method"], r["headers"].get("authorization"), r["headers"].get("idempotency-key")) for r in reqs[:2]]))

    released = psql("SELECT string_agg(order_number, ',' ORDER BY order_number) FROM plantsync.production_order WHERE site_id = 'PL'")
    check("every submitted work order is released once, the overlap and the retried page changing nothing",
          released == "WO-1,WO-2,WO-3,WO-4", released)
    check("the inbox holds one message per work order version",
          psql("SELECT count(*) FROM plantsync.inbox WHERE message_id LIKE 'WO-%@%'") == "4",
          psql("SELECT string_agg(message_id, ', ') FROM plantsync.inbox"))
    state = json.loads(psql("SELECT row_to_json(s) FROM plantsync.poll_state s WHERE poll_id = 'work-orders'"))
    check("the poll stands at the newest modification time, after two failures, the last poll good",
          state["cursor"] == "2026-11-04 08:00:00" and state["failures"] == 2 and state["last_error"] is None
          and state["consecutive_failures"] == 0 and state["last_status_code"] == 200, str(state))
    ok = wait_for("the big poll refused", lambda: psql(
        "SELECT last_error FROM plantsync.poll_state WHERE poll_id = 'big'") not in ("", None), 20)
    big = json.loads(psql("SELECT row_to_json(s) FROM plantsync.poll_state s WHERE poll_id = 'big'"))
    check("a response over max_response_bytes is refused, nothing applied, the cursor kept",
          ok and "max_response_bytes (400)" in (big["last_error"] or "") and big["cursor"] == "c0"
          and psql("SELECT count(*) FROM plantsync.production_order WHERE order_number = 'WO-9'") == "0", str(big))
    fenced = json.loads(psql("SELECT row_to_json(s) FROM plantsync.poll_state s WHERE poll_id = 'fenced'"))
    check("a host outside allowed_networks is never called",
          "allowed_networks" in (fenced["last_error"] or "") and not any(r["path"] == "/fenced" for r in mock("/_requests")),
          str(fenced))
    ok = wait_for("the poll without a token recorded", lambda: "OAuth2" in (psql(
        "SELECT COALESCE(last_error, '') FROM plantsync.poll_state WHERE poll_id = 'needs-token'") or ""), 20)
    check("a poll whose endpoint cannot get its OAuth2 token says so in its state and sends nothing",
          ok and not any(r["path"] == "/tokpoll" for r in mock("/_requests"))
          and psql("SELECT cursor FROM plantsync.poll_state WHERE poll_id = 'needs-token'") == "c0",
          psql("SELECT row_to_json(s) FROM plantsync.poll_state s WHERE poll_id = 'needs-token'"))
    check("a disabled poll is not made",
          psql("SELECT polls FROM plantsync.poll_state WHERE poll_id = 'off'") == "0"
          and not any(r["path"] == "/off" for r in mock("/_requests")))

    # a handler failure is named with its cause; the 500 with its status
    mock("/_script", {"rules": [{"path": "/api/resource/Work%20Order", "responses": [
        {"status": 200, "body": {"data": [work_order("WO-6", "2026-11-05 08:00:00", 0)]}}]}]})
    ok = wait_for("the draft refused", lambda: "docstatus" in (psql(
        "SELECT COALESCE(last_error, '') FROM plantsync.poll_state WHERE poll_id = 'work-orders'")), 20)
    err = psql("SELECT last_error FROM plantsync.poll_state WHERE poll_id = 'work-orders'")
    check("a handler that fails is recorded with its message and SQLSTATE, the cursor kept",
          ok and "public.erpnext_work_orders failed" in err and "docstatus 0" in err and "22023" in err
          and psql("SELECT cursor FROM plantsync.poll_state WHERE poll_id = 'work-orders'") == "2026-11-04 08:00:00", err)
    mock("/_script", {"rules": [{"path": "/api/resource/Work%20Order", "responses": [{"status": 503}]}]})
    ok = wait_for("the 503 recorded", lambda: psql(
        "SELECT COALESCE(last_error, '') FROM plantsync.poll_state WHERE poll_id = 'work-orders'") == "HTTP 503", 20)
    check("an HTTP error is recorded as such, the cursor kept", ok and psql(
        "SELECT cursor FROM plantsync.poll_state WHERE poll_id = 'work-orders'") == "2026-11-04 08:00:00")
    check("the secret appears in no poll state",
          SECRET not in psql("SELECT string_agg(row_to_json(s)::text, '') FROM plantsync.poll_state s"))


T.run("delivery_poll", run)
