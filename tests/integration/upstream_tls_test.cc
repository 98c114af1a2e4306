// TLS towards upstream clusters (clusters[].tls): verification against ca_file with the SNI name,
// the endpoint's DNS name or its IP; refused certificates as 502 connect failures (span, metric,
// log); insecure_skip_verify; client certificates; keep-alive and session resumption over TLS; a
// WebSocket tunnel; bad files at start and on reload. The origin is a FakeUpstream in TLS mode.

#include <openssl/ssl.h>

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/test_pki.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;

const char* kHandshakeFailures = "sidetrace_upstream_tls_handshake_failures_total";

struct ClusterSpec {
  std::string name;      // also the route prefix: /<name>... goes to this cluster
  std::string endpoint;  // host:port
  std::string tls;       // YAML flow map, "" = plain
};

class UpstreamTlsTest : public IntegrationTest {
 protected:
  void SetUp() override {
    IntegrationTest::SetUp();
    // The origin's certificate names a DNS name, localhost and the loopback IP.
    pki_ = makeTestPki(proc_.dir(), "origin", "origin-ca", {"upstream.test", "localhost"},
                       {"127.0.0.1"});
    rogue_ = makeTestPki(proc_.dir(), "rogue", "rogue-ca", {"upstream.test", "localhost"},
                         {"127.0.0.1"});
  }

  std::unique_ptr<FakeUpstream> startOrigin(const std::string& client_ca = "",
                                            int max_version = 0) {
    return std::make_unique<FakeUpstream>(
        FakeUpstreamTls{pki_.cert_file, pki_.key_file, client_ca, max_version});
  }

  // One listener, workers: 1 (so one downstream connection's requests share one pool); route
  // prefix /<name> → cluster <name> for each spec.
  static std::string config(const std::vector<ClusterSpec>& clusters,
                            const std::string& extra = "") {
    std::string y =
        "admin: { address: \"127.0.0.1:{{ADMIN_PORT}}\" }\n"
        "workers: 1\n"
        "listeners:\n"
        "  - name: ingress\n"
        "    address: \"127.0.0.1:{{LISTEN_PORT}}\"\n"
        "    routes:\n";
    for (const auto& c : clusters) {
      y += "      - { name: " + c.name + ", match: { prefix: /" + c.name +
           " }, cluster: " + c.name + " }\n";
    }
    y += "clusters:\n";
    for (const auto& c : clusters) {
      y += "  - { name: " + c.name + ", endpoints: [ \"" + c.endpoint +
           "\" ], connect_timeout: 2s" + (c.tls.empty() ? "" : ", tls: " + c.tls) + " }\n";
    }
    y += "tracing:\n"
         "  service_name: it-svc\n"
         "  exporter: { protocol: grpc, endpoint: \"http://127.0.0.1:{{OTLP_PORT}}\", timeout: 2s "
         "}\n"
         "  batch: { schedule_delay: 100ms }\n"
         "limits: { drain_timeout: 2s }\n";
    return y + extra;
  }

  static std::string at(const FakeUpstream& u, const std::string& host = "127.0.0.1") {
    return host + ":" + std::to_string(u.port());
  }
  std::string ca() const { return "ca_file: \"" + pki_.ca_file + "\""; }

  // The CLIENT span of the (one) request sent to `cluster`.
  static const FlatSpan* clientSpan(const std::vector<FlatSpan>& spans,
                                    const std::string& cluster) {
    for (const auto& s : spans) {
      if (s.kind == 3 && s.str("sidetrace.cluster") == cluster) {
        return &s;
      }
    }
    return nullptr;
  }

  void keepAliveAndResumption(int max_version);

  TestPki pki_;
  TestPki rogue_;
};

