// gRPC through the real binary with real grpc++ peers (grpc_echo_server.h, grpc_echo_client.h):
// all four call kinds over h2c and TLS (ALPN h2) to a `protocol: http2` cluster, statuses and
// trailers passed through, the proxy's own trailers-only answers (upstream down, deadline, no
// route), multiplexing, flow control with large messages, health checks and ignore rules, and the
// gRPC span contract (name package.Service/Method, rpc.* attributes, ERROR by status code).
// Raw-frame checks that grpc++ hides (trailers-only shape, grpc-timeout without a client-side
// deadline) use the nghttp2 test client (h2_client.h).

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <set>
#include <thread>

#include "echo.pb.h"
#include "tests/integration/grpc_echo_client.h"
#include "tests/integration/grpc_echo_server.h"
#include "tests/integration/h2_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_pki.h"
#include "tests/integration/tls_client.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;

constexpr int kOk = 0;
constexpr int kDeadlineExceeded = 4;
constexpr int kNotFound = 5;
constexpr int kUnimplemented = 12;
constexpr int kInternal = 13;
constexpr int kUnavailable = 14;
constexpr int kSpanError = 2;  // OTLP Status.code ERROR

const char* kService = "sidetrace.test.Echo";

// Knobs of the gRPC config (grpcConfigYaml).
struct GrpcProxyConfig {
  std::string echo_timeout{};       // route timeout of the Echo route, e.g. "200ms"; "" = default
  std::string ignore{};             // tracing ignore rules (YAML flow list); "" = none
  std::string tls{};                // listener tls (YAML flow map); "" = plain
  uint16_t endpoint_port = 0;       // the echo cluster's endpoint; 0 = the EchoServer
  std::string cluster_tls{};        // the echo cluster's tls (YAML flow map); "" = plaintext
  std::string retry_policy{};       // the Echo route's retry_policy (YAML flow map); "" = none
  uint16_t first_endpoint = 0;      // another endpoint before the echo one (round robin); 0 = none
  std::string outlier_detection{};  // the echo cluster's (YAML flow map); "" = the default
};

// The SERVER and CLIENT span of one proxied call.
struct CallSpans {
  std::optional<FlatSpan> server;
  std::optional<FlatSpan> client;
};

CallSpans spansNamed(const std::vector<FlatSpan>& spans, const std::string& name) {
  CallSpans out;
  for (const auto& s : spans) {
    if (s.name != name) {
      continue;
    }
    if (s.kind == 2 && !out.server) {
      out.server = s;
    } else if (s.kind == 3 && !out.client) {
      out.client = s;
    }
  }
  return out;
}

std::string frameGrpc(const std::string& message) {
  std::string f(5, '\0');
  uint32_t n = static_cast<uint32_t>(message.size());
  f[1] = static_cast<char>(n >> 24);
  f[2] = static_cast<char>(n >> 16);
  f[3] = static_cast<char>(n >> 8);
  f[4] = static_cast<char>(n);
  return f + message;
}

// One gRPC call as raw h2c frames (H2Connection), for what grpc++ hides: whether the answer
// was trailers-only (grpc-status in the one HEADERS block, no trailers), and a grpc-timeout sent
// without any client-side deadline.
std::optional<H2Response> rawGrpcCall(uint16_t port, const std::string& path,
                                      const std::string& message, const Headers& extra = {}) {
  H2Connection c(port);
  if (!c.connected()) {
    ADD_FAILURE() << "h2c connect: " << c.error();
    return std::nullopt;
  }
  H2Request r;
  r.method = "POST";
  r.path = path;
  r.authority = "127.0.0.1:" + std::to_string(port);
  r.headers = {{"content-type", "application/grpc"}, {"te", "trailers"}};
  r.headers.insert(r.headers.end(), extra.begin(), extra.end());
  r.body = frameGrpc(message);
  return c.request(r, milliseconds(10000));
}

// grpc-status from the trailers, or from the headers of a trailers-only answer.
std::string grpcStatusOf(const H2Response& r) {
  return r.trailer("grpc-status").value_or(r.header("grpc-status").value_or("<missing>"));
}

// A serialized EchoRequest, for raw calls.
std::string echoRequestBytes(const std::string& message, int delay_ms = 0) {
  sidetrace::test::EchoRequest req;
  req.set_message(message);
  req.set_delay_ms(delay_ms);
  return req.SerializeAsString();
}

