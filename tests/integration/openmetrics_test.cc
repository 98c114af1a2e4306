// /metrics as OpenMetrics (Accept: application/openmetrics-text), read by the Prometheus client
// library's OpenMetrics parser (check_openmetrics.py): the request duration buckets carry
// exemplars with the trace id of a sampled request, never of an unsampled one; without the
// Accept header the Prometheus text stays what it was.

#include <gtest/gtest.h>

#include <string>

#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

bool haveParser() {
  std::string cmd = python3Path() + " -c 'import prometheus_client.openmetrics.parser' 2>/dev/null";
  return std::system(cmd.c_str()) == 0;
}

class OpenMetricsTest : public IntegrationTest {};

TEST_F(OpenMetricsTest, ExemplarsCarryTheTraceOfASampledRequest) {
  if (!haveParser()) {
    SKIP_OR_FAIL_IN_CI(
        "python3-prometheus-client not installed (tests/install-deps.sh installs it)");
  }
  ASSERT_NO_FATAL_FAILURE(startProxy());
  const std::string sampled = "4bf92f3577b34da6a3ce929d0e0e4736";
  const std::string unsampled = "0af7651916cd43dd8448eb211c80319c";
  auto r = httpRequest(port(), "GET", "/api/sampled",
                       {{"traceparent", "00-" + sampled + "-00f067aa0ba902b7-01"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  // Flags 00 with the default parent-based sampler: not sampled, so no exemplar (it would
  // replace the sampled one: same route, and most likely the same bucket).
  auto u = httpRequest(port(), "GET", "/api/unsampled",
                       {{"traceparent", "00-" + unsampled + "-00f067aa0ba902b7-00"}});
  ASSERT_TRUE(u);
  waitMetric("sidetrace_downstream_requests_total", "route=\"app\"", 2);

  auto om = httpRequest(proc_.adminPort(), "GET", "/metrics",
                        {{"Accept",
                          "application/openmetrics-text;version=1.0.0,application/"
                          "openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,"
                          "*/*;q=0.1"}});  // what Prometheus sends
  ASSERT_TRUE(om);
  ASSERT_EQ(om->status, 200);
  EXPECT_EQ(om->header("content-type").value_or(""),
            "application/openmetrics-text; version=1.0.0; charset=utf-8");
  std::string file = proc_.writeFile("metrics.om", om->body);
  auto [code, out] =
      runCommand(python3Path() + " " SIDETRACE_IT_SOURCE_DIR "/check_openmetrics.py " + file + " " +
                 sampled + " " + unsampled);
  EXPECT_EQ(code, 0) << out << "\n/metrics:\n" << om->body.substr(0, 12000);
  EXPECT_EQ(out, "ok\n");

  // The default stays Prometheus text, without exemplars or # EOF.
  auto plain = httpRequest(proc_.adminPort(), "GET", "/metrics");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->header("content-type").value_or(""), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(plain->body.find("# EOF"), std::string::npos);
  EXPECT_EQ(plain->body.find(sampled), std::string::npos);
  EXPECT_NE(plain->body.find("# TYPE sidetrace_downstream_requests_total counter"),
            std::string::npos);
  stopProxyExpectClean();
}

}  // namespace
}  // namespace sidetrace::it
