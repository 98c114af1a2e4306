#pragma once
// Runs the real sidetrace binary for a test: writes the config into a private temp dir, starts
// the process with stdout/stderr in files there, waits for the admin /ready, stops it with
// SIGTERM and reports the exit code. The temp dir is removed unless the test failed.

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sidetrace::it {

// Path of the binary under test (compile definition, overridable with $SIDETRACE_BIN).
std::string sidetraceBinary();

// Replaces every {{NAME}} in text with vars[NAME]; throws on an unknown placeholder.
std::string expand(const std::string& text, const std::map<std::string, std::string>& vars);

struct ExitResult {
  bool exited = false;  // false: still running at the deadline (then killed) or never started
  int code = -1;        // exit code when exited normally
  int signal = 0;       // terminating signal, if any
};

class SidetraceProcess {
 public:
  SidetraceProcess();
  ~SidetraceProcess();  // SIGKILL if still running
  SidetraceProcess(const SidetraceProcess&) = delete;
  SidetraceProcess& operator=(const SidetraceProcess&) = delete;

  // Ports chosen at construction (free at that moment); available as {{LISTEN_PORT}} and
  // {{ADMIN_PORT}} in configs, plus any vars given.
  // Picked on first use (asking, or writing a config), as late as the test allows.
  uint16_t listenPort() const {
    pickPorts();
    return listen_port_;
  }
  uint16_t adminPort() const {
    pickPorts();
    return admin_port_;
  }
  const std::string& dir() const { return dir_; }

  // Writes `file` (relative to dir()) with placeholders expanded; returns its full path.
  std::string writeFile(const std::string& file, const std::string& text,
                        const std::map<std::string, std::string>& vars = {});
  // Starts `sidetrace args...`; extra_env entries are added to the inherited environment
  // (OTEL_* variables of the test's own environment are removed first).
  // Runs the binary as the last arguments of `wrapper` (e.g. unshare ... sh -c '...; exec "$@"'),
  // which must exec it in the same process. Before start().
  void runUnder(std::vector<std::string> wrapper) { wrapper_ = std::move(wrapper); }
  bool start(const std::vector<std::string>& args,
             const std::map<std::string, std::string>& extra_env = {});
  // start({"--config", writeFile("sidetrace.yaml", yaml, vars)}).
  bool startWithConfig(const std::string& yaml, const std::map<std::string, std::string>& vars = {},
                       const std::map<std::string, std::string>& extra_env = {});
  // Polls GET /ready on the admin port until 200 (true), the process exits, or timeout.
  bool waitReady(std::chrono::milliseconds timeout = std::chrono::milliseconds(15000));
  // Polls until the listener accepts a TCP connection.
  bool waitListening(std::chrono::milliseconds timeout = std::chrono::milliseconds(15000));

  bool running();
  int pid() const { return pid_; }
  // SIGTERM, then wait up to timeout (SIGKILL after it).
  ExitResult stop(std::chrono::milliseconds timeout = std::chrono::milliseconds(20000));
  // Waits for a process that exits on its own (e.g. --validate).
  ExitResult wait(std::chrono::milliseconds timeout = std::chrono::milliseconds(20000));

  std::string stdoutText() const;
  std::string stderrText() const;
  // "--- stdout ---\n...\n--- stderr ---\n..." (tails, for failure messages).
  std::string logs() const;
  void keepDir() { keep_dir_ = true; }

 private:
  std::string dir_;
  void pickPorts() const;
  mutable uint16_t listen_port_ = 0;
  mutable uint16_t admin_port_ = 0;
  int pid_ = -1;
  std::vector<std::string> wrapper_;
  std::optional<ExitResult> exit_;
  bool keep_dir_ = false;
};

}  // namespace sidetrace::it
