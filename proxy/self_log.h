#pragma once
// The proxy's own logs (not the access log). Every spdlog logger of the process writes to one
// stderr sink in the format of the config key `log_format`:
//   json  one object per line, for log pipelines (Kubernetes, Loki, Fluent Bit):
//         {"time":"2026-11-23T10:00:00.123Z","level":"info","logger":"sidetrace",
//          "thread":"st-worker-0","msg":"listener 'ingress' on 0.0.0.0:15001 (2 workers)"}
//   text  spdlog's human-readable default, "[2026-11-23 10:00:00.123] [sidetrace] [info] ...".
// Nothing on the data path logs above debug (STYLE.md 15), so neither format costs a request.

#include <memory>
#include <string>

namespace spdlog {
class formatter;
}

namespace sidetrace::proxy {

// The json formatter: time in UTC with milliseconds, level as --log-level spells it (trace, debug,
// info, warn, error, critical), the logger's name ("sidetrace", "tracing"), the name of the
// logging thread (pthread_setname_np; the sinks are synchronous, so that is the thread that
// logged) and the message as a JSON string (quotes, backslashes and control characters escaped,
// invalid UTF-8 repaired), so that a message with a newline is still one line.
std::unique_ptr<spdlog::formatter> makeJsonLogFormatter();

// Called by main once the config is built, before anything else logs: replaces the default
// logger ("sidetrace") and registers "tracing" (tracing/log.h) on the same stderr sink, both at
// `level` (a --log-level value) and in `format` (json | text). gRPC's own log lines go to
// "tracing" too (tracing/grpc_log.h).
void setupSelfLog(const std::string& level, const std::string& format);

// A new level for those two loggers only (live reload of log_level). Not spdlog::set_level, which
// would also change the access log's logger, registered at info.
void setSelfLogLevel(const std::string& level);

}  // namespace sidetrace::proxy
