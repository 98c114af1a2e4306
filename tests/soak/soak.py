#!/usr/bin/env python3
"""Soak run of one sidetrace: mixed traffic with faults for MINUTES, then a verdict.

Driven by tests/soak/run.sh (which installs and builds what this needs); see that script for the
knobs and README "Testing" for what passes. Everything runs on 127.0.0.1 from a temporary directory;
the report and plot go to --results.
"""
import argparse
import ctypes
import heapq
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402
from peers import ProtocolError, Reader, connect, read_response, request_bytes  # noqa: E402

MIB = 1 << 20
WEB_KINDS = {"h1_keepalive", "h1_pipelined", "h2_multiplexed"}  # routed to the flapping cluster
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no orphaned peer outlives the soak


def _peer_setup():
    """PR_SET_PDEATHSIG fires when the *thread* that started the child ends: only children of the
    main thread get it; the fault thread's restarts are ended by Procs.end_all."""
    return _die_with_parent if threading.current_thread() is threading.main_thread() else None


def log(msg):
    print("soak: %s" % msg, file=sys.stderr, flush=True)


# --- bookkeeping ----------------------------------------------------------------------------------


class Tally:
    """Per traffic kind: successes, and failures with their time window (classified at the end)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ok = {}
        self.failures = []  # (t0, t1, kind, why)
        self.malformed = {}  # case -> [as expected, other, last other outcome]

    def success(self, kind, n=1):
        with self.lock:
            self.ok[kind] = self.ok.get(kind, 0) + n

    def failure(self, kind, why, t0, t1=None, n=1):
        with self.lock:
            self.ok.setdefault(kind, 0)
            for _ in range(n):
                self.failures.append((t0, t1 if t1 is not None else t0, kind, why))

    def malformed_result(self, case, expected, outcome):
        with self.lock:
            row = self.malformed.setdefault(case, [0, 0, ""])
            if expected:
                row[0] += 1
            else:
                row[1] += 1
                row[2] = outcome


class Faults:
    """What was injected, when (time.time())."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = []  # (t, kind, detail)

    def add(self, kind, detail=""):
        with self.lock:
            self.events.append((time.time(), kind, detail))

    def times(self, kind):
        with self.lock:
            return [t for t, k, _ in self.events if k == kind]

    def count(self, kind):
        return len(self.times(kind))


# --- processes ------------------------------------------------------------------------------------


class Procs:
    """Every child process, so that any exit path ends them (by pid)."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.all = []

    def start(self, name, argv, stdout=None):
        err = open(os.path.join(self.tmp, name + ".err"), "ab")
        out = stdout if stdout is not None else err
        p = subprocess.Popen(argv, stdout=out, stderr=err, preexec_fn=_peer_setup())
        self.all.append(p)
        return p

    def end_all(self):
        for p in self.all:
            if p.poll() is None:
                p.kill()
                p.wait()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for %s" % what)


def port_open(port):
    try:
        connect(port, timeout=1).close()
        return True
    except OSError:
        return False


NGINX_CONF = """worker_processes 1;
master_process off;
daemon off;
pid {tmp}/nginx-{name}.pid;
error_log {tmp}/nginx-{name}.err warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-{name}-body;
    proxy_temp_path {tmp}/nginx-{name}-proxy;
    fastcgi_temp_path {tmp}/nginx-{name}-fastcgi;
    uwsgi_temp_path {tmp}/nginx-{name}-uwsgi;
    scgi_temp_path {tmp}/nginx-{name}-scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/www;
        location = /big {{ default_type application/octet-stream; }}
        location / {{ default_type text/plain; return 200 "ok {name}"; }}
    }}
}}
"""


class Nginx:
    def __init__(self, procs, name):
        self.procs, self.name, self.port = procs, name, free_port()
        self.conf = os.path.join(procs.tmp, "nginx-%s.conf" % name)
        with open(self.conf, "w") as f:
            f.write(NGINX_CONF.format(tmp=procs.tmp, name=name, port=self.port))
        self.proc = None

    def start(self):
        self.proc = self.procs.start(
            "nginx-" + self.name,
            [
                "nginx",
                "-c",
                self.conf,
                "-p",
                self.procs.tmp,
                "-e",
                os.path.join(self.procs.tmp, "nginx-%s.err" % self.name),
            ],
        )
        wait_for(lambda: port_open(self.port), 10, "nginx %s" % self.name)

    def kill(self):
        self.proc.kill()
        self.proc.wait()


class Sink:
    """otlp_sink --count-spans on a fixed port, stopped and started again; totals over its lives."""

    def __init__(self, procs, binary):
        self.procs, self.binary, self.port = procs, binary, free_port()
        self.proc = None
        self.spans = self.answered = self.requests = self.malformed = 0
        self.lives = 0

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "--count-spans", "127.0.0.1:%d" % self.port],
            stdout=subprocess.PIPE,
            stderr=open(os.path.join(self.procs.tmp, "otlp_sink.err"), "ab"),
            preexec_fn=_peer_setup(),
        )
        self.procs.all.append(self.proc)
        self.lives += 1
        wait_for(lambda: port_open(self.port), 10, "otlp_sink")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=20)
        m = re.search(rb"requests=(\d+) .*spans=(\d+) answered=(\d+) malformed=(\d+)", out)
        if not m:
            raise RuntimeError("otlp_sink printed no totals: %r" % out)
        self.requests += int(m.group(1))
        self.spans += int(m.group(2))
        self.answered += int(m.group(3))
        self.malformed += int(m.group(4))
        self.proc = None


SIDETRACE_CONF = """# soak config, variant {variant} (reloads alternate A and B)
admin: {{ address: "127.0.0.1:0" }}
workers: 2
log_level: info
listeners:
  - name: ingress
    address: "127.0.0.1:0"
    routes:
      - name: ping
        match: {{ path: /ping }}
        direct_response: {{ status: 200, body: "pong {variant}" }}
      - name: websocket
        match: {{ prefix: /ws }}
        cluster: py
        timeout: {long_timeout}s
      - name: upload
        match: {{ prefix: /upload }}
        cluster: py
        timeout: 300s
      - name: download
        match: {{ path: /big }}
        cluster: bulk
        timeout: 300s
      - name: grpc
        match: {{ prefix: /sidetrace.test.Echo/ }}
        cluster: grpc
        timeout: 10s
      - name: web
        match: {{ prefix: / }}
        cluster: web
        timeout: 10s
        retry_policy: {{ retry_on: [connect-failure, reset, gateway-error], num_retries: 2 }}
