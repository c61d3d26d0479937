#!/usr/bin/env python3
"""End-to-end test of what a worker does with answers beyond the plain ones:

- 408 Request Timeout and 425 Too Early are retried;
- a response larger than the endpoint's max_response_bytes is cut there
  while it streams: a 2xx is delivered, with the cut said in last_error and
  the response handler not called (it would see half a document); a 5xx
  with a large body is still a 5xx, retried; a body without end does not
  hold the request until its timeout;
- a response handler that fails leaves its delivery delivered and sent
  once, with the handler's error on the delivery and its attempt, while the
  other outcomes settled with it stand and the worker keeps running;
- a response that is not valid UTF-8 keeps only its valid start (and says
  so); a character cut at max_response_bytes is dropped without fuss;
- a Retry-After beyond a day waits a day (a huge one made the delivery dead);
- a circuit probe answered with a 404 closes the circuit (the endpoint was
  never claimed from again);
- one batch larger than the worker's settle buffer (2,100 deliveries) is
  sent once and settled, the worker still the same process;
- a batch answered 503 holds back the later events of its aggregate: they
  are not sent in a batch of their own before it; and it goes again as it
  was, with the same Idempotency-Key and body;
- max_in_flight and the rate limit count requests, a batch as one;
- the worker's memory does not grow as it loads changed endpoints again.

Run by test/e2e/delivery_responses.sh with the cluster in PG* variables.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_support import E2E  # noqa: E402

T = E2E("e2e_responses")
check, psql, mock, wait_for = T.check, T.psql, T.mock, T.wait_for
CAP = 1000
ORDERS = ["O-408", "O-425", "O-BIG", "O-BIG503", "O-ENDLESS", "O-BAD", "O-GOOD", "O-LATIN", "O-CUTCHAR", "O-LATER"]
BULK = 2100


def settled(endpoint="resp"):
    # a retry a day away (O-LATER) is as settled as this test can wait for
    return psql(f"SELECT count(*) FROM plantsync.delivery WHERE endpoint_id = '{endpoint}' "
                "AND status IN ('pending', 'retrying', 'in_flight') "
                "AND NOT (status = 'retrying' AND next_attempt_at > now() + interval '1 hour')") == "0"


def delivery(order):
    row = psql(f"""SELECT d.status, d.attempts, coalesce(d.last_error, ''), d.id
                     FROM plantsync.delivery d JOIN plantsync.event e ON e.id = d.event_id
                    WHERE d.endpoint_id = 'resp' AND e.order_number = '{order}'""")
    status, attempts, error, did = row.split("|")
    return status, int(attempts), error, did


def attempts_of(did):
    rows = psql(f"""SELECT string_agg(format('%s|%s|%s|%s|%s', attempt, outcome, coalesce(status_code, 0), latency_ms,
                                            coalesce(length(response_excerpt), 0)), ';' ORDER BY attempt)
                      FROM plantsync.delivery_attempt WHERE delivery_id = '{did}'""")
    return [a.split("|") for a in rows.split(";")] if rows else []


def run(t):
    psql("CREATE EXTENSION plantsync")
    wait_for("worker", lambda: psql("SELECT count(*) FROM plantsync.worker_status") == "1", 15)
    pid = psql("SELECT pid FROM plantsync.worker_status")
    mock("/_script", {"rules": [
        {"path": "/resp/O-408", "responses": [{"status": 408}, {"status": 200}]},
        {"path": "/resp/O-425", "responses": [{"status": 425}, {"status": 200}]},
        {"path": "/resp/O-BIG503", "responses": [{"status": 503, "body": "y" * 300000}, {"status": 200}]},
        {"path": "/resp/O-BIG", "responses": [{"status": 200, "body": '{"data": {"name": "' + "z" * 300000 + '"}}'}]},
        {"path": "/resp/O-ENDLESS", "responses": [{"action": "stream"}]},
        {"path": "/resp/O-BAD", "responses": [{"status": 200, "body": "<html>maintenance page</html>"}]},
        # Latin-1, not UTF-8: {"data": {"name": "caf\xe9"}}
        {"path": "/resp/O-LATIN", "responses": [{"status": 200, "body_hex": b'{"data": {"name": "caf\xe9"}}'.hex()}]},
        # 999 bytes of ASCII, then two-byte characters: the cap cuts one in two
        {"path": "/resp/O-CUTCHAR", "responses": [{"status": 200, "body": "a" * 999 + "\u00e9" * 100}]},
        {"path": "/resp/O-LATER", "responses": [{"status": 503, "headers": {"Retry-After": "1e20"}}]},
        # the circuit opens after two 503s; its probe gets a 404
        {"path": "/probe/", "responses": [{"status": 503}, {"status": 503}, {"status": 404}, {"status": 200}]},
        {"path": "/border", "responses": [{"status": 503}, {"status": 200}]},
    ]})
    psql(f"""
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('P1', 'Plant');
CREATE TABLE public.erp_document (delivery_id uuid, document text);
CREATE FUNCTION public.keep_document(d uuid, code integer, response text) RETURNS void LANGUAGE sql
    AS $f$ INSERT INTO public.erp_document VALUES (d, response::jsonb->'data'->>'name') $f$;
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http, path_template, timeout_ms,
                                retry_schedule, max_response_bytes, response_handler)
