// The upstream TLS client context without sockets: handshakes against an in-memory OpenSSL server
// (a BIO pair) check the ALPN offer, SNI, name and IP verification; endpoint naming and file
// errors are checked directly.

#include "upstream/tls_client_context.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "config/config.h"
#include "tests/integration/test_pki.h"
#include "upstream/cluster.h"

namespace sidetrace::upstream {
namespace {

// What the in-memory server saw of the client's hello.
struct ServerView {
  std::string alpn_offered;  // comma-separated
  std::string sni;
};

int recordAlpn(SSL* ssl, const unsigned char**, unsigned char*, const unsigned char* in,
               unsigned int inlen, void*) {
  auto* view = static_cast<ServerView*>(SSL_get_app_data(ssl));
  for (unsigned i = 0; i < inlen && i + 1 + in[i] <= inlen; i += 1u + in[i]) {
    view->alpn_offered += (view->alpn_offered.empty() ? "" : ",") +
                          std::string(reinterpret_cast<const char*>(in + i + 1), in[i]);
  }
  return SSL_TLSEXT_ERR_NOACK;
}

class TlsClientContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tls_client_context_test." + std::to_string(::getpid()) + "." +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    pki_ = it::makeTestPki(dir_.string(), "origin", "origin-ca", {"upstream.test"}, {"127.0.0.1"});
    server_ctx_ = SSL_CTX_new(TLS_server_method());
    ASSERT_EQ(SSL_CTX_use_certificate_chain_file(server_ctx_, pki_.cert_file.c_str()), 1);
    ASSERT_EQ(SSL_CTX_use_PrivateKey_file(server_ctx_, pki_.key_file.c_str(), SSL_FILETYPE_PEM), 1);
    SSL_CTX_set_alpn_select_cb(server_ctx_, recordAlpn, nullptr);
  }
  void TearDown() override {
    SSL_CTX_free(server_ctx_);
    std::filesystem::remove_all(dir_);
  }

  config::UpstreamTlsConfig trusting() const {
    config::UpstreamTlsConfig t;
    t.ca_file = pki_.ca_file;
    return t;
  }

  // Runs a handshake of a client SSL prepared for `ep` against the in-memory server. Returns the
  // client's verify result (X509_V_OK when it verified), or -1 when the handshake failed for
  // another reason.
  long handshake(TlsClientContext& ctx, const Endpoint& ep, ServerView& view) {
    SSL* client = SSL_new(ctx.context().native_handle());
    SSL* server = SSL_new(server_ctx_);
    SSL_set_app_data(server, &view);
    BIO* client_bio = nullptr;
    BIO* server_bio = nullptr;
    BIO_new_bio_pair(&client_bio, 0, &server_bio, 0);
    SSL_set_bio(client, client_bio, client_bio);
    SSL_set_bio(server, server_bio, server_bio);
    SSL_set_connect_state(client);
    SSL_set_accept_state(server);
    TlsSessionSlot slot;
    ctx.prepare(client, ep, slot);
    bool client_done = false;
    bool server_done = false;
    bool failed = false;
    for (int round = 0; round < 20 && !(client_done && server_done) && !failed; ++round) {
      for (auto [ssl, done] : {std::pair{client, &client_done}, std::pair{server, &server_done}}) {
        if (*done) {
          continue;
        }
        const int rc = SSL_do_handshake(ssl);
        if (rc == 1) {
          *done = true;
        } else if (int e = SSL_get_error(ssl, rc); e != SSL_ERROR_WANT_READ) {
          failed = true;
          break;
        }
      }
    }
    if (const char* name = SSL_get_servername(server, TLSEXT_NAMETYPE_host_name)) {
      view.sni = name;
    }
    const long verify = SSL_get_verify_result(client);
    const bool ok = client_done && !failed;
    SSL_free(client);
    SSL_free(server);
    ERR_clear_error();
    return ok || verify != X509_V_OK ? verify : -1;
  }