// Printable pseudo-random text (proto3 strings must be UTF-8), so a misplaced, dropped or
// repeated chunk shows.
std::string bigText(size_t n, uint32_t seed) {
  std::string s(n, ' ');
  uint32_t x = seed;
  for (auto& c : s) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>('!' + (x >> 24) % 94);
  }
  return s;
}

class GrpcTest : public IntegrationTest {
 protected:
  std::string grpcConfigYaml(const GrpcProxyConfig& c) const {
    uint16_t endpoint = c.endpoint_port != 0 ? c.endpoint_port : echo_.port();
    std::string y = R"(admin: { address: "127.0.0.1:{{ADMIN_PORT}}" }
workers: 2
listeners:
  - name: ingress
    address: "127.0.0.1:{{LISTEN_PORT}}"
)";
    if (!c.tls.empty()) {
      y += "    tls: " + c.tls + "\n";
    }
    y += R"(    routes:
      - name: echo
        match: { prefix: /sidetrace.test.Echo/ }
        cluster: echo
)";
    if (!c.echo_timeout.empty()) {
      y += "        timeout: " + c.echo_timeout + "\n";
    }
    if (!c.retry_policy.empty()) {
      y += "        retry_policy: " + c.retry_policy + "\n";
    }
    y += R"(      - name: health
        match: { prefix: /grpc.health.v1.Health/ }
        cluster: echo
clusters:
  - name: echo
    protocol: http2
    endpoints: [ )" +
         (c.first_endpoint != 0 ? "\"127.0.0.1:" + std::to_string(c.first_endpoint) + "\", "
                                : std::string()) +
         "\"127.0.0.1:" + std::to_string(endpoint) + R"(" ]
    connect_timeout: 1s
)";
    if (!c.cluster_tls.empty()) {
      y += "    tls: " + c.cluster_tls + "\n";
    }
    if (!c.outlier_detection.empty()) {
      y += "    outlier_detection: " + c.outlier_detection + "\n";
    }
    y += R"(tracing:
  service_name: it-grpc
  propagators: [ tracecontext, baggage ]
  sampler: { type: parentbased_always_on }
  exporter: { protocol: grpc, endpoint: "http://127.0.0.1:{{OTLP_PORT}}", timeout: 2s }
  batch: { schedule_delay: 100ms }
)";
    if (!c.ignore.empty()) {
      y += "  ignore: " + c.ignore + "\n";
    }
    y += "limits: { drain_timeout: 2s }\n";
    return y;
  }

  void startGrpcProxy(const GrpcProxyConfig& c = {}) {
    ASSERT_NO_FATAL_FAILURE(startProxyYaml(grpcConfigYaml(c)));
  }

  GrpcTarget viaProxy() const { return GrpcTarget{"127.0.0.1:" + std::to_string(port()), "", ""}; }

  // The contract's gRPC span shape for one call of `method` that ended with `code`: SERVER and
  // CLIENT spans named package.Service/Method in one trace, CLIENT the child of SERVER, rpc.*
  // attributes, HTTP/2 on both legs, ERROR as the contract maps codes. Returns the spans.
  CallSpans expectGrpcSpans(const std::vector<FlatSpan>& spans, const std::string& method, int code,
                            bool server_error, bool client_error) {
    const std::string name = std::string(kService) + "/" + method;
    CallSpans cs = spansNamed(spans, name);
    EXPECT_TRUE(cs.server) << "no SERVER span named " << name << "\n" << describeAll(spans);
    EXPECT_TRUE(cs.client) << "no CLIENT span named " << name << "\n" << describeAll(spans);
    if (!cs.server || !cs.client) {
      return cs;
    }
    for (const FlatSpan* s : {&*cs.server, &*cs.client}) {
      SCOPED_TRACE(s->describe());
      EXPECT_EQ(s->str("rpc.system"), "grpc");
      EXPECT_EQ(s->str("rpc.service"), kService);
      EXPECT_EQ(s->str("rpc.method"), method);
      EXPECT_EQ(s->integer("rpc.grpc.status_code").value_or(-1), code);
      EXPECT_EQ(s->str("network.protocol.version"), "2");
    }
    EXPECT_EQ(cs.client->trace_id, cs.server->trace_id);
    EXPECT_EQ(cs.client->parent_span_id, cs.server->span_id);
    EXPECT_EQ(cs.server->status_code == kSpanError, server_error) << cs.server->describe();
    EXPECT_EQ(cs.client->status_code == kSpanError, client_error) << cs.client->describe();
    return cs;
  }

  // The traceparent the upstream received continues the CLIENT span.
  static void expectInjectedFrom(const std::string& traceparent, const CallSpans& cs) {
    auto tp = Traceparent::parse(traceparent);
    ASSERT_TRUE(tp) << "traceparent at the echo server: '" << traceparent << "'";
    ASSERT_TRUE(cs.client);
    EXPECT_EQ(tp->trace_id, cs.client->trace_id);
    EXPECT_EQ(tp->parent_id, cs.client->span_id);
    EXPECT_EQ(tp->flags, "01");
  }

  EchoServer echo_;
};

