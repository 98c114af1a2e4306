#pragma once
// The monotonic clock as of the kernel's last timer tick (CLOCK_MONOTONIC_COARSE): at most a tick
// (1-4 ms) behind steady_clock::now(), on the same timeline, and read from the vDSO page without
// the TSC read and scaling a precise reading costs (~40 ns in a VM). For idle bookkeeping, where
// milliseconds do not matter but every request pays: when a connection went idle, whether a
// pooled one idled too long. Deadlines and durations keep the precise clock.
#include <time.h>

#include <chrono>

namespace sidetrace::upstream {

inline std::chrono::steady_clock::time_point coarseNow() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
}

}  // namespace sidetrace::upstream
