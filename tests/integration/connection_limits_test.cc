// Per-connection costs and bounds of the downstream side (hardening issue, item 6): memory held by
// idle keep-alive connections, limits.max_connections, accept under file-descriptor exhaustion,
// and limits.idle_timeout on local replies the client does not read and on idle upgraded tunnels.
// Bounds here are on memory and on counts, never on how fast something happens.

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// A "Vm...:   1234 kB" field of /proc/<pid>/status, in KiB; nullopt if unreadable.
std::optional<uint64_t> procStatusKiB(int pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      return std::stoull(line.substr(field.size() + 1));
    }
  }
  return std::nullopt;
}

// Raises this process's open-files limit (inherited by the proxy it starts) to at least `want`;
// false when the hard limit is lower.
bool raiseOpenFiles(rlim_t want) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_max < want) {
    return false;
  }
  if (rl.rlim_cur < want) {
    rl.rlim_cur = want;
    return setrlimit(RLIMIT_NOFILE, &rl) == 0;
  }
  return true;
}

class ConnectionLimitsTest : public IntegrationTest {
 protected:
  // Polls /metrics until sidetrace_downstream_connections_active equals `want`.
  bool waitActiveConnections(double want, milliseconds timeout = milliseconds(20000)) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (metricSum(metrics(), "sidetrace_downstream_connections_active", "") == want) {
        return true;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    return false;
  }
};

// 1,000 keep-alive connections that each served one request and went idle cost under 4 KiB each
// of VmRSS growth (the target; 2.2 KiB measured here, 2.7 before the idle list). Before
// the worker's buffer pool every one of them held two zero-filled limits.buffer_bytes (64 KiB)
// buffers, about 130 KiB each; before the request-state pool 5.7 KiB.
TEST_F(ConnectionLimitsTest, IdleKeepAliveConnectionsHoldNoBuffers) {
  constexpr size_t kConnections = 1000;
  // Under ASan, redzones around every block and the 1/8 shadow: 16.3 KiB measured (traced),
  // still far below the 130 KiB of two held buffers.
  const double kMaxKiBPerConnection = binarySanitizer() == Sanitizer::address ? 32 : 4;
  if (!raiseOpenFiles(kConnections * 2 + 256)) {
    GTEST_SKIP() << "open-files hard limit below " << kConnections * 2 + 256;
  }
  ProxyConfig cfg;
  cfg.workers = 1;
  // Untraced, so that what grows is the connections, not the span queue and export buffers.
  cfg.sampler = "{ type: always_off }";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  // Warm-up: the upstream pool connection, lazily built state, a first buffer in the pool.
  for (int i = 0; i < 3; ++i) {
    auto r = httpRequest(port(), "GET", "/api/warm");
    ASSERT_TRUE(r && r->status == 200);
  }
  const auto before = procStatusKiB(proc_.pid(), "VmRSS");
  ASSERT_TRUE(before);

  std::vector<std::unique_ptr<HttpConnection>> conns;
  for (size_t i = 0; i < kConnections; ++i) {
    auto c = std::make_unique<HttpConnection>(port());
    ASSERT_TRUE(c->connected()) << "connection " << i;
    auto r = c->request("GET", "/api/idle");
    ASSERT_TRUE(r) << "connection " << i << ": " << c->lastError();
    ASSERT_EQ(r->status, 200);
    ASSERT_TRUE(r->keep_alive);
    conns.push_back(std::move(c));
  }
  ASSERT_TRUE(waitActiveConnections(kConnections));
  const auto after = procStatusKiB(proc_.pid(), "VmRSS");
  ASSERT_TRUE(after);
  const double per = (static_cast<double>(*after) - static_cast<double>(*before)) / kConnections;
  std::cout << "[ idle keep-alive ] VmRSS " << *before << " -> " << *after << " kB: " << per
            << " KiB per connection\n";
  RecordProperty("kib_per_connection", std::to_string(per));
  EXPECT_LT(per, kMaxKiBPerConnection);
  // They still work: a second request on the first and the last.
  for (auto* c : {conns.front().get(), conns.back().get()}) {
    auto r = c->request("GET", "/api/again");
    ASSERT_TRUE(r) << c->lastError();
    EXPECT_EQ(r->status, 200);
  }
}

