// The proxy's own log lines on stderr (log_format): exact JSON lines, since log pipelines parse
// them, and the set-up that puts every logger on the one stderr sink.

#include "proxy/self_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <spdlog/formatter.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace sidetrace::proxy {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// 2026-11-23T10:00:00.123Z
const spdlog::log_clock::time_point kTime =
    spdlog::log_clock::time_point(seconds(1'795'428'000) + milliseconds(123));

// Formats on a thread named "st-test", so the "thread" field is known.
std::string format(spdlog::string_view_t logger, spdlog::level::level_enum level,
                   spdlog::string_view_t text, spdlog::log_clock::time_point time = kTime) {
  spdlog::details::log_msg msg(time, spdlog::source_loc{}, logger, level, text);
  std::string out;
  std::thread t([&] {
    pthread_setname_np(pthread_self(), "st-test");
    auto f = makeJsonLogFormatter();
    spdlog::memory_buf_t buf;
    f->format(msg, buf);
    out.assign(buf.data(), buf.size());
  });
  t.join();
  return out;
}

TEST(JsonLogFormatter, ExactLine) {
  EXPECT_EQ(format("sidetrace", spdlog::level::info, "listener 'ingress' on 0.0.0.0:15001"),
            R"({"time":"2026-11-23T10:00:00.123Z","level":"info","logger":"sidetrace",)"
            R"("thread":"st-test","msg":"listener 'ingress' on 0.0.0.0:15001"})"
            "\n");
}

TEST(JsonLogFormatter, LevelNamesAreThoseOfLogLevel) {
  const std::vector<std::pair<spdlog::level::level_enum, std::string>> levels = {
      {spdlog::level::trace, "trace"}, {spdlog::level::debug, "debug"},
      {spdlog::level::info, "info"},   {spdlog::level::warn, "warn"},
      {spdlog::level::err, "error"},   {spdlog::level::critical, "critical"}};
  for (const auto& [level, name] : levels) {
    EXPECT_NE(format("tracing", level, "x").find(R"("level":")" + name + R"(","logger":"tracing")"),
              std::string::npos)
        << name;
  }
}

TEST(JsonLogFormatter, EscapesTheMessageOnOneLine) {
  // Quotes, backslashes, a newline, a tab, a control byte, UTF-8 kept, an invalid byte repaired.
  std::string text = "bad name \"a\\b\"\nsecond line\tx\x01 caf\xc3\xa9 \xff!";
  EXPECT_EQ(format("sidetrace", spdlog::level::warn, text),
            R"({"time":"2026-11-23T10:00:00.123Z","level":"warn","logger":"sidetrace",)"
            R"("thread":"st-test","msg":"bad name \"a\\b\"\nsecond line\tx\u0001 caf)"
            "\xc3\xa9 \xef\xbf\xbd!\"}\n");
}

TEST(JsonLogFormatter, TimeIsUtcWithMilliseconds) {
  auto line = format("sidetrace", spdlog::level::info, "m",
                     spdlog::log_clock::time_point(seconds(0) + milliseconds(7)));
  EXPECT_EQ(line.substr(0, 35), R"({"time":"1970-01-01T00:00:00.007Z",)");
  line = format("sidetrace", spdlog::level::info, "m",
                spdlog::log_clock::time_point(seconds(1'795'392'000 + 86'399) + milliseconds(999)));
  EXPECT_EQ(line.substr(0, 35), R"({"time":"2026-11-23T23:59:59.999Z",)");
}

// Points fd 2 at a file for the lifetime of the object; text() reads what was written.
class StderrCapture {
 public:
  StderrCapture() {
    path_ = ::testing::TempDir() + "self_log_stderr_" + std::to_string(::getpid());
    std::fflush(stderr);
    saved_ = ::dup(2);
    int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(fd, 2);
    ::close(fd);
  }
  ~StderrCapture() {
    restore();
    std::remove(path_.c_str());
  }
  std::string text() {
    restore();
    std::ifstream in(path_);
    std::stringstream ss;
    ss << in.rdbuf();
    std::remove(path_.c_str());
    return ss.str();
  }

 private:
  void restore() {
    if (saved_ >= 0) {
      std::fflush(stderr);
      ::dup2(saved_, 2);
      ::close(saved_);
      saved_ = -1;
    }
  }
  std::string path_;
  int saved_ = -1;
};

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string l; std::getline(ss, l);) {
    out.push_back(l);
  }
  return out;
}

TEST(SetupSelfLog, JsonOnEveryLoggerAtTheLevel) {
  std::string text;
  {
    StderrCapture capture;
    setupSelfLog("debug", "json");
    spdlog::debug("from {}", "main");
    ASSERT_NE(spdlog::get("tracing"), nullptr);
    spdlog::get("tracing")->warn("from tracing");
    spdlog::trace("below the level");
    text = capture.text();
  }
  EXPECT_EQ(spdlog::default_logger()->name(), "sidetrace");
  auto got = lines(text);
  ASSERT_EQ(got.size(), 2u) << text;
  EXPECT_NE(got[0].find(R"("level":"debug","logger":"sidetrace",)"), std::string::npos) << got[0];
  EXPECT_NE(got[0].find(R"("msg":"from main"})"), std::string::npos) << got[0];
  EXPECT_NE(got[1].find(R"("level":"warn","logger":"tracing",)"), std::string::npos) << got[1];
  for (const auto& l : got) {
    EXPECT_EQ(l.rfind(R"({"time":")", 0), 0u) << l;
  }
}

TEST(SetupSelfLog, TextIsSpdlogsDefaultPattern) {
  std::string text;
  {
    StderrCapture capture;  // not a terminal: no colour codes
    setupSelfLog("info", "text");
    spdlog::info("plain {}", 1);
    spdlog::debug("below the level");
    spdlog::get("tracing")->error("oops");
    text = capture.text();
  }
  auto got = lines(text);
  ASSERT_EQ(got.size(), 2u) << text;
  EXPECT_EQ(got[0].front(), '[') << got[0];
  EXPECT_NE(got[0].find("] [sidetrace] [info] plain 1"), std::string::npos) << got[0];
  EXPECT_NE(got[1].find("] [tracing] [error] oops"), std::string::npos) << got[1];
}

TEST(SetupSelfLog, SetSelfLogLevelLeavesOtherLoggersAlone) {
  setupSelfLog("info", "json");
  auto other = std::make_shared<spdlog::logger>("other-test-logger");
  other->set_level(spdlog::level::info);
  spdlog::register_logger(other);
  setSelfLogLevel("warn");
  EXPECT_EQ(spdlog::default_logger()->level(), spdlog::level::warn);
  EXPECT_EQ(spdlog::get("tracing")->level(), spdlog::level::warn);
  EXPECT_EQ(other->level(), spdlog::level::info) << "e.g. the access log must keep logging";
  setSelfLogLevel("debug");
  EXPECT_EQ(spdlog::get("tracing")->level(), spdlog::level::debug);
  spdlog::drop("other-test-logger");
}

}  // namespace
}  // namespace sidetrace::proxy
