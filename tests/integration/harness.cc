#include "tests/integration/harness.h"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <thread>

namespace sidetrace::it {

std::string standardConfigYaml(const ProxyConfig& c) {
  std::string y = R"(admin: { address: "127.0.0.1:{{ADMIN_PORT}}" }
workers: )" + std::to_string(c.workers) +
                  R"(
listeners:
  - name: ingress
    address: "127.0.0.1:{{LISTEN_PORT}}"
    routes:
      - name: ping
        match: { path: /ping }
        direct_response: { status: 200, body: "pong" }
      - name: teapot
        match: { path: /teapot }
        direct_response: { status: 418, body: "short and stout" }
      - name: slow
        match: { prefix: /slow }
        cluster: app
        timeout: 300ms
      - name: dead
        match: { prefix: /dead }
        cluster: dead
      - name: health
        match: { path: /health }
        cluster: app
      - name: app
        match: { prefix: /api }
        cluster: app
      - name: ws
        match: { prefix: /ws }
        cluster: app
clusters:
  - name: app
    endpoints: [ "127.0.0.1:{{UPSTREAM_PORT}}" ]
    connect_timeout: 1s
  - name: dead
    endpoints: [ "127.0.0.1:{{DEAD_PORT}}" ]
    connect_timeout: 500ms
tracing:
  service_name: )" +
                  c.service_name +
                  R"(
  propagators: )" +
                  c.propagators +
                  R"(
  sampler: )" + c.sampler +
                  R"(
  exporter: { protocol: grpc, endpoint: "http://127.0.0.1:{{OTLP_PORT}}", timeout: 2s }
  batch: )" + c.batch +
                  "\n";
  if (!c.ignore.empty()) {
    y += "  ignore: " + c.ignore + "\n";
  }
  y += c.tracing_extra;
  y += "limits: { drain_timeout: " + c.drain_timeout;
  if (!c.limits_extra.empty()) {
    y += ", " + c.limits_extra;
  }
  y += " }\n";
  return y;
}

bool inCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && *ci != '\0' && std::string(ci) != "0" && std::string(ci) != "false";
}

void IntegrationTest::SetUp() {
  if (!std::filesystem::exists(sidetraceBinary())) {
    SKIP_OR_FAIL_IN_CI("sidetrace binary not found at " << sidetraceBinary());
  }
}

void IntegrationTest::TearDown() {
  proc_.finish();
  if (HasFailure()) {
    proc_.keepDir();
    std::cerr << proc_.logs();
  }
}

std::string poolConfigYaml(const std::vector<uint16_t>& endpoints,
                           const std::vector<std::string>& route_yaml,
                           const std::vector<std::string>& cluster_yaml) {
  std::string y = R"(admin: { address: "127.0.0.1:{{ADMIN_PORT}}" }
workers: 1
listeners:
  - name: ingress
    address: "127.0.0.1:{{LISTEN_PORT}}"
    routes:
      - name: api
        match: { prefix: /api }
        cluster: pool
)";
  for (const auto& line : route_yaml) {
    y += "        " + line + "\n";
  }
  y += "clusters:\n  - name: pool\n    endpoints: [ ";
  for (size_t i = 0; i < endpoints.size(); ++i) {
    y += (i ? ", \"127.0.0.1:" : "\"127.0.0.1:") + std::to_string(endpoints[i]) + "\"";
  }
  y += " ]\n    connect_timeout: 500ms\n";
  for (const auto& line : cluster_yaml) {
    y += "    " + line + "\n";
  }
  y += R"(tracing:
  service_name: it-pool
  sampler: { type: parentbased_always_on }
  exporter: { protocol: grpc, endpoint: "http://127.0.0.1:{{OTLP_PORT}}", timeout: 2s }
  batch: { schedule_delay: 100ms }
limits: { drain_timeout: 2s }
)";
  return y;
}

std::map<std::string, std::string> IntegrationTest::vars() const {
  return {{"UPSTREAM_PORT", std::to_string(upstream_.port())},
          {"DEAD_PORT", std::to_string(dead_.port())},
          {"OTLP_PORT", std::to_string(otlp_.port())}};
}

