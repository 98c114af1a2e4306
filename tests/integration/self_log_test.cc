// The proxy's own logs on stderr (log_format, log_level): in json every line is one JSON object,
// checked with Python's JSON parser (check_log_lines.py), whatever the text it carries (quotes,
// backslashes, newlines from config values, client paths, gRPC's own messages); and traffic at
// info level writes nothing, while the same traffic at debug writes a line per request, so the
// info test would notice a per-request log above debug.

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;

size_t lineCount(const std::string& text) {
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

class SelfLogTest : public IntegrationTest {
 protected:
  // The standard config with log settings appended (top-level keys).
  std::string yaml(const std::string& level, const std::string& format = "json") {
    return standardConfigYaml({}) + "log_level: " + level + "\nlog_format: " + format + "\n";
  }

  // Runs check_log_lines.py on the proxy's stderr; each of `expected` must occur in some decoded
  // msg. Returns the script's output ("ok N" when every line is a well-formed JSON object).
  std::string checkJsonLines(const std::vector<std::string>& expected,
                             const std::vector<std::string>& loggers) {
    std::string log = proc_.writeFile("stderr-copy.txt", proc_.stderrText());
    std::string expect;
    for (const auto& e : expected) {
      expect += e;
      expect += '\0';
    }
    std::string cmd = python3Path() + " " SIDETRACE_IT_SOURCE_DIR "/check_log_lines.py " + log +
                      " --expect-file " + proc_.writeFile("expected.bin", expect);
    for (const auto& l : loggers) {
      cmd += " --require-logger " + l;
    }
    auto [code, out] = runCommand(cmd);
    EXPECT_EQ(code, 0) << out;
    return out;
  }

  // n requests, one after another, cycling through 200, 404, 502, a local reply (418) and a
  // malformed request (400): the outcomes tempting enough to log.
  void mixedTraffic(int n) {
    for (int i = 0; i < n; ++i) {
      if (i % 5 == 4) {
        TcpSocket s;
        ASSERT_TRUE(s.connect(port()));
        ASSERT_TRUE(s.sendAll("NOT HTTP AT ALL\r\n\r\n"));
        std::string reply = s.readUntilClosed(milliseconds(5000));
        ASSERT_EQ(reply.rfind("HTTP/1.1 400", 0), 0u) << reply;
        continue;
      }
      static const char* const kTargets[] = {"/api/mixed", "/nowhere", "/dead/x", "/teapot"};
      static const int kStatus[] = {200, 404, 502, 418};
      auto r = httpRequest(port(), "GET", kTargets[i % 5]);
      ASSERT_TRUE(r) << "request " << i;
      ASSERT_EQ(r->status, kStatus[i % 5]) << kTargets[i % 5];
    }
  }
};

TEST_F(SelfLogTest, JsonLinesSurviveHostileText) {
  std::string y = yaml("debug");
  // A listener name with a quote, a backslash and a newline, logged at startup (info).
  const std::string from = "- name: ingress\n";
  y.replace(y.find(from), from.size(), "- name: \"in\\\"gress\\\\x\\ny\"\n");
  // A header that is not valid gRPC metadata: warned about by the "tracing" logger.
  const std::string exporter = "timeout: 2s }";
  y.replace(y.find(exporter), exporter.size(), "timeout: 2s, headers: { \"X\\\"Bad\\\\\": v } }");
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(y));
  // A client path with a quote and a backslash reaches the per-request debug line; the query
  // must not (it may carry secrets).
  auto r = httpRequest(port(), "GET", "/api/a\"b\\c?token=s3cret-token");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  ASSERT_NO_FATAL_FAILURE(mixedTraffic(5));
  otlp_.waitForSpans(2, milliseconds(10000));
  stopProxyExpectClean();

  std::string out = checkJsonLines(
      {"listener 'in\"gress\\x\ny' on 127.0.0.1:", "header 'x\"bad\\' is not valid gRPC metadata",
       "GET /api/a\"b\\c -> 200", "GET /dead/x -> 502 connect_failure", "GET /nowhere -> 404",
       "bad request from 127.0.0.1: answered 400", "stopped"},
      {"sidetrace", "tracing"});
  EXPECT_EQ(out.rfind("ok ", 0), 0u) << out << "\n" << proc_.logs();
  EXPECT_EQ(proc_.stderrText().find("s3cret-token"), std::string::npos) << proc_.logs();
}

