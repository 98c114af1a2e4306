#include "tests/integration/sidetrace_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>
#include <re2/re2.h>

#include "tests/integration/child_process.h"
#include "tests/integration/http_client.h"
#include "tests/integration/net.h"

namespace sidetrace::it {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string sidetraceBinary() {
  if (const char* env = std::getenv("SIDETRACE_BIN"); env && *env) {
    return env;
  }
#ifdef SIDETRACE_BINARY
  return SIDETRACE_BINARY;
#else
  return "sidetrace";
#endif
}

Sanitizer binarySanitizer() {
  // GCC links the sanitizer runtimes as shared libraries: their names are in the binary's
  // dynamic string table. Read once per test process.
  static const Sanitizer kind = [] {
    const std::string path = sidetraceBinary();
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return Sanitizer::none;
    }
    struct stat st {};
    void* map = ::fstat(fd, &st) == 0 && st.st_size > 0
                    ? ::mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0)
                    : MAP_FAILED;
    ::close(fd);
    if (map == MAP_FAILED) {
      return Sanitizer::none;
    }
    auto contains = [&](const char* name) {
      return ::memmem(map, size_t(st.st_size), name, std::strlen(name)) != nullptr;
    };
    Sanitizer found = contains("libasan.so")   ? Sanitizer::address
                      : contains("libtsan.so") ? Sanitizer::thread
                                               : Sanitizer::none;
    ::munmap(map, size_t(st.st_size));
    return found;
  }();
  return kind;
}

std::string expand(const std::string& text, const std::map<std::string, std::string>& vars) {
  std::string out;
  size_t pos = 0;
  for (;;) {
    size_t open = text.find("{{", pos);
    if (open == std::string::npos) {
      out.append(text, pos);
      return out;
    }
    size_t close = text.find("}}", open);
    if (close == std::string::npos) {
      throw std::runtime_error("unterminated {{ in config template");
    }
    out.append(text, pos, open - pos);
    std::string name = text.substr(open + 2, close - open - 2);
    auto it = vars.find(name);
    if (it == vars.end()) {
      throw std::runtime_error("unknown placeholder {{" + name + "}}");
    }
    out += it->second;
    pos = close + 2;
  }
}

namespace {

std::string tail(const std::string& s, size_t n) {
  return s.size() <= n ? s : "...(truncated)...\n" + s.substr(s.size() - n);
}

// A listener name from a --ports-file line (sidetrace escapes '\\' and newline).
std::string unescapeName(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      out += s[++i] == 'n' ? '\n' : s[i];
    } else {
      out += s[i];
    }
  }
  return out;
}

// "SIGSEGV" for 11: failure messages name the signal.
std::string sigabbrev(int sig) {
  const char* name = ::sigabbrev_np(sig);
  return name ? std::string("SIG") + name : "signal " + std::to_string(sig);
}

ExitResult decode(int status) {
  ExitResult r;
  r.exited = true;
  if (WIFEXITED(status)) {
    r.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.signal = WTERMSIG(status);
  }
  return r;
}

}  // namespace

std::string sanitizerReports(const std::string& stderr_text) {
  // The first line of every sanitizer report: "==PID==ERROR: AddressSanitizer: ...",
  // "WARNING: ThreadSanitizer: data race", "file.cc:12:5: runtime error: ..." (UBSan). sidetrace's
  // own log lines start with '{' (json) or '[' (text) and are never mistaken for one. RE2, as in
  // config/: libstdc++'s std::regex fails the ASan build under -Werror (maybe-uninitialized).
  static const RE2 report(
      R"(^(==\d+==)?(ERROR|WARNING): [A-Za-z]*Sanitizer|^[^{\[].*: runtime error: )");
  std::istringstream in(stderr_text);
  std::string line;
  std::string found;
  while (std::getline(in, line)) {
    if (RE2::PartialMatch(line, report)) {
      found += line + "\n";
    }
  }
  return found;
}

