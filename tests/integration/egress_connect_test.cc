// CONNECT tunnels on the egress listener (HTTPS_PROXY): real clients (curl, Python's http.client
// with set_tunnel) reach a TLS destination on loopback through sidetrace, whose one CLIENT span
// per tunnel names the destination, counts the bytes both ways and takes its parent from the
// inbound requests in flight; refusals (403, 400, 501, 502) and tunnels that end from either side
// or idle, with nothing left open afterwards.

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/h2_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_pki.h"

namespace sidetrace::it {
namespace {

// The CLIENT span named CONNECT whose server.port is `port`.
const FlatSpan* tunnelSpan(const std::vector<FlatSpan>& spans, uint16_t port) {
  for (const auto& s : spans) {
    if (s.kind == 3 && s.name == "CONNECT" && s.integer("server.port") == port) {
      return &s;
    }
  }
  return nullptr;
}

class EgressConnectTest : public IntegrationTest {
 protected:
  void SetUp() override {
    IntegrationTest::SetUp();
    pki_ = makeTestPki(proc_.dir(), "dest", "dest-ca", {"localhost"}, {"127.0.0.1"});
    dest_ = std::make_unique<FakeUpstream>(FakeUpstreamTls{pki_.cert_file, pki_.key_file, "", 0});
    // The app (behind the ingress listener) holds these requests, so they are in flight while
    // the test opens its tunnels.
    upstream_.onPrefix("/inflight", Behavior::stall(Millis(4000)));
  }

