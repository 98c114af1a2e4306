// The egress `process` parent rule through the real binary, in front of legacy server models
// with no tracing code (tests/integration/process_models.py): single-threaded, pre-fork (4 worker
// processes, one connection each at a time) and thread-per-request. Eight clients send 200
// requests GET /r/NAME at once; the app calls /from/NAME through the egress listener (http_proxy)
// after a random delay. Per request the egress span is correct (child of the hop into the app
// for that request), wrong (child of another one: must never happen) or unconnected.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "tests/integration/child_process.h"
#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

// process_models.py MODEL as a child process (its own process group: the pre-fork workers go
// with it).
class ModelApp : public ListeningChild {
 public:
  ModelApp(const std::string& dir, const std::string& model, uint16_t downstream, uint16_t egress)
      : ListeningChild(
            {.argv = {python3Path(), std::string(SIDETRACE_IT_SOURCE_DIR) + "/process_models.py",
                      model, "127.0.0.1:" + std::to_string(downstream)},
             .env = {"PATH=/usr/local/bin:/usr/bin:/bin",
                     "http_proxy=http://127.0.0.1:" + std::to_string(egress)},
             .stdout_path = dir + "/" + model + ".out",
             .stderr_path = dir + "/" + model + ".err"}) {}
};

// SIDETRACE_EGRESS_CLIENTS=N runs the load tests with N clients instead of 8 (for figures at
// other concurrencies; the assertions hold at any).
int clientCount() {
  const char* v = std::getenv("SIDETRACE_EGRESS_CLIENTS");
  return v != nullptr && std::atoi(v) > 0 ? std::atoi(v) : 8;
}

// CPU time of every thread of process `pid` so far (/proc/PID/task/*/schedstat, ns).
uint64_t cpuNanos(int pid) {
  uint64_t total = 0;
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(e.path() / "schedstat");
    uint64_t ns = 0;
    if (in >> ns) {
      total += ns;
    }
  }
  return total;
}

struct Tally {
  int answered = 0;
  int correct = 0;
  int wrong = 0;
  int unconnected = 0;
  std::map<std::string, int> sources;  // sidetrace.parent.source of the egress spans
  std::string wrong_examples;
  double skipped = 0;  // outbound requests the rule could not judge (budget, visibility)
  double cpu_us = 0;   // sidetrace's CPU per request (ingress and egress legs together)
};

class EgressProcessTest : public IntegrationTest {
 protected:
  std::string yaml(uint16_t app_port, bool process) {
    return R"(admin: { address: "127.0.0.1:0" }
workers: 2
listeners:
  - name: ingress
    address: "127.0.0.1:0"
    routes:
      - { name: app, match: { prefix: / }, cluster: app, timeout: 30s }
clusters:
  - name: app
    endpoints: [ "127.0.0.1:)" +
           std::to_string(app_port) + R"(" ]
egress:
  address: "127.0.0.1:0"
  process: )" +
           (process ? "true" : "false") +
           R"(
tracing:
  service_name: legacy-a
  exporter: { protocol: grpc, endpoint: "http://127.0.0.1:{{OTLP_PORT}}", timeout: 2s }
  batch: { schedule_delay: 100ms, max_queue_size: 8192 }
limits: { drain_timeout: 2s }
)";
  }

  // Runs `requests` requests from `clients` threads against `model` and sorts every egress span.
  // `clients` 0: clientCount().
  Tally run(const std::string& model, bool process = true, int requests = 200, int clients = 0) {
    clients = clients > 0 ? clients : clientCount();
    Tally t;
    startProxyYaml(yaml(upstream_.port(), process));
    if (HasFatalFailure()) {
      return t;
    }
    ModelApp app(proc_.dir(), model, upstream_.port(), proc_.listenPort("egress"));
    EXPECT_NE(app.port(), 0) << app.error();
    if (app.port() == 0) {
      return t;
    }
    reloadYaml(yaml(app.port(), process));
    const uint64_t cpu_start = cpuNanos(proc_.pid());
    std::atomic<int> next{0};
    std::atomic<int> answered{0};
    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&] {
        for (int i = next++; i < requests; i = next++) {
          auto r = httpRequest(port(), "GET", "/r/n" + std::to_string(i));
          if (r && r->status == 200 && r->body == "200 ") {
            ++answered;
          }
        }
      });
    }
    for (auto& th : threads) {
      th.join();
    }
    t.answered = answered;
    t.cpu_us = static_cast<double>(cpuNanos(proc_.pid()) - cpu_start) / 1000.0 / requests;
    EXPECT_EQ(t.answered, requests) << app.logs() << proc_.logs();
    // Per request: ingress SERVER, ingress CLIENT (the hop into the app), egress CLIENT.
    auto spans = otlp_.waitForSpans(static_cast<size_t>(3 * requests), Millis(20000));
    std::map<std::string, const FlatSpan*> hop, out;
    for (const auto& s : spans) {
      if (s.kind != 3) {
        continue;
      }
      const std::string url = s.str("url.full");
      const size_t slash = url.rfind('/');
      const std::string name = url.substr(slash + 1);
      (url.find("/from/") != std::string::npos ? out : hop)[name] = &s;
    }
    for (int i = 0; i < requests; ++i) {
      const std::string name = "n" + std::to_string(i);
      const FlatSpan* in = hop[name];
      const FlatSpan* o = out[name];
      if (in == nullptr || o == nullptr) {
        ADD_FAILURE() << "spans missing for " << name;
        continue;
      }
      t.sources[o->str("sidetrace.parent.source")]++;
      if (o->parent_span_id.empty()) {
        ++t.unconnected;
      } else if (o->parent_span_id == in->span_id && o->trace_id == in->trace_id) {
        ++t.correct;
      } else {
        ++t.wrong;
        t.wrong_examples += name + ": " + o->describe() + "\n";
      }
    }
    t.skipped = metricSum(metrics(), "sidetrace_egress_process_skipped_total", "");
    return t;
  }

  static std::string describe(const Tally& t) {
    std::string s = "correct " + std::to_string(t.correct) + ", wrong " + std::to_string(t.wrong) +
                    ", unconnected " + std::to_string(t.unconnected) + ", rule skipped " +
                    std::to_string(static_cast<int>(t.skipped)) + ", sidetrace CPU " +
                    std::to_string(static_cast<int>(t.cpu_us)) + " us/request; sources:";
    for (const auto& [k, v] : t.sources) {
      s += " " + k + "=" + std::to_string(v);
    }
    return s;
  }
};