// The peers themselves, without the proxy: every call kind, statuses, trailers, health, TLS.
TEST(GrpcEchoPeer, AllCallKindsDirect) {
  EchoServer server;
  EchoClient client(GrpcTarget{server.target(), "", ""});

  auto u = client.unary({.message = "hi"}, {.metadata = {{"x-probe", "1"}}});
  ASSERT_TRUE(u.ok()) << u.describe();
  ASSERT_EQ(u.replies.size(), 1u);
  EXPECT_EQ(u.replies[0].message, "hi");
  EXPECT_EQ(u.replies[0].metadata["x-probe"], "1");

  auto s = client.serverStream({.message = "s", .reply_count = 3});
  ASSERT_TRUE(s.ok()) << s.describe();
  ASSERT_EQ(s.replies.size(), 3u);
  EXPECT_EQ(s.replies[2].message, "s#2");

  auto c = client.clientStream({{.message = "a"}, {.message = "b"}, {.message = "c"}});
  ASSERT_TRUE(c.ok()) << c.describe();
  ASSERT_EQ(c.replies.size(), 1u);
  EXPECT_EQ(c.replies[0].message, "a,b,c");

  auto b = client.bidi({{.message = "x"}, {.message = "y"}});
  ASSERT_TRUE(b.ok()) << b.describe();
  ASSERT_EQ(b.replies.size(), 2u);
  EXPECT_EQ(b.replies[1].message, "y");

  auto nf = client.unary({.message = "q",
                          .status_code = kNotFound,
                          .status_message = "no such echo",
                          .trailing_metadata = {{"x-detail", "gone"}}});
  EXPECT_EQ(nf.code, kNotFound) << nf.describe();
  EXPECT_EQ(nf.message, "no such echo");
  EXPECT_EQ(nf.trailer("x-detail"), "gone") << nf.describe();

  auto late = client.unary({.message = "late", .delay_ms = 2000}, {.deadline = milliseconds(200)});
  EXPECT_EQ(late.code, kDeadlineExceeded) << late.describe();

  auto h = client.healthCheck();
  EXPECT_EQ(h.code, kOk) << h.message;
  EXPECT_EQ(h.serving_status, 1);
  server.setServing(false);
  EXPECT_EQ(client.healthCheck().serving_status, 2);

  auto calls = server.waitForFinished(6, milliseconds(5000));
  ASSERT_EQ(calls.size(), 6u);
  EXPECT_EQ(calls[0].method, "Unary");
  EXPECT_EQ(calls[0].header("x-probe"), "1");
  EXPECT_EQ(calls[3].method, "Bidi");
  EXPECT_TRUE(calls[5].cancelled) << "the deadline cancels the delayed call";

  // What the proxied multiplexing and flow-control tests ask of the peers.
  const std::string big = bigText(3 << 20, 1);
  auto large = client.unary({.message = big});
  ASSERT_TRUE(large.ok()) << large.describe();
  EXPECT_TRUE(large.replies[0].message == big);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 50; ++i) {
    threads.emplace_back([&] { ok += client.unary({.message = "m", .delay_ms = 100}).ok(); });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(ok.load(), 50);

  // The raw-frame helper reads grpc++'s answers as the proxied tests expect to.
  auto raw = rawGrpcCall(server.port(), "/sidetrace.test.Echo/Unary", echoRequestBytes("raw"));
  ASSERT_TRUE(raw);
  EXPECT_EQ(raw->status, 200) << raw->describe();
  EXPECT_EQ(raw->trailer("grpc-status").value_or("<missing>"), "0") << raw->describe();
  auto expired = rawGrpcCall(server.port(), "/sidetrace.test.Echo/Unary",
                             echoRequestBytes("slow", 2000), {{"grpc-timeout", "100m"}});
  ASSERT_TRUE(expired);
  EXPECT_EQ(grpcStatusOf(*expired), "4") << expired->describe();

  // TLS, as the proxy's upstream-TLS tests will use it.
  char tmpl[] = "/tmp/sidetrace-grpc-peer-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  TestPki pki = makeTestPki(dir, "echo-direct", "echo-ca", {"echo.test"}, {"127.0.0.1"});
  EchoServer tls_server(EchoServerOptions{pki.cert_file, pki.key_file});
  EchoClient tls_client(GrpcTarget{tls_server.target(), pki.ca_file, "echo.test"});
  auto t = tls_client.unary({.message = "secure"});
  ASSERT_TRUE(t.ok()) << t.describe();
  EXPECT_EQ(t.replies[0].authority, "echo.test");
  std::filesystem::remove_all(dir);
}