clusters:
  - name: web
    endpoints: [ "127.0.0.1:{nginx_a}", "127.0.0.1:{nginx_b}" ]
  - name: bulk
    endpoints: [ "127.0.0.1:{nginx_a}" ]
  - name: py
    endpoints: [ "127.0.0.1:{py}" ]
  - name: grpc
    protocol: http2
    endpoints: [ "127.0.0.1:{grpc}" ]
tracing:
  service_name: soak
  sampler: {{ type: always_on }}
  exporter: {{ protocol: grpc, endpoint: "http://127.0.0.1:{sink}", timeout: 5s }}
  batch: {{ max_queue_size: {queue}, max_export_batch_size: 512, schedule_delay: {delay}ms }}
egress: {{ address: "127.0.0.1:0", timeout: 10s }}
limits: {{ drain_timeout: 10s }}
"""


# --- metrics and samples --------------------------------------------------------------------------

METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def scrape(admin_port):
    """{name: value summed over labels} plus {name{labels}: value}."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin_port, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = METRIC_LINE.match(line)
        if not m or line.startswith("#"):
            continue
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        out[name] = out.get(name, 0.0) + value
        if labels:
            out[name + labels] = value
    return out


def proc_sample(pid):
    with open("/proc/%d/status" % pid) as f:
        rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    return {
        "rss_kib": rss,
        "fds": len(os.listdir("/proc/%d/fd" % pid)),
        "threads": len(os.listdir("/proc/%d/task" % pid)),
    }


def sample(st, t0):
    s = proc_sample(st.pid)
    m = scrape(st.admin_port)
    dropped = m.get("sidetrace_spans_dropped_total", 0)
    s.update(
        t=round(time.time() - t0, 1),
        started=int(m.get("sidetrace_spans_started_total", 0)),
        sampled=int(m.get("sidetrace_spans_sampled_total", 0)),
        exported=int(m.get("sidetrace_spans_exported_total", 0)),
        dropped=int(dropped),
        queue=int(m.get("sidetrace_export_queue_size", 0)),
        conns=int(m.get("sidetrace_downstream_connections_active", 0)),
        requests=int(m.get("sidetrace_downstream_requests_total", 0)),
    )
    s["backlog"] = s["sampled"] - s["exported"] - s["dropped"]
    return s


# --- traffic --------------------------------------------------------------------------------------


class Paced:
    """Runs body() every `period` seconds until stop is set (no catch-up burst after a slow one)."""

    def __init__(self, stop, period):
        self.stop, self.period = stop, period

    def __iter__(self):
        n = 0
        next_at = time.time()
        while not self.stop.is_set():
            yield n
            n += 1
            next_at = max(next_at + self.period, time.time())
            self.stop.wait(max(0.0, next_at - time.time()))


def keepalive_gets(ctx, kind, port, rate, request):
    """One kept-alive connection to `port`, request(n) at `rate`/s, each answered 200 "ok..."; a new
    connection only after the proxy closed it."""
    sock = reader = None
    for n in Paced(ctx.stop, 1.0 / rate):
        t0 = time.time()
        try:
            if sock is None:
                sock = connect(port)
                reader = Reader(sock)
            sock.sendall(request(n))
            status, headers, body = read_response(reader)
            if status == 200 and body.startswith(b"ok"):
                ctx.tally.success(kind)
            else:
                ctx.tally.failure(kind, "status %d %r" % (status, body[:60]), t0, time.time())
            if headers.get("connection", "").lower() == "close":
                sock.close()
                sock = None
        except (OSError, ProtocolError, ValueError) as e:
            ctx.tally.failure(kind, "%s: %s" % (type(e).__name__, e), t0, time.time())
            if sock:
                sock.close()
            sock = None
    if sock:
        sock.close()


def h1_keepalive(ctx, idx, rate):
    keepalive_gets(
        ctx, "h1_keepalive", ctx.port, rate, lambda n: request_bytes("GET", "/kv/%d/%d" % (idx, n))
    )


def h1_pipelined(ctx, depth, period):
    """`depth` GETs in one write on a kept-alive connection every `period` s, then the answers."""
    sock = reader = None
    for n in Paced(ctx.stop, period):
        t0 = time.time()
        got = 0
        try:
            if sock is None:
                sock = connect(ctx.port)
                reader = Reader(sock)
            sock.sendall(
                b"".join(request_bytes("GET", "/pipe/%d/%d" % (n, i)) for i in range(depth))
            )
            for _ in range(depth):
                status, _, body = read_response(reader)
                got += 1
                if status == 200 and body.startswith(b"ok"):
                    ctx.tally.success("h1_pipelined")
                else:
                    ctx.tally.failure("h1_pipelined", "status %d" % status, t0, time.time())
        except (OSError, ProtocolError, ValueError) as e:
            why = "%s: %s" % (type(e).__name__, e)
            ctx.tally.failure("h1_pipelined", why, t0, time.time(), n=depth - got)
            if sock:
                sock.close()
            sock = None
    if sock:
        sock.close()


