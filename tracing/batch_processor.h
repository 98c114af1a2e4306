#pragma once
// BatchSpanProcessor: one thread, one bounded queue, one exporter. Workers hand over spans in
// small batches (WorkerSpanBuffer) so the lock is taken once per batch, not per span. A full queue
// (by span count or by bytes) drops spans and counts them; a worker never waits on export
// (nginx-otel BatchExporter habit). Requests are cut by bytes as well as by count: a collector
// refuses an oversized message whole, losing every span in it.
// Spans travel already encoded (otlp_encode.h), in the buffers their worker wrote them into: the
// export thread frames them and hands them to the exporter as they are, never re-encoding or
// copying them.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config/config.h"
#include "tracing/exporter.h"
#include "tracing/otlp_encode.h"
#include "tracing/recent_spans.h"
#include "tracing/span_data.h"

namespace sidetrace::tracing {

// Counters read by the admin /metrics endpoint (ARCHITECTURE §7). Spans started are counted per
// worker (WorkerSpanBuffer::started).
struct PipelineStats {
  std::atomic<uint64_t> spans_sampled{0};   // recorded spans ended and offered to the queue
  std::atomic<uint64_t> spans_exported{0};  // in successful export calls
  std::atomic<uint64_t> spans_dropped_queue_full{0};
  std::atomic<uint64_t> spans_dropped_export_failed{0};
  std::atomic<uint64_t> spans_dropped_too_large{0};  // alone larger than max_export_bytes
  std::atomic<uint64_t> spans_rejected{0};  // exported, but rejected by the collector (partial)
  std::atomic<uint64_t> export_requests_ok{0};
  std::atomic<uint64_t> export_requests_failed{0};
  std::atomic<uint64_t> queue_size{0};
};

class BatchSpanProcessor {
 public:
  // `stats` (optional) outlives the processor: the server keeps one set of counters across the
  // processors a reload replaces. Without it the processor counts into its own.
  BatchSpanProcessor(std::unique_ptr<SpanExporter> exporter, const config::BatchConfig& cfg,
                     Resource resource, PipelineStats* stats = nullptr);
  ~BatchSpanProcessor();  // shutdown(export_timeout) if not yet done
  BatchSpanProcessor(const BatchSpanProcessor&) = delete;
  BatchSpanProcessor& operator=(const BatchSpanProcessor&) = delete;

  // Called from any worker thread. Queues as many of the spans as fit; the rest are dropped and
  // counted. Never blocks on export; holds the lock only to append.
  void enqueue(SpanBatch&& spans);
  // Export everything queued now; waits up to timeout. Returns false on timeout.
  bool forceFlush(std::chrono::milliseconds timeout);
  // Flush, stop the thread, shut the exporter down. Idempotent.
  void shutdown(std::chrono::milliseconds timeout);

  PipelineStats& stats() { return *stats_; }

 private:
  void run();
  // Exports up to `count` queued spans in requests of at most max_export_batch_size spans and
  // max_export_bytes bytes; the lock is held only to pop a batch. Stops early (spans left queued)
  // once `deadline` has passed, or shutdown's, if shutdown comes during the round; no request
  // runs past it (SpanExporter::setDeadline).
  void exportQueued(size_t count, std::chrono::steady_clock::time_point deadline);
  // Under mu_: moves the spans of the next request (at most `want`) from the queue into `batch`;
  // returns how many, and in `dropped` how many spans were too large to send at all.
  size_t popRequest(size_t want, std::vector<SpanBatch>& batch, size_t& dropped);
  // Under mu_: adds the change of queued_spans_ to stats_->queue_size. A delta, not a store: the
  // stats are shared with the pipeline a reload retired while it still exports, and the gauge
  // must count both queues (a store let each overwrite the other, the retired one's last with 0).
  void publishQueueSize();
  void warnDropped(uint64_t dropped);

