"""What the end-to-end scripts against the mock server share: checks that
count, psql, the mock server's control API, waiting, and running a test with
a mock server up and its database dropped afterwards."""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

TOP = os.environ["PLANTSYNC_TOP"]


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d):
    """A test CA in d (ca.crt), a server certificate for localhost signed by
    it (server.crt, server.key) and a client certificate (client.crt,
    client.key), all readable by the database server's OS user."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=plantsync test CA",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    for name, cn in (("server", "localhost"), ("client", "plantsync")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write("subjectAltName=DNS:localhost\n" if name == "server" else "extendedKeyUsage=clientAuth\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext", cwd=d)
    os.chmod(d, 0o755)
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)


class E2E:
    def __init__(self, db):
        self.db = db
        self.passed = 0
        self.failed = 0
        self.port = None

    def check(self, desc, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"ok - {desc}", flush=True)
        else:
            self.failed += 1
            print(f"not ok - {desc}" + (f": {detail}" if detail else ""), flush=True)
        return ok

    def psql(self, sql, db=None, check_errors=True):
        out = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db or self.db],
                             input=sql, capture_output=True, text=True)
        if out.returncode != 0:
            if check_errors:
                raise RuntimeError(f"psql failed: {out.stderr}\n{sql}")
            return None
        return out.stdout.strip()

    def mock(self, path, data=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                     data=json.dumps(data).encode() if data is not None else None,
                                     method="POST" if data is not None else "GET")
        with urllib.request.urlopen(req, timeout=60) as r:
            body = r.read()
            return json.loads(body) if body else None

    def wait_for(self, desc, cond, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if cond():
                return True
            time.sleep(0.2)
        print(f"# timed out waiting for {desc}", flush=True)
        return False

    def run(self, name, test):
        """Runs test(self) with a mock server up and a fresh database with
        deliveries enabled; prints the summary line and exits."""
        portfile = tempfile.mktemp()
        server = subprocess.Popen([sys.executable, os.path.join(TOP, "test/mock/mock_server.py"), portfile])
        try:
            for _ in range(50):
                if os.path.exists(portfile) and open(portfile).read():
                    break
                time.sleep(0.1)
            self.port = int(open(portfile).read())
            self.psql(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)", "postgres")
            self.psql(f"CREATE DATABASE {self.db}", "postgres")
            self.psql(f"ALTER DATABASE {self.db} SET plantsync.delivery_enabled = on", "postgres")
            test(self)
        finally:
            server.kill()
            self.psql(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)", "postgres", check_errors=False)
        print(f"{name}: {self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)
