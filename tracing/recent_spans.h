#pragma once
// The spans a worker finished most recently, kept for the admin /tracez page (a trace view for a
// laptop or a pod with no tracing backend yet). Fed with the bytes the span was encoded into for
// export, before export, so the view keeps them even when export fails; one copy per span, no
// allocation once warm, no lock: the worker owns it, and the admin thread gets a copy by posting
// to the worker (Worker::copyRecentSpans).
//
// Bounded by bytes: two halves of max_bytes / 2 each. Spans are appended to the current half;
// when it is full, the older half is dropped and becomes the current one. So it always holds the
// newest spans, between max_bytes / 2 and max_bytes of them, and never more than max_bytes of
// memory (capacity grows as needed, up to the bound).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace sidetrace::tracing {

class RecentSpans {
 public:
  explicit RecentSpans(size_t max_bytes);

  // `encoded`: one ScopeSpans.spans element (otlp_encode.h appendOtlpSpan). A span larger than
  // half the bound is not kept (and counted).
  void add(std::string_view encoded);
  // Appends every span held, oldest first, to `out`: a run of ScopeSpans.spans elements.
  void copyTo(std::string& out) const;

  size_t bytesHeld() const { return current_.capacity + previous_.capacity; }  // allocated
  size_t bytesUsed() const { return current_.size + previous_.size; }
  uint64_t tooLarge() const { return too_large_; }

 private:
  struct Half {
    std::unique_ptr<char[]> data;
    size_t size = 0;
    size_t capacity = 0;
  };
  void reserve(Half& h, size_t need) const;

  size_t half_;
  Half current_;
  Half previous_;
  uint64_t too_large_ = 0;
};

}  // namespace sidetrace::tracing
