// The harness's own guarantees, checked against the real binary: a sidetrace that crashes, is
// killed by a signal, exits unasked or writes a sanitizer report fails the test that ran it; every
// port it listens on is the one it reported; a dead port stays held; and its process does not
// outlive a test binary killed mid-run.

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "tests/integration/child_process.h"
#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;
namespace fs = std::filesystem;

// Runs proc.finish() with gtest's failure reporting intercepted: returns what it would have
// reported, so a test can assert that the check fires without failing itself.
std::vector<std::string> interceptFinish(SidetraceProcess& proc) {
  ::testing::TestPartResultArray results;
  {
    ::testing::ScopedFakeTestPartResultReporter reporter(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &results);
    proc.finish();
  }
  std::vector<std::string> failures;
  for (int i = 0; i < results.size(); ++i) {
    if (results.GetTestPartResult(i).failed()) {
      failures.push_back(results.GetTestPartResult(i).message());
    }
  }
  return failures;
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    out += s.substr(0, 300) + "\n---\n";
  }
  return out;
}

class HarnessTest : public IntegrationTest {
 protected:
  std::string yaml(int workers = 1) {
    ProxyConfig c;
    c.workers = workers;
    return standardConfigYaml(c);
  }
};

TEST_F(HarnessTest, CleanRunReportsNothing) {
  SidetraceProcess p;
  ASSERT_TRUE(p.startWithConfig(yaml(), vars()));
  ASSERT_TRUE(p.waitReady()) << p.logs();
  auto failures = interceptFinish(p);
  EXPECT_TRUE(failures.empty()) << joined(failures);
}

class HarnessCrashTest : public HarnessTest, public ::testing::WithParamInterface<int> {};

// A crash while the test runs (here: after its last request), not noticed by any assertion.
TEST_P(HarnessCrashTest, CrashMidTestFailsTheTest) {
  SidetraceProcess p;
  ASSERT_TRUE(p.startWithConfig(yaml(), vars()));
  ASSERT_TRUE(p.waitReady()) << p.logs();
  auto r = httpRequest(p.listenPort(), "GET", "/ping");
  ASSERT_TRUE(r && r->status == 200);
  ASSERT_EQ(::kill(p.pid(), GetParam()), 0);
  std::this_thread::sleep_for(milliseconds(200));
  auto failures = interceptFinish(p);
  ASSERT_EQ(failures.size(), 1u) << joined(failures);
  const std::string name = std::string("SIG") + ::sigabbrev_np(GetParam());
  EXPECT_NE(failures[0].find("killed by signal " + std::to_string(GetParam()) + " (" + name + ")"),
            std::string::npos)
      << failures[0];
}

// The test stops the proxy itself and ignores the result: the crash still counts.
TEST_P(HarnessCrashTest, CrashBeforeTheTestStopsItFailsTheTest) {
  SidetraceProcess p;
  ASSERT_TRUE(p.startWithConfig(yaml(), vars()));
  ASSERT_TRUE(p.waitReady()) << p.logs();
  ASSERT_EQ(::kill(p.pid(), GetParam()), 0);
  std::this_thread::sleep_for(milliseconds(200));
  p.stop();
  auto failures = interceptFinish(p);
  ASSERT_EQ(failures.size(), 1u) << joined(failures);
  EXPECT_NE(failures[0].find("killed by signal"), std::string::npos) << failures[0];
}

INSTANTIATE_TEST_SUITE_P(Signals, HarnessCrashTest, ::testing::Values(SIGSEGV, SIGABRT, SIGBUS),
                         [](const auto& info) { return std::string(::sigabbrev_np(info.param)); });

class HarnessSanitizerTest : public HarnessTest,
                             public ::testing::WithParamInterface<std::string> {};

// The process runs and stops cleanly, but its stderr carries a sanitizer report (written here by
// a wrapper that then execs sidetrace, so it lands in the same stderr file).
TEST_P(HarnessSanitizerTest, ReportOnStderrFailsTheTest) {
  SidetraceProcess p;
  p.runUnder({"sh", "-c", "printf '%s\\n' \"$0\" >&2; exec \"$@\"", GetParam()});
  ASSERT_TRUE(p.startWithConfig(yaml(), vars()));
  ASSERT_TRUE(p.waitReady()) << p.logs();
  auto r = p.stop();
  EXPECT_TRUE(r.exited && r.code == 0) << p.logs();
  auto failures = interceptFinish(p);
  ASSERT_EQ(failures.size(), 1u) << joined(failures);
  EXPECT_NE(failures[0].find("sanitizer report"), std::string::npos) << failures[0];
  EXPECT_NE(failures[0].find(GetParam()), std::string::npos) << failures[0];
}

