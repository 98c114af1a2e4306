// clusters[].lb through the real binary: weighted round robin and least_request, over three
// FakeUpstreams. workers: 1, so every request goes through one pool and one balancer.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;

class LbTest : public IntegrationTest {
 protected:
  // One route (prefix /) to cluster `app` with the given lb and endpoints (YAML flow items).
  static std::string config(const std::string& lb, const std::vector<std::string>& endpoints) {
    std::string eps;
    for (const auto& e : endpoints) {
      eps += (eps.empty() ? "" : ", ") + e;
    }
    return "admin: { address: \"127.0.0.1:{{ADMIN_PORT}}\" }\n"
           "workers: 1\n"
           "listeners:\n"
           "  - name: ingress\n"
           "    address: \"127.0.0.1:{{LISTEN_PORT}}\"\n"
           "    routes:\n"
           "      - { name: app, match: { prefix: / }, cluster: app, timeout: 20s }\n"
           "clusters:\n"
           "  - name: app\n"
           "    lb: " +
           lb +
           "\n"
           "    endpoints: [ " +
           eps +
           " ]\n"
           "tracing:\n"
           "  service_name: it-svc\n"
           "  exporter: { protocol: grpc, endpoint: \"http://127.0.0.1:{{OTLP_PORT}}\", "
           "timeout: 2s }\n"
           "  batch: { schedule_delay: 100ms }\n"
           "limits: { drain_timeout: 2s }\n";
  }
  static std::string at(const FakeUpstream& u) {
    return "\"127.0.0.1:" + std::to_string(u.port()) + "\"";
  }
  static std::string weighted(const FakeUpstream& u, int weight) {
    return "{ address: " + at(u) + ", weight: " + std::to_string(weight) + " }";
  }

  FakeUpstream a_, b_, c_;
};

// Smooth weighted round robin is deterministic: weights 1,1,2 give exactly 1/4, 1/4, 1/2 of every
// multiple of 4 requests.
TEST_F(LbTest, WeightedRoundRobinSplitsExactly) {
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(config("round_robin", {at(a_), at(b_), weighted(c_, 2)})));
  HttpConnection conn(port());
  ASSERT_TRUE(conn.connected());
  for (int i = 0; i < 400; ++i) {
    auto r = conn.request("GET", "/r/" + std::to_string(i));
    ASSERT_TRUE(r) << "request " << i << ": " << conn.lastError();
    ASSERT_EQ(r->status, 200) << "request " << i;
  }
  EXPECT_EQ(a_.requestCount(), 100u);
  EXPECT_EQ(b_.requestCount(), 100u);
  EXPECT_EQ(c_.requestCount(), 200u);
}

// least_request: an endpoint that stalls holds its requests open, so it has more active requests
// than the others and loses the power-of-two comparison; clients keep going through the other two.
// (Round robin would send every client to it within three requests, and 200s would stop.)
TEST_F(LbTest, LeastRequestSteersAwayFromAStalledEndpoint) {
  c_.setDefault(Behavior::stall(milliseconds(60000)));  // until stop()
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(config("least_request", {at(a_), at(b_), at(c_)})));
  constexpr int kClients = 6;
  constexpr int kTarget = 60;  // 200s wanted before the stalled endpoint is released
  std::atomic<int> ok{0};
  std::atomic<bool> done{false};
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; ++t) {
    clients.emplace_back([&, t] {
      HttpConnection conn(port());
      for (int i = 0; !done && conn.connected(); ++i) {
        auto r = conn.request("GET", "/c" + std::to_string(t) + "/" + std::to_string(i), {}, {},
                              milliseconds(70000));
        if (!r || r->status != 200) {
          break;
        }
        if (++ok >= kTarget) {
          done = true;
        }
      }
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!done && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  done = true;
  const size_t stalled = c_.requestCount();
  c_.stop();  // the requests it holds end (502), and their clients stop
  for (auto& t : clients) {
    t.join();
  }
  const size_t a = a_.requestCount();
  const size_t b = b_.requestCount();
  EXPECT_GE(ok.load(), kTarget) << "clients got stuck on the stalled endpoint";
  EXPECT_LT(stalled, a) << "stalled " << stalled << ", others " << a << " and " << b;
  EXPECT_LT(stalled, b) << "stalled " << stalled << ", others " << a << " and " << b;
  EXPECT_LT(stalled, static_cast<size_t>(kClients)) << "some client must never wait on it";
}

}  // namespace
}  // namespace sidetrace::it
