// GET /tracez?format=json through the real binary: the recent sampled traces grouped by trace
// id, per-route counts and errors, the latest and failed lists, one trace's spans in full, and
// the memory bound. The JSON is read with protobuf's JSON parser (as google.protobuf.Value), not
// with substring matches.

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/legacy_app.h"

namespace sidetrace::it {
namespace {

using google::protobuf::Value;
using std::chrono::milliseconds;

class TracezTest : public IntegrationTest {
 protected:
  // The standard config with `admin.tracez` set to `tracez` (a YAML flow map).
  void startWithTracez(const std::string& tracez, int workers = 2) {
    ProxyConfig c;
    c.workers = workers;
    std::string yaml = standardConfigYaml(c);
    const std::string admin = R"(admin: { address: "127.0.0.1:{{ADMIN_PORT}}" })";
    ASSERT_NE(yaml.find(admin), std::string::npos);
    yaml.replace(yaml.find(admin), admin.size(),
                 R"(admin: { address: "127.0.0.1:{{ADMIN_PORT}}", tracez: )" + tracez + " }");
    ASSERT_NO_FATAL_FAILURE(startProxyYaml(yaml));
  }

  // GET on the admin port, parsed; the status in `status`.
  Value getJson(const std::string& target, int* status = nullptr) {
    Value v;
    auto r = httpRequest(proc_.adminPort(), "GET", target);
    if (!r) {
      ADD_FAILURE() << "GET " << target << " failed";
      return v;
    }
    if (status != nullptr) {
      *status = r->status;
    }
    auto parsed = google::protobuf::util::JsonStringToMessage(r->body, &v);
    EXPECT_TRUE(parsed.ok()) << parsed.ToString() << "\n" << r->body;
    EXPECT_EQ(r->header("content-type").value_or(""), "application/json");
    return v;
  }

