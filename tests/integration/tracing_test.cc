// Trace context, B3, sampling and ignore rules, checked from both sides: what the upstream
// received and what the fake collector got.

#include <gtest/gtest.h>

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "tests/integration/h2_client.h"
#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;

const std::string kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
const std::string kParent = "00f067aa0ba902b7";

class TracingTest : public IntegrationTest {};

std::optional<RecordedRequest> findRequest(const std::vector<RecordedRequest>& reqs,
                                           const std::string& path) {
  for (const auto& r : reqs) {
    if (r.target.substr(0, r.target.find('?')) == path) {
      return r;
    }
  }
  return std::nullopt;
}

// 2. W3C trace context continued through the proxy.
TEST_F(TracingTest, TraceparentContinuedWithServerAndClientSpans) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  auto r = httpRequest(port(), "GET", "/api/orders?user=alice&token=s3cr3t",
                       {{"traceparent", "00-" + kTrace + "-" + kParent + "-01"},
                        {"tracestate", "vendor=abc,other=xyz"},
                        {"User-Agent", "it-client/1.0"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);

  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  auto tp_text = reqs[0].header("traceparent");
  ASSERT_TRUE(tp_text) << describeHeaders(reqs[0].headers);
  EXPECT_EQ(reqs[0].headerCount("traceparent"), 1u);
  auto tp = Traceparent::parse(*tp_text);
  ASSERT_TRUE(tp) << "malformed traceparent upstream: " << *tp_text;
  EXPECT_EQ(tp->version, "00");
  EXPECT_EQ(tp->trace_id, kTrace);
  EXPECT_NE(tp->parent_id, kParent) << "proxy must inject its CLIENT span id as parent";
  EXPECT_FALSE(isAllZero(tp->parent_id));
  EXPECT_EQ(tp->flags, "01");
  EXPECT_EQ(reqs[0].header("tracestate").value_or("<missing>"), "vendor=abc,other=xyz");

  auto spans = waitSpansSettled(otlp_, 2);
  ASSERT_EQ(spans.size(), 2u) << describeAll(spans);
  auto servers = spansOfKind(spans, 2);
  auto clients = spansOfKind(spans, 3);
  ASSERT_EQ(servers.size(), 1u) << describeAll(spans);
  ASSERT_EQ(clients.size(), 1u) << describeAll(spans);
  const auto& s = servers[0];
  const auto& c = clients[0];

  EXPECT_EQ(s.trace_id, kTrace);
  EXPECT_EQ(s.parent_span_id, kParent);
  EXPECT_TRUE(isLowerHex(s.span_id, 16) && !isAllZero(s.span_id)) << s.span_id;
  EXPECT_EQ(s.name, "GET app");
  EXPECT_EQ(c.trace_id, kTrace);
  EXPECT_EQ(c.parent_span_id, s.span_id) << "CLIENT span must be a child of the SERVER span";
  EXPECT_EQ(c.span_id, tp->parent_id) << "upstream parent id must be the CLIENT span id";
  EXPECT_EQ(c.name, "GET app");
  EXPECT_EQ(s.trace_state, "vendor=abc,other=xyz");

  SCOPED_TRACE(s.describe());
  EXPECT_EQ(s.str("http.request.method"), "GET");
  EXPECT_EQ(s.str("url.path"), "/api/orders");
  EXPECT_EQ(s.str("url.scheme"), "http");
  EXPECT_EQ(s.str("http.route"), "app");
  EXPECT_EQ(s.integer("http.response.status_code"), std::optional<int64_t>(200));
  EXPECT_EQ(s.str("server.address"), "127.0.0.1");
  EXPECT_EQ(s.str("client.address"), "127.0.0.1");
  EXPECT_EQ(s.str("network.protocol.version"), "1.1");
  EXPECT_EQ(s.str("user_agent.original"), "it-client/1.0");
  if (s.has("url.query")) {
    EXPECT_EQ(s.str("url.query"), "user=REDACTED&token=REDACTED");
  }
  // No attribute anywhere carries the raw query values.
  for (const auto& span : spans) {
    for (const auto& [k, v] : span.attributes) {
      EXPECT_EQ(v.s.find("s3cr3t"), std::string::npos) << k << " leaks the query";
      EXPECT_EQ(v.s.find("alice"), std::string::npos) << k << " leaks the query";
    }
  }
  EXPECT_EQ(s.status_code, 0);

  SCOPED_TRACE(c.describe());
  EXPECT_EQ(c.str("http.request.method"), "GET");
  EXPECT_EQ(c.str("server.address"), "127.0.0.1");
  EXPECT_EQ(c.integer("server.port"), std::optional<int64_t>(upstream_.port()));
  EXPECT_EQ(c.integer("http.response.status_code"), std::optional<int64_t>(200));
  EXPECT_EQ(c.status_code, 0);

  for (const auto& span : spans) {
    EXPECT_EQ(span.resourceStr("service.name"), "it-svc");
    EXPECT_EQ(span.resourceStr("telemetry.sdk.language"), "cpp");
    EXPECT_LE(span.start_ns, span.end_ns);
    EXPECT_GT(span.start_ns, 0u);
  }
}

TEST_F(TracingTest, NoIncomingContextStartsNewRootTrace) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  auto r = httpRequest(port(), "GET", "/api/root");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  auto tp = Traceparent::parse(reqs[0].header("traceparent").value_or(""));
  ASSERT_TRUE(tp) << describeHeaders(reqs[0].headers);
  EXPECT_FALSE(isAllZero(tp->trace_id));
  EXPECT_EQ(tp->flags, "01");

  auto spans = waitSpansSettled(otlp_, 2);
  auto servers = spansOfKind(spans, 2);
  auto clients = spansOfKind(spans, 3);
  ASSERT_EQ(servers.size(), 1u) << describeAll(spans);
  ASSERT_EQ(clients.size(), 1u) << describeAll(spans);
  EXPECT_EQ(servers[0].parent_span_id, "") << "root SERVER span must have no parent";
  EXPECT_EQ(servers[0].trace_id, tp->trace_id);
  EXPECT_EQ(clients[0].span_id, tp->parent_id);
}