SidetraceProcess::SidetraceProcess() {
  std::string templ = (fs::temp_directory_path() / "sidetrace-it-XXXXXX").string();
  if (!::mkdtemp(templ.data())) {
    throw std::runtime_error("mkdtemp failed");
  }
  dir_ = templ;
  ports_path_ = dir_ + "/ports";
}

SidetraceProcess::~SidetraceProcess() {
  finish();
  if (!keep_dir_) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

const SidetraceProcess::Ports& SidetraceProcess::ports() const {
  static const Ports none;
  if (ports_ || pid_ <= 0) {
    return ports_ ? *ports_ : none;
  }
  // The file appears whole (written aside, then renamed) once every listener is bound.
  auto deadline = Clock::now() + std::chrono::seconds(15);
  for (;;) {
    std::error_code ec;
    if (fs::exists(ports_path_, ec)) {
      Ports p;
      std::istringstream in(readFile(ports_path_));
      std::string kind, name, address;
      while (in >> kind >> address) {
        if (kind == "listener") {
          std::getline(in, name);
          name = unescapeName(name.substr(name.empty() ? 0 : 1));
          p.listeners[name] =
              static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
          if (p.first_listener.empty()) {
            p.first_listener = name;
          }
        } else if (kind == "admin") {
          p.admin = static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
        }
      }
      ports_ = std::move(p);
      return *ports_;
    }
    if (!running() || Clock::now() >= deadline) {
      return none;
    }
    std::this_thread::sleep_for(Millis(10));
  }
}

uint16_t SidetraceProcess::listenPort(const std::string& listener) const {
  const Ports& p = ports();
  const std::string& name = listener.empty() ? p.first_listener : listener;
  auto it = p.listeners.find(name);
  if (it == p.listeners.end()) {
    ADD_FAILURE() << "sidetrace reported no listener '" << name << "' in " << ports_path_ << "\n"
                  << logs();
    return 0;
  }
  return it->second;
}

uint16_t SidetraceProcess::adminPort() const {
  uint16_t port = ports().admin;
  if (port == 0) {
    ADD_FAILURE() << "sidetrace reported no admin listener in " << ports_path_ << "\n" << logs();
  }
  return port;
}

std::string SidetraceProcess::writeFile(const std::string& file, const std::string& text,
                                        const std::map<std::string, std::string>& vars) {
  auto all = vars;
  all.emplace("LISTEN_PORT", "0");
  all.emplace("ADMIN_PORT", "0");
  all.emplace("DIR", dir_);
  std::string path = dir_ + "/" + file;
  std::ofstream out(path, std::ios::binary);
  out << expand(text, all);
  return path;
}

bool SidetraceProcess::start(const std::vector<std::string>& args,
                             const std::map<std::string, std::string>& extra_env) {
  finish();
  std::error_code ec;
  fs::remove(ports_path_, ec);
  ChildSpec spec;
  spec.argv = wrapper_;
  spec.argv.push_back(sidetraceBinary());
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.argv.push_back("--ports-file");
  spec.argv.push_back(ports_path_);
  for (auto& kv : currentEnvironment()) {
    std::string key = kv.substr(0, kv.find('='));
    if (key.rfind("OTEL_", 0) != 0 && !extra_env.count(key)) {
      spec.env.push_back(std::move(kv));
    }
  }
  for (const auto& [k, v] : extra_env) {
    spec.env.push_back(k + "=" + v);
  }
  spec.stdout_path = dir_ + "/stdout.log";
  spec.stderr_path = dir_ + "/stderr.log";
  std::string error;
  pid_ = spawnChild(spec, &error);
  exit_.reset();
  ports_.reset();
  exit_collected_ = false;
  sigterm_sent_ = false;
  if (pid_ < 0) {
    std::ofstream(spec.stderr_path) << "harness: " << error << "\n";
    return false;
  }
  finished_ = false;
  return true;
}

bool SidetraceProcess::startWithConfig(const std::string& yaml,
                                       const std::map<std::string, std::string>& vars,
                                       const std::map<std::string, std::string>& extra_env) {
  return start({"--config", writeFile("sidetrace.yaml", yaml, vars)}, extra_env);
}

bool SidetraceProcess::running() const {
  if (pid_ <= 0 || exit_) {
    return false;
  }
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_ = decode(status);
    return false;
  }
  return true;
}

