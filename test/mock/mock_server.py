#!/usr/bin/env python3
"""A scriptable mock ERP/QMS HTTP server for plantsync's end-to-end tests.

Listens on 127.0.0.1 only. Every request to any path other than /_* is
recorded (method, path, headers, body, time) and answered by the script:

  POST /_script  {"rules": [{"path": "/erp", "responses": [R, R, ...]}],
                  "record_bodies": true}
      R = {"status": 200, "headers": {...}, "body": "..." or {...} (or
           "body_hex": "..." for bytes that are not UTF-8),
           "delay_ms": 0, "action": "respond" | "reset" | "hang" | "stream"}
      ("stream": a status line and a body that never ends, until the
      client hangs up or 120 s have passed)
      Responses of a rule are used in turn; the last one repeats.
  GET  /_requests  the recorded requests, as JSON
  GET  /_count     how many requests were recorded
  GET  /_streamed  the endless bodies: path, bytes sent, when the client left
  POST /_reset     forget requests and script
Without a matching rule the answer is 200 {"data": {"name": "DOC-<n>"}}.

Usage: mock_server.py PORT_FILE [CERT KEY [CLIENT_CA]]
  writes the port it bound to into PORT_FILE; with CERT and KEY it speaks
  TLS, and with CLIENT_CA it requires a client certificate signed by it.
"""
import json
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
REQUESTS = []
RULES = []
COUNTERS = {}
STREAMED = []
RECORD_BODIES = True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _control(self, body):
        global RULES, RECORD_BODIES
        if self.path == "/_count":
            with LOCK:
                data = json.dumps({"count": len(REQUESTS)}).encode()
            self._send(200, data, {"Content-Type": "application/json"})
        elif self.path == "/_requests":
            with LOCK:
                data = json.dumps(REQUESTS).encode()
            self._send(200, data, {"Content-Type": "application/json"})
        elif self.path == "/_streamed":
            with LOCK:
                data = json.dumps(STREAMED).encode()
            self._send(200, data, {"Content-Type": "application/json"})
        elif self.path == "/_reset":
            with LOCK:
                REQUESTS.clear()
                RULES = []
                COUNTERS.clear()
                STREAMED.clear()
            self._send(204)
        elif self.path == "/_script":
            with LOCK:
                script = json.loads(body or b"{}")
                RULES = script.get("rules", [])
                RECORD_BODIES = script.get("record_bodies", True)
                COUNTERS.clear()
            self._send(204)
        else:
            self._send(404)

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/_"):
            return self._control(body)
        with LOCK:
            n = len(REQUESTS) + 1
            if RECORD_BODIES:
                REQUESTS.append({"n": n, "method": self.command, "path": self.path,
                                 "headers": {k.lower(): v for k, v in self.headers.items()},
                                 "content_types": self.headers.get_all("Content-Type") or [],
                                 "body": body.decode("utf-8", "replace"), "time": time.time()})
            else:
                REQUESTS.append({"key": self.headers.get("Idempotency-Key"), "path": self.path})
            response = None
            for i, rule in enumerate(RULES):
                if self.path.startswith(rule.get("path", "/")):
                    k = COUNTERS.get(i, 0)
                    COUNTERS[i] = k + 1
                    rs = rule["responses"]
                    response = rs[min(k, len(rs) - 1)]
                    break
        if response is None:
            response = {"status": 200, "body": {"data": {"name": "DOC-%d" % n}}}
        if response.get("delay_ms"):
            time.sleep(response["delay_ms"] / 1000.0)
        action = response.get("action", "respond")
        if action == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.close()
            self.close_connection = True
            return
        if action == "hang":
            time.sleep(3600)
            return
        if action == "stream":
            # a body without end (no length, the connection closes it): how
            # much the client took before it hung up is counted in STREAMED
            self.send_response(response.get("status", 200))
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            chunk = b"x" * 16384
            sent = 0
            deadline = time.time() + 120
            try:
                while time.time() < deadline:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            with LOCK:
                STREAMED.append({"path": self.path, "bytes": sent, "ended": time.time()})
            return
        payload = response.get("body", "")
        if not isinstance(payload, str):
            payload = json.dumps(payload)
        payload = bytes.fromhex(response["body_hex"]) if "body_hex" in response else payload.encode()
        headers = {"Content-Type": "application/json"}
        headers.update(response.get("headers", {}))
        self._send(response.get("status", 200), payload, headers)

    do_POST = do_PUT = do_PATCH = do_GET = _handle


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver listens with a backlog of 5: a worker's burst of new
    # connections overflowed it and the kernel dropped SYNs, which the client
    # resends only after a second, so answers looked like timeouts
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        # a client that gave up (timeout tests) is expected, not an error
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def main():
    server = Server(("127.0.0.1", 0), Handler)
    if len(sys.argv) >= 4:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        if len(sys.argv) >= 5:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(sys.argv[4])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    with open(sys.argv[1], "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
