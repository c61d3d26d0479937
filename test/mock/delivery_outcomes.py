#!/usr/bin/env python3
"""End-to-end test of the delivery workers against the mock ERP server.

Every outcome class (2xx, 5xx, 503 with Retry-After, 429, 404, 301, 410,
timeout, connection reset, connection refused), retries up to dead letters,
the Idempotency-Key and Standard Webhooks signatures (also with two secrets
during rotation), ERPNext token auth, secrets kept out of every record,
per-aggregate order, batched routes, the circuit breaker, and a worker
terminated with pg_terminate_backend coming back.

Run by test/e2e/delivery_outcomes.sh with the cluster in PG* variables.
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_support import E2E  # noqa: E402

SECRET_KEY = b"plantsync-test-signing-key-0001"
SECRET = "whsec_" + base64.b64encode(SECRET_KEY).decode()
OLD_KEY = b"plantsync-old-signing-key-00002"
OLD_SECRET = "whsec_" + base64.b64encode(OLD_KEY).decode()
API_SECRET = "canary-api-secret-7f3a9"
T = E2E("e2e_delivery")
check, psql, mock, wait_for = T.check, T.psql, T.mock, T.wait_for


def settled(endpoint):
    return psql(f"SELECT count(*) FROM plantsync.delivery WHERE endpoint_id = '{endpoint}' "
                "AND status IN ('pending', 'retrying', 'in_flight')") == "0"


def run(t):
    PORT = t.port
    psql("CREATE EXTENSION plantsync")
    check("a delivery worker starts after CREATE EXTENSION, without a restart",
          wait_for("worker", lambda: psql("SELECT count(*) FROM plantsync.worker_status") == "1", 15))

    mock("/_script", {"rules": [
        {"path": "/erp/O-500", "responses": [{"status": 500}, {"status": 200}]},
        {"path": "/erp/O-503", "responses": [{"status": 503, "headers": {"Retry-After": "2"}}, {"status": 200}]},
        {"path": "/erp/O-429", "responses": [{"status": 429}, {"status": 200}]},
        {"path": "/erp/O-404", "responses": [{"status": 404, "body": {"exc": "Work Order not found"}}]},
        {"path": "/erp/O-301", "responses": [{"status": 301, "headers": {"Location": "http://127.0.0.1:1/"}}]},
        {"path": "/erp/O-TIMEOUT", "responses": [{"delay_ms": 2500}, {"status": 200}]},
        {"path": "/erp/O-RESET", "responses": [{"action": "reset"}, {"status": 200}]},
        {"path": "/erp/O-DEAD", "responses": [{"status": 502}]},
        {"path": "/gone", "responses": [{"status": 410}]},
        {"path": "/flaky", "responses": [{"status": 503}]},
        {"path": "/token", "responses": [{"body": {"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600}},
                                         {"body": {"access_token": "tok-2", "token_type": "Bearer", "expires_in": 3600}}]},
        {"path": "/oauth", "responses": [{"status": 401}, {"status": 200}]},
        {"path": "/sap/API", "responses": [{"status": 403, "headers": {"x-csrf-token": "Required"}}, {"status": 201, "body": {"d": {"MaterialDocument": "4900000001"}}}]},
        {"path": "/sap", "responses": [{"headers": {"x-csrf-token": "csrf-1", "Set-Cookie": "SAP_SESSIONID_S4H_100=abc; path=/; HttpOnly"}},
                                       {"headers": {"x-csrf-token": "csrf-2", "Set-Cookie": "SAP_SESSIONID_S4H_100=def; path=/; HttpOnly"}}]},
    ]})
    psql(f"""
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('P1', 'Plant');
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('P1', 'L1', 'Store');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http, path_template, auth_type,
                                timeout_ms, retry_schedule, circuit_failure_threshold, headers)
