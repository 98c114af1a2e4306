#!/usr/bin/env python3
"""Precision and recall of egress parent inference, per legacy server model and concurrency.

    tests/egress/parentage.py                      # all four models at concurrency 1, 8 and 32
    tests/egress/parentage.py --models single,prefork --concurrency 8 --requests 150
    tests/egress/parentage.py --markdown           # the table as README prints it
    tests/egress/parentage.py --egress 'KEY: VALUE'  # an extra line under egress: (a rule's
                                                     # switch), repeatable

For each (model, concurrency) it starts, from scratch:
  * B, the second service (in this process): answers every GET and records the traceparent it
    received per path;
  * the real sidetrace binary with an ingress listener in front of the app, the egress listener,
    and the console exporter (spans as JSON lines on its stdout);
  * the app, tests/integration/legacy_models.py --model MODEL (no tracing code, copies no
    header), with http_proxy pointing at the egress listener: for GET /req/ID it waits a random
    delay, calls http://B/req/ID, waits another and answers;
then sends N requests GET /req/0 .. /req/N-1 through the ingress listener from C concurrent
clients, stops sidetrace (SIGTERM flushes the spans) and classifies each request:
  correct      its egress CLIENT span's parent is its own inbound CLIENT span (the hop into the
               app) and the traceparent B received for /req/ID carries that trace, with the
               egress span as parent;
  wrong        the egress span has another parent, or B received a context that is not the
               egress span's: the inference joined the call to a request that did not cause it;
  unconnected  the egress span starts a new trace (sidetrace.parent.source=none); "linked" when
               one of its span links (the candidates in flight) is its own inbound CLIENT span.
precision = correct / (correct + wrong) and recall = correct / N. Also counted per
sidetrace.parent.source. A request the app did not answer 200 with B's 200, or whose spans are
missing, fails the run (the harness or the proxy broke, not the inference).

SIDETRACE_BIN in the environment, when set, wins over --sidetrace (as for the integration tests).
Exit status: 1 when any run has a wrong parent, a failed request or a missing span, or a recall
below --min-recall; 0 otherwise. Standard library only; no timing is asserted.
"""

import argparse
import http.client
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
APP = os.path.join(ROOT, "tests", "integration", "legacy_models.py")
MODELS = ["single", "prefork", "threaded", "asyncio"]
SOURCES = ["header", "request_id", "process", "single_inflight", "none"]


class Downstream:
    """Service B: 200 to every GET; the traceparent received per path (None when absent)."""

    def __init__(self):
        self.received = {}
        lock = threading.Lock()
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self):
                with lock:
                    received.setdefault(self.path, []).append(self.headers.get("traceparent"))
                body = b"B " + self.path.encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            # The default backlog (5) overflows under load: a dropped SYN is retried after 1 s,
            # past the egress connect timeout.
            request_queue_size = 128

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def sidetrace_yaml(app_port, workers, egress_extra):
    return """admin: { address: "127.0.0.1:0" }
workers: %d
listeners:
  - name: ingress
    address: "127.0.0.1:0"
    routes:
      - { name: app, match: { prefix: / }, cluster: app, timeout: 120s }
clusters:
  - name: app
    endpoints: [ "127.0.0.1:%d" ]
egress:
  address: "127.0.0.1:0"
  timeout: 60s
%stracing:
  service_name: legacy-app
  exporter: { protocol: console }
  batch: { schedule_delay: 100ms, max_queue_size: 65536 }
limits: { drain_timeout: 5s }
""" % (workers, app_port, "".join("  %s\n" % line for line in egress_extra))


