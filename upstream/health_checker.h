#pragma once
// Active health checks (clusters[].health_check): one checker thread per config generation
// probes every endpoint of every cluster that asks for it — a TCP connect, or an HTTP/1.1 GET of
// the path whose status must be expected — and publishes each endpoint's health as a relaxed
// atomic the workers read when they pick (share nothing on the data path: no lock, no message).
// Probes are the proxy's own requests: they never go through the filter chain, so they are never
// traced, logged or counted as traffic.

#include <atomic>
#include <memory>
#include <thread>
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
  bool anyHealthy() const;

 private:
  std::unique_ptr<std::atomic<bool>[]> flags_;
  size_t size_;
};

class HealthChecker {
 public:
  // Starts probing the clusters that have a health_check (their `health` must be set); the
  // clusters must outlive this object.
  explicit HealthChecker(const std::vector<ResolvedCluster>& clusters);
  ~HealthChecker();  // stops the probes and joins the thread
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

}  // namespace sidetrace::upstream
