#include <gtest/gtest.h>

#include <random>
#include <string>
#include <utility>
#include <vector>

#include "filters/header_policy_filter.h"

namespace sidetrace::filters {
namespace {

HeaderMap headers(std::vector<std::pair<std::string, std::string>> list) {
  HeaderMap m;
  for (auto& [n, v] : list) {
    m.add(n, v);
  }
  return m;
}

std::vector<std::pair<std::string, std::string>> dump(const HeaderMap& m) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& h : m) {
    out.emplace_back(h.name, h.value);
  }
  return out;
}

using Pairs = std::vector<std::pair<std::string, std::string>>;

bool isLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

// ---- removeHopByHop ----

TEST(RemoveHopByHopTest, RemovesFixedHopByHopHeaders) {
  auto h = headers({{"Host", "x"},
                    {"Connection", "close"},
                    {"Keep-Alive", "timeout=5"},
                    {"TE", "gzip"},
                    {"Trailer", "X-Checksum"},
                    {"Transfer-Encoding", "chunked"},
                    {"Proxy-Connection", "keep-alive"},
                    {"Accept", "*/*"}});
  removeHopByHop(h, false);
  EXPECT_EQ(dump(h), (Pairs{{"Host", "x"}, {"Accept", "*/*"}}));
}

TEST(RemoveHopByHopTest, NamesAreCaseInsensitive) {
  auto h = headers({{"CONNECTION", "close"},
                    {"keep-alive", "1"},
                    {"te", "deflate"},
                    {"TRAILER", "x"},
                    {"transfer-ENCODING", "chunked"},
                    {"proxy-connection", "close"},
                    {"X-Keep", "1"}});
  removeHopByHop(h, false);
  EXPECT_EQ(dump(h), (Pairs{{"X-Keep", "1"}}));
}

// The one TE value HTTP/2 allows; gRPC servers expect it end to end.
TEST(RemoveHopByHopTest, TeTrailersPasses) {
  auto h = headers({{"te", "trailers"}, {"TE", "trailers, deflate"}, {"X", "1"}});
  removeHopByHop(h, false);
  EXPECT_EQ(dump(h), (Pairs{{"te", "trailers"}, {"X", "1"}}));
}

TEST(RemoveHopByHopTest, RemovesHeadersNamedInConnection) {
  auto h = headers({{"Connection", "X-Foo ,  x-bar\t, keep-alive"},
                    {"Connection", "X-Baz"},
                    {"x-foo", "1"},
                    {"X-BAR", "2"},
                    {"X-Baz", "3"},
                    {"X-Foo", "again"},
                    {"X-Qux", "4"}});
  removeHopByHop(h, false);
  EXPECT_EQ(dump(h), (Pairs{{"X-Qux", "4"}}));
}

TEST(RemoveHopByHopTest, ConnectionWithEmptyItemsIsHarmless) {
  auto h = headers({{"Connection", ", ,x-drop,"}, {"X-Drop", "x"}, {"A", "1"}});
  removeHopByHop(h, false);
  EXPECT_EQ(dump(h), (Pairs{{"A", "1"}}));
}

// RFC 9110 §7.6.1: a proxy MUST remove every field whose name is listed as a connection option.
// RFC 9110 §7.6.1: every name listed in Connection is hop-by-hop, "close" included.
TEST(RemoveHopByHopTest, FieldNamedCloseListedInConnectionIsRemoved) {
  auto h = headers({{"Connection", "close"}, {"Close", "x"}, {"A", "1"}});
  removeHopByHop(h, false);
  EXPECT_EQ(dump(h), (Pairs{{"A", "1"}}));
}

TEST(RemoveHopByHopTest, UpgradeDroppedWithoutKeepUpgrade) {
  auto h = headers({{"Connection", "Upgrade"}, {"Upgrade", "websocket"}, {"A", "1"}});
  removeHopByHop(h, false);
  EXPECT_EQ(dump(h), (Pairs{{"A", "1"}}));

  // Upgrade not named in Connection is still hop-by-hop.
  auto h2 = headers({{"Upgrade", "h2c"}, {"A", "1"}});
  removeHopByHop(h2, false);
  EXPECT_EQ(dump(h2), (Pairs{{"A", "1"}}));
}

TEST(RemoveHopByHopTest, UpgradeKeptWithKeepUpgrade) {
  auto h = headers({{"Connection", "keep-alive, Upgrade"},
                    {"Upgrade", "websocket"},
                    {"Keep-Alive", "5"},
                    {"Sec-WebSocket-Key", "k"}});
  removeHopByHop(h, true);
  EXPECT_EQ(
      dump(h),
      (Pairs{{"Upgrade", "websocket"}, {"Sec-WebSocket-Key", "k"}, {"Connection", "upgrade"}}));
}

