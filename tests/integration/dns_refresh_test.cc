// DNS refresh (clusters[].dns_refresh_rate) through the real binary: a cluster endpoint given as
// a name follows what the name resolves to — addresses added get traffic, addresses removed stop
// getting new requests while the ones in flight finish — with no client seeing an error.
//
// The name lives in a hosts file of the test's own: sidetrace runs in a private mount namespace
// (unshare --mount) where that file is bind-mounted over /etc/hosts, so the test edits DNS
// answers without touching the machine's. Each FakeUpstream listens on its own loopback address
// (127.0.0.2, .3, .4 on one port), so which one answered says which address was picked.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;
constexpr const char* kName = "backend.sidetrace.test";

// The resolver the proxy's /etc/resolv.conf names (so no lookup leaves the machine): a UDP socket
// on port 53 of a loopback address of its own. It answers every query with SERVFAIL at once, so a
// lookup that misses the hosts file fails quickly (a torn read of the file while the test rewrites
// it is one such miss). After silence() it answers nothing, so a lookup hangs as it does against
// an unreachable DNS server, until answer() is called again.
class Resolver {
 public:
  Resolver() : fd_(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) {
    for (int last = 77; last < 97 && address_.empty(); ++last) {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(53);
      const std::string ip = "127.0.0." + std::to_string(last);
      ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
      if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
        address_ = ip;
      }
    }
    answering_ = std::thread([this] { serve(); });
  }
  ~Resolver() {
    stop_ = true;
    answering_.join();
    ::close(fd_);
  }
  const std::string& address() const { return address_; }  // "" when none could be bound

  void silence() { silent_ = true; }
  void answer() { silent_ = false; }
  // While silent: a query arrived (and waits, unanswered) within `timeout`.
  bool waitQuery(milliseconds timeout) const {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
  }

 private:
  void serve() {
    while (!stop_) {
      if (silent_) {
        std::this_thread::sleep_for(milliseconds(20));
        continue;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) != 1) {
        continue;
      }
      unsigned char buf[512];
      sockaddr_storage from{};
      socklen_t len = sizeof from;
      const ssize_t n =
          ::recvfrom(fd_, buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &len);
      if (n >= 12) {                      // a DNS header at least
        buf[2] |= 0x80;                   // QR: a response
        buf[3] = (buf[3] & 0xf0) | 0x02;  // RCODE: SERVFAIL
        ::sendto(fd_, buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), len);
      }
    }
  }

  int fd_;
  std::string address_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> silent_{false};
  std::thread answering_;
};

class DnsRefreshTest : public IntegrationTest {
 protected:
  void SetUp() override {
    IntegrationTest::SetUp();
    auto [rc, out] = runCommand("unshare --mount true 2>&1");
    if (rc != 0) {
      SKIP_OR_FAIL_IN_CI("needs a private mount namespace (unshare --mount, root): " << out);
    }
    a_ = std::make_unique<FakeUpstream>("127.0.0.2", 0);
    b_ = std::make_unique<FakeUpstream>("127.0.0.3", a_->port());
    c_ = std::make_unique<FakeUpstream>("127.0.0.4", a_->port());
    hosts_ = proc_.dir() + "/hosts";
    setAddresses({"127.0.0.2"});
    ASSERT_FALSE(resolver_.address().empty()) << "no loopback address free for port 53";
    const std::string resolv = proc_.dir() + "/resolv.conf";
    std::ofstream(resolv) << "nameserver " << resolver_.address()
                          << "\noptions timeout:30 attempts:1\n";
    proc_.runUnder({"unshare", "--mount", "sh", "-c",
                    "mount --bind \"$0\" /etc/hosts && mount --bind \"$1\" /etc/resolv.conf && "
                    "shift && exec \"$@\"",
                    hosts_, resolv});
  }
  void TearDown() override {
    resolver_.answer();  // a lookup still hanging would hold up the proxy's exit
    IntegrationTest::TearDown();
  }

  // Rewrites the hosts file in place (same inode: the bind mount keeps showing it). A refresh may
  // read it half-written; that lookup misses, the resolver fails it, and the last answer stays.
  void setAddresses(const std::vector<std::string>& ips) {
    std::ofstream f(hosts_, std::ios::trunc);
    f << "127.0.0.1 localhost\n";
    for (const auto& ip : ips) {
      f << ip << " " << kName << "\n";
    }
  }