VALUES ('resp', 'erp', 'http://127.0.0.1:{t.port}/resp', true, '/{{order}}', 20000, '{{0, 200 ms, 200 ms}}', {CAP},
        'public.keep_document');
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('resp-orders', 'production_order.released', 'resp');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http, path_template, max_in_flight,
                                retry_schedule, circuit_failure_threshold, circuit_probe_interval)
VALUES ('probe', 'erp', 'http://127.0.0.1:{t.port}/probe', true, '/{{order}}', 1, '{{0, 200 ms, 200 ms}}', 2, '1 s');
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('probe-orders', 'production_order.released', 'probe');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http)
VALUES ('bulk', 'erp', 'http://127.0.0.1:{t.port}/bulk', true);
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id, mode, batch_window_ms, batch_max_size)
VALUES ('bulk-drafts', 'production_order.draft', 'bulk', 'batched', 500, {BULK});
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http, retry_schedule)
VALUES ('border', 'erp', 'http://127.0.0.1:{t.port}/border', true, '{{1 s, 1 s}}');
INSERT INTO plantsync.route (route_id, event_type_pattern, filter, endpoint_id, mode, batch_window_ms, batch_max_size)
VALUES ('border-b', 'production_order.*', '$.order_number == "O-B"', 'border', 'batched', 200, 10);
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) VALUES ('P1', 'M', 'M', 'KG');
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
SELECT 'P1', o, id, 1, 'KG', 'released', '2027-01-01' FROM plantsync.material,
       unnest(ARRAY[{", ".join(f"'{o}'" for o in ORDERS)}]) o;
