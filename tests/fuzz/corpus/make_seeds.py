#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target (tests/fuzz/corpus/<target>/): small inputs
taken from the test suite's cases, the W3C and B3 specification examples and real request
shapes. Deterministic; run it again after changing a target's input format."""

import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- HTTP/1 requests: one byte seeding the read sizes, then the client's bytes ----
REQUESTS = {
    "get": "GET /api/orders?id=7 HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: curl/8\r\n"
           "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n",
    "post_length": "POST /api/orders HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                   "Content-Length: 13\r\n\r\n{\"item\": 42}\n",
    "chunked_trailers": "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                        "Trailer: x-checksum\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n"
                        "x-checksum: abc\r\nContent-Length: 5\r\n\r\n",
    "pipelined": "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\n"
                 "Content-Length: 3\r\n\r\nabcHEAD /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "http10": "GET / HTTP/1.0\r\n\r\n",
    "upgrade": "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x05hello",
    "expect_continue": "PUT /big HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody",
    "absolute_form": "GET http://upstream.local:8080/x?y=1 HTTP/1.1\r\nHost: upstream.local:8080\r\n\r\n",
    "obs_fold": "GET / HTTP/1.1\r\nHost: a\r\nX-Long: a\r\n b\r\n\r\n",
    "bare_lf": "GET / HTTP/1.1\nHost: a\n\n",
    "cl_and_te": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two_hosts": "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "space_before_colon": "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
    "chunked_bare_lf_trailer": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nx: 1\n\n",
    "many_fields": "GET / HTTP/1.1\r\nHost: a\r\n" + "".join("x-f%d: %d\r\n" % (i, i) for i in range(110)) + "\r\n",
}
for i, (name, req) in enumerate(sorted(REQUESTS.items())):
    write("http1_request", name, bytes([i * 37 % 256]) + req.encode("latin-1"))

# ---- HTTP/1 responses: flag byte (bit 0: HEAD request), read-size seed, the upstream's bytes ----
RESPONSES = {
    "length": (0, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"),
    "chunked_trailers": (0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
                            "grpc-status: 0\r\ngrpc-message: ok\r\n\r\n"),
    "continue_then_ok": (0, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                            "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"),
    "no_content": (0, "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"),
    "not_modified": (0, "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"),
    "head": (1, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
    "until_close": (0, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>streamed until close</html>"),
    "http10": (0, "HTTP/1.0 200 OK\r\n\r\nold"),
    "switching": (0, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x00"),
    "bad_status": (0, "HTTP/1.1 2000 Huge\r\n\r\n"),
    "empty_reason": (0, "HTTP/1.1 502 \r\nContent-Length: 0\r\n\r\n"),
}
for i, (name, (flag, resp)) in enumerate(sorted(RESPONSES.items())):
    write("http1_response", name, bytes([flag, i * 53 % 256]) + resp.encode("latin-1"))


# ---- HTTP/2: read-size seed, then the client's frames after the preface ----
def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def lit(name_index, value):  # HPACK literal without indexing, indexed name
    v = value.encode()
    return bytes([name_index]) + bytes([len(v)]) + v


def lit_new(name, value):  # HPACK literal with incremental indexing, new name
    n, v = name.encode(), value.encode()
    return b"\x40" + bytes([len(n)]) + n + bytes([len(v)]) + v


DATA, HEADERS, PRIORITY, RST, SETTINGS, PING, GOAWAY, WINDOW, CONT = 0, 1, 2, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS, PADDED, PRIO = 1, 4, 8, 0x20


def req(path, method_index=0x82, extra=b""):  # :method GET (0x82) or POST (0x83)
    return bytes([method_index, 0x86]) + lit(4, path) + lit(1, "a.example") + extra


settings = frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 65535))
ack = frame(SETTINGS, 1, 0)
H2 = {
    "get_small": settings + frame(HEADERS, END_HEADERS | END_STREAM, 1, req("/small")),
    "get_big_window": settings + frame(HEADERS, END_HEADERS | END_STREAM, 1, req("/big"))
    + frame(WINDOW, 0, 0, struct.pack(">I", 1 << 20)) + frame(WINDOW, 0, 1, struct.pack(">I", 1 << 20)),
    "post_body_trailers": settings + frame(HEADERS, END_HEADERS, 1, req("/small", 0x83, lit_new("content-type", "application/grpc")))
    + frame(DATA, 0, 1, b"\x00\x00\x00\x00\x02hi") + frame(HEADERS, END_HEADERS | END_STREAM, 1, lit_new("grpc-timeout", "1S")),
    "continuation": settings + frame(HEADERS, 0, 1, req("/small")[:4]) + frame(CONT, END_HEADERS, 1, req("/small")[4:]),
    "many_streams": settings + b"".join(frame(HEADERS, END_HEADERS | END_STREAM, i, req("/x%d" % i)) for i in range(1, 40, 2)),
    "rst_after_open": settings + frame(HEADERS, END_HEADERS, 1, req("/big")) + frame(RST, 0, 1, struct.pack(">I", 8)),
    "goaway_then_headers": settings + frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0)) + frame(HEADERS, END_HEADERS | END_STREAM, 3, req("/small")),
    "ping_priority": settings + ack + frame(PING, 0, 0, b"12345678") + frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 16))
    + frame(HEADERS, END_HEADERS | END_STREAM | PRIO, 3, struct.pack(">IB", 0, 200) + req("/small")),
    "padded": settings + frame(HEADERS, END_HEADERS | PADDED, 1, b"\x03" + req("/small") + b"\x00\x00\x00")
    + frame(DATA, PADDED | END_STREAM, 1, b"\x02ab\x00\x00"),
    "skipped_stream": settings + frame(HEADERS, END_HEADERS | END_STREAM, 5, req("/small")) + frame(HEADERS, END_HEADERS | END_STREAM, 3, req("/small")),
    "dynamic_table": settings + frame(HEADERS, END_HEADERS | END_STREAM, 1, req("/small", extra=lit_new("x-a", "1") + b"\x3f\xe1\x1f"))
    + frame(HEADERS, END_HEADERS | END_STREAM, 3, req("/small", extra=b"\xbe")),
    "bad_window": settings + frame(WINDOW, 0, 0, struct.pack(">I", 0x7fffffff)),
}
for i, (name, frames) in enumerate(sorted(H2.items())):
    write("http2_server", name, bytes([i * 29 % 256]) + frames)

