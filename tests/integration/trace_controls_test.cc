// Steering traces through the real binary: Server-Timing handing the trace to the caller, the
// trust boundary per listener, per-route tracing and header attributes. What the client got, what
// the upstream received and what the fake collector recorded are checked together.

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "tests/integration/h2_client.h"
#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;

const std::string kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
const std::string kParent = "00f067aa0ba902b7";
const std::string kIncoming = "00-" + kTrace + "-" + kParent + "-01";

class TraceControlsTest : public IntegrationTest {};

// `traceparent;desc="00-…"` at the end of a Server-Timing value, parsed; nullopt when absent.
std::optional<Traceparent> serverTimingTraceparent(const std::string& value) {
  const std::string marker = "traceparent;desc=\"";
  const size_t at = value.rfind(marker);
  if (at == std::string::npos || value.back() != '"') {
    return std::nullopt;
  }
  const size_t start = at + marker.size();
  return Traceparent::parse(value.substr(start, value.size() - 1 - start));
}

ProxyConfig serverTimingConfig() {
  ProxyConfig c;
  c.ignore = "[ { path: /health } ]";
  c.tracing_extra = "  server_timing: true\n";
  return c;
}

// 6. The caller learns the trace id and the SERVER span's id; the upstream's own Server-Timing
// metrics stay, with ours appended.
TEST_F(TraceControlsTest, ServerTimingNamesTheServerSpanAndKeepsTheUpstreamsMetrics) {
  upstream_.on("/api/timed", Behavior::fixed(200, "ok", {{"Server-Timing", "db;dur=53"}}));
  ASSERT_NO_FATAL_FAILURE(startProxy(serverTimingConfig()));
  auto r = httpRequest(port(), "GET", "/api/timed", {{"traceparent", kIncoming}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->headerCount("server-timing"), 1u) << describeHeaders(r->headers);
  const std::string value = r->header("server-timing").value_or("");
  EXPECT_EQ(value.rfind("db;dur=53, traceparent;desc=\"", 0), 0u) << value;
  auto tp = serverTimingTraceparent(value);
  ASSERT_TRUE(tp) << value;
  EXPECT_EQ(tp->version, "00");
  EXPECT_EQ(tp->trace_id, kTrace);
  EXPECT_EQ(tp->flags, "01");

  auto spans = waitSpansSettled(otlp_, 2);
  auto servers = spansOfKind(spans, 2);
  ASSERT_EQ(servers.size(), 1u) << describeAll(spans);
  EXPECT_EQ(tp->parent_id, servers[0].span_id) << "Server-Timing must name the SERVER span";

  // A local reply has a SERVER span too; an ignored path has none, so nothing is added.
  auto ping = httpRequest(port(), "GET", "/ping");
  ASSERT_TRUE(ping);
  auto tp_ping = serverTimingTraceparent(ping->header("server-timing").value_or(""));
  ASSERT_TRUE(tp_ping) << describeHeaders(ping->headers);
  EXPECT_NE(tp_ping->trace_id, kTrace);
  auto health = httpRequest(port(), "GET", "/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_FALSE(health->header("server-timing")) << describeHeaders(health->headers);
}

// Over HTTP/2 as over HTTP/1, and an unsampled trace says so in the flags (it still exists: the
// upstream got its context).
TEST_F(TraceControlsTest, ServerTimingOverHttp2AndUnsampled) {
  ProxyConfig c = serverTimingConfig();
  c.sampler = "{ type: always_off }";
  ASSERT_NO_FATAL_FAILURE(startProxy(c));
  H2Connection h2(port());
  ASSERT_TRUE(h2.connected()) << h2.error();
  H2Request req;
  req.path = "/api/h2";
  auto r = h2.request(req);
  ASSERT_TRUE(r && r->ok()) << (r ? r->describe() : h2.error());
  auto tp = serverTimingTraceparent(r->header("server-timing").value_or(""));
  ASSERT_TRUE(tp) << r->describe();
  EXPECT_EQ(tp->flags, "00");
  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  auto up = Traceparent::parse(reqs[0].header("traceparent").value_or(""));
  ASSERT_TRUE(up) << describeHeaders(reqs[0].headers);
  EXPECT_EQ(up->trace_id, tp->trace_id) << "the caller's trace id is the one sent upstream";
  EXPECT_EQ(up->flags, "00");
}

// Off by default.
TEST_F(TraceControlsTest, NoServerTimingUnlessAskedFor) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  auto r = httpRequest(port(), "GET", "/api/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_FALSE(r->header("server-timing")) << describeHeaders(r->headers);
}

// One listener with `listener_extra` lines (e.g. trace_context), routes with their own tracing
// blocks, and `tracing_extra` lines under tracing:. Every route goes to the FakeUpstream.
std::string controlsYaml(const std::string& listener_extra, const std::string& tracing_extra,
                         const std::string& sampler = "{ type: parentbased_always_on }") {
  return R"(admin: { address: "127.0.0.1:{{ADMIN_PORT}}" }
workers: 2
listeners:
  - name: ingress
    address: "127.0.0.1:{{LISTEN_PORT}}"
)" + listener_extra +
         R"(    routes:
      - name: off
        match: { prefix: /off }
        cluster: app
        tracing: { enabled: false }
      - name: unsampled
        match: { prefix: /unsampled }
        cluster: app
        tracing: { sampler: { type: always_off } }
      - name: tagged
        match: { prefix: /tagged }
        cluster: app
        tracing:
          attributes: { team: checkout, tier: "1" }
          request_headers: [ x-route-only ]
      - name: app
        match: { prefix: / }
        cluster: app
clusters:
  - name: app
    endpoints: [ "127.0.0.1:{{UPSTREAM_PORT}}" ]
tracing:
  service_name: it-controls
  propagators: [ tracecontext, baggage, b3multi ]
  sampler: )" +
         sampler +
         R"(
  exporter: { protocol: grpc, endpoint: "http://127.0.0.1:{{OTLP_PORT}}", timeout: 2s }
  batch: { schedule_delay: 100ms }
)" + tracing_extra +
         "limits: { drain_timeout: 2s }\n";
}