  static Endpoint named(const std::string& name, bool is_ip, const std::string& sni) {
    Endpoint ep;
    ep.host = name;
    ep.port = 443;
    ep.tls_name = name;
    ep.tls_name_is_ip = is_ip;
    ep.tls_sni = sni;
    return ep;
  }

  std::filesystem::path dir_;
  it::TestPki pki_;
  SSL_CTX* server_ctx_ = nullptr;
};

TEST_F(TlsClientContextTest, AlpnOfferFollowsTheClusterProtocol) {
  TlsClientContext h1(trusting(), "http1", "clusters[0].tls");
  TlsClientContext h2(trusting(), "http2", "clusters[1].tls");
  ServerView v1;
  ServerView v2;
  EXPECT_EQ(handshake(h1, named("upstream.test", false, "upstream.test"), v1), X509_V_OK);
  EXPECT_EQ(handshake(h2, named("upstream.test", false, "upstream.test"), v2), X509_V_OK);
  EXPECT_EQ(v1.alpn_offered, "http/1.1");
  EXPECT_EQ(v2.alpn_offered, "h2");
}

TEST_F(TlsClientContextTest, VerifiesTheNameOrTheIpAndSendsSni) {
  TlsClientContext ctx(trusting(), "http1", "clusters[0].tls");
  ServerView dns;
  EXPECT_EQ(handshake(ctx, named("upstream.test", false, "upstream.test"), dns), X509_V_OK);
  EXPECT_EQ(dns.sni, "upstream.test");
  ServerView ip;
  EXPECT_EQ(handshake(ctx, named("127.0.0.1", true, ""), ip), X509_V_OK);
  EXPECT_EQ(ip.sni, "") << "no SNI for an IP";
  ServerView wrong_name;
  EXPECT_EQ(handshake(ctx, named("wrong.test", false, "wrong.test"), wrong_name),
            X509_V_ERR_HOSTNAME_MISMATCH);
  ServerView wrong_ip;
  EXPECT_EQ(handshake(ctx, named("10.0.0.1", true, ""), wrong_ip), X509_V_ERR_IP_ADDRESS_MISMATCH);
}