""")
    psql(f"""
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
SELECT 'P1', 'D-' || g, id, 1, 'KG', 'draft', '2027-01-01' FROM plantsync.material, generate_series(1, {BULK}) g;
""")
    started = time.time()
    check("every delivery settles", wait_for("resp settled", settled, 30))
    took = time.time() - started

    for order in ("O-408", "O-425"):
        got = delivery(order)
        check(f"{order[2:]}: retried, then delivered", got[:2] == ("delivered", 2), str(got[:3]))

    status, attempts, error, did = delivery("O-BIG")
    att = attempts_of(did)
    check("a 2xx response over max_response_bytes: delivered once, the cut said in last_error",
          (status, attempts) == ("delivered", 1) and f"max_response_bytes ({CAP})" in error, f"{status} {attempts} {error!r}")
    check(f"its attempt keeps at most {CAP} bytes of it", len(att) == 1 and 0 < int(att[0][4]) <= CAP, str(att))
    check("and the response handler was not called with half a document",
          psql(f"SELECT count(*) FROM public.erp_document WHERE delivery_id = '{did}'") == "0")

    status, attempts, error, did = delivery("O-BIG503")
    att = attempts_of(did)
    check("a 503 with a large body is a 503 (retried), not a network error",
          (status, attempts) == ("delivered", 2) and len(att) == 2 and att[0][1:3] == ["retrying", "503"], str(att))

    status, attempts, error, did = delivery("O-ENDLESS")
    att = attempts_of(did)
    check("a body without end: the worker stops reading at the cap, delivered at once (not at its 20 s timeout)",
          (status, attempts) == ("delivered", 1) and len(att) == 1 and int(att[0][3]) < 10000 and "max_response_bytes" in error,
          f"{status} {attempts} {att} {error!r}")
    streamed = [s for s in mock("/_streamed") if s["path"] == "/resp/O-ENDLESS"]
    check("and the server saw the client leave", len(streamed) == 1 and streamed[0]["bytes"] < 64 * 1024 * 1024,
          str(streamed))

    status, attempts, error, did = delivery("O-BAD")
    check("a response handler that fails: the delivery stays delivered after one attempt",
          (status, attempts) == ("delivered", 1), f"{status} {attempts}")
    check("with the handler's error in last_error",
          error.startswith("the response handler public.keep_document failed: invalid input syntax for type json"), repr(error))
    check("and in the attempt record",
          psql(f"SELECT error FROM plantsync.delivery_attempt WHERE delivery_id = '{did}'") == error)
    time.sleep(2)
    sent = sum(1 for r in mock("/_requests") if r["path"] == "/resp/O-BAD")
    check("it was sent once (a failing handler does not make the worker send it again)", sent == 1, f"{sent} requests")

    status, attempts, error, did = delivery("O-GOOD")
    doc = psql(f"SELECT document FROM public.erp_document WHERE delivery_id = '{did}'")
    check("the outcomes settled with it stand: the next delivery's handler kept its document",
          status == "delivered" and error == "" and doc.startswith("DOC-"), f"{status} {error!r} {doc!r}")
    status, attempts, error, did = delivery("O-LATIN")
    excerpt = psql(f"SELECT response_excerpt FROM plantsync.delivery_attempt WHERE delivery_id = '{did}'")
    check("a response that is not UTF-8: delivered, and last_error says only its valid start is kept",
          status == "delivered" and "not valid in the database's encoding after its first 22 bytes" in error,
          f"{status} {error!r}")
    check("its attempt keeps that start, and the handler was not called",
          excerpt == '{"data": {"name": "caf' and
          psql(f"SELECT count(*) FROM public.erp_document WHERE delivery_id = '{did}'") == "0", repr(excerpt))

    status, attempts, error, did = delivery("O-CUTCHAR")
    size = psql(f"SELECT octet_length(response_excerpt) FROM plantsync.delivery_attempt WHERE delivery_id = '{did}'")
    check("a character cut at max_response_bytes is dropped: the cap is said, not the encoding",
          status == "delivered" and "max_response_bytes" in error and "encoding" not in error, f"{status} {error!r}")
    check("and the attempt keeps the whole characters before it", size == str(CAP - 1), size)

    status, attempts, error, did = delivery("O-LATER")
    wait = psql(f"SELECT extract(epoch FROM next_attempt_at - now())::int FROM plantsync.delivery WHERE id = '{did}'")
    check("Retry-After: 1e20 waits a day, and the delivery is not dead",
          status == "retrying" and 86400 - 120 < int(wait) <= 86400, f"{status} {wait} s {error!r}")

    check("the probe endpoint's deliveries settle (a probe answered 404 does not leave it stuck)",
          wait_for("probe settled", lambda: settled("probe"), 20))
    dead = psql("SELECT string_agg(coalesce(last_error, ''), ', ') FROM plantsync.delivery WHERE endpoint_id = 'probe' AND status = 'dead'")
    check("the probe's own delivery is dead with its 404, the others delivered",
          dead == "HTTP 404" and psql("SELECT count(*) FROM plantsync.delivery WHERE endpoint_id = 'probe' "
                                      "AND status = 'delivered'") == str(len(ORDERS) - 1), repr(dead))
    check("and the circuit is closed", psql("SELECT circuit FROM plantsync.endpoint_state WHERE endpoint_id = 'probe'") == "closed")

    check(f"a batch of {BULK} deliveries settles", wait_for("bulk settled", lambda: settled("bulk"), 30))
    bulk = [r for r in mock("/_requests") if r["path"].startswith("/bulk")]
    check("all delivered, in one request sent once",
          psql("SELECT count(*) FROM plantsync.delivery WHERE endpoint_id = 'bulk' AND status = 'delivered'") == str(BULK)
          and len(bulk) == 1, f"{len(bulk)} requests")
    # O-B: drafted and released in one transaction (one batch, answered 503),
    # then started and held while that batch waits for its retry
    psql("SET plantsync.source_system = 'erp';"
         "BEGIN;"
         "INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date) "
         "SELECT 'P1', 'O-B', id, 1, 'KG', 'draft', '2027-01-01' FROM plantsync.material;"
         "UPDATE plantsync.production_order SET status = 'released' WHERE order_number = 'O-B';"
         "COMMIT;")
    wait_for("the first O-B batch", lambda: psql("SELECT count(*) FROM plantsync.delivery WHERE endpoint_id = 'border' "
                                                 "AND status = 'retrying'") == "2", 10)
    psql("SET plantsync.source_system = 'mes';"
         "UPDATE plantsync.production_order SET status = 'in_progress' WHERE order_number = 'O-B';"
         "UPDATE plantsync.production_order SET status = 'held' WHERE order_number = 'O-B';")
    check("the O-B batches settle", wait_for("border settled", lambda: settled("border"), 15))
    sent = [[e["aggregate_seq"] for e in json.loads(r["body"])] for r in mock("/_requests") if r["path"] == "/border"]
    after = [q for batch in sent[1:] for q in batch]
    check("after a batch answered 503, the aggregate's events arrive in sequence order, the later ones not first",
          len(sent) >= 2 and sent[0] == after[:2] and after == sorted(after) and len(after) == 4, str(sent))
    border = [(r["headers"].get("idempotency-key"), r["headers"].get("webhook-id"), r["body"])
              for r in mock("/_requests") if r["path"] == "/border"]
    check("the batch answered 503 goes again as it was: the same Idempotency-Key, webhook-id and body",
          len(border) >= 2 and border[0][0] and border[1] == border[0] and border[0][0] == border[0][1],
          str([(k, w, len(b)) for k, w, b in border]))

    # Endpoints are loaded again when they change, not after a VACUUM of the
    # delivery table (which invalidates its cache entries, and used to make
    # the worker load every endpoint again, leaving the old copies behind).
    def loads():
        with open(os.environ["PLANTSYNC_SERVER_LOG"], errors="replace") as f:
            return sum(1 for line in f if "enabled endpoint(s) loaded" in line)
    before = loads()
    psql("VACUUM ANALYZE plantsync.delivery")
    time.sleep(2.5)  # an idle worker looks again every second
    psql("SET plantsync.source_system = 'erp';"
         "UPDATE plantsync.production_order SET status = 'released' WHERE order_number = 'D-1'")
    wait_for("after vacuum", lambda: settled("probe"), 10)
    time.sleep(1)
    after_vacuum = loads()
    psql("SET plantsync.source_system = 'hub'; UPDATE plantsync.endpoint SET description = 'changed' WHERE endpoint_id = 'bulk'")
    changed = wait_for("reload", lambda: loads() > after_vacuum, 10)
    check("a VACUUM of the delivery table does not make the worker load its endpoints again; a change of one does",
          before > 0 and after_vacuum == before and changed, f"{before} loads, {after_vacuum} after VACUUM, {loads()} after the change")

    # Each load of the endpoints frees the previous one (its secrets
    # overwritten first): 300 loads leave the worker's memory where it was.
    def rss_anon_kb():
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))
    before_loads, before_rss = loads(), rss_anon_kb()
    psql("SET plantsync.source_system = 'hub';"
         "DO $$ BEGIN FOR i IN 1 .. 300 LOOP"
         "  UPDATE plantsync.endpoint SET headers = jsonb_build_object('X-Load', i::text, 'X-Pad', repeat('p', 2000))"
         "   WHERE endpoint_id IN ('resp', 'probe', 'bulk', 'border');"
         "  PERFORM plantsync.wake_workers(); COMMIT; PERFORM pg_sleep(0.01);"
         " END LOOP; END $$")
    wait_for("the last load", lambda: loads() >= before_loads + 100, 15)
    time.sleep(1)
    n_loads, grown = loads() - before_loads, rss_anon_kb() - before_rss
    check("300 endpoint changes: the worker's memory does not grow with its loads of them",
          n_loads >= 100 and grown < 1024, f"{n_loads} loads, RssAnon {before_rss} kB -> {before_rss + grown} kB")

    # max_in_flight and the rate limit count requests, and a batch is one:
    # two batched routes of a strictly serial endpoint, and a batch of 40
    # beside three real-time deliveries to an endpoint allowed 2 a second
    mock("/_script", {"rules": [{"path": "/lim/", "responses": [{"status": 200, "delay_ms": 300}]}]})
    psql(f"""
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http, max_in_flight)
VALUES ('serial', 'erp', 'http://127.0.0.1:{t.port}/lim/serial', true, 1);
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http, rate_limit_per_s)
VALUES ('ratelim', 'erp', 'http://127.0.0.1:{t.port}/lim/rate', true, 2);
INSERT INTO plantsync.route (route_id, event_type_pattern, filter, endpoint_id, mode, batch_window_ms, batch_max_size) VALUES
    ('serial-drafts', 'production_order.draft', '$.order_number starts with "S-A"', 'serial', 'batched', 100, 50),
    ('serial-released', 'production_order.released', '$.order_number starts with "S-B"', 'serial', 'batched', 100, 50),
    ('rate-drafts', 'production_order.draft', '$.order_number starts with "R-A"', 'ratelim', 'batched', 100, 50);
