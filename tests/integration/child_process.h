#pragma once
// Starting a helper process (sidetrace, a Node.js peer) from a test so that it cannot outlive the
// test: the child asks the kernel for SIGKILL when its parent dies (PR_SET_PDEATHSIG), so a test
// binary that crashes, is killed or times out under ctest takes its children with it instead of
// leaving them listening.

#include <sys/types.h>

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

}  // namespace sidetrace::it