TEST_F(TlsClientContextTest, UnknownCaIsRefusedUnlessVerificationIsOff) {
  it::TestPki rogue =
      it::makeTestPki(dir_.string(), "rogue", "rogue-ca", {"upstream.test"}, {"127.0.0.1"});
  config::UpstreamTlsConfig t;
  t.ca_file = rogue.ca_file;
  TlsClientContext strict(t, "http1", "clusters[0].tls");
  ServerView v;
  EXPECT_EQ(handshake(strict, named("upstream.test", false, "upstream.test"), v),
            X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
  EXPECT_TRUE(strict.verifies());

  t.insecure_skip_verify = true;
  TlsClientContext lax(t, "http1", "clusters[0].tls");
  EXPECT_FALSE(lax.verifies());
  ServerView w;
  const long r = handshake(lax, named("wrong.test", false, "wrong.test"), w);
  EXPECT_NE(r, -1) << "the handshake completes";
  EXPECT_EQ(w.sni, "wrong.test") << "SNI is still sent";
}

TEST_F(TlsClientContextTest, BadFilesNameTheKey) {
  auto errorOf = [](const config::UpstreamTlsConfig& t) -> std::string {
    try {
      TlsClientContext ctx(t, "http1", "clusters[3].tls");
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "<no error>";
  };
  const std::string missing = (dir_ / "missing.pem").string();
  const std::string not_pem = (dir_ / "not.pem").string();
  std::ofstream(not_pem) << "hello\n";
  it::TestPki other = it::makeTestPki(dir_.string(), "other", "other-ca", {"x.test"}, {});

  config::UpstreamTlsConfig t;
  t.ca_file = missing;
  EXPECT_EQ(errorOf(t).rfind("clusters[3].tls.ca_file: cannot read '" + missing + "': ", 0), 0u)
      << errorOf(t);
  t.ca_file = not_pem;
  EXPECT_EQ(errorOf(t).rfind("clusters[3].tls.ca_file: no PEM CA certificate in", 0), 0u)
      << errorOf(t);
  t = {};
  t.cert = pki_.cert_file;
  t.key = not_pem;
  EXPECT_EQ(errorOf(t).rfind("clusters[3].tls.key: no PEM private key in", 0), 0u) << errorOf(t);
  t.key = other.key_file;
  EXPECT_EQ(errorOf(t).rfind("clusters[3].tls.key: the private key in", 0), 0u) << errorOf(t);
  t.cert = not_pem;
  EXPECT_EQ(errorOf(t).rfind("clusters[3].tls.cert: no PEM certificate chain in", 0), 0u)
      << errorOf(t);
  t.cert = other.cert_file;
  EXPECT_EQ(errorOf(t), "<no error>");
}

// Endpoint names: what the certificate must match, the SNI and the default Host header.
Endpoint nameOf(const std::string& host, uint16_t port, const config::Cluster& c) {
  Endpoint ep;
  ep.host = host;
  ep.port = port;
  nameEndpoint(ep, c);
  return ep;
}

TEST(NameEndpoint, TlsNamesAndAuthority) {
  config::Cluster tls;
  tls.tls = config::UpstreamTlsConfig{};
  Endpoint ip = nameOf("127.0.0.1", 443, tls);
  EXPECT_EQ(ip.tls_sni, "");
  EXPECT_EQ(ip.tls_name, "127.0.0.1");
  EXPECT_TRUE(ip.tls_name_is_ip);
  EXPECT_EQ(ip.authority, "127.0.0.1");
  Endpoint dns = nameOf("backend.internal", 8443, tls);
  EXPECT_EQ(dns.tls_sni, "backend.internal");
  EXPECT_EQ(dns.tls_name, "backend.internal");
  EXPECT_FALSE(dns.tls_name_is_ip);
  EXPECT_EQ(dns.authority, "backend.internal:8443");
  Endpoint v6 = nameOf("::1", 443, tls);
  EXPECT_EQ(v6.tls_name, "::1");
  EXPECT_TRUE(v6.tls_name_is_ip);
  EXPECT_EQ(v6.authority, "[::1]");

  config::Cluster sni = tls;
  sni.tls->sni = "api.example.com";
  for (const char* host : {"10.0.0.1", "backend.internal"}) {
    Endpoint e = nameOf(host, 443, sni);
    EXPECT_EQ(e.tls_sni, "api.example.com") << host;
    EXPECT_EQ(e.tls_name, "api.example.com") << host;
    EXPECT_FALSE(e.tls_name_is_ip) << host;
    EXPECT_EQ(e.authority, "api.example.com") << host;
  }
  EXPECT_EQ(nameOf("10.0.0.1", 8443, sni).authority, "api.example.com:8443");

  config::Cluster plain;
  EXPECT_EQ(nameOf("10.0.0.1", 80, plain).authority, "10.0.0.1");
  EXPECT_EQ(nameOf("::1", 8080, plain).authority, "[::1]:8080");
  EXPECT_EQ(nameOf("backend.internal", 443, plain).authority, "backend.internal:443");
  EXPECT_EQ(nameOf("backend.internal", 443, plain).tls_sni, "");
}

// resolveClusters builds a context for TLS clusters only, and names what it resolves.
TEST(ResolveClusters, TlsContextPerTlsCluster) {
  config::Config cfg;
  config::Cluster tls;
  tls.name = "tls";
  tls.endpoints = {{"127.0.0.1", 443}};
  tls.tls = config::UpstreamTlsConfig{};
  config::Cluster plain;
  plain.name = "plain";
  plain.endpoints = {{"127.0.0.1", 8080}};
  cfg.clusters = {tls, plain};
  auto clusters = resolveClusters(cfg, 1);
  ASSERT_EQ(clusters.size(), 2u);
  EXPECT_NE(clusters[0].tls, nullptr);
  EXPECT_EQ(clusters[1].tls, nullptr);
  EXPECT_EQ((*clusters[0].endpoints)[0].tls_name, "127.0.0.1");
  EXPECT_EQ((*clusters[1].endpoints)[0].authority, "127.0.0.1:8080");
}

}  // namespace
}  // namespace sidetrace::upstream
