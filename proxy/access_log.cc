#include "proxy/access_log.h"

#include <pthread.h>
#include <spdlog/async.h>
#include <spdlog/async_logger.h>
#include <spdlog/details/file_helper.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <ctime>
#include <iterator>
#include <mutex>
#include <stdexcept>

#include <fmt/format.h>

#include "filters/tracing_filter.h"
#include "tracing/utf8.h"

namespace sidetrace::proxy {

// A file sink whose file can be reopened under the sink's own lock (spdlog's basic_file_sink
// cannot): logrotate renames the file, SIGUSR1 makes the next line go to a fresh one.
class ReopenableFileSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit ReopenableFileSink(const std::string& path) { file_.open(path, false); }
  void reopen() {
    std::lock_guard lock(mutex_);
    file_.reopen(false);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    file_.write(line);
  }
  void flush_() override { file_.flush(); }

 private:
  spdlog::details::file_helper file_;
};

namespace {
// Lines waiting for the log thread; beyond this new lines are dropped (a worker never blocks).
constexpr size_t kQueueLines = 65536;
}  // namespace

// Counts lines from the worker that formats them until the sink has written them. Admission keeps
// the count within spdlog's queue capacity, so spdlog never drops a line behind our back (and
// the counts stay exact).
struct AccessLog::Queue {
  size_t max_bytes = 0;
  std::atomic<size_t> lines{0};
  std::atomic<size_t> bytes{0};
  std::atomic<uint64_t> dropped{0};

  bool admit(size_t n) {
    const size_t queued_lines = lines.fetch_add(1, std::memory_order_relaxed);
    const size_t queued_bytes = bytes.fetch_add(n, std::memory_order_relaxed);
    if (queued_lines < kQueueLines && queued_bytes + n <= max_bytes) {
      return true;
    }
    release(n);
    dropped.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  void release(size_t n) {
    lines.fetch_sub(1, std::memory_order_relaxed);
    bytes.fetch_sub(n, std::memory_order_relaxed);
  }
};

namespace {

// Writes through to the real sink on the log thread, then releases the line from the queue.
class QueueReleasingSink final : public spdlog::sinks::sink {
 public:
  QueueReleasingSink(spdlog::sink_ptr sink, std::shared_ptr<AccessLog::Queue> queue)
      : sink_(std::move(sink)), queue_(std::move(queue)) {}
  void log(const spdlog::details::log_msg& msg) override {
    sink_->log(msg);
    queue_->release(msg.payload.size());
  }
  void flush() override { sink_->flush(); }
  void set_pattern(const std::string& pattern) override { sink_->set_pattern(pattern); }
  void set_formatter(std::unique_ptr<spdlog::formatter> formatter) override {
    sink_->set_formatter(std::move(formatter));
  }

 private:
  spdlog::sink_ptr sink_;
  std::shared_ptr<AccessLog::Queue> queue_;
};

struct Fields {
  std::string trace_id, span_id;  // empty when the request is not traced
  bool sampled = false;
  std::string path;  // with the query's values redacted
  std::string upstream;
};

Fields fields(const filters::Stream& s) {
  Fields f;
  // The egress listener makes no SERVER span: its line leads to the CLIENT span.
  const auto& ctx =
      s.server_span.context().valid() ? s.server_span.context() : s.client_span.context();
  if (s.traced && ctx.valid()) {
    f.trace_id = ctx.trace_id.hex();
    f.span_id = ctx.span_id.hex();
    f.sampled = ctx.sampled();
  }
  f.path = std::string(s.request.path());
  if (!s.request.query().empty()) {
    f.path += '?';
    f.path += filters::redactQuery(s.request.query());
  }
  if (s.upstream_attempted && !s.upstream.endpoint_address.empty()) {
    f.upstream = fmt::format("{}:{}", s.upstream.endpoint_address, s.upstream.endpoint_port);
  }
  return f;
}

std::tm utc(uint64_t unix_nanos) {
  std::time_t secs = static_cast<std::time_t>(unix_nanos / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return tm;
}

double millis(uint64_t nanos) {
  return static_cast<double>(nanos) / 1e6;
}

// Text-format fields are space-separated and quoted: escape what would break the line, as nginx
// does (\xHH).
void appendEscaped(std::string& out, std::string_view v) {
  for (char c : v) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\' || u < 0x20 || u >= 0x7f) {
      fmt::format_to(std::back_inserter(out), "\\x{:02X}", u);
    } else {
      out += c;
    }
  }
}

std::string_view orDash(std::string_view v) {
  return v.empty() ? std::string_view("-") : v;
}

}  // namespace