// (1) Verified against ca_file: the sni: name is sent and checked; an endpoint given by DNS name
// sends that name; an IP endpoint sends no SNI and its certificate must name the IP. ALPN offers
// http/1.1. A client without Host gets the TLS name as Host.
TEST_F(UpstreamTlsTest, VerifiedConnectionsSendTheRightServerName) {
  auto origin = startOrigin();
  ASSERT_NO_FATAL_FAILURE(
      startProxyYaml(config({{"sni", at(*origin), "{ " + ca() + ", sni: upstream.test }"},
                             {"dns", at(*origin, "localhost"), "{ " + ca() + " }"},
                             {"ip", at(*origin), "{ " + ca() + " }"}})));
  for (const std::string path : {"/sni/a", "/dns/b", "/ip/c"}) {
    auto r = httpRequest(port(), "GET", path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 200) << path << ": " << r->body << "\n" << proc_.logs();
    EXPECT_EQ(r->header("x-echo-target").value_or(""), path);
  }
  HttpConnection old_client(port());
  ASSERT_TRUE(old_client.send(buildRequest("GET", "/sni/http10", {}, {}, "HTTP/1.0", false)));
  auto r10 = old_client.readResponse();
  ASSERT_TRUE(r10) << old_client.lastError();
  EXPECT_EQ(r10->status, 200);

  auto reqs = origin->waitForRequests(4, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 4u);
  std::map<std::string, RecordedRequest> by_path;
  for (const auto& q : reqs) {
    by_path[q.target] = q;
  }
  EXPECT_EQ(by_path["/sni/a"].tls_sni, "upstream.test");
  EXPECT_EQ(by_path["/dns/b"].tls_sni, "localhost");
  EXPECT_EQ(by_path["/ip/c"].tls_sni, "") << "no SNI for an IP literal";
  for (const auto& q : reqs) {
    EXPECT_EQ(q.tls_alpn_offered, "http/1.1") << q.target;
    EXPECT_EQ(q.tls_alpn, "http/1.1") << q.target;
  }
  EXPECT_EQ(by_path["/sni/http10"].header("host").value_or("<missing>"),
            "upstream.test:" + std::to_string(origin->port()));
  EXPECT_EQ(origin->tlsHandshakeFailures(), 0u);
  EXPECT_EQ(metricSum(metrics(), kHandshakeFailures, "cluster=\"sni\""), 0);
  stopProxyExpectClean();
}

// (2) A certificate from another CA, a name mismatch, an IP the certificate does not name, and a
// plain HTTP origin each fail the handshake: 502, CLIENT span error.type connect_failure, counted
// per cluster, logged at debug with the reason.
TEST_F(UpstreamTlsTest, RefusedCertificatesAre502ConnectFailures) {
  auto origin = startOrigin();
  TestPki dns_only = makeTestPki(proc_.dir(), "dnsonly", "origin-ca2", {"upstream.test"}, {});
  FakeUpstream dns_only_origin(FakeUpstreamTls{dns_only.cert_file, dns_only.key_file, "", 0});
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(config(
      {{"wrongca", at(*origin), "{ ca_file: \"" + rogue_.ca_file + "\", sni: upstream.test }"},
       {"mismatch", at(*origin), "{ " + ca() + ", sni: wrong.test }"},
       {"noip", at(dns_only_origin), "{ ca_file: \"" + dns_only.ca_file + "\" }"},
       {"plain", at(upstream_), "{ " + ca() + " }"}},
      "log_level: debug\n")));
  const std::vector<std::string> names = {"wrongca", "mismatch", "noip", "plain"};
  for (const auto& name : names) {
    auto r = httpRequest(port(), "GET", "/" + name + "/x");
    ASSERT_TRUE(r) << name;
    EXPECT_EQ(r->status, 502) << name << ": " << r->body;
  }
  EXPECT_EQ(origin->requestCount(), 0u);
  EXPECT_EQ(dns_only_origin.requestCount(), 0u);
  EXPECT_EQ(upstream_.requestCount(), 0u) << "the plain origin got no request";

  auto spans = waitSpansSettled(otlp_, 2 * names.size());
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    const FlatSpan* s = clientSpan(spans, name);
    ASSERT_NE(s, nullptr) << describeAll(spans);
    EXPECT_EQ(s->str("error.type"), "connect_failure") << s->describe();
    EXPECT_EQ(s->status_code, 2);
    EXPECT_GE(waitMetric(kHandshakeFailures, "cluster=\"" + name + "\"", 1), 1);
    EXPECT_GE(
        waitMetric("sidetrace_upstream_connect_failures_total", "cluster=\"" + name + "\"", 1), 1);
  }
  stopProxyExpectClean();
  const std::string err = proc_.stderrText();
  for (const auto& name : names) {
    EXPECT_NE(err.find("cluster '" + name + "': TLS handshake with 127.0.0.1"), std::string::npos)
        << name << "\n"
        << err;
  }
  EXPECT_NE(err.find("certificate verify failed"), std::string::npos) << err;
  EXPECT_NE(err.find("hostname mismatch"), std::string::npos) << err;
  EXPECT_NE(err.find("IP address mismatch"), std::string::npos) << err;
}

