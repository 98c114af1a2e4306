#pragma once
// Runs the real sidetrace binary for a test: writes the config into a private temp dir, starts
// the process with stdout/stderr in files there, learns its bound ports from --ports-file, waits
// for the admin /ready, stops it with SIGTERM and reports the exit code. The temp dir is removed
// unless the test failed.
//
// What every test gets, fixture or not: finish() (called by IntegrationTest::TearDown and by the
// destructor) fails the running test when sidetrace crashed, was killed by a signal, exited
// without the test collecting the exit, did not stop cleanly, or wrote a sanitizer report — at any
// point, after the last assertion too. The process dies with the test process (child_process.h).

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sidetrace::it {

// Path of the binary under test (compile definition, overridable with $SIDETRACE_BIN).
std::string sidetraceBinary();

// The sanitizer the binary under test was built with. The sanitizer stages run this (plain)
// test binary against a sanitized sidetrace, so memory bounds ask the binary, not the compiler.
enum class Sanitizer { none, address, thread };
Sanitizer binarySanitizer();

// Replaces every {{NAME}} in text with vars[NAME]; throws on an unknown placeholder.
std::string expand(const std::string& text, const std::map<std::string, std::string>& vars);

// The lines of `stderr_text` that start a sanitizer report (ASan, LSan, UBSan, TSan, MSan), "" if
// none.
std::string sanitizerReports(const std::string& stderr_text);

struct ExitResult {
  bool exited = false;  // false: still running at the deadline (then killed) or never started
  int code = -1;        // exit code when exited normally
  int signal = 0;       // terminating signal, if any
};

class SidetraceProcess {
 public:
  SidetraceProcess();
  ~SidetraceProcess();  // finish(), then removes dir() unless keepDir()
  SidetraceProcess(const SidetraceProcess&) = delete;
  SidetraceProcess& operator=(const SidetraceProcess&) = delete;

  // The ports the running process bound, from its --ports-file (waits until it is written, the
  // process exits, or 15 s). The first listener, a named one, or the admin listener. 0, with a
  // test failure, when the process reported none.
  uint16_t listenPort(const std::string& listener = "") const;
  uint16_t adminPort() const;
  const std::string& dir() const { return dir_; }
  // Passed as --ports-file to every start (removed before each).
  const std::string& portsFile() const { return ports_path_; }

  // Writes `file` (relative to dir()) with placeholders expanded; returns its full path.
  // {{LISTEN_PORT}} and {{ADMIN_PORT}} expand to 0 (the kernel picks a free port, listenPort()
  // and adminPort() tell which) unless `vars` sets them; {{DIR}} is dir().
  std::string writeFile(const std::string& file, const std::string& text,
                        const std::map<std::string, std::string>& vars = {});
  // Runs the binary as the last arguments of `wrapper` (e.g. unshare ... sh -c '...; exec "$@"'),
  // which must exec it in the same process. Before start().
  void runUnder(std::vector<std::string> wrapper) { wrapper_ = std::move(wrapper); }
  // Starts `sidetrace args... --ports-file DIR/ports`; extra_env entries are added to the
  // inherited environment (OTEL_* variables of the test's own environment are removed first).
  // A process started before is finish()ed first.
  bool start(const std::vector<std::string>& args,
             const std::map<std::string, std::string>& extra_env = {});
  // start({"--config", writeFile("sidetrace.yaml", yaml, vars)}).
  bool startWithConfig(const std::string& yaml, const std::map<std::string, std::string>& vars = {},
                       const std::map<std::string, std::string>& extra_env = {});
  // Polls GET /ready on the admin port until 200 (true), the process exits, or timeout.
  bool waitReady(std::chrono::milliseconds timeout = std::chrono::milliseconds(15000));
  // Polls until the listener accepts a TCP connection.
  bool waitListening(std::chrono::milliseconds timeout = std::chrono::milliseconds(15000));

  bool running() const;
  int pid() const { return pid_; }
  // stop() and wait() hand the exit to the caller, who asserts on it: an exit code other than 0
  // is then the test's business (a bad config exits 1). An exit nobody collected is a failure.
  // SIGTERM, then wait up to timeout (SIGKILL after it).
  ExitResult stop(std::chrono::milliseconds timeout = std::chrono::milliseconds(20000));
  // Waits for a process that exits on its own (e.g. --validate).
  ExitResult wait(std::chrono::milliseconds timeout = std::chrono::milliseconds(20000));
  // The end-of-test check: a process still running is stopped (SIGTERM) and must exit 0 within
  // 20 s; then the test fails (ADD_FAILURE, naming what happened) if the process died of a
  // signal other than the harness's own SIGKILL, exited before the test collected it, or wrote a
  // sanitizer report to stderr. Returns false after such a failure. Once per started process.
  bool finish();

  std::string stdoutText() const;
  std::string stderrText() const;
  // "--- stdout ---\n...\n--- stderr ---\n..." (tails, for failure messages).
  std::string logs() const;
  void keepDir() { keep_dir_ = true; }

 private:
  struct Ports {
    std::map<std::string, uint16_t> listeners;
    std::string first_listener;
    uint16_t admin = 0;
  };
  const Ports& ports() const;
  ExitResult reap(std::chrono::milliseconds timeout);

  std::string dir_;
  std::string ports_path_;
  int pid_ = -1;
  std::vector<std::string> wrapper_;
  mutable std::optional<ExitResult> exit_;
  mutable std::optional<Ports> ports_;
  bool exit_collected_ = false;  // stop() or wait() handed the exit to the test
  bool sigterm_sent_ = false;    // by stop(): the process must then exit 0
  bool finished_ = true;         // nothing started yet
  bool keep_dir_ = false;
};

}  // namespace sidetrace::it
