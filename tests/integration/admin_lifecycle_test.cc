// Admin endpoints, graceful shutdown with span flush, zero-config flags, config validation.

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;

class AdminLifecycleTest : public IntegrationTest {};

// 9. Admin.
TEST_F(AdminLifecycleTest, ReadyAndMetrics) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  auto ready = httpRequest(proc_.adminPort(), "GET", "/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);

  for (int i = 0; i < 3; ++i) {
    auto r = httpRequest(port(), "GET", "/api/m" + std::to_string(i));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  auto spans = otlp_.waitForSpans(6, milliseconds(10000));
  ASSERT_GE(spans.size(), 6u);

  // The exporter counts after the RPC returns: poll briefly.
  std::string text;
  double exported = -1;
  for (int i = 0; i < 40 && exported < 6; ++i) {
    auto m = httpRequest(proc_.adminPort(), "GET", "/metrics");
    ASSERT_TRUE(m);
    ASSERT_EQ(m->status, 200);
    EXPECT_EQ(m->header("content-type").value_or("").rfind("text/plain", 0), 0u)
        << m->header("content-type").value_or("<missing>");
    text = m->body;
    exported = metricSum(text, "sidetrace_spans_exported_total", "");
    if (exported < 6) {
      std::this_thread::sleep_for(milliseconds(50));
    }
  }
  SCOPED_TRACE("/metrics:\n" + text.substr(0, 8000));
  EXPECT_GE(metricSum(text, "sidetrace_downstream_requests_total", "status_class=\"2xx\""), 3.0);
  EXPECT_NE(text.find("# TYPE sidetrace_downstream_requests_total counter"), std::string::npos);
  EXPECT_GE(exported, 6.0);
  // Each worker counts the spans it starts (two workers here): the metric is their sum, a SERVER
  // and a CLIENT span per request.
  EXPECT_EQ(metricSum(text, "sidetrace_spans_started_total", ""), 6.0);
}

// 10. Shutdown flushes the span queue.
TEST_F(AdminLifecycleTest, SigtermFlushesQueuedSpans) {
  ProxyConfig cfg;
  cfg.batch = "{ schedule_delay: 60s }";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  for (int i = 0; i < 2; ++i) {
    auto r = httpRequest(port(), "GET", "/api/flush" + std::to_string(i));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(otlp_.spans().size(), 0u) << "spans exported before the 60s schedule delay";
  auto exit = proc_.stop();
  EXPECT_TRUE(exit.exited);
  EXPECT_EQ(exit.code, 0) << "signal " << exit.signal;
  auto spans = otlp_.waitForSpans(4, milliseconds(2000));
  EXPECT_EQ(spans.size(), 4u) << describeAll(spans);
}

// 11. Zero-config.
TEST_F(AdminLifecycleTest, ZeroConfigFlagsProxyAndExport) {
  ASSERT_TRUE(proc_.start(
      {"--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:" + std::to_string(upstream_.port()),
       "--otlp-endpoint", otlp_.endpoint(), "--admin", "127.0.0.1:0", "--service-name", "zc",
       "--workers", "1"},
      {{"OTEL_BSP_SCHEDULE_DELAY", "200"}}));
  ASSERT_TRUE(proc_.waitReady()) << proc_.logs();
  auto r = httpRequest(proc_.listenPort(), "GET", "/anything/here?q=1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].target, "/anything/here?q=1");
  EXPECT_TRUE(reqs[0].hasHeader("traceparent"));
  auto spans = otlp_.waitForSpans(2, milliseconds(10000));
  ASSERT_GE(spans.size(), 2u) << describeAll(spans);
  for (const auto& s : spans) {
    EXPECT_EQ(s.resourceStr("service.name"), "zc") << s.describe();
  }
}

// 12. Config validation.
TEST_F(AdminLifecycleTest, ValidateRejectsUnknownKeyWithLine) {
  std::string bad = proc_.writeFile("bad.yaml", R"(admin: { address: "127.0.0.1:{{ADMIN_PORT}}" }
listeners:
  - name: ingress
    address: "127.0.0.1:{{LISTEN_PORT}}"
    routes:
      - match: { prefix: / }
        cluster: app
        bogus_route_key: 1
clusters:
  - name: app
    endpoints: [ "127.0.0.1:1" ]
)");
  ASSERT_TRUE(proc_.start({"--validate", "--config", bad}));
  auto r = proc_.wait();
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.code, 1);
  std::string err = proc_.stderrText();
  EXPECT_NE(err.find("bogus_route_key"), std::string::npos) << err;
  EXPECT_NE(err.find(":8"), std::string::npos) << "line 8 not named: " << err;
}

TEST_F(AdminLifecycleTest, ValidateAcceptsGoodConfig) {
  std::string good = proc_.writeFile("good.yaml", standardConfigYaml({}), vars());
  ASSERT_TRUE(proc_.start({"--validate", "--config", good}));
  auto r = proc_.wait();
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.code, 0) << proc_.stderrText();
  // --validate must not start serving: nothing was bound, so no ports were reported.
  EXPECT_FALSE(std::filesystem::exists(proc_.portsFile())) << proc_.logs();
}

// --version names the allocator that serves malloc: mimalloc in the plain build (linked ahead of
// libc, so it must have won the symbol lookup), the system's under a sanitizer (whose own
// allocator replaces it).
TEST_F(AdminLifecycleTest, VersionNamesTheAllocatorInUse) {
  ASSERT_TRUE(proc_.start({"--version"}));
  auto r = proc_.wait();
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.code, 0) << proc_.stderrText();
  const std::string out = proc_.stdoutText();
  EXPECT_EQ(out.rfind("sidetrace ", 0), 0u) << out;
  if (binarySanitizer() == Sanitizer::none) {
    EXPECT_NE(out.find("\nallocator: mimalloc 2."), std::string::npos) << out;
  } else {
    EXPECT_NE(out.find("\nallocator: system\n"), std::string::npos) << out;
  }
}

