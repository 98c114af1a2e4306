#include "tracing/batch_processor.h"

#include <gtest/gtest.h>

#include <future>

namespace sidetrace::tracing {
namespace {

using namespace std::chrono_literals;

// Records batch sizes; can fail, or block until released (a slow collector).
class RecordingExporter : public SpanExporter {
 public:
  ExportResult exportSpans(const std::vector<SpanData>& spans, const Resource& r) override {
    if (block) {
      std::unique_lock lock(mu);
      entered = true;
      cv.notify_all();
      cv.wait(lock, [&] { return released; });
    }
    std::lock_guard lock(mu);
    batches.push_back(spans.size());
    for (const auto& s : spans) {
      names.push_back(s.name);
    }
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

  std::mutex mu;
  std::condition_variable cv;
  std::vector<size_t> batches;
  std::vector<std::string> names;
  std::string service;
  bool fail = false;
  bool block = false;
  bool entered = false;
  bool released = false;
  std::atomic<bool> shut_down{false};
};

std::vector<SpanData> spans(size_t n, const std::string& prefix = "s") {
  std::vector<SpanData> out(n);
  for (size_t i = 0; i < n; ++i) {
    out[i].name = prefix + std::to_string(i);
  }
  return out;
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
  std::vector<size_t> sizes = rec->batchSizes();
  size_t total = 0;
  for (size_t s : sizes) {
    EXPECT_LE(s, 4u);
    total += s;
  }
  EXPECT_EQ(total, 10u);
  EXPECT_EQ(rec->names.front(), "s0");
  EXPECT_EQ(rec->names.back(), "t6");
  EXPECT_EQ(rec->service, "svc");
  EXPECT_EQ(p.stats().spans_sampled.load(), 10u);
  EXPECT_EQ(p.stats().spans_exported.load(), 10u);
  EXPECT_EQ(p.stats().export_requests_ok.load(), sizes.size());
  EXPECT_EQ(p.stats().queue_size.load(), 0u);
}

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
  BatchSpanProcessor p(std::move(e), cfg(10, 10), resource());
  // One enqueue call: what does not fit is dropped at once, whatever the export thread does.
  p.enqueue(spans(25));
  EXPECT_EQ(p.stats().spans_sampled.load(), 25u);
  EXPECT_EQ(p.stats().spans_dropped_queue_full.load(), 15u);
  ASSERT_TRUE(p.forceFlush(5s));
  EXPECT_EQ(p.stats().spans_exported.load(), 10u);
}

TEST(BatchSpanProcessorTest, SlowExporterNeverBlocksEnqueue) {
  auto e = std::make_unique<RecordingExporter>();
  auto* rec = e.get();
  rec->block = true;
  BatchSpanProcessor p(std::move(e), cfg(8, 2), resource());
  p.enqueue(spans(2));
  ASSERT_TRUE(rec->waitEntered(5s));  // export thread is now stuck in the exporter
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) {
    p.enqueue(spans(1));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_EQ(p.stats().queue_size.load(), 8u);
  EXPECT_EQ(p.stats().spans_dropped_queue_full.load(), 92u);
  EXPECT_FALSE(p.forceFlush(50ms));  // times out while the exporter is stuck
  rec->release();
  EXPECT_TRUE(p.forceFlush(5s));
  EXPECT_EQ(p.stats().spans_exported.load(), 10u);
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
  EXPECT_TRUE(rec->shut_down.load());
  p.shutdown(5s);
  p.enqueue(spans(1));  // after shutdown: dropped, counted
  EXPECT_EQ(p.stats().spans_dropped_queue_full.load(), 1u);
  EXPECT_TRUE(p.forceFlush(10ms));
}

class CountingExporter : public SpanExporter {
 public:
  explicit CountingExporter(std::shared_ptr<std::atomic<size_t>> n) : n_(std::move(n)) {}
  ExportResult exportSpans(const std::vector<SpanData>& spans, const Resource&) override {
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
  auto e = std::make_unique<RecordingExporter>();
  BatchSpanProcessor p(std::move(e), cfg(100000, 64, 5), resource());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&p] {
      WorkerSpanBuffer buf(&p, 16);
      for (int i = 0; i < 1000; ++i) {
        SpanData d;
        buf.add(std::move(d));
      }
      buf.flush();
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  ASSERT_TRUE(p.forceFlush(5s));
  EXPECT_EQ(p.stats().spans_exported.load(), 4000u);
  EXPECT_EQ(p.stats().spans_dropped_queue_full.load(), 0u);
}

TEST(WorkerSpanBufferTest, HandsOverAtBatchSizeOrFlush) {
  auto e = std::make_unique<RecordingExporter>();
  BatchSpanProcessor p(std::move(e), cfg(100, 100), resource());
  WorkerSpanBuffer buf(&p, 3);
  buf.add(SpanData{});
  buf.add(SpanData{});
  EXPECT_EQ(p.stats().spans_sampled.load(), 0u);
  buf.add(SpanData{});
  EXPECT_EQ(p.stats().spans_sampled.load(), 3u);
  buf.add(SpanData{});
  buf.flush();
  EXPECT_EQ(p.stats().spans_sampled.load(), 4u);
  EXPECT_EQ(buf.stats(), &p.stats());
  WorkerSpanBuffer none(nullptr);
  none.add(SpanData{});
  none.flush();
  EXPECT_EQ(none.stats(), nullptr);
}

}  // namespace
}  // namespace sidetrace::tracing