// Many names and many fields (the shape that made stripping quadratic): the right ones go, in one
// pass, and the order of the rest stays.
TEST(RemoveHopByHopTest, ManyConnectionNamesAmongManyFields) {
  std::string names = "x-drop-7";
  for (int i = 0; i < 3000; ++i) {
    names += ",never-" + std::to_string(i);
  }
  names += ", X-DROP-1,x-drop-1";
  HeaderMap h;
  h.add("Connection", names);
  for (int i = 0; i < 2000; ++i) {
    h.add(i % 2 == 0 ? "b" : "x-drop-" + std::to_string(i % 10), std::to_string(i));
  }
  removeHopByHop(h, false);
  // Kept: every "b" (even i) and x-drop-3, -5, -9 (odd i), in their order.
  Pairs expected;
  for (int i = 0; i < 2000; ++i) {
    if (i % 2 == 0) {
      expected.emplace_back("b", std::to_string(i));
    } else if (i % 10 != 1 && i % 10 != 7) {
      expected.emplace_back("x-drop-" + std::to_string(i % 10), std::to_string(i));
    }
  }
  EXPECT_EQ(dump(h), expected);
}

TEST(RemoveHopByHopTest, NothingToRemoveLeavesOrder) {
  auto h = headers({{"B", "2"}, {"A", "1"}, {"B", "3"}});
  removeHopByHop(h, false);
  EXPECT_EQ(dump(h), (Pairs{{"B", "2"}, {"A", "1"}, {"B", "3"}}));
}

// ---- HeaderPolicyFilter::onRequest ----

Stream makeStream(std::vector<std::pair<std::string, std::string>> list) {
  Stream s;
  s.peer_address = "127.0.0.1";
  s.scheme = "http";
  s.request.method = "GET";
  s.request.target = "/";
  s.request.headers = headers(std::move(list));
  return s;
}

TEST(HeaderPolicyFilterTest, AddsForwardedHeadersAndRequestId) {
  HeaderPolicyFilter f;
  Stream s = makeStream({{"Host", "example.com"}});
  EXPECT_EQ(f.onRequest(s), FilterStatus::Continue);
  auto& h = s.request.headers;
  EXPECT_EQ(h.get("x-forwarded-for"), "127.0.0.1");
  EXPECT_EQ(h.get("x-forwarded-proto"), "http");
  auto rid = h.get("x-request-id");
  ASSERT_TRUE(rid.has_value());
  EXPECT_EQ(rid->size(), 32u);
  EXPECT_TRUE(isLowerHex(*rid)) << *rid;
  EXPECT_NE(*rid, std::string(32, '0'));
  EXPECT_EQ(h.count("x-forwarded-for"), 1u);
  EXPECT_EQ(h.count("x-request-id"), 1u);
  EXPECT_EQ(h.size(), 4u);
  EXPECT_EQ(h.get("host"), "example.com");
}

TEST(HeaderPolicyFilterTest, AppendsToExistingForwardedFor) {
  HeaderPolicyFilter f;
  Stream s = makeStream({{"X-Forwarded-For", "a"}});
  f.onRequest(s);
  EXPECT_EQ(s.request.headers.get("x-forwarded-for"), "a, 127.0.0.1");
  EXPECT_EQ(s.request.headers.count("x-forwarded-for"), 1u);

  Stream s2 = makeStream({{"x-forwarded-for", "10.0.0.1, 10.0.0.2"}});
  s2.peer_address = "::1";
  f.onRequest(s2);
  EXPECT_EQ(s2.request.headers.get("x-forwarded-for"), "10.0.0.1, 10.0.0.2, ::1");
}

TEST(HeaderPolicyFilterTest, ForwardedProtoIsOverwritten) {
  HeaderPolicyFilter f;
  Stream s = makeStream({{"X-Forwarded-Proto", "https"}, {"x-forwarded-proto", "ftp"}});
  s.scheme = "http";
  f.onRequest(s);
  EXPECT_EQ(s.request.headers.get("x-forwarded-proto"), "http");
  EXPECT_EQ(s.request.headers.count("x-forwarded-proto"), 1u);

  Stream s2 = makeStream({});
  s2.scheme = "https";
  f.onRequest(s2);
  EXPECT_EQ(s2.request.headers.get("x-forwarded-proto"), "https");
}

TEST(HeaderPolicyFilterTest, KeepsExistingRequestId) {
  HeaderPolicyFilter f;
  Stream s = makeStream({{"X-Request-Id", "abc-123"}});
  f.onRequest(s);
  EXPECT_EQ(s.request.headers.get("x-request-id"), "abc-123");
  EXPECT_EQ(s.request.headers.count("x-request-id"), 1u);
}

TEST(HeaderPolicyFilterTest, RequestIdsDifferPerRequest) {
  HeaderPolicyFilter f;
  Stream a = makeStream({});
  Stream b = makeStream({});
  f.onRequest(a);
  f.onRequest(b);
  EXPECT_NE(a.request.headers.get("x-request-id"), b.request.headers.get("x-request-id"));
}

