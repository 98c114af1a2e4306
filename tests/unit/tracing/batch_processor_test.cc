#include "tracing/batch_processor.h"

#include <gtest/gtest.h>

#include <sched.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tracing/otlp_encode.h"

namespace sidetrace::tracing {
namespace {

using namespace std::chrono_literals;

// Decodes each request (as a collector would) and records the batches; can fail, or block until
// released (a slow collector).
class RecordingExporter : public SpanExporter {
 public:
  ExportResult exportSpans(std::string_view request, size_t span_count) override {
    if (block) {
      std::unique_lock lock(mu);
      entered = true;
      cv.notify_all();
      cv.wait(lock, [&] { return released; });
    }
    std::vector<SpanData> spans;
    Resource r;
    const bool ok = decodeOtlpRequest(request, &spans, &r);
    std::lock_guard lock(mu);
    request_bytes.push_back(request.size());
    if (!ok || spans.size() != span_count) {
      ++bad_requests;
    }
    batches.push_back(spans.size());
    std::vector<std::string> batch_names;
    for (const auto& s : spans) {
      names.push_back(s.name);
      batch_names.push_back(s.name);
    }
    batch_name_lists.push_back(std::move(batch_names));
    service = r.attributes.empty() ? "" : std::get<std::string>(r.attributes[0].value);
    return fail ? ExportResult::Failure : ExportResult::Success;
  }
  void shutdown() override { shut_down = true; }

  void release() {
    std::lock_guard lock(mu);
    released = true;
    cv.notify_all();
  }
  bool waitEntered(std::chrono::milliseconds t) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, t, [&] { return entered; });
  }
  std::vector<size_t> batchSizes() {
    std::lock_guard lock(mu);
    return batches;
  }
  std::vector<std::vector<std::string>> batchNames() {
    std::lock_guard lock(mu);
    return batch_name_lists;
  }
  std::vector<std::string> allNames() {
    std::lock_guard lock(mu);
    return names;
  }
  std::vector<size_t> requestBytes() {
    std::lock_guard lock(mu);
    return request_bytes;
  }

  std::mutex mu;
  std::condition_variable cv;
  std::vector<size_t> batches;
  std::vector<std::vector<std::string>> batch_name_lists;
  std::vector<std::string> names;
  std::vector<size_t> request_bytes;  // serialized size of each request
  std::string service;
  int bad_requests = 0;  // undecodable, or span_count not what the request holds
  bool fail = false;
  bool block = false;
  bool entered = false;
  bool released = false;
  std::atomic<bool> shut_down{false};
};

SpanRecord record(std::string name) {
  SpanRecord r;
  r.trace_id = TraceId::fromHex("4bf92f3577b34da6a3ce929d0e0e4736");
  r.span_id = SpanId::fromHex("00f067aa0ba902b7");
  r.flags = 1;
  r.name = std::move(name);
  r.kind = SpanKind::Server;
  r.start_unix_nanos = 1;
  r.end_unix_nanos = 2;
  appendOtlpAttribute(r.attributes, "k", "v");
  return r;
}

// A batch of n encoded spans named prefix0 .. prefix(n-1).
SpanBatch spans(size_t n, const std::string& prefix = "s") {
  std::string bytes;
  for (size_t i = 0; i < n; ++i) {
    appendOtlpSpan(bytes, record(prefix + std::to_string(i)));
  }
  return SpanBatch::copyOf(bytes, n);
}

std::vector<std::string> names(size_t n, const std::string& prefix = "s") {
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(prefix + std::to_string(i));
  }
  return out;
}

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

config::BatchConfig cfg(uint32_t queue, uint32_t batch, int delay_ms = 60000) {
  config::BatchConfig c;
  c.max_queue_size = queue;
  c.max_export_batch_size = batch;
  c.schedule_delay = config::Duration{delay_ms};
  c.export_timeout = config::Duration{5000};
  return c;
}

Resource resource() {
  return Resource{{Attribute{"service.name", std::string("svc")}}};
}