  std::unique_ptr<SpanExporter> exporter_;
  config::BatchConfig cfg_;
  OtlpRequestEncoder encoder_;
  PipelineStats own_stats_;
  PipelineStats* stats_;
  std::mutex mu_;
  std::condition_variable cv_;       // wakes the export thread
  std::condition_variable flushed_;  // wakes forceFlush callers
  std::deque<SpanBatch> queue_;
  size_t queued_spans_ = 0;           // spans in queue_ (bounded by max_queue_size)
  size_t queued_bytes_ = 0;           // their encoded bytes (bounded by max_queue_bytes)
  uint64_t reported_queue_size_ = 0;  // queued_spans_ as last added to stats_->queue_size
  size_t request_budget_ = 0;         // span bytes per request: max_export_bytes less the framing
  WireBuffer head_;                   // export thread only: a request's framing, capacity reused
  uint64_t rejected_seen_ = 0;        // export thread only: exporter_->rejectedSpans() last added
  uint64_t flush_requested_ = 0;
  uint64_t flush_done_ = 0;
  bool stopping_ = false;
  bool shut_down_ = false;                               // shutdown() entered (idempotence)
  std::chrono::steady_clock::time_point stop_deadline_;  // when shutdown gives up exporting
  std::atomic<int64_t> last_drop_log_ns_{0};             // steady clock; rate-limits the warning
  std::atomic<uint64_t> dropped_since_log_{0};
  std::thread thread_;
};

// Per-worker staging buffer: encodes ended spans into a batch and hands it to the processor (and
// the /tracez store) when it holds `batch` spans or kMaxPendingBytes, or when flush() is called
// (the worker calls it on a short timer). The byte bound keeps large spans from piling up outside
// the queue's byte bound. A batch that fills at least 3/4 of its buffer is handed over with the
// buffer (the worker starts a new one sized for the next); a smaller one (a quiet worker's timer
// flush, or the first batches while the buffer grows by doubling) is copied out into a buffer of
// its size, and the worker's buffer is resized for a full batch so the next one is handed over.
// So a buffer held by the queue or the /tracez store carries at most a third more memory than its
// span bytes, and steady traffic copies no span byte.
// Single-threaded: owned and used by one worker (started() may be read from any thread).
class WorkerSpanBuffer {
 public:
  static constexpr size_t kMaxPendingBytes = 256 * 1024;
  WorkerSpanBuffer(BatchSpanProcessor* processor, size_t batch = 64);
  void add(const SpanRecord& span);
  void flush();
  // Appends the spans added since the last flush to `out` (the /tracez view's newest).
  void copyPending(std::string& out) const;
  size_t pendingBytes() const { return pending_.size(); }
  // Flushes, then hands later spans to `processor` (a reload replaced the pipeline; may be null).
  void setProcessor(BatchSpanProcessor* processor);
  // A span was started on this worker, sampled or not (sidetrace_spans_started_total, counted
  // while there is a processor). Here, by its one writer, with a plain load and store: in the
  // shared PipelineStats it was two locked increments per traced request of a cache line every
  // worker writes. (A cluster's circuit breakers still count requests on a shared line: a limit
  // across workers needs one count.)
  void countStarted() {
    if (processor_ != nullptr) {
      started_.store(started_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
  }
  uint64_t started() const { return started_.load(std::memory_order_relaxed); }
  // Also keeps every added span in `recent` (the admin /tracez view; null: off). Worker thread.
  void setRecent(RecentSpans* recent) { recent_ = recent; }
  // Whether ended spans go anywhere: without, spans need not be recorded at all.
  bool recording() const { return processor_ != nullptr || recent_ != nullptr; }

 private:
  BatchSpanProcessor* processor_;  // nullptr: exporter "none", spans are discarded
  RecentSpans* recent_ = nullptr;
  void handOver(bool full);  // `full`: the batch reached its span count or byte bound

  size_t batch_;
  WireBuffer pending_;           // encoded spans
  size_t full_batch_bytes_ = 0;  // buffer size for a full batch, from the last one
  size_t pending_count_ = 0;
  std::atomic<uint64_t> started_{0};
};

}  // namespace sidetrace::tracing
