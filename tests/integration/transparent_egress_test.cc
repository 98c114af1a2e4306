// Transparent egress through the real binary: an app that knows nothing of proxies calls a
// "remote" service by IP, k8s/egress-iptables.sh redirects that connection to sidetrace's egress
// listener (iptables REDIRECT, nat OUTPUT), and sidetrace, running as its own uid (65532, which the
// rules exclude), forwards it to the original destination (SO_ORIGINAL_DST) with a CLIENT span
// and traceparent.
//
// iptables rules and addresses are not the machine's to change: each test re-runs itself in a
// private network namespace (unshare --net, lo up, the remote address 198.51.100.7 — TEST-NET-2 —
// on lo), where the whole test — its fake services, sidetrace and the app — lives and dies.
// Needs root, unshare, setpriv and iptables (tests/install-deps.sh); else it skips (fails in CI).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/integration/child_process.h"
#include "tests/integration/grpc_echo_client.h"
#include "tests/integration/grpc_echo_server.h"
#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

namespace fs = std::filesystem;

constexpr char kInsideEnv[] = "SIDETRACE_IT_TRANSPARENT_NETNS";
constexpr char kRemote[] = "198.51.100.7";
constexpr char kUid[] = "65532";

std::string scriptPath() {
  return std::string(SIDETRACE_IT_SOURCE_DIR) + "/../../k8s/egress-iptables.sh";
}

bool insideNamespace() {
  const char* v = std::getenv(kInsideEnv);
  return v != nullptr && std::string(v) == "1";
}

// Outside the namespace: whether this machine can run the test ("" when it can).
std::string missingPrerequisite() {
  if (::geteuid() != 0) {
    return "needs root (iptables in a private network namespace, setpriv to uid 65532)";
  }
  for (const char* tool : {"unshare", "setpriv", "iptables", "ip"}) {
    if (runCommand(std::string("command -v ") + tool).first != 0) {
      return std::string("needs ") + tool + " (tests/install-deps.sh installs iptables)";
    }
  }
  if (auto [rc, out] = runCommand("unshare --net iptables -t nat -S"); rc != 0) {
    return "iptables does not work in a private network namespace: " + out;
  }
  return "";
}

// Runs the current test again in a private network namespace; its output becomes this test's
// failure message if it fails (or skips: inside, nothing may be missing).
void runInsideNamespace() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string filter =
      std::string("--gtest_filter=") + info->test_suite_name() + "." + info->name();
  const std::string out =
      fs::temp_directory_path() / ("sidetrace-netns-" + std::to_string(::getpid()) + ".out");
  std::vector<std::string> env = currentEnvironment();
  env.push_back(std::string(kInsideEnv) + "=1");
  std::string error;
  const pid_t pid = spawnChild({.argv = {"unshare", "--net", "sh", "-c",
                                         "ip link set lo up && ip addr add " +
                                             std::string(kRemote) + "/32 dev lo && exec \"$@\"",
                                         "sh", fs::read_symlink("/proc/self/exe").string(), filter},
                                .env = env,
                                .stdout_path = out,
                                .stderr_path = out + ".err"},
                               &error);
  ASSERT_GT(pid, 0) << error;
  int status = 0;
  ::waitpid(pid, &status, 0);
  const std::string text = readFile(out) + readFile(out + ".err");
  ::unlink(out.c_str());
  ::unlink((out + ".err").c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << text;
  EXPECT_NE(text.find("[  PASSED  ] 1 test"), std::string::npos) << text;
  EXPECT_EQ(text.find("[  SKIPPED ]"), std::string::npos) << text;
}

// The test body runs only inside the namespace; outside, it re-runs itself there.
#define INSIDE_NAMESPACE_ONLY()                                    \
  do {                                                             \
    if (!insideNamespace()) {                                      \
      if (std::string why = missingPrerequisite(); !why.empty()) { \
        SKIP_OR_FAIL_IN_CI(why);                                   \
      }                                                            \
      runInsideNamespace();                                        \
      return;                                                      \
    }                                                              \
  } while (0)