void IntegrationTest::reloadYaml(const std::string& yaml) {
  proc_.writeFile("sidetrace.yaml", yaml, vars());
  auto r = httpRequest(proc_.adminPort(), "POST", "/reload", {}, {}, Millis(15000));
  ASSERT_TRUE(r && r->status == 200) << (r ? r->body : "no answer") << "\n" << proc_.logs();
}

void IntegrationTest::startProxy(const ProxyConfig& c) {
  startProxyYaml(standardConfigYaml(c));
}

void IntegrationTest::startProxyYaml(const std::string& yaml) {
  ASSERT_TRUE(proc_.startWithConfig(yaml, vars())) << "cannot spawn " << sidetraceBinary();
  ASSERT_TRUE(proc_.waitReady()) << "sidetrace not ready (admin /ready != 200)\n" << proc_.logs();
}

void IntegrationTest::stopProxyExpectClean() {
  auto r = proc_.stop();
  EXPECT_TRUE(r.exited) << "sidetrace did not exit within 20s of SIGTERM";
  EXPECT_EQ(r.code, 0) << "exit code after SIGTERM (signal " << r.signal << ")";
}

std::string IntegrationTest::metrics() {
  auto m = httpRequest(proc_.adminPort(), "GET", "/metrics");
  return m ? m->body : "";
}

double IntegrationTest::waitMetric(const std::string& name, const std::string& label, double min,
                                   Millis timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  double v = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    v = metricSum(metrics(), name, label);
    if (v >= min) {
      break;
    }
    std::this_thread::sleep_for(Millis(50));
  }
  return v;
}

std::string python3Path() {
  return std::filesystem::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
}

std::pair<int, std::string> runCommand(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) {
    return {-1, "popen failed"};
  }
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
    out.append(buf, n);
  }
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// Sum of the values of metric lines named `name` whose label set contains `label` ("" = any).
// -1 when no such line exists.
double metricSum(const std::string& text, const std::string& name, const std::string& label) {
  std::istringstream in(text);
  std::string line;
  double sum = -1;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') {
      continue;
    }
    if (line.rfind(name, 0) != 0) {
      continue;
    }
    char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != '{' && next != ' ') {
      continue;  // a longer metric name with the same prefix
    }
    if (!label.empty() && line.find(label) == std::string::npos) {
      continue;
    }
    auto sp = line.rfind(' ');
    sum = (sum < 0 ? 0 : sum) + std::stod(line.substr(sp + 1));
  }
  return sum;
}

bool isLowerHex(const std::string& s, size_t len) {
  if (s.size() != len) {
    return false;
  }
  for (char ch : s) {
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) {
      return false;
    }
  }
  return true;
}

bool isAllZero(const std::string& s) {
  return s.find_first_not_of('0') == std::string::npos;
}

std::optional<Traceparent> Traceparent::parse(const std::string& s) {
  if (s.size() != 55 || s[2] != '-' || s[35] != '-' || s[52] != '-') {
    return std::nullopt;
  }
  Traceparent t{s.substr(0, 2), s.substr(3, 32), s.substr(36, 16), s.substr(53, 2)};
  if (!isLowerHex(t.version, 2) || !isLowerHex(t.trace_id, 32) || !isLowerHex(t.parent_id, 16) ||
      !isLowerHex(t.flags, 2)) {
    return std::nullopt;
  }
  return t;
}

std::vector<FlatSpan> waitSpansSettled(OtlpReceiver& r, size_t n, std::chrono::milliseconds timeout,
                                       std::chrono::milliseconds settle) {
  r.waitForSpans(n, timeout);
  std::this_thread::sleep_for(settle);
  return r.spans();
}

std::string describeAll(const std::vector<FlatSpan>& spans) {
  std::string out = std::to_string(spans.size()) + " span(s):\n";
  for (const auto& s : spans) {
    out += "  " + s.describe() + "\n";
  }
  return out;
}

std::string describeHeaders(const Headers& h) {
  std::string out;
  for (const auto& [k, v] : h) {
    out += "  " + k + ": " + v + "\n";
  }
  return out;
}

}  // namespace sidetrace::it
