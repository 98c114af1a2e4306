#pragma once
// Per-cluster circuit breakers (Envoy's): limits on what one cluster may have in flight across
// all workers, so an overloaded or failing upstream makes the proxy answer 503 at once instead of
// piling up connections, waiting requests and retries. Counters are atomics shared by the workers
// (one relaxed read-modify-write per acquire and release, only on clusters that set a limit);
// each lives in the generation's ResolvedCluster, so a reload starts them afresh.

#include <atomic>
#include <cstdint>
#include <utility>

#include "config/config.h"

namespace sidetrace::upstream {

// One limit and its count. acquire() takes a unit if that stays within the limit.
class BreakerCounter {
 public:
  explicit BreakerCounter(uint32_t max = config::kUnlimited) : max_(max) {}
  bool limited() const { return max_ != config::kUnlimited; }
  bool acquire() {
    if (!limited()) {
      return true;
    }
    uint32_t n = count_.fetch_add(1, std::memory_order_relaxed);
    if (n >= max_) {
      count_.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
    return true;
  }
  void release() {
    if (limited()) {
      count_.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  uint32_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  uint32_t max_;
  std::atomic<uint32_t> count_{0};
};

// A unit held on a BreakerCounter, released when this goes away (moves hand it on).
class BreakerSlot {
 public:
  BreakerSlot() = default;
  explicit BreakerSlot(BreakerCounter* c) : c_(c) {}
  BreakerSlot(BreakerSlot&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
  BreakerSlot& operator=(BreakerSlot&& o) noexcept {
    if (this != &o) {
      reset();
      c_ = std::exchange(o.c_, nullptr);
    }
    return *this;
  }
  ~BreakerSlot() { reset(); }
  void reset() {
    if (c_ != nullptr) {
      c_->release();
      c_ = nullptr;
    }
  }
  explicit operator bool() const { return c_ != nullptr; }

 private:
  BreakerCounter* c_ = nullptr;
};

struct CircuitBreakers {
  explicit CircuitBreakers(const config::CircuitBreakerConfig& c)
      : connections(c.max_connections),
        pending(c.max_pending_requests),
        requests(c.max_requests),
        retries(c.max_retries) {}
  // A slot on `c`, or an empty one (tripped) when the limit is reached.
  static BreakerSlot take(BreakerCounter& c) {
    return c.acquire() ? BreakerSlot(&c) : BreakerSlot();
  }
  BreakerCounter connections;  // upstream connections open (idle ones included)
  BreakerCounter pending;      // requests waiting for a new connection to be made
  BreakerCounter requests;     // requests in flight to the cluster
  BreakerCounter retries;      // retries in flight
};

}  // namespace sidetrace::upstream
