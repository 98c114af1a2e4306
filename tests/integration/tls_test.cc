// Downstream TLS on a listener: HTTPS proxied to the plain upstream, SNI certificate choice,
// refused protocols and non-TLS bytes (counted, no crash), client certificates (mTLS), session
// resumption, and start-up failures for bad certificate files.

#include <openssl/ssl.h>

#include <gtest/gtest.h>

#include <chrono>

#include "tests/integration/harness.h"
#include "tests/integration/test_pki.h"
#include "tests/integration/tls_client.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;

const char* kFailures = "sidetrace_downstream_tls_handshake_failures_total";

class TlsTest : public IntegrationTest {
 protected:
  // The standard config with `tls` (a YAML flow map) on its listener.
  std::string configWithTls(const std::string& tls, const ProxyConfig& c = {}) {
    std::string y = standardConfigYaml(c);
    const std::string routes = "    routes:\n";
    y.insert(y.find(routes), "    tls: " + tls + "\n");
    return y;
  }
  static std::string tlsFiles(const TestPki& pki) {
    return "{ cert: \"" + pki.cert_file + "\", key: \"" + pki.key_file + "\"";
  }
  // `tls_extra`: more keys for the tls map; `yaml_extra`: top-level lines.
  void startTls(const std::string& tls_extra = "", const std::string& yaml_extra = "") {
    pki_ = makeTestPki(proc_.dir(), "srv", "it-ca", {"localhost"}, {"127.0.0.1"});
    ASSERT_NO_FATAL_FAILURE(
        startProxyYaml(configWithTls(tlsFiles(pki_) + tls_extra + " }") + yaml_extra));
  }
  TlsClientOptions verified() const {
    TlsClientOptions o;
    o.sni = "localhost";
    o.ca_file = pki_.ca_file;
    return o;
  }
  double failures() { return metricSum(metrics(), kFailures, "listener=\"ingress\""); }

  TestPki pki_;
};

// (1) HTTPS through the TLS listener to the plain upstream; keep-alive over one TLS connection;
// the SERVER span and x-forwarded-proto say https.
TEST_F(TlsTest, HttpsProxiedWithKeepAlive) {
  ASSERT_NO_FATAL_FAILURE(startTls());
  TlsConnection c(port(), verified());
  ASSERT_TRUE(c.handshakeOk()) << c.error();
  EXPECT_EQ(c.alpn(), "http/1.1") << "h2 is not offered before the HTTP/2 codec exists";
  EXPECT_TRUE(c.version() == "TLSv1.3" || c.version() == "TLSv1.2") << c.version();
  for (int i = 0; i < 3; ++i) {
    auto r = c.request("GET", "/api/items/" + std::to_string(i), {{"Host", "localhost"}});
    ASSERT_TRUE(r) << "request " << i << ": " << c.error();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->header("x-echo-target").value_or(""), "/api/items/" + std::to_string(i));
    EXPECT_TRUE(r->keep_alive);
  }
  auto direct = c.request("GET", "/ping");
  ASSERT_TRUE(direct) << c.error();
  EXPECT_EQ(direct->body, "pong");
  EXPECT_EQ(metricSum(metrics(), "sidetrace_downstream_connections_total", ""), 1)
      << "all four requests on one connection";

  auto reqs = upstream_.waitForRequests(3, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[0].header("x-forwarded-proto").value_or("<missing>"), "https");

  auto spans = waitSpansSettled(otlp_, 7);  // 3 proxied (server + client) + 1 direct
  auto servers = spansOfKind(spans, 2);
  ASSERT_EQ(servers.size(), 4u) << describeAll(spans);
  for (const auto& s : servers) {
    EXPECT_EQ(s.str("url.scheme"), "https") << s.describe();
  }
  EXPECT_EQ(failures(), 0);
  stopProxyExpectClean();
}