// One request on a fresh connection to ip:port (redirected or not, as the rules say): the status
// and the body, or "no answer".
std::string rawGet(const char* ip, uint16_t port, const std::string& target,
                   const std::string& host) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  ::inet_pton(AF_INET, ip, &addr.sin_addr);
  TcpSocket sock(fd);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return "no answer";
  }
  sock.sendAll("GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n");
  const std::string resp = sock.readUntilClosed(Millis(10000));
  const size_t body = resp.find("\r\n\r\n");
  if (resp.size() < 12 || !resp.starts_with("HTTP/1.1 ") || body == std::string::npos) {
    return "no answer";
  }
  return resp.substr(9, 3) + " " + resp.substr(body + 4);
}

// legacy_app.py with no proxy variable at all: it calls its downstream directly.
class DirectApp : public ListeningChild {
 public:
  DirectApp(const std::string& dir, const std::string& downstream)
      : ListeningChild(
            {.argv = {python3Path(), std::string(SIDETRACE_IT_SOURCE_DIR) + "/legacy_app.py",
                      downstream},
             .env = {"PATH=/usr/local/bin:/usr/bin:/bin"},
             .stdout_path = dir + "/app.out",
             .stderr_path = dir + "/app.err"}) {}
};

class TransparentEgressTest : public IntegrationTest {
 protected:
  // Inside the namespace: the remote service on kRemote, sidetrace as uid 65532 (a copy of the
  // binary in its own directory, which that uid can reach), the rules applied.
  void SetUp() override {
    IntegrationTest::SetUp();
    if (!insideNamespace()) {
      return;
    }
    remote_ = std::make_unique<FakeUpstream>(kRemote, 0);
    ASSERT_EQ(::chown(proc_.dir().c_str(), 65532, 65532), 0);
    const std::string bin = proc_.dir() + "/sidetrace";
    fs::copy_file(sidetraceBinary(), bin, fs::copy_options::overwrite_existing);
    fs::permissions(bin, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                             fs::perms::others_read | fs::perms::others_exec);
    ::setenv("SIDETRACE_BIN", bin.c_str(), 1);  // this process runs this one test only
    proc_.runUnder({"setpriv", std::string("--reuid=") + kUid, std::string("--regid=") + kUid,
                    "--clear-groups", "--pdeathsig=KILL"});
  }

  std::string yaml(uint16_t app_port) {
    return R"(admin: { address: "127.0.0.1:0" }
workers: 2
listeners:
  - name: ingress
    address: "127.0.0.1:0"
    routes:
      - { name: app, match: { prefix: / }, cluster: app }
clusters:
  - name: app
    endpoints: [ "127.0.0.1:)" +
           std::to_string(app_port) + R"(" ]
egress:
  address: "127.0.0.1:0"
tracing:
  service_name: legacy-a
  exporter: { protocol: grpc, endpoint: "http://127.0.0.1:{{OTLP_PORT}}", timeout: 2s }
  batch: { schedule_delay: 100ms }
limits: { drain_timeout: 2s }
)";
  }

  // Runs k8s/egress-iptables.sh ARGS; fails the test unless it exits 0.
  void rules(const std::string& args) {
    auto [rc, out] = runCommand("bash " + scriptPath() + " " + args);
    ASSERT_EQ(rc, 0) << out;
  }
  std::string natRules() { return runCommand("iptables -t nat -S").second; }
  std::string redirectArgs(const std::string& uid) {
    return "--egress-port " + std::to_string(proc_.listenPort("egress")) + " --uid " + uid +
           " --ports " + std::to_string(remote_->port()) + " --exclude-ports " +
           std::to_string(otlp_.port());
  }

  std::unique_ptr<FakeUpstream> remote_;
};

