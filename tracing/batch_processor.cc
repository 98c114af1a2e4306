#include "tracing/batch_processor.h"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>

#include "tracing/log.h"

namespace sidetrace::tracing {

namespace {

using SteadyClock = std::chrono::steady_clock;

// The export thread's scheduling. At the default priority a woken export thread takes a worker's
// CPU as an equal and holds it for a whole call: the requests in flight on that worker wait (the
// traced p99). At nice 10 it weighs a tenth of a worker, so the scheduler lets it in briefly
// between a worker's requests, several times as often as exporting every span of a saturated
// worker needs. It stays SCHED_OTHER: as SCHED_BATCH (never preempting on wake-up) it waited for
// a worker's whole time slice each time an export call's reply woke it, one call per slice, and
// a saturated h2c worker outran it: a third of the spans were dropped as queue_full (kernel 6.18,
// EEVDF). SCHED_OTHER at nice 10 exported every span with the same p99 and CPU per request.
constexpr int kExportNice = 10;

void deprioritiseExportThread() {
  // Linux: nice is per thread. A failure leaves the default priority, which only costs p99.
  (void)setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), kExportNice);
}

int64_t steadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now().time_since_epoch())
      .count();
}

}  // namespace

BatchSpanProcessor::BatchSpanProcessor(std::unique_ptr<SpanExporter> exporter,
                                       const config::BatchConfig& cfg, Resource resource,
                                       PipelineStats* stats)
    : exporter_(std::move(exporter)),
      cfg_(cfg),
      encoder_(resource),
      stats_(stats != nullptr ? stats : &own_stats_) {
  // A zero batch size would never make progress; a batch larger than the queue never fills.
  cfg_.max_queue_size = std::max<uint32_t>(cfg_.max_queue_size, 1);
  cfg_.max_export_batch_size =
      std::clamp<uint32_t>(cfg_.max_export_batch_size, 1, cfg_.max_queue_size);
  // A zero delay would make the export thread spin on an empty queue.
  cfg_.schedule_delay = std::max(cfg_.schedule_delay, config::Duration{1});
  cfg_.max_queue_bytes = std::max<uint32_t>(cfg_.max_queue_bytes, 1);
  // At least 1: an empty queue (0 bytes) must not count as a full request, or the thread spins.
  request_budget_ = std::max<size_t>(
      cfg_.max_export_bytes - std::min<size_t>(cfg_.max_export_bytes, encoder_.maxFramingBytes()),
      1);
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "st-exporter");  // for top -H / perf
    deprioritiseExportThread();
    run();
  });
}

BatchSpanProcessor::~BatchSpanProcessor() {
  shutdown(cfg_.export_timeout);
}

void BatchSpanProcessor::enqueue(SpanBatch&& spans) {
  if (spans.count == 0) {
    return;
  }
  stats_->spans_sampled.fetch_add(spans.count, std::memory_order_relaxed);
  size_t taken = 0;
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      const size_t room =
          cfg_.max_queue_size - std::min<size_t>(queued_spans_, cfg_.max_queue_size);
      const size_t room_bytes =
          cfg_.max_queue_bytes - std::min<size_t>(queued_bytes_, cfg_.max_queue_bytes);
      taken = spans.count;
      if (spans.count > room || spans.bytes.size() > room_bytes) {
        // Keep the first spans that fit, cut at a span boundary.
        const SpansPrefix fits = otlpSpansPrefix(spans.bytes, room, room_bytes);
        spans.bytes = spans.bytes.substr(0, fits.bytes);
        taken = fits.count;
      }
      if (taken > 0) {
        queued_bytes_ += spans.bytes.size();
        queued_spans_ += taken;
        queue_.push_back(SpanBatch{std::move(spans.owner), spans.bytes, taken, spans.held});
      }
      publishQueueSize();
      wake = queued_spans_ >= cfg_.max_export_batch_size || queued_bytes_ >= request_budget_;
    }
  }
  const size_t dropped = spans.count - taken;
  if (wake) {
    cv_.notify_one();
  }
  if (dropped > 0) {
    stats_->spans_dropped_queue_full.fetch_add(dropped, std::memory_order_relaxed);
    warnDropped(dropped);
  }
}

bool BatchSpanProcessor::forceFlush(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (stopping_) {
    return queue_.empty();
  }
  uint64_t ticket = ++flush_requested_;
  cv_.notify_one();
  return flushed_.wait_for(lock, timeout, [&] { return flush_done_ >= ticket || stopping_; }) &&
         flush_done_ >= ticket;
}

