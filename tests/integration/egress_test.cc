// The egress listener: a legacy app (tests/integration/legacy_app.py, no tracing code) behind
// the ingress listener calls a second service through the egress listener with the standard
// http_proxy variable, and the outbound CLIENT span must hang under the inbound request that
// caused it — or under none, never under a wrong one. Requests are told apart by path: the app's
// /MODE/NAME becomes its call to /from/NAME.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "tests/integration/child_process.h"
#include "tests/integration/grpc_echo_client.h"
#include "tests/integration/grpc_echo_server.h"
#include "tests/integration/harness.h"
#include "tests/integration/legacy_app.h"

namespace sidetrace::it {
namespace {

class EgressTest : public IntegrationTest {
 protected:
  // Sidetrace with an ingress listener in front of the app, the egress listener, and the app
  // calling upstream_ (the "second service") through it. The app's port is known only once the
  // egress port is, so sidetrace starts on a placeholder cluster first and reloads.
  void startWithApp(bool threaded, const std::string& egress_extra = "") {
    ASSERT_NO_FATAL_FAILURE(startProxyYaml(yaml(upstream_.port(), egress_extra)));
    app_ = std::make_unique<LegacyApp>(proc_.dir(), upstream_.port(), proc_.listenPort("egress"),
                                       threaded);
    ASSERT_NE(app_->port(), 0) << app_->error();
    ASSERT_NO_FATAL_FAILURE(reloadYaml(yaml(app_->port(), egress_extra)));
  }

  std::string yaml(uint16_t app_port, const std::string& egress_extra) {
    return R"(admin: { address: "127.0.0.1:0" }
workers: 2
listeners:
  - name: ingress
    address: "127.0.0.1:0"
    routes:
      - { name: app, match: { prefix: / }, cluster: app }
clusters:
  - name: app
    endpoints: [ "127.0.0.1:)" +
           std::to_string(app_port) + R"(" ]
egress:
  address: "127.0.0.1:0"
)" + egress_extra +
           R"(tracing:
  service_name: legacy-a
  exporter: { protocol: grpc, endpoint: "http://127.0.0.1:{{OTLP_PORT}}", timeout: 2s }
  batch: { schedule_delay: 100ms }
limits: { drain_timeout: 2s }
)";
  }

  // GET /MODE/NAME through the ingress listener; the app's answer ("STATUS BODY" of its call).
  std::string call(const std::string& mode, const std::string& name) {
    auto r = httpRequest(port(), "GET", "/" + mode + "/" + name);
    if (!r) {
      return "no answer";
    }
    return std::to_string(r->status) + " " + r->body;
  }

  // Checks that the egress CLIENT span of /from/NAME is a child of the ingress CLIENT span of
  // /MODE/NAME (the hop into the app), decided by `source`, and that the second service got
  // that egress span as its parent.
  void expectParented(const std::vector<FlatSpan>& spans, const std::string& mode,
                      const std::string& name, const std::string& source) {
    SCOPED_TRACE(mode + "/" + name);
    const FlatSpan* in = clientSpanWithUrl(spans, "/" + mode + "/" + name);
    const FlatSpan* out = clientSpanWithUrl(spans, "/from/" + name);
    ASSERT_TRUE(in != nullptr && out != nullptr) << describeAll(spans);
    EXPECT_EQ(out->trace_id, in->trace_id);
    EXPECT_EQ(out->parent_span_id, in->span_id) << describeAll(spans);
    EXPECT_EQ(out->str("sidetrace.parent.source"), source);
    EXPECT_EQ(out->name, "GET");
    EXPECT_EQ(out->str("server.address"), "127.0.0.1");
    EXPECT_EQ(out->integer("server.port"), upstream_.port());
    EXPECT_EQ(out->integer("http.response.status_code"), 200);
    EXPECT_TRUE(out->links.empty());
    bool seen = false;
    for (const auto& r : upstream_.requests()) {
      if (r.target == "/from/" + name) {
        seen = true;
        EXPECT_EQ(r.header("traceparent").value_or("<missing>"),
                  "00-" + out->trace_id + "-" + out->span_id + "-01");
        EXPECT_EQ(r.header("host").value_or("<missing>"),
                  "127.0.0.1:" + std::to_string(upstream_.port()));
      }
    }
    EXPECT_TRUE(seen) << "the second service never got /from/" << name;
  }

  std::unique_ptr<LegacyApp> app_;
};

