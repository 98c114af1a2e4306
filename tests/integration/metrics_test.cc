// /metrics read by a real Prometheus text parser (the Prometheus client library's, run by
// check_metrics.py) after known traffic: families, types, labels and values, not substrings.

#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;

bool haveParser() {
  std::string cmd = python3Path() + " -c 'import prometheus_client.parser' 2>/dev/null";
  return std::system(cmd.c_str()) == 0;
}

class MetricsTest : public IntegrationTest {};

TEST_F(MetricsTest, ExpositionParsesWithThePrometheusParser) {
  if (!haveParser()) {
    SKIP_OR_FAIL_IN_CI(
        "python3-prometheus-client not installed (tests/install-deps.sh installs it)");
  }
  ASSERT_NO_FATAL_FAILURE(startProxy());
  for (int i = 0; i < 3; ++i) {
    auto r = httpRequest(port(), "GET", "/api/m" + std::to_string(i));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  auto r404 = httpRequest(port(), "GET", "/nowhere");
  ASSERT_TRUE(r404);
  EXPECT_EQ(r404->status, 404);
  auto r502 = httpRequest(port(), "GET", "/dead/x");
  ASSERT_TRUE(r502);
  EXPECT_EQ(r502->status, 502);
  otlp_.waitForSpans(6, milliseconds(10000));

  auto m = httpRequest(proc_.adminPort(), "GET", "/metrics");
  ASSERT_TRUE(m);
  ASSERT_EQ(m->status, 200);
  std::string file = proc_.writeFile("metrics.txt", m->body);
  auto [code, out] =
      runCommand(python3Path() + " " SIDETRACE_IT_SOURCE_DIR "/check_metrics.py " + file);
  EXPECT_EQ(code, 0) << out << "\n/metrics:\n" << m->body.substr(0, 12000);
  EXPECT_EQ(out, "ok\n");
}

}  // namespace
}  // namespace sidetrace::it