void BatchSpanProcessor::shutdown(std::chrono::milliseconds timeout) {
  {
    std::lock_guard lock(mu_);
    if (shut_down_) {
      return;
    }
    shut_down_ = true;
    stopping_ = true;
    stop_deadline_ = SteadyClock::now() + timeout;
  }
  cv_.notify_one();
  if (thread_.joinable()) {
    thread_.join();
  }
  if (exporter_) {
    exporter_->shutdown();
  }
}

void BatchSpanProcessor::run() {
  while (true) {
    size_t count = 0;
    uint64_t flush_target = 0;
    bool stop = false;
    SteadyClock::time_point deadline = SteadyClock::time_point::max();
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, cfg_.schedule_delay, [&] {
        return stopping_ || flush_requested_ > flush_done_ ||
               queued_spans_ >= cfg_.max_export_batch_size || queued_bytes_ >= request_budget_;
      });
      stop = stopping_;
      flush_target = flush_requested_;
      count = queued_spans_;
      if (stop) {
        deadline = stop_deadline_;
      }
    }
    // Only what is queued now: under steady load this round ends, and a flush covers every span
    // enqueued before it was requested.
    exportQueued(count, deadline);
    {
      std::lock_guard lock(mu_);
      flush_done_ = std::max(flush_done_, flush_target);
      if (stop) {
        // Whatever the deadline left behind is lost; count it as failed to export.
        stats_->spans_dropped_export_failed.fetch_add(queued_spans_, std::memory_order_relaxed);
        queue_.clear();
        queued_spans_ = 0;
        queued_bytes_ = 0;
        publishQueueSize();
        flush_done_ = flush_requested_;
      }
    }
    flushed_.notify_all();
    if (stop) {
      return;
    }
  }
}

size_t BatchSpanProcessor::popRequest(size_t want, std::vector<SpanBatch>& batch, size_t& dropped) {
  size_t n = 0;
  size_t bytes = 0;
  while (n < want && !queue_.empty()) {
    SpanBatch& front = queue_.front();
    // A whole batch that fits is taken without walking its spans (the walk touches one cache line
    // per span of a batch long out of cache: ~12% of the export thread's time).
    SpansPrefix take = front.count <= want - n && front.bytes.size() <= request_budget_ - bytes
                           ? SpansPrefix{front.bytes.size(), front.count}
                           : otlpSpansPrefix(front.bytes, want - n, request_budget_ - bytes);
    const bool too_large = take.count == 0;
    if (too_large) {
      if (n > 0) {
        break;  // this request is full: the next span starts the next one
      }
      take = otlpSpansPrefix(front.bytes, 1);  // alone over the budget: no request can carry it
      dropped += take.count;
    } else {
      n += take.count;
      bytes += take.bytes;
    }
    queued_spans_ -= take.count;
    queued_bytes_ -= take.bytes;
    if (take.count == front.count) {
      if (!too_large) {
        batch.push_back(std::move(front));
      }
      queue_.pop_front();
    } else {  // split the front batch at a span boundary: two views of one buffer
      if (!too_large) {
        batch.push_back(SpanBatch{front.owner, front.bytes.substr(0, take.bytes), take.count});
      }
      front.bytes.remove_prefix(take.bytes);
      front.count -= take.count;
    }
  }
  publishQueueSize();
  return n;
}

void BatchSpanProcessor::publishQueueSize() {
  // Unsigned wrap-around makes this a subtraction when the queue shrank.
  stats_->queue_size.fetch_add(uint64_t{queued_spans_} - reported_queue_size_,
                               std::memory_order_relaxed);
  reported_queue_size_ = queued_spans_;
}

