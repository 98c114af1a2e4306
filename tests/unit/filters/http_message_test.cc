#include "filters/http_message.h"

#include <gtest/gtest.h>

#include <optional>
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
  EXPECT_EQ(h.begin()[1].value, "0");
  EXPECT_EQ(h.begin()[5000].value, "4999");
}

// A cleared map is empty to every reader, and what it is given next is all there is.
TEST(HeaderMapReuseTest, ClearedMapHoldsOnlyWhatComesNext) {
  HeaderMap h;
  h.add("Content-Type", "text/plain; charset=utf-8 and more than fifteen bytes");
  h.add("x-a", "1");
  h.add("x-b", "2");
  h.clear();
  EXPECT_EQ(h.size(), 0u);
  EXPECT_EQ(h.begin(), h.end());
  EXPECT_FALSE(h.get("x-a"));
  EXPECT_EQ(h.count("content-type"), 0u);
  h.add("x-b", "3");
  EXPECT_EQ(dump(h), (Pairs{{"x-b", "3"}}));
  h.remove("x-b");
  h.add("x-c", "4");
  h.add("x-d", "5");
  h.add("x-e", "6");
  h.add("x-f", "7");
  EXPECT_EQ(dump(h), (Pairs{{"x-c", "4"}, {"x-d", "5"}, {"x-e", "6"}, {"x-f", "7"}}));
}

// Copies and moves carry the fields in use, not the spare storage.
TEST(HeaderMapReuseTest, CopiesAndMovesCarryOnlyLiveFields) {
  HeaderMap h;
  for (int i = 0; i < 10; ++i) {
    h.add("k" + std::to_string(i), "v");
  }
  h.clear();
  h.add("a", "1");
  HeaderMap copy = h;
  EXPECT_EQ(dump(copy), (Pairs{{"a", "1"}}));
  HeaderMap assigned;
  assigned.add("old", "x");
  assigned = h;
  EXPECT_EQ(dump(assigned), (Pairs{{"a", "1"}}));
  HeaderMap moved = std::move(h);
  EXPECT_EQ(dump(moved), (Pairs{{"a", "1"}}));
  EXPECT_EQ(h.size(), 0u);  // NOLINT(bugprone-use-after-move): a moved-from map is empty
  h.add("b", "2");
  EXPECT_EQ(dump(h), (Pairs{{"b", "2"}}));
}

// iequals compares eight bytes a step: it must agree with byte-by-byte ASCII folding for every
// pair of bytes (non-ASCII ones too, which only equal themselves), wherever they stand.
TEST(IequalsTest, AgreesWithByteByByteFoldingForEveryBytePair) {
  auto fold = [](unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; };
  for (size_t len : {1u, 8u, 9u, 16u, 23u}) {
    for (int x = 0; x < 256; ++x) {
      for (int y = 0; y < 256; ++y) {
        std::string a(len, 'k');
        std::string b(len, 'K');
        const size_t at = (static_cast<size_t>(x) * 7 + static_cast<size_t>(y)) % len;
        a[at] = static_cast<char>(x);
        b[at] = static_cast<char>(y);
        const bool want =
            fold(static_cast<unsigned char>(x)) == fold(static_cast<unsigned char>(y));
        ASSERT_EQ(iequals(a, b), want) << "len " << len << " bytes " << x << "," << y;
      }
    }
  }
  EXPECT_TRUE(iequals("Content-Length", "content-length"));
  EXPECT_TRUE(iequals("X-FORWARDED-PROTO", "x-forwarded-proto"));
  EXPECT_FALSE(iequals("content-length", "content_length"));
  EXPECT_FALSE(iequals("Content-Lengtg", "content-length"));
  EXPECT_FALSE(iequals("@[`{", "`{@["));  // neighbours of the letters do not fold
}

