// The /tracez store and view: the ring keeps the newest spans within its byte bound, a tracer with
// no exporter records for it, and the JSON groups a trace's spans and summarizes routes.

#include "tracing/tracez.h"

#include <gtest/gtest.h>

#include <string>

#include "tracing/otlp_encode.h"
#include "tracing/recent_spans.h"
#include "tracing/sampler.h"
#include "tracing/tracer.h"

namespace sidetrace::tracing {
namespace {

SpanRecord record(const std::string& name, uint8_t trace, uint8_t span, uint8_t parent,
                  SpanKind kind, uint64_t start_ms, uint64_t end_ms) {
  SpanRecord r;
  r.trace_id.bytes[15] = trace;
  r.span_id.bytes[7] = span;
  r.parent_span_id.bytes[7] = parent;
  r.name = name;
  r.kind = kind;
  r.start_unix_nanos = start_ms * 1000000;
  r.end_unix_nanos = end_ms * 1000000;
  return r;
}

std::string encode(const SpanRecord& r) {
  std::string out;
  appendOtlpSpan(out, r);
  return out;
}

SpanBatch batch(const SpanRecord& r) {
  return SpanBatch::copyOf(encode(r), 1);
}

TEST(RecentSpansTest, KeepsTheNewestWithinTheBound) {
  RecentSpans probe(1 << 20);
  probe.add(batch(record("GET app", 1, 1, 0, SpanKind::Server, 0, 1)));
  const size_t bound = probe.bytesHeld() * 8;  // room for 8 one-span batches and their cost
  RecentSpans ring(bound);
  for (int i = 0; i < 100; ++i) {
    ring.add(batch(record("GET app", static_cast<uint8_t>(i), 1, 0, SpanKind::Server, 0, 1)));
    EXPECT_LE(ring.bytesHeld(), bound);
    EXPECT_LE(ring.bytesUsed(), ring.bytesHeld());
  }
  std::string run;
  ring.copyTo(run);
  std::vector<SpanData> spans = decodeSpanRun(run);
  ASSERT_GE(spans.size(), 4u);
  ASSERT_LE(spans.size(), 8u);
  EXPECT_EQ(spans.back().trace_id.bytes[15], 99);  // newest last
  EXPECT_EQ(spans.front().trace_id.bytes[15], 100 - spans.size());
  EXPECT_EQ(ring.tooLarge(), 0u);
}

TEST(RecentSpansTest, SharesTheBatchBufferRatherThanCopyingIt) {
  RecentSpans ring(1 << 20);
  const SpanBatch b = batch(record("GET app", 1, 1, 0, SpanKind::Server, 0, 1));
  ring.add(b);
  EXPECT_EQ(b.owner.use_count(), 2);  // the batch and the store: one buffer
  EXPECT_EQ(ring.bytesUsed(), b.bytes.size());
}

// Steady traffic fills batch after batch: each is handed over with its buffer, not copied (the
// buffer grows by doubling while the first batch fills, so a buffer left as it was would stay
// under 3/4 full and every batch would be copied: ~800 instructions per traced request).
TEST(RecentSpansTest, SteadyFullBatchesAreHandedOverNotCopied) {
  // Spans of 312 bytes: 64 of them (19,968) fill a doubled 32 KiB buffer to 61%.
  auto span = [](uint8_t i, size_t pad) {
    SpanRecord r = record("GET /checkout", i, 1, 0, SpanKind::Server, 0, 1);
    appendOtlpAttribute(r.attributes, "pad", std::string_view(std::string(pad, 'x')));
    return r;
  };
  size_t pad = 0;
  while (encode(span(0, pad)).size() < 312) {
    ++pad;
  }
  ASSERT_EQ(encode(span(0, pad)).size(), 312u);
  RecentSpans ring(64 << 20);
  WorkerSpanBuffer buffer(nullptr, 64);
  buffer.setRecent(&ring);
  for (int b = 0; b < 10; ++b) {
    const size_t held_before = ring.bytesHeld();
    const size_t used_before = ring.bytesUsed();
    for (uint8_t i = 0; i < 64; ++i) {
      buffer.add(span(i, pad));
    }
    const size_t held = ring.bytesHeld() - held_before - RecentSpans::kPerBatch;
    const size_t used = ring.bytesUsed() - used_before;
    ASSERT_GT(used, 0u);
    if (b >= 2) {  // a copy holds exactly its bytes; a handed-over buffer has room to spare
      EXPECT_GT(held, used) << "batch " << b << " was copied";
    }
    EXPECT_LE(held, used + used / 3 + 1024) << "batch " << b;
  }
  // A quiet spell's timer flush between full batches: the small batch is copied out, and the
  // full batch after it is still handed over.
  for (int b = 0; b < 5; ++b) {
    for (uint8_t i = 0; i < 20; ++i) {
      buffer.add(span(i, pad));
    }
    const size_t held_before = ring.bytesHeld();
    const size_t used_before = ring.bytesUsed();
    buffer.flush();
    EXPECT_EQ(ring.bytesHeld() - held_before - RecentSpans::kPerBatch,
              ring.bytesUsed() - used_before);  // copied: holds exactly its bytes
    const size_t full_held_before = ring.bytesHeld();
    const size_t full_used_before = ring.bytesUsed();
    for (uint8_t i = 0; i < 64; ++i) {
      buffer.add(span(i, pad));
    }
    EXPECT_GT(ring.bytesHeld() - full_held_before - RecentSpans::kPerBatch,
              ring.bytesUsed() - full_used_before)
        << "full batch after timer flush " << b << " was copied";
  }
}

TEST(RecentSpansTest, ABatchLargerThanTheBoundKeepsItsNewestSpans) {
  std::string bytes;
  for (uint8_t i = 0; i < 10; ++i) {
    appendOtlpSpan(bytes, record("GET app", i, 1, 0, SpanKind::Server, 0, 1));
  }
  const SpanBatch ten = SpanBatch::copyOf(bytes, 10);
  RecentSpans ring(ten.held / 2 + 100);
  ring.add(ten);
  EXPECT_LE(ring.bytesHeld(), ten.held / 2 + 100);
  std::string run;
  ring.copyTo(run);
  std::vector<SpanData> spans = decodeSpanRun(run);
  ASSERT_GE(spans.size(), 2u);
  ASSERT_LT(spans.size(), 10u);
  EXPECT_EQ(spans.back().trace_id.bytes[15], 9);
  EXPECT_EQ(ring.tooLarge(), 0u);
}

TEST(RecentSpansTest, ASpanLargerThanTheBoundIsCountedNotKept) {
  RecentSpans ring(200);
  SpanRecord big = record(std::string(300, 'x'), 1, 1, 0, SpanKind::Server, 0, 1);
  ring.add(batch(big));
  EXPECT_EQ(ring.tooLarge(), 1u);
  EXPECT_EQ(ring.bytesUsed(), 0u);
  EXPECT_EQ(ring.bytesHeld(), 0u);
}

TEST(RecentSpansTest, ATracerWithoutExporterRecordsForTheRing) {
  RecentSpans ring(1 << 20);
  WorkerSpanBuffer buffer(nullptr);
  Tracer tracer(makeSampler("always_on", 1.0), &buffer);
  {
    Span s = tracer.startServerSpan("unseen", nullptr);
    EXPECT_FALSE(s.recording());  // no exporter, no ring: nothing to record for
  }
  buffer.setRecent(&ring);
  {
    Span s = tracer.startServerSpan("GET app", nullptr);
    EXPECT_TRUE(s.recording());
    s.setAttribute("http.route", std::string_view("app"));
  }
  std::string pending;
  buffer.copyPending(pending);  // ended, not yet flushed: what /tracez shows as the newest
  EXPECT_EQ(decodeSpanRun(pending).size(), 1u);
  buffer.flush();
  std::string run;
  ring.copyTo(run);
  std::vector<SpanData> spans = decodeSpanRun(run);
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0].name, "GET app");
}