// All four call kinds pass through with their payloads; traceparent reaches the server as the
// CLIENT span's child; SERVER and CLIENT spans follow the gRPC contract. An incoming traceparent
// is continued.
TEST_F(GrpcTest, AllCallKindsThroughProxyWithSpans) {
  ASSERT_NO_FATAL_FAILURE(startGrpcProxy());
  EchoClient client(viaProxy());
  const std::string trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  const std::string incoming = "00-" + trace_id + "-00f067aa0ba902b7-01";

  auto u = client.unary({.message = "hello"},
                        {.metadata = {{"traceparent", incoming}, {"x-custom", "v1"}}});
  ASSERT_TRUE(u.ok()) << u.describe();
  ASSERT_EQ(u.replies.size(), 1u);
  EXPECT_EQ(u.replies[0].message, "hello");
  EXPECT_EQ(u.replies[0].metadata["x-custom"], "v1") << "custom metadata forwarded";

  auto s = client.serverStream({.message = "s", .reply_count = 3});
  ASSERT_TRUE(s.ok()) << s.describe();
  ASSERT_EQ(s.replies.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(s.replies[i].message, "s#" + std::to_string(i));
  }

  auto c = client.clientStream({{.message = "a"}, {.message = "b"}, {.message = "c"}});
  ASSERT_TRUE(c.ok()) << c.describe();
  ASSERT_EQ(c.replies.size(), 1u);
  EXPECT_EQ(c.replies[0].message, "a,b,c");
  EXPECT_EQ(c.replies[0].index, 3);

  auto b = client.bidi({{.message = "x"}, {.message = "y"}, {.message = "z"}});
  ASSERT_TRUE(b.ok()) << b.describe();
  ASSERT_EQ(b.replies.size(), 3u);
  EXPECT_EQ(b.replies[0].message, "x");
  EXPECT_EQ(b.replies[2].message, "z");

  auto spans = waitSpansSettled(otlp_, 8);
  EXPECT_EQ(spans.size(), 8u) << describeAll(spans);
  auto cu = expectGrpcSpans(spans, "Unary", kOk, false, false);
  auto cs = expectGrpcSpans(spans, "ServerStream", kOk, false, false);
  auto cc = expectGrpcSpans(spans, "ClientStream", kOk, false, false);
  auto cb = expectGrpcSpans(spans, "Bidi", kOk, false, false);
  expectInjectedFrom(u.replies[0].traceparent, cu);
  expectInjectedFrom(s.replies[0].traceparent, cs);
  expectInjectedFrom(c.replies[0].traceparent, cc);
  expectInjectedFrom(b.replies[0].traceparent, cb);
  if (cu.server) {
    EXPECT_EQ(cu.server->trace_id, trace_id) << "incoming traceparent continued";
    EXPECT_EQ(cu.server->parent_span_id, "00f067aa0ba902b7");
  }
  std::set<std::string> traces;
  for (const auto* x : {&cu, &cs, &cc, &cb}) {
    if (x->server) {
      traces.insert(x->server->trace_id);
    }
  }
  EXPECT_EQ(traces.size(), 4u) << "one trace per call";
  stopProxyExpectClean();
}

// An application error passes through: code, message and trailing metadata reach the client, for a
// trailers-only answer (unary) and for trailers after replies (server streaming). NOT_FOUND is
// not a server fault (SERVER span not ERROR) but is a failed call (CLIENT span ERROR).
TEST_F(GrpcTest, NotFoundStatusMessageAndTrailersPassThrough) {
  ASSERT_NO_FATAL_FAILURE(startGrpcProxy());
  EchoClient client(viaProxy());
  auto u = client.unary({.message = "q",
                         .status_code = kNotFound,
                         .status_message = "no such echo",
                         .trailing_metadata = {{"x-detail", "gone"}}});
  EXPECT_EQ(u.code, kNotFound) << u.describe();
  EXPECT_EQ(u.message, "no such echo");
  EXPECT_EQ(u.trailer("x-detail"), "gone") << u.describe();

  auto s = client.serverStream({.message = "p",
                                .status_code = kNotFound,
                                .status_message = "ran out",
                                .reply_count = 2,
                                .trailing_metadata = {{"x-after", "replies"}}});
  EXPECT_EQ(s.code, kNotFound) << s.describe();
  EXPECT_EQ(s.message, "ran out");
  EXPECT_EQ(s.replies.size(), 2u);
  EXPECT_EQ(s.trailer("x-after"), "replies") << s.describe();

  auto spans = waitSpansSettled(otlp_, 4);
  expectGrpcSpans(spans, "Unary", kNotFound, false, true);
  expectGrpcSpans(spans, "ServerStream", kNotFound, false, true);
}

