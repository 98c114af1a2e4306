// clusters[].tls: TLS towards upstream endpoints (parsing, errors naming the key, dump).

#include <gtest/gtest.h>

#include <string>

#include "config/checks.h"
#include "config/dump.h"
#include "config/load.h"
#include "tests/unit/config/env_map.h"

namespace sidetrace::config {
namespace {

using testing::envFrom;
using testing::errorOf;

Config load(const std::string& clusters_text) {
  Config cfg;
  applyYaml(cfg, "clusters:\n" + clusters_text, "t.yaml", envFrom({}));
  return cfg;
}

std::string loadError(const std::string& clusters_text) {
  return errorOf([&] { load(clusters_text); });
}

TEST(ClusterTls, EveryKey) {
  Config cfg = load(
      "  - name: c\n"
      "    endpoints: [ \"10.0.0.1:443\" ]\n"
      "    tls:\n"
      "      ca_file: /etc/ca.pem\n"
      "      sni: API.Example.com\n"
      "      cert: /etc/client.pem\n"
      "      key: /etc/client.key\n"
      "      insecure_skip_verify: true\n");
  ASSERT_EQ(cfg.clusters.size(), 1u);
  ASSERT_TRUE(cfg.clusters[0].tls);
  const UpstreamTlsConfig& t = *cfg.clusters[0].tls;
  EXPECT_EQ(t.ca_file, "/etc/ca.pem");
  EXPECT_EQ(t.sni, "api.example.com") << "DNS names compare case-insensitively";
  EXPECT_EQ(t.cert, "/etc/client.pem");
  EXPECT_EQ(t.key, "/etc/client.key");
  EXPECT_TRUE(t.insecure_skip_verify);
}

TEST(ClusterTls, EmptyMapEnablesTlsWithDefaults) {
  Config cfg = load(
      "  - { name: tls, endpoints: [ \"h:443\" ], tls: {} }\n"
      "  - { name: plain, endpoints: [ \"h:80\" ] }\n");
  ASSERT_TRUE(cfg.clusters[0].tls);
  EXPECT_EQ(*cfg.clusters[0].tls, UpstreamTlsConfig{});
  EXPECT_FALSE(cfg.clusters[0].tls->insecure_skip_verify);
  EXPECT_FALSE(cfg.clusters[1].tls);
}

TEST(ClusterTls, CertAndKeyGoTogether) {
  EXPECT_EQ(loadError("  - name: c\n"
                      "    endpoints: [ \"h:443\" ]\n"
                      "    tls: { cert: c.pem }\n"),
            "t.yaml:4: clusters[0].tls.key: missing (a client certificate needs its private key)");
  EXPECT_EQ(loadError("  - name: c\n"
                      "    endpoints: [ \"h:443\" ]\n"
                      "    tls:\n"
                      "      key: c.key\n"),
            "t.yaml:5: clusters[0].tls.cert: missing (a client key needs its certificate)");
}

TEST(ClusterTls, ValueErrorsNameTheKey) {
  EXPECT_EQ(loadError("  - name: c\n"
                      "    endpoints: [ \"h:443\" ]\n"
                      "    tls: { ca: x.pem }\n"),
            "t.yaml:4: clusters[0].tls.ca: unknown key (expected one of: ca_file, sni, cert, key, "
            "insecure_skip_verify)");
  EXPECT_EQ(loadError("  - name: c\n"
                      "    endpoints: [ \"h:443\" ]\n"
                      "    tls: { insecure_skip_verify: yes-please }\n"),
            "t.yaml:4: clusters[0].tls.insecure_skip_verify: expected true or false, got "
            "'yes-please'");
  EXPECT_EQ(loadError("  - name: c\n"
                      "    endpoints: [ \"h:443\" ]\n"
                      "    tls: { ca_file: \"\" }\n"),
            "t.yaml:4: clusters[0].tls.ca_file: must not be empty");
  EXPECT_EQ(loadError("  - name: c\n"
                      "    endpoints: [ \"h:443\" ]\n"
                      "    tls: true\n"),
            "t.yaml:4: clusters[0].tls: expected a map, got 'true'");
  EXPECT_EQ(loadError("  - name: c\n"
                      "    endpoints: [ \"h:443\" ]\n"
                      "    tls: { sni: 10.0.0.1 }\n"),
            "t.yaml:4: clusters[0].tls.sni: bad server name '10.0.0.1' (an IP address takes no "
            "SNI: leave sni unset to verify the IP)");
  EXPECT_EQ(loadError("  - name: c\n"
                      "    endpoints: [ \"h:443\" ]\n"
                      "    tls: { sni: \"api.example.com:443\" }\n"),
            "t.yaml:4: clusters[0].tls.sni: bad server name 'api.example.com:443' (expected "
            "letters, digits, '-' and '.'; IP addresses take no SNI)");
}

TEST(ClusterTls, ServerNames) {
  for (const char* ok : {"a", "upstream.test", "xn--bcher-kva.example", "my_svc.internal",
                         "Api.Example.COM", "1password.com"}) {
    EXPECT_EQ(detail::checkServerName(ok), "") << ok;
  }
  for (const char* bad :
       {"", ".", "a..b", ".a", "a.", "127.0.0.1", "::1", "a b", "*.example.com", "a/b"}) {
    EXPECT_NE(detail::checkServerName(bad), "") << "'" << bad << "'";
  }
  EXPECT_NE(detail::checkServerName(std::string(64, 'a') + ".com"), "") << "label > 63";
  EXPECT_NE(detail::checkServerName(std::string(254, 'a')), "") << "name > 253";
}

TEST(ClusterTls, DumpShowsSettingsAndRedactsTheKey) {
  Config cfg = load(
      "  - name: secure\n"
      "    endpoints: [ \"h:443\" ]\n"
      "    tls: { ca_file: /etc/ca.pem, sni: h.example, cert: /etc/c.pem, key: /etc/c.key }\n"
      "  - name: plain\n"
      "    endpoints: [ \"h:80\" ]\n");
  const std::string dump = dumpConfigJson(cfg);
  EXPECT_NE(dump.find(R"("dns_refresh_rate": "5s",
      "tls": {
        "ca_file": "/etc/ca.pem",
        "sni": "h.example",
        "cert": "/etc/c.pem",
        "key": "[redacted]",
        "insecure_skip_verify": false
      },
      "retry_budget": {)"),
            std::string::npos)
      << dump;
  EXPECT_EQ(dump.find("c.key"), std::string::npos) << dump;
  EXPECT_EQ(dump.find("\"tls\"", dump.find("\"plain\"")),
            dump.find("\"tls\"", dump.find("tracing")))
      << "a plain cluster has no tls entry: " << dump;
}

}  // namespace
}  // namespace sidetrace::config
