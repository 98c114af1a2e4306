// 13. Independent decoding check: sidetrace exports to a Node.js collector that decodes with the
// official opentelemetry-proto files (npm @opentelemetry/otlp-grpc-exporter-base@0.34.0), so a
// mistake shared by our .proto text and our receiver cannot hide. Registered as the ctest
// `otlp_official_schema`; skipped when tests/integration/node/node_modules is missing (a failure
// when CI is set).

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/integration/child_process.h"
#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;
namespace fs = std::filesystem;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> split(const std::string& line, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : line) {
    if (ch == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  out.push_back(cur);
  return out;
}

class NodeReceiver {
 public:
  ~NodeReceiver() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      for (int i = 0; i < 100 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) {
        std::this_thread::sleep_for(milliseconds(20));
      }
      if (::waitpid(pid_, &status, WNOHANG) == 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
      }
    }
  }
  bool start(const std::string& dir) {
    out_ = dir + "/node-receiver.out";
    err_ = dir + "/node-receiver.err";
    std::string node = SIDETRACE_IT_NODE;
    std::string script = std::string(SIDETRACE_IT_NODE_DIR) + "/receiver.js";
    std::string json = dir + "/node-receiver.jsonl";
    std::string error;
    pid_ = spawnChild({.argv = {node, script, "0", json},
                       .env = currentEnvironment(),
                       .stdout_path = out_,
                       .stderr_path = err_},
                      &error);
    if (pid_ < 0) {
      std::ofstream(err_) << error << "\n";
      return false;
    }
    return true;
  }
  // The port printed as "PORT n", or 0 after timeout.
  uint16_t waitPort(milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      std::string out = slurp(out_);
      auto pos = out.find("PORT ");
      auto nl = out.find('\n', pos);
      if (pos != std::string::npos && nl != std::string::npos) {
        return static_cast<uint16_t>(std::stoi(out.substr(pos + 5, nl - pos - 5)));
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    return 0;
  }
  std::vector<std::vector<std::string>> waitSpans(size_t n, milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::vector<std::vector<std::string>> spans;
    do {
      spans.clear();
      std::istringstream in(slurp(out_));
      std::string line;
      while (std::getline(in, line)) {
        if (line.rfind("SPAN\t", 0) == 0) {
          spans.push_back(split(line, '\t'));
        }
      }
      if (spans.size() >= n) {
        break;
      }
      std::this_thread::sleep_for(milliseconds(50));
    } while (std::chrono::steady_clock::now() < deadline);
    return spans;
  }
  std::string logs() const { return slurp(out_) + "\n--- node stderr ---\n" + slurp(err_); }

 private:
  pid_t pid_ = -1;
  std::string out_, err_;
};

class OfficialSchema : public IntegrationTest {};

TEST_F(OfficialSchema, ExportDecodesWithOfficialProtos) {
  std::string node_dir = SIDETRACE_IT_NODE_DIR;
  if (!fs::exists(node_dir + "/node_modules/@opentelemetry/otlp-grpc-exporter-base/build/protos/"
                             "opentelemetry/proto/collector/trace/v1/trace_service.proto") ||
      !fs::exists(node_dir + "/node_modules/@grpc/grpc-js")) {
    SKIP_OR_FAIL_IN_CI("node_modules missing in "
                       << node_dir << " (run: cd tests/integration/node && npm install)");
  }
  NodeReceiver recv;
  ASSERT_TRUE(recv.start(proc_.dir())) << "cannot spawn node";
  uint16_t rport = recv.waitPort(milliseconds(15000));
  ASSERT_NE(rport, 0) << recv.logs();

  auto v = vars();
  v["OTLP_PORT"] = std::to_string(rport);
  ASSERT_TRUE(proc_.startWithConfig(standardConfigYaml({}), v));
  ASSERT_TRUE(proc_.waitReady()) << proc_.logs();

  const std::string trace = "5b8efff798038103d269b633813fc60c";
  const std::string parent = "eee19b7ec3c1b174";
  auto r = httpRequest(port(), "GET", "/api/official",
                       {{"traceparent", "00-" + trace + "-" + parent + "-01"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);

  auto spans = recv.waitSpans(2, milliseconds(10000));
  ASSERT_EQ(spans.size(), 2u) << recv.logs();
  const std::vector<std::string>* server = nullptr;
  const std::vector<std::string>* client = nullptr;
  for (const auto& s : spans) {
    ASSERT_EQ(s.size(), 8u) << recv.logs();
    if (s[4] == "SPAN_KIND_SERVER") {
      server = &s;
    } else if (s[4] == "SPAN_KIND_CLIENT") {
      client = &s;
    }
  }
  ASSERT_TRUE(server && client) << recv.logs();
  EXPECT_EQ((*server)[1], trace);
  EXPECT_EQ((*client)[1], trace);
  EXPECT_EQ((*server)[3], parent);
  EXPECT_EQ((*client)[3], (*server)[2]);
  EXPECT_EQ((*server)[5], "GET app");
  EXPECT_EQ((*client)[5], "GET app");
  EXPECT_EQ((*server)[6], "GET");
  EXPECT_EQ((*client)[6], "GET");
  EXPECT_EQ((*server)[7], "it-svc");
  if (HasFailure()) {
    std::cerr << recv.logs();
  }
}

}  // namespace
}  // namespace sidetrace::it