  void start(const std::string& egress_extra = "", const std::string& limits = "",
             const std::string& drain_timeout = "2s") {
    ASSERT_NO_FATAL_FAILURE(startProxyYaml(R"(admin: { address: "127.0.0.1:0" }
workers: 2
listeners:
  - name: ingress
    address: "127.0.0.1:0"
    routes:
      - { name: app, match: { prefix: / }, cluster: app }
clusters:
  - name: app
    endpoints: [ "127.0.0.1:)" + std::to_string(upstream_.port()) +
                                           R"(" ]
egress:
  address: "127.0.0.1:0"
)" + egress_extra + R"(tracing:
  service_name: legacy-a
  exporter: { protocol: grpc, endpoint: "http://127.0.0.1:{{OTLP_PORT}}", timeout: 2s }
  batch: { schedule_delay: 100ms }
access_log: { path: "{{DIR}}/access.log", format: json }
limits: { drain_timeout: )" + drain_timeout +
                                           limits + R"( }
)"));
    egress_ = proc_.listenPort("egress");
  }

  // GET /inflight/NAME through the ingress listener on a thread of its own, with x-request-id
  // rid-NAME; returns once sidetrace counts `in_flight` inbound requests at the app.
  void holdInbound(const std::string& name, int in_flight) {
    inbound_.emplace_back([this, name] {
      httpRequest(port(), "GET", "/inflight/" + name, {{"x-request-id", "rid-" + name}});
    });
    ASSERT_GE(waitMetric("sidetrace_egress_inbound_in_flight", "", in_flight), in_flight);
  }
  void releaseInbound() {
    for (auto& t : inbound_) {
      t.join();
    }
    inbound_.clear();
  }
  void TearDown() override {
    releaseInbound();
    IntegrationTest::TearDown();
  }

  // Polls /metrics until `name` sums to exactly `want` (gauges fall once a connection's
  // coroutine ends, just after the peer saw the close); returns the last value.
  double waitMetricEquals(const std::string& name, double want) {
    double v = -1;
    for (int i = 0; i < 200; ++i) {
      v = metricSum(metrics(), name, "");
      if (v == want) {
        break;
      }
      std::this_thread::sleep_for(Millis(50));
    }
    return v;
  }

  // The access log line of the CONNECT to `authority` (the log thread writes it soon after).
  std::string accessLogLine(const std::string& authority) {
    const std::string needle = "\"path\":\"" + authority + "\"";
    for (int i = 0; i < 200; ++i) {
      std::ifstream in(proc_.dir() + "/access.log");
      for (std::string line; std::getline(in, line);) {
        if (line.find("\"method\":\"CONNECT\"") != std::string::npos &&
            line.find(needle) != std::string::npos) {
          return line;
        }
      }
      std::this_thread::sleep_for(Millis(50));
    }
    return "";
  }

  // Sends `request` on a fresh connection to the egress listener; the response head and body
  // until the proxy closes.
  std::string rawExchange(const std::string& request) {
    TcpSocket s;
    if (!s.connect(egress_)) {
      return "<connect failed>";
    }
    s.sendAll(request);
    bool closed = false;
    std::string out = s.readUntilClosed(Millis(10000), &closed);
    return closed ? out : out + "<not closed>";
  }

  std::string dest() const { return "127.0.0.1:" + std::to_string(dest_->port()); }

  TestPki pki_;
  std::unique_ptr<FakeUpstream> dest_;
  uint16_t egress_ = 0;
  std::vector<std::thread> inbound_;
};

// curl with https_proxy: TLS end to end through the tunnel; the tunnel's CLIENT span is a child
// of the one inbound request in flight, names the destination, counts the bytes, and the access
// log and metrics count it as a 200.
TEST_F(EgressConnectTest, CurlReachesATlsDestinationThroughTheTunnel) {
  ASSERT_NO_FATAL_FAILURE(start());
  dest_->on("/curl", Behavior::fixed(200, "hello through the tunnel"));
  ASSERT_NO_FATAL_FAILURE(holdInbound("curl", 1));
  const std::string proxy = "http://127.0.0.1:" + std::to_string(egress_);
  auto [rc, out] = runCommand("env -u no_proxy -u NO_PROXY https_proxy=" + proxy +
                              " HTTPS_PROXY=" + proxy + " curl -sS --max-time 10 --cacert " +
                              pki_.ca_file + " https://" + dest() + "/curl");
  EXPECT_EQ(rc, 0) << out << proc_.logs();
  EXPECT_EQ(out, "hello through the tunnel");
  releaseInbound();

  auto spans = waitSpansSettled(otlp_, 3);
  const FlatSpan* tunnel = tunnelSpan(spans, dest_->port());
  const FlatSpan* hop = clientSpanWithUrl(spans, "/inflight/curl");
  ASSERT_TRUE(tunnel != nullptr && hop != nullptr) << describeAll(spans);
  EXPECT_EQ(tunnel->str("sidetrace.parent.source"), "single_inflight");
  EXPECT_EQ(tunnel->trace_id, hop->trace_id);
  EXPECT_EQ(tunnel->parent_span_id, hop->span_id);
  EXPECT_EQ(tunnel->str("http.request.method"), "CONNECT");
  EXPECT_EQ(tunnel->str("server.address"), "127.0.0.1");
  EXPECT_EQ(tunnel->str("network.peer.address"), "127.0.0.1");
  EXPECT_EQ(tunnel->integer("network.peer.port"), dest_->port());
  EXPECT_EQ(tunnel->integer("http.response.status_code"), 200);
  EXPECT_FALSE(tunnel->has("error.type")) << tunnel->describe();
  EXPECT_FALSE(tunnel->has("url.full"));
  EXPECT_EQ(tunnel->status_code, 0);
  const int64_t sent = tunnel->integer("sidetrace.tunnel.bytes_sent").value_or(-1);
  const int64_t received = tunnel->integer("sidetrace.tunnel.bytes_received").value_or(-1);
  EXPECT_GT(sent, 100) << tunnel->describe();      // a ClientHello and the encrypted request
  EXPECT_GT(received, 500) << tunnel->describe();  // a certificate and the encrypted response
  EXPECT_GT(tunnel->end_ns, tunnel->start_ns);

  // No header injection: the request inside the tunnel arrives as curl sent it.
  auto got = dest_->requests();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].target, "/curl");
  EXPECT_FALSE(got[0].hasHeader("traceparent"));