// A field filled in place (as the HTTP/1 parser does, span by span) starts empty even where a
// cleared map's spare storage held another, and reuses that storage.
TEST(HeaderMapReuseTest, AddEmptyStartsBlankInSpareStorage) {
  HeaderMap h;
  h.add("Content-Type", "text/plain; charset=utf-8 and more than fifteen bytes");
  h.add("x-a", "1");
  const char* spare = h.begin()->value.data();
  h.clear();
  Header& f = h.addEmpty();
  EXPECT_EQ(h.size(), 1u);
  EXPECT_TRUE(f.name.empty());
  EXPECT_TRUE(f.value.empty());
  f.name.append("X-Long");
  f.value.append("a value of more than fifteen bytes, ");
  h.back().value.append("in two spans");
  EXPECT_EQ(h.begin()->value.data(), spare);  // no allocation for a usual value
  h.addEmpty().name = "x-b";
  h.back().value = "2";
  h.addEmpty().name = "x-c";  // past the spare storage: a new field
  EXPECT_EQ(dump(h), (Pairs{{"X-Long", "a value of more than fifteen bytes, in two spans"},
                            {"x-b", "2"},
                            {"x-c", ""}}));
}

// A head of thousands of fields does not stay allocated in a map that is reused.
TEST(HeaderMapReuseTest, ClearLetsGoOfUnusualHeads) {
  HeaderMap h;
  for (int i = 0; i < 5000; ++i) {
    h.add("k", std::string(1000, 'x'));
  }
  h.clear();
  for (int i = 0; i < 40; ++i) {
    h.add("k" + std::to_string(i), "v");
  }
  EXPECT_EQ(h.size(), 40u);
  EXPECT_EQ(h.begin()[39].name, "k39");
  EXPECT_EQ(h.begin()[0].value, "v");
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

// An absolute-form target (a client that takes sidetrace for a forward proxy) becomes origin-form;
// its authority is the host, so a Host field naming another is refused (found by the nginx/HAProxy
// differential, tests/fuzz/differential.py). The scheme's default port and case make no difference.
TEST(ToOriginFormTest, AbsoluteFormBecomesOriginFormAndHostMustAgree) {
  auto reduce = [](std::string target, std::optional<std::string> host) {
    RequestHead req;
    req.method = "GET";
    req.target = std::move(target);
    if (host) {
      req.headers.add("Host", *host);
    }
    const bool ok = toOriginForm(req);
    return ok ? req.target + " " + std::string(req.headers.get("host").value_or("<none>"))
              : "refused";
  };
  EXPECT_EQ(reduce("/plain?q", "a"), "/plain?q a");
  EXPECT_EQ(reduce("http://upstream.local:8080/x?y=1", "upstream.local:8080"),
            "/x?y=1 upstream.local:8080");
  EXPECT_EQ(reduce("http://a.example", std::nullopt), "/ a.example");
  EXPECT_EQ(reduce("http://a.example?q", "a.example"), "/?q a.example");
  EXPECT_EQ(reduce("http://a.example/p#frag", "a.example"), "/p a.example");
  EXPECT_EQ(reduce("HTTP://A.example:80/x", "a.EXAMPLE"), "/x a.EXAMPLE");
  EXPECT_EQ(reduce("http://a.example/x", "a.example:80"), "/x a.example:80");
  EXPECT_EQ(reduce("https://a.example/", "a.example:443"), "/ a.example:443");
  EXPECT_EQ(reduce("http://[::1]:8080/", "[::1]:8080"), "/ [::1]:8080");
  EXPECT_EQ(reduce("http://upstream.local:8080/x", "upstream.local:808"), "refused");
  EXPECT_EQ(reduce("http://a.example/x", "b.example"), "refused");
  EXPECT_EQ(reduce("http://a.example:81/", "a.example"), "refused");
  EXPECT_EQ(reduce("https://a.example/", "a.example:80"), "refused");
}

}  // namespace
}  // namespace sidetrace::filters
