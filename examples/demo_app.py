#!/usr/bin/env python3
"""A bundled "legacy" HTTP/1.1 app that knows nothing about tracing.

It has no tracing code at all; put sidetrace in front of it and every request becomes part of a
trace. Each request is logged with the `traceparent` header it received, which shows the context
that sidetrace injected on the way in.

    python3 examples/demo_app.py 8080

Endpoints: GET / · GET /orders/<id> · POST /orders (echoes the JSON body) · GET /health · GET /slow
Standard library only; threaded; HTTP/1.1 keep-alive with Content-Length on every response.
"""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle + delayed ACK would add
    # ~40 ms to every second request on a kept-alive connection.
    disable_nagle_algorithm = True
    server_version = "legacy-demo/1.0"
    sys_version = ""

    def _send(self, status, body, content_type="text/plain; charset=utf-8"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, status, obj):
        self._send(status, json.dumps(obj) + "\n", "application/json")

    def _read_body(self):
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        n = int(length)
        if n < 0 or n > MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(n)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(200, "hello from the legacy demo app\n")
        elif path == "/health":
            self._send(200, "ok\n")
        elif path == "/slow":
            time.sleep(0.2)
            self._send(200, "slow response after 200 ms\n")
        elif path.startswith("/orders/") and len(path) > len("/orders/"):
            order_id = path[len("/orders/"):]
            self._json(200, {"id": order_id, "item": "coffee beans", "quantity": 2, "status": "shipped"})
        else:
            self._json(404, {"error": "not found", "path": path})

    do_HEAD = do_GET

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._json(400, {"error": "bad Content-Length"})
            return
        if path != "/orders":
            self._json(404, {"error": "not found", "path": path})
            return
        try:
            order = json.loads(body or b"{}")
        except ValueError:
            self._json(400, {"error": "body is not JSON"})
            return
        self._json(201, {"created": True, "order": order})

    def log_message(self, fmt, *args):
        pass  # replaced by log_request below

    def log_request(self, code="-", size="-"):
        tp = self.headers.get("traceparent", "-") if self.headers else "-"
        sys.stderr.write(
            "[demo-app] %s %s -> %s  traceparent=%s\n"
            % (self.command, self.path, code if isinstance(code, int) else getattr(code, "value", code), tp)
        )
        sys.stderr.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    server = Server((host, port), Handler)
    sys.stderr.write("[demo-app] listening on http://%s:%d\n" % (host, port))
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