// OTLP/gRPC to a collector's Unix socket (a node-local collector sharing a socket with the pod):
// the endpoint is handed to grpc++ as its unix: target, and the spans arrive.
TEST_F(TracingTest, SpansExportedToAUnixSocketCollector) {
  char dir_template[] = "/tmp/sidetrace-otlp-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string socket_path = std::string(dir_template) + "/otlp.sock";
  OtlpReceiver local(socket_path);
  ASSERT_EQ(local.endpoint(), "unix:" + socket_path);
  std::string yaml = standardConfigYaml(ProxyConfig{});
  const std::string from = "\"http://127.0.0.1:{{OTLP_PORT}}\"";
  ASSERT_NE(yaml.find(from), std::string::npos);
  yaml.replace(yaml.find(from), from.size(), "\"" + local.endpoint() + "\"");
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(yaml));
  auto r = httpRequest(port(), "GET", "/api/unix");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto spans = waitSpansSettled(local, 2);
  EXPECT_EQ(spansOfKind(spans, 2).size(), 1u) << describeAll(spans);
  EXPECT_EQ(spansOfKind(spans, 3).size(), 1u) << describeAll(spans);
  EXPECT_EQ(otlp_.spans().size(), 0u);
  stopProxyExpectClean();
  local.shutdown();
  std::filesystem::remove_all(dir_template);
}

// HTTP semantic conventions for a method they do not know: "_OTHER" plus the original, and a span
// named "HTTP {route}" (a client must not mint span names). A bare query item is a secret too.
TEST_F(TracingTest, UnknownMethodIsOtherAndBareQueryItemsAreRedacted) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  auto r = httpRequest(port(), "PROPFIND", "/api/dav?s3cr3t");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto spans = waitSpansSettled(otlp_, 2);
  ASSERT_EQ(spans.size(), 2u) << describeAll(spans);
  for (const auto& s : spans) {
    SCOPED_TRACE(s.describe());
    EXPECT_EQ(s.name, "HTTP app");
    EXPECT_EQ(s.str("http.request.method"), "_OTHER");
    EXPECT_EQ(s.str("http.request.method_original"), "PROPFIND");
    for (const auto& [k, v] : s.attributes) {
      EXPECT_EQ(v.s.find("s3cr3t"), std::string::npos) << k << " leaks the query";
    }
  }
  auto servers = spansOfKind(spans, 2);
  ASSERT_EQ(servers.size(), 1u);
  EXPECT_EQ(servers[0].str("url.query"), "REDACTED");
}

