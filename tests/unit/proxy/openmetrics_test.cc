// OpenMetrics negotiation and conversion, and the exemplar slots' seqlock (one writer thread,
// one reader thread: the reader sees whole exemplars only).

#include "proxy/openmetrics.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "proxy/exemplars.h"

namespace sidetrace::proxy {
namespace {

TEST(OpenMetricsTextTest, NegotiatesFromAccept) {
  EXPECT_TRUE(acceptsOpenMetrics("application/openmetrics-text"));
  EXPECT_TRUE(acceptsOpenMetrics(
      "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
      "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"));
  EXPECT_TRUE(acceptsOpenMetrics("text/plain, Application/OpenMetrics-Text; q=0.5"));
  EXPECT_FALSE(acceptsOpenMetrics(""));
  EXPECT_FALSE(acceptsOpenMetrics("text/plain;version=0.0.4"));
  EXPECT_FALSE(acceptsOpenMetrics("*/*"));
  EXPECT_FALSE(acceptsOpenMetrics("application/openmetrics-text;q=0"));
}

TEST(OpenMetricsTextTest, CounterFamiliesLoseTotalAndTheTextEnds) {
  const std::string prom =
      "# HELP a_total A counter.\n"
      "# TYPE a_total counter\n"
      "a_total{x=\"1\"} 3\n"
      "# HELP g_total A gauge that happens to end in _total.\n"
      "# TYPE g_total gauge\n"
      "g_total 1\n";
  EXPECT_EQ(toOpenMetrics(prom),
            "# HELP a A counter.\n"
            "# TYPE a counter\n"
            "a_total{x=\"1\"} 3\n"
            "# HELP g_total A gauge that happens to end in _total.\n"
            "# TYPE g_total gauge\n"
            "g_total 1\n"
            "# EOF\n");
}

TEST(ExemplarSlotsTest, ReadsWhatWasRecordedPerSlot) {
  ExemplarSlots slots(2, 3);
  EXPECT_FALSE(slots.read(1, 2));
  Exemplar e;
  e.trace_id.bytes[0] = 0xab;
  e.span_id.bytes[7] = 0xcd;
  e.duration_nanos = 1234;
  e.unix_nanos = 5678;
  slots.record(1, 2, e);
  auto got = slots.read(1, 2);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->trace_id, e.trace_id);
  EXPECT_EQ(got->span_id, e.span_id);
  EXPECT_EQ(got->duration_nanos, 1234u);
  EXPECT_EQ(got->unix_nanos, 5678u);
  EXPECT_FALSE(slots.read(0, 2));
  EXPECT_FALSE(slots.read(1, 1));
}

TEST(ExemplarSlotsTest, AConcurrentReaderNeverSeesATornExemplar) {
  ExemplarSlots slots(1, 1);
  std::atomic<bool> stop{false};
  std::atomic<bool> recorded{false};
  std::thread writer([&] {
    for (uint64_t i = 1; !stop.load(); ++i) {
      Exemplar e;
      for (auto& b : e.trace_id.bytes) {
        b = static_cast<uint8_t>(i);
      }
      for (auto& b : e.span_id.bytes) {
        b = static_cast<uint8_t>(i);
      }
      e.duration_nanos = i;
      e.unix_nanos = i;
      slots.record(0, 0, e);
      recorded.store(true);
      std::this_thread::yield();  // a writer records once per request, not back to back
    }
  });
  // A loaded machine may start the writer late: read only once it has recorded, and for a while
  // rather than a number of tries.
  while (!recorded.load()) {
    std::this_thread::yield();
  }
  size_t seen = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (seen < 20000 && std::chrono::steady_clock::now() < until) {
    if (auto e = slots.read(0, 0)) {
      ++seen;
      const auto v = static_cast<uint8_t>(e->duration_nanos);
      ASSERT_EQ(e->unix_nanos, e->duration_nanos);
      for (auto b : e->trace_id.bytes) {
        ASSERT_EQ(b, v);
      }
      for (auto b : e->span_id.bytes) {
        ASSERT_EQ(b, v);
      }
    }
  }
  stop.store(true);
  writer.join();
  EXPECT_GT(seen, 0u);
}

}  // namespace
}  // namespace sidetrace::proxy