H2LOAD_REQUESTS = re.compile(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded")
H2LOAD_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


def h2_multiplexed(ctx, period, requests):
    """h2load (h2c, prior knowledge): 2 connections x 8 concurrent streams, `requests` a run."""
    url = "http://127.0.0.1:%d/h2/x" % ctx.port
    for _ in Paced(ctx.stop, period):
        t0 = time.time()
        try:
            out = subprocess.run(
                ["h2load", "-c", "2", "-m", "8", "-n", str(requests), url],
                capture_output=True,
                text=True,
                timeout=60,
                preexec_fn=_die_with_parent,
            ).stdout
        except subprocess.TimeoutExpired:
            out = ""
        m, s = H2LOAD_REQUESTS.search(out), H2LOAD_STATUS.search(out)
        ok = int(s.group(1)) if m and s else 0
        ctx.tally.success("h2_multiplexed", ok)
        if ok < requests:
            tail = out.strip().splitlines()[-3:] if out else ["h2load timed out"]
            ctx.tally.failure(
                "h2_multiplexed", "h2load: %s" % " | ".join(tail), t0, time.time(), n=requests - ok
            )


def websocket_sessions(ctx, period):
    """A short WebSocket session every `period` s: upgrade, 5 echoes, close."""
    for n in Paced(ctx.stop, period):
        t0 = time.time()
        try:
            sock, reader = peers.websocket_connect(ctx.port, "/ws/short")
            for i in range(5):
                peers.ws_echo(sock, reader, b"short %d.%d" % (n, i))
            peers.ws_close(sock, reader)
            ctx.tally.success("ws_session")
        except (OSError, ProtocolError, ValueError) as e:
            ctx.tally.failure("ws_session", "%s: %s" % (type(e).__name__, e), t0, time.time())


def websocket_long_lived(ctx, period):
    """One WebSocket kept open for the whole run (across every reload), an echo every `period` s."""
    sock = reader = None
    for n in Paced(ctx.stop, period):
        t0 = time.time()
        try:
            if sock is None:
                sock, reader = peers.websocket_connect(ctx.port, "/ws/long")
                ctx.tally.success("ws_long_opened")
            peers.ws_echo(sock, reader, b"long %d" % n)
            ctx.tally.success("ws_long_message")
        except (OSError, ProtocolError, ValueError) as e:
            ctx.tally.failure("ws_long_message", "%s: %s" % (type(e).__name__, e), t0, time.time())
            if sock:
                sock.close()
            sock = None
    if sock:
        try:
            peers.ws_close(sock, reader)
        except (OSError, ProtocolError):
            ctx.tally.failure("ws_long_message", "close failed", time.time())


def large_download(ctx, size):
    sock = connect(ctx.port, timeout=60)
    try:
        sock.sendall(request_bytes("GET", "/big"))
        status, _, n = read_response(Reader(sock), keep_body=False)
        if status != 200 or n != size:
            return "status %d, %d of %d bytes" % (status, n, size)
        return ""
    finally:
        sock.close()


def large_upload(ctx, size):
    sock = connect(ctx.port, timeout=60)
    try:
        sock.sendall(request_bytes("POST", "/upload", [("Content-Length", str(size))]))
        chunk = memoryview(bytes(MIB))
        left = size
        while left > 0:
            k = min(left, MIB)
            sock.sendall(chunk[:k])
            left -= k
        status, _, body = read_response(Reader(sock))
        if status != 200 or body != b"received %d" % size:
            return "status %d %r" % (status, body[:60])
        return ""
    finally:
        sock.close()


def large_transfers(ctx, size, pause):
    """Downloads (from nginx) and uploads (to the Python upstream, which counts the bytes) of
    `size` bytes in turn, `pause` s apart."""
    for n in Paced(ctx.stop, 0):
        kind, fn = (
            ("large_download", large_download) if n % 2 == 0 else ("large_upload", large_upload)
        )
        t0 = time.time()
        try:
            why = fn(ctx, size)
        except (OSError, ProtocolError, ValueError) as e:
            why = "%s: %s" % (type(e).__name__, e)
        if why:
            ctx.tally.failure(kind, why, t0, time.time())
        else:
            ctx.tally.success(kind)
            with ctx.tally.lock:
                ctx.large_seconds.append(time.time() - t0)
        ctx.stop.wait(pause)


def malformed_cases():
    """(name, bytes, accepted outcomes): a status code, or "closed" (no response at all)."""
    h = b"Host: soak\r\n"
    return [
        ("bare_lf", b"GET / HTTP/1.1\nHost: soak\n\n", {400}),
        (
            "cl_and_te",
            b"POST / HTTP/1.1\r\n"
            + h
            + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            {400},
        ),
        (
            "duplicate_cl",
            b"POST / HTTP/1.1\r\n" + h + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            {400},
        ),
        ("no_host", b"GET / HTTP/1.1\r\n\r\n", {400}),
        ("two_hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
        ("obs_fold", b"GET / HTTP/1.1\r\n" + h + b"X-A: a\r\n b\r\n\r\n", {400}),
        ("bad_method", b"G(T / HTTP/1.1\r\n" + h + b"\r\n", {400}),
        (
            "bad_chunk_size",
            b"POST /upload HTTP/1.1\r\n" + h + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
            {400, "closed"},
        ),
        ("huge_header", b"GET / HTTP/1.1\r\n" + h + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n", {431}),
        (
            "many_headers",
            b"GET / HTTP/1.1\r\n" + h + b"".join(b"X-H%d: v\r\n" % i for i in range(120)) + b"\r\n",
            {431},
        ),
        ("connect", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", {405}),
        ("tls_on_plain", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40, {400}),
    ]


def malformed(ctx, period):
    """One malformed request every `period` s, rotating through malformed_cases()."""
    cases = malformed_cases()
    for n in Paced(ctx.stop, period):
        name, data, accepted = cases[n % len(cases)]
        outcome = "closed"
        sock = None
        try:
            sock = connect(ctx.port)
            try:
                sock.sendall(data)
            except OSError:
                pass  # the proxy may answer and close before reading it all
            outcome = read_response(Reader(sock))[0]
        except ProtocolError:
            outcome = "closed"
        except (OSError, ValueError) as e:
            outcome = "%s: %s" % (type(e).__name__, e)
        finally:
            if sock:
                sock.close()
        ctx.tally.malformed_result(name, outcome in accepted, str(outcome))

def egress_forward(ctx, rate):
    """The app's outbound calls: absolute-form GETs on one kept-alive connection to the egress
    listener, `rate`/s, to the steady upstream (never the flapping one)."""
    host = "127.0.0.1:%d" % ctx.dest_port

    def request(n):
        return ("GET http://%s/egress/%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (host, n, host)).encode()

    keepalive_gets(ctx, "egress_forward", ctx.egress_port, rate, request)


def egress_tunnels(ctx, period):
    """HTTPS_PROXY-style: a CONNECT tunnel every `period` s, three requests through it, closed."""
    host = "127.0.0.1:%d" % ctx.dest_port
    for n in Paced(ctx.stop, period):
        t0 = time.time()
        sock = None
        try:
            sock = connect(ctx.egress_port)
            reader = Reader(sock)
            sock.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (host, host)).encode())
            first, _ = reader.head()
            if not first.startswith("HTTP/1.1 200"):
                raise ProtocolError("CONNECT answered %r" % first)
            for i in range(3):
                sock.sendall(request_bytes("GET", "/tunnel/%d/%d" % (n, i)))
                status, _, body = read_response(reader)
                if status != 200 or not body.startswith(b"ok"):
                    raise ProtocolError("status %d through the tunnel" % status)
            ctx.tally.success("egress_tunnel")
        except (OSError, ProtocolError, ValueError) as e:
            ctx.tally.failure("egress_tunnel", "%s: %s" % (type(e).__name__, e), t0, time.time())
        finally:
            if sock:
                sock.close()


def grpc_load(ctx, binary, seconds, rate):
    """soak_grpc load: its per-failure lines as they come, its per-kind totals at the end."""
    p = subprocess.Popen(
        [binary, "load", "127.0.0.1:%d" % ctx.port, str(seconds), str(rate)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=_die_with_parent,
    )
    ctx.procs.all.append(p)
    for line in p.stdout:
        parts = line.split(" ", 4)
        if parts[0] == "fail" and len(parts) >= 4:
            t = int(parts[1]) / 1000.0
            ctx.tally.failure(parts[2], " ".join(parts[3:]).strip(), t, t)
        elif parts[0] == "calls":
            m = re.match(r"calls (\S+) ok=(\d+) failed=(\d+)", line)
            if m:
                ctx.tally.success(m.group(1), int(m.group(2)))
    p.wait()


# --- sidetrace and the fault schedule -------------------------------------------------------------


class Sidetrace:
    def __init__(self, procs, binary, conf_vars):
        self.procs, self.binary, self.vars = procs, binary, conf_vars
        self.conf = os.path.join(procs.tmp, "sidetrace.yaml")
        self.ports_file = os.path.join(procs.tmp, "ports")
        self.variant = "A"
        self.reloads_sent = 0
        self.write_config()
        self.proc = procs.start(
            "sidetrace", [binary, "--config", self.conf, "--ports-file", self.ports_file]
        )
        self.pid = self.proc.pid
        ports = wait_for(self._read_ports, 20, "sidetrace's --ports-file")
        self.port, self.egress_port, self.admin_port = ports

    def _read_ports(self):
        if self.proc.poll() is not None:
            raise RuntimeError("sidetrace exited with %s at start" % self.proc.returncode)
        try:
            text = open(self.ports_file).read()
        except OSError:
            return None
        found = [
            re.search(r"^listener \S+:(\d+) ingress$", text, re.M),
            re.search(r"^listener \S+:(\d+) egress$", text, re.M),
            re.search(r"^admin \S+:(\d+)$", text, re.M),
        ]
        return tuple(int(m.group(1)) for m in found) if all(found) else None

    def write_config(self):
        # B differs in a route's body and the batch delay, so every reload also replaces the
        # export pipeline (its thread and gRPC channel) and retires the old one.
        delay = 200 if self.variant == "A" else 300
        tmp = self.conf + ".tmp"
        with open(tmp, "w") as f:
            f.write(SIDETRACE_CONF.format(variant=self.variant, delay=delay, **self.vars))
        os.replace(tmp, self.conf)

    def reload(self):
        self.variant = "B" if self.variant == "A" else "A"
        self.write_config()
        self.proc.send_signal(signal.SIGHUP)
        self.reloads_sent += 1

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout):
        """SIGTERM, then (exit code, the exit line's span counters or None)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = "killed after %d s" % timeout
        counters = None
        with open(os.path.join(self.procs.tmp, "sidetrace.err"), errors="replace") as f:
            for line in f:
                if "span pipeline at exit" not in line:
                    continue
                msg = json.loads(line)["msg"]
                nums = [int(x) for x in re.findall(r"\d+", msg)]
                keys = [
                    "started",
                    "sampled",
                    "exported",
                    "dropped",
                    "queue_full",
                    "export_failed",
                    "too_large",
                    "rejected",
                ]
                counters = dict(zip(keys, nums))
        return rc, counters


class FaultSchedule(threading.Thread):
    """Reloads, endpoint flaps and collector outages at fixed offsets from the start."""

    def __init__(self, plan, st, nginx_b, sink, faults, duration):
        super().__init__(daemon=True)
        self.st, self.nginx_b, self.sink, self.faults = st, nginx_b, sink, faults
        self.stop = threading.Event()
        self.error = None
        self.t0 = time.time()
        self.heap = []
        self._every(plan["reload_every"], plan["reload_every"], duration, "reload")
        self._every(plan["flap_first"], plan["flap_every"], duration, "endpoint_down")
        self._every(
            plan["flap_first"] + plan["flap_down"], plan["flap_every"], duration, "endpoint_up"
        )
        self._every(plan["collector_first"], plan["collector_every"], duration, "collector_down")
        self._every(
            plan["collector_first"] + plan["collector_down"],
            plan["collector_every"],
            duration,
            "collector_up",
        )

    def _every(self, first, period, duration, action):
        t = first
        while t < duration - 1:
            heapq.heappush(self.heap, (t, action))
            t += period

    def run(self):
        try:
            while self.heap and not self.stop.is_set():
                at, action = heapq.heappop(self.heap)
                if self.stop.wait(max(0.0, self.t0 + at - time.time())):
                    return
                self.act(action)
        except Exception as e:  # a peer that cannot restart ends the soak with a clear reason
            self.error = "%s: %s" % (action, e)

    def act(self, action):
        if action == "reload":
            self.st.reload()
        elif action == "endpoint_down":
            self.nginx_b.kill()
        elif action == "endpoint_up":
            self.nginx_b.start()
        elif action == "collector_down":
            self.sink.stop()
        elif action == "collector_up":
            self.sink.start()
        self.faults.add(action)

    def finish(self):
        """Stops injecting and brings every peer back up."""
        self.stop.set()
        self.join()
        if self.nginx_b.proc.poll() is not None:
            self.nginx_b.start()
            self.faults.add("endpoint_up")
        if self.sink.proc is None:
            self.sink.start()
            self.faults.add("collector_up")


# --- verdict --------------------------------------------------------------------------------------

# resource: (absolute, relative to the second quarter's median). The two medians are half the run
# apart: a 10-minute run fails on RSS growing faster than ~0.8 MiB/min, an hour on ~0.13 MiB/min;
# fds and threads are counted with the connections and exports in flight at the sample's moment.
TOLERANCE = {
    "rss_kib": (4 * 1024, 0.10),
    "fds": (12, 0.15),
    "threads": (2, 0.0),
}


def trend(values, absolute, relative):
    """(median of the 2nd quarter, median of the last quarter, tolerance, ok) or None if too few."""
    n = len(values)
    if n < 8:
        return None
    q2 = statistics.median(values[n // 4 : n // 2])
    q4 = statistics.median(values[3 * n // 4 :])
    tol = max(absolute, relative * q2)
    return q2, q4, tol, q4 - q2 <= tol


def classify(tally, faults, grace):
    """{kind: (ok, expected failures, unexpected failures)} and the unexpected failures."""
    kills = faults.times("endpoint_down")
    rows, unexpected = {}, []
    for kind, ok in tally.ok.items():
        rows[kind] = [ok, 0, 0]
    for t0, t1, kind, why in tally.failures:
        row = rows.setdefault(kind, [0, 0, 0])
        expected = kind in WEB_KINDS and any(t0 - grace <= k <= t1 + 0.5 for k in kills)
        row[1 if expected else 2] += 1
        if not expected:
            unexpected.append((t0, kind, why))
    return rows, unexpected


def verdict(samples, run_samples, rows, unexpected, tally, checks_in):
    """The list of reasons the soak fails (empty: it passes) and the trend table rows."""
    reasons = list(checks_in)
    trends = {}
    for key, (absolute, relative) in TOLERANCE.items():
        r = trend([s[key] for s in run_samples], absolute, relative)
        trends[key] = r
        if r and not r[3]:
            reasons.append(
                "%s trends up: median %.0f in the 2nd quarter, %.0f in the last "
                "(tolerance %.0f)" % (key, r[0], r[1], r[2])
            )
    if unexpected:
        reasons.append(
            "%d well-formed request(s) failed outside the injected faults" % len(unexpected)
        )
    bad_malformed = {k: v for k, v in tally.malformed.items() if v[1]}
    if bad_malformed:
        reasons.append(
            "malformed requests answered otherwise than expected: %s"
            % ", ".join("%s x%d (%s)" % (k, v[1], v[2]) for k, v in sorted(bad_malformed.items()))
        )
    for kind, (ok, _, _) in rows.items():
        if ok == 0:
            reasons.append("no %s request succeeded at all" % kind)
    return reasons, trends


def span_checks(exit_counters, end_sample, sink, queue_max):
    """Reasons the span accounting fails."""
    reasons = []
    if exit_counters is None:
        return ["no 'span pipeline at exit' line in sidetrace's log"]
    c = exit_counters
    if c["sampled"] != c["exported"] + c["dropped"]:
        reasons.append(
            "at exit: sampled %d != exported %d + dropped %d (%+d unaccounted)"
            % (
                c["sampled"],
                c["exported"],
                c["dropped"],
                c["sampled"] - c["exported"] - c["dropped"],
            )
        )
    if sink.spans < c["exported"]:
        reasons.append(
            "the collector received %d spans, sidetrace counts %d exported"
            % (sink.spans, c["exported"])
        )
    # A batch the sink answered just as it was stopped may be retried into its next life (or
    # dropped after the export timeout): at most one batch (512 spans) per collector outage.
    if sink.spans - c["exported"] > 512 * max(1, sink.lives - 1):
        reasons.append(
            "the collector received %d spans more than sidetrace exported"
            % (sink.spans - c["exported"])
        )
    if sink.malformed:
        reasons.append("the collector could not parse %d export request(s)" % sink.malformed)
    if c["rejected"]:
        reasons.append("%d spans rejected by the collector" % c["rejected"])
    if end_sample["backlog"] != 0 or end_sample["queue"] != 0:
        reasons.append(
            "after the traffic stopped: %d spans neither exported nor dropped, queue %d"
            % (end_sample["backlog"], end_sample["queue"])
        )
    if queue_max["queue"] > queue_max["limit"]:
        reasons.append(
            "export queue reached %d > 2 x max_queue_size (%d)"
            % (queue_max["queue"], queue_max["limit"])
        )
    return reasons


# --- report ---------------------------------------------------------------------------------------


def mib(kib):
    return kib / 1024.0


def write_report(path, r):
    s = r["samples"]
    lines = ["# sidetrace soak: %s" % r["verdict"], ""]
    lines += [
        "%s, %s min of traffic (%s), sidetrace `--workers 2`, build `%s`."
        % (r["date"], r["minutes"], r["mode"], r["build"]),
        "",
        "Command: `%s`" % r["command"],
        "",
    ]
    if r["reasons"]:
        lines += ["Fails because:", ""] + ["- %s" % x for x in r["reasons"]] + [""]
    lines += [
        "## Resources (sidetrace process)",
        "",
        "| | start | end | max | median 2nd quarter | median last quarter | tolerance | trend |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for key, label, fmt in (
        ("rss_kib", "RSS MiB", mib),
        ("fds", "open fds", float),
        ("threads", "threads", float),
    ):
        t = r["trends"][key]
        vals = [x[key] for x in s]
        cells = ["%.1f" % fmt(vals[0]), "%.1f" % fmt(vals[-1]), "%.1f" % fmt(max(vals))]
        if t:
            cells += [
                "%.1f" % fmt(t[0]),
                "%.1f" % fmt(t[1]),
                "%.1f" % fmt(t[2]),
                "flat" if t[3] else "**up**",
            ]
        else:
            cells += ["-", "-", "-", "too few samples"]
        lines.append("| %s | %s |" % (label, " | ".join(cells)))
    lines += [
        "",
        "Trend rule: samples taken while traffic runs; the first quarter is warm-up; fail if "
        "the median of the last quarter exceeds the median of the second quarter by more than "
        "the tolerance (RSS: max(4 MiB, 10 %); fds: max(12, 15 %); threads: 2).",
        "",
    ]
    lines += [
        "## Requests by kind",
        "",
        "| kind | ok | failed, expected | failed, unexpected |",
        "| --- | ---: | ---: | ---: |",
    ]
    for kind in sorted(r["rows"]):
        ok, exp, unexp = r["rows"][kind]
        lines.append("| %s | %d | %d | %d |" % (kind, ok, exp, unexp))
    lines += [
        "",
        "Expected failures: only requests to the cluster with the flapping endpoint "
        "(%s) whose time window overlaps [kill − 0.5 s, kill + %.0f s]. Reloads and "
        "collector outages may fail no request." % (", ".join(sorted(WEB_KINDS)), r["grace"]),
        "",
    ]
    if r["unexpected"]:
        lines += ["Unexpected failures (first 20):", ""]
        lines += ["- t=%.1f s %s: %s" % (t, k, w) for t, k, w in r["unexpected"][:20]] + [""]
    lines += ["Large transfers: %d MiB each, %s." % (r["large_mib"], r["large_note"]), ""]
    lines += [
        "## Malformed requests",
        "",
        "| case | as expected | otherwise (last outcome) |",
        "| --- | ---: | --- |",
    ]
    for case, (good, bad, last) in sorted(r["malformed"].items()):
        lines.append("| %s | %d | %s |" % (case, good, "%d (%s)" % (bad, last) if bad else "0"))
    lines += ["", "## Faults injected", ""]
    lines += ["- %s" % x for x in r["faults"]] + [""]
    lines += ["## Span accounting", ""] + ["- %s" % x for x in r["spans"]] + [""]
    lines += [
        "## Samples",
        "",
        "| t s | RSS MiB | fds | threads | conns | queue | backlog | sampled | "
        "exported | dropped | requests |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: " "| ---: | ---: | ---: |",
    ]
    for x in s:
        lines.append(
            "| %s | %.1f | %d | %d | %d | %d | %d | %d | %d | %d | %d |"
            % (
                x["label"],
                mib(x["rss_kib"]),
                x["fds"],
                x["threads"],
                x["conns"],
                x["queue"],
                x["backlog"],
                x["sampled"],
                x["exported"],
                x["dropped"],
                x["requests"],
            )
        )
    lines += [
        "",
        "Plot: `%s`" % os.path.basename(r["plot"])
        if r["plot"]
        else "Plot: none (%s)" % r["plot_error"],
        "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def plot(path, samples, faults, t0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    t = [x["t"] for x in samples]
    for ax, key, label, conv in (
        (axes[0], "rss_kib", "RSS (MiB)", mib),
        (axes[1], "fds", "open fds", float),
        (axes[2], "threads", "threads", float),
    ):
        ax.plot(t, [conv(x[key]) for x in samples], marker=".")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        down = None
        for at, kind, _ in faults.events:
            if kind == "collector_down":
                down = at - t0
            elif kind == "collector_up" and down is not None:
                ax.axvspan(down, at - t0, color="orange", alpha=0.15, lw=0)
                down = None
            elif kind == "endpoint_down":
                ax.axvline(at - t0, color="red", alpha=0.25, lw=0.8)
    axes[0].set_title("sidetrace soak (red: endpoint killed, orange: collector down)")
    axes[2].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


# --- the run --------------------------------------------------------------------------------------


def plan_for(minutes):
    if minutes <= 2:  # smoke: every fault at least once, samples dense enough for the trend rule
        return dict(
            sample_every=3.0,
            reload_every=10,
            flap_first=12,
            flap_every=20,
            flap_down=6,
            collector_first=18,
            collector_every=30,
            collector_down=8,
            large_pause=3.0,
        )
    return dict(
        sample_every=10.0,
        reload_every=10,
        flap_first=15,
        flap_every=30,
        flap_down=10,
        collector_first=25,
        collector_every=60,
        collector_down=15,
        large_pause=20.0,
    )


class Ctx:
    def __init__(self, st, procs, dest_port):
        self.port, self.procs = st.port, procs
        self.egress_port, self.dest_port = st.egress_port, dest_port
        self.stop = threading.Event()
        self.tally = Tally()
        self.large_seconds = []


def start_traffic(ctx, args, plan, duration):
    size = args.large_mib * MIB
    jobs = [
        (h1_keepalive, (ctx, 0, 25.0)),
        (h1_keepalive, (ctx, 1, 25.0)),
        (h1_pipelined, (ctx, 8, 0.5)),
        (h2_multiplexed, (ctx, 5.0, 200)),
        (websocket_sessions, (ctx, 2.0)),
        (websocket_long_lived, (ctx, 5.0)),
        (large_transfers, (ctx, size, plan["large_pause"])),
        (malformed, (ctx, 1.0)),
        (egress_forward, (ctx, 10.0)),
        (egress_tunnels, (ctx, 2.0)),
        (grpc_load, (ctx, os.path.join(args.build_dir, "tests/soak/soak_grpc"), duration, 15.0)),
    ]
    threads = [threading.Thread(target=fn, args=a, daemon=True) for fn, a in jobs]
    for t in threads:
        t.start()
    return threads


def start_peers(procs, args):
    b = args.build_dir
    www = os.path.join(procs.tmp, "www")
    os.makedirs(www)
    with open(os.path.join(www, "big"), "wb") as f:
        f.truncate(args.large_mib * MIB)  # sparse: nginx sends zeros without a GiB on disk
    nginx_a, nginx_b = Nginx(procs, "a"), Nginx(procs, "b")
    nginx_a.start()
    nginx_b.start()
    py = peers.PyUpstream()
    grpc = procs.start("soak_grpc", [os.path.join(b, "tests/soak/soak_grpc"), "serve"])
    err = os.path.join(procs.tmp, "soak_grpc.err")
    grpc_port = int(
        wait_for(
            lambda: re.search(r"listening on 127.0.0.1:(\d+)", open(err).read()),
            20,
            "soak_grpc serve",
        ).group(1)
    )
    sink = Sink(procs, os.path.join(b, "tests/bench/otlp_sink"))
    sink.start()
    return nginx_a, nginx_b, py, grpc, grpc_port, sink


def sanity(st):
    """One request of each simple kind must work before the soak starts (else: a setup fault)."""
    for path, want in (("/ping", b"pong"), ("/x", b"ok"), ("/upload", b"received 0")):
        s = connect(st.port)
        s.sendall(
            request_bytes(
                "POST" if path == "/upload" else "GET",
                path,
                [("Content-Length", "0")] if path == "/upload" else [],
            )
        )
        status, _, body = read_response(Reader(s))
        s.close()
        if status != 200 or not body.startswith(want):
            raise RuntimeError("sanity request %s: %d %r" % (path, status, body[:80]))


def run_phase(st, ctx, sched, duration, plan, t0, samples):
    """Samples every plan["sample_every"] s (half a period off the reloads) until `duration`."""
    k = 0
    while True:
        at = t0 + plan["sample_every"] * (k + 0.5)
        if at - t0 > duration:
            return None
        time.sleep(max(0.0, at - time.time()))
        if not st.alive():
            return "sidetrace exited (code %s) during the soak" % st.proc.returncode
        if sched.error:
            return "fault injection failed: %s" % sched.error
        x = sample(st, t0)
        x["label"] = "%.0f" % x["t"]
        samples.append(x)
        log(
            "t=%5.0fs rss=%.1fMiB fds=%d threads=%d queue=%d backlog=%d failures=%d"
            % (
                x["t"],
                mib(x["rss_kib"]),
                x["fds"],
                x["threads"],
                x["queue"],
                x["backlog"],
                len(ctx.tally.failures),
            )
        )
        k += 1


def quiesce(st, t0, timeout=30):
    """Waits until every sampled span was exported or dropped (the collector is up); the sample."""
    end = time.time() + timeout
    while True:
        x = sample(st, t0)
        if (x["backlog"] == 0 and x["queue"] == 0) or time.time() > end:
            x["label"] = "end"
            return x
        time.sleep(0.5)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("minutes", type=float)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--large-mib", type=int, required=True)
    ap.add_argument("--command", default="tests/soak/run.sh")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still end every peer (finally)
    duration = args.minutes * 60
    plan = plan_for(args.minutes)
    grace = 2.0
    queue_limit = 2048
    os.makedirs(args.results, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tmp = tempfile.mkdtemp(prefix="sidetrace-soak-")
    procs = Procs(tmp)
    keep_tmp = True  # removed after a pass; kept (with every peer's log) after a failure
    log("temporary files in %s" % tmp)
    try:
        nginx_a, nginx_b, py, _, grpc_port, sink = start_peers(procs, args)
        conf_vars = dict(
            nginx_a=nginx_a.port,
            nginx_b=nginx_b.port,
            py=py.port,
            grpc=grpc_port,
            sink=sink.port,
            queue=queue_limit,
            long_timeout=int(duration) + 600,
        )
        st = Sidetrace(procs, os.path.join(args.build_dir, "proxy/sidetrace"), conf_vars)
        sanity(st)
        t0 = time.time()
        first = sample(st, t0)
        first["label"] = "start"
        samples, faults = [first], Faults()
        ctx = Ctx(st, procs, nginx_a.port)
        threads = start_traffic(ctx, args, plan, duration)
        sched = FaultSchedule(plan, st, nginx_b, sink, faults, duration)
        sched.start()
        log(
            "traffic for %.0f s; faults: reload every %ss, endpoint killed every %ss for %ss, "
            "collector stopped every %ss for %ss"
            % (
                duration,
                plan["reload_every"],
                plan["flap_every"],
                plan["flap_down"],
                plan["collector_every"],
                plan["collector_down"],
            )
        )
        fatal = run_phase(st, ctx, sched, duration, plan, t0, samples)
        run_samples = samples[1:]
        ctx.stop.set()
        for t in threads:
            t.join(timeout=300)
        sched.finish()
        checks = [fatal] if fatal else []
        checks += ["traffic thread %s did not stop" % t.name for t in threads if t.is_alive()]
        end = quiesce(st, t0) if st.alive() else None
        if end:
            samples.append(end)
        last = scrape(st.admin_port)
        reloads = (
            int(last.get('sidetrace_config_reloads_total{outcome="ok"}', 0)),
            int(last.get('sidetrace_config_reloads_total{outcome="refused"}', 0)),
        )
        web = {
            k: int(last.get('sidetrace_upstream_%s{cluster="web"%s}' % (k, label), 0))
            for k, label in (
                ("connect_failures_total", ""),
                ("ejections_total", ""),
                ("retries_total", ',outcome="attempted"'),
            )
        }
        rc, exit_counters = st.stop(timeout=60)
        sink.stop()
        if rc != 0:
            checks.append("sidetrace exited with %s after SIGTERM (want 0)" % rc)
        if reloads[0] != st.reloads_sent or reloads[1]:
            checks.append(
                "reloads: %d sent, %d applied, %d refused"
                % (st.reloads_sent, reloads[0], reloads[1])
            )
        rows, unexpected = classify(ctx.tally, faults, grace)
        unexpected = [(t - t0, k, w) for t, k, w in sorted(unexpected)]
        # The gauge adds the queue of the pipeline the last reload retired (still exporting for up
        # to export_timeout, 5 s, shorter than the reload period): two bounded queues at most.
        queue_max = {"queue": max(x["queue"] for x in samples), "limit": 2 * queue_limit}
        reasons, trends = verdict(samples, run_samples, rows, unexpected, ctx.tally, checks)
        reasons += span_checks(exit_counters, end or samples[-1], sink, queue_max)
        report = dict(
            verdict="FAIL" if reasons else "PASS",
            reasons=reasons,
            trends=trends,
            rows=rows,
            unexpected=unexpected,
            malformed=ctx.tally.malformed,
            samples=samples,
            grace=grace,
            date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t0)),
            minutes=args.minutes,
            mode="smoke" if args.minutes <= 2 else "soak",
            build=args.build_dir,
            command=args.command,
            large_mib=args.large_mib,
            large_note=large_note(ctx.large_seconds, args.large_mib),
            faults=fault_lines(faults, st, reloads, nginx_b, sink, web),
            spans=span_lines(exit_counters, sink, queue_max),
        )
        base = os.path.join(args.results, "soak-%s" % stamp)
        report["plot"], report["plot_error"] = base + ".png", ""
        try:
            plot(report["plot"], samples, faults, t0)
        except Exception as e:  # matplotlib missing: the verdict stands, the report says so
            report["plot"], report["plot_error"] = "", "%s: %s" % (type(e).__name__, e)
        write_report(base + ".md", report)
        log("report: %s.md" % base)
        for x in reasons:
            log("FAIL: %s" % x)
        log("verdict: %s" % report["verdict"])
        if reasons:
            log("logs kept in %s" % tmp)
        else:
            keep_tmp = False
        return 1 if reasons else 0
    finally:
        procs.end_all()
        if not keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def large_note(seconds, size_mib):
    if not seconds:
        return "none completed"
    return "%d done, median %.2f s each (%.0f MiB/s)" % (
        len(seconds),
        statistics.median(seconds),
        size_mib / statistics.median(seconds),
    )


def fault_lines(faults, st, reloads, nginx_b, sink, web):
    return [
        "SIGHUP reloads (config A/B alternating, each replacing the export pipeline): %d sent, "
        "%d applied, %d refused" % (st.reloads_sent, reloads[0], reloads[1]),
        "endpoint 127.0.0.1:%d of cluster web killed (SIGKILL) %d times, restarted %d times"
        % (nginx_b.port, faults.count("endpoint_down"), faults.count("endpoint_up")),
        "cluster web as sidetrace saw it: %d connect failures, %d ejections, %d retries"
        % (web["connect_failures_total"], web["ejections_total"], web["retries_total"]),
        "collector (otlp_sink) stopped %d times, started %d times (%d lives)"
        % (faults.count("collector_down"), faults.count("collector_up"), sink.lives),
    ]


def span_lines(c, sink, queue_max):
    if c is None:
        return ["no exit line from sidetrace"]
    return [
        "sidetrace at exit (after SIGTERM and the final flush): started %d, sampled %d, "
        "exported %d, dropped %d (queue_full %d, export_failed %d, too_large %d), rejected %d"
        % (
            c["started"],
            c["sampled"],
            c["exported"],
            c["dropped"],
            c["queue_full"],
            c["export_failed"],
            c["too_large"],
            c["rejected"],
        ),
        "sampled − exported − dropped = %d" % (c["sampled"] - c["exported"] - c["dropped"]),
        "collector: %d spans in %d requests answered OK (%d requests received) over %d lives; "
        "received − exported = %d"
        % (sink.spans, sink.answered, sink.requests, sink.lives, sink.spans - c["exported"]),
        "export queue (the live pipeline's and a retiring one's): max %d of %d in the samples"
        % (queue_max["queue"], queue_max["limit"]),
    ]


if __name__ == "__main__":
    sys.exit(main())
