// The egress filter's target parsing (absolute form and CONNECT), its CONNECT handling, and the
// in-flight registry's parent inference.

#include <gtest/gtest.h>

#include <string>

#include "filters/egress_filter.h"
#include "filters/inflight_registry.h"
#include "filters/stream.h"

namespace sidetrace::filters {
namespace {

TEST(ParseAbsoluteTarget, Forms) {
  auto t = parseAbsoluteTarget("http://api.example.com:8080/v1/x?q=1");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->host, "api.example.com");
  EXPECT_EQ(t->port, 8080);
  EXPECT_EQ(t->authority, "api.example.com:8080");
  EXPECT_EQ(t->rest, "/v1/x?q=1");

  t = parseAbsoluteTarget("HTTP://Example.com");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->host, "Example.com");
  EXPECT_EQ(t->port, 80);
  EXPECT_EQ(t->rest, "");

  t = parseAbsoluteTarget("http://[::1]:9000?x");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->host, "::1");
  EXPECT_EQ(t->port, 9000);
  EXPECT_EQ(t->rest, "?x");
}

TEST(ParseAbsoluteTarget, Refused) {
  for (const char* bad :
       {"/path", "example.com:80", "https://example.com/", "http://", "http:///x", "http://:80/",
        "http://u:p@example.com/", "http://example.com:0/", "http://example.com:65536/",
        "http://example.com:8x/", "http://[::1/", "http://[::1]x/"}) {
    EXPECT_FALSE(parseAbsoluteTarget(bad)) << bad;
  }
}

TEST(ParseAbsoluteTarget, HostCharacters) {
  for (const char* bad : {"http://exa mple.com/", "http://exa%41mple.com/", "http://a\\b/",
                          "http://[::1%25eth0]/", "http://[g::1]/", "http://a,b/"}) {
    EXPECT_FALSE(parseAbsoluteTarget(bad)) << bad;
  }
  auto t = parseAbsoluteTarget("http://my_host-1.internal.:81/");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->host, "my_host-1.internal.");
  t = parseAbsoluteTarget("http://example.com:/x");  // an empty port is the default one
  ASSERT_TRUE(t);
  EXPECT_EQ(t->port, 80);
}

TEST(ParseConnectTarget, Forms) {
  auto t = parseConnectTarget("api.example.com:443");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->host, "api.example.com");
  EXPECT_EQ(t->port, 443);

  t = parseConnectTarget("127.0.0.1:1");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->host, "127.0.0.1");
  EXPECT_EQ(t->port, 1);

  t = parseConnectTarget("[2001:db8::1]:65535");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->host, "2001:db8::1");
  EXPECT_EQ(t->port, 65535);

  t = parseConnectTarget("API.Example.COM:08443");  // case is the filter's business
  ASSERT_TRUE(t);
  EXPECT_EQ(t->host, "API.Example.COM");
  EXPECT_EQ(t->port, 8443);
}

// What RFC 9110 §9.3.6 does not allow (a port is required) and what no client sends.
TEST(ParseConnectTarget, Refused) {
  for (const char* bad : {"",
                          "api.example.com",
                          "api.example.com:",
                          ":443",
                          "api.example.com:0",
                          "api.example.com:65536",
                          "api.example.com:99999999999",
                          "api.example.com:-1",
                          "api.example.com:+443",
                          "api.example.com:443x",
                          "api.example.com: 443",
                          "user:pw@api.example.com:443",
                          "@api.example.com:443",
                          "/path",
                          "api.example.com:443/",
                          "api.example.com:443/x",
                          "api.example.com:443?q",
                          "http://api.example.com:443",
                          "https://api.example.com:443",
                          "[::1]",
                          "[::1]443",
                          "[::1:443",
                          "::1:443",
                          "[]:443",
                          "a b:443",
                          "a:1:2",
                          "*:443"}) {
    EXPECT_FALSE(parseConnectTarget(bad)) << bad;
  }
}

// The filter on the egress listener: a CONNECT names the destination and marks a tunnel; bad
// forms, HTTP/2 and disallowed hosts are answered locally.
class EgressFilterConnect : public ::testing::Test {
 protected:
  EgressFilterConnect() {
    listener_.egress = true;
    cfg_.allow = {"*.example.com", "127.0.0.1"};
  }
  Stream& connect(std::string target, bool http2 = false) {
    s_.reset();
    s_.listener = &listener_;
    s_.http2 = http2;
    s_.request.method = "CONNECT";
    s_.request.target = std::move(target);
    status_ = filter_.onRequest(s_);
    return s_;
  }

  config::Listener listener_;
  config::EgressConfig cfg_;
  InflightRegistry registry_;
  EgressFilter filter_{cfg_, registry_};
  Stream s_;
  FilterStatus status_ = FilterStatus::Continue;
};