// INTERNAL is a server fault: both spans ERROR.
TEST_F(GrpcTest, InternalMarksBothSpansError) {
  ASSERT_NO_FATAL_FAILURE(startGrpcProxy());
  EchoClient client(viaProxy());
  auto u = client.unary({.message = "q", .status_code = kInternal, .status_message = "boom"});
  EXPECT_EQ(u.code, kInternal) << u.describe();
  EXPECT_EQ(u.message, "boom");
  auto spans = waitSpansSettled(otlp_, 2);
  expectGrpcSpans(spans, "Unary", kInternal, true, true);
}

// Upstream refused: the proxy answers UNAVAILABLE itself (not UNKNOWN or INTERNAL), as a
// trailers-only response: HTTP 200, application/grpc, grpc-status in the one HEADERS frame.
TEST_F(GrpcTest, UpstreamDownAnswersUnavailable) {
  ASSERT_NO_FATAL_FAILURE(startGrpcProxy({.endpoint_port = dead_.port()}));
  EchoClient client(viaProxy());
  auto u = client.unary({.message = "anyone?"});
  EXPECT_EQ(u.code, kUnavailable) << u.describe();

  auto spans = waitSpansSettled(otlp_, 2);
  auto servers = spansOfKind(spans, 2);
  ASSERT_EQ(servers.size(), 1u) << describeAll(spans);
  EXPECT_EQ(servers[0].name, std::string(kService) + "/Unary");
  EXPECT_EQ(servers[0].integer("rpc.grpc.status_code").value_or(-1), kUnavailable)
      << servers[0].describe() << "\n(a 14 at the client alone may be grpc++ mapping HTTP 502)";
  EXPECT_EQ(servers[0].status_code, kSpanError) << servers[0].describe();
  for (const auto& c : spansOfKind(spans, 3)) {
    EXPECT_EQ(c.status_code, kSpanError) << c.describe();
    EXPECT_EQ(c.parent_span_id, servers[0].span_id);
  }

  auto raw = rawGrpcCall(port(), "/sidetrace.test.Echo/Unary", echoRequestBytes("raw"));
  ASSERT_TRUE(raw) << "no answer to the raw call";
  EXPECT_TRUE(raw->ok()) << raw->describe();
  EXPECT_EQ(raw->status, 200) << raw->describe();
  EXPECT_EQ(raw->header("content-type").value_or("").rfind("application/grpc", 0), 0u)
      << raw->describe();
  EXPECT_EQ(raw->header("grpc-status").value_or("<missing>"), "14") << raw->describe();
  EXPECT_TRUE(raw->trailers.empty()) << "trailers-only: no separate trailers\n" << raw->describe();
  EXPECT_EQ(raw->body, "") << raw->describe();
}

// No route for the gRPC path: UNIMPLEMENTED (12), trailers-only.
TEST_F(GrpcTest, NoRouteAnswersUnimplemented) {
  ASSERT_NO_FATAL_FAILURE(startGrpcProxy());
  auto raw = rawGrpcCall(port(), "/sidetrace.test.Nowhere/Call", echoRequestBytes("x"));
  ASSERT_TRUE(raw) << "no answer to the raw call";
  EXPECT_EQ(raw->status, 200) << raw->describe();
  EXPECT_EQ(raw->header("grpc-status").value_or("<missing>"), std::to_string(kUnimplemented))
      << raw->describe();
  EXPECT_TRUE(raw->trailers.empty()) << raw->describe();
  EXPECT_TRUE(echo_.calls().empty());
}

