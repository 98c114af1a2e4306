// Active health checks through the real binary (issue 5 item 3): endpoints failing their check
// leave rotation and come back when it passes again; all down answers 503 at once (or, in panic
// mode, uses them anyway); probes are the proxy's own requests and carry no trace context.

#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "tests/integration/harness.h"

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

}  // namespace
}  // namespace sidetrace::it
