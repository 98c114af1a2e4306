#include "tracing/log.h"

namespace sidetrace::tracing {

spdlog::logger& log() {
  static const std::shared_ptr<spdlog::logger> logger = [] {
    if (auto existing = spdlog::get("tracing")) {
      return existing;
    }
    return spdlog::default_logger()->clone("tracing");
  }();
  return *logger;
}

}  // namespace sidetrace::tracing