// The client's deadline (grpc-timeout 300ms) ends a call the server would answer after 2 s: the
// client sees DEADLINE_EXCEEDED and the upstream call is cancelled, not left running. Whether the
// proxy's timer or the client's RST_STREAM wins is a race here, so the status the proxy records
// is checked in the next two tests.
TEST_F(GrpcTest, ClientDeadlineEndsCallAndCancelsUpstream) {
  ASSERT_NO_FATAL_FAILURE(startGrpcProxy());
  EchoClient client(viaProxy());
  auto u = client.unary({.message = "slow", .delay_ms = 2000}, {.deadline = milliseconds(300)});
  EXPECT_EQ(u.code, kDeadlineExceeded) << u.describe();
  auto calls = echo_.waitForFinished(1, milliseconds(5000));
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_TRUE(calls[0].cancelled) << "the upstream call ran to its end after the deadline";
  auto spans = waitSpansSettled(otlp_, 2);
  auto cs = spansNamed(spans, std::string(kService) + "/Unary");
  EXPECT_TRUE(cs.server) << describeAll(spans);
}

// grpc-timeout alone (no client-side timer: a raw h2 request) bounds the call: the proxy answers
// DEADLINE_EXCEEDED itself and records status 4.
TEST_F(GrpcTest, GrpcTimeoutHonouredByProxy) {
  ASSERT_NO_FATAL_FAILURE(startGrpcProxy());
  auto raw = rawGrpcCall(port(), "/sidetrace.test.Echo/Unary", echoRequestBytes("slow", 2000),
                         {{"grpc-timeout", "300m"}});
  ASSERT_TRUE(raw) << "no answer to the raw call";
  EXPECT_EQ(grpcStatusOf(*raw), std::to_string(kDeadlineExceeded)) << raw->describe();
  auto spans = waitSpansSettled(otlp_, 2);
  auto cs = spansNamed(spans, std::string(kService) + "/Unary");
  ASSERT_TRUE(cs.server) << describeAll(spans);
  EXPECT_EQ(cs.server->integer("rpc.grpc.status_code").value_or(-1), kDeadlineExceeded)
      << cs.server->describe();
  EXPECT_EQ(cs.server->status_code, kSpanError) << cs.server->describe();
}

// The route timeout (200ms) is shorter than the client's deadline (5 s): only the proxy can have
// answered DEADLINE_EXCEEDED; it cancels the upstream call and records status 4 on both spans.
TEST_F(GrpcTest, RouteTimeoutAnswersDeadlineExceeded) {
  ASSERT_NO_FATAL_FAILURE(startGrpcProxy({.echo_timeout = "200ms"}));
  EchoClient client(viaProxy());
  auto u = client.unary({.message = "slow", .delay_ms = 2000}, {.deadline = milliseconds(5000)});
  EXPECT_EQ(u.code, kDeadlineExceeded) << u.describe();
  auto calls = echo_.waitForFinished(1, milliseconds(5000));
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_TRUE(calls[0].cancelled) << "the proxy left the upstream call running";
  auto spans = waitSpansSettled(otlp_, 2);
  expectGrpcSpans(spans, "Unary", kDeadlineExceeded, true, true);
}

