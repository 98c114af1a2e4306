#!/usr/bin/env python3
"""Legacy services in the four common server models, with no tracing code and no header copying.

    legacy_models.py --model single|prefork|threaded|asyncio [--downstream HOST:PORT]
                     [--max-delay-ms MS] [--port PORT] [--name NAME]

Each request GET /req/ID waits a random delay (0..MAX_DELAY_MS), calls
http://DOWNSTREAM/req/ID with urllib, which goes through the proxy that the standard http_proxy
environment variable names (sidetrace's egress listener), waits another random delay, and answers
200 with "STATUS BODY" of its call (599 and the error when the call failed). Nothing from the
inbound request is copied onto the call: the call carries the same path, nothing else, so that
the only way to join the two is what the sidecar can infer. Without --downstream the app answers
after the first delay without calling anything (a leaf service). Any other path answers 404.

The server models, as legacy servers run them:
  single    http.server.HTTPServer: one request at a time, in one process
  prefork   bind and listen, then os.fork() 4 workers; each accepts and serves one connection
            at a time (PHP-FPM, gunicorn sync, Unicorn, Apache prefork)
  threaded  http.server.ThreadingHTTPServer: a thread per connection, in one process
  asyncio   an asyncio streams server (keep-alive); delays are awaited, the blocking call runs
            in the default thread pool (asyncio.to_thread), as async apps wrap a synchronous
            client
single and prefork speak HTTP/1.0 (a connection per request, as those servers mostly do, so an
idle keep-alive connection never holds a worker); threaded and asyncio keep connections alive.

Prints "PORT n" once listening on 127.0.0.1 (--port 0, the default, lets the kernel choose).
Standard library only.
"""

import argparse
import asyncio
import ctypes
import http.server
import os
import random
import signal
import sys
import time
import urllib.error
import urllib.request

ARGS = None
# ProxyHandler() with no argument takes the proxies from the environment (http_proxy).
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler())
PREFORK_WORKERS = 4
BACKLOG = 128  # as the servers these imitate listen (gunicorn 2048, PHP-FPM 511, nginx 511)


def delay():
    time.sleep(random.uniform(0, ARGS.max_delay_ms) / 1000.0)


def call_downstream(req_id):
    """The app's outbound call for request req_id: (status, body bytes)."""
    url = "http://%s/req/%s" % (ARGS.downstream, req_id)
    try:
        with OPENER.open(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception as e:  # the caller reads what went wrong in the answer
        return 599, str(e).encode()


def serve(path):
    """The blocking work for one request: (status, body bytes)."""
    if not path.startswith("/req/") or len(path) == len("/req/"):
        return 404, b"not found\n"
    req_id = path[len("/req/"):]
    delay()
    if not ARGS.downstream:
        return 200, ("%s %s\n" % (ARGS.name, req_id)).encode()
    status, body = call_downstream(req_id)
    delay()
    return 200, b"%d " % status + body


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    disable_nagle_algorithm = True

    def do_GET(self):
        status, body = serve(self.path)
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class KeepAliveHandler(Handler):
    protocol_version = "HTTP/1.1"


class Server(http.server.HTTPServer):
    request_queue_size = BACKLOG


class ThreadingServer(http.server.ThreadingHTTPServer):
    request_queue_size = BACKLOG


def die_with_parent():
    """A forked worker exits when the master does, however the master died (Linux prctl)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_single():
    server = Server(("127.0.0.1", ARGS.port), Handler)
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


def run_threaded():
    server = ThreadingServer(("127.0.0.1", ARGS.port), KeepAliveHandler)
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


def run_prefork():
    server = Server(("127.0.0.1", ARGS.port), Handler)  # bound and listening before the fork
    master = os.getpid()
    children = []
    for _ in range(PREFORK_WORKERS):
        pid = os.fork()
        if pid == 0:
            die_with_parent()
            if os.getppid() != master:  # the master died before prctl took effect
                os._exit(0)
            random.seed()  # each worker its own delays
            try:
                server.serve_forever()
            finally:
                os._exit(0)
        children.append(pid)

    def stop(*_):
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("PORT %d" % server.server_address[1], flush=True)
    while True:
        pid, _ = os.wait()  # a worker that dies is not replaced: the tests would see it
        print("worker %d exited" % pid, file=sys.stderr, flush=True)


async def serve_async(path):
    """serve() for the asyncio model: delays are awaited, only the blocking call is threaded."""
    if not path.startswith("/req/") or len(path) == len("/req/"):
        return 404, b"not found\n"
    req_id = path[len("/req/"):]
    await asyncio.sleep(random.uniform(0, ARGS.max_delay_ms) / 1000.0)
    if not ARGS.downstream:
        return 200, ("%s %s\n" % (ARGS.name, req_id)).encode()
    status, body = await asyncio.to_thread(call_downstream, req_id)
    await asyncio.sleep(random.uniform(0, ARGS.max_delay_ms) / 1000.0)
    return 200, b"%d " % status + body


async def handle_connection(reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            parts = line.decode("latin-1").split()
            headers = {}
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                name, _, value = h.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            if len(parts) != 3 or "content-length" in headers or "transfer-encoding" in headers:
                writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                break
            status, body = await serve_async(parts[1])
            close = parts[2] == "HTTP/1.0" or headers.get("connection", "").lower() == "close"
            writer.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n%s\r\n"
                % (status, b"OK" if status == 200 else b"Not Found", len(body),
                   b"connection: close\r\n" if close else b"")
                + body)
            await writer.drain()
            if close:
                break
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def run_asyncio_server():
    server = await asyncio.start_server(handle_connection, "127.0.0.1", ARGS.port,
                                        backlog=BACKLOG)
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def run_asyncio():
    asyncio.run(run_asyncio_server())


MODELS = {"single": run_single, "prefork": run_prefork, "threaded": run_threaded,
          "asyncio": run_asyncio}


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, choices=sorted(MODELS))
    p.add_argument("--downstream", default="", help="HOST:PORT the app calls; none: a leaf")
    p.add_argument("--max-delay-ms", type=float, default=10.0)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--name", default="legacy", help="what a leaf puts in its answers")
    ARGS = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    MODELS[ARGS.model]()


if __name__ == "__main__":
    main()
