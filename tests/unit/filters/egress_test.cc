// The egress filter's target parsing and the in-flight registry's parent inference.

#include <gtest/gtest.h>

#include <string>

#include "filters/egress_filter.h"
#include "filters/inflight_registry.h"

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
