// Live reload (SIGHUP, POST /reload) and /config_dump: a new config applies to new requests —
// also on connections opened before the reload — while requests in flight finish on the config
// they started with; a config that fails validation, or changes what needs a restart, is refused
// and the running one keeps serving.

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;

// Replaces the one occurrence of `from` in `text`; fails the test if there is not exactly one.
std::string replaceOnce(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << "'" << from << "' not in config";
  if (at == std::string::npos) {
    return text;
  }
  EXPECT_EQ(text.find(from, at + 1), std::string::npos) << "'" << from << "' twice in config";
  return text.replace(at, from.size(), to);
}

class ReloadTest : public IntegrationTest {
 protected:
  // Rewrites the config file the proxy was started with (placeholders expanded as at start).
  void rewriteConfig(const std::string& yaml, std::map<std::string, std::string> extra = {}) {
    auto v = vars();
    for (auto& [k, val] : extra) {
      v[k] = val;
    }
    proc_.writeFile("sidetrace.yaml", yaml, v);
  }
  std::optional<HttpResponse> postReload() {
    return httpRequest(proc_.adminPort(), "POST", "/reload", {}, {}, milliseconds(15000));
  }
  // Polls until GET path on a fresh connection answers `status` (a reload by signal is async).
  bool waitStatus(const std::string& path, int status, milliseconds timeout = milliseconds(5000)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = httpRequest(port(), "GET", path, {}, {}, milliseconds(2000));
      if (r && r->status == status) {
        return true;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    return false;
  }
};

// Standard config with the teapot route replaced by a new direct route and /ping's body changed.
std::string nextConfig(const std::string& base) {
  std::string y = replaceOnce(base, R"(      - name: teapot
        match: { path: /teapot }
        direct_response: { status: 418, body: "short and stout" })",
                              R"(      - name: fresh
        match: { path: /fresh }
        direct_response: { status: 201, body: "fresh" })");
  return replaceOnce(y, R"(body: "pong" })", R"(body: "pong v2" })");
}

TEST_F(ReloadTest, SighupAppliesNewRoutesToOpenConnectionsWhileInFlightRequestsFinish) {
  upstream_.onPrefix("/api/slow-reload", Behavior::stall(milliseconds(1500)));
  const std::string base = standardConfigYaml({});
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(base));

  HttpConnection kept(port());  // established before the reload; must survive it
  ASSERT_TRUE(kept.connected());
  auto before = kept.request("GET", "/ping");
  ASSERT_TRUE(before);
  EXPECT_EQ(before->body, "pong");

  HttpConnection slow(port());
  ASSERT_TRUE(slow.connected());
  ASSERT_TRUE(slow.send(buildRequest("GET", "/api/slow-reload", {})));
  ASSERT_EQ(upstream_.waitForRequests(1, milliseconds(5000)).size(), 1u);

  rewriteConfig(nextConfig(base));
  ASSERT_EQ(::kill(proc_.pid(), SIGHUP), 0);
  ASSERT_TRUE(waitStatus("/fresh", 201)) << "new route not served after SIGHUP\n" << proc_.logs();
  // A 201 shows one worker switched; the reload counts as done once every worker has (the
  // kept connection may sit on another one).
  ASSERT_GE(waitMetric("sidetrace_config_reloads_total", "outcome=\"ok\"", 1), 1);

  // The connection opened before the reload routes by the new config.
  auto fresh = kept.request("GET", "/fresh");
  ASSERT_TRUE(fresh) << kept.lastError();
  EXPECT_EQ(fresh->status, 201);
  EXPECT_EQ(fresh->body, "fresh");
  auto gone = kept.request("GET", "/teapot");
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->status, 404) << "removed route still served";
  auto ping = kept.request("GET", "/ping");
  ASSERT_TRUE(ping);
  EXPECT_EQ(ping->body, "pong v2");

  // The request in flight across the reload completes normally, and is traced.
  auto slow_resp = slow.readResponse(milliseconds(5000));
  ASSERT_TRUE(slow_resp) << slow.lastError();
  EXPECT_EQ(slow_resp->status, 200);
  auto spans = waitSpansSettled(otlp_, 2);
  bool slow_server_span = false;
  for (const auto& s : spans) {
    slow_server_span |= s.kind == 2 && s.str("url.path") == "/api/slow-reload";
  }
  EXPECT_TRUE(slow_server_span) << describeAll(spans);

  waitMetric("sidetrace_downstream_requests_total", "route=\"ping\"", 2);
  std::string text = metrics();
  EXPECT_EQ(metricSum(text, "sidetrace_config_reloads_total", "outcome=\"ok\""), 1.0) << text;
  // The ping route kept its series across the reload: both requests count in it.
  EXPECT_EQ(metricSum(text, "sidetrace_downstream_requests_total", "route=\"ping\""), 2.0) << text;
  EXPECT_NE(proc_.stderrText().find("reload (SIGHUP): applied"), std::string::npos) << proc_.logs();
}