TEST(BatchSpanProcessorTest, ForceFlushExportsInBatchesOfMaxSize) {
  auto e = std::make_unique<RecordingExporter>();
  auto* rec = e.get();
  BatchSpanProcessor p(std::move(e), cfg(100, 4), resource());
  p.enqueue(spans(3));
  EXPECT_EQ(p.stats().queue_size.load(), 3u);
  p.enqueue(spans(7, "t"));
  ASSERT_TRUE(p.forceFlush(5s));
  // Exactly max_export_batch_size per request; the queued "t" batch is split at span boundaries.
  EXPECT_EQ(rec->batchSizes(), (std::vector<size_t>{4, 4, 2}));
  EXPECT_EQ(rec->batchNames(),
            (std::vector<std::vector<std::string>>{
                {"s0", "s1", "s2", "t0"}, {"t1", "t2", "t3", "t4"}, {"t5", "t6"}}));
  EXPECT_EQ(rec->bad_requests, 0);
  EXPECT_EQ(rec->service, "svc");
  EXPECT_EQ(p.stats().spans_sampled.load(), 10u);
  EXPECT_EQ(p.stats().spans_exported.load(), 10u);
  EXPECT_EQ(p.stats().export_requests_ok.load(), 3u);
  EXPECT_EQ(p.stats().queue_size.load(), 0u);
}

// After a reload the retired pipeline still exports its queue while the new one fills: both
// count into the one sidetrace_export_queue_size (found by the soak run: the gauge showed the
// last writer's queue, and 0 once the retired pipeline stopped).
TEST(BatchSpanProcessorTest, QueueSizeCountsEveryPipelineSharingTheStats) {
  PipelineStats shared;
  auto retired = std::make_unique<BatchSpanProcessor>(std::make_unique<RecordingExporter>(),
                                                      cfg(100, 50), resource(), &shared);
  BatchSpanProcessor current(std::make_unique<RecordingExporter>(), cfg(100, 50), resource(),
                             &shared);
  retired->enqueue(spans(3));
  current.enqueue(spans(5));
  EXPECT_EQ(shared.queue_size.load(), 8u);
  retired->shutdown(5s);  // exports its 3 spans and stops
  EXPECT_EQ(shared.spans_exported.load(), 3u);
  EXPECT_EQ(shared.queue_size.load(), 5u);
  ASSERT_TRUE(current.forceFlush(5s));
  EXPECT_EQ(shared.queue_size.load(), 0u);
  EXPECT_EQ(shared.spans_exported.load(), 8u);
}

TEST(BatchSpanProcessorTest, OneQueuedBatchSplitAcrossRequests) {
  auto e = std::make_unique<RecordingExporter>();
  auto* rec = e.get();
  BatchSpanProcessor p(std::move(e), cfg(100, 3), resource());
  p.enqueue(spans(8));
  ASSERT_TRUE(p.forceFlush(5s));
  EXPECT_EQ(rec->batchSizes(), (std::vector<size_t>{3, 3, 2}));
  EXPECT_EQ(rec->allNames(), names(8));
  EXPECT_EQ(rec->bad_requests, 0);
  EXPECT_EQ(p.stats().spans_exported.load(), 8u);
}

TEST(BatchSpanProcessorTest, EmptyBatchIsIgnored) {
  auto e = std::make_unique<RecordingExporter>();
  auto* rec = e.get();
  BatchSpanProcessor p(std::move(e), cfg(100, 4), resource());
  p.enqueue(SpanBatch{});
  ASSERT_TRUE(p.forceFlush(5s));
  EXPECT_EQ(p.stats().spans_sampled.load(), 0u);
  EXPECT_TRUE(rec->batchSizes().empty());
}