  const std::string line = accessLogLine(dest());
  EXPECT_NE(line.find("\"status\":200"), std::string::npos) << line;
  EXPECT_NE(line.find("\"bytes_in\":" + std::to_string(sent) + ","), std::string::npos) << line;
  EXPECT_NE(line.find("\"bytes_out\":" + std::to_string(received) + ","), std::string::npos)
      << line;
  EXPECT_NE(line.find("\"span_id\":\"" + tunnel->span_id + "\""), std::string::npos) << line;
  const std::string m = metrics();
  EXPECT_EQ(metricSum(m, "sidetrace_egress_tunnels_total", ""), 1);
  EXPECT_EQ(metricSum(m, "sidetrace_egress_tunnels_active", ""), 0);
  EXPECT_EQ(metricSum(m, "sidetrace_egress_parent_total", "source=\"single_inflight\""), 1);
  EXPECT_EQ(metricSum(m, "sidetrace_downstream_requests_total",
                      "listener=\"egress\",route=\"egress\",status_class=\"2xx\""),
            1);
}

// Python's http.client through set_tunnel, with two inbound requests in flight: the x-request-id
// on the CONNECT request names one of them (the request_id rule; the header rule cannot apply,
// the tunnelled request's headers are encrypted).
TEST_F(EgressConnectTest, PythonSetTunnelParentsOnTheRequestIdItCarries) {
  ASSERT_NO_FATAL_FAILURE(start());
  dest_->on("/python", Behavior::fixed(200, "python body"));
  ASSERT_NO_FATAL_FAILURE(holdInbound("a", 1));
  ASSERT_NO_FATAL_FAILURE(holdInbound("b", 2));
  const std::string script = proc_.writeFile("tunnel_client.py", R"(import http.client, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[3])
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx, timeout=10)
c.set_tunnel("127.0.0.1", int(sys.argv[2]), headers={"x-request-id": "rid-b"})
c.request("GET", "/python")
r = c.getresponse()
print(r.status, r.read().decode(), end="")
c.close()
)");
  auto [rc, out] = runCommand(python3Path() + " " + script + " " + std::to_string(egress_) + " " +
                              std::to_string(dest_->port()) + " " + pki_.ca_file);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "200 python body");
  releaseInbound();

  auto spans = waitSpansSettled(otlp_, 5);
  const FlatSpan* tunnel = tunnelSpan(spans, dest_->port());
  const FlatSpan* hop_b = clientSpanWithUrl(spans, "/inflight/b");
  ASSERT_TRUE(tunnel != nullptr && hop_b != nullptr) << describeAll(spans);
  EXPECT_EQ(tunnel->str("sidetrace.parent.source"), "request_id");
  EXPECT_EQ(tunnel->trace_id, hop_b->trace_id);
  EXPECT_EQ(tunnel->parent_span_id, hop_b->span_id);
  EXPECT_GT(tunnel->integer("sidetrace.tunnel.bytes_sent").value_or(0), 0);
  EXPECT_GT(tunnel->integer("sidetrace.tunnel.bytes_received").value_or(0), 0);
  EXPECT_EQ(waitMetric("sidetrace_egress_parent_total", "source=\"request_id\"", 1), 1);
}