TEST_F(ReloadTest, InvalidConfigIsRefusedWithTheReasonAndTheOldOneKeepsServing) {
  const std::string base = standardConfigYaml({});
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(base));

  // A bad value: refused, naming the file, line and key.
  rewriteConfig(nextConfig(replaceOnce(base, "timeout: 300ms", "timeout: soon")));
  auto r = postReload();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(r->body.find("reload refused"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("sidetrace.yaml:"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("routes[2].timeout"), std::string::npos) << r->body;
  EXPECT_NE(proc_.stderrText().find("routes[2].timeout"), std::string::npos) << proc_.logs();

  // Broken YAML: refused too.
  rewriteConfig("listeners: [ { name: x\n");
  r = postReload();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500) << r->body;

  // A listener address change needs a restart: refused, and the old port keeps serving.
  rewriteConfig(nextConfig(base), {{"LISTEN_PORT", std::to_string(dead_.port())}});
  r = postReload();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(r->body.find("listeners[0].address"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("restart"), std::string::npos) << r->body;

  // Nothing of the refused configs was applied.
  auto tea = httpRequest(port(), "GET", "/teapot");
  ASSERT_TRUE(tea);
  EXPECT_EQ(tea->status, 418);
  auto fresh = httpRequest(port(), "GET", "/fresh");
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->status, 404);
  auto ready = httpRequest(proc_.adminPort(), "GET", "/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);

  // Reload is POST only.
  auto get = httpRequest(proc_.adminPort(), "GET", "/reload");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 405);

  // A valid config afterwards applies.
  rewriteConfig(nextConfig(base));
  r = postReload();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  fresh = httpRequest(port(), "GET", "/fresh");
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->status, 201);

  std::string text = metrics();
  EXPECT_EQ(metricSum(text, "sidetrace_config_reloads_total", "outcome=\"refused\""), 3.0) << text;
  EXPECT_EQ(metricSum(text, "sidetrace_config_reloads_total", "outcome=\"ok\""), 1.0) << text;
}

TEST_F(ReloadTest, SamplerIgnoreRulesAndExporterApplyToNewRequests) {
  ProxyConfig c;
  c.sampler = "{ type: always_on }";
  const std::string base = standardConfigYaml(c);
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(base));
  auto a = httpRequest(port(), "GET", "/api/before");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->status, 200);
  ASSERT_EQ(otlp_.waitForSpans(2, milliseconds(10000)).size(), 2u);

  // New collector, new service name, an ignore rule.
  OtlpReceiver second;
  ProxyConfig c2 = c;
  c2.service_name = "it-svc-v2";
  c2.ignore = "[ { prefix: /api/ignored } ]";
  rewriteConfig(replaceOnce(standardConfigYaml(c2), "{{OTLP_PORT}}", "{{OTLP2_PORT}}"),
                {{"OTLP2_PORT", std::to_string(second.port())}});
  auto r = postReload();
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;

  auto b = httpRequest(port(), "GET", "/api/after");
  ASSERT_TRUE(b);
  auto ig = httpRequest(port(), "GET", "/api/ignored");
  ASSERT_TRUE(ig);
  EXPECT_EQ(ig->status, 200);
  auto spans = waitSpansSettled(second, 2);
  ASSERT_EQ(spans.size(), 2u) << describeAll(spans);
  for (const auto& s : spans) {
    const std::string where = s.kind == 2 ? s.str("url.path") : s.str("url.full");
    EXPECT_NE(where.find("/api/after"), std::string::npos) << s.describe();
    EXPECT_EQ(s.resourceStr("service.name"), "it-svc-v2") << s.describe();
  }
  EXPECT_EQ(otlp_.spans().size(), 2u) << "old collector got spans after the reload\n"
                                      << describeAll(otlp_.spans());
  auto ignored_req = upstream_.waitForRequests(3, milliseconds(2000));
  ASSERT_EQ(ignored_req.size(), 3u);
  EXPECT_FALSE(ignored_req[2].hasHeader("traceparent")) << "ignored path was traced";

  // Sampler off: context still propagates, flagged unsampled; nothing is exported.
  c2.sampler = "{ type: always_off }";
  rewriteConfig(replaceOnce(standardConfigYaml(c2), "{{OTLP_PORT}}", "{{OTLP2_PORT}}"),
                {{"OTLP2_PORT", std::to_string(second.port())}});
  r = postReload();
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->body.find("exporter unchanged"), std::string::npos) << r->body;
  auto off = httpRequest(port(), "GET", "/api/off");
  ASSERT_TRUE(off);
  auto reqs = upstream_.waitForRequests(4, milliseconds(2000));
  ASSERT_EQ(reqs.size(), 4u);
  auto tp = Traceparent::parse(reqs[3].header("traceparent").value_or(""));
  ASSERT_TRUE(tp) << "no traceparent upstream";
  EXPECT_EQ(tp->flags, "00");
  std::this_thread::sleep_for(milliseconds(600));
  EXPECT_EQ(second.spans().size(), 2u) << describeAll(second.spans());

  waitMetric("sidetrace_spans_exported_total", "", 4);
  std::string text = metrics();
  // Pipeline counters survive the exporter swap: 4 spans exported over both collectors.
  EXPECT_EQ(metricSum(text, "sidetrace_spans_exported_total", ""), 4.0) << text;
}

