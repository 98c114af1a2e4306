#pragma once
// Passive outlier detection (clusters[].outlier_detection; by default, refused connects only:
// config::kDefaultOutlierDetection), one per cluster and generation, shared by every worker: an
// endpoint's consecutive failures add up whichever worker saw them, so a bad endpoint is ejected
// after consecutive_5xx failures (or consecutive_connect_failures refused connects) in a row, not
// that many per worker, and an ejection takes it out of every worker's rotation at once.
//
// Lock-free, and cheap on the data path: a success writes nothing unless the endpoint had failures
// pending (a relaxed load first keeps the line shared between cores); failures and ejections are
// rare and use atomic read-modify-writes. An ejection ends lazily: the first pick that finds its
// time served clears it (one compare-exchange wins) and gives its slot under the cap back.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "config/config.h"

namespace sidetrace::upstream {

class OutlierDetector {
 public:
  using Clock = std::chrono::steady_clock;

  // Room for `capacity` endpoints (the cluster's endpoint table's).
  OutlierDetector(const config::OutlierDetection& cfg, size_t capacity);

  // How one attempt on an endpoint ended. Failure: a 5xx response, connect failure, reset or
  // per-try timeout; ConnectRefused: a failure whose connect was refused (it counts towards
  // consecutive_5xx too).
  enum class Outcome { Success, Failure, ConnectRefused };
  // Endpoint i's attempt ended so; `endpoints`: how many the cluster has now, for
  // max_ejection_percent. True when this report ejected it.
  bool report(size_t i, Outcome outcome, size_t endpoints, Clock::time_point now);
  // The same at the current time, which a success (every request's case) never reads.
  bool report(size_t i, Outcome outcome, size_t endpoints) {
    return report(i, outcome, endpoints,
                  outcome == Outcome::Success ? Clock::time_point() : Clock::now());
  }
  // Whether endpoint i is out now; ends an ejection whose time is up.
  bool ejected(size_t i, Clock::time_point now);
  // The same at the current time, read only while endpoint i is ejected.
  bool ejected(size_t i) {
    return endpoints_[i].until.load(std::memory_order_relaxed) != 0 && ejected(i, Clock::now());
  }
  Clock::time_point ejectedUntil(size_t i) const;  // meaningful while ejected
  size_t ejectedCount() const { return ejected_count_.load(std::memory_order_relaxed); }
  // Forgets endpoint i's ejection and failures (it left DNS, or a test wants it back).
  void clear(size_t i);
  // Takes over endpoint j's ejection (and its count of ejections) from `from`, an earlier
  // generation's detector for the same endpoint i: a reload must not put a bad endpoint back.
  // Before this detector is in use.
  void inherit(size_t i, const OutlierDetector& from, size_t j);

 private:
  struct alignas(64) PerEndpoint {  // one cache line each: workers write neighbours' freely
    std::atomic<uint32_t> consecutive_failures{0};
    std::atomic<uint32_t> consecutive_refused{0};  // connects refused in a row
    std::atomic<uint32_t> times_ejected{0};
    std::atomic<int64_t> until{0};  // ejected until (steady clock, ns since epoch); 0: not ejected
  };
  bool endEjection(PerEndpoint& e, int64_t until);
  bool eject(PerEndpoint& e, size_t endpoints, Clock::time_point now);

  config::OutlierDetection cfg_;
  std::unique_ptr<PerEndpoint[]> endpoints_;
  std::atomic<size_t> ejected_count_{0};
};

}  // namespace sidetrace::upstream
