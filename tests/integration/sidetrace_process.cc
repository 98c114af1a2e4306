#include "tests/integration/sidetrace_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "tests/integration/http_client.h"
#include "tests/integration/net.h"

extern char** environ;

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

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

std::string tail(const std::string& s, size_t n) {
  return s.size() <= n ? s : "...(truncated)...\n" + s.substr(s.size() - n);
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

SidetraceProcess::SidetraceProcess() {
  std::string templ = (fs::temp_directory_path() / "sidetrace-it-XXXXXX").string();
  if (!::mkdtemp(templ.data())) {
    throw std::runtime_error("mkdtemp failed");
  }
  dir_ = templ;
}

void SidetraceProcess::pickPorts() const {
  // Picked as late as possible (the first config written), not when the fixture is built: a
  // port released early may meanwhile go to a test peer started in between (grpc++ servers bind
  // with SO_REUSEPORT, as sidetrace does, so both binds would succeed and share the port).
  if (listen_port_ != 0) {
    return;
  }
  listen_port_ = pickFreePort();
  do {
    admin_port_ = pickFreePort();
  } while (admin_port_ == listen_port_);
}

SidetraceProcess::~SidetraceProcess() {
  if (pid_ > 0 && !exit_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  if (!keep_dir_) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

std::string SidetraceProcess::writeFile(const std::string& file, const std::string& text,
                                        const std::map<std::string, std::string>& vars) {
  pickPorts();
  auto all = vars;
  all.emplace("LISTEN_PORT", std::to_string(listen_port_));
  all.emplace("ADMIN_PORT", std::to_string(admin_port_));
  all.emplace("DIR", dir_);
  std::string path = dir_ + "/" + file;
  std::ofstream out(path, std::ios::binary);
  out << expand(text, all);
  return path;
}

bool SidetraceProcess::start(const std::vector<std::string>& args,
                             const std::map<std::string, std::string>& extra_env) {
  std::string bin = sidetraceBinary();
  std::vector<std::string> argv_s = wrapper_;
  argv_s.push_back(bin);
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);

  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    if (kv.rfind("OTEL_", 0) == 0) {
      continue;
    }
    std::string key(kv.substr(0, kv.find('=')));
    if (extra_env.count(key)) {
      continue;
    }
    env_s.emplace_back(kv);
  }
  for (const auto& [k, v] : extra_env) {
    env_s.push_back(k + "=" + v);
  }
  std::vector<char*> envp;
  for (auto& e : env_s) {
    envp.push_back(e.data());
  }
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  std::string out_path = dir_ + "/stdout.log";
  std::string err_path = dir_ + "/stderr.log";
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  pid_t pid = -1;
  int rc =
      ::posix_spawnp(&pid, argv_s.front().c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    pid_ = -1;
    return false;
  }
  pid_ = pid;
  exit_.reset();
  return true;
}

bool SidetraceProcess::startWithConfig(const std::string& yaml,
                                       const std::map<std::string, std::string>& vars,
                                       const std::map<std::string, std::string>& extra_env) {
  return start({"--config", writeFile("sidetrace.yaml", yaml, vars)}, extra_env);
}

bool SidetraceProcess::running() {
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
  while (Clock::now() < deadline) {
    if (!running()) {
      return false;
    }
    auto resp = httpRequest(admin_port_, "GET", "/ready", {}, {}, Millis(1000));
    if (resp && resp->status == 200) {
      return true;
    }
    std::this_thread::sleep_for(Millis(20));
  }
  return false;
}

bool SidetraceProcess::waitListening(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (!running()) {
      return false;
    }
    TcpSocket s;
    if (s.connect(listen_port_, Millis(500))) {
      return true;
    }
    std::this_thread::sleep_for(Millis(20));
  }
  return false;
}

ExitResult SidetraceProcess::wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) {
    return {};
  }
  auto deadline = Clock::now() + timeout;
  while (!exit_ && Clock::now() < deadline) {
    if (!running()) {
      break;
    }
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

ExitResult SidetraceProcess::stop(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) {
    return {};
  }
  if (running()) {
    ::kill(pid_, SIGTERM);
  }
  return wait(timeout);
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
