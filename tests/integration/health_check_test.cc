// Active health checks through the real binary (issue 5 item 3): endpoints failing their check
// leave rotation and come back when it passes again; all down answers 503 at once (or, in panic
// mode, uses them anyway); probes are the proxy's own requests and carry no trace context.
// HTTP checks over the cluster's TLS (a TLS FakeUpstream), and gRPC checks (grpc.health.v1, h2c
// and TLS) against grpc++ echo servers running grpc++'s own health service.

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/integration/grpc_echo_client.h"
#include "tests/integration/grpc_echo_server.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_pki.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;

class HealthCheckTest : public IntegrationTest {
 protected:
  void start(const std::vector<uint16_t>& endpoints, const std::string& check) {
    ASSERT_NO_FATAL_FAILURE(
        startProxyYaml(poolConfigYaml(endpoints, {}, {"health_check: " + check})));
  }
  // Waits until the gauge for 127.0.0.1:port reads `healthy`.
  bool waitHealth(uint16_t port, int healthy) {
    const std::string label = "endpoint=\"127.0.0.1:" + std::to_string(port) + "\"";
    for (int i = 0; i < 100; ++i) {
      if (metricSum(metrics(), "sidetrace_upstream_endpoint_healthy", label) == healthy) {
        return true;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    return false;
  }
  static size_t apiRequests(const FakeUpstream& u) {
    size_t n = 0;
    for (const auto& r : u.requests()) {
      n += r.target.rfind("/api", 0) == 0 ? 1 : 0;
    }
    return n;
  }
  FakeUpstream second_;
};

// A reload keeps what the checks learned: an endpoint known to be down stays out of rotation from
// the first request after the reload, rather than getting traffic until it fails its thresholds
// again (a reload resets nothing else either: the check config is unchanged).
TEST_F(HealthCheckTest, ReloadKeepsTheVerdicts) {
  upstream_.on("/health", Behavior::fixed(503, "sick"));
  second_.on("/health", Behavior::fixed(200, "ok"));
  const std::string check =
      "health_check: { path: /health, interval: 1s, timeout: 500ms, unhealthy_threshold: 2, "
      "healthy_threshold: 2 }";
  const std::vector<uint16_t> eps = {upstream_.port(), second_.port()};
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(poolConfigYaml(eps, {}, {check})));
  ASSERT_TRUE(waitHealth(upstream_.port(), 0)) << metrics();

  ASSERT_NO_FATAL_FAILURE(reloadYaml(poolConfigYaml(eps, {}, {check, "idle_timeout: 30s"})));
  EXPECT_EQ(metricSum(metrics(), "sidetrace_upstream_endpoint_healthy",
                      "endpoint=\"127.0.0.1:" + std::to_string(upstream_.port()) + "\""),
            0);
  for (int i = 0; i < 20; ++i) {
    auto r = httpRequest(port(), "GET", "/api/after-reload");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  EXPECT_EQ(apiRequests(upstream_), 0u) << "the reload put an endpoint known to be down back";
  EXPECT_EQ(apiRequests(second_), 20u);
}

TEST_F(HealthCheckTest, FailingCheckTakesEndpointOutAndPassingBringsItBack) {
  upstream_.on("/health", Behavior::fixed(503, "sick"));
  second_.on("/health", Behavior::fixed(200, "ok"));
  ASSERT_NO_FATAL_FAILURE(start({upstream_.port(), second_.port()},
                                "{ path: /health, interval: 100ms, timeout: 500ms, "
                                "unhealthy_threshold: 2, healthy_threshold: 1 }"));
  ASSERT_TRUE(waitHealth(upstream_.port(), 0)) << metrics();
  EXPECT_TRUE(waitHealth(second_.port(), 1));
  for (int i = 0; i < 10; ++i) {
    auto r = httpRequest(port(), "GET", "/api/x");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  EXPECT_EQ(apiRequests(upstream_), 0u) << "an unhealthy endpoint gets no traffic";
  EXPECT_EQ(apiRequests(second_), 10u);

  upstream_.on("/health", Behavior::fixed(200, "better"));
  ASSERT_TRUE(waitHealth(upstream_.port(), 1));
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(httpRequest(port(), "GET", "/api/y"));
  }
  EXPECT_EQ(apiRequests(upstream_), 5u) << "back in rotation";

  // The probes: the proxy's own GETs, with no trace context, and never a span.
  bool saw_probe = false;
  for (const auto& r : upstream_.requests()) {
    if (r.target == "/health") {
      saw_probe = true;
      EXPECT_EQ(r.header("user-agent").value_or(""), "sidetrace-health-check");
      EXPECT_FALSE(r.hasHeader("traceparent")) << "health checks are never traced";
    }
  }
  EXPECT_TRUE(saw_probe);
  auto spans = waitSpansSettled(otlp_, 20 + 20);
  for (const auto& s : spans) {
    EXPECT_NE(s.str("url.path"), "/health") << s.describe();
  }
  EXPECT_EQ(spans.size(), 40u) << "one SERVER and one CLIENT span per proxied request only";
}

TEST_F(HealthCheckTest, AllUnhealthyAnswers503AtOnceUnlessPanic) {
  upstream_.on("/health", Behavior::fixed(500, "down"));
  ASSERT_NO_FATAL_FAILURE(
      start({upstream_.port()}, "{ path: /health, interval: 100ms, unhealthy_threshold: 1 }"));
  ASSERT_TRUE(waitHealth(upstream_.port(), 0));
  auto r = httpRequest(port(), "GET", "/api/x");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->body, "no healthy upstream\n");
  EXPECT_EQ(apiRequests(upstream_), 0u);
}

TEST_F(HealthCheckTest, PanicModeUsesUnhealthyEndpoints) {
  upstream_.on("/health", Behavior::fixed(500, "down"));
  ASSERT_NO_FATAL_FAILURE(
      start({upstream_.port()},
            "{ path: /health, interval: 100ms, unhealthy_threshold: 1, panic: true }"));
  ASSERT_TRUE(waitHealth(upstream_.port(), 0));
  auto r = httpRequest(port(), "GET", "/api/x");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << "panic: better a maybe-sick endpoint than none";
  EXPECT_EQ(apiRequests(upstream_), 1u);
}

// TCP checks: a refused port leaves rotation, so clients stop seeing its 502s.
TEST_F(HealthCheckTest, TcpCheckRemovesARefusingEndpoint) {
  ASSERT_NO_FATAL_FAILURE(start({dead_.port(), upstream_.port()},
                                "{ type: tcp, interval: 100ms, unhealthy_threshold: 1 }"));
  ASSERT_TRUE(waitHealth(dead_.port(), 0));
  EXPECT_TRUE(waitHealth(upstream_.port(), 1));
  for (int i = 0; i < 10; ++i) {
    auto r = httpRequest(port(), "GET", "/api/x");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << "request " << i;
  }
  EXPECT_TRUE(upstream_.requests().size() == 10u) << "TCP probes send no HTTP request";
}

// HTTP checks on a TLS cluster: the probe's GET goes over the cluster's TLS, verified as proxied
// requests are (ca_file here), so a peer whose certificate does not verify fails the check.
class TlsHealthCheckTest : public HealthCheckTest {
 protected:
  void SetUp() override {
    HealthCheckTest::SetUp();
    pki_ = makeTestPki(proc_.dir(), "origin", "origin-ca", {"localhost"}, {"127.0.0.1"});
    rogue_ = makeTestPki(proc_.dir(), "rogue", "rogue-ca", {"localhost"}, {"127.0.0.1"});
  }
  void startTls(uint16_t endpoint) {
    ASSERT_NO_FATAL_FAILURE(startProxyYaml(
        poolConfigYaml({endpoint}, {},
                       {"tls: { ca_file: \"" + pki_.ca_file + "\" }",
                        "health_check: { path: /health, interval: 100ms, timeout: 500ms, "
                        "unhealthy_threshold: 1, healthy_threshold: 1 }"})));
  }
  // One request to the cluster that must be refused at once for want of a healthy endpoint.
  void expectNoHealthyUpstream() {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = httpRequest(port(), "GET", "/api/x");
    const auto took = std::chrono::steady_clock::now() - t0;
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503);
    EXPECT_EQ(r->body, "no healthy upstream\n");
    EXPECT_LT(took, milliseconds(1000)) << "fail fast, without trying the endpoint";
  }
  TestPki pki_;
  TestPki rogue_;
};

