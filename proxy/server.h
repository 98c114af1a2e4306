#pragma once
// Server lifecycle: resolve clusters, start the span pipeline, bind and start workers, serve admin,
// reload on SIGHUP / POST /reload, and on SIGTERM/SIGINT drain (ARCHITECTURE §1): /ready turns 503,
// listeners close, idle connections close, in-flight requests finish up to drain_timeout, spans are
// flushed, exit 0.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"

namespace sidetrace::tracing {
struct PipelineStats;
}

namespace sidetrace::proxy {

// Re-reads the config from the same sources as at start (file, env, flags) for a reload; throws
// (config::ConfigError) with a message naming the key and line when the new config is invalid.
using ConfigLoader = std::function<config::Config()>;

// Runs until a termination signal has been handled. Returns the process exit code
// (0 clean shutdown; 1 bad access log path; 2 failure at start, e.g. port in use, or a TLS
// certificate, key or CA file that cannot be read or does not match). SIGHUP and
// POST /reload re-read the config with `load` and apply routes, clusters, ignore rules, sampler,
// propagators, exporter and batch settings, limits and log level to new requests; requests in
// flight finish on the config they started with.
// `ports_file` ("" = none): once every listener and the admin listener are bound, and before
// any is served, this file is written with one line per bound address — "listener ADDR NAME" per
// listener (NAME is the rest of the line, '\' and newline escaped as \\ and \n), then
// "admin ADDR" — so a configured port 0 can be learned (README, CLI).
int runServer(config::ConfigPtr cfg, ConfigLoader load, const std::string& ports_file = "");

// Prometheus text for the given counters (exposed for tests). `exemplars`: the request duration
// buckets carry OpenMetrics exemplars (then the caller converts the text with toOpenMetrics).
class Worker;
struct Generation;
std::string renderMetrics(const Generation& gen, const tracing::PipelineStats& pipeline,
                          const std::vector<std::unique_ptr<Worker>>& workers, bool draining,
                          uint64_t access_log_dropped, bool exemplars = false);

}  // namespace sidetrace::proxy
