#include "proxy/stats.h"

namespace sidetrace::proxy {

RouteIndex::RouteIndex(const config::Config& cfg) {
  size_t next = 0;
  for (const auto& l : cfg.listeners) {
    offsets.push_back(next);
    next += l.routes.size() + 1;
  }
  offsets.push_back(next);
}

namespace {
std::unique_ptr<std::atomic<uint64_t>[]> zeros(size_t n) {
  auto p = std::make_unique<std::atomic<uint64_t>[]>(n);
  for (size_t i = 0; i < n; ++i) {
    p[i].store(0, std::memory_order_relaxed);
  }
  return p;
} constexpr size_t kBucketSlots = kDurationBuckets.size() + 1;
}  // namespace

WorkerStats::WorkerStats(size_t route_slots, size_t clusters)
    : connect_failures(zeros(clusters)),
      upstream_timeouts(zeros(clusters)),
      slots_(route_slots),
      requests_(zeros(route_slots * kStatusClasses)),
      buckets_(zeros(route_slots * kBucketSlots)),
      sum_nanos_(zeros(route_slots)) {}

void WorkerStats::countRequest(size_t slot, int status, uint64_t duration_ns) {
  size_t cls = (status >= 100 && status < 600) ? static_cast<size_t>(status / 100 - 1) : 4;
  requests_[slot * kStatusClasses + cls].fetch_add(1, std::memory_order_relaxed);
  double secs = static_cast<double>(duration_ns) / 1e9;
  size_t b = 0;
  while (b < kDurationBuckets.size() && secs > kDurationBuckets[b]) {
    ++b;
  }
  buckets_[slot * kBucketSlots + b].fetch_add(1, std::memory_order_relaxed);
  sum_nanos_[slot].fetch_add(duration_ns, std::memory_order_relaxed);
}

uint64_t WorkerStats::requests(size_t slot, size_t status_class) const {
  return requests_[slot * kStatusClasses + status_class].load(std::memory_order_relaxed);
}

uint64_t WorkerStats::durationBucket(size_t slot, size_t bucket) const {
  uint64_t n = 0;
  for (size_t b = 0; b <= bucket && b < kBucketSlots; ++b) {
    n += buckets_[slot * kBucketSlots + b].load(std::memory_order_relaxed);
  }
  return n;
}

uint64_t WorkerStats::durationSumNanos(size_t slot) const {
  return sum_nanos_[slot].load(std::memory_order_relaxed);
}

uint64_t WorkerStats::durationCount(size_t slot) const {
  return durationBucket(slot, kBucketSlots - 1);
}

}  // namespace sidetrace::proxy