// The export thread yields to a worker on its CPU (nice 10) but still wakes in time to keep up
// (SCHED_OTHER: as SCHED_BATCH it waited out a worker's time slice after every export call and a
// saturated worker outran it), read back from /proc as `ps` and `top` would show them.
TEST(BatchSpanProcessorTest, ExportThreadRunsAtNice10AsSchedOther) {
  BatchSpanProcessor p(std::make_unique<RecordingExporter>(), cfg(100, 4), resource());
  std::string stat;
  for (int tries = 0; tries < 200 && stat.empty(); ++tries) {  // the thread names itself
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
      std::ifstream comm(task.path() / "comm");
      std::string name;
      if (std::getline(comm, name) && name == "st-exporter") {
        std::ifstream f(task.path() / "stat");
        std::getline(f, stat);
      }
    }
    if (stat.empty()) {
      std::this_thread::sleep_for(5ms);
    }
  }
  ASSERT_FALSE(stat.empty()) << "no thread named st-exporter";
  // Fields after the parenthesised name: state is field 3; nice is 19, policy 41.
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));
  std::vector<std::string> fields(2);  // fields 1 and 2 (pid, comm) are before `rest`
  for (std::string f; rest >> f;) {
    fields.push_back(f);
  }
  ASSERT_GE(fields.size(), 41u);
  EXPECT_EQ(fields[18], "10") << "nice";
  EXPECT_EQ(fields[40], std::to_string(SCHED_OTHER)) << "scheduling policy";
}

