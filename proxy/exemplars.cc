#include "proxy/exemplars.h"

#include <cstring>

namespace sidetrace::proxy {

ExemplarSlots::ExemplarSlots(size_t series, size_t buckets)
    : buckets_(buckets), slots_(std::make_unique<Slot[]>(series * buckets)) {
  for (size_t i = 0; i < series * buckets; ++i) {
    for (auto& w : slots_[i].words) {
      w.store(0, std::memory_order_relaxed);
    }
  }
}

void ExemplarSlots::record(size_t series, size_t bucket, const Exemplar& e) {
  Slot& s = slots_[series * buckets_ + bucket];
  uint64_t w[5];
  std::memcpy(&w[0], e.trace_id.bytes.data(), 16);
  std::memcpy(&w[2], e.span_id.bytes.data(), 8);
  w[3] = e.duration_nanos;
  w[4] = e.unix_nanos;
  const uint64_t seq = s.seq.load(std::memory_order_relaxed);
  s.seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);  // the odd seq is seen before the words
  for (size_t i = 0; i < 5; ++i) {
    s.words[i].store(w[i], std::memory_order_relaxed);
  }
  s.seq.store(seq + 2, std::memory_order_release);
}

std::optional<Exemplar> ExemplarSlots::read(size_t series, size_t bucket) const {
  const Slot& s = slots_[series * buckets_ + bucket];
  for (int attempt = 0; attempt < 100; ++attempt) {
    const uint64_t before = s.seq.load(std::memory_order_acquire);
    if (before == 0) {
      return std::nullopt;
    }
    if (before % 2 != 0) {
      continue;
    }
    uint64_t w[5];
    for (size_t i = 0; i < 5; ++i) {
      w[i] = s.words[i].load(std::memory_order_relaxed);
    }
    std::atomic_thread_fence(std::memory_order_acquire);  // the words are read before seq again
    if (s.seq.load(std::memory_order_relaxed) != before) {
      continue;
    }
    Exemplar e;
    std::memcpy(e.trace_id.bytes.data(), &w[0], 16);
    std::memcpy(e.span_id.bytes.data(), &w[2], 8);
    e.duration_nanos = w[3];
    e.unix_nanos = w[4];
    return e;
  }
  return std::nullopt;
}

}  // namespace sidetrace::proxy