// The app calls the remote service by IP, unaware of sidetrace: the call arrives with the
// traceparent of an egress CLIENT span under the inbound request that caused it, exactly once.
TEST_F(TransparentEgressTest, RedirectedCallJoinsTheTrace) {
  INSIDE_NAMESPACE_ONLY();
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(yaml(upstream_.port())));
  const std::string remote = std::string(kRemote) + ":" + std::to_string(remote_->port());
  DirectApp app(proc_.dir(), remote);
  ASSERT_NE(app.port(), 0) << app.logs();
  ASSERT_NO_FATAL_FAILURE(reloadYaml(yaml(app.port())));
  ASSERT_NO_FATAL_FAILURE(rules(redirectArgs(kUid)));
  const std::string once = natRules();
  ASSERT_NO_FATAL_FAILURE(rules(redirectArgs(kUid)));  // idempotent: the same rules again
  EXPECT_EQ(natRules(), once);

  auto r = httpRequest(port(), "GET", "/plain/t1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "200 ") << app.logs() << proc_.logs();

  auto spans = otlp_.waitForSpans(3, Millis(10000));
  const FlatSpan* in = clientSpanWithUrl(spans, "/plain/t1");
  const FlatSpan* out = clientSpanWithUrl(spans, "/from/t1");
  ASSERT_TRUE(in != nullptr && out != nullptr) << describeAll(spans);
  EXPECT_EQ(out->trace_id, in->trace_id);
  EXPECT_EQ(out->parent_span_id, in->span_id);
  EXPECT_EQ(out->str("sidetrace.parent.source"), "single_inflight");
  EXPECT_EQ(out->str("server.address"), kRemote);
  EXPECT_EQ(out->str("network.peer.address"), kRemote);
  EXPECT_EQ(out->integer("server.port"), remote_->port());
  EXPECT_EQ(out->integer("http.response.status_code"), 200);

  auto got = remote_->waitForRequests(1, Millis(5000));
  ASSERT_EQ(got.size(), 1u);  // once: sidetrace's own connection was not redirected again
  EXPECT_EQ(got[0].target, "/from/t1");
  EXPECT_EQ(got[0].header("traceparent").value_or("<missing>"),
            "00-" + out->trace_id + "-" + out->span_id + "-01");
  EXPECT_EQ(got[0].header("host").value_or("<missing>"), remote) << describeHeaders(got[0].headers);
  EXPECT_NE(got[0].header("via").value_or("").find("sidetrace-"), std::string::npos);

  // A name in Host is the span's server.address; the address is still where it goes.
  EXPECT_EQ(rawGet(kRemote, remote_->port(), "/from/named", "api.example.test"), "200 ")
      << describeAll(otlp_.waitForSpans(4, Millis(3000)));
  spans = waitSpansSettled(otlp_, 4);
  const FlatSpan* named = clientSpanWithUrl(spans, "/from/named");
  ASSERT_NE(named, nullptr) << describeAll(spans);
  EXPECT_EQ(named->str("server.address"), "api.example.test");
  EXPECT_EQ(named->str("network.peer.address"), kRemote);
  EXPECT_EQ(named->str("sidetrace.parent.source"), "none");

  // Without the rules the same call goes straight to the remote service.
  ASSERT_NO_FATAL_FAILURE(rules("--clean"));
  EXPECT_EQ(natRules().find("SIDETRACE"), std::string::npos) << natRules();
  EXPECT_EQ(rawGet(kRemote, remote_->port(), "/from/direct", "x"), "200 ");
  got = remote_->waitForRequests(3, Millis(5000));
  ASSERT_EQ(got.size(), 3u);
  EXPECT_FALSE(got[2].header("traceparent").has_value());
  EXPECT_EQ(metricSum(metrics(), "sidetrace_egress_parent_total", ""), 2);
}

