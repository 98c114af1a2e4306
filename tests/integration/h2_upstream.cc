#include "tests/integration/h2_upstream.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "tests/integration/child_process.h"
#include "tests/integration/h2_client.h"

namespace sidetrace::it {

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string H2Upstream::defaultNode() {
  return SIDETRACE_IT_NODE;
}

std::string H2Upstream::scriptPath() {
  return std::string(SIDETRACE_IT_SOURCE_DIR) + "/h2_upstream.js";
}

H2Upstream::H2Upstream(const std::string& dir, int max_concurrent_streams,
                       const std::string& node) {
  static int serial = 0;
  std::string base = dir + "/h2-upstream-" + std::to_string(++serial);
  out_ = base + ".out";
  err_ = base + ".err";
  std::vector<std::string> args{node, scriptPath()};
  if (max_concurrent_streams > 0) {
    args.push_back("--max-concurrent-streams");
    args.push_back(std::to_string(max_concurrent_streams));
  }
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    error_ = "pipe failed";
    return;
  }
  std::string spawn_error;
  pid_t pid = spawnChild({.argv = args,
                          .env = currentEnvironment(),
                          .stdin_fd = pipe_fds[0],
                          .stdout_path = out_,
                          .stderr_path = err_},
                         &spawn_error);
  ::close(pipe_fds[0]);
  stdin_fd_ = pipe_fds[1];
  if (pid < 0) {
    error_ = "cannot spawn '" + node + "' (Node.js is required for the HTTP/2 upstream; " +
             "tests/install-deps.sh --node): " + spawn_error;
    return;
  }
  pid_ = pid;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline) {
    std::string out = slurp(out_);
    auto pos = out.find("PORT ");
    auto nl = out.find('\n', pos);
    if (pos != std::string::npos && nl != std::string::npos) {
      port_ = static_cast<uint16_t>(std::stoi(out.substr(pos + 5, nl - pos - 5)));
      return;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      error_ = "h2_upstream.js exited at start:\n" + logs();
      return;
    }
    std::this_thread::sleep_for(Millis(20));
  }
  error_ = "h2_upstream.js printed no port within 15s:\n" + logs();
}

H2Upstream::~H2Upstream() {
  if (stdin_fd_ >= 0) {
    ::close(stdin_fd_);
  }
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 100 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) {
      std::this_thread::sleep_for(Millis(20));
    }
    if (::waitpid(pid_, &status, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
  }
}

std::map<std::string, int64_t> H2Upstream::stats() {
  std::map<std::string, int64_t> out;
  if (!ok()) {
    return out;
  }
  H2Connection c(port_);
  H2Request r;
  r.path = "/stats";
  auto resp = c.request(r, Millis(5000));
  if (!resp || resp->status != 200) {
    return out;
  }
  std::istringstream in(resp->body);
  std::string name;
  int64_t value = 0;
  while (in >> name >> value) {
    out[name] = value;
  }
  return out;
}

int64_t H2Upstream::waitStat(const std::string& name, int64_t min, Millis timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int64_t v = -1;
  do {
    auto s = stats();
    auto it = s.find(name);
    v = it == s.end() ? -1 : it->second;
    if (v >= min) {
      break;
    }
    std::this_thread::sleep_for(Millis(50));
  } while (std::chrono::steady_clock::now() < deadline);
  return v;
}

std::string H2Upstream::logs() const {
  return "--- h2_upstream.js stdout ---\n" + slurp(out_) + "--- h2_upstream.js stderr ---\n" +
         slurp(err_);
}

}  // namespace sidetrace::it