TEST_F(TlsHealthCheckTest, HttpCheckRunsOverTheClusterTls) {
  FakeUpstream origin(FakeUpstreamTls{pki_.cert_file, pki_.key_file, "", 0});
  origin.on("/health", Behavior::fixed(503, "starting"));
  ASSERT_NO_FATAL_FAILURE(startTls(origin.port()));
  ASSERT_TRUE(waitHealth(origin.port(), 0)) << metrics();
  ASSERT_NO_FATAL_FAILURE(expectNoHealthyUpstream());
  EXPECT_EQ(apiRequests(origin), 0u);

  origin.on("/health", Behavior::fixed(200, "ok"));
  ASSERT_TRUE(waitHealth(origin.port(), 1)) << metrics() << proc_.logs();
  auto r = httpRequest(port(), "GET", "/api/x");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(apiRequests(origin), 1u);

  size_t probes = 0;
  for (const auto& req : origin.requests()) {
    if (req.target != "/health") {
      continue;
    }
    ++probes;
    EXPECT_EQ(req.tls_alpn, "http/1.1") << "the cluster's TLS settings, ALPN included";
    EXPECT_EQ(req.header("host").value_or(""), "127.0.0.1:" + std::to_string(origin.port()));
    EXPECT_EQ(req.header("user-agent").value_or(""), "sidetrace-health-check");
    EXPECT_FALSE(req.hasHeader("traceparent"));
  }
  EXPECT_GE(probes, 2u);
  EXPECT_EQ(origin.tlsHandshakeFailures(), 0u);
  // Two proxied requests: the refused one (SERVER span only) and the forwarded one.
  auto spans = waitSpansSettled(otlp_, 3);
  for (const auto& s : spans) {
    EXPECT_NE(s.str("url.path"), "/health") << s.describe();
  }
  EXPECT_EQ(spans.size(), 3u) << describeAll(spans);
}