TEST_F(TracingTest, InvalidTraceparentStartsNewTrace) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  struct Case {
    std::string path, header, bad_trace;
  };
  const std::string upper = "4BF92F3577B34DA6A3CE929D0E0E4736";
  std::vector<Case> cases = {
      {"/api/inv-upper", "00-" + upper + "-00F067AA0BA902B7-01",
       "4bf92f3577b34da6a3ce929d0e0e4736"},
      {"/api/inv-zero", "00-00000000000000000000000000000000-" + kParent + "-01",
       "00000000000000000000000000000000"},
      {"/api/inv-version-ff", "ff-" + kTrace + "-" + kParent + "-01", kTrace},
  };
  for (const auto& tc : cases) {
    auto r = httpRequest(port(), "GET", tc.path, {{"traceparent", tc.header}});
    ASSERT_TRUE(r) << tc.path;
    EXPECT_EQ(r->status, 200) << tc.path;
  }
  auto reqs = upstream_.waitForRequests(cases.size(), milliseconds(5000));
  auto spans = waitSpansSettled(otlp_, 2 * cases.size());
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.path + " traceparent: " + tc.header);
    auto req = findRequest(reqs, tc.path);
    ASSERT_TRUE(req);
    auto tp = Traceparent::parse(req->header("traceparent").value_or(""));
    ASSERT_TRUE(tp) << describeHeaders(req->headers);
    EXPECT_NE(tp->trace_id, tc.bad_trace) << "invalid context must not be continued";
    EXPECT_FALSE(isAllZero(tp->trace_id));
    bool found = false;
    for (const auto& s : spansOfKind(spans, 2)) {
      if (s.trace_id == tp->trace_id) {
        found = true;
        EXPECT_EQ(s.parent_span_id, "") << s.describe();
      }
    }
    EXPECT_TRUE(found) << "no SERVER span for the new trace " << tp->trace_id << "\n"
                       << describeAll(spans);
  }
}

// 3. B3.
TEST_F(TracingTest, B3MultiInjectedUpstream) {
  ProxyConfig cfg;
  cfg.propagators = "[ b3multi ]";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  auto r = httpRequest(port(), "GET", "/api/b3");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  const auto& q = reqs[0];
  SCOPED_TRACE(describeHeaders(q.headers));
  auto trace = q.header("x-b3-traceid").value_or("");
  auto span = q.header("x-b3-spanid").value_or("");
  EXPECT_TRUE(isLowerHex(trace, 32)) << trace;
  EXPECT_TRUE(isLowerHex(span, 16)) << span;
  EXPECT_EQ(q.header("x-b3-sampled").value_or("<missing>"), "1");
  EXPECT_FALSE(q.hasHeader("traceparent")) << "only b3multi configured";

  auto spans = waitSpansSettled(otlp_, 2);
  auto clients = spansOfKind(spans, 3);
  ASSERT_EQ(clients.size(), 1u) << describeAll(spans);
  EXPECT_EQ(clients[0].trace_id, trace);
  EXPECT_EQ(clients[0].span_id, span);
}

