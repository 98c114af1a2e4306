#include "upstream/outlier_detector.h"

#include <algorithm>

namespace sidetrace::upstream {

namespace {

int64_t toNanos(OutlierDetector::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace

OutlierDetector::OutlierDetector(const config::OutlierDetection& cfg, size_t capacity)
    : cfg_(cfg), endpoints_(new PerEndpoint[std::max<size_t>(capacity, 1)]) {}

bool OutlierDetector::endEjection(PerEndpoint& e, int64_t until) {
  if (until == 0 || !e.until.compare_exchange_strong(until, 0, std::memory_order_relaxed)) {
    return false;  // not ejected, or another thread ended (or renewed) it first
  }
  e.consecutive_failures.store(0, std::memory_order_relaxed);  // a clean slate on return
  e.consecutive_refused.store(0, std::memory_order_relaxed);
  ejected_count_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

bool OutlierDetector::ejected(size_t i, Clock::time_point now) {
  PerEndpoint& e = endpoints_[i];
  const int64_t until = e.until.load(std::memory_order_relaxed);
  if (until == 0) {
    return false;
  }
  if (toNanos(now) < until) {
    return true;
  }
  endEjection(e, until);
  return false;
}

OutlierDetector::Clock::time_point OutlierDetector::ejectedUntil(size_t i) const {
  return Clock::time_point(std::chrono::nanoseconds(endpoints_[i].until.load()));
}

void OutlierDetector::clear(size_t i) {
  PerEndpoint& e = endpoints_[i];
  endEjection(e, e.until.load(std::memory_order_relaxed));
  e.consecutive_failures.store(0, std::memory_order_relaxed);
  e.consecutive_refused.store(0, std::memory_order_relaxed);
}

void OutlierDetector::inherit(size_t i, const OutlierDetector& from, size_t j) {
  const PerEndpoint& src = from.endpoints_[j];
  PerEndpoint& dst = endpoints_[i];
  dst.times_ejected.store(src.times_ejected.load(std::memory_order_relaxed),
                          std::memory_order_relaxed);
  const int64_t until = src.until.load(std::memory_order_relaxed);
  if (until != 0 && dst.until.exchange(until, std::memory_order_relaxed) == 0) {
    ejected_count_.fetch_add(1, std::memory_order_relaxed);
  }
}

namespace {

// Adds one to a run of failures; true when the run reaches `threshold` (0: never).
bool reaches(std::atomic<uint32_t>& run, uint32_t threshold) {
  return threshold != 0 && run.fetch_add(1, std::memory_order_relaxed) + 1 >= threshold;
}

// Ends a run (a relaxed load first: nothing is written while there is none).
void resetRun(std::atomic<uint32_t>& run) {
  if (run.load(std::memory_order_relaxed) != 0) {
    run.store(0, std::memory_order_relaxed);
  }
}

}  // namespace

bool OutlierDetector::report(size_t i, Outcome outcome, size_t endpoints, Clock::time_point now) {
  PerEndpoint& e = endpoints_[i];
  if (outcome == Outcome::Success) {
    resetRun(e.consecutive_failures);
    resetRun(e.consecutive_refused);
    return false;
  }
  bool out = reaches(e.consecutive_failures, cfg_.consecutive_5xx);
  if (outcome == Outcome::ConnectRefused) {
    out = reaches(e.consecutive_refused, cfg_.consecutive_connect_failures) || out;
  } else {
    resetRun(e.consecutive_refused);  // it did not refuse the connection this time
  }
  return out && !ejected(i, now) && eject(e, endpoints, now);
}

bool OutlierDetector::eject(PerEndpoint& e, size_t endpoints, Clock::time_point now) {
  // Take a slot under the cap first, so that concurrent ejections cannot overshoot it.
  const size_t cap = std::max<size_t>(1, endpoints * cfg_.max_ejection_percent / 100);
  size_t out = ejected_count_.load(std::memory_order_relaxed);
  do {
    if (out >= cap) {
      return false;  // enough are out already: keep serving from this one
    }
  } while (!ejected_count_.compare_exchange_weak(out, out + 1, std::memory_order_relaxed));
  const uint32_t times = e.times_ejected.fetch_add(1, std::memory_order_relaxed) + 1;
  auto span = std::min<config::Duration>(cfg_.base_ejection_time * times, cfg_.max_ejection_time);
  int64_t expected = 0;
  if (!e.until.compare_exchange_strong(expected, toNanos(now + span), std::memory_order_relaxed)) {
    e.times_ejected.fetch_sub(1, std::memory_order_relaxed);
    ejected_count_.fetch_sub(1, std::memory_order_relaxed);
    return false;  // another worker ejected it just now
  }
  e.consecutive_failures.store(0, std::memory_order_relaxed);
  e.consecutive_refused.store(0, std::memory_order_relaxed);
  return true;
}

}  // namespace sidetrace::upstream