// What the egress listener answers instead of a tunnel, each time closing the connection: 403 for
// a host egress.allow does not list, 502 when the name does not resolve or the connection is
// refused (with a CLIENT span saying why), 400 for targets that are not host:port, 501 for
// CONNECT over HTTP/2. The ingress listener keeps answering CONNECT with 405.
TEST_F(EgressConnectTest, RefusalsAndFailuresAreAnsweredAndClosed) {
  ASSERT_NO_FATAL_FAILURE(start("  allow: [ 127.0.0.1, \"*.invalid\" ]\n"));
  auto connect = [](const std::string& target) {
    return "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n";
  };
  std::string r = rawExchange(connect("denied.example.com:443"));
  EXPECT_TRUE(r.starts_with("HTTP/1.1 403 ")) << r;
  EXPECT_NE(r.find("'denied.example.com' is not allowed"), std::string::npos) << r;
  EXPECT_NE(r.find("Connection: close"), std::string::npos) << r;
  EXPECT_EQ(waitMetric("sidetrace_egress_denied_total", "", 1), 1);

  r = rawExchange(connect("no-such-host.invalid:443"));
  EXPECT_TRUE(r.starts_with("HTTP/1.1 502 ")) << r;
  r = rawExchange(connect("127.0.0.1:" + std::to_string(dead_.port())));
  EXPECT_TRUE(r.starts_with("HTTP/1.1 502 ")) << r;

  for (const std::string bad :
       {"127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "user:pw@127.0.0.1:443", "/path", ":443",
        "127.0.0.1:443/x", "http://127.0.0.1:443"}) {
    r = rawExchange(connect(bad));
    EXPECT_TRUE(r.starts_with("HTTP/1.1 400 ")) << bad << ": " << r;
    EXPECT_NE(r.find("host:port"), std::string::npos) << bad << ": " << r;
    EXPECT_EQ(r.find("<not closed>"), std::string::npos) << bad;
  }

  H2Connection h2(egress_);
  ASSERT_TRUE(h2.connected()) << h2.error();
  H2Request plain_connect;
  plain_connect.method = "CONNECT";
  plain_connect.path = "";
  plain_connect.authority = dest();
  auto h2r = h2.request(plain_connect);
  ASSERT_TRUE(h2r);
  EXPECT_EQ(h2r->status, 501) << h2r->describe();
  EXPECT_NE(h2r->body.find("HTTP/1.1"), std::string::npos) << h2r->body;

  auto ingress = httpRequest(port(), "CONNECT", dest(), {{"Host", dest()}});
  ASSERT_TRUE(ingress);
  EXPECT_EQ(ingress->status, 405);

  // Spans: the two CONNECTs that could not go (refusals before a destination have none), and
  // the ingress SERVER span of the 405.
  auto spans = waitSpansSettled(otlp_, 3);
  const FlatSpan* unresolved = nullptr;
  const FlatSpan* refused = tunnelSpan(spans, dead_.port());
  for (const auto& s : spans) {
    if (s.name == "CONNECT" && s.str("server.address") == "no-such-host.invalid") {
      unresolved = &s;
    }
  }
  ASSERT_TRUE(unresolved != nullptr && refused != nullptr) << describeAll(spans);
  EXPECT_EQ(unresolved->str("error.type"), "dns_failure");
  EXPECT_EQ(unresolved->status_code, 2);
  EXPECT_EQ(refused->str("error.type"), "connect_failure");
  EXPECT_EQ(refused->status_code, 2);
  EXPECT_EQ(refused->str("sidetrace.parent.source"), "none");
  EXPECT_EQ(
      std::count_if(spans.begin(), spans.end(), [](const FlatSpan& s) { return s.kind == 3; }), 2)
      << describeAll(spans);
  const std::string m = metrics();
  EXPECT_EQ(metricSum(m, "sidetrace_egress_tunnels_total", ""), 0);
  EXPECT_EQ(metricSum(m, "sidetrace_upstream_connect_failures_total", "cluster=\"egress\""), 1);
}

