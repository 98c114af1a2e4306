// Upstream connection lifetimes (issue 5 item 6): clusters[].idle_timeout closes pooled
// connections nobody used for that long, and max_connection_duration retires old ones, so the
// next request opens a fresh connection instead of reusing them. A pooled connection the origin
// closed while it sat idle is never the end of a request: a request is not lost, and not sent
// twice, whether the close was seen (peeked at) or found by sending on it.

#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;

class UpstreamLifetimeTest : public IntegrationTest {
 protected:
  void start(const std::string& cluster_key) {
    ASSERT_NO_FATAL_FAILURE(startProxyYaml(poolConfigYaml({upstream_.port()}, {}, {cluster_key})));
  }
};

TEST_F(UpstreamLifetimeTest, IdleConnectionsAreClosedAfterIdleTimeout) {
  ASSERT_NO_FATAL_FAILURE(start("idle_timeout: 200ms"));
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(httpRequest(port(), "GET", "/api/a")->status, 200);
  }
  EXPECT_EQ(upstream_.connectionCount(), 1u) << "kept alive while in use";
  std::this_thread::sleep_for(milliseconds(600));  // idle well past 200 ms, swept at ~100 ms
  ASSERT_EQ(httpRequest(port(), "GET", "/api/b")->status, 200);
  EXPECT_EQ(upstream_.connectionCount(), 2u) << "the idle connection was closed; a new one served";
}

TEST_F(UpstreamLifetimeTest, MaxConnectionDurationRetiresOldConnections) {
  ASSERT_NO_FATAL_FAILURE(start("max_connection_duration: 300ms"));
  for (int i = 0; i < 10; ++i) {  // a request every 100 ms for a second
    ASSERT_EQ(httpRequest(port(), "GET", "/api/x")->status, 200);
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_GE(upstream_.connectionCount(), 3u) << "a busy connection still ages out";
}

// The origin closes every keep-alive connection 100 ms after its last response, saying nothing.
// Each request below finds the pooled connection closed: a request without a body that may be
// sent twice (GET, DELETE) is sent on it and then once more on a fresh connection, one that must
// not be repeated (POST) is sent only after a peek found the connection alive. Either way the
// client gets the origin's answer, and the origin sees each request exactly once.
TEST_F(UpstreamLifetimeTest, ConnectionsTheOriginClosedWhileIdleLoseNoRequest) {
  upstream_.setDefault(Behavior::closeIdle(milliseconds(100)));
  ASSERT_NO_FATAL_FAILURE(start("idle_timeout: 60s"));
  const char* methods[] = {"GET", "DELETE", "POST", "GET", "HEAD", "POST", "GET"};
  size_t sent = 0;
  for (const char* method : methods) {
    auto r = httpRequest(port(), method, "/api/x");
    ASSERT_TRUE(r.has_value()) << method;
    EXPECT_EQ(r->status, 200) << method << " after the origin closed the pooled connection";
    ++sent;
    std::this_thread::sleep_for(milliseconds(300));  // the origin closes; its FIN arrives
  }
  EXPECT_EQ(upstream_.requestCount(), sent) << "no request lost or sent twice";
  EXPECT_EQ(upstream_.connectionCount(), sent) << "each on a connection of its own";
}

}  // namespace
}  // namespace sidetrace::it
