#pragma once
// Active health checks (clusters[].health_check): the generation's monitor thread (ClusterMonitor)
// probes every endpoint of every cluster that asks for it — a TCP connect, an HTTP GET or a gRPC
// Health/Check (health_probe.h) — and publishes each endpoint's health as a relaxed
// atomic the workers read when they pick (share nothing on the data path: no lock, no message).
// Probes are the proxy's own requests: they never go through the filter chain, so they are never
// traced, logged or counted as traffic.

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <memory>
#include <vector>

#include "config/config.h"

namespace sidetrace::upstream {

struct ResolvedCluster;

// One flag per endpoint of a health-checked cluster (true: in rotation).
class EndpointHealth {
 public:
  explicit EndpointHealth(size_t endpoints);
  bool healthy(size_t i) const { return flags_[i].load(std::memory_order_relaxed); }
  void set(size_t i, bool v) { flags_[i].store(v, std::memory_order_relaxed); }
  size_t size() const { return size_; }

 private:
  std::unique_ptr<std::atomic<bool>[]> flags_;
  size_t size_;
};

// Probes endpoint `i` of `cluster` every health_check.interval until the coroutine's io_context
// stops, flipping its flag on the thresholds; skips probes while DNS no longer returns it. `fresh`:
// the endpoint appeared after start (DNS refresh) and waits out of rotation for its first passing
// probe, which alone puts it in (a new pod is not trusted before it answers).
boost::asio::awaitable<void> watchHealth(const ResolvedCluster& cluster, size_t i, bool fresh);

}  // namespace sidetrace::upstream