// Raw bytes through a tunnel to a plain TCP destination: bytes sent with the CONNECT head go
// first; the destination's close reaches the client, the client's close reaches the destination,
// a tunnel idle for limits.idle_timeout is closed, and one the client aborts is a failed tunnel;
// the spans count exactly the bytes that crossed, and no tunnel or connection is left open.
TEST_F(EgressConnectTest, TunnelEndsWhenEitherSideClosesIdlesOrResets) {
  ASSERT_NO_FATAL_FAILURE(start("", ", idle_timeout: 2s"));
  TcpListener destination;
  ASSERT_TRUE(destination.listen());
  const std::string target = "127.0.0.1:" + std::to_string(destination.port());
  const std::string head = "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n";
  auto open = [&](TcpSocket& client, TcpSocket& server, const std::string& early) {
    ASSERT_TRUE(client.connect(egress_));
    ASSERT_TRUE(client.sendAll(head + early));
    std::string got;
    ASSERT_TRUE(client.readUntil(got, "\r\n\r\n", Millis(10000))) << got << proc_.logs();
    EXPECT_EQ(got, "HTTP/1.1 200 Connection Established\r\n\r\n");
    server = destination.accept(Millis(10000));
    ASSERT_TRUE(server.valid());
  };

  // The destination closes first.
  {
    TcpSocket client, server;
    ASSERT_NO_FATAL_FAILURE(open(client, server, "early"));
    std::string got;
    EXPECT_TRUE(server.readUntil(got, "early", Millis(10000))) << got;
    ASSERT_TRUE(server.sendAll("pong!"));
    got.clear();
    EXPECT_TRUE(client.readUntil(got, "pong!", Millis(10000))) << got;
    server.close();
    bool closed = false;
    EXPECT_EQ(client.readUntilClosed(Millis(10000), &closed), "");
    EXPECT_TRUE(closed);
  }
  // The client closes first.
  {
    TcpSocket client, server;
    ASSERT_NO_FATAL_FAILURE(open(client, server, ""));
    ASSERT_TRUE(client.sendAll("abc"));
    client.close();
    bool closed = false;
    EXPECT_EQ(server.readUntilClosed(Millis(10000), &closed), "abc");
    EXPECT_TRUE(closed);
  }
  // Neither: the idle timeout ends it.
  {
    TcpSocket client, server;
    ASSERT_NO_FATAL_FAILURE(open(client, server, ""));
    EXPECT_TRUE(client.waitClosed(Millis(15000)));
    EXPECT_TRUE(server.waitClosed(Millis(15000)));
  }

  // The client aborts (RST): a failed tunnel.
  {
    TcpSocket client, server;
    ASSERT_NO_FATAL_FAILURE(open(client, server, ""));
    const linger abort_on_close{1, 0};
    ASSERT_EQ(
        ::setsockopt(client.fd(), SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close),
        0);
    client.close();
    EXPECT_TRUE(server.waitClosed(Millis(10000)));
  }

  EXPECT_EQ(waitMetricEquals("sidetrace_egress_tunnels_active", 0), 0);
  EXPECT_EQ(waitMetricEquals("sidetrace_downstream_connections_active", 0), 0);
  EXPECT_EQ(metricSum(metrics(), "sidetrace_egress_tunnels_total", ""), 4);

  auto spans = waitSpansSettled(otlp_, 4);
  ASSERT_EQ(spans.size(), 4u) << describeAll(spans);
  std::sort(spans.begin(), spans.end(),
            [](const FlatSpan& a, const FlatSpan& b) { return a.start_ns < b.start_ns; });
  for (const auto& s : spans) {
    EXPECT_EQ(s.name, "CONNECT");
    EXPECT_EQ(s.integer("server.port"), destination.port());
  }
  EXPECT_EQ(spans[0].integer("sidetrace.tunnel.bytes_sent"), 5) << spans[0].describe();
  EXPECT_EQ(spans[0].integer("sidetrace.tunnel.bytes_received"), 5) << spans[0].describe();
  EXPECT_FALSE(spans[0].has("error.type")) << spans[0].describe();
  EXPECT_EQ(spans[1].integer("sidetrace.tunnel.bytes_sent"), 3) << spans[1].describe();
  EXPECT_EQ(spans[1].integer("sidetrace.tunnel.bytes_received"), 0) << spans[1].describe();
  EXPECT_FALSE(spans[1].has("error.type")) << spans[1].describe();
  EXPECT_EQ(spans[2].str("error.type"), "timeout") << spans[2].describe();
  EXPECT_EQ(spans[2].status_code, 2);
  EXPECT_EQ(spans[3].str("error.type"), "reset") << spans[3].describe();
  EXPECT_EQ(spans[3].status_code, 2);
}

// A tunnel still open when the drain timeout ends is cut, but ends the usual way: both legs
// closed, its CONNECT span exported with the bytes it carried, its access log line written.
TEST_F(EgressConnectTest, TunnelCutAtTheDrainTimeoutKeepsItsSpanAndLogLine) {
  ASSERT_NO_FATAL_FAILURE(start("", "", "500ms"));
  TcpListener destination;
  ASSERT_TRUE(destination.listen());
  const std::string target = "127.0.0.1:" + std::to_string(destination.port());
  TcpSocket client;
  ASSERT_TRUE(client.connect(egress_));
  ASSERT_TRUE(
      client.sendAll("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\nping"));
  std::string got;
  ASSERT_TRUE(client.readUntil(got, "\r\n\r\n", Millis(10000))) << got << proc_.logs();
  TcpSocket server = destination.accept(Millis(10000));
  ASSERT_TRUE(server.valid());
  got.clear();
  ASSERT_TRUE(server.readUntil(got, "ping", Millis(10000))) << got;

  ASSERT_EQ(::kill(proc_.pid(), SIGTERM), 0);
  EXPECT_TRUE(client.waitClosed(Millis(5000)));
  EXPECT_TRUE(server.waitClosed(Millis(5000)));
  auto exit = proc_.wait(Millis(10000));
  EXPECT_TRUE(exit.exited);
  EXPECT_EQ(exit.code, 0) << proc_.logs();
  auto spans = otlp_.waitForSpans(1, Millis(3000));
  const FlatSpan* tunnel = tunnelSpan(spans, destination.port());
  ASSERT_NE(tunnel, nullptr) << describeAll(spans) << proc_.logs();
  EXPECT_EQ(tunnel->integer("sidetrace.tunnel.bytes_sent"), 4) << tunnel->describe();
  EXPECT_NE(accessLogLine(target), "") << "the tunnel's access log line";
}

}  // namespace
}  // namespace sidetrace::it