# ---- Propagators: header lines ----
TP = "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
PROP = {
    "w3c": TP + "\ntracestate: congo=t61rcWkgMzE,rojo=00f067aa0ba902b7\n",
    "w3c_lines": TP + "\ntracestate: rojo=1, congo=2\ntracestate: vendor@tenant=x\n",
    "w3c_future_version": "traceparent: cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-what-the-future-will-be-like\n",
    "w3c_random_flag": "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02\n",
    "baggage": TP + "\nbaggage: userId=alice,serverNode=DF%2028,isProduction=false;prop=1\n",
    "b3_single": "b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90\n",
    "b3_single_debug": "b3: 80f198ee56343ba8-e457b5a2e4d86bd1-d\n",
    "b3_multi": "X-B3-TraceId: 80f198ee56343ba864fe8b2a57d3eff7\nX-B3-SpanId: e457b5a2e4d86bd1\n"
                "X-B3-ParentSpanId: 05e3ac9a4f6e3b90\nX-B3-Sampled: 1\n",
    "b3_multi_flags": "X-B3-TraceId: 463ac35c9f6413ad\nX-B3-SpanId: a2fb4a1d1a96d312\nX-B3-Flags: 1\n",
    "both": TP + "\nb3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0\nbaggage: k=v\n",
}
for name, text in sorted(PROP.items()):
    write("propagator", name, text)


# ---- OTLP: ids, flags, kind, status, times, dropped; lines: name, message, tracestate, service;
# ---- then attributes: type byte ((key index << 2) | value type), value
def otlp(name, msg, tracestate, service, attrs, flags=1, kind=2, status=2, parent=True):
    b = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736") + bytes.fromhex("00f067aa0ba902b7")
    b += bytes.fromhex("1111111111111111") if parent else bytes(8)
    b += bytes([flags, kind - 1, status]) + struct.pack(">QQ", 1700000000000000001, 1700000000123456789) + b"\x00"
    b += (name + "\n" + msg + "\n" + tracestate + "\n" + service + "\n").encode("latin-1")
    for key, typ, val in attrs:
        b += bytes([(key << 2) | typ])
        if typ == 0:
            b += val[0].encode("latin-1") + b"\n" + bytes([val[1]])
        elif typ == 1:
            b += struct.pack(">q", val)
        elif typ == 2:
            b += struct.pack(">d", val)
        else:
            b += bytes([val])
    return b


OTLP = {
    "server_span": otlp("GET orders", "", "rojo=00f067aa0ba902b7", "orders",
                        [(0, 0, ("GET", 0)), (1, 0, ("/api/orders", 0)), (2, 1, 200), (4, 1, 8080)], status=0),
    "error_span": otlp("POST /x", "upstream reset", "", "svc", [(2, 1, 503), (5, 0, ("reset", 0)), (7, 3, 1)]),
    "invalid_utf8": otlp("GET \xff\xfe", "bad \xc3", "", "s\xe9rvice", [(1, 0, ("/caf\xe9/\xf0\x9f", 4)), (3, 0, ("curl/8 \xe2\x82\xac", 9))]),
    "doubles": otlp("root", "", "", "x", [(6, 2, float("nan")), (6, 2, float("-inf")), (6, 2, -0.0), (6, 2, 1e300)], flags=3, kind=3, status=1, parent=False),
}
for name, data in sorted(OTLP.items()):
    write("otlp_encode", name, data)