// gRPC's own error lines (here a TLS handshake with a plaintext HTTP/1 peer) must come through
// spdlog in the same format, not as gRPC's "E1123 ..." text on stderr.
TEST_F(SelfLogTest, GrpcLogLinesAreJsonToo) {
  FakeUpstream plaintext;
  std::string y = yaml("info");
  const std::string from = "endpoint: \"http://127.0.0.1:{{OTLP_PORT}}\"";
  y.replace(y.find(from), from.size(),
            "endpoint: \"https://127.0.0.1:" + std::to_string(plaintext.port()) + "\"");
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(y));
  double failed = -1;
  for (int round = 0; round < 100 && failed < 1; ++round) {
    ASSERT_NO_FATAL_FAILURE(mixedTraffic(1));
    auto m = httpRequest(proc_.adminPort(), "GET", "/metrics");
    failed = m ? metricSum(m->body, "sidetrace_export_requests_total", "outcome=\"failed\"") : -1;
    std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_GE(failed, 1) << "no export failed against a TLS-speaking exporter\n" << proc_.logs();
  stopProxyExpectClean();
  std::string out = checkJsonLines({"grpc: "}, {"tracing"});
  EXPECT_EQ(out.rfind("ok ", 0), 0u) << out << "\n" << proc_.logs();
}

// Events are logged at info, requests never: the refusing /dead endpoint's ejection (outlier
// detection is on for refused connects by default) is a line per ejection, not per request.
TEST_F(SelfLogTest, InfoLevelLogsNothingPerRequest) {
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(yaml("info")));
  const size_t before = lineCount(proc_.stderrText());
  ASSERT_NO_FATAL_FAILURE(mixedTraffic(200));
  otlp_.waitForSpans(200, milliseconds(10000));  // spans exported too: the export path is quiet
  std::this_thread::sleep_for(milliseconds(300));
  const std::string text = proc_.stderrText();
  size_t ejections = 0;
  for (size_t at = 0; (at = text.find("outlier detection: ejected", at)) != std::string::npos;
       ++at) {
    ++ejections;
  }
  EXPECT_LT(ejections, 40u) << "an ejection line per /dead request";
  EXPECT_EQ(lineCount(text) - ejections, before)
      << "lines written during traffic at info:\n"
      << text.substr(text.size() > 4000 ? text.size() - 4000 : 0);
  stopProxyExpectClean();
  EXPECT_EQ(checkJsonLines({"stopped"}, {"sidetrace"}).rfind("ok ", 0), 0u);
}

// The same traffic at debug: a line per request, so the test above can fail.
TEST_F(SelfLogTest, DebugLevelLogsEachRequest) {
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(yaml("debug")));
  const size_t before = lineCount(proc_.stderrText());
  ASSERT_NO_FATAL_FAILURE(mixedTraffic(200));
  size_t after = before;
  for (int i = 0; i < 100 && after < before + 200; ++i) {
    after = lineCount(proc_.stderrText());
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_GE(after, before + 200) << proc_.logs();
  stopProxyExpectClean();
}

TEST_F(SelfLogTest, TextFormatFlagOverridesTheFile) {
  std::string path = proc_.writeFile("sidetrace.yaml", yaml("info", "json"), vars());
  ASSERT_TRUE(proc_.start({"--config", path, "--log-format", "text"}));
  ASSERT_TRUE(proc_.waitReady()) << proc_.logs();
  stopProxyExpectClean();
  const std::string text = proc_.stderrText();
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text[0], '[') << text;
  EXPECT_NE(text.find("] [sidetrace] [info] listener 'ingress' on 127.0.0.1:"), std::string::npos)
      << text;
  EXPECT_EQ(text.find("{\"time\""), std::string::npos) << text;
}

TEST_F(SelfLogTest, BadFormatExits1NamingTheFlagOrKey) {
  ASSERT_TRUE(proc_.start({"--listen", ":0", "--upstream", "127.0.0.1:1", "--log-format", "xml"}));
  auto r = proc_.wait();
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(proc_.stderrText().find("--log-format: unknown log format 'xml'"), std::string::npos)
      << proc_.stderrText();

  SidetraceProcess validate;
  std::string bad = validate.writeFile("bad.yaml", "workers: 1\nlog_format: logfmt\n");
  ASSERT_TRUE(validate.start({"--validate", "--config", bad}));
  r = validate.wait();
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(validate.stderrText().find(bad + ":2: log_format: unknown log format 'logfmt'"),
            std::string::npos)
      << validate.stderrText();
}

}  // namespace
}  // namespace sidetrace::it