def wait_for(what, predicate, proc, log_path, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            raise RuntimeError("%s: exited (%s) at start:\n%s" % (what, proc.returncode,
                                                                  read(log_path)[-3000:]))
        time.sleep(0.02)
    raise RuntimeError("%s: not ready after %.0f s:\n%s" % (what, timeout, read(log_path)[-3000:]))


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def read_ports(path):
    """--ports-file: {name: port} for listeners and 'admin'; None until written."""
    text = read(path)
    if not text:
        return None
    ports = {}
    for line in text.splitlines():
        fields = line.split(" ", 2)
        if fields[0] == "listener" and len(fields) == 3:
            ports[fields[2]] = int(fields[1].rsplit(":", 1)[1])
        elif fields[0] == "admin" and len(fields) == 2:
            ports["admin"] = int(fields[1].rsplit(":", 1)[1])
    return ports


def clean_env(extra):
    """No OTEL_* from the caller's shell, no proxy variables but the ones given."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OTEL_") and k.lower() not in ("http_proxy", "https_proxy",
                                                               "no_proxy", "all_proxy")}
    env.update(extra)
    return env


class Run:
    """One (model, concurrency) run: the processes, the load and the spans it produced."""

    def __init__(self, args, model, concurrency, tmp):
        self.args, self.model, self.concurrency, self.tmp = args, model, concurrency, tmp
        self.sidetrace = self.app = None
        self.answers = {}

    def start(self, downstream):
        cfg = os.path.join(self.tmp, "sidetrace.yaml")
        ports_file = os.path.join(self.tmp, "ports")
        self.spans_path = os.path.join(self.tmp, "spans.jsonl")
        self.log_path = os.path.join(self.tmp, "sidetrace.log")
        # The app's port is known only once it runs, and it needs the egress port to run: start
        # sidetrace with B as a placeholder upstream, then reload with the app's port.
        with open(cfg, "w") as f:
            f.write(sidetrace_yaml(downstream.port, self.args.workers, self.args.egress))
        self.sidetrace = subprocess.Popen(
            [self.args.sidetrace, "--config", cfg, "--ports-file", ports_file,
             "--log-level", "warn"],
            stdout=open(self.spans_path, "w"), stderr=open(self.log_path, "w"),
            env=clean_env({}))
        ports = wait_for("sidetrace", lambda: read_ports(ports_file), self.sidetrace,
                         self.log_path)
        self.ports = ports
        app_out = os.path.join(self.tmp, "app.out")
        self.app_log = os.path.join(self.tmp, "app.log")
        self.app = subprocess.Popen(
            [sys.executable, APP, "--model", self.model, "--downstream",
             "127.0.0.1:%d" % downstream.port, "--max-delay-ms", str(self.args.max_delay_ms)],
            stdout=open(app_out, "w"), stderr=open(self.app_log, "w"),
            env=clean_env({"http_proxy": "http://127.0.0.1:%d" % ports["egress"]}))
        app_port = wait_for("legacy_models.py", lambda: port_line(read(app_out)), self.app,
                            self.app_log)
        with open(cfg, "w") as f:
            f.write(sidetrace_yaml(app_port, self.args.workers, self.args.egress))
        req = urllib.request.Request("http://127.0.0.1:%d/reload" % ports["admin"], method="POST")
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=10) as r:
            if r.status != 200:
                raise RuntimeError("reload answered %d" % r.status)

    def load(self):
        """N requests from C clients, each on its own keep-alive connection to the ingress."""
        ids = iter(range(self.args.requests))
        lock = threading.Lock()

        def client():
            conn = None
            while True:
                with lock:
                    req_id = next(ids, None)
                if req_id is None:
                    break
                for attempt in range(2):  # a kept-alive connection the proxy closed: once more
                    try:
                        if conn is None:
                            conn = http.client.HTTPConnection("127.0.0.1",
                                                              self.ports["ingress"], timeout=120)
                        conn.request("GET", "/req/%d" % req_id)
                        r = conn.getresponse()
                        answer = "%d %s" % (r.status, r.read().decode(errors="replace"))
                        break
                    except (OSError, http.client.HTTPException) as e:
                        answer = "error %s" % e
                        conn.close()
                        conn = None
                with lock:
                    self.answers[req_id] = answer
            if conn is not None:
                conn.close()

        threads = [threading.Thread(target=client) for _ in range(self.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def stop(self):
        """SIGTERM: sidetrace drains and flushes its spans; returns its exit code."""
        rc = None
        if self.sidetrace is not None:
            self.sidetrace.send_signal(signal.SIGTERM)
            try:
                rc = self.sidetrace.wait(30)
            except subprocess.TimeoutExpired:
                self.sidetrace.kill()
                rc = self.sidetrace.wait()
        if self.app is not None:
            self.app.send_signal(signal.SIGTERM)
            try:
                self.app.wait(10)
            except subprocess.TimeoutExpired:
                self.app.kill()
                self.app.wait()
        return rc

    def spans(self):
        out = []
        for line in read(self.spans_path).splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


def port_line(text):
    for line in text.splitlines():
        if line.startswith("PORT "):
            return int(line.split()[1])
    return None


def span_path(span):
    """The path of a CLIENT span's url.full."""
    url = span.get("attributes", {}).get("url.full", "")
    rest = url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1] if "/" in rest else "/"


