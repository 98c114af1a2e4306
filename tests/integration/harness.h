#pragma once
// The shared fixture: a FakeUpstream, a dead upstream (connection refused), an OtlpReceiver
// and a SidetraceProcess started from a standard config with knobs per test. Every port is
// ephemeral and held while the test needs it (sidetrace binds port 0 and reports what it got),
// so tests run in parallel. TearDown fails the test when sidetrace crashed, did not stop cleanly or
// wrote a sanitizer report (SidetraceProcess::finish).

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/integration/fake_upstream.h"
#include "tests/integration/http_client.h"
#include "tests/integration/otlp_receiver.h"
#include "tests/integration/sidetrace_process.h"

namespace sidetrace::it {

// Knobs of the standard config (see harness.cc for the YAML). Strings are YAML flow values.
struct ProxyConfig {
  std::string service_name = "it-svc";
  std::string propagators = "[ tracecontext, baggage ]";
  std::string sampler = "{ type: parentbased_always_on }";
  std::string batch = "{ schedule_delay: 100ms }";
  std::string ignore;  // flow list, e.g. "[ { path: /health } ]"; empty = none
  std::string
      limits_extra;  // extra "key: value" pairs for limits, e.g. "max_pipelined_requests: 4"
  std::string tracing_extra;  // extra lines under tracing:, each indented by 2 spaces
  std::string drain_timeout = "2s";
  int workers = 2;
};

// Routes in the standard config (first match wins):
//   /ping   direct 200 "pong"           /teapot  direct 418 "short and stout"
//   /slow*  cluster app, timeout 300ms  /dead*   cluster dead (refused port)
//   /health cluster app (route health)  /api*    cluster app (route app)
//   /ws*    cluster app (route ws)      anything else: no route (404)
std::string standardConfigYaml(const ProxyConfig& c);

// The resilience tests' config: one worker, route "api" (prefix /api) to cluster "pool" of
// 127.0.0.1 endpoints (round robin, connect_timeout 500ms), every request traced. `route_yaml`
// and `cluster_yaml` are extra keys for the route and the cluster ("key: value" lines, indented
// here).
std::string poolConfigYaml(const std::vector<uint16_t>& endpoints,
                           const std::vector<std::string>& route_yaml,
                           const std::vector<std::string>& cluster_yaml);

class IntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Starts sidetrace with the standard config and waits for /ready; fails the test otherwise.
  // Use as ASSERT_NO_FATAL_FAILURE(startProxy(...)).
  void startProxy(const ProxyConfig& c = {});
  void startProxyYaml(const std::string& yaml);
  // Rewrites the config file with `yaml` and POSTs /reload; use as
  // ASSERT_NO_FATAL_FAILURE(reloadYaml(...)): fails the test unless the reload answers 200.
  void reloadYaml(const std::string& yaml);
  std::map<std::string, std::string> vars() const;
  uint16_t port() const { return proc_.listenPort(); }
  // Stops (SIGTERM) and expects exit code 0.
  void stopProxyExpectClean();
  // GET /metrics on the admin port ("" when it fails).
  std::string metrics();
  // Polls /metrics until the sum of `name{label}` reaches at least `min` (counters move just after
  // a response is written or an export returns); returns the last value seen.
  double waitMetric(const std::string& name, const std::string& label, double min,
                    Millis timeout = Millis(10000));

  FakeUpstream upstream_;
  RefusedPort dead_;  // refuses connections
  OtlpReceiver otlp_;
  SidetraceProcess proc_;
};

// True when the environment variable CI is set to anything but "", "0" or "false" (.ci/run sets
// CI=true): then a test whose optional part is missing fails instead of skipping.
bool inCi();

// GTEST_SKIP() outside CI; in CI a FAIL(), so that a missing tool cannot turn a test green.
#define SKIP_OR_FAIL_IN_CI(why)                                      \
  do {                                                               \
    if (::sidetrace::it::inCi()) {                                   \
      FAIL() << why << " (CI is set: this test must run, not skip)"; \
    }                                                                \
    GTEST_SKIP() << why;                                             \
  } while (0)

// W3C traceparent split into its four fields; valid() checks the shape only.
struct Traceparent {
  std::string version, trace_id, parent_id, flags;
  static std::optional<Traceparent> parse(const std::string& s);
};

// Sum of the values of metric lines named `name` whose label set contains `label` ("" = any).
// -1 when no such line exists.
double metricSum(const std::string& text, const std::string& name, const std::string& label);
bool isLowerHex(const std::string& s, size_t len);
// Debian's python3 (the one python3-* packages install into), else whatever is on PATH.
std::string python3Path();
// Runs a shell command; returns (exit status, stdout and stderr combined).
std::pair<int, std::string> runCommand(const std::string& cmd);
bool isAllZero(const std::string& s);
// Waits `settle` after n spans arrived, so extra (unexpected) spans show up too.
std::vector<FlatSpan> waitSpansSettled(OtlpReceiver& r, size_t n,
                                       std::chrono::milliseconds timeout = Millis(10000),
                                       std::chrono::milliseconds settle = Millis(400));
std::string describeAll(const std::vector<FlatSpan>& spans);
std::string describeHeaders(const Headers& h);

}  // namespace sidetrace::it
