#pragma once
// Server lifecycle: resolve clusters, start the span pipeline, bind and start workers, serve admin,
// and on SIGTERM/SIGINT drain (ARCHITECTURE §1): /ready turns 503, listeners close, idle
// connections close, in-flight requests finish up to drain_timeout, spans are flushed, exit 0.

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"

namespace sidetrace::proxy {

// Runs until a termination signal has been handled. Returns the process exit code
// (0 clean shutdown; 2 failure at start, e.g. port in use).
int runServer(config::ConfigPtr cfg);

// Prometheus text for the given counters (exposed for tests).
class Worker;
struct SharedState;
std::string renderMetrics(const SharedState& shared,
                          const std::vector<std::unique_ptr<Worker>>& workers, bool draining);

}  // namespace sidetrace::proxy
