#!/usr/bin/env python3
"""A legacy service for the egress tests: it knows nothing about tracing.

Usage: legacy_app.py DOWNSTREAM_HOST:PORT [--threaded]

Each request GET /MODE/NAME makes one call to http://DOWNSTREAM/from/NAME with urllib, which
reaches it through the proxy that the standard http_proxy environment variable names (sidetrace's
egress listener), and answers 200 with "STATUS BODY" of that call. MODE says what the app copies
from its inbound request onto the call, as a legacy app might or might not:
  plain  nothing                        rid    x-request-id
  tp     traceparent                    pair, ridpair: as plain / rid, with two requests in the
                                        app at once: each waits for the other before its call and
                                        again before it answers (--threaded only)
Single-threaded by default (one request at a time, as many legacy servers); --threaded serves
each request on its own thread. Prints "PORT n" once listening on 127.0.0.1.
"""

import http.server
import sys
import threading
import urllib.error
import urllib.request

DOWNSTREAM = sys.argv[1]
THREADED = "--threaded" in sys.argv[2:]
PAIR = threading.Barrier(2)
# ProxyHandler() with no argument takes the proxies from the environment (http_proxy).
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler())


class Handler(http.server.BaseHTTPRequestHandler):
    # Single-threaded: HTTP/1.0, one request per connection, so a second connection from the
    # proxy is never stuck behind an idle keep-alive one.
    protocol_version = "HTTP/1.1" if THREADED else "HTTP/1.0"

    def do_GET(self):
        parts = self.path.split("/", 2)
        mode, name = (parts[1], parts[2]) if len(parts) == 3 else ("plain", "none")
        headers = {}
        if mode in ("rid", "ridpair") and self.headers.get("x-request-id"):
            headers["x-request-id"] = self.headers["x-request-id"]
        if mode == "tp" and self.headers.get("traceparent"):
            headers["traceparent"] = self.headers["traceparent"]
        if mode in ("pair", "ridpair"):
            PAIR.wait(timeout=10)
        url = "http://%s/from/%s" % (DOWNSTREAM, name)
        try:
            with OPENER.open(urllib.request.Request(url, headers=headers), timeout=10) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        except Exception as e:  # the test reads what went wrong in the answer
            status, body = 599, str(e).encode()
        if mode in ("pair", "ridpair"):
            # Neither answers before both calls are done: both requests are in flight during
            # both calls, whichever call is faster.
            PAIR.wait(timeout=10)
        out = b"%d " % status + body
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def main():
    cls = http.server.ThreadingHTTPServer if THREADED else http.server.HTTPServer
    server = cls(("127.0.0.1", 0), Handler)
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