VALUES ('erp', 'erp', 'http://127.0.0.1:{PORT}', true, '/erp/{{order}}', 'erpnext_token', 1500,
        '{{0, 300 ms, 300 ms}}', 100, '{{"X-Plant": "P1"}}'),
       ('gone', 'erp', 'http://127.0.0.1:{PORT}/gone', true, '', 'none', 1500, '{{0, 300 ms}}', 100, '{{}}'),
       ('down', 'qms', 'http://127.0.0.1:1/down', true, '', 'none', 1500, '{{0, 200 ms, 200 ms}}', 100, '{{}}'),
       ('flaky', 'qms', 'http://127.0.0.1:{PORT}/flaky', true, '', 'none', 1500, '{{0, 100 ms, 100 ms, 100 ms, 100 ms, 100 ms, 100 ms, 100 ms, 100 ms, 100 ms}}', 3, '{{}}'),
       ('batch', 'erp', 'http://127.0.0.1:{PORT}/batch', true, '', 'none', 1500, '{{0}}', 100, '{{}}'),
       ('fenced', 'erp', 'http://localhost:{PORT}/fenced', true, '', 'none', 1500, '{{0, 100 ms}}', 100, '{{}}'),
       ('slow', 'qms', 'http://127.0.0.1:{PORT}/slow', true, '', 'none', 1500, '{{0}}', 100, '{{}}');
UPDATE plantsync.endpoint SET rate_limit_per_s = 5 WHERE endpoint_id = 'slow';
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http, auth_type, token_url, token_scope, retry_schedule)
VALUES ('oauth', 'qms', 'http://127.0.0.1:{PORT}/oauth', true, 'oauth2_client_credentials', 'http://127.0.0.1:{PORT}/token',
        'quality.write', '{{0, 200 ms, 200 ms}}');
INSERT INTO plantsync.endpoint_secret VALUES ('oauth', 'client_id', 'plant-p1'), ('oauth', 'client_secret', '{API_SECRET}-oauth');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http, auth_type, auth_username, path_template, retry_schedule)
VALUES ('sap', 'erp', 'http://127.0.0.1:{PORT}/sap', true, 'sap_csrf', 'PLANTSYNC', '/API_MATERIAL_DOCUMENT_SRV/A_MaterialDocumentHeader',
        '{{0, 200 ms, 200 ms}}');
INSERT INTO plantsync.endpoint_secret VALUES ('sap', 'password', '{API_SECRET}-sap');
CREATE TABLE public.erp_document (delivery_id uuid, status_code integer, document text);
CREATE FUNCTION public.keep_erp_document(d uuid, code integer, response text) RETURNS void LANGUAGE sql
    AS $f$ INSERT INTO public.erp_document VALUES (d, code, response::jsonb->'data'->>'name') $f$;
UPDATE plantsync.endpoint SET response_handler = 'public.keep_erp_document' WHERE endpoint_id = 'erp';
UPDATE plantsync.endpoint SET allowed_networks = '{{10.20.0.0/16}}' WHERE endpoint_id = 'fenced';
UPDATE plantsync.endpoint SET circuit_probe_interval = '1 s' WHERE endpoint_id = 'flaky';
INSERT INTO plantsync.endpoint_secret VALUES ('erp', 'api_key', 'key-123'), ('erp', 'api_secret', '{API_SECRET}'),
                                             ('erp', 'signing_secret', '{SECRET}');
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES
    ('erp-orders', 'production_order.*', 'erp'),
    ('gone-orders', 'production_order.released', 'gone'),
    ('down-lots', 'lot.unrestricted', 'down'),
    ('flaky-lots', 'lot.restricted', 'flaky'),
    ('fenced-orders', 'production_order.released', 'fenced'),
    ('slow-lots', 'lot.blocked', 'slow'),
    ('oauth-orders', 'production_order.released', 'oauth'),
    ('sap-orders', 'production_order.released', 'sap');
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id, mode, batch_window_ms, batch_max_size)
VALUES ('batch-movements', 'material_movement.recorded', 'batch', 'batched', 300, 5);
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) VALUES ('P1', 'M', 'M', 'KG');
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
SELECT 'P1', o, id, 1, 'KG', 'released', '2027-01-01' FROM plantsync.material,
       unnest(ARRAY['O-OK', 'O-500', 'O-503', 'O-429', 'O-404', 'O-301', 'O-TIMEOUT', 'O-RESET', 'O-DEAD']) o;
