#!/usr/bin/env python3
"""Differential HTTP/1 fuzzing: the same mutated requests to sidetrace, nginx and HAProxy.

Each proxy forwards to its own recording upstream. Every input (a request from the http1_request
corpus, mutated towards the shapes request smuggling is made of: duplicate or conflicting
Content-Length / Transfer-Encoding, obs-fold, bare CR/LF, odd whitespace, chunk-size tricks, a
second request hidden in a body) is written to the three proxies on fresh connections, and what
each upstream received is compared. A finding is sidetrace being more permissive than both
references where they agree:
  - sidetrace forwards a request that nginx and HAProxy both refuse (forward nothing);
  - sidetrace forwards more requests from one input than either reference (a smuggled one);
  - the n-th request all three forward has the same body at nginx and HAProxy and another at
    sidetrace (a desynchronised body).
Stricter-than-both is fine (a 400 where they forward is sidetrace's policy). Findings are written
to FINDINGS/diff-<n>.bin (the input) and .json (the three outcomes); the exit status is 1 if any.

  tests/fuzz/differential.py --seconds 60 --sidetrace build/proxy/sidetrace --findings DIR
(tests/fuzz/run.sh SECONDS differential runs it like a libFuzzer target.)
"""

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
IDLE = 0.25  # a proxy that sent nothing more for this long has answered all it will
HEAD_LIMIT = 64 * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the recording upstream -----------------------------------------------------------------------


