#pragma once
// Exemplars for the request duration histogram (OpenMetrics): per worker, for each route slot and
// bucket, the trace and span id of the latest sampled request that fell in it, so a latency spike
// on a dashboard leads to a trace. The worker writes its own slots; the admin thread reads them
// when /metrics is scraped as OpenMetrics and keeps the latest per bucket across workers.
//
// Each slot is a seqlock over relaxed atomics: the writer (one worker) never waits, and a reader
// that overlaps a write retries, so it never sees half of one request and half of another.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "tracing/trace_context.h"

namespace sidetrace::proxy {

struct Exemplar {
  tracing::TraceId trace_id;
  tracing::SpanId span_id;
  uint64_t duration_nanos = 0;
  uint64_t unix_nanos = 0;  // when the request ended
};

class ExemplarSlots {
 public:
  // `buckets`: per series, the histogram's buckets including +Inf.
  ExemplarSlots(size_t series, size_t buckets);
  // Worker thread only (one writer per instance).
  void record(size_t series, size_t bucket, const Exemplar& e);
  // Any thread; nullopt when none was recorded (or a write kept overlapping the read).
  std::optional<Exemplar> read(size_t series, size_t bucket) const;

 private:
  struct Slot {
    std::atomic<uint64_t> seq{0};    // odd while a write is under way; 0: never written
    std::atomic<uint64_t> words[5];  // trace id (2), span id, duration, time
  };
  size_t buckets_;
  std::unique_ptr<Slot[]> slots_;
};

}  // namespace sidetrace::proxy
