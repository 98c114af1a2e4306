#include <gtest/gtest.h>

#include "config/checks.h"
#include "config/load.h"
#include "tests/unit/config/env_map.h"

namespace sidetrace::config {
namespace {

using testing::errorOf;

TEST(ParseDuration, Units) {
  EXPECT_EQ(parseDuration("250ms"), Duration(250));
  EXPECT_EQ(parseDuration("1s"), Duration(1000));
  EXPECT_EQ(parseDuration("1.5s"), Duration(1500));
  EXPECT_EQ(parseDuration("2m"), Duration(120000));
  EXPECT_EQ(parseDuration("1h"), Duration(3600000));
  EXPECT_EQ(parseDuration("0"), Duration(0));
  EXPECT_EQ(parseDuration("0s"), Duration(0));
  EXPECT_EQ(parseDuration("1500"), Duration(1500));
  EXPECT_EQ(parseDuration(" 3s "), Duration(3000));
  EXPECT_EQ(parseDuration("1m30s"), Duration(90000));
  EXPECT_EQ(parseDuration("0.5ms"), Duration(1));  // rounded to the nearest millisecond
}

TEST(ParseDuration, Errors) {
  for (const char* bad :
       {"", "s", "-1s", "1x", "1.2.3s", "abc", "1 s", "5sec", "1e3s", "9999999999999"}) {
    EXPECT_EQ(errorOf([&] { parseDuration(bad); }),
              "bad duration '" + std::string(bad) +
                  "' (expected e.g. 250ms, 1s, 1.5s, 2m, 1h; a bare number is milliseconds)")
        << bad;
  }
}

TEST(ParseHostPort, Forms) {
  HostPort a = parseHostPort("example.com:8080");
  EXPECT_EQ(a.host, "example.com");
  EXPECT_EQ(a.port, 8080);
  HostPort b = parseHostPort("[::1]:9000");
  EXPECT_EQ(b.host, "::1");
  EXPECT_EQ(b.port, 9000);
  HostPort c = parseHostPort(":15001");
  EXPECT_EQ(c.host, "0.0.0.0");
  EXPECT_EQ(c.port, 15001);
  EXPECT_EQ(parseHostPort("127.0.0.1:0").port, 0);  // ephemeral, for tests
  EXPECT_EQ(parseHostPort("h:65535").port, 65535);
}

TEST(ParseHostPort, Errors) {
  EXPECT_EQ(errorOf([] { parseHostPort("localhost"); }),
            "bad address 'localhost': missing ':port' (expected host:port, [v6]:port or :port)");
  EXPECT_EQ(errorOf([] { parseHostPort("h:65536"); }),
            "bad address 'h:65536': port must be a number 0..65535, got '65536'");
  EXPECT_EQ(errorOf([] { parseHostPort("h:http"); }),
            "bad address 'h:http': port must be a number 0..65535, got 'http'");
  EXPECT_EQ(errorOf([] { parseHostPort("h:"); }),
            "bad address 'h:': port must be a number 0..65535, got ''");
  EXPECT_EQ(errorOf([] { parseHostPort("::1:80"); }),
            "bad address '::1:80': IPv6 addresses need brackets, e.g. [::1]:8080");
  EXPECT_EQ(errorOf([] { parseHostPort("[::1]"); }), "bad address '[::1]': missing ':port'");
  EXPECT_EQ(errorOf([] { parseHostPort("[::1:80"); }),
            "bad address '[::1:80': missing ']' after IPv6 address");
  EXPECT_EQ(errorOf([] { parseHostPort("http://h:80"); }),
            "bad address 'http://h:80': expected host:port, not a URL");
}

TEST(HostPort, Str) {
  EXPECT_EQ((HostPort{"10.0.0.1", 80}).str(), "10.0.0.1:80");
  EXPECT_EQ((HostPort{"::1", 443}).str(), "[::1]:443");
  EXPECT_EQ(parseHostPort("[2001:db8::1]:8080").str(), "[2001:db8::1]:8080");
}

TEST(Regex, Matches) {
  Regex none;
  EXPECT_FALSE(none.matches("anything"));
  Regex r = detail::compileRegex("^/api/[0-9]+");
  EXPECT_TRUE(r.matches("/api/42/x"));  // search, not full match
  EXPECT_FALSE(r.matches("/x/api/42"));
  Regex inner = detail::compileRegex("ord");
  EXPECT_TRUE(inner.matches("/orders"));
}

// std::regex recursed once per character (a 40 KB path overflowed the stack) and backtracked
// exponentially on nested quantifiers; RE2 does neither.
TEST(Regex, LongAndHostileInputsMatchInLinearTime) {
  Regex digits = detail::compileRegex("^/api/orders/[0-9]+$");
  std::string path = "/api/orders/" + std::string(1 << 20, '7');
  EXPECT_TRUE(digits.matches(path));
  path.back() = 'x';
  EXPECT_FALSE(digits.matches(path));
  Regex nested = detail::compileRegex("^(a+)+$");
  EXPECT_FALSE(nested.matches(std::string(100000, 'a') + "b"));
  EXPECT_TRUE(nested.matches(std::string(100000, 'a')));
}

TEST(Regex, InvalidPatternIsAConfigError) {
  EXPECT_EQ(errorOf([] { detail::compileRegex("^/api/(unclosed"); }),
            "invalid regex '^/api/(unclosed': missing ): ^/api/(unclosed");
  // RE2 has no backreferences: refused at load, never a surprise at match time.
  EXPECT_NE(errorOf([] { detail::compileRegex("(a)\\1"); }).find("invalid regex"),
            std::string::npos);
}

TEST(Config, FindCluster) {
  Config cfg;
  cfg.clusters.resize(2);
  cfg.clusters[0].name = "a";
  cfg.clusters[1].name = "b";
  ASSERT_NE(cfg.findCluster("b"), nullptr);
  EXPECT_EQ(cfg.findCluster("b"), &cfg.clusters[1]);
  EXPECT_EQ(cfg.findCluster("c"), nullptr);
}

}  // namespace
}  // namespace sidetrace::config