TEST_F(TracingTest, B3SingleHeaderExtracted) {
  ProxyConfig cfg;
  cfg.propagators = "[ b3multi ]";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  auto r = httpRequest(port(), "GET", "/api/b3single", {{"b3", kTrace + "-" + kParent + "-1"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  SCOPED_TRACE(describeHeaders(reqs[0].headers));
  EXPECT_EQ(reqs[0].header("x-b3-traceid").value_or("<missing>"), kTrace);
  EXPECT_NE(reqs[0].header("x-b3-spanid").value_or(kParent), kParent);
  EXPECT_EQ(reqs[0].header("x-b3-sampled").value_or("<missing>"), "1");

  auto spans = waitSpansSettled(otlp_, 2);
  auto servers = spansOfKind(spans, 2);
  ASSERT_EQ(servers.size(), 1u) << describeAll(spans);
  EXPECT_EQ(servers[0].trace_id, kTrace);
  EXPECT_EQ(servers[0].parent_span_id, kParent);
}

// A header sent in several field lines (RFC 9110 §5.3): tracestate lines are one list, combined
// in order; the vendor state of the second line used to be lost.
TEST_F(TracingTest, TracestateLinesCombinedInOrder) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  auto r = httpRequest(port(), "GET", "/api/ts-lines",
                       {{"traceparent", "00-" + kTrace + "-" + kParent + "-01"},
                        {"tracestate", "rojo=1,congo=2"},
                        {"tracestate", "vendor=abc"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  SCOPED_TRACE(describeHeaders(reqs[0].headers));
  EXPECT_EQ(reqs[0].headerCount("tracestate"), 1u);
  EXPECT_EQ(reqs[0].header("tracestate").value_or("<missing>"), "rojo=1,congo=2,vendor=abc");
  auto spans = waitSpansSettled(otlp_, 2);
  auto servers = spansOfKind(spans, 2);
  ASSERT_EQ(servers.size(), 1u) << describeAll(spans);
  EXPECT_EQ(servers[0].trace_state, "rojo=1,congo=2,vendor=abc");
}

// The same over HTTP/2, where each field line is its own header field.
TEST_F(TracingTest, TracestateFieldsCombinedOverHttp2) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  H2Connection c(port());
  ASSERT_TRUE(c.connected()) << c.error();
  H2Request req;
  req.path = "/api/ts-h2";
  req.headers = {{"traceparent", "00-" + kTrace + "-" + kParent + "-01"},
                 {"tracestate", "rojo=1"},
                 {"tracestate", "congo=2"}};
  auto resp = c.request(req);
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->status, 200);
  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  SCOPED_TRACE(describeHeaders(reqs[0].headers));
  EXPECT_EQ(reqs[0].header("tracestate").value_or("<missing>"), "rojo=1,congo=2");
}

// traceparent is not a list: two lines are an invalid context, so a new trace starts (W3C),
// instead of continuing whichever came first.
TEST_F(TracingTest, TwoTraceparentLinesStartNewTrace) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  const std::string other = "11111111111111111111111111111111";
  auto r = httpRequest(port(), "GET", "/api/tp-lines",
                       {{"traceparent", "00-" + kTrace + "-" + kParent + "-01"},
                        {"traceparent", "00-" + other + "-" + kParent + "-01"},
                        {"tracestate", "rojo=1"}});
  ASSERT_TRUE(r);
  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  SCOPED_TRACE(describeHeaders(reqs[0].headers));
  EXPECT_EQ(reqs[0].headerCount("traceparent"), 1u);
  auto tp = Traceparent::parse(reqs[0].header("traceparent").value_or(""));
  ASSERT_TRUE(tp);
  EXPECT_NE(tp->trace_id, kTrace);
  EXPECT_NE(tp->trace_id, other);
  EXPECT_FALSE(reqs[0].hasHeader("tracestate")) << "tracestate belongs to the dropped context";
  auto spans = waitSpansSettled(otlp_, 2);
  auto servers = spansOfKind(spans, 2);
  ASSERT_EQ(servers.size(), 1u) << describeAll(spans);
  EXPECT_EQ(servers[0].parent_span_id, "");
}

// W3C level 2: the random flag (0x02) describes the trace id and travels with it.
TEST_F(TracingTest, RandomTraceFlagPassedOn) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  auto r = httpRequest(port(), "GET", "/api/random",
                       {{"traceparent", "00-" + kTrace + "-" + kParent + "-03"}});
  ASSERT_TRUE(r);
  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  auto tp = Traceparent::parse(reqs[0].header("traceparent").value_or(""));
  ASSERT_TRUE(tp) << describeHeaders(reqs[0].headers);
  EXPECT_EQ(tp->trace_id, kTrace);
  EXPECT_EQ(tp->flags, "03");
}

// B3 debug (force trace) used to be dropped on the way upstream.
TEST_F(TracingTest, B3DebugFlagPassedOn) {
  ProxyConfig cfg;
  cfg.propagators = "[ b3multi ]";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  auto r = httpRequest(port(), "GET", "/api/b3debug",
                       {{"X-B3-TraceId", kTrace}, {"X-B3-SpanId", kParent}, {"X-B3-Flags", "1"}});
  ASSERT_TRUE(r);
  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  SCOPED_TRACE(describeHeaders(reqs[0].headers));
  EXPECT_EQ(reqs[0].header("x-b3-traceid").value_or("<missing>"), kTrace);
  EXPECT_EQ(reqs[0].header("x-b3-flags").value_or("<missing>"), "1");
  EXPECT_FALSE(reqs[0].hasHeader("x-b3-sampled")) << "debug implies the sampling decision";
  auto spans = waitSpansSettled(otlp_, 2);
  EXPECT_EQ(spans.size(), 2u) << "debug implies sampled";
}

TEST_F(TracingTest, B3SingleDebugPassedOn) {
  ProxyConfig cfg;
  cfg.propagators = "[ b3 ]";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  auto r = httpRequest(port(), "GET", "/api/b3d", {{"b3", kTrace + "-" + kParent + "-d"}});
  ASSERT_TRUE(r);
  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  const std::string b3 = reqs[0].header("b3").value_or("<missing>");
  EXPECT_TRUE(b3.starts_with(kTrace + "-")) << b3;
  EXPECT_TRUE(b3.ends_with("-d")) << b3;
}

// 4. Sampling.
TEST_F(TracingTest, AlwaysOffExportsNothingAndPropagatesFlags00) {
  ProxyConfig cfg;
  cfg.sampler = "{ type: always_off }";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  auto a = httpRequest(port(), "GET", "/api/off-root");
  auto b = httpRequest(port(), "GET", "/api/off-child",
                       {{"traceparent", "00-" + kTrace + "-" + kParent + "-01"}});
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->status, 200);
  EXPECT_EQ(b->status, 200);
  auto reqs = upstream_.waitForRequests(2, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 2u);
  for (const auto& q : reqs) {
    SCOPED_TRACE(q.target);
    auto tp = Traceparent::parse(q.header("traceparent").value_or(""));
    ASSERT_TRUE(tp) << describeHeaders(q.headers);
    EXPECT_EQ(tp->flags, "00");
  }
  auto child = findRequest(reqs, "/api/off-child");
  ASSERT_TRUE(child);
  EXPECT_EQ(Traceparent::parse(child->header("traceparent").value_or(""))->trace_id, kTrace);
  // schedule_delay is 100ms: a second is plenty for anything queued to arrive.
  std::this_thread::sleep_for(milliseconds(1000));
  EXPECT_TRUE(otlp_.spans().empty()) << describeAll(otlp_.spans());
}

