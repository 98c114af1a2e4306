"""The soak run's clients and its Python upstream (stdlib only), used by tests/soak/soak.py.

- PyUpstream: an HTTP/1.1 server on 127.0.0.1:0, one thread per connection. `GET /ws...` with
  `Upgrade: websocket` answers 101 and echoes every WebSocket message (RFC 6455: client frames
  masked, server frames not); `POST /upload` reads the whole body (Content-Length or chunked) and
  answers `received N`; anything else gets 200 `py`.
- http_exchange / read_response: a minimal HTTP/1.1 client over a socket (Content-Length and
  chunked bodies), for keep-alive and pipelined requests.
- websocket_connect / ws_send / ws_recv: a WebSocket client through the proxy.
"""
import base64
import hashlib
import os
import socket
import socketserver
import struct
import threading

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class ProtocolError(Exception):
    pass


class Reader:
    """Buffered reads from a socket: lines, exact sizes, and chunked bodies."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self):
        data = self.sock.recv(1 << 16)
        if not data:
            raise ProtocolError("connection closed")
        self.buf += data

    def line(self, limit=1 << 16):
        while True:
            at = self.buf.find(b"\r\n")
            if at >= 0:
                out = bytes(self.buf[:at])
                del self.buf[: at + 2]
                return out
            if len(self.buf) > limit:
                raise ProtocolError("line too long")
            self._fill()

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def discard(self, n):
        """Reads and drops n bytes; returns how many arrived (n unless the peer closed)."""
        got = min(n, len(self.buf))
        del self.buf[:got]
        chunk = bytearray(1 << 20)
        view = memoryview(chunk)
        while got < n:
            k = self.sock.recv_into(view[: min(len(chunk), n - got)])
            if k == 0:
                break
            got += k
        return got

    def head(self):
        """(first line, {lower-case name: value}) of a message head."""
        first = self.line().decode("latin-1")
        headers = {}
        while True:
            raw = self.line()
            if not raw:
                return first, headers
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()

    def body(self, headers, keep=True):
        """The body framed by headers (bytes if keep, else its length)."""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            out = bytearray()
            total = 0
            while True:
                size = int(self.line().split(b";")[0], 16)
                if size == 0:
                    while self.line():
                        pass
                    return bytes(out) if keep else total
                if keep:
                    out += self.exact(size)
                else:
                    self.discard(size)
                total += size
                self.line()
        n = int(headers.get("content-length", "0"))
        if keep:
            return self.exact(n)
        return self.discard(n)


def read_response(reader, keep_body=True):
    """(status, headers, body) of one response; body is its length when keep_body is False."""
    first, headers = reader.head()
    parts = first.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ProtocolError("bad status line %r" % first)
    status = int(parts[1])
    if 100 <= status < 200:
        return read_response(reader, keep_body)
    return status, headers, reader.body(headers, keep_body)


def request_bytes(method, path, headers=(), body=b""):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: soak"]
    lines += ["%s: %s" % h for h in headers]
    if body:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def connect(port, timeout=15.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


# --- WebSocket framing (RFC 6455), text/binary messages up to 64 KiB, no fragmentation ---------


def ws_frame(payload, opcode=0x1, mask=True):
    head = bytearray([0x80 | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 65536:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes(head) + key + masked


def ws_recv(reader):
    """(opcode, payload) of the next frame."""
    b0, b1 = reader.exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", reader.exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", reader.exact(8))[0]
    key = reader.exact(4) if b1 & 0x80 else None
    payload = reader.exact(n)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return b0 & 0x0F, payload


def websocket_connect(port, path="/ws"):
    """(socket, reader) of a WebSocket opened through the proxy; raises ProtocolError if not 101."""
    s = connect(port)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        request_bytes(
            "GET",
            path,
            [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", key),
                ("Sec-WebSocket-Version", "13"),
            ],
        )
    )
    reader = Reader(s)
    first, headers = reader.head()
    want = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
    if " 101 " not in first + " " or headers.get("sec-websocket-accept") != want:
        s.close()
        raise ProtocolError("websocket handshake: %r" % first)
    return s, reader


def ws_echo(sock, reader, message):
    sock.sendall(ws_frame(message))
    opcode, payload = ws_recv(reader)
    if opcode != 0x1 or payload != message:
        raise ProtocolError("websocket echo: opcode %d, %d bytes" % (opcode, len(payload)))


def ws_close(sock, reader):
    sock.sendall(ws_frame(struct.pack("!H", 1000), opcode=0x8))
    opcode, _ = ws_recv(reader)
    sock.close()
    if opcode != 0x8:
        raise ProtocolError("websocket close: opcode %d" % opcode)


# --- the Python upstream ------------------------------------------------------------------------


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        reader = Reader(self.request)
        try:
            while True:
                first, headers = reader.head()
                method, path = first.split(" ")[:2]
                if headers.get("upgrade", "").lower() == "websocket":
                    self._websocket(reader, headers)
                    return
                if method == "POST" and path.startswith("/upload"):
                    n = reader.body(headers, keep=False)
                    body = b"received %d" % n
                else:
                    reader.body(headers, keep=False)
                    body = b"py"
                self.request.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
        except (ProtocolError, OSError, ValueError):
            return

    def _websocket(self, reader, headers):
        accept = base64.b64encode(
            hashlib.sha1(headers.get("sec-websocket-key", "").encode() + WS_GUID).digest()
        )
        self.request.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        while True:
            opcode, payload = ws_recv(reader)
            if opcode == 0x8:
                self.request.sendall(ws_frame(payload, opcode=0x8, mask=False))
                return
            self.request.sendall(ws_frame(payload, opcode=opcode, mask=False))


class PyUpstream(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self):
        return self.server_address[1]