""")
    check("the ERP endpoint's deliveries settle", wait_for("erp settled", lambda: settled("erp"), 30))

    def delivery(order):
        row = psql(f"""SELECT d.status, d.attempts, coalesce(d.last_status_code, 0), coalesce(d.last_error, ''),
                              coalesce(d.idempotency_key, d.id)
                         FROM plantsync.delivery d JOIN plantsync.event e ON e.id = d.event_id
                        WHERE d.endpoint_id = 'erp' AND e.order_number = '{order}'""")
        status, attempts, code, error, key = row.split("|")
        return status, int(attempts), int(code), error, key

    expect = {
        "O-OK": ("delivered", 1), "O-500": ("delivered", 2), "O-503": ("delivered", 2), "O-429": ("delivered", 2),
        "O-404": ("dead", 1), "O-301": ("dead", 1), "O-TIMEOUT": ("delivered", 2), "O-RESET": ("delivered", 2),
        "O-DEAD": ("dead", 3),
    }
    for order, (status, attempts) in expect.items():
        got = delivery(order)
        if not check(f"{order}: {status} after {attempts} attempt(s)", got[0] == status and got[1] == attempts, str(got)):
            # what each attempt saw, and what the mock received, to tell a timeout from a second send
            print("# attempts: " + psql(f"""SELECT string_agg(format('%s %s %s %sms %s', a.attempt, a.outcome, a.status_code,
                                                                       a.latency_ms, a.error), ' | ' ORDER BY a.attempted_at)
                                           FROM plantsync.delivery_attempt a JOIN plantsync.delivery d ON d.id = a.delivery_id
                                           JOIN plantsync.event e ON e.id = d.event_id
                                          WHERE d.endpoint_id = 'erp' AND e.order_number = '{order}'"""), flush=True)
            print("# mock received: " + str([(round(r["time"], 2), r["headers"].get("idempotency-key")) for r in mock("/_requests")
                                              if r["path"] == f"/erp/{order}"]), flush=True)
    check("404: the response is kept in the attempt record",
          "Work Order not found" in psql("SELECT response_excerpt FROM plantsync.delivery_attempt WHERE status_code = 404"))
    check("301: redirects are not followed", "redirects are not followed" in delivery("O-301")[3])
    check("timeout: recorded as a timeout, then retried",
          "imeout" in psql("SELECT string_agg(error, ' ') FROM plantsync.delivery_attempt a JOIN plantsync.delivery d "
                           "ON d.id = a.delivery_id JOIN plantsync.event e ON e.id = d.event_id WHERE e.order_number = 'O-TIMEOUT'"))
    check("O-DEAD: the last error says the schedule ran out", "gave up after 3 attempts" in delivery("O-DEAD")[3])
    check("dead letters are listed", psql("SELECT count(*) FROM plantsync.dead_letter WHERE endpoint_id = 'erp'") == "3")

    requests = mock("/_requests")
    by_path = {}
    for r in requests:
        by_path.setdefault(r["path"], []).append(r)
    r503 = by_path.get("/erp/O-503", [])
    check("503 with Retry-After: 2 waits at least 2 s before the retry",
          len(r503) == 2 and r503[1]["time"] - r503[0]["time"] >= 1.9,
          str([round(r["time"] - r503[0]["time"], 2) for r in r503]))
    key = delivery("O-500")[4]
    check("every attempt of a delivery carries the same Idempotency-Key (the delivery id)",
          [r["headers"].get("idempotency-key") for r in by_path["/erp/O-500"]] == [key, key])
    ok_req = by_path["/erp/O-OK"][0]
    h = ok_req["headers"]
    check("ERPNext token auth: Authorization: token key:secret", h.get("authorization") == f"token key-123:{API_SECRET}")
    check("configured headers are sent", h.get("x-plant") == "P1")
    signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.{ok_req['body']}".encode()
    expected_sig = "v1," + base64.b64encode(hmac.new(SECRET_KEY, signed, hashlib.sha256).digest()).decode()
    check("Standard Webhooks signature verifies with the endpoint's secret", h.get("webhook-signature") == expected_sig,
          f"{h.get('webhook-signature')} vs {expected_sig}")
    check("webhook-timestamp is within 300 s of now", abs(int(h["webhook-timestamp"]) - time.time()) < 300)
    body = json.loads(ok_req["body"])
    check("the body is the CloudEvents event", body.get("specversion") == "1.0" and body.get("type") == "production_order.released")

    # 410 disables the endpoint; nothing is lost.
    check("410 Gone disables the endpoint",
          wait_for("gone disabled", lambda: psql("SELECT enabled FROM plantsync.endpoint WHERE endpoint_id = 'gone'") == "f", 15))
    check("the disabled endpoint says why",
          "410" in psql("SELECT disabled_reason FROM plantsync.endpoint WHERE endpoint_id = 'gone'"))

    # OAuth2 client credentials: one token, reused; a 401 fetches a new one.
    check("the OAuth2 endpoint's deliveries are all delivered",
          wait_for("oauth settled", lambda: settled("oauth"), 20) and
          psql("SELECT count(*) FROM plantsync.delivery WHERE endpoint_id = 'oauth' AND status <> 'delivered'") == "0")
    reqs = mock("/_requests")
    token_reqs = [r for r in reqs if r["path"] == "/token"]
    oauth_reqs = [r for r in reqs if r["path"] == "/oauth"]
    expected_basic = "Basic " + base64.b64encode(f"plant-p1:{API_SECRET}-oauth".encode()).decode()
    check("tokens are requested with client credentials (HTTP Basic, grant_type, scope)",
          len(token_reqs) >= 2 and all(r["headers"].get("authorization") == expected_basic and
                                       "grant_type=client_credentials" in r["body"] and "scope=quality.write" in r["body"]
                                       for r in token_reqs), str([(r["headers"].get("authorization"), r["body"]) for r in token_reqs]))
    auths = [r["headers"].get("authorization") for r in oauth_reqs]
    check("requests carry the cached token; after a 401 a new one is fetched and used",
          auths[0] == "Bearer tok-1" and "Bearer tok-2" in auths and len(token_reqs) == 2,
          f"{auths}; {len(token_reqs)} token requests")

    # SAP: X-CSRF-Token fetched with a GET, sent back with the session cookie;
    # a 403 "Required" fetches a new one for the retry.
    check("the SAP endpoint's deliveries are all delivered",
          wait_for("sap settled", lambda: settled("sap"), 20) and
          psql("SELECT count(*) FROM plantsync.delivery WHERE endpoint_id = 'sap' AND status <> 'delivered'") == "0")
    reqs = mock("/_requests")
    fetches = [r for r in reqs if r["path"] == "/sap"]
    posts = [r for r in reqs if r["path"].startswith("/sap/API")]
    basic = "Basic " + base64.b64encode(f"PLANTSYNC:{API_SECRET}-sap".encode()).decode()
    check("the token is fetched with GET, X-CSRF-Token: Fetch and basic auth",
          len(fetches) == 2 and all(r["method"] == "GET" and r["headers"].get("x-csrf-token") == "Fetch"
                                    and r["headers"].get("authorization") == basic for r in fetches), str(len(fetches)))
    check("writes carry the token and the session cookie of its fetch",
          posts[0]["headers"].get("x-csrf-token") == "csrf-1" and posts[0]["headers"].get("cookie") == "SAP_SESSIONID_S4H_100=abc"
          and any(r["headers"].get("x-csrf-token") == "csrf-2" and r["headers"].get("cookie") == "SAP_SESSIONID_S4H_100=def" for r in posts),
          str([(r["headers"].get("x-csrf-token"), r["headers"].get("cookie")) for r in posts]))

    # Response handlers see each delivered response (here: the ERP document number).
    calls = psql("SELECT count(*) FROM public.erp_document WHERE status_code = 200")
    delivered = psql("SELECT count(*) FROM plantsync.delivery WHERE endpoint_id = 'erp' AND status = 'delivered'")
    check("the response handler is called once for every delivered request", calls == delivered and int(calls) > 0,
          f"{calls} calls for {delivered} deliveries")
    doc = psql("SELECT x.document FROM public.erp_document x JOIN plantsync.delivery d ON d.id = x.delivery_id "
               "JOIN plantsync.event e ON e.id = d.event_id WHERE e.order_number = 'O-OK'")
    check("and it can keep the ERP document number from the response", doc.startswith("DOC-"), doc)

    # Rate limit: 15 deliveries at 5 per second take about 2 s or more.
    psql("SET plantsync.source_system = 'mes'; INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition) "
         "SELECT 'P1', id, 'L-R' || g, 'restricted' FROM plantsync.material, generate_series(1, 15) g;"
         "SET plantsync.source_system = 'qms'; UPDATE plantsync.lot SET disposition = 'blocked' WHERE lot_number LIKE 'L-R%'")
    wait_for("slow settled", lambda: settled("slow"), 20)
    times = sorted(r["time"] for r in mock("/_requests") if r["path"] == "/slow")
    check("a rate limit of 5/s spreads 15 requests over at least 2 s",
          len(times) == 15 and times[-1] - times[0] >= 1.8, f"{len(times)} requests over {times[-1] - times[0]:.2f} s" if times else "none")

    # SSRF: an address outside allowed_networks is never contacted.
    check("a host resolving outside allowed_networks gets nothing: the delivery is dead, with the reason",
          wait_for("fenced settled", lambda: settled("fenced"), 15) and
          psql("SELECT count(*) FROM plantsync.delivery WHERE endpoint_id = 'fenced' AND status = 'dead' "
               "AND last_error LIKE '%outside allowed_networks%'") == psql("SELECT count(*) FROM plantsync.delivery WHERE endpoint_id = 'fenced'"))
    check("and no request reached the server", not any(r["path"] == "/fenced" for r in mock("/_requests")))

    # Connection refused: retried, then dead.
    psql("SET plantsync.source_system = 'mes'; INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition) "
         "SELECT 'P1', id, 'L-DOWN', 'unrestricted' FROM plantsync.material")
    check("connection refused: retried, then dead after the schedule",
          wait_for("down settled", lambda: settled("down"), 15) and
          psql("SELECT status || ':' || attempts FROM plantsync.delivery WHERE endpoint_id = 'down'") == "dead:3")

    # Secret rotation: two signatures.
    psql(f"SET plantsync.source_system = 'hub'; INSERT INTO plantsync.endpoint_secret VALUES ('erp', 'signing_secret_previous', '{OLD_SECRET}');"
         "SET plantsync.source_system = 'erp'; INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date) "
         "SELECT 'P1', 'O-ROT', id, 1, 'KG', 'released', '2027-01-01' FROM plantsync.material")
    wait_for("rotation request", lambda: any(r["path"] == "/erp/O-ROT" for r in mock("/_requests")), 10)
    rot = [r for r in mock("/_requests") if r["path"] == "/erp/O-ROT"][0]
    h = rot["headers"]
    signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.{rot['body']}".encode()
    sigs = h.get("webhook-signature", "").split(" ")
    want = ["v1," + base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()).decode() for k in (SECRET_KEY, OLD_KEY)]
    check("during rotation a request carries both signatures", sigs == want, str(sigs))

    # Per-aggregate order: one order's state changes arrive in sequence.
    psql("SET plantsync.source_system = 'erp'; INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date) "
         "SELECT 'P1', 'O-SEQ', id, 1, 'KG', 'draft', '2027-01-01' FROM plantsync.material;"
         "UPDATE plantsync.production_order SET status = 'released' WHERE order_number = 'O-SEQ';"
         "SET plantsync.source_system = 'mes';"
         "UPDATE plantsync.production_order SET status = 'in_progress' WHERE order_number = 'O-SEQ';"
         "UPDATE plantsync.production_order SET status = 'held' WHERE order_number = 'O-SEQ';"
         "UPDATE plantsync.production_order SET status = 'in_progress' WHERE order_number = 'O-SEQ';"
         "UPDATE plantsync.production_order SET status = 'completed' WHERE order_number = 'O-SEQ';")
    wait_for("O-SEQ delivered", lambda: settled("erp"), 15)
    seqs = [json.loads(r["body"])["aggregate_seq"] for r in mock("/_requests") if r["path"] == "/erp/O-SEQ"]
    check("one aggregate's events arrive in sequence order", seqs == sorted(seqs) and len(seqs) == 6, str(seqs))

    # Batched route: 7 movements, window 300 ms, at most 5 per request.
    psql("SET plantsync.source_system = 'mes'; INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition) "
         "SELECT 'P1', id, 'L-B', 'unrestricted' FROM plantsync.material;"
         "INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id) "
         "SELECT 'P1', 'goods_receipt', l.material_id, l.id, 1, 'KG', s.id, 'mes', 'B-' || g "
         "FROM plantsync.lot l, plantsync.storage_location s, generate_series(1, 7) g WHERE l.lot_number = 'L-B'")
    wait_for("batches", lambda: settled("batch"), 15)
    sizes = sorted(len(json.loads(r["body"])) for r in mock("/_requests") if r["path"] == "/batch")
    check("a batched route sends one request per batch (5 + 2)", sizes == [2, 5], str(sizes))

    # Circuit breaker: 3 failures open it; then only probes go out.
    psql("SET plantsync.source_system = 'mes'; INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition) "
         "SELECT 'P1', id, 'L-F' || g, 'restricted' FROM plantsync.material, generate_series(1, 10) g")
    check("the circuit opens after 3 consecutive failures",
          wait_for("circuit open", lambda: psql("SELECT circuit FROM plantsync.endpoint_state WHERE endpoint_id = 'flaky'") == "open", 15))
    n1 = len([r for r in mock("/_requests") if r["path"] == "/flaky"])
    time.sleep(2.2)
    n2 = len([r for r in mock("/_requests") if r["path"] == "/flaky"])
    check("while open, only probes go out (about one a second)", n2 - n1 <= 3, f"{n2 - n1} requests in 2.2 s")
    check("while open, nothing is lost",
          psql("SELECT count(*) FROM plantsync.delivery WHERE endpoint_id = 'flaky' AND status IN ('pending', 'retrying', 'in_flight')") != "0")
    mock("/_script", {"rules": []})
    check("a successful probe closes the circuit and the backlog drains",
          wait_for("flaky drained", lambda: settled("flaky"), 20) and
          psql("SELECT circuit FROM plantsync.endpoint_state WHERE endpoint_id = 'flaky'") == "closed")

    # A token server that never answers holds back only its own endpoint.
    mock("/_script", {"rules": [{"path": "/hung-token", "responses": [{"action": "hang"}]}]})
    psql(f"SET plantsync.source_system = 'hub'; "
         f"INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http, auth_type, token_url) "
         f"VALUES ('hung', 'qms', 'http://127.0.0.1:{PORT}/hung', true, 'oauth2_client_credentials', 'http://127.0.0.1:{PORT}/hung-token')")
    check("the token of an endpoint is fetched in the background",
          wait_for("token fetch", lambda: any(r["path"] == "/hung-token" for r in mock("/_requests")), 10))
    start = time.time()
    psql("SET plantsync.source_system = 'erp'; INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date) "
         "SELECT 'P1', 'O-FAST', id, 1, 'KG', 'released', '2027-01-01' FROM plantsync.material")
    arrived = wait_for("O-FAST", lambda: any(r["path"] == "/erp/O-FAST" for r in mock("/_requests")), 15)
    took = time.time() - start
    check("while it hangs, other endpoints' deliveries go out at once (not after its 10 s token timeout)",
          arrived and took < 3, f"{took:.1f} s")
    psql("SET plantsync.source_system = 'hub'; UPDATE plantsync.endpoint SET enabled = false WHERE endpoint_id = 'hung'")

    # A token asked for with credentials replaced meanwhile is not used.
    mock("/_script", {"rules": [
        {"path": "/slow-token", "responses": [{"delay_ms": 2000, "body": {"access_token": "tok-old", "expires_in": 3600}},
                                              {"body": {"access_token": "tok-new", "expires_in": 3600}}]}]})
    # one transaction: a worker must not see the endpoint before its credentials
    psql(f"BEGIN; SET LOCAL plantsync.source_system = 'hub'; "
         f"INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http, auth_type, token_url) "
         f"VALUES ('rotating', 'qms', 'http://127.0.0.1:{PORT}/rot', true, 'oauth2_client_credentials', 'http://127.0.0.1:{PORT}/slow-token'); "
         f"INSERT INTO plantsync.endpoint_secret VALUES ('rotating', 'client_id', 'c1'), ('rotating', 'client_secret', 's1'); "
         f"INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('rot-lots', 'lot.planned', 'rotating'); COMMIT")
    wait_for("first token request", lambda: any(r["path"] == "/slow-token" for r in mock("/_requests")), 10)
    psql("SET plantsync.source_system = 'hub'; UPDATE plantsync.endpoint_secret SET value = 's2' "
         "WHERE endpoint_id = 'rotating' AND name = 'client_secret'")
    psql("SET plantsync.source_system = 'mes'; INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition) "
         "SELECT 'P1', id, 'L-ROT', 'planned' FROM plantsync.material")
    wait_for("rotating settled", lambda: settled("rotating"), 15)
    token_auths = [r["headers"].get("authorization") for r in mock("/_requests") if r["path"] == "/slow-token"]
    rot_auths = [r["headers"].get("authorization") for r in mock("/_requests") if r["path"] == "/rot"]
    check("a token fetched with replaced credentials is dropped and one is fetched with the new ones",
          token_auths == ["Basic " + base64.b64encode(b"c1:s1").decode(), "Basic " + base64.b64encode(b"c1:s2").decode()]
          and rot_auths == ["Bearer tok-new"], f"{token_auths}; {rot_auths}")

    # Secrets never appear in records.
    leaked = psql(f"""SELECT (SELECT count(*) FROM plantsync.delivery_attempt WHERE concat(error, response_excerpt) LIKE '%{API_SECRET}%')
                           + (SELECT count(*) FROM plantsync.delivery WHERE concat(last_error, body::text) LIKE '%{API_SECRET}%')
                           + (SELECT count(*) FROM plantsync.event WHERE data::text LIKE '%{API_SECRET}%')""")
    log = open(os.environ["PLANTSYNC_SERVER_LOG"], errors="replace").read()
    check("the API secret appears in no attempt, delivery, event or server log line",
          leaked == "0" and API_SECRET not in log and SECRET not in log)

    # A terminated worker comes back.
    pid = psql("SELECT pid FROM plantsync.worker_status")
    psql(f"SELECT pg_terminate_backend({pid})")
    check("a worker terminated with pg_terminate_backend is back within 5 s",
          wait_for("new worker", lambda: psql("SELECT pid FROM plantsync.worker_status") not in ("", pid), 5))
    psql("SET plantsync.source_system = 'erp'; INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date) "
         "SELECT 'P1', 'O-AFTER', id, 1, 'KG', 'released', '2027-01-01' FROM plantsync.material")
    check("and it delivers", wait_for("O-AFTER", lambda: any(r["path"] == "/erp/O-AFTER" for r in mock("/_requests")), 10))


if __name__ == "__main__":
    T.run("delivery outcomes", run)
