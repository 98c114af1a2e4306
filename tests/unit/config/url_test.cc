#include <gtest/gtest.h>

#include <string>

#include "config/load.h"
#include "config/url.h"
#include "tests/unit/config/env_map.h"

namespace sidetrace::config {
namespace {

using testing::errorOf;

TEST(HttpUrl, Parts) {
  HttpUrl u = parseHttpUrl("http://collector:4318/v1/traces");
  EXPECT_FALSE(u.tls);
  EXPECT_EQ(u.host, "collector");
  EXPECT_EQ(u.port, 4318);
  EXPECT_EQ(u.target, "/v1/traces");
  EXPECT_EQ(u.authority(), "collector:4318");

  HttpUrl s = parseHttpUrl("HTTPS://otlp.example.com/api/v1/traces?tenant=a");
  EXPECT_TRUE(s.tls);
  EXPECT_EQ(s.host, "otlp.example.com");
  EXPECT_EQ(s.port, 443);
  EXPECT_EQ(s.target, "/api/v1/traces?tenant=a");
  EXPECT_EQ(s.authority(), "otlp.example.com");

  HttpUrl v6 = parseHttpUrl("http://[::1]:4318");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.target, "/");
  EXPECT_EQ(v6.authority(), "[::1]:4318");
  EXPECT_EQ(parseHttpUrl("http://[fe80::1]").authority(), "[fe80::1]");
  EXPECT_EQ(parseHttpUrl("http://h:80/x").authority(), "h");
  EXPECT_EQ(parseHttpUrl("https://h:80/x").authority(), "h:80");
  EXPECT_EQ(parseHttpUrl("http://h?q=1").target, "/?q=1");
}

TEST(HttpUrl, Errors) {
  auto err = [](const std::string& url) { return errorOf([&] { parseHttpUrl(url); }); };
  EXPECT_EQ(err("collector:4318"),
            "bad URL 'collector:4318': expected http://host:port/path or https://host:port/path");
  EXPECT_EQ(err("grpc://c:4317"),
            "bad URL 'grpc://c:4317': unsupported scheme 'grpc' (expected http or https)");
  EXPECT_EQ(err("http://:4318/v1/traces"), "bad URL 'http://:4318/v1/traces': missing host");
  EXPECT_EQ(err("http://c:0/"), "bad URL 'http://c:0/': port must be a number 1..65535, got '0'");
  EXPECT_EQ(err("http://c:x/"), "bad URL 'http://c:x/': port must be a number 1..65535, got 'x'");
  EXPECT_EQ(err("http://c:/"), "bad URL 'http://c:/': empty port");
  EXPECT_EQ(err("http://::1:4318/"), "bad URL 'http://::1:4318/': IPv6 addresses need brackets");
  EXPECT_EQ(err("http://[::1/"), "bad URL 'http://[::1/': missing ']' after IPv6 address");
  EXPECT_EQ(err("http://u:p@c/"),
            "bad URL 'http://u:p@c/': user info in the URL is not supported (send credentials "
            "with exporter headers)");
  EXPECT_EQ(err("http://c/a#b"), "bad URL 'http://c/a#b': a fragment ('#') has no meaning here");
  EXPECT_EQ(err("http://c/a b"),
            "bad URL 'http://c/a b': spaces, control and non-ASCII characters must be "
            "percent-encoded");
}

// The OTLP exporter spec: a per-signal endpoint is used as-is; a base URL gets the signal path.
TEST(HttpUrl, OtlpTracesUrl) {
  EXPECT_EQ(otlpHttpTracesUrl("http://c:4318"), "http://c:4318/v1/traces");
  EXPECT_EQ(otlpHttpTracesUrl("http://c:4318/"), "http://c:4318/v1/traces");
  EXPECT_EQ(otlpHttpTracesUrl("https://c/v1/traces"), "https://c/v1/traces");
  EXPECT_EQ(otlpHttpTracesUrl("https://c/custom"), "https://c/custom");
  EXPECT_EQ(otlpHttpTracesUrl("http://[::1]:4318"), "http://[::1]:4318/v1/traces");
}

// What grpc++ is given for an OTLP/gRPC endpoint, and what the config refuses before it gets there.
TEST(GrpcEndpoint, Targets) {
  auto target = [](const std::string& e) { return parseGrpcEndpoint(e).target; };
  EXPECT_EQ(target("http://collector:4317"), "collector:4317");
  EXPECT_EQ(target("http://collector:4317/ignored/path"), "collector:4317");
  EXPECT_EQ(target("HTTPS://otlp.example.com"), "otlp.example.com");  // gRPC's default: 443
  EXPECT_TRUE(parseGrpcEndpoint("https://otlp.example.com").tls);
  EXPECT_FALSE(parseGrpcEndpoint("http://c:4317").tls);
  EXPECT_EQ(target("collector:4317"), "collector:4317");
  EXPECT_EQ(target("[::1]:4317"), "[::1]:4317");
  EXPECT_EQ(target("http://[::1]:4317"), "[::1]:4317");
  EXPECT_EQ(target("unix:/run/otel/otlp.sock"), "unix:/run/otel/otlp.sock");
  EXPECT_EQ(target("unix:///run/otel/otlp.sock"), "unix:///run/otel/otlp.sock");
  EXPECT_EQ(target("unix-abstract:otlp"), "unix-abstract:otlp");
  EXPECT_FALSE(parseGrpcEndpoint("unix:/s").tls);
}

TEST(GrpcEndpoint, Errors) {
  auto err = [](const std::string& e) { return errorOf([&] { parseGrpcEndpoint(e); }); };
  const std::string expected =
      "expected http://host:port, https://host:port, host:port or unix:/path/to/socket";
  EXPECT_EQ(err("console"), "bad endpoint 'console': " + expected);
  EXPECT_EQ(err("collector"), "bad endpoint 'collector': " + expected);
  EXPECT_EQ(err("[::1]"), "bad endpoint '[::1]': " + expected);
  EXPECT_EQ(err("c:x"), "bad endpoint 'c:x': " + expected);
  EXPECT_EQ(err("grpc://c:4317"),
            "bad endpoint 'grpc://c:4317': unsupported scheme 'grpc' (" + expected + ")");
  EXPECT_EQ(err("unix:"), "bad endpoint 'unix:': no socket path after 'unix:'");
  EXPECT_EQ(err("http://:4317"), "bad URL 'http://:4317': missing host");
  EXPECT_EQ(err("https://c:0"), "bad URL 'https://c:0': port must be a number 1..65535, got '0'");
}

}  // namespace
}  // namespace sidetrace::config
