#!/usr/bin/env python3
"""The upstream app of tests/image/run.sh, outside the image's root filesystem.

    upstream.py PORT_FILE LOG_FILE

Listens on 127.0.0.1 on a port the kernel picks and writes it to PORT_FILE once bound. GET /slow
answers after 1.5 s (a request in flight when sidetrace gets SIGTERM); any other GET answers at
once. Each request appends "PATH TRACEPARENT" to LOG_FILE as it arrives, so the test sees the
context sidetrace injected, and when /slow is in flight. Standard library only.
"""

import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        with open(self.server.log_file, "a") as log:
            log.write("%s %s\n" % (self.path, self.headers.get("traceparent", "-")))
        if self.path == "/slow":
            time.sleep(1.5)
        body = ("upstream saw %s\n" % self.path).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


def main():
    port_file, log_file = sys.argv[1], sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.log_file = log_file
    with open(port_file + ".tmp", "w") as f:
        f.write("%d\n" % server.server_address[1])
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