// WebSocket/Upgrade over TLS: the tunnel carries bytes both ways through the TLS stream.
TEST_F(TlsTest, UpgradeTunnelOverTls) {
  upstream_.onPrefix("/ws", Behavior::upgrade());
  ASSERT_NO_FATAL_FAILURE(startTls());
  TlsConnection c(port(), verified());
  ASSERT_TRUE(c.handshakeOk()) << c.error();
  auto r = c.request("GET", "/ws/chat",
                     {{"Connection", "Upgrade"},
                      {"Upgrade", "websocket"},
                      {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                      {"Sec-WebSocket-Version", "13"}});
  ASSERT_TRUE(r) << c.error();
  ASSERT_EQ(r->status, 101);
  for (const std::string& msg : {std::string("hello-tunnel"), std::string("\x00\x01\xff bin", 7)}) {
    ASSERT_TRUE(c.send(msg)) << c.error();
    ASSERT_TRUE(c.readUntil(msg)) << c.error() << "; got " << c.leftover().size() << " bytes";
    EXPECT_EQ(c.leftover(), msg);
    c.leftover().clear();
  }
}

// (2) SNI picks the certificate whose name matches; no match or no SNI gets the first one.
TEST_F(TlsTest, SniSelectsCertificate) {
  TestPki a = makeTestPki(proc_.dir(), "a", "ca-a", {"a.example"}, {});
  TestPki b = makeTestPki(proc_.dir(), "b", "ca-b", {"b.example", "*.b.example"}, {});
  ASSERT_NO_FATAL_FAILURE(
      startProxyYaml(configWithTls(tlsFiles(a) + ", certificates: [ " + tlsFiles(b) + " } ] }")));
  struct Case {
    std::string sni;
    std::string cn;
  };
  for (const Case& k : {Case{"b.example", "b.example"}, Case{"api.b.example", "b.example"},
                        Case{"a.example", "a.example"}, Case{"other.example", "a.example"},
                        Case{"", "a.example"}}) {
    SCOPED_TRACE("SNI '" + k.sni + "'");
    TlsClientOptions o;
    o.sni = k.sni;
    o.ca_file = k.cn == "b.example" ? b.ca_file : a.ca_file;  // verifies the chain as well
    TlsConnection c(port(), o);
    ASSERT_TRUE(c.handshakeOk()) << c.error();
    EXPECT_EQ(c.peerCommonName(), k.cn);
    auto r = c.request("GET", "/ping");
    ASSERT_TRUE(r) << c.error();
    EXPECT_EQ(r->status, 200);
  }
  stopProxyExpectClean();
}

// (3) TLS 1.1 and older are refused by the server (an alert, not a client-side refusal); plaintext
// HTTP and garbage on the TLS port close the connection; each is counted; the proxy serves on.
TEST_F(TlsTest, OldProtocolsPlaintextAndGarbageAreRefusedAndCounted) {
  ASSERT_NO_FATAL_FAILURE(startTls("", "log_level: debug\n"));
  for (int version : {TLS1_1_VERSION, TLS1_VERSION}) {
    TlsClientOptions o = verified();
    o.max_version = version;
    TlsConnection old(port(), o);
    EXPECT_FALSE(old.handshakeOk()) << "version " << version;
    EXPECT_NE(old.error().find("alert protocol version"), std::string::npos) << old.error();
  }
  {
    HttpConnection plain(port());
    ASSERT_TRUE(plain.connected());
    ASSERT_TRUE(plain.send(buildRequest("GET", "/ping", {})));
    EXPECT_TRUE(plain.waitClosed());
  }
  {
    HttpConnection garbage(port());
    ASSERT_TRUE(garbage.connected());
    // A handshake record header, then bytes that are no handshake message.
    static const char kGarbage[] = "\x16\x03\x01\x00\x05hello\x00\xff\x13garbage";
    ASSERT_TRUE(garbage.send(std::string(kGarbage, sizeof kGarbage - 1)));
    EXPECT_TRUE(garbage.waitClosed());
  }
  EXPECT_GE(waitMetric(kFailures, "listener=\"ingress\"", 4), 4);
  TlsConnection good(port(), verified());
  ASSERT_TRUE(good.handshakeOk()) << good.error();
  auto r = good.request("GET", "/ping");
  ASSERT_TRUE(r) << good.error();
  EXPECT_EQ(r->status, 200);
  stopProxyExpectClean();
  const std::string err = proc_.stderrText();
  EXPECT_NE(err.find("ingress: TLS handshake with 127.0.0.1 failed"), std::string::npos) << err;
}

// (4) mTLS: with client_ca set, a client without a certificate, or with one from another CA, is
// refused; one signed by the CA gets through.
TEST_F(TlsTest, ClientCertificatesVerifiedAgainstCa) {
  TestPki client =
      makeTestPki(proc_.dir(), "client", "client-ca", {"client.example"}, {}, "clientAuth");
  TestPki rogue =
      makeTestPki(proc_.dir(), "rogue", "rogue-ca", {"client.example"}, {}, "clientAuth");
  ASSERT_NO_FATAL_FAILURE(startTls(", client_ca: \"" + client.ca_file + "\""));
  auto refused = [&](TlsClientOptions o) {
    TlsConnection c(port(), o);
    // TLS 1.3: the client finishes its handshake before the server has checked the certificate;
    // the refusal then arrives as an alert on the first read.
    auto r = c.request("GET", "/ping", {}, milliseconds(5000));
    return !c.handshakeOk() || !r;
  };
  EXPECT_TRUE(refused(verified())) << "no client certificate";
  TlsClientOptions bad = verified();
  bad.cert_file = rogue.cert_file;
  bad.key_file = rogue.key_file;
  EXPECT_TRUE(refused(bad)) << "certificate from an unknown CA";
  EXPECT_GE(waitMetric(kFailures, "listener=\"ingress\"", 2), 2);

  TlsClientOptions good = verified();
  good.cert_file = client.cert_file;
  good.key_file = client.key_file;
  TlsConnection c(port(), good);
  ASSERT_TRUE(c.handshakeOk()) << c.error();
  auto r = c.request("GET", "/api/mtls");
  ASSERT_TRUE(r) << c.error();
  EXPECT_EQ(r->status, 200);
  stopProxyExpectClean();
}

TEST_F(TlsTest, OptionalClientCertificate) {
  TestPki client =
      makeTestPki(proc_.dir(), "client", "client-ca", {"client.example"}, {}, "clientAuth");
  ASSERT_NO_FATAL_FAILURE(
      startTls(", client_ca: \"" + client.ca_file + "\", require_client_cert: false"));
  TlsConnection anonymous(port(), verified());
  auto r = anonymous.request("GET", "/ping");
  ASSERT_TRUE(r) << anonymous.error();
  EXPECT_EQ(r->status, 200);
  stopProxyExpectClean();
}

// (5) A second connection offering the first one's session resumes it, with TLS 1.3 tickets and
// with TLS 1.2, also when client certificates are verified (session id context set).
TEST_F(TlsTest, SessionResumption) {
  TestPki client =
      makeTestPki(proc_.dir(), "client", "client-ca", {"client.example"}, {}, "clientAuth");
  ASSERT_NO_FATAL_FAILURE(startTls(", client_ca: \"" + client.ca_file + "\""));
  for (int max : {0, TLS1_2_VERSION}) {
    SCOPED_TRACE("max version " + std::to_string(max));
    TlsClientOptions o = verified();
    o.cert_file = client.cert_file;
    o.key_file = client.key_file;
    o.max_version = max;
    TlsSession session;
    {
      TlsConnection first(port(), o);
      ASSERT_TRUE(first.handshakeOk()) << first.error();
      EXPECT_FALSE(first.sessionReused());
      ASSERT_TRUE(first.request("GET", "/ping")) << first.error();
      session = first.session();
    }
    ASSERT_TRUE(session) << "no resumable session from the first connection";
    o.resume = session;
    TlsConnection second(port(), o);
    ASSERT_TRUE(second.handshakeOk()) << second.error();
    EXPECT_TRUE(second.sessionReused());
    auto r = second.request("GET", "/ping");
    ASSERT_TRUE(r) << second.error();
    EXPECT_EQ(r->status, 200);
  }
  EXPECT_EQ(failures(), 0);
  stopProxyExpectClean();
}

// TLS settings are restart-only: a reload that changes them is refused; one that changes routes
// applies, and the TLS listener keeps serving with its certificate.
TEST_F(TlsTest, ReloadRefusesTlsChangesAndKeepsServing) {
  ASSERT_NO_FATAL_FAILURE(startTls());
  auto reload = [&](const std::string& yaml) {
    proc_.writeFile("sidetrace.yaml", yaml, vars());
    return httpRequest(proc_.adminPort(), "POST", "/reload", {}, {}, milliseconds(15000));
  };
  auto r = reload(configWithTls(tlsFiles(pki_) + ", client_ca: \"" + pki_.ca_file + "\" }"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500) << r->body;
  EXPECT_NE(r->body.find("listeners[0].tls changed (needs a restart)"), std::string::npos)
      << r->body;

  std::string routes_changed = configWithTls(tlsFiles(pki_) + " }");
  const std::string teapot = "body: \"short and stout\"";
  ASSERT_NE(routes_changed.find(teapot), std::string::npos);
  routes_changed.replace(routes_changed.find(teapot), teapot.size(), "body: \"reloaded\"");
  r = reload(routes_changed);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;

  TlsConnection c(port(), verified());  // no client certificate: client_ca was not applied
  ASSERT_TRUE(c.handshakeOk()) << c.error();
  auto tea = c.request("GET", "/teapot");
  ASSERT_TRUE(tea) << c.error();
  EXPECT_EQ(tea->body, "reloaded");
  EXPECT_EQ(c.peerCommonName(), "localhost");
  stopProxyExpectClean();
}

// (6) Unreadable or mismatched files stop the start with exit code 2, naming the key; --validate
// accepts a TLS listener.
TEST_F(TlsTest, BadCertificateFilesExit2NamingTheKey) {
  TestPki pki = makeTestPki(proc_.dir(), "srv", "it-ca", {"localhost"}, {});
  TestPki other = makeTestPki(proc_.dir(), "other", "it-ca", {"localhost"}, {});
  struct Case {
    std::string tls;
    std::string expect;
  };
  const std::string missing = proc_.dir() + "/missing.pem";
  for (const Case& k : {
           Case{"{ cert: \"" + pki.cert_file + "\", key: \"" + missing + "\" }",
                "listeners[0].tls.key: cannot read '" + missing + "'"},
           Case{"{ cert: \"" + missing + "\", key: \"" + pki.key_file + "\" }",
                "listeners[0].tls.cert: cannot read"},
           Case{"{ cert: \"" + pki.cert_file + "\", key: \"" + other.key_file + "\" }",
                "listeners[0].tls.key: the private key in"},
           Case{"{ cert: \"" + pki.key_file + "\", key: \"" + pki.key_file + "\" }",
                "listeners[0].tls.cert: no PEM certificate chain"},
           Case{tlsFiles(pki) + ", certificates: [ { cert: \"" + other.cert_file + "\", key: \"" +
                    pki.key_file + "\" } ] }",
                "listeners[0].tls.certificates[0].key: the private key in"},
           Case{tlsFiles(pki) + ", client_ca: \"" + missing + "\" }",
                "listeners[0].tls.client_ca: cannot read"},
       }) {
    SCOPED_TRACE(k.tls);
    SidetraceProcess p;
    ASSERT_TRUE(p.startWithConfig(configWithTls(k.tls), vars()));
    auto r = p.wait();
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.code, 2) << p.logs();
    EXPECT_NE(p.stderrText().find(k.expect), std::string::npos) << p.logs();
  }

  std::string good = proc_.writeFile("tls.yaml", configWithTls(tlsFiles(pki) + " }"), vars());
  ASSERT_TRUE(proc_.start({"--validate", "--config", good}));
  auto r = proc_.wait();
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.code, 0) << proc_.logs();
}

}  // namespace
}  // namespace sidetrace::it