// 5. restart: the caller's unsampled context neither continues nor decides: a new trace, sampled
// as a root, whose SERVER span links to what the caller sent; the upstream sees only the new
// context (no caller tracestate, b3 or baggage).
TEST_F(TraceControlsTest, RestartListenerStartsNewTraceLinkedToTheCaller) {
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(controlsYaml("    trace_context: restart\n", "")));
  const std::string unsampled = "00-" + kTrace + "-" + kParent + "-00";
  auto r = httpRequest(port(), "GET", "/api/restart",
                       {{"traceparent", unsampled},
                        {"tracestate", "vendor=abc"},
                        {"baggage", "user=alice"},
                        {"X-B3-TraceId", kTrace},
                        {"X-B3-SpanId", kParent},
                        {"X-B3-Sampled", "0"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  const auto& up = reqs[0];
  auto tp = Traceparent::parse(up.header("traceparent").value_or(""));
  ASSERT_TRUE(tp) << describeHeaders(up.headers);
  EXPECT_EQ(up.headerCount("traceparent"), 1u);
  EXPECT_NE(tp->trace_id, kTrace);
  EXPECT_EQ(tp->flags, "01");
  EXPECT_FALSE(up.header("tracestate")) << describeHeaders(up.headers);
  EXPECT_FALSE(up.header("baggage")) << describeHeaders(up.headers);
  EXPECT_EQ(up.header("x-b3-traceid").value_or(""), tp->trace_id);
  EXPECT_EQ(up.headerCount("x-b3-spanid"), 1u);
  EXPECT_EQ(up.header("x-b3-sampled").value_or(""), "1");

  auto spans = waitSpansSettled(otlp_, 2);
  auto servers = spansOfKind(spans, 2);
  ASSERT_EQ(servers.size(), 1u) << describeAll(spans);
  const auto& s = servers[0];
  EXPECT_EQ(s.trace_id, tp->trace_id);
  EXPECT_EQ(s.parent_span_id, "") << "a restarted trace has a root SERVER span";
  ASSERT_EQ(s.links.size(), 1u) << s.describe();
  EXPECT_EQ(s.links[0].first, kTrace);
  EXPECT_EQ(s.links[0].second, kParent);
}

// ignore, over HTTP/2: the caller's sampled context is disregarded (no parent, no link), and the
// sampler decides as for a root.
TEST_F(TraceControlsTest, IgnoreListenerOverHttp2DisregardsTheCaller) {
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(controlsYaml("    trace_context: ignore\n", "")));
  H2Connection h2(port());
  ASSERT_TRUE(h2.connected()) << h2.error();
  H2Request req;
  req.path = "/api/ignore";
  req.headers = {{"traceparent", kIncoming}, {"baggage", "user=alice"}};
  auto r = h2.request(req);
  ASSERT_TRUE(r && r->ok()) << (r ? r->describe() : h2.error());
  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  auto tp = Traceparent::parse(reqs[0].header("traceparent").value_or(""));
  ASSERT_TRUE(tp) << describeHeaders(reqs[0].headers);
  EXPECT_NE(tp->trace_id, kTrace);
  EXPECT_FALSE(reqs[0].header("baggage")) << describeHeaders(reqs[0].headers);
  auto spans = waitSpansSettled(otlp_, 2);
  auto servers = spansOfKind(spans, 2);
  ASSERT_EQ(servers.size(), 1u) << describeAll(spans);
  EXPECT_EQ(servers[0].trace_id, tp->trace_id);
  EXPECT_EQ(servers[0].parent_span_id, "");
  EXPECT_TRUE(servers[0].links.empty()) << servers[0].describe();
}

// ignore with a sampler that samples no root: the caller's sampled flag cannot force a trace.
TEST_F(TraceControlsTest, UntrustedSampledFlagDoesNotDecideSampling) {
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(
      controlsYaml("    trace_context: restart\n", "", "{ type: parentbased_always_off }")));
  auto r = httpRequest(port(), "GET", "/api/forced", {{"traceparent", kIncoming}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  auto tp = Traceparent::parse(reqs[0].header("traceparent").value_or(""));
  ASSERT_TRUE(tp) << describeHeaders(reqs[0].headers);
  EXPECT_NE(tp->trace_id, kTrace);
  EXPECT_EQ(tp->flags, "00");
  // The sampler decided as for a root, and said no: nothing is exported.
  EXPECT_TRUE(waitSpansSettled(otlp_, 1, milliseconds(1500)).empty());
}

// 4. Per route: tracing off passes the context on untouched with no span; an own sampler that
// samples nothing still propagates (flags 00); static attributes on both spans; /config_dump
// shows the values in effect.
TEST_F(TraceControlsTest, PerRouteTracingSamplerAndAttributes) {
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(controlsYaml("", "", "{ type: always_on }")));
  ASSERT_TRUE(httpRequest(port(), "GET", "/off/a", {{"traceparent", kIncoming}}));
  ASSERT_TRUE(httpRequest(port(), "GET", "/unsampled/b", {{"traceparent", kIncoming}}));
  auto tagged = httpRequest(port(), "GET", "/tagged/c");
  ASSERT_TRUE(tagged);
  EXPECT_EQ(tagged->status, 200);
  auto reqs = upstream_.waitForRequests(3, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 3u);
  for (const auto& req : reqs) {
    if (req.target == "/off/a") {
      EXPECT_EQ(req.header("traceparent").value_or(""), kIncoming) << "passed on untouched";
    } else if (req.target == "/unsampled/b") {
      auto tp = Traceparent::parse(req.header("traceparent").value_or(""));
      ASSERT_TRUE(tp) << describeHeaders(req.headers);
      EXPECT_EQ(tp->trace_id, kTrace);
      EXPECT_NE(tp->parent_id, kParent);
      EXPECT_EQ(tp->flags, "00") << "the route's sampler said no";
    }
  }
  auto spans = waitSpansSettled(otlp_, 2);
  ASSERT_EQ(spans.size(), 2u) << "only the tagged route is exported: " << describeAll(spans);
  for (const auto& span : spans) {
    SCOPED_TRACE(span.describe());
    EXPECT_EQ(span.str("http.route"), "tagged");
    EXPECT_EQ(span.str("team"), "checkout");
    EXPECT_EQ(span.str("tier"), "1");
  }

  auto dump = httpRequest(proc_.adminPort(), "GET", "/config_dump");
  ASSERT_TRUE(dump && dump->status == 200);
  EXPECT_NE(dump->body.find(R"("enabled": false,
            "sampler": {
              "type": "always_on",)"),
            std::string::npos)
      << dump->body;
  EXPECT_NE(dump->body.find(R"("sampler": {
              "type": "always_off",)"),
            std::string::npos)
      << dump->body;
  EXPECT_NE(dump->body.find(R"("team": "checkout",)"), std::string::npos) << dump->body;
  EXPECT_NE(dump->body.find(R"("trace_context": "trust")"), std::string::npos) << dump->body;
}

const std::string kHeaderLists = R"(  request_headers: [ X-Tenant, authorization ]
  response_headers: [ x-cache ]
  allow_sensitive_headers: [ authorization ]
)";

// 3. Listed headers as string arrays on the SERVER span (the request as it came) and the CLIENT
// span (the request it sent, the response it got); a route adds its own names; a sensitive
// header only with the explicit override.
TEST_F(TraceControlsTest, HeaderAttributesOnServerAndClientSpans) {
  upstream_.onPrefix("/tagged", Behavior::fixed(200, "ok", {{"X-Cache", "HIT"}}));
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(controlsYaml("", kHeaderLists)));
  auto r = httpRequest(port(), "GET", "/tagged/h",
                       {{"X-Tenant", "acme"},
                        {"x-tenant", "beta, gamma"},
                        {"Authorization", "Bearer t0k3n"},
                        {"X-Route-Only", "yes"},
                        {"X-Unlisted", "no"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto spans = waitSpansSettled(otlp_, 2);
  auto servers = spansOfKind(spans, 2);
  auto clients = spansOfKind(spans, 3);
  ASSERT_EQ(servers.size(), 1u) << describeAll(spans);
  ASSERT_EQ(clients.size(), 1u) << describeAll(spans);
  using Strings = std::vector<std::string>;
  for (const auto* span : {&servers[0], &clients[0]}) {
    SCOPED_TRACE(span->describe());
    EXPECT_EQ(span->strings("http.request.header.x-tenant"),
              std::optional<Strings>(Strings{"acme", "beta, gamma"}));
    EXPECT_EQ(span->strings("http.request.header.authorization"),
              std::optional<Strings>(Strings{"Bearer t0k3n"}));
    EXPECT_EQ(span->strings("http.request.header.x-route-only"),
              std::optional<Strings>(Strings{"yes"}));
    EXPECT_EQ(span->strings("http.response.header.x-cache"),
              std::optional<Strings>(Strings{"HIT"}));
    EXPECT_FALSE(span->has("http.request.header.x-unlisted"));
  }
}

// The same policy for an HTTP/2 request, and a route that does not add names records only the
// tracing section's.
TEST_F(TraceControlsTest, HeaderAttributesOverHttp2) {
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(controlsYaml("", kHeaderLists)));
  H2Connection h2(port());
  ASSERT_TRUE(h2.connected()) << h2.error();
  H2Request req;
  req.path = "/api/h2-headers";
  req.headers = {{"x-tenant", "acme"}, {"x-tenant", "beta"}, {"x-route-only", "no"}};
  auto r = h2.request(req);
  ASSERT_TRUE(r && r->ok()) << (r ? r->describe() : h2.error());
  auto spans = waitSpansSettled(otlp_, 2);
  auto servers = spansOfKind(spans, 2);
  ASSERT_EQ(servers.size(), 1u) << describeAll(spans);
  EXPECT_EQ(servers[0].strings("http.request.header.x-tenant"),
            std::optional<std::vector<std::string>>(std::vector<std::string>{"acme", "beta"}))
      << servers[0].describe();
  EXPECT_FALSE(servers[0].has("http.request.header.x-route-only")) << servers[0].describe();
}

// A credential header in a list without the override: the binary refuses the config, naming the
// key and its line.
TEST_F(TraceControlsTest, SensitiveHeaderWithoutOverrideIsAConfigError) {
  std::string bad = proc_.writeFile("bad.yaml", controlsYaml("", R"(  request_headers:
    - x-tenant
    - Cookie
)"),
                                    vars());
  ASSERT_TRUE(proc_.start({"--validate", "--config", bad}));
  auto r = proc_.wait();
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.code, 1);
  const std::string err = proc_.stderrText();
  EXPECT_NE(err.find("bad.yaml:35: tracing.request_headers[1]: 'cookie' carries credentials"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("tracing.allow_sensitive_headers"), std::string::npos) << err;
}

// The zero-config sidecar takes the boundary from --trace-context: the caller's context and
// baggage do not reach the app, and the exported SERVER span links to what the caller sent.
TEST_F(TraceControlsTest, ZeroConfigTraceContextFlag) {
  ASSERT_TRUE(proc_.start(
      {"--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:" + std::to_string(upstream_.port()),
       "--otlp-endpoint", otlp_.endpoint(), "--admin", "127.0.0.1:0", "--workers", "1",
       "--trace-context", "restart"},
      {{"OTEL_BSP_SCHEDULE_DELAY", "200"}}));
  ASSERT_TRUE(proc_.waitReady()) << proc_.logs();
  auto r = httpRequest(proc_.listenPort(), "GET", "/zero",
                       {{"traceparent", kIncoming}, {"baggage", "user=alice"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  auto tp = Traceparent::parse(reqs[0].header("traceparent").value_or(""));
  ASSERT_TRUE(tp) << describeHeaders(reqs[0].headers);
  EXPECT_NE(tp->trace_id, kTrace);
  EXPECT_FALSE(reqs[0].header("baggage")) << describeHeaders(reqs[0].headers);
  auto spans = waitSpansSettled(otlp_, 2);
  auto servers = spansOfKind(spans, 2);
  ASSERT_EQ(servers.size(), 1u) << describeAll(spans);
  EXPECT_EQ(servers[0].trace_id, tp->trace_id);
  ASSERT_EQ(servers[0].links.size(), 1u) << servers[0].describe();
  EXPECT_EQ(servers[0].links[0].first, kTrace);
}

}  // namespace
}  // namespace sidetrace::it