// A single-threaded app, one request at a time: each call is the only inbound request in flight.
// (With the process rule on, the default, it decides first: egress_process_test.cc.)
TEST_F(EgressTest, SequentialRequestsParentOnTheirOwnInboundHop) {
  ASSERT_NO_FATAL_FAILURE(startWithApp(false, "  process: false\n"));
  for (std::string name : {"a", "b", "c"}) {
    EXPECT_EQ(call("plain", name), "200 200 ") << app_->logs() << proc_.logs();
  }
  // Per request: ingress SERVER, ingress CLIENT, egress CLIENT.
  auto spans = otlp_.waitForSpans(9, Millis(10000));
  ASSERT_GE(spans.size(), 9u) << describeAll(spans);
  for (std::string name : {"a", "b", "c"}) {
    expectParented(spans, "plain", name, "single_inflight");
  }
  EXPECT_EQ(waitMetric("sidetrace_egress_parent_total", "source=\"single_inflight\"", 3), 3);
  EXPECT_EQ(metricSum(metrics(), "sidetrace_egress_inbound_in_flight", ""), 0);
}

// The app propagates traceparent itself: its context is kept.
TEST_F(EgressTest, PropagatedTraceparentIsKept) {
  ASSERT_NO_FATAL_FAILURE(startWithApp(false));
  EXPECT_EQ(call("tp", "t"), "200 200 ") << app_->logs();
  auto spans = otlp_.waitForSpans(3, Millis(10000));
  expectParented(spans, "tp", "t", "header");
  EXPECT_EQ(waitMetric("sidetrace_egress_parent_total", "source=\"header\"", 1), 1);
}

// Two requests in the app at once, each call carrying its request's x-request-id: each finds its
// own request however the calls interleave.
TEST_F(EgressTest, CopiedRequestIdPicksItsRequestUnderConcurrency) {
  ASSERT_NO_FATAL_FAILURE(startWithApp(true));
  std::string a, b;
  std::thread t([&] { a = call("ridpair", "x"); });
  b = call("ridpair", "y");
  t.join();
  EXPECT_EQ(a, "200 200 ") << app_->logs();
  EXPECT_EQ(b, "200 200 ") << app_->logs();
  auto spans = otlp_.waitForSpans(6, Millis(10000));
  expectParented(spans, "ridpair", "x", "request_id");
  expectParented(spans, "ridpair", "y", "request_id");
}

// Two requests in the app at once and nothing to tell them apart: no parent (a new trace), with
// links to both inbound hops so a person can still navigate. (The app holds both requests until
// both calls are done: were one answered first, the other's call would rightly be
// single_inflight.)
TEST_F(EgressTest, ConcurrentRequestsWithoutIdGetNoParentButLinks) {
  ASSERT_NO_FATAL_FAILURE(startWithApp(true));
  std::string a, b;
  std::thread t([&] { a = call("pair", "p"); });
  b = call("pair", "q");
  t.join();
  EXPECT_EQ(a, "200 200 ") << app_->logs();
  EXPECT_EQ(b, "200 200 ") << app_->logs();
  auto spans = otlp_.waitForSpans(6, Millis(10000));
  const FlatSpan* in_p = clientSpanWithUrl(spans, "/pair/p");
  const FlatSpan* in_q = clientSpanWithUrl(spans, "/pair/q");
  ASSERT_TRUE(in_p != nullptr && in_q != nullptr) << describeAll(spans);
  for (std::string name : {"p", "q"}) {
    const FlatSpan* out = clientSpanWithUrl(spans, "/from/" + name);
    ASSERT_NE(out, nullptr) << describeAll(spans);
    EXPECT_EQ(out->str("sidetrace.parent.source"), "none");
    EXPECT_EQ(out->parent_span_id, "");
    EXPECT_NE(out->trace_id, in_p->trace_id);
    EXPECT_NE(out->trace_id, in_q->trace_id);
    std::vector<std::pair<std::string, std::string>> want{{in_p->trace_id, in_p->span_id},
                                                          {in_q->trace_id, in_q->span_id}};
    auto got = out->links;
    std::sort(got.begin(), got.end());
    std::sort(want.begin(), want.end());
    EXPECT_EQ(got, want) << out->describe();
  }
  EXPECT_EQ(waitMetric("sidetrace_egress_parent_total", "source=\"none\"", 2), 2);
}