TEST(HeaderPolicyFilterTest, RemovesExpectAndHopByHop) {
  HeaderPolicyFilter f;
  Stream s = makeStream({{"Host", "h"},
                         {"Expect", "100-continue"},
                         {"Connection", "keep-alive, X-Secret"},
                         {"X-Secret", "s"},
                         {"Transfer-Encoding", "chunked"},
                         {"TE", "gzip"},
                         {"Upgrade", "websocket"}});  // no "upgrade" token: not an upgrade
  f.onRequest(s);
  auto& h = s.request.headers;
  EXPECT_FALSE(h.get("expect"));
  EXPECT_FALSE(h.get("connection"));
  EXPECT_FALSE(h.get("x-secret"));
  EXPECT_FALSE(h.get("transfer-encoding"));
  EXPECT_FALSE(h.get("te"));
  EXPECT_FALSE(h.get("upgrade"));
  EXPECT_EQ(h.get("host"), "h");
}

TEST(HeaderPolicyFilterTest, UpgradeRequestKeepsUpgradeHeaders) {
  HeaderPolicyFilter f;
  Stream s = makeStream({{"Host", "h"},
                         {"Connection", "Upgrade"},
                         {"Upgrade", "websocket"},
                         {"Sec-WebSocket-Version", "13"}});
  f.onRequest(s);
  auto& h = s.request.headers;
  EXPECT_EQ(h.get("upgrade"), "websocket");
  EXPECT_EQ(h.get("connection"), "upgrade");
  EXPECT_EQ(h.count("connection"), 1u);
  EXPECT_EQ(h.get("sec-websocket-version"), "13");
}

// What onRequest did as separate steps before it became two passes; it must give the same head.
void requestPolicyStepByStep(Stream& s, std::string_view request_id) {
  auto& h = s.request.headers;
  const bool upgrade = h.hasToken("connection", "upgrade") && h.get("upgrade").has_value();
  removeHopByHop(h, upgrade);
  h.remove("expect");
  if (auto xff = h.get("x-forwarded-for")) {
    std::string v(*xff);
    v += ", ";
    v += s.peer_address;
    h.set("x-forwarded-for", v);
  } else {
    h.add("x-forwarded-for", s.peer_address);
  }
  h.set("x-forwarded-proto", s.scheme);
  if (!h.get("x-request-id")) {
    h.add("x-request-id", request_id);
  }
}

TEST(HeaderPolicyFilterTest, SameHeadAsTheStepsOneAfterTheOther) {
  // Fields that the policy touches, in every case and repeat, with Connection lists that name
  // them; drawn at random (fixed seed) into heads of up to 12 fields.
  const Pairs pool = {{"Host", "h"},
                      {"X-Forwarded-For", "10.0.0.1"},
                      {"x-forwarded-for", "10.0.0.2, 10.0.0.3"},
                      {"X-Forwarded-Proto", "https"},
                      {"x-forwarded-proto", "ftp"},
                      {"X-Request-Id", "abc"},
                      {"Expect", "100-continue"},
                      {"Connection", "keep-alive"},
                      {"Connection", "close, X-Forwarded-For"},
                      {"connection", "Upgrade"},
                      {"Connection", "x-request-id, x-forwarded-proto,expect"},
                      {"Connection", "a, b, c, d, e, f, g, h, i, x-secret"},
                      {"Upgrade", "websocket"},
                      {"TE", "trailers"},
                      {"te", "gzip"},
                      {"Keep-Alive", "timeout=5"},
                      {"Transfer-Encoding", "chunked"},
                      {"X-Secret", "s"},
                      {"Trailer", "x"},
                      {"Proxy-Connection", "keep-alive"},
                      {"User-Agent", "ua"}};
  std::mt19937 rng(16);
  HeaderPolicyFilter f;
  for (int round = 0; round < 3000; ++round) {
    Pairs list;
    const size_t n = rng() % 13;
    for (size_t i = 0; i < n; ++i) {
      list.push_back(pool[rng() % pool.size()]);
    }
    Stream got = makeStream(list);
    got.scheme = round % 2 == 0 ? "http" : "https";
    Stream want = makeStream(list);
    want.scheme = got.scheme;
    f.onRequest(got);
    // The request id onRequest generated, when it made one, is the one the steps add.
    const auto rid = got.request.headers.get("x-request-id");
    ASSERT_TRUE(rid.has_value());
    requestPolicyStepByStep(want, std::string(*rid));
    ASSERT_EQ(dump(got.request.headers), dump(want.request.headers)) << "round " << round;
  }
}

TEST(HeaderPolicyFilterTest, OnResponseStripsHopByHopExceptFor101) {
  HeaderPolicyFilter f;
  Stream s = makeStream({});
  ResponseHead r;
  r.status = 200;
  r.headers = headers({{"Content-Type", "text/plain"},
                       {"Connection", "keep-alive"},
                       {"Keep-Alive", "timeout=5"},
                       {"Transfer-Encoding", "chunked"},
                       {"Upgrade", "h2c"}});
  f.onResponse(s, r);
  EXPECT_EQ(dump(r.headers), (Pairs{{"Content-Type", "text/plain"}}));

  ResponseHead u;
  u.status = 101;
  u.headers = headers({{"Connection", "Upgrade"}, {"Upgrade", "websocket"}});
  f.onResponse(s, u);
  EXPECT_EQ(dump(u.headers), (Pairs{{"Upgrade", "websocket"}, {"Connection", "upgrade"}}));
}

}  // namespace
}  // namespace sidetrace::filters