// (3) insecure_skip_verify accepts a certificate from an unknown CA for the wrong name, and says
// so in a warning at start.
TEST_F(UpstreamTlsTest, InsecureSkipVerifyAcceptsAnyCertificate) {
  auto origin = startOrigin();
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(config(
      {{"lax", at(*origin),
        "{ ca_file: \"" + rogue_.ca_file + "\", sni: wrong.test, insecure_skip_verify: true }"}})));
  auto r = httpRequest(port(), "GET", "/lax/x");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  auto reqs = origin->waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].tls_sni, "wrong.test");
  stopProxyExpectClean();
  EXPECT_NE(proc_.stderrText().find("clusters[0].tls.insecure_skip_verify"), std::string::npos)
      << proc_.stderrText();
}

// (4) An origin that requires a client certificate: the cluster's cert/key gets through; without
// one the exchange fails with a 502 (TLS 1.3 reports the refusal after the client's handshake
// is done, so that one is a reset, not a handshake failure).
TEST_F(UpstreamTlsTest, ClientCertificateForUpstreamsThatRequireOne) {
  TestPki client =
      makeTestPki(proc_.dir(), "client", "client-ca", {"sidetrace-client"}, {}, "clientAuth");
  auto origin = startOrigin(client.ca_file);
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(config(
      {{"withcert", at(*origin),
        "{ " + ca() + ", cert: \"" + client.cert_file + "\", key: \"" + client.key_file + "\" }"},
       {"nocert", at(*origin), "{ " + ca() + " }"}})));
  auto ok = httpRequest(port(), "GET", "/withcert/x");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  auto refused = httpRequest(port(), "GET", "/nocert/x");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 502) << refused->body;

  auto reqs = origin->waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].target, "/withcert/x");
  EXPECT_EQ(reqs[0].tls_client_cn, "sidetrace-client");
  // The origin's thread counts its failed accept on its own time (with TLS 1.3 after the proxy
  // already saw the reset and answered): wait for it rather than race it.
  for (int i = 0; i < 100 && origin->tlsHandshakeFailures() < 1; ++i) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_GE(origin->tlsHandshakeFailures(), 1u);
  stopProxyExpectClean();
}

// (5) Keep-alive over TLS: two requests share one upstream connection. After the origin closes it,
// the next connection resumes the TLS session. `max_version`: the origin's highest TLS version.
void UpstreamTlsTest::keepAliveAndResumption(int max_version) {
  auto origin = startOrigin("", max_version);
  origin->onPrefix("/app/close", Behavior::fixed(200, "bye", {{"Connection", "close"}}));
  ASSERT_NO_FATAL_FAILURE(
      startProxyYaml(config({{"app", at(*origin), "{ " + ca() + ", sni: upstream.test }"}})));
  HttpConnection c(port());
  for (const std::string path : {"/app/1", "/app/2", "/app/close", "/app/3"}) {
    auto r = c.request("GET", path);
    ASSERT_TRUE(r) << path << ": " << c.lastError();
    EXPECT_EQ(r->status, 200) << path;
  }
  auto reqs = origin->waitForRequests(4, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 4u);
  EXPECT_EQ(reqs[0].connection_id, reqs[1].connection_id) << "keep-alive over TLS";
  EXPECT_EQ(reqs[1].connection_id, reqs[2].connection_id);
  EXPECT_NE(reqs[3].connection_id, reqs[2].connection_id) << "the origin closed that one";
  EXPECT_EQ(origin->connectionCount(), 2u);
  EXPECT_FALSE(reqs[0].tls_resumed);
  EXPECT_TRUE(reqs[3].tls_resumed) << "the second connection resumes the first one's session";
  stopProxyExpectClean();
}

TEST_F(UpstreamTlsTest, KeepAliveAndSessionResumptionTls13) {
  keepAliveAndResumption(0);
}

TEST_F(UpstreamTlsTest, KeepAliveAndSessionResumptionTls12) {
  keepAliveAndResumption(TLS1_2_VERSION);
}

