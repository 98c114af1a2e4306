#include "proxy/stats.h"

#include <spdlog/spdlog.h>

#include "upstream/own_counter.h"

namespace sidetrace::proxy {

namespace {
std::unique_ptr<std::atomic<uint64_t>[]> zeros(size_t n) {
  auto p = std::make_unique<std::atomic<uint64_t>[]>(n);
  for (size_t i = 0; i < n; ++i) {
    p[i].store(0, std::memory_order_relaxed);
  }
  return p;
} constexpr size_t kBucketSlots = kDurationBuckets.size() + 1;
}  // namespace

DurationHistograms::DurationHistograms(size_t series)
    : buckets_(zeros(series * kBucketSlots)), sum_nanos_(zeros(series)) {}

size_t durationBucket(uint64_t nanos) {
  double secs = static_cast<double>(nanos) / 1e9;
  size_t b = 0;
  while (b < kDurationBuckets.size() && secs > kDurationBuckets[b]) {
    ++b;
  }
  return b;
}

void DurationHistograms::observe(size_t series, uint64_t nanos) {
  const size_t b = durationBucket(nanos);
  upstream::addOwn(buckets_[series * kBucketSlots + b]);
  upstream::addOwn(sum_nanos_[series], nanos);
}

uint64_t DurationHistograms::bucket(size_t series, size_t bucket) const {
  uint64_t n = 0;
  for (size_t b = 0; b <= bucket && b < kBucketSlots; ++b) {
    n += buckets_[series * kBucketSlots + b].load(std::memory_order_relaxed);
  }
  return n;
}

uint64_t DurationHistograms::count(size_t series) const {
  return bucket(series, kBucketSlots - 1);
}

uint64_t DurationHistograms::sumNanos(size_t series) const {
  return sum_nanos_[series].load(std::memory_order_relaxed);
}

namespace {
size_t statusClass(int status) {
  return (status >= 100 && status < 600) ? static_cast<size_t>(status / 100 - 1) : 4;
}
}  // namespace

WorkerStats::WorkerStats(size_t route_slots, size_t clusters, size_t listeners)
    : request_durations(route_slots),
      upstream_durations(clusters),
      connect_failures(zeros(clusters)),
      upstream_timeouts(zeros(clusters)),
      upstream_tls_handshake_failures(zeros(clusters)),
      tls_handshake_failures(zeros(listeners)),
      retries(zeros(clusters * kRetryOutcomes)),
      breaker_trips(zeros(clusters * kBreakers)),
      ejections(zeros(clusters)),
      requests_(zeros(route_slots * kStatusClasses)),
      upstream_responses_(zeros(clusters * kStatusClasses)) {}

void WorkerStats::countRequest(size_t slot, int status, uint64_t duration_ns) {
  upstream::addOwn(requests_[slot * kStatusClasses + statusClass(status)]);
  request_durations.observe(slot, duration_ns);
}

void WorkerStats::countUpstreamResponse(size_t cluster, int status, uint64_t latency_ns) {
  upstream::addOwn(upstream_responses_[cluster * kStatusClasses + statusClass(status)]);
  upstream_durations.observe(cluster, latency_ns);
}

uint64_t WorkerStats::requests(size_t slot, size_t status_class) const {
  return requests_[slot * kStatusClasses + status_class].load(std::memory_order_relaxed);
}

uint64_t WorkerStats::upstreamResponses(size_t cluster, size_t status_class) const {
  return upstream_responses_[cluster * kStatusClasses + status_class].load(
      std::memory_order_relaxed);
}

void WorkerStats::countEjection(size_t cluster, const std::string& endpoint) {
  ejections[cluster].fetch_add(1, std::memory_order_relaxed);
  // Rare and worth knowing about: an endpoint stopped getting this worker's traffic.
  spdlog::info("outlier detection: ejected {} (consecutive failures)", endpoint);
}

}  // namespace sidetrace::proxy