def classify(n, answers, spans, received):
    """Counts of correct / wrong / unconnected / failed / missing, per source, and examples."""
    inbound, outbound = {}, {}
    for s in spans:
        if s.get("kind") != "CLIENT":
            continue
        cluster = s.get("attributes", {}).get("sidetrace.cluster")
        table = outbound if cluster == "egress" else inbound if cluster == "app" else None
        if table is not None:
            table.setdefault(span_path(s), []).append(s)
    r = Counter()
    sources = Counter()
    problems = []
    for i in range(n):
        path = "/req/%d" % i
        answer = answers.get(i, "no answer")
        if not answer.startswith("200 200 "):
            r["failed"] += 1
            problems.append("%s failed: %s" % (path, answer[:200]))
            continue
        ins, outs, tps = inbound.get(path, []), outbound.get(path, []), received.get(path, [])
        if len(ins) != 1 or len(outs) != 1 or len(tps) != 1:
            r["missing"] += 1
            problems.append("%s: %d inbound CLIENT span(s), %d egress span(s), %d call(s) at B"
                            % (path, len(ins), len(outs), len(tps)))
            continue
        hop, out, tp = ins[0], outs[0], tps[0] or ""
        source = out.get("attributes", {}).get("sidetrace.parent.source", "?")
        sources[source] += 1
        tp_fields = tp.split("-")
        propagated = (len(tp_fields) == 4 and tp_fields[1] == out["trace_id"]
                      and tp_fields[2] == out["span_id"])
        if not propagated:
            verdict = "wrong"
            problems.append("%s: B got traceparent %r, the egress span is %s/%s"
                            % (path, tp, out["trace_id"], out["span_id"]))
        elif out["parent_span_id"] == "" and out["trace_id"] != hop["trace_id"]:
            verdict = "unconnected"
            own = {"trace_id": hop["trace_id"], "span_id": hop["span_id"]}
            if own in out.get("links", []):
                r["linked"] += 1  # a person can still get from the call to its request
        elif out["parent_span_id"] == hop["span_id"] and out["trace_id"] == hop["trace_id"]:
            verdict = "correct"
        else:
            verdict = "wrong"
            problems.append("%s: egress span parent %s/%s (%s), its inbound hop is %s/%s"
                            % (path, out["trace_id"], out["parent_span_id"], source,
                               hop["trace_id"], hop["span_id"]))
        r[verdict] += 1
        r[verdict + ":" + source] += 1
    return r, sources, problems


def self_check():
    """classify() on made-up spans with one request of each kind: the harness can tell them."""
    def span(trace, sid, parent, cluster, path, source=None):
        attrs = {"sidetrace.cluster": cluster, "url.full": "http://127.0.0.1:1" + path}
        if source:
            attrs["sidetrace.parent.source"] = source
        return {"trace_id": trace, "span_id": sid, "parent_span_id": parent, "kind": "CLIENT",
                "attributes": attrs}
    t = ["%032x" % (i + 1) for i in range(8)]
    linked = {"trace_id": t[2], "span_id": "a2"}
    spans = [
        span(t[0], "a0", "s0", "app", "/req/0"), span(t[0], "e0", "a0", "egress", "/req/0",
                                                      "single_inflight"),
        span(t[1], "a1", "s1", "app", "/req/1"), span(t[0], "e1", "a0", "egress", "/req/1",
                                                      "single_inflight"),
        span(t[2], "a2", "s2", "app", "/req/2"), span(t[5], "e2", "", "egress", "/req/2", "none"),
        span(t[6], "a6", "s6", "app", "/req/6"), span(t[7], "e6", "", "egress", "/req/6", "none"),
        span(t[3], "a3", "s3", "app", "/req/3"), span(t[3], "e3", "a3", "egress", "/req/3",
                                                      "process"),
        span(t[4], "a4", "s4", "app", "/req/4"),
    ]
    received = {"/req/0": ["00-%s-e0-01" % t[0]], "/req/1": ["00-%s-e1-01" % t[0]],
                "/req/2": ["00-%s-e2-01" % t[5]], "/req/3": ["00-%s-a3-01" % t[3]],
                "/req/4": [None], "/req/6": ["00-%s-e6-01" % t[7]]}
    by_id = {s["span_id"]: s for s in spans}
    by_id["e2"]["links"] = [{"trace_id": t[0], "span_id": "a0"}, linked]  # its own among them
    by_id["e6"]["links"] = [linked]  # another request's only
    answers = {i: "200 200 B" for i in range(7)}
    answers[5] = "200 599 refused"
    counts, sources, problems = classify(7, answers, spans, received)
    expected = {"correct": 1, "wrong": 2, "unconnected": 2, "linked": 1, "missing": 1,
                "failed": 1, "correct:single_inflight": 1, "wrong:single_inflight": 1,
                "wrong:process": 1, "unconnected:none": 2}
    if dict(counts) != expected or len(problems) != 4:
        sys.exit("self-check failed: %s, problems %s" % (dict(counts), problems))
    print("self-check: correct, wrong parent, wrong propagation, unconnected (linked or not), "
          "missing span and failed request each told apart")