  // Polls until the trace is held with at least `spans` spans (a span reaches the store when
  // it ends, which may be just after the client got its response).
  Value waitTrace(const std::string& trace_id, size_t spans) {
    Value v;
    for (int i = 0; i < 100; ++i) {
      int status = 0;
      v = getJson("/tracez?format=json&trace_id=" + trace_id, &status);
      if (status == 200 && v.struct_value().fields().at("spans").list_value().values_size() >=
                               static_cast<int>(spans)) {
        break;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    return v;
  }
};

const google::protobuf::Map<std::string, Value>& fields(const Value& v) {
  return v.struct_value().fields();
}

std::string str(const Value& v, const std::string& key) {
  auto it = fields(v).find(key);
  return it == fields(v).end() ? "<missing " + key + ">" : it->second.string_value();
}

double num(const Value& v, const std::string& key) {
  auto it = fields(v).find(key);
  return it == fields(v).end() ? -1 : it->second.number_value();
}

const google::protobuf::RepeatedPtrField<Value>& list(const Value& v, const std::string& key) {
  static const Value empty;
  auto it = fields(v).find(key);
  return (it == fields(v).end() ? empty : it->second).list_value().values();
}

bool listHasTrace(const Value& summary, const std::string& key, const std::string& trace_id) {
  for (const auto& t : list(summary, key)) {
    if (str(t, "trace_id") == trace_id) {
      return true;
    }
  }
  return false;
}

std::string traceparent(const std::string& trace_id) {
  return "00-" + trace_id + "-00f067aa0ba902b7-01";
}

TEST_F(TracezTest, JsonGroupsTracesAndSummarizesRoutes) {
  ASSERT_NO_FATAL_FAILURE(startWithTracez("{ max_bytes: 1048576 }"));
  const std::string ok_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  const std::string failed_trace = "5bf92f3577b34da6a3ce929d0e0e4737";
  for (int i = 0; i < 3; ++i) {
    auto r = httpRequest(port(), "GET", "/api/t" + std::to_string(i));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  auto r = httpRequest(port(), "GET", "/api/ok", {{"traceparent", traceparent(ok_trace)}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto bad = httpRequest(port(), "GET", "/dead/x", {{"traceparent", traceparent(failed_trace)}});
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 502);

  // One trace: the SERVER span and the CLIENT span of its attempt, with times and attributes.
  Value trace = waitTrace(ok_trace, 2);
  EXPECT_EQ(str(trace, "trace_id"), ok_trace);
  const auto& spans = list(trace, "spans");
  ASSERT_EQ(spans.size(), 2) << trace.DebugString();
  const Value& server = spans[0];  // by start time: the SERVER span starts first
  const Value& client = spans[1];
  EXPECT_EQ(str(server, "kind"), "SERVER");
  EXPECT_EQ(str(server, "name"), "GET app");
  EXPECT_EQ(str(client, "kind"), "CLIENT");
  EXPECT_EQ(str(client, "parent_span_id"), str(server, "span_id"));
  EXPECT_EQ(str(server, "parent_span_id"), "00f067aa0ba902b7");  // the caller's
  EXPECT_EQ(str(fields(server).at("attributes"), "http.route"), "app");
  EXPECT_EQ(num(fields(server).at("attributes"), "http.response.status_code"), 200);
  EXPECT_GT(std::stoull(str(server, "end_unix_nano")), std::stoull(str(server, "start_unix_nano")));
  EXPECT_GE(num(client, "start_offset_ms"), 0);
  EXPECT_EQ(str(server, "status"), "UNSET");

  Value failed = waitTrace(failed_trace, 2);
  bool client_error = false;
  for (const auto& s : list(failed, "spans")) {
    client_error = client_error || (str(s, "kind") == "CLIENT" && str(s, "status") == "ERROR");
  }
  EXPECT_TRUE(client_error) << failed.DebugString();

  Value summary = getJson("/tracez?format=json");
  EXPECT_TRUE(listHasTrace(summary, "latest", ok_trace)) << summary.DebugString();
  EXPECT_TRUE(listHasTrace(summary, "latest", failed_trace));
  EXPECT_TRUE(listHasTrace(summary, "failed", failed_trace));
  EXPECT_FALSE(listHasTrace(summary, "failed", ok_trace));
  EXPECT_TRUE(listHasTrace(summary, "slowest", ok_trace));
  EXPECT_GE(num(summary, "traces"), 5);
  bool saw_app = false, saw_dead = false;
  for (const auto& route : list(summary, "routes")) {
    if (str(route, "route") == "app") {
      saw_app = true;
      EXPECT_EQ(num(route, "count"), 4);
      EXPECT_EQ(num(route, "errors"), 0);
      EXPECT_GT(num(route, "p50_ms"), 0);
      EXPECT_LE(num(route, "p50_ms"), num(route, "p90_ms"));
      EXPECT_LE(num(route, "p90_ms"), num(route, "p99_ms"));
    } else if (str(route, "route") == "dead") {
      saw_dead = true;
      EXPECT_EQ(num(route, "count"), 1);
      EXPECT_EQ(num(route, "errors"), 1);
    }
  }
  EXPECT_TRUE(saw_app && saw_dead) << summary.DebugString();
  EXPECT_EQ(num(summary, "max_bytes"), 1048576);
  EXPECT_LE(num(summary, "bytes_held"), 1048576);
  EXPECT_GT(num(summary, "bytes_used"), 0);

  int status = 0;
  getJson("/tracez?format=json&trace_id=" + std::string(32, 'a'), &status);
  EXPECT_EQ(status, 404);
  getJson("/tracez?format=json&trace_id=xyz", &status);
  EXPECT_EQ(status, 400);
  stopProxyExpectClean();
}

// Kept when export fails: the collector refuses every export here.
TEST_F(TracezTest, KeptWhenExportFails) {
  otlp_.failNext(1000);
  ASSERT_NO_FATAL_FAILURE(startWithTracez("{ max_bytes: 1048576 }", 1));
  const std::string trace_id = "6bf92f3577b34da6a3ce929d0e0e4738";
  auto r = httpRequest(port(), "GET", "/api/x", {{"traceparent", traceparent(trace_id)}});
  ASSERT_TRUE(r);
  waitMetric("sidetrace_export_requests_total", "outcome=\"failed\"", 1);
  Value trace = waitTrace(trace_id, 2);
  EXPECT_EQ(list(trace, "spans").size(), 2) << trace.DebugString();
  stopProxyExpectClean();
}

// A tiny bound: many requests later the store holds no more than the bound, and the newest
// trace (not the oldest) is what it still has.
TEST_F(TracezTest, MemoryStaysWithinTheBoundAndKeepsTheNewest) {
  ASSERT_NO_FATAL_FAILURE(startWithTracez("{ max_bytes: 16384 }"));
  auto traceId = [](int i) {
    char buf[33];
    std::snprintf(buf, sizeof buf, "7bf92f3577b34da6a3ce9290%08x", i + 1);
    return std::string(buf);
  };
  const int n = 120;
  for (int i = 0; i < n; ++i) {
    auto r = httpRequest(port(), "GET", "/api/b", {{"traceparent", traceparent(traceId(i))}});
    ASSERT_TRUE(r);
  }
  Value newest = waitTrace(traceId(n - 1), 2);
  EXPECT_EQ(list(newest, "spans").size(), 2) << newest.DebugString();
  int status = 0;
  getJson("/tracez?format=json&trace_id=" + traceId(0), &status);
  EXPECT_EQ(status, 404) << "the oldest trace should have been evicted";
  Value summary = getJson("/tracez?format=json");
  EXPECT_LE(num(summary, "bytes_held"), 16384);
  EXPECT_GT(num(summary, "bytes_used"), 0);
  EXPECT_LT(num(summary, "traces"), n);
  EXPECT_EQ(num(summary, "spans_too_large"), 0);
  stopProxyExpectClean();
}

TEST_F(TracezTest, ZeroTurnsItOff) {
  ASSERT_NO_FATAL_FAILURE(startWithTracez("{ max_bytes: 0 }"));
  auto r = httpRequest(proc_.adminPort(), "GET", "/tracez?format=json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  stopProxyExpectClean();
}

// The page in a real browser (headless Chromium, Debian package chromium): it renders the route
// table and the trace lists from the JSON, and #trace=<id> opens the waterfall of that trace's
// SERVER and CLIENT spans. The DOM is dumped after the page's scripts ran (virtual time budget).
std::string chromiumPath() {
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser"}) {
    if (access(p, X_OK) == 0) {
      return p;
    }
  }
  return "";
}

std::string chromium(const std::string& dir, const std::string& args) {
  // Its own profile dir; --no-sandbox: tests may run as root (CI containers).
  auto [code, out] = runCommand(chromiumPath() +
                                " --headless --no-sandbox --disable-gpu --no-first-run"
                                " --user-data-dir=" +
                                dir +
                                "/chromium --window-size=1280,900"
                                " --virtual-time-budget=5000 " +
                                args + " 2>/dev/null");
  EXPECT_EQ(code, 0) << out.substr(0, 2000);
  return out;
}

TEST_F(TracezTest, PageRendersInHeadlessChromium) {
  if (chromiumPath().empty()) {
    SKIP_OR_FAIL_IN_CI("chromium not installed (tests/install-deps.sh installs it)");
  }
  ASSERT_NO_FATAL_FAILURE(startWithTracez("{ max_bytes: 1048576 }"));
  const std::string ok_trace = "8bf92f3577b34da6a3ce929d0e0e4739";
  const std::string failed_trace = "9bf92f3577b34da6a3ce929d0e0e473a";
  auto r = httpRequest(port(), "GET", "/api/page", {{"traceparent", traceparent(ok_trace)}});
  ASSERT_TRUE(r);
  auto bad = httpRequest(port(), "GET", "/dead/page", {{"traceparent", traceparent(failed_trace)}});
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 502);
  waitTrace(ok_trace, 2);
  waitTrace(failed_trace, 2);

  const std::string base = "http://127.0.0.1:" + std::to_string(proc_.adminPort()) + "/tracez";
  const std::string dir = proc_.dir();
  const std::string png = dir + "/tracez.png";
  chromium(dir, "--screenshot=" + png + " " + base);
  std::error_code ec;
  const auto png_size = std::filesystem::file_size(png, ec);
  ASSERT_FALSE(ec) << "no screenshot at " << png;
  EXPECT_GT(png_size, 20000u) << "a rendered page, not a blank one";
  std::ifstream in(png, std::ios::binary);
  char magic[8] = {};
  in.read(magic, 8);
  EXPECT_EQ(std::string(magic + 1, 3), "PNG");

  const std::string dom = chromium(dir, "--dump-dom " + base);
  EXPECT_NE(dom.find("href=\"#trace=" + ok_trace + "\""), std::string::npos) << dom;
  EXPECT_NE(dom.find("href=\"#trace=" + failed_trace + "\""), std::string::npos);
  EXPECT_NE(dom.find("<td>app</td>"), std::string::npos) << "route table";
  EXPECT_NE(dom.find("<td>dead</td>"), std::string::npos);
  EXPECT_NE(dom.find("GET app"), std::string::npos);
  // The page's script says "loaded" when it rendered the summary (the DOM holds the script's
  // own text too, so look for the status line, not for the word "error").
  EXPECT_NE(dom.find("<p id=\"status\" class=\"muted\">loaded "), std::string::npos)
      << "the page's script did not finish: " << dom.substr(dom.find("id=\"status\""), 200);

  // Click-through: the waterfall of the trace (the link's target).
  const std::string trace_dom = chromium(dir, "--dump-dom '" + base + "#trace=" + ok_trace + "'");
  EXPECT_NE(trace_dom.find("id=\"trace-title\" class=\"mono\">" + ok_trace), std::string::npos)
      << trace_dom;
  EXPECT_NE(trace_dom.find("data-kind=\"SERVER\""), std::string::npos) << trace_dom;
  EXPECT_NE(trace_dom.find("data-kind=\"CLIENT\""), std::string::npos);
  EXPECT_NE(trace_dom.find("<span class=\"span-name\">GET app</span>"), std::string::npos);
  EXPECT_NE(trace_dom.find("http.route"), std::string::npos) << "attributes of the spans";
  const std::string failed_dom =
      chromium(dir, "--dump-dom '" + base + "?trace_id=" + failed_trace + "'");
  EXPECT_NE(failed_dom.find("bar CLIENT ERROR"), std::string::npos) << failed_dom;
  stopProxyExpectClean();
}

// One request's whole trace as the view shows it: the SERVER span of the inbound request, a
// CLIENT span per attempt (the first endpoint refuses the connection, the retry reaches the app)
// and the egress CLIENT span of the call the app made through the egress listener while serving
// it, parented on the attempt that reached the app. The app's port is known only once the egress
// port is, so sidetrace starts on a placeholder endpoint and reloads (as EgressTest does).
std::string retryEgressYaml(uint16_t dead_port, uint16_t app_port) {
  return R"(admin: { address: "127.0.0.1:0", tracez: { max_bytes: 1048576 } }
workers: 1
listeners:
  - name: ingress
    address: "127.0.0.1:0"
    routes:
      - name: app
        match: { prefix: / }
        cluster: app
        timeout: 5s
        retry_policy: { retry_on: [ connect-failure ], num_retries: 1 }
clusters:
  - name: app
    endpoints: [ "127.0.0.1:)" +
         std::to_string(dead_port) + R"(", "127.0.0.1:)" + std::to_string(app_port) + R"(" ]
    outlier_detection: { consecutive_5xx: 0, consecutive_connect_failures: 0 }
egress:
  address: "127.0.0.1:0"
tracing:
  service_name: legacy-a
  exporter: { protocol: grpc, endpoint: "http://127.0.0.1:{{OTLP_PORT}}", timeout: 2s }
  batch: { schedule_delay: 100ms }
limits: { drain_timeout: 2s }
)";
}

TEST_F(TracezTest, TraceHoldsServerRetriedAttemptsAndEgressCall) {
  // One worker and round robin from the first endpoint: the request's first attempt goes to the
  // refused port, its retry to the app (RetryTest relies on the same order).
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(retryEgressYaml(dead_.port(), upstream_.port())));
  LegacyApp app(proc_.dir(), upstream_.port(), proc_.listenPort("egress"), false);
  ASSERT_NE(app.port(), 0) << app.error();
  ASSERT_NO_FATAL_FAILURE(reloadYaml(retryEgressYaml(dead_.port(), app.port())));

  const std::string trace_id = "abf92f3577b34da6a3ce929d0e0e473b";
  auto r = httpRequest(port(), "GET", "/plain/w", {{"traceparent", traceparent(trace_id)}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "200 ") << app.logs() << proc_.logs();  // the app's call: 200, empty body

  Value trace = waitTrace(trace_id, 4);
  const auto& spans = list(trace, "spans");
  ASSERT_EQ(spans.size(), 4) << trace.DebugString();
  const Value* server = nullptr;
  const Value* egress = nullptr;
  std::vector<const Value*> attempts;  // in start order: the store sorts spans by start time
  for (const auto& s : spans) {
    EXPECT_TRUE(str(s, "kind") == "SERVER" || str(s, "kind") == "CLIENT") << s.DebugString();
    if (str(s, "kind") == "SERVER") {
      server = &s;
    } else if (fields(fields(s).at("attributes")).count("sidetrace.parent.source") == 1) {
      egress = &s;
    } else {
      attempts.push_back(&s);
    }
  }
  ASSERT_TRUE(server != nullptr && egress != nullptr && attempts.size() == 2)
      << trace.DebugString();

  EXPECT_EQ(str(*server, "name"), "GET app");
  EXPECT_EQ(str(*server, "parent_span_id"), "00f067aa0ba902b7");  // the caller's
  EXPECT_EQ(str(*server, "status"), "UNSET") << "succeeded on retry: not an error";
  for (const Value* a : attempts) {
    EXPECT_EQ(str(*a, "parent_span_id"), str(*server, "span_id")) << a->DebugString();
    EXPECT_EQ(str(*a, "name"), "GET app");
  }
  const Value& failed_attrs = fields(*attempts[0]).at("attributes");
  const Value& retry_attrs = fields(*attempts[1]).at("attributes");
  EXPECT_EQ(str(*attempts[0], "status"), "ERROR") << attempts[0]->DebugString();
  EXPECT_EQ(str(failed_attrs, "error.type"), "connect_failure");
  EXPECT_EQ(num(failed_attrs, "server.port"), dead_.port());
  EXPECT_EQ(str(*attempts[1], "status"), "UNSET") << attempts[1]->DebugString();
  EXPECT_EQ(num(retry_attrs, "http.request.resend_count"), 1);
  EXPECT_EQ(num(retry_attrs, "server.port"), app.port());
  EXPECT_EQ(num(retry_attrs, "http.response.status_code"), 200);

  // The egress call hangs under the hop into the app that caused it, not under the failed one.
  EXPECT_EQ(str(*egress, "name"), "GET");
  EXPECT_EQ(str(*egress, "parent_span_id"), str(*attempts[1], "span_id")) << trace.DebugString();
  EXPECT_EQ(str(*egress, "status"), "UNSET");
  const Value& egress_attrs = fields(*egress).at("attributes");
  EXPECT_NE(str(egress_attrs, "sidetrace.parent.source"), "none");
  EXPECT_EQ(num(egress_attrs, "server.port"), upstream_.port());
  EXPECT_NE(str(egress_attrs, "url.full").find("/from/w"), std::string::npos)
      << egress->DebugString();

  // The waterfall in the browser (when there is one): four rows, the egress call nested two
  // levels deep (16 px per level), under the attempt.
  if (!chromiumPath().empty()) {
    const std::string url =
        "http://127.0.0.1:" + std::to_string(proc_.adminPort()) + "/tracez#trace=" + trace_id;
    const std::string dom = chromium(proc_.dir(), "--dump-dom '" + url + "'");
    size_t rows = 0;
    for (size_t at = dom.find("class=\"row span\""); at != std::string::npos;
         at = dom.find("class=\"row span\"", at + 1)) {
      ++rows;
    }
    EXPECT_EQ(rows, 4u) << dom;
    EXPECT_NE(dom.find("padding-left: 36px;\"><span class=\"muted\">CLIENT </span>"),
              std::string::npos)
        << "the egress row two levels deep: " << dom;
    EXPECT_NE(dom.find("bar CLIENT ERROR"), std::string::npos) << "the failed attempt";
  }
  stopProxyExpectClean();
}

}  // namespace
}  // namespace sidetrace::it