TEST_F(AdminLifecycleTest, PortInUseExits2) {
  TcpListener busy;
  ASSERT_TRUE(busy.listen(0));
  auto v = vars();
  v["LISTEN_PORT"] = std::to_string(busy.port());
  ASSERT_TRUE(proc_.startWithConfig(standardConfigYaml({}), v));
  auto r = proc_.wait(milliseconds(10000));
  EXPECT_TRUE(r.exited) << "still running with its listen port taken";
  EXPECT_EQ(r.code, 2) << proc_.stderrText();
}

}  // namespace
}  // namespace sidetrace::it

namespace sidetrace::it {
namespace {

// Graceful drain as a rolling deploy sees it: a slow request in flight across SIGTERM completes
// (with Connection: close) and its spans are exported; /ready turns 503; idle keep-alive
// connections are closed; new connections are refused; the process exits 0.
TEST_F(AdminLifecycleTest, SigtermDrainsInFlightRequestAndExportsItsSpans) {
  upstream_.onPrefix("/api/slow-drain", Behavior::stall(milliseconds(1200)));
  ProxyConfig cfg;
  cfg.batch = "{ schedule_delay: 60s }";  // only the shutdown flush can export these spans
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));

  HttpConnection idle(port());
  ASSERT_TRUE(idle.connected());
  auto first = idle.request("GET", "/api/warm");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 200);

  HttpConnection slow(port());
  ASSERT_TRUE(slow.connected());
  ASSERT_TRUE(slow.send(buildRequest("GET", "/api/slow-drain", {})));
  ASSERT_EQ(upstream_.waitForRequests(2, milliseconds(5000)).size(), 2u);

  ASSERT_EQ(::kill(proc_.pid(), SIGTERM), 0);
  // While the slow request is in flight: not ready, idle connection closed, no new connections.
  bool not_ready = false;
  for (int i = 0; i < 40 && !not_ready; ++i) {
    auto ready = httpRequest(proc_.adminPort(), "GET", "/ready", {}, {}, milliseconds(500));
    not_ready = ready && ready->status == 503;
    if (!not_ready) {
      std::this_thread::sleep_for(milliseconds(10));
    }
  }
  EXPECT_TRUE(not_ready) << "/ready must answer 503 while draining";
  EXPECT_TRUE(idle.waitClosed(milliseconds(1000))) << "idle keep-alive connection left open";
  // Each worker closes its own SO_REUSEPORT listener when it runs the drain it was posted; a loaded
  // machine may schedule one a little after the other, so allow a moment before all refuse.
  bool refused = false;
  for (int i = 0; i < 50 && !refused; ++i) {
    TcpSocket late;
    refused = !late.connect(port(), milliseconds(300));
    if (!refused) {
      std::this_thread::sleep_for(milliseconds(10));
    }
  }
  EXPECT_TRUE(refused) << "listener still accepting";

  auto r = slow.readResponse(milliseconds(5000));
  ASSERT_TRUE(r) << slow.lastError();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("connection").value_or("<missing>"), "close");

  auto exit = proc_.wait(milliseconds(10000));
  EXPECT_TRUE(exit.exited);
  EXPECT_EQ(exit.code, 0) << "signal " << exit.signal << "\n" << proc_.logs();
  auto spans = otlp_.waitForSpans(4, milliseconds(3000));
  size_t slow_spans = 0;
  for (const auto& s : spans) {
    slow_spans += s.str("url.path") == "/api/slow-drain" ||
                  s.str("url.full").find("/api/slow-drain") != std::string::npos;
  }
  EXPECT_EQ(slow_spans, 2u) << "SERVER and CLIENT span of the drained request\n"
                            << describeAll(spans);
}

