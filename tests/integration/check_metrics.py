#!/usr/bin/env python3
"""Reads a /metrics scrape with the Prometheus client library's own text parser (Debian package
python3-prometheus-client) and checks the families, types, labels and values that dashboards and
alerts rely on. Used by tests/integration/metrics_test.cc after it has sent, through the standard
test config: >= 3 requests to route "app" (200), one with no route (404), one to route "dead" (502).

Exit 0 and print "ok" when everything holds; otherwise print every problem and exit 1.
"""
import math
import sys

from prometheus_client.parser import text_string_to_metric_families

problems = []


def check(cond, what):
    if not cond:
        problems.append(what)


text = open(sys.argv[1], encoding="utf-8").read()
try:
    families = {f.name: f for f in text_string_to_metric_families(text)}
except Exception as e:  # the parser raises on anything malformed
    print("unparseable exposition: %r" % e)
    sys.exit(1)

# The client library strips "_total" from counter family names.
expected_types = {
    "sidetrace_downstream_requests": "counter",
    "sidetrace_request_duration_seconds": "histogram",
    "sidetrace_downstream_connections_active": "gauge",
    "sidetrace_downstream_connections": "counter",
    "sidetrace_downstream_rejected": "counter",
    "sidetrace_downstream_connections_overflow": "counter",
    "sidetrace_downstream_accept_failures": "counter",
    "sidetrace_downstream_tls_handshake_failures": "counter",  # HELP/TYPE even without TLS listeners
    "sidetrace_upstream_responses": "counter",
    "sidetrace_upstream_duration_seconds": "histogram",
    "sidetrace_upstream_connect_failures": "counter",
    "sidetrace_upstream_timeouts": "counter",
    "sidetrace_upstream_tls_handshake_failures": "counter",  # HELP/TYPE even without TLS clusters
    "sidetrace_upstream_retries": "counter",
    "sidetrace_upstream_circuit_breaker_trips": "counter",
    "sidetrace_upstream_ejections": "counter",
    "sidetrace_upstream_endpoint_healthy": "gauge",
    "sidetrace_spans_started": "counter",
    "sidetrace_spans_sampled": "counter",
    "sidetrace_spans_exported": "counter",
    "sidetrace_spans_dropped": "counter",
    "sidetrace_spans_rejected": "counter",
    "sidetrace_export_requests": "counter",
    "sidetrace_export_queue_size": "gauge",
    "sidetrace_process_resident_memory_bytes": "gauge",
    "sidetrace_process_start_time_seconds": "gauge",
    "sidetrace_uptime_seconds": "gauge",
    "sidetrace_draining": "gauge",
}
for name, kind in expected_types.items():
    f = families.get(name)
    check(f is not None, "family %s missing" % name)
    if f is not None:
        check(f.type == kind, "%s has type %s, want %s" % (name, f.type, kind))
        check(bool(f.documentation), "%s has no HELP text" % name)
for name in families:
    check(name.startswith("sidetrace_"), "family %s is not named sidetrace_*" % name)


def samples(family, suffix="", **labels):
    f = families.get(family)
    if f is None:
        return []
    return [s for s in f.samples
            if s.name == family + suffix and all(s.labels.get(k) == v for k, v in labels.items())]


def value(family, suffix="", **labels):
    return sum(s.value for s in samples(family, suffix, **labels))


check(value("sidetrace_downstream_requests", "_total", listener="ingress", route="app",
            status_class="2xx") >= 3, "fewer than 3 2xx requests on route app")
check(value("sidetrace_downstream_requests", "_total", listener="ingress", route="",
            status_class="4xx") >= 1, "the 404 (no route) is not counted as 4xx with route=\"\"")
check(value("sidetrace_downstream_requests", "_total", route="dead", status_class="5xx") >= 1,
      "the 502 on route dead is not counted")
check(value("sidetrace_upstream_connect_failures", "_total", cluster="dead") >= 1,
      "connect failure to cluster dead not counted")
check(value("sidetrace_upstream_responses", "_total", cluster="app", status_class="2xx") >= 3,
      "upstream 2xx responses of cluster app not counted")
check(value("sidetrace_spans_started", "_total") >= 6, "spans started < 6")
check(value("sidetrace_uptime_seconds") > 0, "uptime not positive")
check(value("sidetrace_process_start_time_seconds") > 1.7e9, "start time not a Unix time")
check(value("sidetrace_process_resident_memory_bytes") > 1e6, "RSS implausible")


def check_histogram(family, min_count, **labels):
    buckets = samples(family, "_bucket", **labels)
    check(len(buckets) > 2, "%s%s: no buckets" % (family, labels))
    if not buckets:
        return
    bounds = [(float(s.labels["le"]), s.value) for s in buckets]
    check(bounds == sorted(bounds), "%s%s: buckets out of order or not cumulative" % (family, labels))
    counts = [v for _, v in sorted(bounds)]
    check(all(a <= b for a, b in zip(counts, counts[1:])), "%s%s: buckets not cumulative" % (family, labels))
    check(math.isinf(sorted(bounds)[-1][0]), "%s%s: no +Inf bucket" % (family, labels))
    count = value(family, "_count", **labels)
    check(count == counts[-1], "%s%s: _count %s != +Inf bucket %s" % (family, labels, count, counts[-1]))
    check(count >= min_count, "%s%s: count %s < %s" % (family, labels, count, min_count))
    total = value(family, "_sum", **labels)
    check(total > 0 if count else total == 0, "%s%s: implausible _sum %s" % (family, labels, total))


check_histogram("sidetrace_request_duration_seconds", 3, listener="ingress", route="app")
check_histogram("sidetrace_upstream_duration_seconds", 3, cluster="app")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print("ok")