// What the egress listener refuses, and a destination that does not resolve.
TEST_F(EgressTest, RefusalsAndUnresolvableDestination) {
  ASSERT_NO_FATAL_FAILURE(
      startProxyYaml(yaml(upstream_.port(), "  allow: [ 127.0.0.1, \"*.invalid\" ]\n")));
  const uint16_t egress = proc_.listenPort("egress");
  const std::string up = "http://127.0.0.1:" + std::to_string(upstream_.port());

  auto ok = httpRequest(egress, "GET", up + "/from/direct?q=1");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  auto got = upstream_.waitForRequests(1, Millis(5000));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].target, "/from/direct?q=1");  // origin-form towards the destination

  auto origin_form = httpRequest(egress, "GET", "/from/x");
  ASSERT_TRUE(origin_form);
  EXPECT_EQ(origin_form->status, 400);
  EXPECT_NE(origin_form->body.find("absolute-form"), std::string::npos) << origin_form->body;

  auto denied = httpRequest(egress, "GET", "http://denied.example.com/x");
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 403);
  EXPECT_NE(denied->body.find("denied.example.com"), std::string::npos) << denied->body;
  EXPECT_EQ(waitMetric("sidetrace_egress_denied_total", "", 1), 1);

  auto unresolved = httpRequest(egress, "GET", "http://no-such-host.invalid:8080/x");
  ASSERT_TRUE(unresolved);
  EXPECT_EQ(unresolved->status, 502);
  EXPECT_EQ(upstream_.requestCount(), 1u);  // none of the refused ones went anywhere

  // The call that could not go still has its CLIENT span, saying why.
  auto spans = otlp_.waitForSpans(2, Millis(10000));
  const FlatSpan* failed = clientSpanWithUrl(spans, "no-such-host.invalid");
  ASSERT_NE(failed, nullptr) << describeAll(spans);
  EXPECT_EQ(failed->str("error.type"), "dns_failure");
  EXPECT_EQ(failed->status_code, 2);
  EXPECT_EQ(failed->str("sidetrace.parent.source"), "none");
}

// A listener whose accept queue is full: the kernel drops further SYNs, so a connection to it
// never comes up (what an unreachable or overloaded host does), on loopback.
class FullBacklogListener {
 public:
  FullBacklogListener() {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listener_, 0) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      return;
    }
    port_ = ntohs(a.sin_port);
    for (int i = 0; i < 3; ++i) {  // fill the queue (backlog 0 holds one) and then some
      const int c = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      ::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a);
      fillers_.push_back(c);
    }
  }
  ~FullBacklogListener() {
    for (int fd : fillers_) {
      ::close(fd);
    }
    ::close(listener_);
  }
  uint16_t port() const { return port_; }

 private:
  int listener_ = -1;
  uint16_t port_ = 0;
  std::vector<int> fillers_;
};

// connect_timeout passing is named as such, on the egress side as on ingress (one mapping): 504,
// error.type connect_timeout (not the request's own `timeout`), counted as an upstream timeout.
TEST_F(EgressTest, ConnectTimeoutIsNamedAsSuchOnBothSides) {
  FullBacklogListener nowhere;
  ASSERT_NE(nowhere.port(), 0);
  std::string y = yaml(nowhere.port(), "  connect_timeout: 300ms\n");
  y.replace(y.find("    endpoints:"), 0, "    connect_timeout: 300ms\n");
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(y));
  const std::string target = "http://127.0.0.1:" + std::to_string(nowhere.port());
  auto in = httpRequest(port(), "GET", "/in/x");
  ASSERT_TRUE(in);
  EXPECT_EQ(in->status, 504);
  auto out = httpRequest(proc_.listenPort("egress"), "GET", target + "/out/y");
  ASSERT_TRUE(out);
  EXPECT_EQ(out->status, 504);
  auto spans = otlp_.waitForSpans(3, Millis(10000));
  for (const char* url : {"/in/x", "/out/y"}) {
    const FlatSpan* s = clientSpanWithUrl(spans, url);
    ASSERT_NE(s, nullptr) << url << "\n" << describeAll(spans);
    EXPECT_EQ(s->str("error.type"), "connect_timeout") << s->describe();
    EXPECT_EQ(s->status_code, 2);
  }
  EXPECT_GE(waitMetric("sidetrace_upstream_timeouts_total", "cluster=\"app\"", 1), 1);
  EXPECT_GE(waitMetric("sidetrace_upstream_timeouts_total", "cluster=\"egress\"", 1), 1);
}

