// A broken collector must cost the data path nothing: with the collector down, black-holing
// (accepts, never answers), slow, answering UNAVAILABLE or refusing every export, every request is
// still proxied, the queue stays within its bound, every span is either exported or counted as
// dropped, and export resumes by itself once a healthy collector is back on the same address.
// (Throughput, p99 and RSS under these faults are measured in tests/bench/.)

#include <algorithm>
#include <iostream>
#include <numeric>
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

  // A healthy collector back on the old address receives spans of requests sent now (not only
  // late arrivals of spans sent before: a slow collector records those too).
  void expectExportResumes(OtlpReceiver& back) {
    auto fresh = [&] {
      for (const auto& s : back.spans()) {
        if (s.str("url.path").rfind("/api/after-", 0) == 0) {
          return true;
        }
      }
      return false;
    };
    bool resumed = false;
    for (int round = 0; round < 40 && !resumed; ++round) {
      ASSERT_NO_FATAL_FAILURE(sendAll(2, "/api/after-" + std::to_string(round) + "-"));
      for (int i = 0; i < 10 && !(resumed = fresh()); ++i) {
        std::this_thread::sleep_for(milliseconds(50));
      }
    }
    EXPECT_TRUE(resumed) << "export did not resume within ~20 s of the collector coming back\n"
                         << proc_.logs();
  }

  // Waits until at least min_sampled spans were sampled and each one is accounted for: exported
  // or dropped (any reason), none stuck in the queue or lost uncounted. Fails the test otherwise.
  void expectEverySpanAccounted(double min_sampled, milliseconds timeout = milliseconds(20000)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    double sampled = -1, exported = -1, dropped = -1;
    while (std::chrono::steady_clock::now() < deadline) {
      std::string m = metrics();
      sampled = metricSum(m, "sidetrace_spans_sampled_total", "");
      exported = metricSum(m, "sidetrace_spans_exported_total", "");
      dropped = metricSum(m, "sidetrace_spans_dropped_total", "");
      if (sampled >= min_sampled && exported + dropped == sampled) {
        return;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    ADD_FAILURE() << "spans not accounted for: sampled " << sampled << ", exported " << exported
                  << ", dropped " << dropped << " (expected sampled >= " << min_sampled
                  << " and exported + dropped == sampled)\n"
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

// Spans still queued at SIGTERM go out in the final flush, after the admin listener closed: the
// last log line is then the only place that accounts for them (tests/soak/ relies on it).
TEST_F(CollectorFaultsTest, ExitLineAccountsForTheFinalFlush) {
  ProxyConfig c;
  c.batch = "{ schedule_delay: 60s }";  // nothing leaves before the stop
  ASSERT_NO_FATAL_FAILURE(startProxy(c));
  ASSERT_NO_FATAL_FAILURE(sendAll(10, "/api/final-"));
  EXPECT_EQ(waitMetric("sidetrace_spans_sampled_total", "", 20), 20);
  EXPECT_EQ(metricSum(metrics(), "sidetrace_spans_exported_total", ""), 0);
  stopProxyExpectClean();
  EXPECT_EQ(otlp_.waitForSpans(20, milliseconds(5000)).size(), 20u);
  EXPECT_NE(proc_.stderrText().find("span pipeline at exit: started 20, sampled 20, exported 20, "
                                    "dropped 0 (queue_full 0, export_failed 0, too_large 0), "
                                    "rejected 0"),
            std::string::npos)
      << proc_.logs();
}

// SIGTERM while a round of exports is failing: the rest of the round, and the final flush, get
// tracing.batch.export_timeout (3 s here) between them. Before, a round under way went on through
// everything queued when it began, one timed-out request (the exporter's 2 s) after another: here
// ~14 requests, ~28 s, and with a large queue, minutes past any grace period.
TEST_F(CollectorFaultsTest, SigtermDuringFailingExportsExitsWithinTheExportTimeout) {
  const uint16_t otlp_port = otlp_.port();
  otlp_.shutdown();
  TcpListener black_hole;  // every export request waits out the exporter's 2 s timeout
  ASSERT_TRUE(black_hole.listen(otlp_port));
  ProxyConfig c;
  c.batch =
      "{ schedule_delay: 50ms, max_queue_size: 512, max_export_batch_size: 4, export_timeout: 3s }";
  c.workers = 1;
  ASSERT_NO_FATAL_FAILURE(startProxy(c));
  // The first round takes the first 4 spans; the rest queue up meanwhile for the second round.
  ASSERT_NO_FATAL_FAILURE(sendAll(30, "/api/stop-"));
  ASSERT_GE(
      waitMetric("sidetrace_export_requests_total", "outcome=\"failed\"", 2, milliseconds(15000)),
      2);
  const auto sigterm = std::chrono::steady_clock::now();
  stopProxyExpectClean();
  // Drain (nothing in flight: immediate), then at most export_timeout, then process teardown.
  EXPECT_LT(std::chrono::steady_clock::now() - sigterm, milliseconds(10000)) << proc_.logs();
  EXPECT_NE(proc_.stderrText().find("span pipeline at exit: started 60, sampled 60, exported 0, "
                                    "dropped 60"),
            std::string::npos)
      << proc_.logs();
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

// A collector slower than the export timeout: every call times out on the exporter thread, the
// spans are counted as dropped, requests do not notice, and export resumes once it is quick again.
TEST_F(CollectorFaultsTest, SlowCollectorPastTheExportTimeout) {
  otlp_.delayAnswers(milliseconds(1000));  // the export timeout is 300 ms
  ASSERT_NO_FATAL_FAILURE(startWithShortExportTimeout());
  ASSERT_NO_FATAL_FAILURE(sendAll(100, "/api/slow-"));
  EXPECT_GT(waitMetric("sidetrace_export_requests_total", "outcome=\"failed\"", 1), 0);
  EXPECT_GT(waitMetric("sidetrace_spans_dropped_total", "reason=\"export_failed\"", 1), 0);
  EXPECT_LE(metricSum(metrics(), "sidetrace_export_queue_size", ""), 256);
  ASSERT_NO_FATAL_FAILURE(expectEverySpanAccounted(200));

  otlp_.delayAnswers(milliseconds(0));
  ASSERT_NO_FATAL_FAILURE(expectExportResumes(otlp_));
  stopProxyExpectClean();
}

// A slow collector within the export timeout: one call at a time, each answered late. More spans
// than the queue holds are sent meanwhile; what does not fit (if the exporter falls behind) is
// dropped and counted, the rest is exported, and requests do not wait for any of it.
TEST_F(CollectorFaultsTest, SlowCollectorWithinTheExportTimeout) {
  otlp_.delayAnswers(milliseconds(200));  // the export timeout is 2 s
  ASSERT_NO_FATAL_FAILURE(startProxy(faultyConfig()));
  ASSERT_NO_FATAL_FAILURE(sendAll(300, "/api/slow-ok-"));
  EXPECT_LE(metricSum(metrics(), "sidetrace_export_queue_size", ""), 256);
  ASSERT_NO_FATAL_FAILURE(expectEverySpanAccounted(600));
  const std::string m = metrics();
  EXPECT_GE(metricSum(m, "sidetrace_spans_exported_total", ""), 64) << m;
  EXPECT_GE(metricSum(m, "sidetrace_export_requests_total", "outcome=\"ok\""), 1) << m;
  stopProxyExpectClean();
}

// UNAVAILABLE is retryable (OTLP spec): each batch is tried again with back-off until the export
// timeout, then counted as failed and its spans as dropped; export resumes when the collector
// answers OK again.
TEST_F(CollectorFaultsTest, CollectorAnsweringUnavailableIsRetriedThenResumes) {
  otlp_.answerAll(14);                                  // grpc::StatusCode::UNAVAILABLE
  ASSERT_NO_FATAL_FAILURE(startProxy(faultyConfig()));  // 2 s export timeout: room for retries
  ASSERT_NO_FATAL_FAILURE(sendAll(50, "/api/unavailable-"));
  const double failed = waitMetric("sidetrace_export_requests_total", "outcome=\"failed\"", 1);
  ASSERT_GE(failed, 1) << proc_.logs();
  // Read after the failures were counted: every call of those batches has already arrived.
  EXPECT_GE(static_cast<double>(otlp_.exportCalls()), 2 * failed)
      << "a failed batch was not retried";
  EXPECT_GE(waitMetric("sidetrace_spans_dropped_total", "reason=\"export_failed\"", 1), 1);
  EXPECT_LE(metricSum(metrics(), "sidetrace_export_queue_size", ""), 256);
  EXPECT_EQ(otlp_.spans().size(), 0u);

  otlp_.answerAll(0);
  ASSERT_NO_FATAL_FAILURE(expectExportResumes(otlp_));
  ASSERT_NO_FATAL_FAILURE(expectEverySpanAccounted(100));
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

// Request data recorded into spans: a 40 KB query (redaction makes it 110 KB, in url.query and
// again in url.full) and a 15 KB user agent. 40 such requests make one batch of over 9 MiB (more
// than 4 MiB even if a slow run spreads them over two batches).
class BigRequestsTest : public IntegrationTest {
 protected:
  static constexpr int kRequests = 40;
  static constexpr size_t kQueryPairs = 10000;  // "a=b&" each: 40 KB, "a=REDACTED&" redacted

  void sendBigRequests() {
    std::string query;
    for (size_t i = 0; i < kQueryPairs; ++i) {
      query += i > 0 ? "&a=b" : "a=b";
    }
    const std::string agent = "big-agent/" + std::string(15000, 'u');
    for (int i = 0; i < kRequests; ++i) {
      auto r = httpRequest(port(), "GET", "/api/big-" + std::to_string(i) + "?" + query,
                           {{"User-Agent", agent}}, {}, milliseconds(5000));
      ASSERT_TRUE(r) << "request " << i;
      ASSERT_EQ(r->status, 200) << "request " << i;
    }
  }

  static size_t redactedQueryBytes() { return kQueryPairs * 11 - 1; }
};

// With the default limits (4096 bytes per value) every span arrives, in requests the collector
// accepts. Before: the one oversized batch was refused (RESOURCE_EXHAUSTED), retried and dropped,
// with every other request's spans in it.
TEST_F(BigRequestsTest, DefaultSpanLimitsKeepEveryBatchUnderTheCollectorLimit) {
  ProxyConfig c;
  c.batch = "{ schedule_delay: 5s }";  // the whole burst in one batch
  ASSERT_NO_FATAL_FAILURE(startProxy(c));
  ASSERT_NO_FATAL_FAILURE(sendBigRequests());
  auto spans = waitSpansSettled(otlp_, 2 * kRequests, milliseconds(30000));
  ASSERT_EQ(spans.size(), 2u * kRequests) << "spans lost; export calls: " << otlp_.exportCalls();
  for (const auto& s : spans) {
    SCOPED_TRACE(s.name + " kind " + std::to_string(s.kind));
    if (s.kind == 2) {
      EXPECT_EQ(s.str("url.query").size(), 4096u);
      EXPECT_EQ(s.str("user_agent.original").size(), 4096u);
      EXPECT_TRUE(s.str("user_agent.original").starts_with("big-agent/uuu"));
    } else {
      EXPECT_EQ(s.str("url.full").size(), 4096u);
    }
    EXPECT_EQ(s.dropped_attributes_count, 0u);
  }
  const auto sizes = otlp_.requestBytes();
  std::cerr << "[ figures  ] " << spans.size() << " spans in " << sizes.size() << " request(s), "
            << std::accumulate(sizes.begin(), sizes.end(), size_t{0}) << " bytes\n";
  EXPECT_EQ(metricSum(metrics(), "sidetrace_spans_dropped_total", ""), 0);
  stopProxyExpectClean();
}

// Spans limited only loosely: the export is split into requests of at most max_export_bytes, and
// still every span arrives, whole.
TEST_F(BigRequestsTest, ExportSplitIntoRequestsOfAtMostMaxExportBytes) {
  ProxyConfig c;
  c.batch = "{ schedule_delay: 5s, max_export_bytes: 1048576 }";
  c.tracing_extra = "  span_limits: { attribute_value_length: 1000000 }\n";
  ASSERT_NO_FATAL_FAILURE(startProxy(c));
  ASSERT_NO_FATAL_FAILURE(sendBigRequests());
  auto spans = waitSpansSettled(otlp_, 2 * kRequests, milliseconds(30000));
  ASSERT_EQ(spans.size(), 2u * kRequests) << "spans lost; export calls: " << otlp_.exportCalls();
  for (const auto& s : spans) {
    if (s.kind == 2) {
      EXPECT_EQ(s.str("url.query").size(), redactedQueryBytes());
    }
  }
  const auto sizes = otlp_.requestBytes();
  ASSERT_GE(sizes.size(), 9u) << "over 9 MiB of spans in requests of at most 1 MiB";
  size_t total = 0;
  for (size_t bytes : sizes) {
    EXPECT_LE(bytes, 1048576u);
    total += bytes;
  }
  std::cerr << "[ figures  ] " << spans.size() << " spans in " << sizes.size() << " requests, "
            << total << " bytes, largest " << *std::max_element(sizes.begin(), sizes.end()) << "\n";
  EXPECT_EQ(metricSum(metrics(), "sidetrace_spans_dropped_total", ""), 0);
  stopProxyExpectClean();
}

}  // namespace
}  // namespace sidetrace::it
