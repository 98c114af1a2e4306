#pragma once
// The access log: one line per finished request, JSON lines or an nginx-like text line, written by
// spdlog's asynchronous logger, so a worker only formats the line and enqueues it. The lines
// waiting for the log thread are bounded by count and by bytes (a line carries the path and user
// agent, up to the header limit each); when either is reached the new line is dropped and counted
// rather than a worker blocked. Every line carries trace_id,
// span_id and sampled, so a log line leads to its trace (empty for requests that are not traced,
// e.g. ignored health checks). reopen() (SIGUSR1) reopens the file for logrotate.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "config/config.h"
#include "filters/stream.h"

namespace spdlog {
class logger;
namespace details {
class thread_pool;
}  // namespace details
}  // namespace spdlog

namespace sidetrace::proxy {

class ReopenableFileSink;

// What a line says about one request, besides the Stream itself.
struct AccessLogTimes {
  uint64_t start_unix_nanos = 0;  // when the request head was complete
  uint64_t duration_nanos = 0;    // until the response was written (or the exchange failed)
};

std::string formatAccessLogJson(const filters::Stream& s, std::string_view listener,
                                const AccessLogTimes& t);
std::string formatAccessLogText(const filters::Stream& s, std::string_view listener,
                                const AccessLogTimes& t);

class AccessLog {
 public:
  // nullptr when cfg.path is empty (the access log is off). Throws std::runtime_error when the
  // file cannot be opened.
  static std::unique_ptr<AccessLog> open(const config::AccessLogConfig& cfg);
  ~AccessLog();  // writes what is queued
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  // Any worker thread.
  void log(const filters::Stream& s, std::string_view listener, const AccessLogTimes& t);
  // Reopens the file (same path): after logrotate moved it away. No-op for stdout.
  void reopen();
  // Lines dropped so far because the queue was full (sidetrace_access_log_dropped_total).
  uint64_t dropped() const;

  struct Queue;  // what is waiting for the log thread: shared with the sink that drains it

 private:
  AccessLog() = default;
  bool json_ = true;
  std::shared_ptr<Queue> queue_;
  std::shared_ptr<spdlog::details::thread_pool> pool_;
  std::shared_ptr<ReopenableFileSink> file_sink_;  // nullptr for stdout
  std::shared_ptr<spdlog::logger> logger_;
};

}  // namespace sidetrace::proxy