class Recorder:
    """An HTTP/1.1 origin that records (method, target, body) of each request it is sent and answers
    200 "ok". It parses strictly what a proxy must send: a head, then Content-Length or chunked."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.seen = []  # (method, target, body) or ("<unparsable>", reason, b"")
        threading.Thread(target=self._accept, daemon=True).start()

    def mark(self):
        with self.lock:
            return len(self.seen)

    def since(self, mark):
        with self.lock:
            return list(self.seen[mark:])

    def _accept(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = bytearray()
        conn.settimeout(10)

        def need(n):
            while len(buf) < n:
                data = conn.recv(65536)
                if not data:
                    raise EOFError
                buf.extend(data)

        def line():
            while b"\r\n" not in buf:
                need(len(buf) + 1)
            i = buf.index(b"\r\n")
            out = bytes(buf[:i])
            del buf[: i + 2]
            return out

        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    if len(buf) > HEAD_LIMIT:
                        raise ValueError("head too long")
                    need(len(buf) + 1)
                end = buf.index(b"\r\n\r\n")
                head = bytes(buf[:end]).decode("latin-1").split("\r\n")
                del buf[: end + 4]
                parts = head[0].split(" ")
                if len(parts) != 3:
                    raise ValueError("request line %r" % head[0])
                fields = {}
                for h in head[1:]:
                    name, sep, value = h.partition(":")
                    if not sep or name != name.strip():
                        raise ValueError("field %r" % h)
                    fields.setdefault(name.lower(), []).append(value.strip())
                body = bytearray()
                te = ",".join(fields.get("transfer-encoding", [])).lower()
                if te:
                    if te != "chunked" or "content-length" in fields:
                        raise ValueError("framing te=%r cl=%r" % (te, fields.get("content-length")))
                    while True:
                        size = int(line().split(b";")[0], 16)
                        if size == 0:
                            while line():
                                pass
                            break
                        need(size + 2)
                        body += buf[:size]
                        del buf[: size + 2]
                elif "content-length" in fields:
                    if len(fields["content-length"]) != 1:
                        raise ValueError("several content-length")
                    n = int(fields["content-length"][0])
                    need(n)
                    body += buf[:n]
                    del buf[:n]
                with self.lock:
                    self.seen.append((parts[0], parts[1], bytes(body)))
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (EOFError, OSError):
            pass
        except ValueError as e:
            with self.lock:
                self.seen.append(("<unparsable>", str(e), b""))
        finally:
            conn.close()


# --- the three proxies ----------------------------------------------------------------------------

NGINX = """worker_processes 1;
master_process off;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err crit;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nb; proxy_temp_path {tmp}/np; fastcgi_temp_path {tmp}/nf;
    uwsgi_temp_path {tmp}/nu; scgi_temp_path {tmp}/ns;
    upstream up {{ server 127.0.0.1:{up}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

HAPROXY = """global
    maxconn 1024
defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s
    timeout http-request 5s
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    server up 127.0.0.1:{up}
"""

SIDETRACE = """listeners:
  - name: diff
    address: "127.0.0.1:{port}"
    routes: [ {{ match: {{ prefix: / }}, cluster: up }} ]
clusters:
  - {{ name: up, endpoints: [ "127.0.0.1:{up}" ] }}
tracing: {{ exporter: {{ protocol: none }} }}
log_level: error
"""


def start_proxies(tmp, sidetrace):
    procs, ports, recorders = [], {}, {}
    for name in ("sidetrace", "nginx", "haproxy"):
        recorders[name] = Recorder()
        ports[name] = free_port()
        conf = os.path.join(tmp, name + ".conf")
        with open(conf, "w") as f:
            template = {"sidetrace": SIDETRACE, "nginx": NGINX, "haproxy": HAPROXY}[name]
            f.write(template.format(tmp=tmp, port=ports[name], up=recorders[name].port))
        argv = {
            "sidetrace": [sidetrace, "--config", conf, "--workers", "1"],
            "nginx": ["nginx", "-c", conf, "-p", tmp],
            "haproxy": ["haproxy", "-f", conf],
        }[name]
        log = open(os.path.join(tmp, name + ".log"), "w")
        procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.time() + 15
    for name, port in ports.items():
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("%s did not start (see %s/%s.log)" % (name, tmp, name))
                time.sleep(0.05)
    return procs, ports, recorders


# --- inputs ---------------------------------------------------------------------------------------

FIELDS = [
    b"Transfer-Encoding: chunked", b"Transfer-Encoding: xchunked", b"Transfer-Encoding : chunked",
    b"Transfer-Encoding:\tchunked", b"Transfer-Encoding: chunked, identity",
    b"Transfer-Encoding: identity, chunked", b"Transfer-Encoding: CHUNKED", b" Transfer-Encoding: chunked",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", b"Transfer-Encoding:\x0bchunked",
    b"Content-Length: 5", b"Content-Length: +5", b"Content-Length: 5, 5", b"Content-Length: 05",
    b"Content-Length: 5\r\nContent-Length: 6", b"Content-Length: -1", b"Content-Length: 0x5",
    b"Content-Length:5", b"Content-Length: 99999999999999999999", b" Content-Length: 5",
    b"Host: b", b"Host:", b"Connection: close", b"Connection: keep-alive, Upgrade",
    b"Expect: 100-continue", b"Upgrade: websocket", b"X: a\rb", b"X: a\x00b", b"X\x7f: y",
]
TAILS = [
    b"5\r\nhello\r\n0\r\n\r\n", b"0\r\n\r\n", b"hello",
    b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    b"5;ext=1\r\nhello\r\n0\r\n\r\n", b"0x5\r\nhello\r\n0\r\n\r\n", b"5 \r\nhello\r\n0\r\n\r\n",
    b"ffffffffffffffff1\r\nx\r\n0\r\n\r\n", b"5\nhello\n0\n\n",
]
BYTES = b"\r\n\t :\x00\x7f\x80,;a0"


def seeds():
    out = []
    d = os.path.join(HERE, "corpus", "http1_request")
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            data = f.read()[1:]  # the target's first byte is its split point, not HTTP
        if data:
            out.append(data)
    return out


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(7)
        pos = rng.randrange(len(data) + 1)
        head_end = data.find(b"\r\n") + 2 if b"\r\n" in data else len(data)
        if op == 0 and data:
            data[min(pos, len(data) - 1)] = rng.choice(BYTES)
        elif op == 1:
            data[pos:pos] = bytes([rng.choice(BYTES)])
        elif op == 2 and data:
            del data[min(pos, len(data) - 1)]
        elif op in (3, 4):  # a field after the request line
            data[head_end:head_end] = rng.choice(FIELDS) + b"\r\n"
        elif op == 5:
            data += rng.choice(TAILS)
        else:  # a line duplicated
            lines = bytes(data).split(b"\r\n")
            i = rng.randrange(len(lines))
            lines.insert(i, lines[i])
            data = bytearray(b"\r\n".join(lines))
    return bytes(data)


# --- one round ------------------------------------------------------------------------------------


def exchange(port, data, out, name):
    """Writes data on a fresh connection and reads until the proxy closes or goes quiet."""
    got = bytearray()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(data)
            s.settimeout(IDLE)
            end = time.time() + 3
            while time.time() < end:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                got += chunk
    except OSError:
        pass
    out[name] = [int(m) for m in re.findall(rb"HTTP/1\.[01] (\d{3})", bytes(got))]


def judge(fwd):
    s, n, h = fwd["sidetrace"], fwd["nginx"], fwd["haproxy"]
    if s and not n and not h:
        return "sidetrace forwards what nginx and HAProxy refuse"
    if len(s) > max(len(n), len(h)):
        return "sidetrace forwards more requests than nginx and HAProxy"
    for i in range(min(len(s), len(n), len(h))):
        if n[i][2] == h[i][2] and s[i][2] != n[i][2]:
            return "request %d: sidetrace forwards another body than nginx and HAProxy" % i
    if any(r[0] == "<unparsable>" for r in s):
        return "sidetrace sent its upstream an unparsable request"
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--sidetrace", required=True)
    ap.add_argument("--findings", required=True)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    for tool in ("nginx", "haproxy"):
        if not shutil.which(tool):
            sys.exit("differential: needs %s (apt-get install nginx haproxy)" % tool)
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    tmp = tempfile.mkdtemp(prefix="sidetrace-diff-")
    os.makedirs(args.findings, exist_ok=True)
    procs, ports, recorders = start_proxies(tmp, args.sidetrace)
    corpus = seeds()
    runs = findings = 0
    forwarded = {n: 0 for n in ports}  # inputs of which each proxy forwarded at least one request
    try:
        end = time.time() + args.seconds
        while time.time() < end:
            data = mutate(rng, rng.choice(corpus)) if runs >= len(corpus) else corpus[runs]
            marks = {n: r.mark() for n, r in recorders.items()}
            statuses = {}
            threads = [
                threading.Thread(target=exchange, args=(ports[n], data, statuses, n)) for n in ports
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            time.sleep(0.02)  # a forward that races the answer's last byte
            fwd = {n: recorders[n].since(marks[n]) for n in recorders}
            runs += 1
            for n, v in fwd.items():
                forwarded[n] += 1 if v else 0
            why = judge(fwd)
            for p, name in zip(procs, ports):
                if p.poll() is not None:
                    why = "%s exited (%s)" % (name, p.returncode)
            if why:
                findings += 1
                base = os.path.join(args.findings, "diff-%d-%d" % (seed, runs))
                with open(base + ".bin", "wb") as f:
                    f.write(data)
                report = {
                    "why": why,
                    "input": data.decode("latin-1"),
                    "statuses": statuses,
                    "forwarded": {
                        n: [[m, t, b.decode("latin-1")] for m, t, b in v] for n, v in fwd.items()
                    },
                }
                with open(base + ".json", "w") as f:
                    json.dump(report, f, indent=1)
                print("differential: FINDING %s: %s (%s.json)" % (why, data[:80], base))
                if "exited" in why:
                    break
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        "differential: seed %d, %d inputs (forwarded by sidetrace %d, nginx %d, HAProxy %d), "
        "%d findings" % (seed, runs, forwarded["sidetrace"], forwarded["nginx"],
                         forwarded["haproxy"], findings)
    )
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