def run_one(args, model, concurrency):
    tmp = tempfile.mkdtemp(prefix="parentage-%s-%d." % (model, concurrency))
    downstream = Downstream()
    run = Run(args, model, concurrency, tmp)
    try:
        run.start(downstream)
        t0 = time.monotonic()
        run.load()
        seconds = time.monotonic() - t0
    finally:
        rc = run.stop()
        downstream.close()
    counts, sources, problems = classify(args.requests, run.answers, run.spans(),
                                         downstream.received)
    if rc != 0:
        problems.append("sidetrace exited with status %s after SIGTERM" % rc)
        counts["failed"] += 1
    result = {"model": model, "concurrency": concurrency, "requests": args.requests,
              "seconds": round(seconds, 2), "counts": counts, "sources": sources,
              "problems": problems, "tmp": tmp}
    n = args.requests
    decided = counts["correct"] + counts["wrong"]
    result["precision"] = counts["correct"] / decided if decided else None
    result["recall"] = counts["correct"] / n if n else None
    failing = counts["wrong"] or counts["failed"] or counts["missing"] or (
        result["recall"] is not None and result["recall"] < args.min_recall)
    result["ok"] = not failing
    if failing or args.keep:
        result["log"] = read(run.log_path)[-2000:] + read(run.app_log)[-2000:]
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def fmt_ratio(x):
    return "—" if x is None else "%.3f" % x


def fmt_sources(sources):
    return " ".join("%s=%d" % (s, sources[s]) for s in SOURCES + sorted(set(sources) - set(SOURCES))
                    if sources[s])


def print_result(r, markdown):
    c = r["counts"]
    if markdown:
        print("| %s | %d | %d | %d | %d | %d (%d) | %s | %s | %s |" % (
            r["model"], r["concurrency"], r["requests"], c["correct"], c["wrong"],
            c["unconnected"], c["linked"], fmt_ratio(r["precision"]), fmt_ratio(r["recall"]),
            fmt_sources(r["sources"])))
    else:
        print("%-9s c=%-3d n=%-4d correct=%-4d wrong=%-3d unconnected=%-4d (linked %d) failed=%d "
              "missing=%d precision=%s recall=%s  %s  (%.1f s)" % (
                  r["model"], r["concurrency"], r["requests"], c["correct"], c["wrong"],
                  c["unconnected"], c["linked"], c["failed"], c["missing"], fmt_ratio(r["precision"]),
                  fmt_ratio(r["recall"]), fmt_sources(r["sources"]), r["seconds"]))
    for p in r["problems"][:10]:
        print("    " + p)
    if len(r["problems"]) > 10:
        print("    ... %d more" % (len(r["problems"]) - 10))
    if not r["ok"]:
        print("    FAILED; files kept in %s" % r["tmp"])
        if r.get("log"):
            print("    logs:\n" + "\n".join("      " + l for l in r["log"].splitlines()[-20:]))
    sys.stdout.flush()


def main():
    p = argparse.ArgumentParser(description="Precision and recall of egress parent inference "
                                "per legacy server model (see the file's docstring).")
    p.add_argument("--sidetrace", default=os.path.join(ROOT, "build", "proxy", "sidetrace"),
                   help="the binary (SIDETRACE_BIN in the environment wins)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    p.add_argument("--requests", type=int, default=400, help="per run")
    p.add_argument("--max-delay-ms", type=float, default=20.0,
                   help="the app waits up to this long before and after its call")
    p.add_argument("--egress", action="append", default=[], metavar="'KEY: VALUE'",
                   help="an extra line under egress: in sidetrace's config (repeatable)")
    p.add_argument("--workers", type=int, default=2, help="sidetrace worker threads")
    p.add_argument("--min-recall", type=float, default=0.0, help="fail a run below this recall")
    p.add_argument("--markdown", action="store_true", help="print the README table")
    p.add_argument("--keep", action="store_true", help="keep every run's files (spans, logs)")
    p.add_argument("--self-check", action="store_true",
                   help="only check the classification on made-up spans")
    args = p.parse_args()
    if args.self_check:
        self_check()
        return
    # The sanitizer stages point the integration tests at their build this way.
    args.sidetrace = os.environ.get("SIDETRACE_BIN") or args.sidetrace
    if not os.access(args.sidetrace, os.X_OK):
        sys.exit("parentage.py: no sidetrace binary at %s (build it, or pass --sidetrace)"
                 % args.sidetrace)
    models = [m for m in args.models.split(",") if m]
    for m in models:
        if m not in MODELS:
            sys.exit("parentage.py: unknown model %r (expected %s)" % (m, ", ".join(MODELS)))
    levels = [int(c) for c in args.concurrency.split(",") if c]
    if args.markdown:
        print("| server model | concurrency | requests | correct | wrong | unconnected (linked) | "
              "precision | recall | `sidetrace.parent.source` |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    ok = True
    for model in models:
        for c in levels:
            result = run_one(args, model, c)
            print_result(result, args.markdown)
            ok = ok and result["ok"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