TEST_F(TracingTest, ParentBasedHonoursUnsampledParent) {
  ProxyConfig cfg;
  cfg.sampler = "{ type: parentbased_always_on }";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  auto r = httpRequest(port(), "GET", "/api/unsampled",
                       {{"traceparent", "00-" + kTrace + "-" + kParent + "-00"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  auto tp = Traceparent::parse(reqs[0].header("traceparent").value_or(""));
  ASSERT_TRUE(tp) << describeHeaders(reqs[0].headers);
  EXPECT_EQ(tp->trace_id, kTrace);
  EXPECT_EQ(tp->flags, "00");

  // Control: a sampled request afterwards is exported, so silence above is the sampler's doing.
  auto ctl = httpRequest(port(), "GET", "/api/control");
  ASSERT_TRUE(ctl);
  auto spans = waitSpansSettled(otlp_, 2);
  ASSERT_EQ(spans.size(), 2u) << describeAll(spans);
  for (const auto& s : spans) {
    EXPECT_NE(s.trace_id, kTrace) << "unsampled trace was exported: " << s.describe();
  }
}

// 5. Ignore rules.
TEST_F(TracingTest, IgnoredRequestsProxiedUntracedContextUntouched) {
  ProxyConfig cfg;
  cfg.ignore = R"([ { path: /health }, { header: user-agent, value: "kube-probe/*" } ])";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  const std::string tp_health = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  const std::string tp_probe = "00-" + kTrace + "-" + kParent + "-00";
  auto h = httpRequest(port(), "GET", "/health", {{"traceparent", tp_health}});
  auto p = httpRequest(port(), "GET", "/api/probe",
                       {{"traceparent", tp_probe}, {"User-Agent", "kube-probe/1.27"}});
  ASSERT_TRUE(h && p);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(p->status, 200);
  auto reqs = upstream_.waitForRequests(2, milliseconds(5000));
  auto hq = findRequest(reqs, "/health");
  auto pq = findRequest(reqs, "/api/probe");
  ASSERT_TRUE(hq && pq);
  EXPECT_EQ(hq->header("traceparent").value_or("<missing>"), tp_health);
  EXPECT_EQ(pq->header("traceparent").value_or("<missing>"), tp_probe);
  EXPECT_EQ(hq->headerCount("traceparent"), 1u);

  // Control request, traced; then exactly its two spans must be all there is.
  auto ctl = httpRequest(port(), "GET", "/api/traced", {{"User-Agent", "curl/8"}});
  ASSERT_TRUE(ctl);
  auto spans = waitSpansSettled(otlp_, 2, milliseconds(10000), milliseconds(800));
  ASSERT_EQ(spans.size(), 2u) << describeAll(spans);
  for (const auto& s : spans) {
    EXPECT_NE(s.trace_id, "0af7651916cd43dd8448eb211c80319c") << s.describe();
    EXPECT_NE(s.trace_id, kTrace) << s.describe();
    if (s.kind == 2) {
      EXPECT_EQ(s.str("url.path"), "/api/traced");
    }
  }
}

TEST_F(TracingTest, ExportRetriedAfterCollectorUnavailable) {
  otlp_.failNext(1);
  ASSERT_NO_FATAL_FAILURE(startProxy());
  auto r = httpRequest(port(), "GET", "/api/retry");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto spans = otlp_.waitForSpans(2, milliseconds(15000));
  EXPECT_EQ(spans.size(), 2u) << "spans lost after one UNAVAILABLE answer; export calls: "
                              << otlp_.exportCalls();
  EXPECT_GE(otlp_.exportCalls(), 2u);
}

}  // namespace
}  // namespace sidetrace::it
