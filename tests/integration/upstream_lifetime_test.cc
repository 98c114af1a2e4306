// Upstream connection lifetimes (issue 5 item 6): clusters[].idle_timeout closes pooled
// connections nobody used for that long, and max_connection_duration retires old ones, so the
// next request opens a fresh connection instead of reusing them.

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

}  // namespace
}  // namespace sidetrace::it