void BatchSpanProcessor::exportQueued(size_t count, SteadyClock::time_point deadline) {
  std::vector<SpanBatch> batch;
  while (count > 0) {
    batch.clear();
    size_t n = 0;
    size_t dropped = 0;
    {
      std::lock_guard lock(mu_);
      if (stopping_) {  // shutdown came during this round: it bounds the rest of it
        deadline = std::min(deadline, stop_deadline_);
      }
      if (SteadyClock::now() >= deadline) {
        return;
      }
      n = popRequest(std::min(count, size_t{cfg_.max_export_batch_size}), batch, dropped);
    }
    if (dropped > 0) {
      stats_->spans_dropped_too_large.fetch_add(dropped, std::memory_order_relaxed);
      log().warn("dropped {} span(s) larger than tracing.batch.max_export_bytes ({})", dropped,
                 cfg_.max_export_bytes);
    }
    if (n + dropped == 0) {
      return;
    }
    count -= std::min(count, n + dropped);
    if (n == 0 || !exporter_) {
      continue;  // only oversized spans, or no exporter: spans are discarded by design
    }
    size_t spans_size = 0;
    for (const SpanBatch& b : batch) {
      spans_size += b.bytes.size();
    }
    encoder_.encodeHead(spans_size, head_);
    exporter_->setDeadline(deadline);
    if (exporter_->exportFramed(FramedSpans{head_.view(), batch, n}) == ExportResult::Success) {
      stats_->export_requests_ok.fetch_add(1, std::memory_order_relaxed);
      stats_->spans_exported.fetch_add(n, std::memory_order_relaxed);
      // The exporter's count is cumulative; the shared counter may span several exporters.
      const uint64_t rejected = exporter_->rejectedSpans();
      stats_->spans_rejected.fetch_add(rejected - rejected_seen_, std::memory_order_relaxed);
      rejected_seen_ = rejected;
    } else {
      stats_->export_requests_failed.fetch_add(1, std::memory_order_relaxed);
      stats_->spans_dropped_export_failed.fetch_add(n, std::memory_order_relaxed);
    }
  }
}

void BatchSpanProcessor::warnDropped(uint64_t dropped) {
  dropped_since_log_.fetch_add(dropped, std::memory_order_relaxed);
  int64_t now = steadyNanos();
  int64_t last = last_drop_log_ns_.load(std::memory_order_relaxed);
  constexpr int64_t kInterval = 1'000'000'000;
  if ((last != 0 && now - last < kInterval) ||
      !last_drop_log_ns_.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
    return;  // logged within the last second, or another worker is logging right now
  }
  uint64_t n = dropped_since_log_.exchange(0, std::memory_order_relaxed);
  log().warn("span export queue full (max_queue_size {}, max_queue_bytes {}): dropped {} span(s)",
             cfg_.max_queue_size, cfg_.max_queue_bytes, n);
}

WorkerSpanBuffer::WorkerSpanBuffer(BatchSpanProcessor* processor, size_t batch)
    : processor_(processor), batch_(std::max<size_t>(batch, 1)) {}

void WorkerSpanBuffer::add(const SpanRecord& span) {
  appendOtlpSpan(pending_, span);
  if (++pending_count_ >= batch_ || pending_.size() >= kMaxPendingBytes) {
    handOver(true);
  }
}

void WorkerSpanBuffer::flush() {
  handOver(false);
}

void WorkerSpanBuffer::handOver(bool full) {
  if (pending_count_ == 0) {
    return;
  }
  if (processor_ == nullptr && recent_ == nullptr) {  // exporter "none" and no /tracez
    pending_.clear();
    pending_count_ = 0;
    return;
  }
  SpanBatch batch;
  const size_t size = pending_.size();
  if (full) {  // what the next full batch will likely need
    full_batch_bytes_ = size + size / 8 + 512;
  }
  const size_t next = std::max(full_batch_bytes_, size + size / 8 + 512);
  if (size >= pending_.capacity() / 4 * 3) {  // slack under a third of the bytes held
    batch = SpanBatch::adopt(std::move(pending_), pending_count_);
    pending_.reserve(next);
  } else {
    // Copied out: a quiet worker's timer flush, or a buffer that doubled past the batch. A buffer
    // that is not sized for a full batch is replaced by one that is, so that the next full batch
    // is handed over: one that doubled would stay under 3/4 full, and every batch be copied.
    batch = SpanBatch::copyOf(pending_.view(), pending_count_);
    if (pending_.capacity() < next || pending_.capacity() / 4 * 3 > next) {
      pending_ = WireBuffer();
      pending_.reserve(next);
    } else {
      pending_.clear();
    }
  }
  pending_count_ = 0;
  if (recent_ != nullptr) {  // before export: the view keeps spans whose export fails
    recent_->add(batch);
  }
  if (processor_ != nullptr) {
    processor_->enqueue(std::move(batch));
  }
}

void WorkerSpanBuffer::copyPending(std::string& out) const {
  out.append(pending_.view());
}

void WorkerSpanBuffer::setProcessor(BatchSpanProcessor* processor) {
  flush();
  processor_ = processor;
}

}  // namespace sidetrace::tracing