// Zero-config: --egress next to --listen/--upstream.
TEST_F(EgressTest, EgressFlagServesForwardProxyRequests) {
  ASSERT_TRUE(proc_.start(
      {"--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:" + std::to_string(upstream_.port()),
       "--egress", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--otlp-endpoint",
       "http://127.0.0.1:" + std::to_string(otlp_.port())},
      {{"OTEL_BSP_SCHEDULE_DELAY", "100"}}));
  ASSERT_TRUE(proc_.waitReady()) << proc_.logs();
  auto r = httpRequest(proc_.listenPort("egress"), "GET",
                       "http://127.0.0.1:" + std::to_string(upstream_.port()) + "/from/flag");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto spans = otlp_.waitForSpans(1, Millis(10000));
  const FlatSpan* out = clientSpanWithUrl(spans, "/from/flag");
  ASSERT_NE(out, nullptr) << describeAll(spans);
  EXPECT_EQ(out->str("sidetrace.parent.source"), "none");  // nothing in flight
  EXPECT_TRUE(out->links.empty());
}

// HTTP/2 from the app (h2c by prior knowledge, as a gRPC client speaks to a proxy or to a
// destination iptables redirected): :authority names the destination, and the call goes on over
// HTTP/2, so gRPC's streaming, status and trailers come through, each call with its CLIENT span.
TEST_F(EgressTest, GrpcCallFromTheAppGoesOnOverHttp2) {
  EchoServer echo;
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(yaml(upstream_.port(), "  allow: [ 127.0.0.1 ]\n")));
  const std::string egress = "127.0.0.1:" + std::to_string(proc_.listenPort("egress"));
  EchoClient app({.address = egress, .authority = echo.target()});
  auto u = app.unary({.message = "out"});
  ASSERT_TRUE(u.ok()) << u.describe();
  ASSERT_EQ(u.replies.size(), 1u);
  EXPECT_EQ(u.replies[0].message, "out");
  EXPECT_EQ(u.replies[0].authority, echo.target());
  auto st = app.serverStream({.message = "s", .reply_count = 3});
  ASSERT_TRUE(st.ok()) << st.describe();
  EXPECT_EQ(st.replies.size(), 3u);
  auto nf = app.unary({.message = "x", .status_code = 5, .status_message = "nope"});
  EXPECT_EQ(nf.code, 5) << nf.describe();  // NOT_FOUND and its message pass through
  EXPECT_EQ(nf.message, "nope");

  EchoClient denied({.address = egress, .authority = "blocked.example:50051"});
  auto d = denied.unary({.message = "no"});
  EXPECT_EQ(d.code, 7) << d.describe();  // egress.allow's 403 is PERMISSION_DENIED to gRPC

  const auto calls = echo.waitForFinished(3, Millis(5000));
  ASSERT_EQ(calls.size(), 3u);
  for (const auto& c : calls) {
    EXPECT_EQ(c.peer, calls[0].peer) << "one pooled HTTP/2 connection to the destination";
  }
  auto spans = waitSpansSettled(otlp_, 3);
  for (const auto* r : {&u, &st}) {
    const std::string& tp = r->replies.at(0).traceparent;
    ASSERT_EQ(tp.size(), 55u) << "traceparent injected: '" << tp << "'";
    const FlatSpan* c = nullptr;
    for (const auto& sp : spans) {
      c = sp.span_id == tp.substr(36, 16) ? &sp : c;
    }
    ASSERT_NE(c, nullptr) << tp << "\n" << describeAll(spans);
    EXPECT_EQ(tp, "00-" + c->trace_id + "-" + c->span_id + "-01");
    EXPECT_EQ(c->kind, 3);
    EXPECT_EQ(c->str("sidetrace.parent.source"), "none");  // nothing in flight on ingress
    EXPECT_EQ(c->str("server.address"), "127.0.0.1");
    EXPECT_EQ(c->integer("server.port"), echo.port());
  }
  stopProxyExpectClean();
}

// A bad egress block stops the binary with one message naming the key and the line.
TEST_F(EgressTest, BadEgressConfigExitsOneNamingKeyAndLine) {
  std::string bad = proc_.writeFile("bad.yaml", R"(egress:
  address: 127.0.0.1:15002
  allow: [ api.example.com, "a*b" ]
)");
  ASSERT_TRUE(proc_.start({"--config", bad}));
  auto r = proc_.wait();
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.code, 1);
  const std::string err = proc_.stderrText();
  EXPECT_NE(err.find("bad.yaml:3: egress.allow[1]: bad host pattern 'a*b'"), std::string::npos)
      << err;
}

}  // namespace
}  // namespace sidetrace::it
