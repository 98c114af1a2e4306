// Cluster circuit breakers through the real binary (issue 5 item 7): a full breaker answers 503 at
// once (no upstream attempt), the request's span says overflow, and
// sidetrace_upstream_circuit_breaker_trips_total{breaker} counts it.

#include <gtest/gtest.h>

#include <future>
#include <string>

#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;

class CircuitBreakerTest : public IntegrationTest {
 protected:
  void start(const std::string& breakers, const std::vector<uint16_t>& endpoints,
             const std::string& retry = "") {
    std::vector<std::string> route = {"timeout: 5s"};
    if (!retry.empty()) {
      route.push_back("retry_policy: " + retry);
    }
    ASSERT_NO_FATAL_FAILURE(
        startProxyYaml(poolConfigYaml(endpoints, route, {"circuit_breakers: " + breakers})));
  }
  double trips(const std::string& breaker) {
    return metricSum(metrics(), "sidetrace_upstream_circuit_breaker_trips_total",
                     "breaker=\"" + breaker + "\"");
  }
};

// max_requests: 1 — with one request in flight, the next is refused at once; after it, requests
// flow again.
TEST_F(CircuitBreakerTest, MaxRequestsAnswers503AtOnce) {
  upstream_.onPrefix("/api/slow", Behavior::stall(milliseconds(1000)));
  ASSERT_NO_FATAL_FAILURE(start("{ max_requests: 1 }", {upstream_.port()}));
  auto slow =
      std::async(std::launch::async, [&] { return httpRequest(port(), "GET", "/api/slow"); });
  ASSERT_EQ(upstream_.waitForRequests(1, milliseconds(5000)).size(), 1u);
  auto t0 = std::chrono::steady_clock::now();
  auto refused = httpRequest(port(), "GET", "/api/fast");
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503) << refused->body;
  EXPECT_LT(took, milliseconds(900)) << "refused at once, not after the slow one";
  auto first = slow.get();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 200);
  auto after = httpRequest(port(), "GET", "/api/fast");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200) << "the breaker closes again";
  EXPECT_EQ(upstream_.requestCount(), 2u) << "the refused request never reached the upstream";
  EXPECT_EQ(trips("requests"), 1);
  auto spans = waitSpansSettled(otlp_, 1 + 1 + 2);
  int overflow = 0;
  for (const auto& s : spansOfKind(spans, 2)) {
    if (s.str("error.type") == "overflow") {
      ++overflow;
      EXPECT_EQ(s.integer("http.response.status_code").value_or(0), 503);
    }
  }
  EXPECT_EQ(overflow, 1) << describeAll(spans);
}

// max_connections: 1 — a kept-alive connection serves requests one after another, but a second
// request while the first holds the connection would need another: 503.
TEST_F(CircuitBreakerTest, MaxConnectionsLimitsOpenUpstreamConnections) {
  upstream_.onPrefix("/api/slow", Behavior::stall(milliseconds(1000)));
  ASSERT_NO_FATAL_FAILURE(start("{ max_connections: 1 }", {upstream_.port()}));
  for (int i = 0; i < 3; ++i) {
    auto r = httpRequest(port(), "GET", "/api/seq");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << "sequential requests reuse the one connection";
  }
  auto slow =
      std::async(std::launch::async, [&] { return httpRequest(port(), "GET", "/api/slow"); });
  ASSERT_EQ(upstream_.waitForRequests(4, milliseconds(5000)).size(), 4u);
  auto refused = httpRequest(port(), "GET", "/api/other");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503);
  EXPECT_EQ(slow.get()->status, 200);
  EXPECT_EQ(upstream_.connectionCount(), 1u);
  EXPECT_EQ(trips("connections"), 1);
}

// max_retries: 0 — a retriable failure is not retried, and both the breaker and the retry
// overflow count it.
TEST_F(CircuitBreakerTest, MaxRetriesStopsRetries) {
  ASSERT_NO_FATAL_FAILURE(start("{ max_retries: 0 }", {dead_.port(), upstream_.port()},
                                "{ retry_on: [ connect-failure ], num_retries: 2 }"));
  auto r = httpRequest(port(), "GET", "/api/x");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502);
  EXPECT_EQ(trips("retries"), 1);
  EXPECT_EQ(metricSum(metrics(), "sidetrace_upstream_retries_total", "outcome=\"overflow\""), 1);
}

}  // namespace
}  // namespace sidetrace::it
