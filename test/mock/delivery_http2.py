#!/usr/bin/env python3
"""End-to-end test of the connections a worker keeps: nginx (Debian's) over
TLS with the test CA, one server offering HTTP/2 by ALPN and one HTTP/1.1
only, each logging the protocol, the connection and the Idempotency-Key of
every request. A burst of independent deliveries (one ordering key each,
many in flight) must reach the HTTP/2 server as HTTP/2 streams multiplexed
over a handful of connections, and the HTTP/1.1 server over kept-alive
connections reused for many requests, never more connections than the
endpoint's max_in_flight; every request carries its delivery's id.

Run by test/e2e/delivery_http2.sh with the cluster in PG* variables.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_support import E2E, make_pki  # noqa: E402

T = E2E("e2e_http2")
check, psql = T.check, T.psql

NGINX = "/usr/sbin/nginx"
BURST = 300
MAX_IN_FLIGHT = 16


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_nginx(d, h2_port, h1_port):
    os.makedirs(os.path.join(d, "tmp"), mode=0o777, exist_ok=True)
    os.chmod(os.path.join(d, "tmp"), 0o777)
    servers = ""
    for port, h2 in ((h2_port, " http2"), (h1_port, "")):
        servers += f"""
    server {{
        listen 127.0.0.1:{port} ssl{h2};
        ssl_certificate {d}/server.crt;
        ssl_certificate_key {d}/server.key;
        location / {{ return 200 '{{"data": {{"name": "DOC"}}}}'; }}
    }}"""
    temp = " ".join(f"{k}_temp_path {d}/tmp/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(f"""
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format probe '$server_port $server_protocol $connection $connection_requests "$http_idempotency_key"';
    access_log {d}/access.log probe;
    keepalive_requests 100000;
    {temp}
{servers}
}}
""")
    subprocess.run([NGINX, "-p", d, "-e", f"{d}/error.log", "-c", f"{d}/nginx.conf"], check=True)


def stop_nginx(d):
    try:
        with open(os.path.join(d, "nginx.pid")) as f:
            os.kill(int(f.read().strip()), 15)
        time.sleep(0.5)
    except (OSError, ValueError):
        pass


def requests_of(d, port):
    out = []
    with open(os.path.join(d, "access.log")) as f:
        for line in f:
            p, proto, conn, conn_requests, key = line.split()
            if int(p) == port:
                out.append((proto, int(conn), int(conn_requests), key.strip('"')))
    return out


def delivered(endpoint):
    return psql(f"SELECT count(*) FROM plantsync.delivery WHERE endpoint_id = '{endpoint}' AND status = 'delivered'")


def run(t):
    d = tempfile.mkdtemp(prefix="plantsync-http2-")
    make_pki(d)
    h2_port, h1_port = free_port(), free_port()
    start_nginx(d, h2_port, h1_port)
    try:
        psql(f"""
CREATE EXTENSION plantsync;
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('P1', 'Plant');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, ca_file, max_in_flight) VALUES
    ('h2', 'erp', 'https://localhost:{h2_port}/erp', '{d}/ca.crt', {MAX_IN_FLIGHT}),
    ('h1', 'qms', 'https://localhost:{h1_port}/qms', '{d}/ca.crt', {MAX_IN_FLIGHT});
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id)
SELECT 'r-' || endpoint_id, 'production_order.*', endpoint_id FROM plantsync.endpoint;
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) VALUES ('P1', 'M', 'M', 'EA');
-- one order each: independent ordering keys, all due at once
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
SELECT 'P1', 'O-' || g, m.id, 1, 'EA', 'released', '2027-01-01' FROM plantsync.material m, generate_series(1, {BURST}) g;
""")
        n = int(psql("SELECT count(*) FROM plantsync.delivery WHERE endpoint_id = 'h2'"))
        check(f"the burst made {BURST} deliveries for each endpoint", n == BURST, str(n))
        for ep in ("h2", "h1"):
            T.wait_for(f"{ep} delivered", lambda: delivered(ep) == str(n), 60)
            got = delivered(ep)
            check(f"{ep}: every delivery delivered", got == str(n), f"{got} of {n}")
        # nginx writes its log line once the response is sent
        time.sleep(0.5)

        ids = set(psql("SELECT string_agg(id::text, ' ') FROM plantsync.delivery WHERE endpoint_id = 'h2'").split())
        got = requests_of(d, h2_port)
        protos = {r[0] for r in got}
        conns = {r[1] for r in got}
        check("HTTP/2 offered by ALPN: every request came as an HTTP/2 stream", protos == {"HTTP/2.0"}, str(protos))
        check(f"HTTP/2: {len(got)} requests multiplexed over at most 2 connections", len(got) == n and len(conns) <= 2,
              f"{len(got)} requests over {len(conns)} connections")
        check("HTTP/2: each delivery sent once, its id as Idempotency-Key", sorted(r[3] for r in got) == sorted(ids),
              f"{len(got)} keys, {len({r[3] for r in got} & ids)} of them delivery ids")

        ids = set(psql("SELECT string_agg(id::text, ' ') FROM plantsync.delivery WHERE endpoint_id = 'h1'").split())
        got = requests_of(d, h1_port)
        protos = {r[0] for r in got}
        conns = {r[1] for r in got}
        check("HTTP/1.1 only: every request came as HTTP/1.1", protos == {"HTTP/1.1"}, str(protos))
        check(f"HTTP/1.1: connections kept alive and reused, never more than max_in_flight ({MAX_IN_FLIGHT})",
              len(got) == n and len(conns) <= MAX_IN_FLIGHT and max(r[2] for r in got) >= n // MAX_IN_FLIGHT,
              f"{len(got)} requests over {len(conns)} connections, at most {max((r[2] for r in got), default=0)} on one")
        check("HTTP/1.1: each delivery sent once, its id as Idempotency-Key", sorted(r[3] for r in got) == sorted(ids),
              f"{len(got)} keys, {len({r[3] for r in got} & ids)} of them delivery ids")
        print(f"# HTTP/2: {len({r[1] for r in requests_of(d, h2_port)})} connection(s); "
              f"HTTP/1.1: {len(conns)} connection(s) for {len(got)} requests", flush=True)
    finally:
        stop_nginx(d)
        subprocess.run(["rm", "-rf", d])


if __name__ == "__main__":
    T.run("delivery HTTP/2 test", run)