INSERT INTO plantsync.route (route_id, event_type_pattern, filter, endpoint_id)
VALUES ('rate-released', 'production_order.released', '$.order_number starts with "R-B"', 'ratelim');
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
SELECT 'P1', o, m.id, 1, 'KG', CASE WHEN o LIKE '%-A%' THEN 'draft' ELSE 'released' END, '2027-01-01'
  FROM plantsync.material m,
       (SELECT 'S-A' || g FROM generate_series(1, 5) g UNION ALL SELECT 'S-B' || g FROM generate_series(1, 5) g
        UNION ALL SELECT 'R-A' || g FROM generate_series(1, 40) g) AS o(o);
""")
    serial_done = wait_for("serial settled", lambda: settled("serial"), 15)
    batch_done = wait_for("the batch of 40", lambda: settled("ratelim"), 15)
    # the batch took one token of two: the next requests go at once (counted
    # as 40 deliveries, it left the endpoint 19 s in debt)
    psql("SET plantsync.source_system = 'erp';"
         "INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date) "
         "SELECT 'P1', 'R-B' || g, m.id, 1, 'KG', 'released', '2027-01-01' FROM plantsync.material m, generate_series(1, 3) g")
    started = time.time()
    rate_done = batch_done and wait_for("ratelim settled", lambda: settled("ratelim"), 30)
    rate_took = time.time() - started
    arrivals = sorted(r["time"] for r in mock("/_requests") if r["path"] == "/lim/serial")
    gaps = [round(b - a, 2) for a, b in zip(arrivals, arrivals[1:])]
    check("max_in_flight 1 with two batched routes: two requests, one after the other (a batch is a request)",
          serial_done and len(arrivals) == 2 and min(gaps) >= 0.29, f"{len(arrivals)} requests, gaps {gaps} s")
    rate = [len(json.loads(r["body"])) if r["body"].startswith("[") else 1 for r in mock("/_requests") if r["path"] == "/lim/rate"]
    check("a rate limit of 2 a second: a batch of 40 counts as one request, three real-time ones after it go within seconds",
          rate_done and sorted(rate) == [1, 1, 1, 40] and rate_took < 5, f"requests {rate}, settled after {rate_took:.1f} s")

    check("the worker kept running (same process)", psql("SELECT pid FROM plantsync.worker_status") == pid)
    print(f"# all settled in {took:.1f} s", flush=True)


if __name__ == "__main__":
    T.run("delivery responses test", run)