INSTANTIATE_TEST_SUITE_P(
    Reports, HarnessSanitizerTest,
    ::testing::Values("==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x6020",
                      "proxy/session.cc:120:7: runtime error: signed integer overflow",
                      "WARNING: ThreadSanitizer: data race (pid=4242)",
                      "==4242==ERROR: LeakSanitizer: detected memory leaks"));

TEST(SanitizerReports, OwnLogLinesAreNotReports) {
  EXPECT_EQ(sanitizerReports("{\"level\":\"error\",\"msg\":\"x.cc:1:2: runtime error: no\"}\n"
                             "[2026-01-01] [sidetrace] [error] a: runtime error: b\n"),
            "");
  EXPECT_EQ(sanitizerReports("a\nSUMMARY: x\nERROR: AddressSanitizer: SEGV\n"),
            "ERROR: AddressSanitizer: SEGV\n");
}

// A test that expects an exit collects it with wait() and asserts on the code: that passes.
TEST_F(HarnessTest, ExpectedExitCollectedWithWaitReportsNothing) {
  SidetraceProcess p;
  ASSERT_TRUE(p.start({"--config", p.dir() + "/missing.yaml"}));
  auto r = p.wait();
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.code, 1) << p.logs();
  auto failures = interceptFinish(p);
  EXPECT_TRUE(failures.empty()) << joined(failures);
}

// An exit nobody asked for or collected is a failure, whatever its code.
TEST_F(HarnessTest, UncollectedExitFailsTheTest) {
  SidetraceProcess p;
  ASSERT_TRUE(p.start({"--config", p.dir() + "/missing.yaml"}));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (p.running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  auto failures = interceptFinish(p);
  ASSERT_EQ(failures.size(), 1u) << joined(failures);
  EXPECT_NE(failures[0].find("exited on its own with code 1"), std::string::npos) << failures[0];
}

// Local ports of the TCP sockets in LISTEN state that process `pid` holds.
std::multiset<uint16_t> listeningPorts(int pid) {
  std::set<std::string> inodes;
  for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    std::error_code ec;
    std::string target = fs::read_symlink(e.path(), ec).string();
    if (target.rfind("socket:[", 0) == 0) {
      inodes.insert(target.substr(8, target.size() - 9));
    }
  }
  std::multiset<uint16_t> ports;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream row(line);
      std::string sl, local, remote, state, queues, timer, retr, uid, timeout, inode;
      row >> sl >> local >> remote >> state >> queues >> timer >> retr >> uid >> timeout >> inode;
      if (state == "0A" && inodes.count(inode)) {
        ports.insert(
            static_cast<uint16_t>(std::stoul(local.substr(local.find(':') + 1), nullptr, 16)));
      }
    }
  }
  return ports;
}

// Port 0 everywhere: each worker listens on the port reported for its listener (not an
// ephemeral port of its own), and nothing listens elsewhere.
TEST_F(HarnessTest, EveryListeningSocketIsOnAReportedPort) {
  std::string y = yaml(3);
  y.replace(y.find("clusters:"), 0,
            "  - name: second\n    address: \"127.0.0.1:0\"\n    routes:\n"
            "      - match: { path: /ping }\n        direct_response: { status: 200 }\n");
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(y));
  const uint16_t ingress = proc_.listenPort("ingress");
  const uint16_t second = proc_.listenPort("second");
  const uint16_t admin = proc_.adminPort();
  EXPECT_NE(ingress, 0);
  EXPECT_NE(second, 0);
  EXPECT_EQ((std::set<uint16_t>{ingress, second, admin}).size(), 3u);
  EXPECT_EQ(listeningPorts(proc_.pid()),
            (std::multiset<uint16_t>{ingress, ingress, ingress, second, second, second, admin}));
  auto r = httpRequest(second, "GET", "/ping");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

