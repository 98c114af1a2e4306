// The admin listener bound on 0.0.0.0 (as a sidecar binds it for kubelet's probes) answers /ready
// and /metrics to anyone, but /reload and /config_dump only to loopback peers: another pod must
// not reconfigure the proxy or read its config.
//
// A non-loopback peer needs a non-loopback address, and the machine's own addresses are not ours
// to use: sidetrace runs in a private network namespace (unshare --net) whose lo also carries
// 192.0.2.1 (TEST-NET-1, reachable only inside that namespace), and the test's client thread joins
// that namespace with setns(2). A connection to 192.0.2.1 then comes from 192.0.2.1.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <string>
#include <thread>

#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// One HTTP/1.1 request to ip:port on a blocking socket of the calling thread's namespace; the
// status code, or 0 when there is no answer.
int statusOf(const char* ip, uint16_t port, const std::string& method, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return 0;
  }
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, ip, &addr.sin_addr);
  int status = 0;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    std::string req = method + " " + path + " HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n";
    if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[64] = {};
      ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
      if (n > 12 && std::string(buf, 9) == "HTTP/1.1 ") {
        status = std::atoi(buf + 9);
      }
    }
  }
  close(fd);
  return status;
}

std::string nsOf(const std::string& link) {
  char buf[64] = {};
  ssize_t n = readlink(link.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, n) : "";
}

class AdminControlTest : public IntegrationTest {};

TEST_F(AdminControlTest, ControlEndpointsAnswerOnlyLoopbackPeers) {
  auto [rc, out] = runCommand("unshare --net ip link set lo up 2>&1");
  if (rc != 0) {
    SKIP_OR_FAIL_IN_CI(
        "needs a private network namespace (unshare --net, iproute2, root): " << out);
  }
  proc_.runUnder({"unshare", "--net", "sh", "-c",
                  "ip link set lo up && ip addr add 192.0.2.1/32 dev lo && exec \"$@\"", "sh"});
  std::map<std::string, std::string> v = vars();
  v["UPSTREAM_PORT"] = "1";  // nothing of the test's is reachable from that namespace
  ASSERT_TRUE(proc_.startWithConfig(R"(admin: { address: "0.0.0.0:{{ADMIN_PORT}}" }
workers: 1
listeners:
  - name: ingress
    address: "127.0.0.1:{{LISTEN_PORT}}"
    routes:
      - match: { prefix: / }
        cluster: app
clusters:
  - name: app
    endpoints: [ "127.0.0.1:{{UPSTREAM_PORT}}" ]
tracing: { exporter: { protocol: none } }
)",
                                    v));
  const uint16_t admin = proc_.adminPort();
  std::map<std::string, int> remote, local;
  std::string failure;
  std::thread inside([&] {
    const std::string path = "/proc/" + std::to_string(proc_.pid()) + "/ns/net";
    // The child unshares after the spawn returned: wait until it is in a namespace of its own.
    auto deadline = Clock::now() + milliseconds(15000);
    while (nsOf(path) == nsOf("/proc/self/ns/net") && Clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    int ns = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) {
      failure = "cannot join " + path + ": " + std::strerror(errno);
      return;
    }
    close(ns);
    while (statusOf("127.0.0.1", admin, "GET", "/ready") != 200 && Clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(50));
    }
    for (const char* path : {"/ready", "/metrics", "/config_dump", "/tracez"}) {
      remote[path] = statusOf("192.0.2.1", admin, "GET", path);
      local[path] = statusOf("127.0.0.1", admin, "GET", path);
    }
    remote["/reload"] = statusOf("192.0.2.1", admin, "POST", "/reload");
    local["/reload"] = statusOf("127.0.0.1", admin, "POST", "/reload");
  });
  inside.join();
  ASSERT_EQ(failure, "");

  EXPECT_EQ(remote["/ready"], 200) << proc_.logs();
  EXPECT_EQ(remote["/metrics"], 200);
  EXPECT_EQ(remote["/config_dump"], 403);
  EXPECT_EQ(remote["/tracez"], 403);  // traces hold request data: like the config, pod-local
  EXPECT_EQ(remote["/reload"], 403);
  EXPECT_EQ(local["/ready"], 200);
  EXPECT_EQ(local["/metrics"], 200);
  EXPECT_EQ(local["/config_dump"], 200);
  EXPECT_EQ(local["/tracez"], 200);
  EXPECT_EQ(local["/reload"], 200);
  stopProxyExpectClean();
}

}  // namespace
}  // namespace sidetrace::it