# ---- Config: an environment line, then YAML (the examples, and small edge cases) ----
ENV = "API_TOKEN=secret;PORT=8080;EMPTY=;OTEL_HOST=collector"
for ex in ("console.yaml", "edge.yaml", "sidecar.yaml", "grpc.yaml"):
    with open(os.path.join(ROOT, "examples", ex), encoding="utf-8") as f:
        write("config", "example_" + ex.replace(".yaml", ""), ENV + "\n" + f.read())
CONFIG = {
    "substitution": "PORT=15001\nlisteners:\n  - name: in\n    address: \"127.0.0.1:${PORT}\"\n    routes:\n"
                    "      - match: { prefix: / }\n        cluster: app\nclusters:\n  - name: app\n"
                    "    endpoints: [ \"${UPSTREAM:-127.0.0.1:8080}\" ]\n",
    "http_exporter": "\ntracing:\n  exporter:\n    protocol: http/json\n    endpoint: https://[::1]:4318/v1/traces?x=1\n"
                     "    headers: { authorization: \"Bearer ${TOKEN:-none}\" }\n",
    "bad_duration": "\nlisteners:\n  - name: a\n    address: :1\n    routes:\n      - match: { path: /x }\n"
                    "        timeout: 10parsecs\n        direct_response: { status: 200 }\n",
    "bad_regex": "\ntracing:\n  ignore:\n    - { regex: \"(unclosed\" }\n",
    "unterminated_var": "X=1\nadmin: { address: \"${X\" }\n",
    "urls": "\nhttp://collector:4318\nhttps://user@host/\nhttp://[::1]:0/\nhttp://h:65536/\nhttps://a.b:443/p?q#f\n:8080\n[fe80::1]:9\n",
}
for name, text in sorted(CONFIG.items()):
    write("config", name, text)


# ---- Routes: counts byte; routes: kinds byte, path, host, method, headers (kind byte, name,
# ---- value); ignore rules: kind byte, value, header; then method, target, header lines ----
def route(path_kind, path, host="", method="", headers=()):
    b = bytes([path_kind | (len(headers) << 2)]) + (path + "\n" + host + "\n" + method + "\n").encode()
    for kind, name, value in headers:
        b += bytes([kind]) + (name + "\n" + value + "\n").encode()
    return b


def ignore(kind, value, header=""):
    return bytes([kind]) + (value + "\n" + header + "\n").encode()


def routes_input(routes, ignores, request):
    return bytes([(len(routes) - 1) | (len(ignores) << 2)]) + b"".join(routes) + b"".join(ignores) + request.encode()


ROUTES = {
    "edge": routes_input(
        [route(2, "/api/orders", "*.example.com", "POST", [(1, "x-canary", "1")]),
         route(1, "/ping"), route(3, "^/v[0-9]+/items/[a-z]+$", "", "GET"), route(0, "")],
        [ignore(0, "/health"), ignore(1, "/ready"), ignore(2, "^/metrics"), ignore(3, "kube-probe/*", "user-agent")],
        "POST\n/api/orders/7?debug=1\nHost: shop.example.com:443\nx-canary: 1\nUser-Agent: kube-probe/1.27\n"),
    "regex_headers": routes_input(
        [route(3, "(?i)^/API/", "", "", [(3, "authorization", "^Bearer [A-Za-z0-9._-]+$"), (2, "accept", "application/")])],
        [ignore(2, "\\.(css|js|png)$")],
        "GET\n/api/v1/static/app.js\nHost: [::1]:8080\nAuthorization: Bearer abc.def\nAccept: application/json\n"),
    "host_exact": routes_input([route(2, "/", "API.Example.com")], [], "GET\n/\nHost: api.example.COM\n"),
}
for name, data in sorted(ROUTES.items()):
    write("route_match", name, data)

# ---- Egress targets: an absolute-form or CONNECT target, as it follows the method ----
EGRESS_TARGETS = {
    "absolute": "http://api.example.com:8080/v1/orders?id=7",
    "absolute_default_port": "HTTP://Example.com",
    "absolute_ipv6_query": "http://[::1]:9000?x=1#frag",
    "absolute_userinfo": "http://user:secret@example.com/",
    "absolute_empty_port": "http://example.com:/x",
    "connect": "api.example.com:443",
    "connect_ipv4": "127.0.0.1:8443",
    "connect_ipv6": "[2001:db8::1]:443",
    "connect_no_port": "api.example.com",
    "connect_port_0": "api.example.com:0",
    "connect_big_port": "api.example.com:65536",
    "connect_path": "api.example.com:443/x",
    "connect_scheme": "https://api.example.com:443",
}
for name, target in sorted(EGRESS_TARGETS.items()):
    write("egress_target", name, target)
