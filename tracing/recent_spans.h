#pragma once
// The spans a worker finished most recently, kept for the admin /tracez page (a trace view for a
// laptop or a pod with no tracing backend yet). Fed with the worker's encoded batches before
// export, so the view keeps them even when export fails; it shares the batches' buffers with the
// export queue rather than copying them (a copy per span cost ~5% of a traced request's CPU). No
// lock: the worker owns the store, and the admin thread gets a copy by posting to the worker
// (Worker::copyRecentSpans).
//
// Bounded by memory: the buffers held (their capacity) plus a fixed cost per batch. When a batch
// takes it over the bound, the oldest batches are dropped; so it holds the newest spans, up to
// max_bytes of memory.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>

#include "tracing/otlp_encode.h"

namespace sidetrace::tracing {

class RecentSpans {
 public:
  // What a batch costs beyond its buffer: the deque slot, the shared buffer's control block and
  // the allocators' headers, roughly.
  static constexpr size_t kPerBatch = sizeof(SpanBatch) + 64;

  explicit RecentSpans(size_t max_bytes);

  // Keeps `batch`. A batch that alone holds more than the bound keeps its newest spans that fit
  // (copied out); a newest span larger than the bound is not kept, and counted.
  void add(const SpanBatch& batch);
  // Appends every span held, oldest first, to `out`: a run of ScopeSpans.spans elements.
  void copyTo(std::string& out) const;

  size_t bytesHeld() const { return held_; }  // memory, as bounded
  size_t bytesUsed() const { return used_; }  // span bytes
  uint64_t tooLarge() const { return too_large_; }

 private:
  size_t max_bytes_;
  std::deque<SpanBatch> batches_;
  size_t held_ = 0;
  size_t used_ = 0;
  uint64_t too_large_ = 0;
};

}  // namespace sidetrace::tracing
