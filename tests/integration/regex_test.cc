// Route, header-match and ignore-rule regexes meet untrusted paths and headers. With libstdc++'s
// std::regex one ~40 KB path killed the process (a stack frame per character matched) and nested
// quantifiers held a worker for ever; RE2 matches in linear time. Invalid patterns are config
// errors naming the key and line.

#include <gtest/gtest.h>

#include <string>

#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

class RegexTest : public IntegrationTest {
 protected:
  static std::string yaml() {
    return R"(admin: { address: "127.0.0.1:{{ADMIN_PORT}}" }
workers: 1
listeners:
  - name: ingress
    address: "127.0.0.1:{{LISTEN_PORT}}"
    routes:
      - name: ping
        match: { path: /ping }
        direct_response: { status: 200, body: "pong" }
      - name: orders
        match: { regex: "^/api/orders/[0-9]+$" }
        cluster: app
      - name: canary
        match: { prefix: /canary, headers: [ { name: x-canary, regex: "^(a+)+$" } ] }
        cluster: app
clusters:
  - name: app
    endpoints: [ "127.0.0.1:{{UPSTREAM_PORT}}" ]
tracing:
  service_name: regex-test
  exporter: { protocol: none }
  ignore:
    - { regex: "^/internal/(a|aa)+$" }
)";
  }
};

TEST_F(RegexTest, HugePathsAndHeadersNeitherCrashNorStall) {
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(yaml()));
  const std::string digits(40000, '7');

  auto matched = httpRequest(port(), "GET", "/api/orders/" + digits);
  ASSERT_TRUE(matched) << proc_.logs();
  EXPECT_EQ(matched->status, 200);
  auto unmatched = httpRequest(port(), "GET", "/api/orders/" + digits + "x");
  ASSERT_TRUE(unmatched) << proc_.logs();
  EXPECT_EQ(unmatched->status, 404);

  // Exponential for a backtracking engine; each answer is immediate with RE2.
  auto header =
      httpRequest(port(), "GET", "/canary", {{"x-canary", std::string(30000, 'a') + "b"}});
  ASSERT_TRUE(header) << proc_.logs();
  EXPECT_EQ(header->status, 404);
  auto ignored = httpRequest(port(), "GET", "/internal/" + std::string(30000, 'a') + "b");
  ASSERT_TRUE(ignored) << proc_.logs();
  EXPECT_EQ(ignored->status, 404);

  EXPECT_TRUE(proc_.running()) << proc_.logs();
  auto ping = httpRequest(port(), "GET", "/ping");
  ASSERT_TRUE(ping);
  EXPECT_EQ(ping->status, 200);
  EXPECT_EQ(upstream_.requestCount(), 1u);
  stopProxyExpectClean();
}

TEST_F(RegexTest, InvalidPatternNamesKeyAndLine) {
  std::string bad = proc_.writeFile("bad.yaml", R"(listeners:
  - name: ingress
    address: "127.0.0.1:{{LISTEN_PORT}}"
    routes:
      - match: { regex: "^/api/(unclosed" }
        cluster: app
clusters:
  - name: app
    endpoints: [ "127.0.0.1:1" ]
)",
                                    vars());
  ASSERT_TRUE(proc_.start({"--validate", "--config", bad}));
  auto r = proc_.wait();
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.code, 1);
  std::string err = proc_.stderrText();
  EXPECT_NE(err.find("regex"), std::string::npos) << err;
  EXPECT_NE(err.find("missing )"), std::string::npos) << err;
  EXPECT_NE(err.find(":5"), std::string::npos) << "line 5 not named: " << err;
}

}  // namespace
}  // namespace sidetrace::it