TEST_F(ReloadTest, ClusterEndpointChangeMovesNewRequestsToTheNewEndpoint) {
  const std::string base = standardConfigYaml({});
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(base));
  HttpConnection kept(port());
  ASSERT_TRUE(kept.connected());
  auto a = kept.request("GET", "/api/one");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->status, 200);

  FakeUpstream moved;
  rewriteConfig(base, {{"UPSTREAM_PORT", std::to_string(moved.port())}});
  auto r = postReload();
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  auto b = kept.request("GET", "/api/two");
  ASSERT_TRUE(b) << kept.lastError();
  EXPECT_EQ(b->status, 200);
  auto got = moved.waitForRequests(1, milliseconds(2000));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].target, "/api/two");
  EXPECT_EQ(upstream_.requestCount(), 1u);

  // The cluster's series continues across the reload.
  waitMetric("sidetrace_upstream_responses_total", "cluster=\"app\"", 2);
  std::string text = metrics();
  EXPECT_EQ(metricSum(text, "sidetrace_upstream_responses_total", "cluster=\"app\""), 2.0) << text;
}

// Runs python3 on a script with `input` on stdin; returns (exit code, output).
std::pair<int, std::string> python(const std::string& dir, const std::string& script,
                                   const std::string& input) {
  std::string in_path = dir + "/dump.json";
  std::ofstream(in_path) << input;
  return runCommand(python3Path() + " -c '" + script + "' < " + in_path);
}

TEST_F(ReloadTest, ConfigDumpIsJsonWithSecretsMaskedAndFollowsReloads) {
  const std::string base = replaceOnce(
      standardConfigYaml({}), "{{OTLP_PORT}}\", timeout: 2s }",
      "{{OTLP_PORT}}\", timeout: 2s, headers: { authorization: \"Bearer s3cret-t0ken\" } }");
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(base));
  auto d = httpRequest(proc_.adminPort(), "GET", "/config_dump");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->status, 200);
  EXPECT_EQ(d->header("content-type").value_or(""), "application/json");
  EXPECT_EQ(d->body.find("s3cret"), std::string::npos) << d->body;

  // Python's json module reads it; the fields say what is running.
  const char* script =
      "import json,sys; d=json.load(sys.stdin); l=d[\"listeners\"][0]; "
      "print(l[\"name\"], l[\"routes\"][1][\"name\"], d[\"clusters\"][0][\"name\"], "
      "d[\"tracing\"][\"exporter\"][\"headers\"][\"authorization\"], "
      "d[\"tracing\"][\"service_name\"], d[\"workers\"])";
  auto [code, out] = python(proc_.dir(), script, d->body);
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(out, "ingress teapot app [redacted] it-svc 2\n") << d->body;

  rewriteConfig(nextConfig(base));
  auto r = postReload();
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  d = httpRequest(proc_.adminPort(), "GET", "/config_dump");
  ASSERT_TRUE(d);
  std::tie(code, out) = python(proc_.dir(), script, d->body);
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(out, "ingress fresh app [redacted] it-svc 2\n") << d->body;
}

}  // namespace
}  // namespace sidetrace::it
