#!/usr/bin/env python3
"""Memory per idle keep-alive connection of one proxy process (used by conn_memory.sh).

  conn_memory.py PID PORT [COUNT] [PATH] [MODE]

Reads VmRSS of PID, opens COUNT (default 3000) keep-alive connections to 127.0.0.1:PORT, each
sends one GET PATH and reads its whole response, then all stay open and idle; after a settle
second VmRSS is read again. MODE: h1 (default: HTTP/1.1, Content-Length or chunked), tls (HTTP/1.1
over TLS, certificate not verified), h2c (HTTP/2 by prior knowledge, one stream). Prints one line:
  rss_before_kib=... rss_after_kib=... connections=... per_connection_kib=...
Connections are opened one after the other, so the proxy's upstream pool stays small and what
grows is the downstream side only.
"""
import os
import resource
import socket
import ssl
import struct
import sys
import time


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def read_response(sock):
    """Reads one response; raises if the peer closes first."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"closed before the head: {buf[:200]!r}")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 2"):
        raise RuntimeError(f"not a 2xx: {head[:200]!r}")
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    if b"content-length" in fields:
        want = int(fields[b"content-length"])
        while len(rest) < want:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("closed mid-body")
            rest += chunk
        return
    if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("closed mid-body")
            rest += chunk
        return
    raise RuntimeError(f"response without framing: {head[:200]!r}")


def h2_frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def h2_get(sock, path):
    """One GET on stream 1 of a fresh h2c connection; returns once the stream ended."""
    authority = b"bench"
    # HPACK: :method GET, :scheme http (static indexes), :path and :authority as literals.
    block = bytes([0x82, 0x86, 0x04, len(path)]) + path.encode() + bytes([0x01, len(authority)]) + authority
    sock.sendall(
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        + h2_frame(0x4, 0, 0)  # SETTINGS (defaults)
        + h2_frame(0x1, 0x5, 1, block)  # HEADERS, END_STREAM | END_HEADERS
    )
    buf = b""
    while True:
        while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("closed before the h2 response ended")
            buf += chunk
        length = int.from_bytes(buf[:3], "big")
        kind, flags, stream = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
        buf = buf[9 + length :]
        if kind == 0x4 and not flags & 0x1:
            sock.sendall(h2_frame(0x4, 0x1, 0))  # ACK the server's SETTINGS
        if kind == 0x7:
            raise RuntimeError("GOAWAY")
        if kind == 0x3 and stream == 1:
            raise RuntimeError("RST_STREAM")
        if stream == 1 and kind in (0x0, 0x1) and flags & 0x1:
            return


def main():
    pid, port = int(sys.argv[1]), int(sys.argv[2])
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
    path = sys.argv[4] if len(sys.argv) > 4 else "/"
    mode = sys.argv[5] if len(sys.argv) > 5 else "h1"
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    tls.set_alpn_protocols(["http/1.1"])

    def connect():
        s = socket.create_connection(("127.0.0.1", port))
        return tls.wrap_socket(s) if mode == "tls" else s

    def one_request(s):
        if mode == "h2c":
            h2_get(s, path)
        else:
            s.sendall(request)
            read_response(s)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1024), hard))
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()

    # Warm-up on a connection of its own: the upstream pool connection, lazily built state.
    for _ in range(3):
        with connect() as s:
            one_request(s)
    time.sleep(0.5)
    before = vm_rss_kib(pid)
    conns = []
    for _ in range(count):
        s = connect()
        s.settimeout(30)
        one_request(s)
        conns.append(s)
    time.sleep(1.0)
    after = vm_rss_kib(pid)
    # Still open? A proxy that dropped them would look cheap.
    for s in conns[:: max(1, count // 50)]:
        raw = socket.socket(fileno=s.fileno())  # the TCP socket under a TLS one
        try:
            raw.setblocking(False)
            if raw.recv(1, socket.MSG_PEEK) == b"":
                raise RuntimeError("the proxy closed an idle connection during the measurement")
        except BlockingIOError:
            pass
        finally:
            raw.detach()
    print(
        f"rss_before_kib={before} rss_after_kib={after} connections={count} "
        f"per_connection_kib={(after - before) / count:.2f}"
    , flush=True)
    # CONN_MEMORY_HOLD=SECONDS keeps them open after the report, e.g. to snapshot the heap with
    # heaptrack while they are idle.
    time.sleep(float(os.environ.get("CONN_MEMORY_HOLD", "0")))
    for s in conns:
        s.close()


if __name__ == "__main__":
    main()