// (6) WebSocket/Upgrade to a TLS origin: the tunnel carries bytes both ways through it.
TEST_F(UpstreamTlsTest, UpgradeTunnelOverUpstreamTls) {
  auto origin = startOrigin();
  origin->onPrefix("/ws", Behavior::upgrade());
  ASSERT_NO_FATAL_FAILURE(
      startProxyYaml(config({{"ws", at(*origin), "{ " + ca() + ", sni: upstream.test }"}})));
  HttpConnection c(port());
  auto r = c.request("GET", "/ws/chat",
                     {{"Connection", "Upgrade"},
                      {"Upgrade", "websocket"},
                      {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                      {"Sec-WebSocket-Version", "13"}});
  ASSERT_TRUE(r) << c.lastError();
  ASSERT_EQ(r->status, 101);
  for (const std::string& msg : {std::string("hello-tunnel"), std::string("\x00\x01\xff bin", 7)}) {
    ASSERT_TRUE(c.send(msg));
    std::string& got = c.leftover();
    ASSERT_TRUE(c.socket().readUntil(got, msg, milliseconds(5000)))
        << "got " << got.size() << " bytes";
    EXPECT_EQ(got, msg);
    got.clear();
  }
}

// (7) A reload builds the cluster's TLS context anew: a CA fixed by reload applies to the next
// connection; a reload naming a missing file is refused with the key, and the old one serves on.
TEST_F(UpstreamTlsTest, ReloadRebuildsClusterTls) {
  auto origin = startOrigin();
  auto yaml = [&](const std::string& ca_file) {
    return config({{"app", at(*origin), "{ ca_file: \"" + ca_file + "\", sni: upstream.test }"}});
  };
  auto reload = [&](const std::string& y) {
    proc_.writeFile("sidetrace.yaml", y, vars());
    return httpRequest(proc_.adminPort(), "POST", "/reload", {}, {}, milliseconds(15000));
  };
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(yaml(rogue_.ca_file)));
  auto r = httpRequest(port(), "GET", "/app/before");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502);

  auto rl = reload(yaml(pki_.ca_file));
  ASSERT_TRUE(rl);
  EXPECT_EQ(rl->status, 200) << rl->body;
  r = httpRequest(port(), "GET", "/app/after");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;

  const std::string missing = proc_.dir() + "/missing-ca.pem";
  rl = reload(yaml(missing));
  ASSERT_TRUE(rl);
  EXPECT_EQ(rl->status, 500) << rl->body;
  EXPECT_NE(rl->body.find("clusters[0].tls.ca_file: cannot read '" + missing + "'"),
            std::string::npos)
      << rl->body;
  r = httpRequest(port(), "GET", "/app/still");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << "the running config serves on";
  stopProxyExpectClean();
}

// (8) Unreadable or mismatched files stop the start with exit code 2, naming the key.
TEST_F(UpstreamTlsTest, BadFilesExit2NamingTheKey) {
  const std::string missing = proc_.dir() + "/missing.pem";
  const std::string files = "cert: \"" + pki_.cert_file + "\", key: \"" + pki_.key_file + "\"";
  struct Case {
    std::string tls;
    std::string expect;
  };
  for (const Case& k : {
           Case{"{ ca_file: \"" + missing + "\" }",
                "clusters[0].tls.ca_file: cannot read '" + missing + "'"},
           Case{"{ ca_file: \"" + pki_.key_file + "\" }",
                "clusters[0].tls.ca_file: no PEM CA certificate"},
           Case{"{ cert: \"" + missing + "\", key: \"" + pki_.key_file + "\" }",
                "clusters[0].tls.cert: cannot read"},
           Case{"{ cert: \"" + pki_.cert_file + "\", key: \"" + missing + "\" }",
                "clusters[0].tls.key: cannot read"},
           Case{"{ cert: \"" + pki_.cert_file + "\", key: \"" + rogue_.key_file + "\" }",
                "clusters[0].tls.key: the private key in"},
           Case{"{ " + files + ", insecure_skip_verify: true, ca_file: \"" + missing + "\" }",
                "clusters[0].tls.ca_file: cannot read"},
       }) {
    SCOPED_TRACE(k.tls);
    SidetraceProcess p;
    ASSERT_TRUE(p.startWithConfig(config({{"app", at(upstream_), k.tls}}), vars()));
    auto r = p.wait();
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.code, 2) << p.logs();
    EXPECT_NE(p.stderrText().find(k.expect), std::string::npos) << p.logs();
  }
}

}  // namespace
}  // namespace sidetrace::it
