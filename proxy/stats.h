#pragma once
// Per-worker counters: each worker writes only its own (relaxed atomics on its own cache lines; the
// per-request ones by upstream::addOwn, a load and a store, no locked instruction),
// the admin thread sums them when /metrics is scraped. No shared counter on the data path.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "proxy/exemplars.h"

namespace sidetrace::proxy {

inline constexpr size_t kStatusClasses = 5;  // 1xx..5xx
// Upper bounds (seconds) of the request duration histogram buckets.
inline constexpr std::array<double, 12> kDurationBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};

// The bucket of kDurationBuckets a duration falls in (kDurationBuckets.size(): +Inf).
size_t durationBucket(uint64_t nanos);

// Duration histograms over kDurationBuckets, one series per index (a route slot, a cluster).
class DurationHistograms {
 public:
  explicit DurationHistograms(size_t series);
  void observe(size_t series, uint64_t nanos);
  uint64_t bucket(size_t series, size_t bucket) const;  // cumulative count at bucket
  uint64_t count(size_t series) const;
  uint64_t sumNanos(size_t series) const;

 private:
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;    // series * (buckets+1) + bucket (+Inf last)
  std::unique_ptr<std::atomic<uint64_t>[]> sum_nanos_;  // per series
};

class WorkerStats {
 public:
  // `listeners`: fixed for the process (listeners are restart-only).
  WorkerStats(size_t route_slots, size_t clusters, size_t listeners);
  void countRequest(size_t slot, int status, uint64_t duration_ns);
  // An upstream response head arrived `latency_ns` after the attempt started.
  void countUpstreamResponse(size_t cluster, int status, uint64_t latency_ns);
  uint64_t requests(size_t slot, size_t status_class) const;
  uint64_t upstreamResponses(size_t cluster, size_t status_class) const;

  DurationHistograms request_durations;  // per route slot: request head → response end
  // Per route slot and request_durations bucket: the latest sampled request (OpenMetrics
  // exemplars). Null unless the admin listener is on (nobody could read them); set before the
  // worker starts.
  std::unique_ptr<ExemplarSlots> request_exemplars;
  void keepExemplars(size_t route_slots) {
    request_exemplars = std::make_unique<ExemplarSlots>(route_slots, kDurationBuckets.size() + 1);
  }
  DurationHistograms upstream_durations;  // per cluster: attempt start → upstream response head

  std::atomic<int64_t> active_connections{0};
  std::atomic<uint64_t> connections_total{0};
  std::atomic<uint64_t> connections_overflow{0};  // closed at accept: limits.max_connections
  std::atomic<uint64_t> accept_failures{0};       // accept() errors (e.g. out of descriptors)
  std::atomic<uint64_t> bad_requests{0};          // 400/408/431 answered by the codec layer
  std::unique_ptr<std::atomic<uint64_t>[]> connect_failures;   // per cluster
  std::unique_ptr<std::atomic<uint64_t>[]> upstream_timeouts;  // per cluster
  // Per cluster; also counted in connect_failures.
  std::unique_ptr<std::atomic<uint64_t>[]> upstream_tls_handshake_failures;
  std::unique_ptr<std::atomic<uint64_t>[]> tls_handshake_failures;  // per listener
  // Per cluster * kRetryOutcomes: a retry sent; a request that succeeded after retrying; one that
  // still failed when its retries ran out; a retriable failure not retried (budget full).
  enum RetryOutcome : size_t { kRetryAttempted, kRetrySucceeded, kRetryExhausted, kRetryOverflow };
  static constexpr size_t kRetryOutcomes = 4;
  std::unique_ptr<std::atomic<uint64_t>[]> retries;
  // Per cluster * kBreakers: requests refused by a circuit breaker, by which one.
  enum Breaker : size_t { kBreakerConnections, kBreakerPending, kBreakerRequests, kBreakerRetries };
  static constexpr size_t kBreakers = 4;
  std::unique_ptr<std::atomic<uint64_t>[]> breaker_trips;
  std::unique_ptr<std::atomic<uint64_t>[]> ejections;  // per cluster: outlier ejections
  void countEjection(size_t cluster, const std::string& endpoint);
  void countTrip(size_t cluster, Breaker b) {
    breaker_trips[cluster * kBreakers + b].fetch_add(1, std::memory_order_relaxed);
  }
  void countRetry(size_t cluster, RetryOutcome o) {
    retries[cluster * kRetryOutcomes + o].fetch_add(1, std::memory_order_relaxed);
  }

 private:
  std::unique_ptr<std::atomic<uint64_t>[]> requests_;            // slot * 5 + class
  std::unique_ptr<std::atomic<uint64_t>[]> upstream_responses_;  // cluster * 5 + class
};

}  // namespace sidetrace::proxy