// A gRPC client redirected the same way speaks h2c by prior knowledge to what it takes for its
// destination: the call goes on over HTTP/2 to the original destination, streaming and status
// intact, with its CLIENT span and traceparent.
TEST_F(TransparentEgressTest, RedirectedGrpcCallGoesOnOverHttp2) {
  INSIDE_NAMESPACE_ONLY();
  EchoServer echo({.address = kRemote});
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(yaml(upstream_.port())));
  ASSERT_NO_FATAL_FAILURE(rules("--egress-port " + std::to_string(proc_.listenPort("egress")) +
                                " --uid " + kUid + " --ports " + std::to_string(echo.port()) +
                                " --exclude-ports " + std::to_string(otlp_.port())));
  EchoClient app({.address = echo.target()});  // the test process is the app (uid 0: redirected)
  auto u = app.unary({.message = "redirected"});
  ASSERT_TRUE(u.ok()) << u.describe() << proc_.logs();
  ASSERT_EQ(u.replies.size(), 1u);
  EXPECT_EQ(u.replies[0].authority, echo.target());
  auto b = app.bidi({{.message = "x"}, {.message = "y"}});
  ASSERT_TRUE(b.ok()) << b.describe();
  EXPECT_EQ(b.replies.size(), 2u);

  auto spans = waitSpansSettled(otlp_, 2);
  const std::string& tp = u.replies[0].traceparent;
  ASSERT_EQ(tp.size(), 55u) << "traceparent injected: '" << tp << "'";
  const FlatSpan* out = nullptr;
  for (const auto& sp : spans) {
    out = sp.span_id == tp.substr(36, 16) ? &sp : out;
  }
  ASSERT_NE(out, nullptr) << tp << "\n" << describeAll(spans);
  EXPECT_EQ(out->kind, 3);
  EXPECT_EQ(out->str("server.address"), kRemote);
  EXPECT_EQ(out->str("network.peer.address"), kRemote);
  EXPECT_EQ(out->integer("server.port"), echo.port());
  EXPECT_EQ(out->str("sidetrace.parent.source"), "none");  // nothing in flight on ingress
  EXPECT_EQ(echo.calls().size(), 2u);  // once each: sidetrace's own connection not redirected
}

// Rules that do not exclude sidetrace's uid send its own upstream connection back to it: the
// Via token it added tells, and the app gets 508 instead of a loop. A redirect to the egress
// port itself is refused the same way. The remote service never sees a request.
TEST_F(TransparentEgressTest, LoopsEndIn508) {
  INSIDE_NAMESPACE_ONLY();
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(yaml(upstream_.port())));
  ASSERT_NO_FATAL_FAILURE(rules(redirectArgs("1")));  // uid 1: sidetrace's connections too
  const std::string looped = rawGet(kRemote, remote_->port(), "/from/loop", "loop.test");
  EXPECT_EQ(looped.substr(0, 4), "508 ") << looped << proc_.logs();
  EXPECT_NE(looped.find("--uid-owner"), std::string::npos) << looped;

  const uint16_t egress = proc_.listenPort("egress");
  auto [rc, out] =
      runCommand("iptables -t nat -I OUTPUT -p tcp -d " + std::string(kRemote) + " --dport " +
                 std::to_string(egress) + " -j REDIRECT --to-ports " + std::to_string(egress));
  ASSERT_EQ(rc, 0) << out;
  const std::string self = rawGet(kRemote, egress, "/from/self", "self.test");
  EXPECT_EQ(self.substr(0, 4), "508 ") << self;
  EXPECT_NE(self.find("loop"), std::string::npos) << self;

  // Not redirected, origin-form is still not a forward-proxy request.
  auto direct = httpRequest(egress, "GET", "/from/x");
  ASSERT_TRUE(direct);
  EXPECT_EQ(direct->status, 400);

  EXPECT_EQ(remote_->requestCount(), 0u);
  stopProxyExpectClean();
}

}  // namespace
}  // namespace sidetrace::it