// One enqueued batch reaching max_export_batch_size must wake the export thread (the bound is in
// spans, not in queued batches).
TEST(BatchSpanProcessorTest, FullBatchTriggersExportWithoutFlush) {
  auto e = std::make_unique<RecordingExporter>();
  auto* rec = e.get();
  BatchSpanProcessor p(std::move(e), cfg(100, 5), resource());
  p.enqueue(spans(5));
  for (int i = 0; i < 500 && p.stats().spans_exported.load() < 5; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(p.stats().spans_exported.load(), 5u);
  EXPECT_EQ(rec->batchSizes(), std::vector<size_t>{5});
  EXPECT_EQ(rec->allNames(), names(5));
}

TEST(BatchSpanProcessorTest, ScheduleDelayExportsPartialBatch) {
  auto e = std::make_unique<RecordingExporter>();
  BatchSpanProcessor p(std::move(e), cfg(100, 50, 20), resource());
  p.enqueue(spans(2));
  for (int i = 0; i < 500 && p.stats().spans_exported.load() < 2; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(p.stats().spans_exported.load(), 2u);
}

TEST(BatchSpanProcessorTest, QueueFullDropsAreCounted) {
  auto e = std::make_unique<RecordingExporter>();
  auto* rec = e.get();
  BatchSpanProcessor p(std::move(e), cfg(10, 10), resource());
  // One enqueue call: what does not fit is dropped at once, whatever the export thread does.
  p.enqueue(spans(25));
  EXPECT_EQ(p.stats().spans_sampled.load(), 25u);
  EXPECT_EQ(p.stats().spans_dropped_queue_full.load(), 15u);
  ASSERT_TRUE(p.forceFlush(5s));
  EXPECT_EQ(p.stats().spans_exported.load(), 10u);
  // The first ten are kept, cut at a span boundary: each decodes whole.
  EXPECT_EQ(rec->allNames(), names(10));
  EXPECT_EQ(rec->bad_requests, 0);
}

TEST(BatchSpanProcessorTest, BatchLargerThanRoomIsCutAtSpanBoundary) {
  auto e = std::make_unique<RecordingExporter>();
  auto* rec = e.get();
  BatchSpanProcessor p(std::move(e), cfg(10, 10), resource());
  p.enqueue(spans(4, "a"));  // 4 < max_export_batch_size: the export thread stays asleep
  EXPECT_EQ(p.stats().queue_size.load(), 4u);
  p.enqueue(spans(10, "b"));  // room for 6
  EXPECT_EQ(p.stats().spans_sampled.load(), 14u);
  EXPECT_EQ(p.stats().spans_dropped_queue_full.load(), 4u);
  ASSERT_TRUE(p.forceFlush(5s));
  EXPECT_EQ(p.stats().spans_exported.load(), 10u);
  EXPECT_EQ(rec->batchSizes(), std::vector<size_t>{10});
  EXPECT_EQ(rec->allNames(), concat(names(4, "a"), names(6, "b")));
  EXPECT_EQ(rec->bad_requests, 0);
  EXPECT_EQ(p.stats().queue_size.load(), 0u);
}

// n spans of `pad` attribute bytes each, named prefix0 .. (n < 10: every span the same size).
SpanBatch paddedSpans(size_t n, const std::string& prefix, size_t pad = 1000) {
  std::string bytes;
  for (size_t i = 0; i < n; ++i) {
    SpanRecord r = record(prefix + std::to_string(i));
    appendOtlpAttribute(r.attributes, "pad", std::string_view(std::string(pad, 'x')));
    appendOtlpSpan(bytes, r);
  }
  return SpanBatch::copyOf(bytes, n);
}

size_t oneSpanBytes(size_t pad = 1000) {
  return paddedSpans(1, "x", pad).bytes.size();
}

size_t framingBytes() {
  return OtlpRequestEncoder(resource()).maxFramingBytes();
}

// A collector refuses an oversized request whole: requests are cut by bytes, not only by count.
TEST(BatchSpanProcessorTest, RequestsAreSplitByBytes) {
  auto e = std::make_unique<RecordingExporter>();
  auto* rec = e.get();
  auto c = cfg(100, 100);
  c.max_export_bytes = static_cast<uint32_t>(framingBytes() + 3 * oneSpanBytes() + 100);
  BatchSpanProcessor p(std::move(e), c, resource());
  p.enqueue(paddedSpans(2, "a"));
  p.enqueue(paddedSpans(6, "b"));
  ASSERT_TRUE(p.forceFlush(5s));
  EXPECT_EQ(rec->batchSizes(), (std::vector<size_t>{3, 3, 2}));
  EXPECT_EQ(rec->allNames(), concat(names(2, "a"), names(6, "b")));
  for (size_t bytes : rec->requestBytes()) {
    EXPECT_LE(bytes, c.max_export_bytes);
  }
  EXPECT_EQ(rec->bad_requests, 0);
  EXPECT_EQ(p.stats().spans_exported.load(), 8u);
  EXPECT_EQ(p.stats().export_requests_ok.load(), 3u);
}

TEST(BatchSpanProcessorTest, QueuedBytesReachingOneRequestWakeTheExporter) {
  auto e = std::make_unique<RecordingExporter>();
  auto* rec = e.get();
  auto c = cfg(100, 100);
  c.max_export_bytes = static_cast<uint32_t>(framingBytes() + 2 * oneSpanBytes());
  BatchSpanProcessor p(std::move(e), c, resource());
  p.enqueue(paddedSpans(3, "a"));  // 3 < max_export_batch_size, but over one request's bytes
  for (int i = 0; i < 500 && p.stats().spans_exported.load() < 3; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(p.stats().spans_exported.load(), 3u);
  EXPECT_EQ(rec->batchSizes(), (std::vector<size_t>{2, 1}));
}

TEST(BatchSpanProcessorTest, SpanLargerThanARequestIsDroppedAndCounted) {
  auto e = std::make_unique<RecordingExporter>();
  auto* rec = e.get();
  auto c = cfg(100, 100);
  c.max_export_bytes = static_cast<uint32_t>(framingBytes() + 4 * oneSpanBytes());
  BatchSpanProcessor p(std::move(e), c, resource());
  p.enqueue(paddedSpans(2, "a"));
  p.enqueue(paddedSpans(1, "big", 10 * 1000));
  p.enqueue(paddedSpans(2, "c"));
  ASSERT_TRUE(p.forceFlush(5s));
  EXPECT_EQ(rec->allNames(), concat(names(2, "a"), names(2, "c")));
  EXPECT_EQ(p.stats().spans_dropped_too_large.load(), 1u);
  EXPECT_EQ(p.stats().spans_exported.load(), 4u);
  EXPECT_EQ(p.stats().queue_size.load(), 0u);
  EXPECT_EQ(rec->bad_requests, 0);
}

// A max_export_bytes below the request framing leaves no room for any span: each is dropped and
// counted, and the export thread (woken by queued bytes) still sleeps on an empty queue.
TEST(BatchSpanProcessorTest, MaxExportBytesBelowTheFramingDropsEverySpan) {
  auto e = std::make_unique<RecordingExporter>();
  auto* rec = e.get();
  auto c = cfg(100, 100);
  c.max_export_bytes = 1;
  BatchSpanProcessor p(std::move(e), c, resource());
  p.enqueue(spans(2));
  ASSERT_TRUE(p.forceFlush(5s));
  EXPECT_EQ(p.stats().spans_dropped_too_large.load(), 2u);
  EXPECT_TRUE(rec->batchSizes().empty());
  EXPECT_EQ(p.stats().queue_size.load(), 0u);
}

TEST(BatchSpanProcessorTest, QueueBoundedByBytesDropsAndCounts) {
  auto e = std::make_unique<RecordingExporter>();
  auto* rec = e.get();
  auto c = cfg(100, 100);
  c.max_queue_bytes = static_cast<uint32_t>(3 * oneSpanBytes() + 100);
  BatchSpanProcessor p(std::move(e), c, resource());
  p.enqueue(paddedSpans(2, "a"));
  p.enqueue(paddedSpans(3, "b"));  // room for one more by bytes (97 more by count)
  p.enqueue(paddedSpans(1, "c"));
  EXPECT_EQ(p.stats().spans_dropped_queue_full.load(), 3u);
  EXPECT_EQ(p.stats().queue_size.load(), 3u);
  ASSERT_TRUE(p.forceFlush(5s));
  EXPECT_EQ(rec->allNames(), concat(names(2, "a"), names(1, "b")));
  p.enqueue(paddedSpans(3, "d"));  // the export freed the bytes
  ASSERT_TRUE(p.forceFlush(5s));
  EXPECT_EQ(p.stats().spans_exported.load(), 6u);
  EXPECT_EQ(p.stats().spans_dropped_queue_full.load(), 3u);
  EXPECT_EQ(rec->bad_requests, 0);
}

TEST(BatchSpanProcessorTest, SlowExporterNeverBlocksEnqueue) {
  auto e = std::make_unique<RecordingExporter>();
  auto* rec = e.get();
  rec->block = true;
  BatchSpanProcessor p(std::move(e), cfg(8, 2), resource());
  // Destroyed before p: if an assertion below fails, p's shutdown must not wait on the exporter.
  struct Release {
    RecordingExporter* rec;
    ~Release() { rec->release(); }
  } release_on_exit{rec};
  p.enqueue(spans(2));
  ASSERT_TRUE(rec->waitEntered(5s));  // export thread is now stuck in the exporter
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) {
    p.enqueue(spans(1, "u" + std::to_string(i) + "-"));
  }
  p.enqueue(spans(10, "v"));  // room for 3 of them
  for (int i = 0; i < 100; ++i) {
    p.enqueue(spans(1, "w"));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_EQ(p.stats().queue_size.load(), 8u);
  EXPECT_EQ(p.stats().spans_dropped_queue_full.load(), 107u);
  EXPECT_FALSE(p.forceFlush(50ms));  // times out while the exporter is stuck
  rec->release();
  EXPECT_TRUE(p.forceFlush(5s));
  EXPECT_EQ(p.stats().spans_exported.load(), 10u);
  EXPECT_EQ(rec->allNames(), (std::vector<std::string>{"s0", "s1", "u0-0", "u1-0", "u2-0", "u3-0",
                                                       "u4-0", "v0", "v1", "v2"}));
  for (size_t n : rec->batchSizes()) {
    EXPECT_LE(n, 2u);
  }
  EXPECT_EQ(rec->bad_requests, 0);
}

TEST(BatchSpanProcessorTest, ExportFailuresAreCounted) {
  auto e = std::make_unique<RecordingExporter>();
  e->fail = true;
  BatchSpanProcessor p(std::move(e), cfg(100, 3), resource());
  p.enqueue(spans(7));
  ASSERT_TRUE(p.forceFlush(5s));
  EXPECT_EQ(p.stats().export_requests_failed.load(), 3u);
  EXPECT_EQ(p.stats().spans_dropped_export_failed.load(), 7u);
  EXPECT_EQ(p.stats().spans_exported.load(), 0u);
  EXPECT_EQ(p.stats().export_requests_ok.load(), 0u);
}

TEST(BatchSpanProcessorTest, ShutdownExportsTheRestAndIsIdempotent) {
  auto e = std::make_unique<RecordingExporter>();
  auto* rec = e.get();
  BatchSpanProcessor p(std::move(e), cfg(100, 50), resource());
  p.enqueue(spans(7));
  p.shutdown(5s);
  EXPECT_EQ(p.stats().spans_exported.load(), 7u);
  EXPECT_EQ(rec->allNames(), names(7));
  EXPECT_TRUE(rec->shut_down.load());
  p.shutdown(5s);
  p.enqueue(spans(1));  // after shutdown: dropped, counted
  EXPECT_EQ(p.stats().spans_dropped_queue_full.load(), 1u);
  EXPECT_EQ(p.stats().queue_size.load(), 0u);
  EXPECT_TRUE(p.forceFlush(10ms));
}

// A collector that is down: every request fails only after the exporter's timeout (here 100 ms),
// and the exporter keeps to the deadline the processor gives it.
class TimingOutExporter : public SpanExporter {
 public:
  ExportResult exportSpans(std::string_view, size_t) override {
    const auto end = std::min(std::chrono::steady_clock::now() + 100ms, deadline_);
    {
      std::lock_guard lock(mu);
      ++calls;
      starts.push_back(std::chrono::steady_clock::now());
      deadlines.push_back(deadline_);
    }
    entered.notify_all();
    std::this_thread::sleep_until(end);
    return ExportResult::Failure;
  }
  std::mutex mu;
  std::condition_variable entered;
  int calls = 0;
  std::vector<std::chrono::steady_clock::time_point> starts;
  std::vector<std::chrono::steady_clock::time_point> deadlines;  // what each call was given
};

TEST(BatchSpanProcessorTest, ShutdownBoundsTheRoundAlreadyExporting) {
  auto e = std::make_unique<TimingOutExporter>();
  auto* rec = e.get();
  BatchSpanProcessor p(std::move(e), cfg(100, 1), resource());
  // A full batch: a round of 40 one-span requests, 4 s against this collector.
  p.enqueue(spans(40));
  {
    std::unique_lock lock(rec->mu);
    ASSERT_TRUE(rec->entered.wait_for(lock, 5s, [&] { return rec->calls > 0; }));
  }
  const auto shutdown_at = std::chrono::steady_clock::now();
  p.shutdown(250ms);
  // The request in flight ends on its own timeout; later ones end by shutdown's deadline, so the
  // round stops after a few requests instead of trying all 40.
  std::lock_guard lock(rec->mu);
  EXPECT_LE(rec->calls, 5);
  for (size_t i = 0; i < rec->deadlines.size(); ++i) {
    if (rec->starts[i] > shutdown_at) {  // (1 s: shutdown() itself may start a little late)
      EXPECT_LE(rec->deadlines[i], shutdown_at + 250ms + 1s);
    }
  }
  EXPECT_EQ(p.stats().spans_dropped_export_failed.load(), 40u);
  EXPECT_EQ(p.stats().queue_size.load(), 0u);
}

class CountingExporter : public SpanExporter {
 public:
  explicit CountingExporter(std::shared_ptr<std::atomic<size_t>> n) : n_(std::move(n)) {}
  ExportResult exportSpans(std::string_view request, size_t) override {
    std::vector<SpanData> spans;
    if (!decodeOtlpRequest(request, &spans)) {
      return ExportResult::Failure;
    }
    *n_ += spans.size();
    return ExportResult::Success;
  }

 private:
  std::shared_ptr<std::atomic<size_t>> n_;
};

TEST(BatchSpanProcessorTest, DestructorExportsWhatIsQueued) {
  auto n = std::make_shared<std::atomic<size_t>>(0);
  {
    BatchSpanProcessor p(std::make_unique<CountingExporter>(n), cfg(100, 50), resource());
    p.enqueue(spans(3));
  }
  EXPECT_EQ(n->load(), 3u);
}

TEST(BatchSpanProcessorTest, ConcurrentProducers) {
  auto n = std::make_shared<std::atomic<size_t>>(0);
  BatchSpanProcessor p(std::make_unique<CountingExporter>(n), cfg(100000, 64, 5), resource());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&p, t] {
      WorkerSpanBuffer buf(&p, 16);
      for (int i = 0; i < 1000; ++i) {
        buf.add(record("w" + std::to_string(t) + "-" + std::to_string(i)));
      }
      buf.flush();
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  ASSERT_TRUE(p.forceFlush(5s));
  EXPECT_EQ(p.stats().spans_exported.load(), 4000u);
  EXPECT_EQ(n->load(), 4000u);  // every request decoded, with every span in it
  EXPECT_EQ(p.stats().spans_dropped_queue_full.load(), 0u);
}

TEST(WorkerSpanBufferTest, HandsOverAtBatchSizeOrFlush) {
  auto e = std::make_unique<RecordingExporter>();
  auto* rec = e.get();
  BatchSpanProcessor p(std::move(e), cfg(100, 100), resource());
  WorkerSpanBuffer buf(&p, 3);
  buf.add(record("a"));
  buf.add(record("b"));
  EXPECT_EQ(p.stats().spans_sampled.load(), 0u);
  buf.add(record("c"));
  EXPECT_EQ(p.stats().spans_sampled.load(), 3u);
  EXPECT_EQ(p.stats().queue_size.load(), 3u);
  buf.add(record("d"));
  EXPECT_EQ(p.stats().spans_sampled.load(), 3u);
  buf.flush();
  EXPECT_EQ(p.stats().spans_sampled.load(), 4u);
  buf.flush();  // nothing pending: no-op
  EXPECT_EQ(p.stats().spans_sampled.load(), 4u);
  buf.countStarted();
  buf.countStarted();
  EXPECT_EQ(buf.started(), 2u);
  ASSERT_TRUE(p.forceFlush(5s));
  EXPECT_EQ(rec->allNames(), (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ(rec->bad_requests, 0);
}

TEST(WorkerSpanBufferTest, HandsOverLargeSpansAtTheByteBound) {
  auto e = std::make_unique<RecordingExporter>();
  BatchSpanProcessor p(std::move(e), cfg(100, 100), resource());
  WorkerSpanBuffer buf(&p, 50);
  buf.add(record("small"));
  EXPECT_EQ(p.stats().spans_sampled.load(), 0u);
  SpanRecord big = record("big");
  appendOtlpAttribute(big.attributes, "pad",
                      std::string_view(std::string(WorkerSpanBuffer::kMaxPendingBytes, 'x')));
  buf.add(big);
  EXPECT_EQ(p.stats().spans_sampled.load(), 2u);  // 2 of 50 spans, but over the byte bound
  EXPECT_EQ(p.stats().queue_size.load(), 2u);
}

TEST(WorkerSpanBufferTest, ReusedAfterHandOver) {
  auto e = std::make_unique<RecordingExporter>();
  auto* rec = e.get();
  BatchSpanProcessor p(std::move(e), cfg(100, 100), resource());
  WorkerSpanBuffer buf(&p, 2);
  for (int i = 0; i < 7; ++i) {
    buf.add(record("r" + std::to_string(i)));
  }
  buf.flush();
  ASSERT_TRUE(p.forceFlush(5s));
  EXPECT_EQ(rec->allNames(), names(7, "r"));
  EXPECT_EQ(rec->bad_requests, 0);
  EXPECT_EQ(p.stats().spans_sampled.load(), 7u);
}

TEST(WorkerSpanBufferTest, NoProcessorDiscards) {
  WorkerSpanBuffer none(nullptr);
  none.add(record("x"));
  none.flush();
  none.countStarted();  // nothing goes anywhere: nothing to count
  EXPECT_EQ(none.started(), 0u);
}

}  // namespace
}  // namespace sidetrace::tracing
