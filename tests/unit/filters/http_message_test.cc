#include "filters/http_message.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace sidetrace::filters {
namespace {

using Pairs = std::vector<std::pair<std::string, std::string>>;

HeaderMap headers(const Pairs& list) {
  HeaderMap m;
  for (const auto& [n, v] : list) {
    m.add(n, v);
  }
  return m;
}

Pairs dump(const HeaderMap& m) {
  Pairs out;
  for (const auto& h : m) {
    out.emplace_back(h.name, h.value);
  }
  return out;
}

TEST(HeaderMapSetTest, ReplacesTheFirstAndDropsRepeats) {
  auto h = headers({{"A", "1"}, {"x-f", "1"}, {"B", "2"}, {"X-F", "2"}, {"x-f", "3"}, {"C", "3"}});
  h.set("X-f", "new");
  EXPECT_EQ(dump(h), (Pairs{{"A", "1"}, {"x-f", "new"}, {"B", "2"}, {"C", "3"}}));
  h.set("D", "4");
  EXPECT_EQ(dump(h), (Pairs{{"A", "1"}, {"x-f", "new"}, {"B", "2"}, {"C", "3"}, {"D", "4"}}));
}

// Thousands of repeats (a client's choice) go in one pass.
TEST(HeaderMapSetTest, ManyRepeats) {
  HeaderMap h;
  for (int i = 0; i < 5000; ++i) {
    h.add("x-forwarded-proto", std::to_string(i));
    h.add("k", std::to_string(i));
  }
  h.set("X-Forwarded-Proto", "https");
  EXPECT_EQ(h.size(), 5001u);
  EXPECT_EQ(h.count("x-forwarded-proto"), 1u);
  EXPECT_EQ(h.get("x-forwarded-proto"), "https");
  EXPECT_EQ(h.raw()[1].value, "0");
  EXPECT_EQ(h.raw()[5000].value, "4999");
}

// RFC 9113 §8.2.3: cookie crumbs become one line joined with "; ", in order.
TEST(HeaderMapFoldTest, JoinsCookieCrumbs) {
  auto h =
      headers({{"cookie", "a=1"}, {"x", "1"}, {"Cookie", "b=2"}, {"y", "2"}, {"cookie", "c=3"}});
  h.fold("cookie", "; ");
  EXPECT_EQ(dump(h), (Pairs{{"cookie", "a=1; b=2; c=3"}, {"x", "1"}, {"y", "2"}}));
  auto one = headers({{"x", "1"}, {"cookie", "a=1"}});
  one.fold("cookie", "; ");
  EXPECT_EQ(dump(one), (Pairs{{"x", "1"}, {"cookie", "a=1"}}));
  auto none = headers({{"x", "1"}});
  none.fold("cookie", "; ");
  EXPECT_EQ(dump(none), (Pairs{{"x", "1"}}));
}

// The one rule every trailer section the proxy writes goes through (RFC 9110 §6.5.1).
TEST(AllowedInTrailersTest, FramingRoutingConnectionAndAuthFieldsAreNot) {
  const std::vector<std::string> refused = {
      // framing, routing, connection control
      "Content-Length", "TRANSFER-ENCODING", "Trailer", "host", "Connection", "Keep-Alive",
      "Proxy-Connection", "TE", "Upgrade",
      // authentication
      "Authorization", "Proxy-Authorization", "WWW-Authenticate", "Proxy-Authenticate",
      // request modifiers, response controls, content format
      "Expect", "Max-Forwards", "Range", "Cache-Control", "Pragma", "Content-Encoding",
      "Content-Type", "Content-Range"};
  for (const auto& name : refused) {
    EXPECT_FALSE(allowedInTrailers(name)) << name;
  }
  for (const char* name : {"grpc-status", "grpc-message", "grpc-status-details-bin", "X-Checksum",
                           "Server-Timing", "Digest", "Content-Lengths", "Hosts", "t", ""}) {
    EXPECT_TRUE(allowedInTrailers(name)) << name;
  }
}

}  // namespace
}  // namespace sidetrace::filters