std::string formatAccessLogJson(const filters::Stream& s, std::string_view listener,
                                const AccessLogTimes& t) {
  Fields f = fields(s);
  std::tm tm = utc(t.start_unix_nanos);
  std::string out;
  out.reserve(512);
  auto key = [&out](std::string_view k) {
    out += out.empty() ? "{\"" : ",\"";
    out += k;
    out += "\":";
  };
  auto str = [&](std::string_view k, std::string_view v) {
    key(k);
    tracing::appendJsonString(out, v);
  };
  key("time");
  fmt::format_to(std::back_inserter(out), "\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z\"",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (t.start_unix_nanos / 1'000'000) % 1000);
  str("trace_id", f.trace_id);
  str("span_id", f.span_id);
  key("sampled");
  out += f.sampled ? "true" : "false";
  str("listener", listener);
  str("route", s.route != nullptr ? std::string_view(s.route->name) : "");
  str("method", s.request.method);
  str("path", f.path);
  str("protocol", s.http2 ? "HTTP/2" : s.request.version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1");
  key("status");
  fmt::format_to(std::back_inserter(out), "{}", s.response_status);
  key("duration_ms");
  fmt::format_to(std::back_inserter(out), "{:.3f}", millis(t.duration_nanos));
  str("upstream", f.upstream);
  key("upstream_status");
  fmt::format_to(std::back_inserter(out), "{}", s.upstream.status);
  key("upstream_ms");
  if (s.upstream_latency_nanos != 0) {
    fmt::format_to(std::back_inserter(out), "{:.3f}", millis(s.upstream_latency_nanos));
  } else {
    out += "null";
  }
  key("bytes_in");
  fmt::format_to(std::back_inserter(out), "{}", s.request_body_bytes);
  key("bytes_out");
  fmt::format_to(std::back_inserter(out), "{}", s.response_body_bytes);
  str("client", s.peer_address);
  str("user_agent", s.request.headers.get("user-agent").value_or(""));
  str("request_id", s.request.headers.get("x-request-id").value_or(""));
  str("error", s.error_type);
  out += '}';
  return out;
}

std::string formatAccessLogText(const filters::Stream& s, std::string_view listener,
                                const AccessLogTimes& t) {
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  Fields f = fields(s);
  std::tm tm = utc(t.start_unix_nanos);
  std::string out;
  out.reserve(384);
  // nginx's "combined" layout first, so existing tooling reads it; then key=value extras.
  fmt::format_to(std::back_inserter(out), "{} - - [{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000] \"",
                 orDash(s.peer_address), tm.tm_mday, kMonths[tm.tm_mon % 12], tm.tm_year + 1900,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
  appendEscaped(out, s.request.method);
  out += ' ';
  appendEscaped(out, f.path);
  fmt::format_to(std::back_inserter(out), " {}\" {} {} \"",
                 s.http2                        ? "HTTP/2.0"
                 : s.request.version_minor == 0 ? "HTTP/1.0"
                                                : "HTTP/1.1",
                 s.response_status, s.response_body_bytes);
  // A Referer is a URL the client visited: its query may hold secrets as the request's does.
  if (auto referer = s.request.headers.get("referer")) {
    appendEscaped(out, filters::redactUrlQuery(*referer));
  } else {
    out += '-';
  }
  out += "\" \"";
  appendEscaped(out, s.request.headers.get("user-agent").value_or("-"));
  fmt::format_to(std::back_inserter(out),
                 "\" {:.3f} listener={} route={} upstream={} upstream_status={} bytes_in={} "
                 "trace_id={} span_id={} sampled={}",
                 millis(t.duration_nanos) / 1e3, orDash(listener),
                 orDash(s.route != nullptr ? std::string_view(s.route->name) : ""),
                 orDash(f.upstream), s.upstream.status, s.request_body_bytes, orDash(f.trace_id),
                 orDash(f.span_id), f.sampled ? 1 : 0);
  if (!s.error_type.empty()) {
    out += " error=";
    appendEscaped(out, s.error_type);
  }
  return out;
}

std::unique_ptr<AccessLog> AccessLog::open(const config::AccessLogConfig& cfg) {
  if (cfg.path.empty()) {
    return nullptr;
  }
  std::unique_ptr<AccessLog> log(new AccessLog());
  log->json_ = cfg.format != "text";
  log->pool_ = std::make_shared<spdlog::details::thread_pool>(
      kQueueLines, 1, [] { pthread_setname_np(pthread_self(), "st-accesslog"); });
  spdlog::sink_ptr sink;
  if (cfg.path == "stdout") {
    sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  } else {
    try {
      log->file_sink_ = std::make_shared<ReopenableFileSink>(cfg.path);
    } catch (const spdlog::spdlog_ex& e) {
      throw std::runtime_error("cannot open access log " + cfg.path + ": " + e.what());
    }
    sink = log->file_sink_;
  }
  log->queue_ = std::make_shared<Queue>();
  log->queue_->max_bytes = cfg.max_queue_bytes;
  sink = std::make_shared<QueueReleasingSink>(std::move(sink), log->queue_);
  log->logger_ = std::make_shared<spdlog::async_logger>(
      "access", std::move(sink), log->pool_, spdlog::async_overflow_policy::overrun_oldest);
  log->logger_->set_pattern("%v");
  log->logger_->set_level(spdlog::level::info);
  // Lines reach the file within a second even when traffic stops (spdlog's periodic flusher
  // flushes registered loggers; a flush per line would cost a syscall per request).
  spdlog::register_logger(log->logger_);
  spdlog::flush_every(std::chrono::seconds(1));
  return log;
}

AccessLog::~AccessLog() {
  if (logger_) {
    logger_->flush();
    spdlog::drop(logger_->name());
  }
}

void AccessLog::log(const filters::Stream& s, std::string_view listener, const AccessLogTimes& t) {
  std::string line =
      json_ ? formatAccessLogJson(s, listener, t) : formatAccessLogText(s, listener, t);
  if (queue_->admit(line.size())) {
    logger_->info(line);
  }
}

uint64_t AccessLog::dropped() const {
  return queue_->dropped.load(std::memory_order_relaxed);
}

void AccessLog::reopen() {
  if (file_sink_) {
    logger_->flush();
    file_sink_->reopen();
  }
}

}  // namespace sidetrace::proxy