TEST_F(TlsHealthCheckTest, PeerThatDoesNotVerifyFailsTheCheck) {
  // A certificate from a CA the cluster does not trust; its /health would pass.
  FakeUpstream origin(FakeUpstreamTls{rogue_.cert_file, rogue_.key_file, "", 0});
  origin.on("/health", Behavior::fixed(200, "ok"));
  ASSERT_NO_FATAL_FAILURE(startTls(origin.port()));
  ASSERT_TRUE(waitHealth(origin.port(), 0)) << metrics();
  // The origin counts its side of the failed handshake when it reads sidetrace's alert, which may
  // come after sidetrace has already marked the endpoint down.
  for (int i = 0; i < 100 && origin.tlsHandshakeFailures() == 0; ++i) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_GT(origin.tlsHandshakeFailures(), 0u);
  ASSERT_NO_FATAL_FAILURE(expectNoHealthyUpstream());
  EXPECT_EQ(origin.requestCount(), 0u) << "nothing is sent to an unverified peer";
}

constexpr int kUnavailable = 14;  // grpc::StatusCode::UNAVAILABLE
const char* kEchoService = "sidetrace.test.Echo";

// gRPC checks: an http2 cluster of grpc++ echo servers, asked grpc.health.v1.Health/Check.
class GrpcHealthCheckTest : public HealthCheckTest {
 protected:
  // One worker, round robin over `servers`, route prefix /sidetrace.test.Echo/ to them; `check`
  // is the health_check (YAML flow map), `tls` the cluster's tls ("" = h2c).
  void startGrpc(const std::vector<uint16_t>& servers, const std::string& check,
                 const std::string& tls = "") {
    std::string y = R"(admin: { address: "127.0.0.1:{{ADMIN_PORT}}" }
workers: 1
listeners:
  - name: ingress
    address: "127.0.0.1:{{LISTEN_PORT}}"
    routes:
      - name: echo
        match: { prefix: /sidetrace.test.Echo/ }
        cluster: echo
clusters:
  - name: echo
    protocol: http2
    endpoints: [ )";
    for (size_t i = 0; i < servers.size(); ++i) {
      y += (i ? ", \"127.0.0.1:" : "\"127.0.0.1:") + std::to_string(servers[i]) + "\"";
    }
    y += " ]\n    connect_timeout: 1s\n    health_check: " + check + "\n";
    if (!tls.empty()) {
      y += "    tls: " + tls + "\n";
    }
    y += R"(tracing:
  service_name: it-grpc-health
  sampler: { type: parentbased_always_on }
  exporter: { protocol: grpc, endpoint: "http://127.0.0.1:{{OTLP_PORT}}", timeout: 2s }
  batch: { schedule_delay: 100ms }
limits: { drain_timeout: 2s }
)";
    ASSERT_NO_FATAL_FAILURE(startProxyYaml(y));
  }
  GrpcTarget viaProxy() const { return GrpcTarget{"127.0.0.1:" + std::to_string(port()), "", ""}; }
  // n unary Echo calls through the proxy, each of which must succeed.
  void callEcho(int n) {
    EchoClient client(viaProxy());
    for (int i = 0; i < n; ++i) {
      auto r = client.unary({.message = "m" + std::to_string(i)});
      ASSERT_TRUE(r.ok()) << "call " << i << ": " << r.describe();
    }
  }
  // Waits until `server` answered at least n health checks.
  static bool waitProbes(const EchoServer& server, size_t n) {
    for (int i = 0; i < 100; ++i) {
      if (server.healthCalls().size() >= n) {
        return true;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    return false;
  }
  EchoServer a_;
  EchoServer b_;
};

TEST_F(GrpcHealthCheckTest, NotServingEndpointLeavesRotationAndComesBack) {
  ASSERT_NO_FATAL_FAILURE(startGrpc({a_.port(), b_.port()},
                                    "{ type: grpc, interval: 100ms, timeout: 500ms, "
                                    "unhealthy_threshold: 2, healthy_threshold: 1 }"));
  ASSERT_TRUE(waitProbes(a_, 2));
  a_.setServing("", false);  // the server as a whole: what an empty service_name asks about
  ASSERT_TRUE(waitHealth(a_.port(), 0)) << metrics();
  EXPECT_TRUE(waitHealth(b_.port(), 1));
  ASSERT_NO_FATAL_FAILURE(callEcho(10));
  EXPECT_EQ(a_.calls().size(), 0u) << "a NOT_SERVING endpoint gets no calls";
  EXPECT_EQ(b_.calls().size(), 10u);

  a_.setServing("", true);
  ASSERT_TRUE(waitHealth(a_.port(), 1)) << metrics();
  ASSERT_NO_FATAL_FAILURE(callEcho(10));
  EXPECT_EQ(a_.calls().size(), 5u) << "back in rotation";
  EXPECT_EQ(b_.calls().size(), 15u);

  // The probes: Health/Check with the proxy's user agent and the endpoint's authority, no trace
  // context, and never a span.
  const auto probes = a_.healthCalls();
  ASSERT_FALSE(probes.empty());
  for (const auto& p : probes) {
    EXPECT_EQ(p.method, "/grpc.health.v1.Health/Check");
    EXPECT_EQ(p.authority, a_.target());
    EXPECT_EQ(p.header("user-agent").rfind("sidetrace-health-check", 0), 0u)
        << p.header("user-agent");
    EXPECT_EQ(p.header("traceparent"), "");
  }
  auto spans = waitSpansSettled(otlp_, 20 + 20);
  for (const auto& s : spans) {
    EXPECT_EQ(s.name.find("grpc.health"), std::string::npos) << s.describe();
  }
  EXPECT_EQ(spans.size(), 40u) << "one SERVER and one CLIENT span per proxied call only";
}

TEST_F(GrpcHealthCheckTest, ServiceNameAsksAboutThatServiceNotTheServer) {
  a_.setServing(kEchoService, true);
  b_.setServing(kEchoService, true);
  ASSERT_NO_FATAL_FAILURE(startGrpc({a_.port(), b_.port()},
                                    "{ type: grpc, service_name: sidetrace.test.Echo, "
                                    "interval: 100ms, unhealthy_threshold: 1, "
                                    "healthy_threshold: 1 }"));
  ASSERT_TRUE(waitProbes(a_, 1));
  a_.setServing(kEchoService, false);  // the server as a whole still serves
  ASSERT_TRUE(waitHealth(a_.port(), 0)) << metrics();
  EXPECT_TRUE(waitHealth(b_.port(), 1));
  ASSERT_NO_FATAL_FAILURE(callEcho(4));
  EXPECT_EQ(a_.calls().size(), 0u);
  EXPECT_EQ(b_.calls().size(), 4u);

  a_.setServing("", false);  // only the named service counts
  a_.setServing(kEchoService, true);
  ASSERT_TRUE(waitHealth(a_.port(), 1)) << metrics();
  ASSERT_NO_FATAL_FAILURE(callEcho(4));
  EXPECT_EQ(a_.calls().size(), 2u);
}

TEST_F(GrpcHealthCheckTest, AllNotServingAnswersUnavailableAtOnce) {
  ASSERT_NO_FATAL_FAILURE(
      startGrpc({a_.port(), b_.port()}, "{ type: grpc, interval: 100ms, unhealthy_threshold: 1 }"));
  a_.setServing(false);
  b_.setServing(false);
  ASSERT_TRUE(waitHealth(a_.port(), 0)) << metrics();
  ASSERT_TRUE(waitHealth(b_.port(), 0)) << metrics();
  EchoClient client(viaProxy());
  const auto t0 = std::chrono::steady_clock::now();
  auto r = client.unary({.message = "x"}, {.deadline = milliseconds(5000)});
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(r.code, kUnavailable) << r.describe();
  EXPECT_EQ(r.message, "no healthy upstream");
  EXPECT_LT(took, milliseconds(1000)) << "fail fast, without trying the endpoints";
  EXPECT_EQ(a_.calls().size() + b_.calls().size(), 0u);
}

// Over TLS: ALPN h2 and the peer verified with the cluster's ca_file.
TEST_F(GrpcHealthCheckTest, GrpcCheckOverTls) {
  const TestPki pki = makeTestPki(proc_.dir(), "grpc", "grpc-ca", {"localhost"}, {"127.0.0.1"});
  EchoServer server(EchoServerOptions{pki.cert_file, pki.key_file});
  ASSERT_NO_FATAL_FAILURE(startGrpc({server.port()},
                                    "{ type: grpc, interval: 100ms, unhealthy_threshold: 1, "
                                    "healthy_threshold: 1 }",
                                    "{ ca_file: \"" + pki.ca_file + "\" }"));
  ASSERT_TRUE(waitProbes(server, 2)) << "the Check calls reached the server over TLS";
  EXPECT_EQ(server.healthCalls()[0].authority, server.target());
  server.setServing(false);
  ASSERT_TRUE(waitHealth(server.port(), 0)) << metrics();
  auto down = EchoClient(viaProxy()).unary({.message = "x"});
  EXPECT_EQ(down.code, kUnavailable) << down.describe();
  server.setServing(true);
  ASSERT_TRUE(waitHealth(server.port(), 1)) << metrics();
  ASSERT_NO_FATAL_FAILURE(callEcho(2));
  EXPECT_EQ(server.calls().size(), 2u);
}

}  // namespace
}  // namespace sidetrace::it