  std::string config(const std::string& cluster_extra = "") const {
    return "admin: { address: \"127.0.0.1:{{ADMIN_PORT}}\" }\n"
           "workers: 2\n"
           "listeners:\n"
           "  - name: ingress\n"
           "    address: \"127.0.0.1:{{LISTEN_PORT}}\"\n"
           "    routes:\n"
           "      - { name: api, match: { prefix: / }, cluster: pool, timeout: 20s }\n"
           "clusters:\n"
           "  - name: pool\n"
           "    endpoints: [ \"" +
           std::string(kName) + ":" + std::to_string(a_->port()) +
           "\" ]\n"
           "    dns_refresh_rate: 100ms\n" +
           cluster_extra +
           "tracing:\n"
           "  service_name: it-svc\n"
           "  exporter: { protocol: grpc, endpoint: \"http://127.0.0.1:{{OTLP_PORT}}\", "
           "timeout: 2s }\n"
           "  batch: { schedule_delay: 100ms }\n"
           "limits: { drain_timeout: 2s }\n";
  }

  std::string label(const char* ip) const {
    return "cluster=\"pool\",endpoint=\"" + std::string(ip) + ":" + std::to_string(a_->port()) +
           "\"";
  }

  // Requests on keep-alive connections from a few client threads until stop(), counting
  // anything but a 200.
  struct Traffic {
    std::atomic<bool> stop{false};
    std::atomic<int> ok{0};
    std::atomic<int> failed{0};
    std::string first_failure;
    std::vector<std::thread> threads;
    void start(uint16_t port, int clients) {
      for (int t = 0; t < clients; ++t) {
        threads.emplace_back([this, port, t] {
          auto conn = std::make_unique<HttpConnection>(port);
          for (int i = 0; !stop; ++i) {
            auto r = conn->request("GET", "/t" + std::to_string(t) + "/" + std::to_string(i));
            if (r && r->status == 200) {
              ++ok;
              continue;
            }
            if (failed++ == 0) {
              first_failure = r ? "status " + std::to_string(r->status) : conn->lastError();
            }
            conn = std::make_unique<HttpConnection>(port);
          }
        });
      }
    }
    void join() {
      stop = true;
      for (auto& t : threads) {
        if (t.joinable()) {
          t.join();
        }
      }
    }
    ~Traffic() { join(); }  // a failed ASSERT returns early; the threads still end
  };

  // Waits until `u` has answered more than `n` requests.
  static bool waitServed(const FakeUpstream& u, size_t n,
                         milliseconds timeout = milliseconds(10000)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (u.requestCount() <= n) {
      if (std::chrono::steady_clock::now() > deadline) {
        return false;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    return true;
  }

  std::unique_ptr<FakeUpstream> a_, b_, c_;
  std::string hosts_;
  Resolver resolver_;
};

TEST_F(DnsRefreshTest, EndpointsFollowTheNameWithoutDroppingTraffic) {
  a_->on("/slow", Behavior::stall(milliseconds(1500)));
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(config()));
  // A request in flight on 127.0.0.2 when it leaves DNS must still finish there.
  std::atomic<int> slow_status{0};
  std::jthread slow([&] {
    HttpConnection conn(port());
    auto r = conn.request("GET", "/slow");
    slow_status = r ? r->status : -1;
  });
  ASSERT_TRUE(waitServed(*a_, 0)) << proc_.logs();

  Traffic traffic;
  traffic.start(port(), 3);
  ASSERT_TRUE(waitServed(*a_, 20));
  EXPECT_EQ(b_->requestCount(), 0u);

  setAddresses({"127.0.0.2", "127.0.0.3"});  // scale out
  ASSERT_TRUE(waitServed(*b_, 20)) << "the new address got no traffic\n" << proc_.logs();

  setAddresses({"127.0.0.3"});  // 127.0.0.2 goes away
  EXPECT_EQ(waitMetric("sidetrace_upstream_endpoints", "state=\"removed\"", 1), 1) << metrics();
  // Picks already made when the change landed may still reach it; then nothing new does.
  std::this_thread::sleep_for(milliseconds(300));
  const size_t a_after = a_->requestCount();
  const size_t b_before = b_->requestCount();
  ASSERT_TRUE(waitServed(*b_, b_before + 100));
  EXPECT_EQ(a_->requestCount(), a_after) << "a removed address still gets new requests";

  setAddresses({"127.0.0.3", "127.0.0.4"});
  ASSERT_TRUE(waitServed(*c_, 20)) << proc_.logs();

  // A failed lookup (the name gone from the hosts file, the resolver answering SERVFAIL) keeps
  // the last answer.
  setAddresses({});
  std::this_thread::sleep_for(milliseconds(500));
  const size_t c_before = c_->requestCount();
  ASSERT_TRUE(waitServed(*c_, c_before + 20)) << "traffic stopped when the name stopped resolving";

  traffic.join();
  slow.join();
  EXPECT_EQ(slow_status, 200) << "the request in flight on the removed address was dropped";
  EXPECT_EQ(traffic.failed, 0) << traffic.first_failure << " (" << traffic.ok << " ok)";
  EXPECT_GT(traffic.ok, 200);

  const std::string m = metrics();
  EXPECT_GT(metricSum(m, "sidetrace_upstream_lb_picks_total", label("127.0.0.2")), 20) << m;
  EXPECT_GT(metricSum(m, "sidetrace_upstream_lb_picks_total", label("127.0.0.3")), 100) << m;
  EXPECT_GT(metricSum(m, "sidetrace_upstream_lb_picks_total", label("127.0.0.4")), 20) << m;
  EXPECT_EQ(metricSum(m, "sidetrace_upstream_endpoints", "state=\"present\""), 2) << m;
  EXPECT_NE(proc_.stderrText().find("now resolves to"), std::string::npos) << proc_.logs();
  stopProxyExpectClean();
}

// A reload while the old generation's DNS lookup hangs: retiring that generation stops its
// monitor, which waits for the lookup to end (30 s here), and no worker or main loop may wait for
// it. Requests keep flowing through the reload and after it, and the reload answers.
TEST_F(DnsRefreshTest, ReloadWhileALookupHangsKeepsServing) {
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(config()));
  Traffic traffic;
  traffic.start(port(), 4);
  ASSERT_TRUE(waitServed(*a_, 20)) << proc_.logs();
  resolver_.silence();
  setAddresses({});  // the next refresh asks the resolver, which does not answer
  ASSERT_TRUE(resolver_.waitQuery(milliseconds(5000))) << "no lookup reached the resolver";

