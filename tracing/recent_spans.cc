#include "tracing/recent_spans.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace sidetrace::tracing {

RecentSpans::RecentSpans(size_t max_bytes) : half_(max_bytes / 2) {}

void RecentSpans::add(std::string_view encoded) {
  const size_t n = encoded.size();
  if (n > half_) {
    ++too_large_;
    return;
  }
  if (current_.size + n > half_) {
    std::swap(current_, previous_);
    current_.size = 0;
  }
  if (current_.capacity - current_.size < n) {
    reserve(current_, current_.size + n);
  }
  std::memcpy(current_.data.get() + current_.size, encoded.data(), n);
  current_.size += n;
}

// Doubling, from 16 KiB, never past the half: a quiet worker holds little.
void RecentSpans::reserve(Half& h, size_t need) const {
  size_t capacity = std::min(half_, std::max({h.capacity * 2, need, size_t{16 * 1024}}));
  auto data = std::make_unique_for_overwrite<char[]>(capacity);
  if (h.size > 0) {
    std::memcpy(data.get(), h.data.get(), h.size);
  }
  h.data = std::move(data);
  h.capacity = capacity;
}

void RecentSpans::copyTo(std::string& out) const {
  for (const Half* h : {&previous_, &current_}) {
    if (h->size > 0) {
      out.append(h->data.get(), h->size);
    }
  }
}

}  // namespace sidetrace::tracing