// Binds 127.0.0.1:port the way sidetrace's listeners do (SO_REUSEADDR + SO_REUSEPORT).
bool canBindLikeSidetrace(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

TEST(RefusedPortTest, RefusesConnectionsAndCannotBeTaken) {
  RefusedPort dead;
  ASSERT_NE(dead.port(), 0);
  TcpSocket s;
  EXPECT_FALSE(s.connect(dead.port(), milliseconds(1000)));
  EXPECT_FALSE(canBindLikeSidetrace(dead.port()));
  TcpListener other;
  EXPECT_FALSE(other.listen(dead.port()));
}

TEST(RefusedPortTest, StoppedFakeUpstreamRefusesAndKeepsItsPort) {
  FakeUpstream up;
  const uint16_t port = up.port();
  up.stop();
  TcpSocket s;
  EXPECT_FALSE(s.connect(port, milliseconds(1000)));
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);  // no SO_REUSEADDR: must conflict
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_NE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::close(fd);
}

// The helper for ChildrenDieWithTheTestProcess (run in a child test binary, excluded from ctest's
// discovery): starts sidetrace, writes "PID PORT" to $SIDETRACE_IT_HOLD_FILE, and waits to be
// killed.
TEST_F(HarnessTest, HoldSidetraceUntilKilled) {
  const char* hold = std::getenv("SIDETRACE_IT_HOLD_FILE");
  if (hold == nullptr) {
    GTEST_SKIP() << "run by HarnessTest.ChildrenDieWithTheTestProcess only";
  }
  ASSERT_NO_FATAL_FAILURE(startProxy());
  {
    std::ofstream out(std::string(hold) + ".tmp");
    out << proc_.pid() << " " << port() << "\n";
  }
  fs::rename(std::string(hold) + ".tmp", hold);
  std::this_thread::sleep_for(std::chrono::seconds(60));
  FAIL() << "not killed within 60 s";
}

// kill -9 of a test binary mid-run: its sidetrace goes with it instead of listening on.
TEST_F(HarnessTest, ChildrenDieWithTheTestProcess) {
  const std::string hold = proc_.dir() + "/hold";
  std::vector<std::string> env = currentEnvironment();
  env.push_back("SIDETRACE_IT_HOLD_FILE=" + hold);
  std::string error;
  pid_t test_pid = spawnChild({.argv = {fs::read_symlink("/proc/self/exe").string(),
                                        "--gtest_filter=HarnessTest.HoldSidetraceUntilKilled"},
                               .env = env,
                               .stdout_path = proc_.dir() + "/child.out",
                               .stderr_path = proc_.dir() + "/child.err"},
                              &error);
  ASSERT_GT(test_pid, 0) << error;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!fs::exists(hold) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  int sidetrace_pid = 0;
  uint16_t listen = 0;
  std::ifstream(hold) >> sidetrace_pid >> listen;
  if (sidetrace_pid <= 0) {
    ::kill(test_pid, SIGKILL);
    ::waitpid(test_pid, nullptr, 0);
    std::ifstream err(proc_.dir() + "/child.err"), out(proc_.dir() + "/child.out");
    FAIL() << "the child test did not start sidetrace:\n" << out.rdbuf() << err.rdbuf();
  }
  const std::string exe = "/proc/" + std::to_string(sidetrace_pid) + "/exe";
  ASSERT_EQ(fs::canonical(exe), fs::canonical(sidetraceBinary()));
  TcpSocket before;
  ASSERT_TRUE(before.connect(listen, milliseconds(2000)));
  before.close();

  ASSERT_EQ(::kill(test_pid, SIGKILL), 0);
  ASSERT_EQ(::waitpid(test_pid, nullptr, 0), test_pid);
  // Gone, or a zombie its new parent has not reaped yet (its threads may take a moment longer to
  // exit and close the listeners): either way no longer running nor accepting.
  auto gone = [&] {
    std::ifstream stat("/proc/" + std::to_string(sidetrace_pid) + "/stat");
    std::string pid, comm, state;
    return !(stat >> pid >> comm >> state) || state == "Z";
  };
  auto accepting = [&] {
    TcpSocket s;
    return s.connect(listen, milliseconds(1000));
  };
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((!gone() || accepting()) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_TRUE(gone()) << "sidetrace pid " << sidetrace_pid << " outlived its test process";
  EXPECT_FALSE(accepting()) << "its listener still accepts";
}

}  // namespace
}  // namespace sidetrace::it
