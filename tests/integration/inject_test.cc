// `sidetrace inject` as users run it: the real binary reading a file or stdin, YAML on stdout,
// notes and errors on stderr, and the exit code. What it writes is checked in detail by the unit
// tests (tests/unit/config/inject_test.cc); here, that the command is wired up end to end and
// that the sidecar it writes is one the same binary accepts.

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/integration/child_process.h"
#include "tests/integration/sidetrace_process.h"

namespace sidetrace::it {
namespace {

namespace fs = std::filesystem;

const fs::path kFixtures = fs::path(SIDETRACE_IT_SOURCE_DIR) / "../unit/config/inject";

std::string readFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Outcome {
  int code = -1;  // -1: did not exit normally
  std::string out;
  std::string err;
};

class InjectCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "sidetrace-inject-XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override {
    if (!HasFailure()) {
      fs::remove_all(dir_);
    }
  }

  fs::path write(const std::string& name, const std::string& text) {
    fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }

  // Runs `sidetrace inject args...` with `stdin_file` (or /dev/null) as its input.
  Outcome inject(std::vector<std::string> args, const fs::path& stdin_file = {}) {
    args.insert(args.begin(), {sidetraceBinary(), "inject"});
    return runBinary(args, stdin_file);
  }

  Outcome runBinary(const std::vector<std::string>& argv, const fs::path& stdin_file = {}) {
    Outcome r;
    ChildSpec spec;
    spec.argv = argv;
    spec.env = currentEnvironment();
    spec.stdout_path = (dir_ / "stdout").string();
    spec.stderr_path = (dir_ / "stderr").string();
    int in = stdin_file.empty() ? -1 : ::open(stdin_file.c_str(), O_RDONLY | O_CLOEXEC);
    spec.stdin_fd = in;
    std::string error;
    pid_t pid = spawnChild(spec, &error);
    if (in >= 0) {
      ::close(in);
    }
    EXPECT_GT(pid, 0) << error;
    if (pid <= 0) {
      return r;
    }
    // A filter over a few KiB ends at once; the bound only keeps a hang from stalling ctest.
    int status = 0;
    for (int i = 0; i < 3000 && ::waitpid(pid, &status, WNOHANG) == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (i == 2999) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        ADD_FAILURE() << "sidetrace inject did not exit within 30 s";
      }
    }
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = readFile(spec.stdout_path);
    r.err = readFile(spec.stderr_path);
    EXPECT_EQ(sanitizerReports(r.err), "") << r.err;
    return r;
  }

  fs::path dir_;
};

TEST_F(InjectCommand, FileAndStdinGiveTheExpectedStream) {
  const fs::path in = kFixtures / "web.in.yaml";
  const std::string expected = readFile(kFixtures / "web.out.yaml");
  ASSERT_FALSE(expected.empty()) << "missing fixture " << kFixtures;
  Outcome from_file = inject({"--image", "sidetrace:0.1.0", "-f", in.string()});
  EXPECT_EQ(from_file.code, 0) << from_file.err;
  EXPECT_EQ(from_file.out, expected);
  EXPECT_NE(from_file.err.find("sidetrace inject: Deployment/orders: sidetrace on port 15001 in "
                               "front of port 8080 (http)\n"),
            std::string::npos)
      << from_file.err;
  Outcome dash = inject({"--image=sidetrace:0.1.0", "-"}, in);
  EXPECT_EQ(dash.code, 0) << dash.err;
  EXPECT_EQ(dash.out, expected);
  Outcome no_flag = inject({"--image=sidetrace:0.1.0"}, in);
  EXPECT_EQ(no_flag.code, 0) << no_flag.err;
  EXPECT_EQ(no_flag.out, expected);
  // And once more on its own output: nothing changes.
  Outcome again = inject({"-f", write("once.yaml", dash.out).string()});
  EXPECT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(again.out, expected);
}

TEST_F(InjectCommand, EmptyInputGivesEmptyOutput) {
  Outcome r = inject({"-f", write("empty.yaml", "").string()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
}

TEST_F(InjectCommand, InvalidYamlExitsOneNamingTheLine) {
  fs::path bad = write("bad.yaml", "apiVersion: v1\nkind: ConfigMap\n---\nb: c\n  d: e\n");
  Outcome from_file = inject({"-f", bad.string()});
  EXPECT_EQ(from_file.code, 1);
  EXPECT_EQ(from_file.out, "") << "nothing half-written for kubectl to apply";
  EXPECT_EQ(from_file.err, "sidetrace inject: " + bad.string() + ":5:4: illegal map value\n");
  Outcome from_stdin = inject({}, bad);
  EXPECT_EQ(from_stdin.code, 1);
  EXPECT_EQ(from_stdin.err, "sidetrace inject: <stdin>:5:4: illegal map value\n");
}

TEST_F(InjectCommand, BadArgumentsAndMissingFilesExitOne) {
  Outcome ports = inject(
      {"--transparent", "--redirect-ports=http", "-f", (kFixtures / "web.in.yaml").string()});
  EXPECT_EQ(ports.code, 1);
  EXPECT_EQ(ports.out, "");
  EXPECT_EQ(ports.err.rfind("sidetrace inject: --redirect-ports: expected ports such as 80,8080 "
                            "or all, got 'http'\n",
                            0),
            0u)
      << ports.err;
  Outcome missing = inject({"-f", (dir_ / "nope.yaml").string()});
  EXPECT_EQ(missing.code, 1);
  EXPECT_EQ(missing.err, "sidetrace inject: -f: cannot read " + (dir_ / "nope.yaml").string() +
                             ": No such file or directory\n");
  Outcome directory = inject({"-f", dir_.string()});
  EXPECT_EQ(directory.code, 1);
  EXPECT_NE(directory.err.find("Is a directory"), std::string::npos) << directory.err;
  Outcome help = inject({"--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("sidetrace inject [-f FILE | -] [options]"), std::string::npos);
  Outcome main_help = runBinary({sidetraceBinary(), "--help"});
  EXPECT_NE(main_help.out.find("sidetrace inject"), std::string::npos) << main_help.out;
}

// The arguments inject gives the sidecar, run through the same binary's --validate.
TEST_F(InjectCommand, TheSidecarsArgumentsAreAValidConfig) {
  Outcome r = inject({"--ignore-path=/health", "--sampler=parentbased_traceidratio",
                      "--sampler-arg=0.1", "-f", (kFixtures / "ports.in.yaml").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> argv = {sidetraceBinary(), "--validate"};
  std::istringstream lines(r.out);
  std::string line;
  bool in_args = false;
  while (std::getline(lines, line)) {
    if (line.find("args:") != std::string::npos) {
      in_args = true;
    } else if (in_args && line.find("- --") != std::string::npos) {
      argv.push_back(line.substr(line.find("- --") + 2));
    } else {
      in_args = false;
    }
  }
  ASSERT_GE(argv.size(), 7u) << r.out;
  Outcome validate = runBinary(argv);
  EXPECT_EQ(validate.code, 0) << validate.err;
  EXPECT_EQ(validate.out, "sidetrace: configuration is valid\n");
}

}  // namespace
}  // namespace sidetrace::it