// limits.idle_timeout closes a keep-alive connection that waits for its next request, and a new
// one that never sends a byte; one used again meanwhile keeps working (the worker's idle list
// holds every idle connection under one timer, none of its own).
TEST_F(ConnectionLimitsTest, IdleAndSilentConnectionsCloseAfterIdleTimeout) {
  ProxyConfig cfg;
  cfg.workers = 1;
  cfg.limits_extra = "idle_timeout: 300ms";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  HttpConnection used(port());
  HttpConnection twice(port());
  HttpConnection silent(port());
  ASSERT_TRUE(silent.connected());
  for (auto* c : {&used, &twice, &twice}) {
    auto r = c->request("GET", "/api/x");
    ASSERT_TRUE(r) << c->lastError();
    ASSERT_EQ(r->status, 200);
    ASSERT_TRUE(r->keep_alive);
  }
  for (auto* c : {&used, &twice, &silent}) {
    EXPECT_TRUE(c->waitClosed(milliseconds(20000))) << "an idle connection was kept open";
  }
  EXPECT_TRUE(waitActiveConnections(0));
  auto r = httpRequest(port(), "GET", "/ping");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

// limits.max_connections is per process (two workers here): the connection over it is closed
// right after accept and counted; once one closes, a new one is served again.
TEST_F(ConnectionLimitsTest, MaxConnectionsClosesTheExtraConnection) {
  ProxyConfig cfg;
  cfg.limits_extra = "max_connections: 2";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  auto a = std::make_unique<HttpConnection>(port());
  HttpConnection b(port());
  for (auto* c : {a.get(), &b}) {
    auto r = c->request("GET", "/ping");
    ASSERT_TRUE(r) << c->lastError();
    ASSERT_EQ(r->status, 200);
  }
  HttpConnection extra(port());
  ASSERT_TRUE(extra.connected());  // the kernel completes the handshake; the proxy then closes
  EXPECT_TRUE(extra.waitClosed(milliseconds(10000))) << "a third connection was kept open";
  EXPECT_GE(waitMetric("sidetrace_downstream_connections_overflow_total", "", 1), 1);
  EXPECT_EQ(metricSum(metrics(), "sidetrace_downstream_connections_active", ""), 2);

  a.reset();
  ASSERT_TRUE(waitActiveConnections(1));
  auto r = httpRequest(port(), "GET", "/ping");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  // The kept ones were never disturbed.
  auto rb = b.request("GET", "/ping");
  ASSERT_TRUE(rb) << b.lastError();
  EXPECT_EQ(rb->status, 200);
}

// Out of file descriptors (RLIMIT_NOFILE set low with prlimit), accept fails for every queued
// connection; the listener must back off (100 ms) instead of retrying at once, which burned a core
// and made hundreds of thousands of failed accepts a second. Once descriptors free up, service
// resumes. The bound is on the number of failed accepts per second of wall time, generous.
TEST_F(ConnectionLimitsTest, AcceptBacksOffWhenOutOfDescriptors) {
  constexpr int kNoFile = 128;
  constexpr size_t kClients = 200;  // more than the proxy can hold at kNoFile
  proc_.runUnder(
      {"prlimit", "--nofile=" + std::to_string(kNoFile) + ":" + std::to_string(kNoFile)});
  ProxyConfig cfg;
  cfg.workers = 1;
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  const auto t0 = Clock::now();
  std::vector<TcpSocket> clients(kClients);
  for (auto& c : clients) {
    ASSERT_TRUE(c.connect(port()));  // the backlog takes what the proxy cannot accept
  }
  std::this_thread::sleep_for(milliseconds(1500));
  for (auto& c : clients) {
    c.close();
  }
  // Descriptors are free again: admin and listener both answer.
  const double failures =
      waitMetric("sidetrace_downstream_accept_failures_total", "", 1, milliseconds(20000));
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_GE(failures, 1) << "the proxy never ran out of descriptors: raise kClients\n"
                         << proc_.logs();
  // 10 a second at most with the back-off; spinning made orders of magnitude more.
  EXPECT_LE(failures, 20 * seconds + 20) << "over " << seconds << " s";
  auto r = httpRequest(port(), "GET", "/ping");
  ASSERT_TRUE(r) << proc_.logs();
  EXPECT_EQ(r->status, 200);
}

// A client that asks for a large direct response and never reads it: the reply's write gets
// limits.idle_timeout, then the connection is closed (it used to be held forever).
TEST_F(ConnectionLimitsTest, UnreadLocalReplyTimesOut) {
  ProxyConfig cfg;
  cfg.limits_extra = "idle_timeout: 300ms";
  std::string yaml = standardConfigYaml(cfg);
  const std::string routes = "    routes:\n";
  const size_t at = yaml.find(routes);
  ASSERT_NE(at, std::string::npos);
  // More than the client's receive buffer (clamped below) plus the proxy's largest send buffer.
  yaml.insert(at + routes.size(),
              "      - name: big\n        match: { path: /big }\n"
              "        direct_response: { status: 200, body: \"" +
                  std::string(8 << 20, 'x') + "\" }\n");
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(yaml));

  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  TcpSocket sock(fd);
  int small = 4096;
  ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_TRUE(sock.sendAll(buildRequest("GET", "/big", {})));
  // The request ends (and is counted) only once its reply's write gave up.
  EXPECT_GE(
      waitMetric("sidetrace_downstream_requests_total", "route=\"big\"", 1, milliseconds(20000)),
      1);
  EXPECT_TRUE(waitActiveConnections(0))
      << "the proxy still holds a connection whose client does not read its reply";
}

// An upgraded (WebSocket) tunnel with no byte either way for limits.idle_timeout is closed (it
// used to stay open, holding both connections, until a peer closed).
TEST_F(ConnectionLimitsTest, IdleUpgradedTunnelIsClosed) {
  upstream_.onPrefix("/ws", Behavior::upgrade());
  ProxyConfig cfg;
  cfg.limits_extra = "idle_timeout: 300ms";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  HttpConnection c(port());
  auto r = c.request("GET", "/ws/chat",
                     {{"Connection", "Upgrade"},
                      {"Upgrade", "websocket"},
                      {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                      {"Sec-WebSocket-Version", "13"}});
  ASSERT_TRUE(r) << c.lastError();
  ASSERT_EQ(r->status, 101);
  ASSERT_TRUE(c.send("ping"));
  std::string& got = c.leftover();
  ASSERT_TRUE(c.socket().readUntil(got, "ping", milliseconds(5000)));
  EXPECT_TRUE(c.waitClosed(milliseconds(20000))) << "an idle tunnel was kept open";
  EXPECT_TRUE(waitActiveConnections(0));
}

}  // namespace
}  // namespace sidetrace::it
