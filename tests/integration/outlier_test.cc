// Passive outlier detection through the real binary (issue 5 item 4): an endpoint that keeps
// failing is ejected (no more traffic from that worker), the ejection is counted and logged, and
// with retries the clients stop seeing the failures altogether.

#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/h2_client.h"
#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;

class OutlierDetectionTest : public IntegrationTest {
 protected:
  void start(const std::vector<uint16_t>& endpoints, const std::string& outlier,
             const std::string& retry = "") {
    std::vector<std::string> route;
    if (!retry.empty()) {
      route.push_back("retry_policy: " + retry);
    }
    ASSERT_NO_FATAL_FAILURE(
        startProxyYaml(poolConfigYaml(endpoints, route, {"outlier_detection: " + outlier})));
  }
  FakeUpstream second_;
  FakeUpstream third_;
};

// Three 503s in a row and the endpoint is out: the rest of the requests all go to the other one.
TEST_F(OutlierDetectionTest, FailingEndpointIsEjected) {
  upstream_.setDefault(Behavior::fixed(503, "broken"));
  ASSERT_NO_FATAL_FAILURE(start({upstream_.port(), second_.port()},
                                "{ consecutive_5xx: 3, base_ejection_time: 30s, "
                                "max_ejection_percent: 50 }"));
  int failures = 0;
  for (int i = 0; i < 30; ++i) {
    auto r = httpRequest(port(), "GET", "/api/x");
    ASSERT_TRUE(r);
    failures += r->status == 503 ? 1 : 0;
  }
  EXPECT_EQ(upstream_.requestCount(), 3u) << "ejected after its third failure in a row";
  EXPECT_EQ(failures, 3);
  EXPECT_EQ(second_.requestCount(), 27u);
  EXPECT_EQ(waitMetric("sidetrace_upstream_ejections_total", "cluster=\"pool\"", 1), 1);
  // Per endpoint: the failing one ejected once, the healthy one never.
  const std::string m = metrics();
  EXPECT_EQ(metricSum(m, "sidetrace_upstream_endpoint_ejections_total",
                      "endpoint=\"127.0.0.1:" + std::to_string(upstream_.port()) + "\""),
            1)
      << m;
  EXPECT_EQ(metricSum(m, "sidetrace_upstream_endpoint_ejections_total",
                      "endpoint=\"127.0.0.1:" + std::to_string(second_.port()) + "\""),
            0)
      << m;
  EXPECT_EQ(metricSum(m, "sidetrace_upstream_lb_picks_total",
                      "endpoint=\"127.0.0.1:" + std::to_string(second_.port()) + "\""),
            27)
      << m;
  EXPECT_NE(proc_.stderrText().find("outlier detection: ejected 127.0.0.1:" +
                                    std::to_string(upstream_.port())),
            std::string::npos)
      << proc_.stderrText();
}

// The ejection ends after base_ejection_time: the endpoint gets traffic again (and, still
// failing, is ejected again).
TEST_F(OutlierDetectionTest, EjectionEnds) {
  upstream_.setDefault(Behavior::fixed(503, "broken"));
  ASSERT_NO_FATAL_FAILURE(start({upstream_.port(), second_.port()},
                                "{ consecutive_5xx: 1, base_ejection_time: 300ms, "
                                "max_ejection_percent: 50 }"));
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(httpRequest(port(), "GET", "/api/x"));
  }
  EXPECT_EQ(upstream_.requestCount(), 1u);
  std::this_thread::sleep_for(milliseconds(400));
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(httpRequest(port(), "GET", "/api/x"));
  }
  EXPECT_EQ(upstream_.requestCount(), 2u) << "back after 300 ms, then out again";
  EXPECT_EQ(waitMetric("sidetrace_upstream_ejections_total", "cluster=\"pool\"", 2), 2);
}

// A client that sends a malformed body mid-request gets 400, and the endpoint the request was
// streaming to is not blamed: a bad client must not be able to eject endpoints.
TEST_F(OutlierDetectionTest, MalformedClientBodyIsNotTheEndpointsFailure) {
  ASSERT_NO_FATAL_FAILURE(start({upstream_.port(), second_.port()},
                                "{ consecutive_5xx: 1, base_ejection_time: 30s, "
                                "max_ejection_percent: 50 }"));
  for (int i = 0; i < 4; ++i) {
    TcpSocket s;
    ASSERT_TRUE(s.connect(port()));
    ASSERT_TRUE(
        s.sendAll("POST /api/up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\nhello\r\n"));
    std::this_thread::sleep_for(milliseconds(100));  // the head is on its way upstream by now
    ASSERT_TRUE(s.sendAll("zz\r\nnot a chunk size\r\n"));
    const std::string raw = s.readUntilClosed(milliseconds(5000));
    EXPECT_TRUE(raw.starts_with("HTTP/1.1 400")) << raw;
  }
  EXPECT_GT(upstream_.bytesReceived(), 0u) << "each endpoint saw request heads";
  EXPECT_GT(second_.bytesReceived(), 0u);
  EXPECT_EQ(metricSum(metrics(), "sidetrace_upstream_ejections_total", "cluster=\"pool\""), 0);
}

