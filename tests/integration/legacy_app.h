#pragma once
// legacy_app.py (an app with no tracing code) as a child process that calls its downstream
// through sidetrace's egress listener with the standard http_proxy variable: shared by the egress
// tests and the trace-view test that shows the egress call in its trace. Included by test files
// only (SIDETRACE_IT_SOURCE_DIR is defined for the integration_tests target).

#include <cstdint>
#include <string>
#include <vector>

#include "tests/integration/child_process.h"
#include "tests/integration/harness.h"

namespace sidetrace::it {

// legacy_app.py calling 127.0.0.1:downstream through http_proxy = 127.0.0.1:egress; `threaded`
// serves each request on its own thread (see legacy_app.py for the request modes).
class LegacyApp : public ListeningChild {
 public:
  LegacyApp(const std::string& dir, uint16_t downstream, uint16_t egress, bool threaded)
      : ListeningChild(spec(dir, downstream, egress, threaded)) {}

 private:
  static ChildSpec spec(const std::string& dir, uint16_t downstream, uint16_t egress,
                        bool threaded) {
    std::vector<std::string> args{python3Path(),
                                  std::string(SIDETRACE_IT_SOURCE_DIR) + "/legacy_app.py",
                                  "127.0.0.1:" + std::to_string(downstream)};
    if (threaded) {
      args.push_back("--threaded");
    }
    // Only what the app needs: no no_proxy from the test's environment may bypass the proxy.
    return {.argv = args,
            .env = {"PATH=/usr/local/bin:/usr/bin:/bin",
                    "http_proxy=http://127.0.0.1:" + std::to_string(egress)},
            .stdout_path = dir + "/legacy-app.out",
            .stderr_path = dir + "/legacy-app.err"};
  }
};

}  // namespace sidetrace::it