// One request per process at a time: the rule is exact, whatever the client concurrency.
TEST_F(EgressProcessTest, PreForkServerParentsByProcess) {
  Tally t = run("prefork");
  std::printf("prefork, %d clients: %s\n", clientCount(), describe(t).c_str());
  EXPECT_EQ(t.wrong, 0) << t.wrong_examples;
  EXPECT_GT(t.sources["process"], 100) << describe(t);
  EXPECT_EQ(waitMetric("sidetrace_egress_parent_total", "source=\"process\"",
                       static_cast<double>(t.sources["process"])),
            t.sources["process"]);
}

TEST_F(EgressProcessTest, SingleThreadedServerParentsByProcess) {
  Tally t = run("single");
  std::printf("single-threaded, %d clients: %s\n", clientCount(), describe(t).c_str());
  EXPECT_EQ(t.wrong, 0) << t.wrong_examples;
  EXPECT_GT(t.sources["process"], 100) << describe(t);
}

// Many requests in one process at once: the rule must not guess (mostly none), and never wrong.
TEST_F(EgressProcessTest, ThreadPerRequestServerIsNeverWrong) {
  Tally t = run("threaded");
  std::printf("thread-per-request, %d clients: %s\n", clientCount(), describe(t).c_str());
  EXPECT_EQ(t.wrong, 0) << t.wrong_examples;
  EXPECT_EQ(t.correct + t.unconnected, 200);
}

// egress.process: false turns the rule off: the pre-fork server's calls under load go to none
// (or single_inflight when alone), never process.
TEST_F(EgressProcessTest, RuleCanBeTurnedOff) {
  Tally t = run("prefork", false);
  std::printf("prefork, rule off: %s\n", describe(t).c_str());
  EXPECT_EQ(t.sources["process"], 0);
  auto cfg = httpRequest(proc_.adminPort(), "GET", "/config_dump");
  ASSERT_TRUE(cfg);
  EXPECT_NE(cfg->body.find("\"process\": false"), std::string::npos) << cfg->body;
}

// A sidecar that may not read the app's /proc/PID/fd (Kubernetes without `inject
// --process-rule`: another uid, no CAP_SYS_PTRACE): the rule says so once in the log, counts
// `unavailable`, and the next rule decides as if it were off. sidetrace runs as uid 65532 (a copy
// of the binary that uid can reach), the app as root.
class EgressProcessHiddenTest : public EgressProcessTest {
 protected:
  void SetUp() override {
    EgressProcessTest::SetUp();
    if (::geteuid() != 0 || runCommand("command -v setpriv").first != 0) {
      SKIP_OR_FAIL_IN_CI("needs root and setpriv (to run sidetrace as another uid)");
    }
    ASSERT_EQ(::chown(proc_.dir().c_str(), 65532, 65532), 0);
    const std::string bin = proc_.dir() + "/sidetrace";
    std::filesystem::copy_file(sidetraceBinary(), bin,
                               std::filesystem::copy_options::overwrite_existing);
    if (const char* old = std::getenv("SIDETRACE_BIN")) {
      old_bin_ = old;
    }
    ::setenv("SIDETRACE_BIN", bin.c_str(), 1);
    proc_.runUnder({"setpriv", "--reuid=65532", "--regid=65532", "--clear-groups",
                    "--inh-caps=-all", "--pdeathsig=KILL"});
  }
  void TearDown() override {
    EgressProcessTest::TearDown();
    if (old_bin_) {
      ::setenv("SIDETRACE_BIN", old_bin_->c_str(), 1);
    } else {
      ::unsetenv("SIDETRACE_BIN");
    }
  }
  std::optional<std::string> old_bin_;
};

TEST_F(EgressProcessHiddenTest, RuleSaysOnceItCannotSeeAndTheNextRuleDecides) {
  constexpr int kRequests = 30;
  Tally t = run("single", true, kRequests, 1);  // one at a time: single_inflight can decide
  std::printf("single-threaded, app's processes hidden: %s\n", describe(t).c_str());
  EXPECT_EQ(t.wrong, 0) << t.wrong_examples;
  EXPECT_EQ(t.sources["process"], 0) << describe(t);
  EXPECT_EQ(t.sources["single_inflight"], kRequests) << describe(t);
  EXPECT_EQ(t.correct, kRequests) << describe(t);
  // Every call asked the rule; the first scans may run past the budget on a loaded machine.
  EXPECT_GT(
      metricSum(metrics(), "sidetrace_egress_process_skipped_total", "reason=\"unavailable\""), 0)
      << metrics();
  const std::string log = proc_.stderrText();
  const std::string line = "egress: the process parent rule cannot see the app's sockets";
  const size_t first = log.find(line);
  ASSERT_NE(first, std::string::npos) << proc_.logs();
  EXPECT_NE(log.find("/proc/PID/fd: permission denied", first), std::string::npos) << proc_.logs();
  EXPECT_EQ(log.find(line, first + 1), std::string::npos) << "said more than once";
}

}  // namespace
}  // namespace sidetrace::it
