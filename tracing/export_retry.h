#pragma once
// What the OTLP exporters share about failing: one back-off schedule and one log rate limit, so
// gRPC and HTTP behave the same against a struggling collector. Internal to tracing/*.cc (pulls in
// spdlog through log.h).

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string_view>
#include <utility>

#include "tracing/log.h"

namespace sidetrace::tracing {

// Exponential back-off: 100 ms doubling to at most 5 s, each wait scaled by a random factor in
// [0.8, 1.2]. Jitter de-synchronises many proxies retrying against one recovering collector.
class ExportBackoff {
 public:
  static constexpr std::chrono::milliseconds kInitial{100};
  static constexpr std::chrono::milliseconds kMax{5000};

  explicit ExportBackoff(std::mt19937& rng) : rng_(rng) {}
  // The next wait (jittered); doubles the base for the one after.
  std::chrono::milliseconds next() {
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(base_ * jitter(rng_));
    base_ = std::min(base_ * 2, kMax);
    return wait;
  }

 private:
  std::mt19937& rng_;
  std::chrono::milliseconds base_ = kInitial;
};

// At most one warning per 10 s: a dead collector must not flood the proxy's log.
class WarnLimiter {
 public:
  template <typename... Args>
  void warn(fmt::format_string<Args...> format, Args&&... args) {
    auto now = std::chrono::steady_clock::now();
    if (last_ != std::chrono::steady_clock::time_point{} &&
        now - last_ < std::chrono::seconds(10)) {
      ++suppressed_;
      return;
    }
    last_ = now;
    log().warn(format, std::forward<Args>(args)...);
    if (suppressed_ > 0) {
      log().warn("otlp exporter: {} similar message(s) suppressed", suppressed_);
      suppressed_ = 0;
    }
  }

 private:
  std::chrono::steady_clock::time_point last_{};
  uint64_t suppressed_ = 0;
};

// An HTTP Retry-After value (RFC 9110 §10.2.3): delay-seconds, or an IMF-fixdate
// ("Sun, 06 Nov 1994 08:49:37 GMT") taken relative to `now`. nullopt when unparseable; a date in
// the past is zero.
std::optional<std::chrono::milliseconds> parseRetryAfter(std::string_view value,
                                                         std::chrono::system_clock::time_point now);

}  // namespace sidetrace::tracing