// 50 unary calls in parallel on one channel: one downstream HTTP/2 connection carries them all,
// and the upstream side multiplexes too (at most one connection per worker).
TEST_F(GrpcTest, ConcurrentCallsMultiplexOnOneConnection) {
  ASSERT_NO_FATAL_FAILURE(startGrpcProxy());
  EchoClient client(viaProxy());
  constexpr int kCalls = 50;
  std::vector<EchoResult> results(kCalls);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCalls; ++i) {
    threads.emplace_back([&, i] {
      // A short server delay keeps the calls in flight together.
      results[i] = client.unary({.message = "m" + std::to_string(i), .delay_ms = 100});
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(results[i].ok()) << "call " << i << ": " << results[i].describe();
    ASSERT_EQ(results[i].replies.size(), 1u);
    EXPECT_EQ(results[i].replies[0].message, "m" + std::to_string(i));
  }
  EXPECT_EQ(metricSum(metrics(), "sidetrace_downstream_connections_total", ""), 1)
      << "all calls on one downstream connection";
  std::set<std::string> peers;
  for (const auto& c : echo_.calls()) {
    peers.insert(c.peer);
  }
  EXPECT_LE(peers.size(), 2u) << "upstream connections (workers: 2) for " << kCalls << " calls";
  auto spans = waitSpansSettled(otlp_, 2 * kCalls, milliseconds(15000));
  EXPECT_EQ(spansOfKind(spans, 2).size(), static_cast<size_t>(kCalls));
  EXPECT_EQ(spansOfKind(spans, 3).size(), static_cast<size_t>(kCalls));
}

// Messages far over the HTTP/2 default window (64 KiB) pass intact both ways: flow control works
// on both legs.
TEST_F(GrpcTest, LargeMessagesPassIntact) {
  ASSERT_NO_FATAL_FAILURE(startGrpcProxy());
  EchoClient client(viaProxy());
  const std::string big = bigText(3 << 20, 7);
  auto u = client.unary({.message = big});
  ASSERT_TRUE(u.ok()) << u.describe();
  ASSERT_EQ(u.replies.size(), 1u);
  EXPECT_EQ(u.replies[0].message.size(), big.size());
  EXPECT_TRUE(u.replies[0].message == big) << "3 MiB unary reply differs";

  std::vector<EchoCall> parts;
  for (uint32_t i = 0; i < 3; ++i) {
    parts.push_back({.message = bigText(1 << 20, 100 + i)});
  }
  auto b = client.bidi(parts);
  ASSERT_TRUE(b.ok()) << b.describe();
  ASSERT_EQ(b.replies.size(), parts.size());
  for (size_t i = 0; i < parts.size(); ++i) {
    EXPECT_TRUE(b.replies[i].message == parts[i].message) << "bidi message " << i << " differs";
  }
}

// The standard health service answers through the proxy; an ignore rule on its path keeps it out
// of the trace while an Echo call in the same test is traced.
TEST_F(GrpcTest, HealthCheckProxiedAndIgnored) {
  ASSERT_NO_FATAL_FAILURE(startGrpcProxy({.ignore = "[ { path: /grpc.health.v1.Health/Check } ]"}));
  EchoClient client(viaProxy());
  auto h = client.healthCheck();
  EXPECT_EQ(h.code, kOk) << h.message;
  EXPECT_EQ(h.serving_status, 1) << "SERVING";
  echo_.setServing(false);
  EXPECT_EQ(client.healthCheck().serving_status, 2) << "NOT_SERVING";
  auto u = client.unary({.message = "traced"});
  ASSERT_TRUE(u.ok()) << u.describe();

  auto spans = waitSpansSettled(otlp_, 2);
  EXPECT_EQ(spans.size(), 2u) << describeAll(spans);
  for (const auto& s : spans) {
    EXPECT_EQ(s.name, std::string(kService) + "/Unary") << s.describe();
  }
}

// gRPC over a TLS listener: ALPN picks h2, and a unary call works with the CA and a target name.
TEST_F(GrpcTest, UnaryOverTlsListenerWithAlpnH2) {
  TestPki pki = makeTestPki(proc_.dir(), "srv", "it-ca", {"localhost"}, {"127.0.0.1"});
  ASSERT_NO_FATAL_FAILURE(startGrpcProxy(
      {.tls = "{ cert: \"" + pki.cert_file + "\", key: \"" + pki.key_file + "\" }"}));
  {
    TlsClientOptions o;
    o.sni = "localhost";
    o.ca_file = pki.ca_file;
    o.offer_h2 = true;
    TlsConnection probe(port(), o);
    ASSERT_TRUE(probe.handshakeOk()) << probe.error();
    EXPECT_EQ(probe.alpn(), "h2");
  }
  EchoClient client(GrpcTarget{"127.0.0.1:" + std::to_string(port()), pki.ca_file, "localhost"});
  auto u = client.unary({.message = "over tls"});
  ASSERT_TRUE(u.ok()) << u.describe();
  ASSERT_EQ(u.replies.size(), 1u);
  EXPECT_EQ(u.replies[0].message, "over tls");
  auto spans = waitSpansSettled(otlp_, 2);
  auto cs = expectGrpcSpans(spans, "Unary", kOk, false, false);
  if (cs.server) {
    EXPECT_EQ(cs.server->str("url.scheme"), "https") << cs.server->describe();
  }
  expectInjectedFrom(u.replies[0].traceparent, cs);
}

// gRPC to a TLS upstream: the cluster's TLS offers ALPN h2, verifies the server against the CA
// and the SNI name, and the call works end to end with the CLIENT span saying https.
TEST_F(GrpcTest, UnaryToTlsUpstreamNegotiatesH2) {
  TestPki pki = makeTestPki(proc_.dir(), "up", "up-ca", {"echo.internal"}, {"127.0.0.1"});
  EchoServer tls_echo(EchoServerOptions{pki.cert_file, pki.key_file});
  ASSERT_NO_FATAL_FAILURE(
      startGrpcProxy({.endpoint_port = tls_echo.port(),
                      .cluster_tls = "{ ca_file: \"" + pki.ca_file + "\", sni: echo.internal }"}));
  EchoClient client(viaProxy());
  auto u = client.unary({.message = "to tls upstream"});
  ASSERT_TRUE(u.ok()) << u.describe();
  ASSERT_EQ(u.replies.size(), 1u);
  EXPECT_EQ(u.replies[0].message, "to tls upstream");
  auto spans = waitSpansSettled(otlp_, 2);
  auto cs = expectGrpcSpans(spans, "Unary", kOk, false, false);
  ASSERT_TRUE(cs.client);
  EXPECT_EQ(cs.client->str("url.full").rfind("https://", 0), 0u) << cs.client->describe();
}

// The upstream's certificate does not name the SNI: the handshake fails, and the gRPC client sees
// UNAVAILABLE from the proxy, not INTERNAL.
TEST_F(GrpcTest, TlsUpstreamNameMismatchAnswersUnavailable) {
  TestPki pki = makeTestPki(proc_.dir(), "up", "up-ca", {"echo.internal"}, {"127.0.0.1"});
  EchoServer tls_echo(EchoServerOptions{pki.cert_file, pki.key_file});
  ASSERT_NO_FATAL_FAILURE(
      startGrpcProxy({.endpoint_port = tls_echo.port(),
                      .cluster_tls = "{ ca_file: \"" + pki.ca_file + "\", sni: wrong.internal }"}));
  EchoClient again(viaProxy());
  auto bad = again.unary({.message = "x"});
  EXPECT_EQ(bad.code, kUnavailable) << bad.describe();
}

// Retries on the HTTP/2 path: the first endpoint refuses connections, so with retry_on
// connect-failure every call still succeeds, and the trace shows both attempts (ejection off, so
// every call tries it first).
TEST_F(GrpcTest, ConnectFailureRetriedWithSpanPerAttempt) {
  ASSERT_NO_FATAL_FAILURE(startGrpcProxy(
      {.retry_policy = "{ retry_on: [ connect-failure ], num_retries: 1 }",
       .first_endpoint = dead_.port(),
       .outlier_detection = "{ consecutive_5xx: 0, consecutive_connect_failures: 0 }"}));
  EchoClient client(viaProxy());
  for (int i = 0; i < 2; ++i) {
    auto u = client.unary({.message = "retry me"});
    EXPECT_TRUE(u.ok()) << u.describe();
  }
  auto spans = waitSpansSettled(otlp_, 2 + 4);
  auto clients = spansOfKind(spans, 3);
  ASSERT_EQ(clients.size(), 4u) << describeAll(spans);
  int retried = 0;
  for (const auto& c : clients) {
    if (c.integer("http.request.resend_count").value_or(0) == 1) {
      ++retried;
      EXPECT_EQ(c.integer("rpc.grpc.status_code").value_or(-1), kOk) << c.describe();
    } else {
      EXPECT_EQ(c.str("error.type"), "connect_failure") << c.describe();
      EXPECT_EQ(c.integer("rpc.grpc.status_code").value_or(-1), kUnavailable) << c.describe();
    }
  }
  EXPECT_EQ(retried, 2);
  EXPECT_EQ(metricSum(metrics(), "sidetrace_upstream_retries_total", "outcome=\"succeeded\""), 2);
}

// retry_on unavailable: a trailers-only UNAVAILABLE is retried (gRPC calls are POSTs, retried
// anyway for gRPC conditions) until num_retries runs out; the client gets the last answer.
TEST_F(GrpcTest, UnavailableRetriedUntilExhausted) {
  ASSERT_NO_FATAL_FAILURE(
      startGrpcProxy({.retry_policy = "{ retry_on: [ unavailable ], num_retries: 2, "
                                      "back_off: { base_interval: 1ms, max_interval: 2ms } }"}));
  EchoClient client(viaProxy());
  auto u = client.unary({.message = "x", .status_code = kUnavailable, .status_message = "busy"});
  EXPECT_EQ(u.code, kUnavailable) << u.describe();
  EXPECT_EQ(u.message, "busy");
  EXPECT_EQ(echo_.waitForCalls(3, milliseconds(5000)).size(), 3u) << "1 call + 2 retries";
  auto nf = client.unary({.message = "x", .status_code = 5});  // NOT_FOUND: not retried
  EXPECT_EQ(nf.code, 5);
  EXPECT_EQ(echo_.waitForCalls(4, milliseconds(5000)).size(), 4u);
  EXPECT_EQ(metricSum(metrics(), "sidetrace_upstream_retries_total", "outcome=\"attempted\""), 2);
  EXPECT_EQ(metricSum(metrics(), "sidetrace_upstream_retries_total", "outcome=\"exhausted\""), 1);
}

}  // namespace
}  // namespace sidetrace::it
