#!/usr/bin/env python3
"""Legacy server models for the egress `process` rule tests: no tracing code, no header copying.

Usage: process_models.py MODEL DOWNSTREAM_HOST:PORT

MODEL is how the server works through its requests, as common legacy servers do:
  single    one process, one thread: one request at a time (HTTP/1.0, a connection each)
  prefork   the listening socket is bound, then 4 worker processes are forked, each accepting and
            serving one connection at a time (gunicorn sync, PHP-FPM, Apache prefork)
  threaded  a thread per connection in one process (HTTP/1.1 keep-alive)
Each request GET /r/NAME waits 0-10 ms, calls http://DOWNSTREAM/from/NAME with urllib (through
the proxy the standard http_proxy variable names), waits 0-10 ms and answers 200 with
"STATUS BODY" of that call. Prints "PORT n" once listening on 127.0.0.1.
"""

import http.server
import os
import random
import socketserver
import sys
import time
import urllib.error
import urllib.request

MODEL = sys.argv[1]
DOWNSTREAM = sys.argv[2]
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler())


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1" if MODEL == "threaded" else "HTTP/1.0"

    def do_GET(self):
        name = self.path.rsplit("/", 1)[-1]
        time.sleep(random.uniform(0, 0.01))
        try:
            with OPENER.open("http://%s/from/%s" % (DOWNSTREAM, name), timeout=10) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        except Exception as e:  # the test reads what went wrong in the answer
            status, body = 599, str(e).encode()
        time.sleep(random.uniform(0, 0.01))
        out = b"%d " % status + body
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


class Single(http.server.HTTPServer):
    request_queue_size = 128  # the proxy opens a connection per concurrent request


class Threaded(http.server.ThreadingHTTPServer):
    request_queue_size = 128


def main():
    server = (Threaded if MODEL == "threaded" else Single)(("127.0.0.1", 0), Handler)
    print("PORT %d" % server.server_address[1], flush=True)
    if MODEL != "prefork":
        server.serve_forever()
        return
    children = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            random.seed()
            while True:  # accept, serve that one connection, accept again
                server.handle_request()
        children.append(pid)
    try:
        os.wait()
    finally:
        for pid in children:
            try:
                os.kill(pid, 9)
            except OSError:
                pass


if __name__ == "__main__":
    socketserver.TCPServer.allow_reuse_address = True
    main()