bool SidetraceProcess::waitReady(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  const uint16_t admin = ports().admin;  // 0: exited (or hung) before binding
  while (admin != 0 && Clock::now() < deadline) {
    if (!running()) {
      return false;
    }
    auto resp = httpRequest(admin, "GET", "/ready", {}, {}, Millis(1000));
    if (resp && resp->status == 200) {
      return true;
    }
    std::this_thread::sleep_for(Millis(20));
  }
  return false;
}

bool SidetraceProcess::waitListening(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  const Ports& p = ports();
  while (!p.first_listener.empty() && Clock::now() < deadline) {
    if (!running()) {
      return false;
    }
    TcpSocket s;
    if (s.connect(p.listeners.at(p.first_listener), Millis(500))) {
      return true;
    }
    std::this_thread::sleep_for(Millis(20));
  }
  return false;
}

ExitResult SidetraceProcess::reap(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) {
    return {};
  }
  auto deadline = Clock::now() + timeout;
  while (running() && Clock::now() < deadline) {
    std::this_thread::sleep_for(Millis(10));
  }
  if (!exit_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    exit_ = decode(status);
    exit_->exited = false;  // we killed it: not a clean exit
  }
  return *exit_;
}

ExitResult SidetraceProcess::wait(std::chrono::milliseconds timeout) {
  ExitResult r = reap(timeout);
  exit_collected_ = true;
  return r;
}

ExitResult SidetraceProcess::stop(std::chrono::milliseconds timeout) {
  if (running()) {
    ::kill(pid_, SIGTERM);
    sigterm_sent_ = true;  // from here on, anything but exit code 0 is a failure
  }
  return wait(timeout);
}

bool SidetraceProcess::finish() {
  if (finished_) {
    return true;
  }
  const bool collected_before = exit_collected_ || running();
  ExitResult r = exit_ ? *exit_ : stop();
  finished_ = true;
  std::vector<std::string> problems;
  if (!r.exited && sigterm_sent_) {
    problems.push_back("did not exit within 20 s of SIGTERM (killed)");
  } else if (r.signal != 0 && r.exited) {
    problems.push_back("was killed by signal " + std::to_string(r.signal) + " (" +
                       sigabbrev(r.signal) + ")");
  } else if (sigterm_sent_ && r.code != 0) {
    problems.push_back("exited with code " + std::to_string(r.code) +
                       " after SIGTERM (a clean shutdown exits 0)");
  } else if (!collected_before) {
    problems.push_back("exited on its own with code " + std::to_string(r.code) +
                       " before the test stopped it (a test that expects an exit collects it "
                       "with wait())");
  }
  if (std::string reports = sanitizerReports(stderrText()); !reports.empty()) {
    problems.push_back("wrote a sanitizer report to stderr:\n" + reports);
  }
  for (const auto& p : problems) {
    ADD_FAILURE() << "sidetrace (pid " << pid_ << ") " << p << "\n" << logs();
  }
  if (!problems.empty()) {
    keep_dir_ = true;
  }
  return problems.empty();
}

std::string SidetraceProcess::stdoutText() const {
  return readFile(dir_ + "/stdout.log");
}
std::string SidetraceProcess::stderrText() const {
  return readFile(dir_ + "/stderr.log");
}

std::string SidetraceProcess::logs() const {
  return "--- sidetrace stdout (" + dir_ + ") ---\n" + tail(stdoutText(), 6000) +
         "\n--- sidetrace stderr ---\n" + tail(stderrText(), 6000) + "\n";
}

}  // namespace sidetrace::it