  // The same address by IP: the new generation has nothing to resolve.
  std::string by_ip = config();
  by_ip.replace(by_ip.find(kName), std::string(kName).size(), "127.0.0.2");
  ASSERT_NO_FATAL_FAILURE(reloadYaml(by_ip));
  const int at_reload = traffic.ok;
  const size_t served = a_->requestCount();
  EXPECT_TRUE(waitServed(*a_, served + 50)) << "requests stalled after the reload";
  auto ready = httpRequest(proc_.adminPort(), "GET", "/ready");
  EXPECT_TRUE(ready && ready->status == 200) << "the main loop stalled";
  traffic.join();
  EXPECT_GT(traffic.ok, at_reload);
  EXPECT_EQ(traffic.failed, 0) << traffic.first_failure << " (" << traffic.ok << " ok)";
  resolver_.answer();
  stopProxyExpectClean();
}

// An address that appears later is health-checked before it gets traffic: while its /health
// fails it gets none, and the gauge says so.
TEST_F(DnsRefreshTest, NewAddressWaitsForItsFirstPassingHealthCheck) {
  b_->on("/health", Behavior::fixed(503, "starting"));
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(
      config("    health_check: { type: http, path: /health, interval: 100ms, timeout: 500ms, "
             "healthy_threshold: 2, unhealthy_threshold: 2 }\n")));
  Traffic traffic;
  traffic.start(port(), 2);
  ASSERT_TRUE(waitServed(*a_, 20));

  setAddresses({"127.0.0.2", "127.0.0.3"});
  // Probed (its /health answers 503), reported out of rotation, and no request reaches it.
  auto probed = [&] {
    for (const auto& r : b_->requests()) {
      if (r.target == "/health") {
        return true;
      }
    }
    return false;
  };
  const auto deadline = std::chrono::steady_clock::now() + milliseconds(10000);
  while (!probed() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_TRUE(probed()) << proc_.logs();
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(metricSum(metrics(), "sidetrace_upstream_endpoint_healthy", label("127.0.0.3")), 0);
  size_t early = 0;
  for (const auto& r : b_->requests()) {
    early += r.target != "/health" ? 1 : 0;
  }
  EXPECT_EQ(early, 0u) << "requests reached an endpoint that never passed a check";

  b_->on("/health", Behavior::fixed(200, "ok"));  // ready: one passing probe puts it in
  const size_t before = b_->requestCount();
  const auto deadline2 = std::chrono::steady_clock::now() + milliseconds(10000);
  size_t traffic_on_b = 0;
  while (traffic_on_b < 20 && std::chrono::steady_clock::now() < deadline2) {
    traffic_on_b = 0;
    for (const auto& r : b_->requests()) {
      traffic_on_b += r.target != "/health" ? 1 : 0;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_GE(traffic_on_b, 20u) << "requests seen by b: " << b_->requestCount() - before;
  EXPECT_EQ(waitMetric("sidetrace_upstream_endpoint_healthy", label("127.0.0.3"), 1), 1);
  traffic.join();
  EXPECT_EQ(traffic.failed, 0) << traffic.first_failure;
  stopProxyExpectClean();
}

}  // namespace
}  // namespace sidetrace::it
