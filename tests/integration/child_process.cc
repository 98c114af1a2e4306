#include "tests/integration/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace sidetrace::it {
namespace {

// The program to exec: argv[0] itself when it names a path, else the first executable match in
// PATH. Resolved before fork, because the child may only make async-signal-safe calls.
std::string resolveProgram(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    return name;
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) {
      end = dirs.size();
    }
    std::string dir = dirs.substr(start, end - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    start = end + 1;
  }
  return "";
}

[[noreturn]] void failChild(int report, int err) {
  ssize_t ignored = ::write(report, &err, sizeof err);
  (void)ignored;
  ::_exit(127);
}

// In the child, between fork and exec: async-signal-safe calls only. Reports a failure as an
// errno value on `report` (close-on-exec, so a successful exec closes it with nothing written).
[[noreturn]] void execChild(const char* program, char* const* argv, char* const* envp, int stdin_fd,
                            const char* out_path, const char* err_path, pid_t parent, int report) {
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
    failChild(report, errno);
  }
  if (::getppid() != parent) {
    ::_exit(127);  // the parent died before the death signal was armed
  }
  int in = stdin_fd >= 0 ? stdin_fd : ::open("/dev/null", O_RDONLY);
  int out = ::open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  int err = ::open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (in < 0 || out < 0 || err < 0 || ::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 ||
      ::dup2(err, 2) < 0) {
    failChild(report, errno);
  }
  // The test's handlers do not exist in the new program, but an ignored signal stays ignored
  // across exec and a blocked one stays blocked: give the child the defaults.
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  ::execve(program, argv, envp);
  failChild(report, errno);
}

}  // namespace

std::vector<std::string> currentEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    env.emplace_back(*e);
  }
  return env;
}

pid_t spawnChild(const ChildSpec& spec, std::string* error) {
  if (spec.argv.empty()) {
    *error = "no program";
    return -1;
  }
  const std::string program = resolveProgram(spec.argv.front());
  if (program.empty()) {
    *error = "'" + spec.argv.front() + "' not found in PATH";
    return -1;
  }
  std::vector<std::string> argv_s = spec.argv;
  std::vector<char*> argv;
  for (auto& a : argv_s) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  std::vector<std::string> env_s = spec.env;
  std::vector<char*> envp;
  for (auto& e : env_s) {
    envp.push_back(e.data());
  }
  envp.push_back(nullptr);

  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    *error = std::string("pipe2: ") + std::strerror(errno);
    return -1;
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(report[0]);
    execChild(program.c_str(), argv.data(), envp.data(), spec.stdin_fd, spec.stdout_path.c_str(),
              spec.stderr_path.c_str(), parent, report[1]);
  }
  ::close(report[1]);
  if (pid < 0) {
    *error = std::string("fork: ") + std::strerror(errno);
    ::close(report[0]);
    return -1;
  }
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(report[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  ::close(report[0]);
  if (n > 0) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    *error = "cannot start " + program + ": " + std::strerror(child_errno);
    return -1;
  }
  return pid;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ListeningChild::ListeningChild(const ChildSpec& spec)
    : out_(spec.stdout_path), err_(spec.stderr_path) {
  const std::string program = spec.argv.size() > 1 ? spec.argv[1] : spec.argv.at(0);
  std::string error;
  pid_ = spawnChild(spec, &error);
  if (pid_ < 0) {
    error_ = "cannot start " + program + ": " + error;
    return;
  }
  for (int i = 0; i < 500; ++i) {
    const std::string out = readFile(out_);
    if (auto pos = out.find("PORT "); pos != out.npos && out.find('\n', pos) != out.npos) {
      port_ = static_cast<uint16_t>(std::stoi(out.substr(pos + 5)));
      return;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  error_ = program + " printed no port:\n" + readFile(err_);
}

ListeningChild::~ListeningChild() {
  if (pid_ <= 0) {
    return;
  }
  ::kill(pid_, SIGTERM);
  int status = 0;
  for (int i = 0; i < 10; ++i) {
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, &status, 0);
}

}  // namespace sidetrace::it
