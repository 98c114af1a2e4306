#pragma once
// The tracing folder's spdlog logger ("tracing"). Internal to tracing/*.cc: spdlog stays out of the
// public tracing headers (it costs seconds per TU). If main registered a logger named "tracing"
// before first use, that one is used; otherwise the default logger's sinks are shared.

#include <spdlog/spdlog.h>

namespace sidetrace::tracing {

spdlog::logger& log();

}  // namespace sidetrace::tracing
