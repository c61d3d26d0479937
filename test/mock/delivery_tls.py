#!/usr/bin/env python3
"""End-to-end test of TLS and mutual TLS: a test CA, a server certificate for
localhost and a client certificate are made with openssl; the mock server
speaks TLS (and then requires the client certificate). Verification against
the endpoint's CA file succeeds, against the system CAs it fails; with mutual
TLS the request goes through with the client certificate and fails without.

Run by test/e2e/delivery_tls.sh with the cluster in PG* variables.
"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_support import E2E, TOP, make_pki  # noqa: E402

T = E2E("e2e_tls")
check, psql = T.check, T.psql


def start_server(d, require_client):
    portfile = tempfile.mktemp()
    args = [sys.executable, os.path.join(TOP, "test/mock/mock_server.py"), portfile,
            os.path.join(d, "server.crt"), os.path.join(d, "server.key")]
    if require_client:
        args.append(os.path.join(d, "ca.crt"))
    proc = subprocess.Popen(args)
    for _ in range(50):
        if os.path.exists(portfile) and open(portfile).read():
            break
        time.sleep(0.1)
    return proc, int(open(portfile).read())


def outcome(endpoint):
    T.wait_for(endpoint, lambda: psql(f"SELECT count(*) FROM plantsync.delivery WHERE endpoint_id = '{endpoint}' "
                                      "AND status IN ('pending', 'retrying', 'in_flight')") == "0", 20)
    return psql(f"SELECT status || '|' || coalesce(last_error, '') FROM plantsync.delivery WHERE endpoint_id = '{endpoint}'")


def run(t):
    d = tempfile.mkdtemp(prefix="plantsync-tls-")
    make_pki(d)
    tls, tls_port = start_server(d, False)
    mtls, mtls_port = start_server(d, True)
    try:
        psql(f"""
CREATE EXTENSION plantsync;
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('P1', 'Plant');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, ca_file, client_cert_file, client_key_file, retry_schedule) VALUES
    ('tls-ca', 'erp', 'https://localhost:{tls_port}/erp', '{d}/ca.crt', NULL, NULL, '{{0}}'),
    ('tls-system', 'erp', 'https://localhost:{tls_port}/erp', NULL, NULL, NULL, '{{0}}'),
    ('mtls-cert', 'qms', 'https://localhost:{mtls_port}/qms', '{d}/ca.crt', '{d}/client.crt', '{d}/client.key', '{{0}}'),
    ('mtls-none', 'qms', 'https://localhost:{mtls_port}/qms', '{d}/ca.crt', NULL, NULL, '{{0}}');
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id)
SELECT 'r-' || endpoint_id, 'production_order.*', endpoint_id FROM plantsync.endpoint;
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) VALUES ('P1', 'M', 'M', 'EA');
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
SELECT 'P1', 'O-TLS', id, 1, 'EA', 'released', '2027-01-01' FROM plantsync.material;
""")
        got = outcome("tls-ca")
        check("https verified against the endpoint's CA file: delivered", got.startswith("delivered"), got)
        got = outcome("tls-system")
        check("https whose certificate the system CAs do not know: refused, nothing delivered",
              got.startswith("dead") and "SSL" in got, got)
        got = outcome("mtls-cert")
        check("mutual TLS with the endpoint's client certificate: delivered", got.startswith("delivered"), got)
        got = outcome("mtls-none")
        check("mutual TLS without a client certificate: refused by the server", got.startswith("dead"), got)
    finally:
        tls.kill()
        mtls.kill()
        subprocess.run(["rm", "-rf", d])


if __name__ == "__main__":
    T.run("delivery TLS test", run)