// A request still in flight when the drain timeout ends is cut: its connection is closed, and its
// SERVER and CLIENT spans (marked as errors) are still exported and its access log line written —
// the exchange ends the usual way when its socket fails, instead of being destroyed with the loop.
TEST_F(AdminLifecycleTest, DrainTimeoutCutsInFlightRequestButKeepsItsSpans) {
  upstream_.onPrefix("/api/stuck", Behavior::stall(milliseconds(15000)));
  ProxyConfig cfg;
  cfg.batch = "{ schedule_delay: 60s }";  // only the shutdown flush can export these spans
  cfg.drain_timeout = "500ms";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  HttpConnection stuck(port());
  ASSERT_TRUE(stuck.connected());
  ASSERT_TRUE(stuck.send(buildRequest("GET", "/api/stuck", {})));
  ASSERT_EQ(upstream_.waitForRequests(1, milliseconds(5000)).size(), 1u);
  ASSERT_EQ(::kill(proc_.pid(), SIGTERM), 0);
  EXPECT_TRUE(stuck.waitClosed(milliseconds(5000))) << "cut at the drain timeout";
  auto exit = proc_.wait(milliseconds(10000));
  EXPECT_TRUE(exit.exited);
  EXPECT_EQ(exit.code, 0) << "signal " << exit.signal << "\n" << proc_.logs();
  auto spans = otlp_.waitForSpans(2, milliseconds(3000));
  const FlatSpan* server = nullptr;
  const FlatSpan* client = nullptr;
  for (const auto& sp : spans) {
    if (sp.str("url.path") == "/api/stuck") {
      server = &sp;
    } else if (sp.str("url.full").find("/api/stuck") != std::string::npos) {
      client = &sp;
    }
  }
  ASSERT_TRUE(server != nullptr && client != nullptr) << describeAll(spans) << proc_.logs();
  EXPECT_EQ(client->parent_span_id, server->span_id);
  EXPECT_EQ(client->status_code, 2) << client->describe();
  EXPECT_NE(proc_.logs().find("drain timeout: closing 1 connection"), std::string::npos)
      << proc_.logs();
}

}  // namespace
}  // namespace sidetrace::it
