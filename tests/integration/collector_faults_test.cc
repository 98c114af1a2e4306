// A broken collector must cost the data path nothing: with the collector down, black-holing
// (accepts, never answers) or refusing every export, every request is still proxied, the failed
// spans are counted as dropped, and export resumes by itself once a healthy collector is back on
// the same address. (Throughput and p99 under these faults are measured in tests/bench/.)

#include <string>
#include <thread>

#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;

class CollectorFaultsTest : public IntegrationTest {
 protected:
  // Exports give up after 300 ms (retries included), so faults show up quickly.
  ProxyConfig faultyConfig() {
    ProxyConfig c;
    c.batch = "{ schedule_delay: 50ms, max_queue_size: 256, max_export_batch_size: 64 }";
    return c;
  }

  void startWithShortExportTimeout() {
    std::string yaml = standardConfigYaml(faultyConfig());
    const std::string from = "timeout: 2s }";
    yaml.replace(yaml.find(from), from.size(), "timeout: 300ms }");
    ASSERT_NO_FATAL_FAILURE(startProxyYaml(yaml));
  }

  // Sends n requests one after another; every one must be proxied (200).
  void sendAll(int n, const std::string& prefix) {
    for (int i = 0; i < n; ++i) {
      auto r = httpRequest(port(), "GET", prefix + std::to_string(i), {}, {}, milliseconds(5000));
      ASSERT_TRUE(r) << "request " << i << " failed while the collector is faulty";
      ASSERT_EQ(r->status, 200) << "request " << i;
    }
  }

  std::string metrics() {
    auto m = httpRequest(proc_.adminPort(), "GET", "/metrics");
    return m ? m->body : "";
  }

  // Polls /metrics until the sum of `name{label}` reaches at least min.
  double waitMetric(const std::string& name, const std::string& label, double min,
                    milliseconds timeout = milliseconds(10000)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    double v = -1;
    while (std::chrono::steady_clock::now() < deadline) {
      v = metricSum(metrics(), name, label);
      if (v >= min) {
        break;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    return v;
  }

  // A healthy collector back on the old address receives spans of requests sent now.
  void expectExportResumes(OtlpReceiver& back) {
    bool resumed = false;
    for (int round = 0; round < 40 && !resumed; ++round) {
      ASSERT_NO_FATAL_FAILURE(sendAll(2, "/api/after-" + std::to_string(round) + "-"));
      resumed = !back.waitForSpans(1, milliseconds(500)).empty();
    }
    EXPECT_TRUE(resumed) << "export did not resume within ~20 s of the collector coming back\n"
                         << proc_.logs();
  }
};

TEST_F(CollectorFaultsTest, CollectorDownThenBack) {
  const uint16_t otlp_port = otlp_.port();
  otlp_.shutdown();  // the configured collector address now refuses connections
  ASSERT_NO_FATAL_FAILURE(startWithShortExportTimeout());
  ASSERT_NO_FATAL_FAILURE(sendAll(100, "/api/down-"));
  EXPECT_GT(waitMetric("sidetrace_spans_dropped_total", "reason=\"export_failed\"", 1), 0);
  EXPECT_GT(waitMetric("sidetrace_export_requests_total", "outcome=\"failed\"", 1), 0);
  EXPECT_LE(metricSum(metrics(), "sidetrace_export_queue_size", ""), 256);

  OtlpReceiver back(otlp_port);
  ASSERT_NO_FATAL_FAILURE(expectExportResumes(back));
  stopProxyExpectClean();
}

TEST_F(CollectorFaultsTest, BlackHoleCollectorThenBack) {
  const uint16_t otlp_port = otlp_.port();
  otlp_.shutdown();
  TcpListener black_hole;  // completes TCP handshakes, never reads or answers
  ASSERT_TRUE(black_hole.listen(otlp_port));
  ASSERT_NO_FATAL_FAILURE(startWithShortExportTimeout());
  ASSERT_NO_FATAL_FAILURE(sendAll(100, "/api/blackhole-"));
  EXPECT_GT(waitMetric("sidetrace_spans_dropped_total", "reason=\"export_failed\"", 1), 0);
  EXPECT_LE(metricSum(metrics(), "sidetrace_export_queue_size", ""), 256);

  black_hole.close();
  OtlpReceiver back(otlp_port);
  ASSERT_NO_FATAL_FAILURE(expectExportResumes(back));
  stopProxyExpectClean();
}

TEST_F(CollectorFaultsTest, CollectorRefusingEveryExport) {
  otlp_.answerAll(3);  // INVALID_ARGUMENT: not retryable, the batch is dropped at once
  ASSERT_NO_FATAL_FAILURE(startWithShortExportTimeout());
  ASSERT_NO_FATAL_FAILURE(sendAll(50, "/api/refused-"));
  EXPECT_GE(waitMetric("sidetrace_spans_dropped_total", "reason=\"export_failed\"", 100), 100)
      << "all 100 spans (50 SERVER + 50 CLIENT) must be counted as dropped";
  EXPECT_EQ(otlp_.spans().size(), 0u);

  otlp_.answerAll(0);
  ASSERT_NO_FATAL_FAILURE(expectExportResumes(otlp_));
  stopProxyExpectClean();
}

// OTLP partial success: the call succeeds but the collector rejected some spans. They are logged
// (rate-limited) and counted, and the request path is untouched.
TEST_F(CollectorFaultsTest, PartialSuccessIsCounted) {
  otlp_.rejectInEachResponse(1);
  ASSERT_NO_FATAL_FAILURE(startWithShortExportTimeout());
  ASSERT_NO_FATAL_FAILURE(sendAll(5, "/api/partial-"));
  otlp_.waitForSpans(10, milliseconds(5000));
  double calls = static_cast<double>(otlp_.requestCount());
  EXPECT_GE(waitMetric("sidetrace_spans_rejected_total", "", calls), calls)
      << "one rejected span per successful export call";
  EXPECT_GE(metricSum(metrics(), "sidetrace_spans_exported_total", ""), 10);
  stopProxyExpectClean();
  EXPECT_NE(proc_.stderrText().find("rejected"), std::string::npos) << proc_.logs();
}

}  // namespace
}  // namespace sidetrace::it
