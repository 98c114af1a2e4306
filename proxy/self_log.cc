#include "proxy/self_log.h"

#include <pthread.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <ctime>

#include "tracing/grpc_log.h"
#include "tracing/utf8.h"

namespace sidetrace::proxy {

namespace {

std::string_view levelName(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
      return "trace";
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warn";
    case spdlog::level::err:
      return "error";
    case spdlog::level::critical:
      return "critical";
    default:
      return "off";
  }
}

// "2026-11-23T10:00:00.123Z" (RFC 3339, UTC).
void appendTime(std::chrono::system_clock::time_point t, std::string& out) {
  using namespace std::chrono;
  const auto secs = floor<seconds>(t);
  const auto millis = duration_cast<milliseconds>(t - secs).count();
  const std::time_t tt = system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                        static_cast<int>(millis));
  out.append(buf, n > 0 ? static_cast<size_t>(n) : 0);
}

class JsonLogFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string line;
    line.reserve(128 + msg.payload.size());
    line += "{\"time\":\"";
    appendTime(msg.time, line);
    line += "\",\"level\":\"";
    line += levelName(msg.level);
    line += "\",\"logger\":";
    tracing::appendJsonString(line,
                              std::string_view(msg.logger_name.data(), msg.logger_name.size()));
    char thread[16] = {};  // the kernel's limit, NUL included
    if (pthread_getname_np(pthread_self(), thread, sizeof thread) != 0) {
      thread[0] = '\0';
    }
    line += ",\"thread\":";
    tracing::appendJsonString(line, thread);
    line += ",\"msg\":";
    tracing::appendJsonString(line, std::string_view(msg.payload.data(), msg.payload.size()));
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonLogFormatter>();
  }
};

}  // namespace

std::unique_ptr<spdlog::formatter> makeJsonLogFormatter() {
  return std::make_unique<JsonLogFormatter>();
}

void setupSelfLog(const std::string& level, const std::string& format) {
  spdlog::sink_ptr sink;
  if (format == "text") {
    sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();  // colours only on a terminal
  } else {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    sink->set_formatter(makeJsonLogFormatter());
  }
  const auto lvl = spdlog::level::from_str(level);
  auto main_logger = std::make_shared<spdlog::logger>("sidetrace", sink);
  auto tracing_logger = std::make_shared<spdlog::logger>("tracing", sink);
  for (auto* l : {main_logger.get(), tracing_logger.get()}) {
    l->set_level(lvl);
  }
  spdlog::set_default_logger(std::move(main_logger));
  spdlog::drop("tracing");
  spdlog::register_logger(std::move(tracing_logger));
  tracing::routeGrpcLogsToSpdlog();
}

void setSelfLogLevel(const std::string& level) {
  const auto lvl = spdlog::level::from_str(level);
  spdlog::default_logger()->set_level(lvl);
  if (auto tracing_logger = spdlog::get("tracing")) {
    tracing_logger->set_level(lvl);
  }
}

}  // namespace sidetrace::proxy