TEST(TracezJsonTest, GroupsATraceAndSummarizesRoutes) {
  std::string run;
  // Trace 1: SERVER (route app) with two CLIENT attempts, the first failed.
  SpanRecord server = record("GET app", 1, 1, 0, SpanKind::Server, 100, 130);
  appendOtlpAttribute(server.attributes, "http.route", std::string_view("app"));
  SpanRecord first = record("GET", 1, 2, 1, SpanKind::Client, 101, 110);
  first.status = StatusCode::Error;
  SpanRecord second = record("GET", 1, 3, 1, SpanKind::Client, 111, 129);
  // Trace 2: one slow SERVER span on route app; trace 3: an egress CLIENT span alone.
  SpanRecord slow = record("GET app", 2, 4, 0, SpanKind::Server, 200, 500);
  appendOtlpAttribute(slow.attributes, "http.route", std::string_view("app"));
  SpanRecord egress = record("POST", 3, 5, 9, SpanKind::Client, 600, 601);
  for (const auto* r : {&server, &first, &second, &slow, &egress}) {
    appendOtlpSpan(run, *r);
  }
  const std::vector<SpanData> spans = decodeSpanRun(run);
  ASSERT_EQ(spans.size(), 5u);
  TracezMemory mem{.max_bytes = 1000, .bytes_held = 900, .bytes_used = 800, .workers = 2};
  const std::string json = tracezSummaryJson(spans, mem);
  EXPECT_NE(json.find("\"traces\":3"), std::string::npos) << json;
  EXPECT_NE(json.find("{\"route\":\"app\",\"count\":2,\"errors\":0,\"p50_ms\":30.000,"
                      "\"p90_ms\":300.000,\"p99_ms\":300.000}"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("{\"route\":\"POST\",\"count\":1,"), std::string::npos) << json;
  const std::string t1 = server.trace_id.hex();
  const std::string t2 = slow.trace_id.hex();
  const std::string t3 = egress.trace_id.hex();
  // Latest by end time, slowest by extent, failed: any span with status ERROR.
  EXPECT_LT(json.find(t3, json.find("\"latest\"")), json.find(t2, json.find("\"latest\"")));
  EXPECT_LT(json.find(t2, json.find("\"slowest\"")), json.find(t1, json.find("\"slowest\"")));
  const std::string failed = json.substr(json.find("\"failed\""));
  EXPECT_NE(failed.find(t1), std::string::npos);
  EXPECT_EQ(failed.find(t2), std::string::npos);

  auto trace = tracezTraceJson(spans, server.trace_id);
  ASSERT_TRUE(trace);
  EXPECT_NE(trace->find("\"kind\":\"SERVER\""), std::string::npos) << *trace;
  EXPECT_NE(trace->find("\"status\":\"ERROR\""), std::string::npos) << *trace;
  EXPECT_NE(trace->find("\"start_offset_ms\":11.000,\"duration_ms\":18.000"), std::string::npos)
      << *trace;
  EXPECT_NE(trace->find("\"attributes\":{\"http.route\":\"app\"}"), std::string::npos) << *trace;
  EXPECT_FALSE(tracezTraceJson(spans, TraceId::fromHex(std::string(32, 'f'))));
}

TEST(TracezJsonTest, EscapesStrings) {
  std::string run;
  SpanRecord r = record("GET \"<x>\"\n", 1, 1, 0, SpanKind::Server, 0, 1);
  appendOtlpSpan(run, r);
  auto trace = tracezTraceJson(decodeSpanRun(run), r.trace_id);
  ASSERT_TRUE(trace);
  EXPECT_NE(trace->find(R"("name":"GET \"\u003cx\u003e\"\n")"), std::string::npos) << *trace;
}

TEST(TracezJsonTest, PercentileIsNearestRank) {
  EXPECT_EQ(percentile({}, 50), 0);
  EXPECT_EQ(percentile({1, 2, 3, 4}, 50), 2);
  EXPECT_EQ(percentile({1, 2, 3, 4}, 99), 4);
  EXPECT_EQ(percentile({7}, 1), 7);
}

}  // namespace
}  // namespace sidetrace::tracing