TEST_F(EgressFilterConnect, NamesTheDestinationAndMarksATunnel) {
  Stream& s = connect("API.Example.com:8443");
  EXPECT_EQ(status_, FilterStatus::Continue);
  EXPECT_TRUE(s.tunnel);
  EXPECT_EQ(s.egress_host, "api.example.com");
  EXPECT_EQ(s.egress_port, 8443);
  EXPECT_EQ(s.request.target, "API.Example.com:8443");  // as sent: the access log's path
}

TEST_F(EgressFilterConnect, RefusesBadFormsDeniedHostsAndHttp2) {
  Stream& s = connect("api.example.com");
  EXPECT_EQ(status_, FilterStatus::StopIteration);
  ASSERT_TRUE(s.local_reply);
  EXPECT_EQ(s.local_reply->status, 400);
  EXPECT_FALSE(s.tunnel);

  connect("evil.test:443");
  ASSERT_TRUE(s.local_reply);
  EXPECT_EQ(s.local_reply->status, 403);
  EXPECT_NE(s.local_reply->body.find("evil.test"), std::string::npos);
  EXPECT_EQ(registry_.denied(), 1u);

  connect("api.example.com:443", true);
  ASSERT_TRUE(s.local_reply);
  EXPECT_EQ(s.local_reply->status, 501);
  EXPECT_NE(s.local_reply->body.find("HTTP/1.1"), std::string::npos);
  EXPECT_FALSE(s.tunnel);
}

TEST_F(EgressFilterConnect, IngressListenersPassCONNECTOnUntouched) {
  listener_.egress = false;
  Stream& s = connect("api.example.com");
  EXPECT_EQ(status_, FilterStatus::Continue);  // the router answers 405 there
  EXPECT_FALSE(s.local_reply);
  EXPECT_FALSE(s.tunnel);
}

tracing::SpanContext ctx(uint8_t id) {
  tracing::SpanContext c;
  c.trace_id.bytes[0] = id;
  c.span_id.bytes[0] = id;
  c.flags = tracing::kFlagSampled;
  return c;
}

TEST(InflightRegistry, SingleInflightOnlyWithExactlyOne) {
  InflightRegistry r;
  EXPECT_EQ(r.infer(std::nullopt).source, ParentSource::None);
  const uint64_t a = r.add("id-a", ctx(1));
  auto p = r.infer(std::nullopt);
  EXPECT_EQ(p.source, ParentSource::SingleInflight);
  EXPECT_EQ(p.parent.span_id, ctx(1).span_id);
  const uint64_t b = r.add("id-b", ctx(2));
  p = r.infer(std::nullopt);
  EXPECT_EQ(p.source, ParentSource::None);  // two candidates: never a guess
  ASSERT_EQ(p.link_count, 2u);
  r.remove(a);
  p = r.infer(std::nullopt);
  EXPECT_EQ(p.source, ParentSource::SingleInflight);
  EXPECT_EQ(p.parent.span_id, ctx(2).span_id);
  r.remove(b);
  EXPECT_EQ(r.size(), 0u);
}

TEST(InflightRegistry, RequestIdMustNameExactlyOne) {
  InflightRegistry r;
  r.add("id-a", ctx(1));
  r.add("id-b", ctx(2));
  auto p = r.infer("id-b");
  EXPECT_EQ(p.source, ParentSource::RequestId);
  EXPECT_EQ(p.parent.span_id, ctx(2).span_id);
  EXPECT_EQ(r.infer("id-unknown").source, ParentSource::None);
  r.add("id-b", ctx(3));  // a client reused an id: it decides nothing
  p = r.infer("id-b");
  EXPECT_EQ(p.source, ParentSource::None);
  EXPECT_EQ(p.link_count, 3u);
}

TEST(InflightRegistry, UntracedRequestsCountButAreNeverParents) {
  InflightRegistry r;
  r.add("untraced", tracing::SpanContext());
  EXPECT_EQ(r.infer(std::nullopt).source, ParentSource::None);
  r.add("traced", ctx(1));
  auto p = r.infer(std::nullopt);  // one traced and one untraced in flight: either could be it
  EXPECT_EQ(p.source, ParentSource::None);
  EXPECT_EQ(p.link_count, 1u);
  p = r.infer("untraced");  // the cause is known and not traced: no parent, no links
  EXPECT_EQ(p.source, ParentSource::None);
  EXPECT_EQ(p.link_count, 0u);
}

TEST(InflightRegistry, LinksAreBounded) {
  InflightRegistry r;
  for (uint8_t i = 1; i <= 20; ++i) {
    r.add("id", ctx(i));
  }
  EXPECT_EQ(r.infer(std::nullopt).link_count, kMaxParentLinks);
}

}  // namespace
}  // namespace sidetrace::filters
