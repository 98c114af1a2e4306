#!/usr/bin/env python3
"""Reads a /metrics scrape taken with Accept: application/openmetrics-text with the Prometheus
client library's OpenMetrics parser (python3-prometheus-client), which enforces the format (# EOF,
counter naming, histogram rules, exemplar syntax), and checks the request duration exemplars.
Used by tests/integration/openmetrics_test.cc.

  check_openmetrics.py FILE SAMPLED_TRACE_ID UNSAMPLED_TRACE_ID

Exit 0 and print "ok" when: the text parses; counters are families without `_total` whose
samples end in `_total`; a bucket of sidetrace_request_duration_seconds{route="app"} carries an
exemplar with SAMPLED_TRACE_ID and a 16-hex-digit span_id, its value within the bucket; no
exemplar carries UNSAMPLED_TRACE_ID. Otherwise print every problem and exit 1.
"""
import math
import re
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

problems = []


def check(cond, what):
    if not cond:
        problems.append(what)


text = open(sys.argv[1], encoding="utf-8").read()
sampled, unsampled = sys.argv[2], sys.argv[3]
try:
    families = {f.name: f for f in text_string_to_metric_families(text)}
except Exception as e:  # the parser raises on anything malformed
    print("unparseable OpenMetrics exposition: %r" % e)
    sys.exit(1)

requests = families.get("sidetrace_downstream_requests")
check(requests is not None and requests.type == "counter",
      "sidetrace_downstream_requests: no counter family")
if requests is not None:
    check(all(s.name == "sidetrace_downstream_requests_total" for s in requests.samples),
          "counter samples must be named *_total")

hist = families.get("sidetrace_request_duration_seconds")
check(hist is not None and hist.type == "histogram", "sidetrace_request_duration_seconds: no histogram")
found = False
exemplars = 0
if hist is not None:
    lower = {}  # previous bucket bound per series
    for s in hist.samples:
        if not s.name.endswith("_bucket"):
            continue
        key = (s.labels.get("listener"), s.labels.get("route"))
        le = float(s.labels["le"])
        prev = lower.get(key, 0.0)
        lower[key] = le
        e = s.exemplar
        if e is None:
            continue
        exemplars += 1
        check(re.fullmatch(r"[0-9a-f]{32}", e.labels.get("trace_id", "")) is not None,
              "exemplar trace_id: %r" % e.labels)
        check(re.fullmatch(r"[0-9a-f]{16}", e.labels.get("span_id", "")) is not None,
              "exemplar span_id: %r" % e.labels)
        check(prev < e.value <= le or (math.isinf(le) and e.value > prev),
              "exemplar value %r outside bucket (%r, %r]" % (e.value, prev, le))
        check(e.timestamp is not None and e.timestamp.sec > 1.6e9, "exemplar timestamp %r" % (e.timestamp,))
        check(e.labels.get("trace_id") != unsampled, "an unsampled request's exemplar: %r" % e.labels)
        if s.labels.get("route") == "app" and e.labels.get("trace_id") == sampled:
            found = True
check(found, "no exemplar with trace_id %s on route app (%d exemplars)" % (sampled, exemplars))

if problems:
    print("\n".join(problems))
    sys.exit(1)
print("ok")
