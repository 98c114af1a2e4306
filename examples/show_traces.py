#!/usr/bin/env python3
"""Pretty-print spans from sidetrace's console exporter as trace trees.

Reads JSON lines (one span per line, as the console exporter writes them on stdout) from the files
given as arguments, or stdin; lines that are not span JSON are ignored. Prints one block per trace:

    trace 4bf92f3577b34da6a3ce929d0e0e4736
      GET default  SERVER  1.2 ms  UNSET  status=200 route=default span=5c0b4e7fd2d3a0e1  (parent 00f067aa0ba902b7 from caller)
        GET default  CLIENT  1.1 ms  UNSET  status=200 route=default upstream=127.0.0.1:8080 span=9ade356c61a90390

    sidetrace ... | python3 examples/show_traces.py
    python3 examples/show_traces.py spans.jsonl

Standard library only.
"""

import json
import sys
from collections import OrderedDict


def load_spans(lines):
    spans = []
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("trace_id") and obj.get("span_id"):
            spans.append(obj)
    return spans


def _start(span):
    try:
        return int(span.get("start_unix_nanos", 0))
    except (TypeError, ValueError):
        return 0


def _duration_ms(span):
    d = span.get("duration_ms")
    if isinstance(d, (int, float)):
        return float(d)
    try:
        return (int(span["end_unix_nanos"]) - int(span["start_unix_nanos"])) / 1e6
    except (KeyError, TypeError, ValueError):
        return 0.0


def describe(span):
    attrs = span.get("attributes") or {}
    parts = [
        span.get("name", "?"),
        span.get("kind", "?"),
        "%.1f ms" % _duration_ms(span),
        span.get("status", "UNSET"),
    ]
    if span.get("status_message"):
        parts[-1] += " (%s)" % span["status_message"]
    extra = []
    if "http.response.status_code" in attrs:
        extra.append("status=%s" % attrs["http.response.status_code"])
    if "http.route" in attrs:
        extra.append("route=%s" % attrs["http.route"])
    if span.get("kind") == "CLIENT" and "server.address" in attrs:
        hostport = str(attrs["server.address"])
        if "server.port" in attrs:
            hostport += ":%s" % attrs["server.port"]
        extra.append("upstream=%s" % hostport)
    if "error.type" in attrs:
        extra.append("error=%s" % attrs["error.type"])
    if "sidetrace.parent.source" in attrs:  # an egress span: which rule chose its parent
        extra.append("parent.source=%s" % attrs["sidetrace.parent.source"])
    if span.get("links"):  # an egress span without a parent: the inbound spans it could be
        extra.append("links=%d" % len(span["links"]))
    line = "  ".join(parts)
    extra.append("span=%s" % span.get("span_id", "?"))
    if extra:
        line += "  " + " ".join(extra)
    return line


def render(spans, out):
    traces = OrderedDict()
    for span in sorted(spans, key=_start):
        traces.setdefault(span["trace_id"], []).append(span)

    for trace_id, members in traces.items():
        by_id = {s["span_id"]: s for s in members}
        children = {}
        roots = []
        for s in members:  # already sorted by start time
            parent = s.get("parent_span_id") or ""
            if parent and parent in by_id and parent != s["span_id"]:
                children.setdefault(parent, []).append(s)
            else:
                roots.append(s)

        services = list(OrderedDict.fromkeys(s.get("service", "") for s in members))
        several = len(services) > 1  # a trace across sidecars: name each span's service
        out.write("trace %s%s\n" % (trace_id, "  [%s]" % services[0]
                                      if services[0] and not several else ""))
        seen = set()

        def walk(span, depth):
            if span["span_id"] in seen:  # guard against cycles in bad input
                return
            seen.add(span["span_id"])
            prefix = "[%s] " % span.get("service", "") if several else ""
            line = "  " * (depth + 1) + prefix + describe(span)
            parent = span.get("parent_span_id") or ""
            if depth == 0 and parent and parent not in by_id:
                line += "  (parent %s from caller)" % parent
            out.write(line + "\n")
            for child in children.get(span["span_id"], []):
                walk(child, depth + 1)

        for root in roots:
            walk(root, 0)
        out.write("\n")
    return len(traces)


def main(argv):
    if len(argv) > 1 and argv[1] in ("-h", "--help"):
        sys.stdout.write(__doc__)
        return 0
    spans = []
    if len(argv) > 1:
        for path in argv[1:]:
            with open(path, encoding="utf-8", errors="replace") as f:
                spans.extend(load_spans(f))
    else:
        spans = load_spans(sys.stdin)
    if not spans:
        sys.stdout.write("(no spans found)\n")
        return 0
    n = render(spans, sys.stdout)
    sys.stdout.write("%d span(s) in %d trace(s)\n" % (len(spans), n))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