// HTTP/2 clients that reset their streams before the response head are not the endpoint's
// failures: five cancelled requests neither eject it (at consecutive_5xx: 2) nor are retried
// after their client left (the HTTP/1 path's rule, shared through judgeAttempt).
TEST_F(OutlierDetectionTest, ClientResetsAreNotTheEndpointsFailures) {
  upstream_.onPrefix("/api/stall", Behavior::stall(milliseconds(10000)));
  ASSERT_NO_FATAL_FAILURE(start({upstream_.port()},
                                "{ consecutive_5xx: 2, base_ejection_time: 30s, "
                                "max_ejection_percent: 100 }",
                                "{ retry_on: [ reset, 5xx ], num_retries: 3, "
                                "back_off: { base_interval: 1ms, max_interval: 2ms } }"));
  H2Connection c(port());
  ASSERT_TRUE(c.connected()) << c.error();
  H2Request stall;
  stall.path = "/api/stall";
  for (size_t i = 1; i <= 5; ++i) {
    const int32_t id = c.submit(stall);
    ASSERT_GT(id, 0);
    ASSERT_EQ(upstream_.waitForRequests(i, milliseconds(5000)).size(), i)
        << "request " << i << " never reached the endpoint";
    ASSERT_TRUE(c.reset(id, h2::kCancel));
  }
  H2Request ok;
  ok.path = "/api/ok";
  auto r = c.request(ok);
  ASSERT_TRUE(r) << c.error();
  EXPECT_TRUE(r->ok()) << r->describe();
  // A retry follows a reset within milliseconds; give one time to show up.
  EXPECT_EQ(upstream_.waitForRequests(7, milliseconds(500)).size(), 6u)
      << "a request was retried after its client reset it";
  const std::string m = metrics();
  EXPECT_EQ(metricSum(m, "sidetrace_upstream_ejections_total", "cluster=\"pool\""), 0) << m;
  EXPECT_EQ(metricSum(m, "sidetrace_upstream_retries_total", "outcome=\"attempted\""), 0) << m;
}

// A reload keeps ejections: the ejected endpoint stays out under the new config.
TEST_F(OutlierDetectionTest, ReloadKeepsEjections) {
  upstream_.setDefault(Behavior::fixed(503, "broken"));
  const std::string od =
      "outlier_detection: { consecutive_5xx: 3, base_ejection_time: 30s, max_ejection_percent: "
      "50 }";
  const std::vector<uint16_t> eps = {upstream_.port(), second_.port()};
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(poolConfigYaml(eps, {}, {od})));
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(httpRequest(port(), "GET", "/api/x"));
  }
  ASSERT_EQ(upstream_.requestCount(), 3u);

  ASSERT_NO_FATAL_FAILURE(reloadYaml(poolConfigYaml(eps, {}, {od, "idle_timeout: 30s"})));
  for (int i = 0; i < 20; ++i) {
    auto r = httpRequest(port(), "GET", "/api/x");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  EXPECT_EQ(upstream_.requestCount(), 3u) << "the reload put an ejected endpoint back";
}

// Four workers share the cluster's outlier state: sequential requests, each on a new connection,
// land on different workers (SO_REUSEPORT), yet the failing endpoint gets exactly consecutive_5xx
// of them — not that many per worker.
TEST_F(OutlierDetectionTest, WorkersShareTheEjection) {
  upstream_.setDefault(Behavior::fixed(503, "broken"));
  std::string yaml =
      poolConfigYaml({upstream_.port(), second_.port()}, {},
                     {"outlier_detection: { consecutive_5xx: 3, base_ejection_time: 30s, "
                      "max_ejection_percent: 50 }"});
  const auto at = yaml.find("workers: 1");
  ASSERT_NE(at, std::string::npos);
  yaml.replace(at, 10, "workers: 4");
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(yaml));
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(httpRequest(port(), "GET", "/api/x"));
  }
  EXPECT_EQ(upstream_.requestCount(), 3u);
  EXPECT_EQ(second_.requestCount(), 37u);
}

// The load test with the default retry budget: one of three endpoints fails hard; retries
// hide most of its first failures and outlier detection then takes it out of rotation. The budget
// (3 retries in flight at least) may refuse a few retries while a third of attempts fail: how many
// depends on timing (0-2 in a normal build, 5 once under ASan), but each failed request had an
// attempt at the failing endpoint, which ejection caps at 10 — that is the bound asserted.
TEST_F(OutlierDetectionTest, WithRetriesOneFailingEndpointIsInvisible) {
  second_.setDefault(Behavior::close());
  ASSERT_NO_FATAL_FAILURE(start({upstream_.port(), second_.port(), third_.port()},
                                "{ consecutive_5xx: 5, base_ejection_time: 30s }",
                                "{ retry_on: [ connect-failure, reset, gateway-error ], "
                                "num_retries: 2 }"));
  constexpr int kClients = 8;
  constexpr int kPerClient = 500;
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      std::optional<HttpConnection> conn;
      conn.emplace(port());
      for (int i = 0; i < kPerClient; ++i) {
        auto r = conn->request("GET", "/api/load");
        if (r && r->status == 200) {
          ++ok;
        } else {
          conn.emplace(port());
        }
      }
    });
  }
  for (auto& t : clients) {
    t.join();
  }
  const int total = kClients * kPerClient;
  EXPECT_LE(second_.requestCount(), 10u) << "ejected after a handful of failures";
  EXPECT_LE(static_cast<size_t>(total - ok), second_.requestCount())
      << ok << " of " << total << " succeeded";
  EXPECT_GE(ok * 400, total * 399) << ok << " of " << total << " succeeded";
}

}  // namespace
}  // namespace sidetrace::it
