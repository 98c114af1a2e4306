#pragma once
// Starting a helper process (sidetrace, a Node.js peer) from a test so that it cannot outlive the
// test: the child asks the kernel for SIGKILL when its parent dies (PR_SET_PDEATHSIG), so a test
// binary that crashes, is killed or times out under ctest takes its children with it instead of
// leaving them listening.

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace sidetrace::it {

struct ChildSpec {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH unless it contains a '/'
  std::vector<std::string> env;   // "KEY=value" entries: the whole environment of the child
  int stdin_fd = -1;              // duplicated onto the child's stdin; -1: /dev/null
  std::string stdout_path;        // created or truncated
  std::string stderr_path;
};

// Forks and execs `spec`. Returns the pid, or -1 with *error saying why (no such program, cannot
// open a file). The death signal is tied to the calling thread: start children from the test's
// own thread (gtest runs tests on the main thread), not from a helper thread that exits early.
pid_t spawnChild(const ChildSpec& spec, std::string* error);

// The current environment as "KEY=value" entries.
std::vector<std::string> currentEnvironment();

// A whole file ("" when it cannot be read).
std::string readFile(const std::string& path);

// A test peer that prints "PORT n" on stdout once it listens (legacy_app.py, legacy_models.py,
// process_models.py). The constructor starts it and waits up to 10 s for the line; port() is 0
// and error() says why when it did not come. The destructor sends SIGTERM (a pre-fork parent takes
// its workers with it), then SIGKILL after 100 ms.
class ListeningChild {
 public:
  explicit ListeningChild(const ChildSpec& spec);  // spec.stdout_path and stderr_path required
  ~ListeningChild();
  ListeningChild(const ListeningChild&) = delete;
  ListeningChild& operator=(const ListeningChild&) = delete;

  uint16_t port() const { return port_; }
  const std::string& error() const { return error_; }
  std::string logs() const { return readFile(err_); }

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string out_, err_, error_;
};

}  // namespace sidetrace::it
