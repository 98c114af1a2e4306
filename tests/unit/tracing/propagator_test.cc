#include "tracing/propagator.h"

#include <gtest/gtest.h>

#include "tests/unit/tracing/map_carrier.h"

namespace sidetrace::tracing {
namespace {

constexpr const char* kTp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
constexpr const char* kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr const char* kSpan = "00f067aa0ba902b7";

std::string members(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) {
    if (i > 0) {
      s += ',';
    }
    s += "k" + std::to_string(i) + "=v" + std::to_string(i);
  }
  return s;
}

// ---- traceparent ----

TEST(TraceparentTest, ValidSampled) {
  auto ctx = parseTraceparent(kTp);
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx->trace_id.hex(), kTrace);
  EXPECT_EQ(ctx->span_id.hex(), kSpan);
  EXPECT_EQ(ctx->flags, 0x01);
  EXPECT_TRUE(ctx->sampled());
  EXPECT_TRUE(ctx->remote);
}

TEST(TraceparentTest, ValidNotSampled) {
  auto ctx = parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx->flags, 0x00);
}

TEST(TraceparentTest, UnknownFlagBitsIgnoredSampledAndRandomBitsKept) {
  auto ctx = parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09");
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx->flags, 0x01);
  ctx = parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fc");
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx->flags, 0x00);
  // W3C level 2: 0x02 says the trace id is random; it travels with the id.
  ctx = parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03");
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx->flags, 0x03);
  EXPECT_EQ(formatTraceparent(*ctx).substr(53), "03");
  ctx = parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe");
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx->flags, 0x02);
}

TEST(TraceparentTest, VersionFfInvalid) {
  EXPECT_FALSE(parseTraceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
}

TEST(TraceparentTest, FutureVersionWithExtraFields) {
  auto ctx = parseTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-ever");
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx->trace_id.hex(), kTrace);
  EXPECT_EQ(ctx->flags, 0x01);
  EXPECT_TRUE(parseTraceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
}

TEST(TraceparentTest, FutureVersionWrongSeparatorInvalid) {
  EXPECT_FALSE(parseTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.extra"));
  EXPECT_FALSE(parseTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"));
}

TEST(TraceparentTest, Version00WithExtraCharsInvalid) {
  EXPECT_FALSE(parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-"));
  EXPECT_FALSE(parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"));
}

TEST(TraceparentTest, UpperCaseInvalid) {
  EXPECT_FALSE(parseTraceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
  EXPECT_FALSE(parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01"));
  EXPECT_FALSE(parseTraceparent("0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  EXPECT_FALSE(parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A"));
}

TEST(TraceparentTest, AllZeroIdsInvalid) {
  EXPECT_FALSE(parseTraceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
  EXPECT_FALSE(parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
}

TEST(TraceparentTest, BadCharsAndShapes) {
  EXPECT_FALSE(parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g"));
  EXPECT_FALSE(parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-.1"));
  EXPECT_FALSE(parseTraceparent("0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  EXPECT_FALSE(parseTraceparent("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01"));
  EXPECT_FALSE(parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01"));
  EXPECT_FALSE(parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"));
  EXPECT_FALSE(parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01"));
  EXPECT_FALSE(parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b77-01"));
  EXPECT_FALSE(parseTraceparent(""));
  EXPECT_FALSE(parseTraceparent("00"));
}

TEST(TraceparentTest, FormatIsVersion00) {
  SpanContext ctx;
  ctx.trace_id = TraceId::fromHex(kTrace);
  ctx.span_id = SpanId::fromHex(kSpan);
  ctx.flags = 1;
  EXPECT_EQ(formatTraceparent(ctx), kTp);
  ctx.flags = 0;
  EXPECT_EQ(formatTraceparent(ctx), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
}

// ---- tracestate ----

TEST(TracestateTest, ValidListNormalized) {
  EXPECT_EQ(sanitizeTracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
  EXPECT_EQ(sanitizeTracestate("rojo=1 ,\t congo=2"), "rojo=1,congo=2");
  EXPECT_EQ(sanitizeTracestate(""), "");
}

TEST(TracestateTest, EmptyMembersDropped) {
  EXPECT_EQ(sanitizeTracestate("a=1,, ,b=2,"), "a=1,b=2");
  EXPECT_EQ(sanitizeTracestate(" , "), "");
}

TEST(TracestateTest, MultiTenantKeys) {
  EXPECT_EQ(sanitizeTracestate("fw529a3039@dt=x,1tenant@vendor=y"),
            "fw529a3039@dt=x,1tenant@vendor=y");
  EXPECT_FALSE(sanitizeTracestate("tenant@=x"));
  EXPECT_FALSE(sanitizeTracestate("@vendor=x"));
  EXPECT_FALSE(sanitizeTracestate("tenant@1vendor=x"));          // system-id starts lcalpha
  EXPECT_FALSE(sanitizeTracestate("tenant@abcdefghijklmno=x"));  // system-id > 14 chars
  EXPECT_TRUE(sanitizeTracestate("tenant@abcdefghijklmn=x"));    // exactly 14
  EXPECT_FALSE(sanitizeTracestate("a@b@c=x"));
}

TEST(TracestateTest, InvalidKeysDropWholeHeader) {
  EXPECT_FALSE(sanitizeTracestate("a=1,Upper=2"));
  EXPECT_FALSE(sanitizeTracestate("1abc=2"));  // simple keys start with lcalpha
  EXPECT_FALSE(sanitizeTracestate("a=1,=2"));
  EXPECT_FALSE(sanitizeTracestate("a=1,b"));
  EXPECT_FALSE(sanitizeTracestate("a.b=1"));
  EXPECT_TRUE(sanitizeTracestate("a_b-c*d/e=1"));
  EXPECT_TRUE(sanitizeTracestate(std::string(256, 'k') + "=1"));
  EXPECT_FALSE(sanitizeTracestate(std::string(257, 'k') + "=1"));
}

TEST(TracestateTest, Values) {
  EXPECT_TRUE(sanitizeTracestate("a=hello world"));      // inner space allowed
  EXPECT_EQ(sanitizeTracestate("a=hello "), "a=hello");  // trailing OWS belongs to the list
  EXPECT_FALSE(sanitizeTracestate("a=x=y"));
  EXPECT_FALSE(sanitizeTracestate("a="));
  EXPECT_FALSE(sanitizeTracestate("a=\x7f"));
  EXPECT_FALSE(sanitizeTracestate("a=caf\xc3\xa9"));
  EXPECT_TRUE(sanitizeTracestate("a=" + std::string(256, 'v')));
  EXPECT_FALSE(sanitizeTracestate("a=" + std::string(257, 'v')));
  // "a=1,2" splits into member "2" which has no '=': invalid.
  EXPECT_FALSE(sanitizeTracestate("a=1,2"));
}

TEST(TracestateTest, DuplicateKeysDropped) {
  EXPECT_FALSE(sanitizeTracestate("a=1,b=2,a=3"));
}

TEST(TracestateTest, MemberLimit) {
  EXPECT_EQ(sanitizeTracestate(members(32)), members(32));
  EXPECT_FALSE(sanitizeTracestate(members(33)));
  EXPECT_TRUE(sanitizeTracestate(members(32) + ",,,"));  // empty members do not count
}

TEST(TracestateTest, LongListCutMembersOver128First) {
  // Four members of 153 characters and four short ones: 631 characters.
  const std::string long_value(150, 'v');
  std::string list = "a=1,l1=" + long_value + ",b=2,l2=" + long_value + ",c=3,l3=" + long_value +
                     ",l4=" + long_value + ",d=4";
  ASSERT_EQ(list.size(), 631u);
  // Long members go first, from the end, until it fits: l4 alone; the short d=4 after it stays.
  EXPECT_EQ(sanitizeTracestate(list),
            "a=1,l1=" + long_value + ",b=2,l2=" + long_value + ",c=3,l3=" + long_value + ",d=4");
  // Only short members: cut from the end.
  std::string shorts;
  for (int i = 0; i < 30; ++i) {
    shorts += (i > 0 ? "," : "") + std::string("k") + std::to_string(i) + "=" +
              std::string(15, 'x');  // 19 or 20 characters each
  }
  ASSERT_GT(shorts.size(), 512u);
  auto cut = sanitizeTracestate(shorts);
  ASSERT_TRUE(cut);
  EXPECT_LE(cut->size(), 512u);
  EXPECT_TRUE(shorts.starts_with(*cut));
  EXPECT_GT(cut->size(), 512u - 21);                        // nothing more than needed was removed
  EXPECT_EQ(sanitizeTracestate(members(32)), members(32));  // short lists untouched
}

// A header sent in two field lines: RFC 9110 §5.3 combines them, and the W3C spec requires it.
TEST(TraceContextPropagatorTest, TracestateLinesCombinedInOrder) {
  auto p = makeTraceContextPropagator();
  MapCarrier c{{"traceparent", kTp}};
  c.addLine("tracestate", "rojo=1,congo=2");
  c.addLine("tracestate", "vendor=x");
  auto ctx = p->extract(c);
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx->tracestate, "rojo=1,congo=2,vendor=x");
}

TEST(TraceContextPropagatorTest, TracestateLimitsApplyToTheCombinedList) {
  auto p = makeTraceContextPropagator();
  MapCarrier dup{{"traceparent", kTp}};
  dup.addLine("tracestate", "a=1");
  dup.addLine("tracestate", "a=2");  // a duplicate key across lines: the list is invalid
  ASSERT_TRUE(p->extract(dup));
  EXPECT_EQ(p->extract(dup)->tracestate, "");
  MapCarrier many{{"traceparent", kTp}};
  many.addLine("tracestate", members(20));
  std::string more;
  for (int i = 20; i < 33; ++i) {
    more += (i > 20 ? "," : "") + std::string("k") + std::to_string(i) + "=v";
  }
  many.addLine("tracestate", more);  // 33 members in all
  EXPECT_EQ(p->extract(many)->tracestate, "");
}

TEST(TraceContextPropagatorTest, TwoTraceparentLinesAreInvalid) {
  auto p = makeTraceContextPropagator();
  MapCarrier c{{"traceparent", kTp}};
  c.addLine("traceparent", "00-11111111111111111111111111111111-2222222222222222-01");
  EXPECT_FALSE(p->extract(c));
  MapCarrier same{{"traceparent", kTp}};
  same.addLine("traceparent", kTp);
  EXPECT_FALSE(p->extract(same));
}

TEST(TraceContextPropagatorTest, ExtractWithTracestate) {
  auto p = makeTraceContextPropagator();
  MapCarrier c{{"traceparent", kTp}, {"tracestate", "rojo=1, congo=2"}};
  auto ctx = p->extract(c);
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx->tracestate, "rojo=1,congo=2");
}

TEST(TraceContextPropagatorTest, InvalidTracestateIgnoredButContextKept) {
  auto p = makeTraceContextPropagator();
  MapCarrier c{{"traceparent", kTp}, {"tracestate", "BAD=1"}};
  auto ctx = p->extract(c);
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx->tracestate, "");
}

TEST(TraceContextPropagatorTest, InvalidTraceparentYieldsNothing) {
  auto p = makeTraceContextPropagator();
  MapCarrier c{{"traceparent", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
               {"tracestate", "rojo=1"}};
  EXPECT_FALSE(p->extract(c));
  MapCarrier none{{"tracestate", "rojo=1"}};
  EXPECT_FALSE(p->extract(none));
}

TEST(TraceContextPropagatorTest, InjectWritesAndRemovesTracestate) {
  auto p = makeTraceContextPropagator();
  SpanContext ctx;
  ctx.trace_id = TraceId::fromHex(kTrace);
  ctx.span_id = SpanId::fromHex(kSpan);
  ctx.flags = 1;
  ctx.tracestate = "rojo=1";
  MapCarrier c{{"tracestate", "old=1"}};
  p->inject(ctx, c);
  EXPECT_EQ(c.headers.at("traceparent"), kTp);
  EXPECT_EQ(c.headers.at("tracestate"), "rojo=1");
  ctx.tracestate.clear();
  p->inject(ctx, c);
  EXPECT_EQ(c.headers.count("tracestate"), 0u);
}

// ---- B3 ----

TEST(B3SingleTest, Full128BitWithParent) {
  auto ctx = parseB3Single("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90");
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx->trace_id.hex(), "80f198ee56343ba864fe8b2a57d3eff7");
  EXPECT_EQ(ctx->span_id.hex(), "e457b5a2e4d86bd1");
  EXPECT_EQ(ctx->flags, 1);
  EXPECT_TRUE(ctx->remote);
}

TEST(B3SingleTest, SixtyFourBitTraceIdLeftPadded) {
  auto ctx = parseB3Single("64fe8b2a57d3eff7-e457b5a2e4d86bd1-0");
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx->trace_id.hex(), "000000000000000064fe8b2a57d3eff7");
  EXPECT_EQ(ctx->flags, 0);
}

TEST(B3SingleTest, SamplingStates) {
  EXPECT_EQ(parseB3Single("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d")->flags, 1);
  EXPECT_EQ(parseB3Single("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")->flags, 1);
  EXPECT_EQ(parseB3Single("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0")->flags, 0);
  EXPECT_EQ(parseB3Single("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1")->flags, 0);
  EXPECT_FALSE(parseB3Single("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-2"));
  EXPECT_FALSE(parseB3Single("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-true"));
}

TEST(B3SingleTest, DenyOnlyAndMalformed) {
  EXPECT_FALSE(parseB3Single("0"));
  EXPECT_FALSE(parseB3Single("1"));
  EXPECT_FALSE(parseB3Single("d"));
  EXPECT_FALSE(parseB3Single(""));
  EXPECT_FALSE(parseB3Single("80f198ee56343ba864fe8b2a57d3eff7"));
  EXPECT_FALSE(parseB3Single("80f198ee56343ba864fe8b2a57d3eff-e457b5a2e4d86bd1-1"));
  EXPECT_FALSE(parseB3Single("80F198EE56343BA864FE8B2A57D3EFF7-e457b5a2e4d86bd1-1"));
  EXPECT_FALSE(parseB3Single("80f198ee56343ba864fe8b2a57d3eff7-0000000000000000-1"));
  EXPECT_FALSE(parseB3Single("00000000000000000000000000000000-e457b5a2e4d86bd1-1"));
  EXPECT_FALSE(parseB3Single("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3"));
  EXPECT_FALSE(
      parseB3Single("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90-x"));
  EXPECT_FALSE(parseB3Single("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-"));
}

TEST(B3PropagatorTest, MultiHeaders) {
  auto p = makeB3Propagator(true);
  MapCarrier c{{"x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"},
               {"x-b3-spanid", "e457b5a2e4d86bd1"},
               {"x-b3-sampled", "1"}};
  auto ctx = p->extract(c);
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx->trace_id.hex(), "80f198ee56343ba864fe8b2a57d3eff7");
  EXPECT_EQ(ctx->span_id.hex(), "e457b5a2e4d86bd1");
  EXPECT_EQ(ctx->flags, 1);
}

TEST(B3PropagatorTest, MultiSampledVariants) {
  auto p = makeB3Propagator(true);
  auto flags = [&](std::initializer_list<std::pair<const std::string, std::string>> extra) {
    MapCarrier c{{"x-b3-traceid", "64fe8b2a57d3eff7"}, {"x-b3-spanid", "e457b5a2e4d86bd1"}};
    for (const auto& [k, v] : extra) {
      c.headers[k] = v;
    }
    auto ctx = p->extract(c);
    return ctx ? int(ctx->flags) : -1;
  };
  EXPECT_EQ(flags({{"x-b3-sampled", "true"}}), 1);
  EXPECT_EQ(flags({{"x-b3-sampled", "false"}}), 0);
  EXPECT_EQ(flags({{"x-b3-sampled", "0"}}), 0);
  EXPECT_EQ(flags({}), 0);
  EXPECT_EQ(flags({{"x-b3-flags", "1"}}), 1);
  EXPECT_EQ(flags({{"x-b3-flags", "1"}, {"x-b3-sampled", "0"}}), 1);
  EXPECT_EQ(flags({{"x-b3-sampled", "yes"}}), -1);
  MapCarrier padded{{"x-b3-traceid", "64fe8b2a57d3eff7"}, {"x-b3-spanid", "e457b5a2e4d86bd1"}};
  EXPECT_EQ(p->extract(padded)->trace_id.hex(), "000000000000000064fe8b2a57d3eff7");
  MapCarrier missing{{"x-b3-traceid", "64fe8b2a57d3eff7"}};
  EXPECT_FALSE(p->extract(missing));
  MapCarrier bad{{"x-b3-traceid", "64fe8b2a57d3eff"}, {"x-b3-spanid", "e457b5a2e4d86bd1"}};
  EXPECT_FALSE(p->extract(bad));
}

TEST(B3PropagatorTest, SingleWinsOverMultiInBothVariants) {
  for (bool multi : {false, true}) {
    auto p = makeB3Propagator(multi);
    MapCarrier c{{"b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"},
                 {"x-b3-traceid", "11111111111111111111111111111111"},
                 {"x-b3-spanid", "2222222222222222"},
                 {"x-b3-sampled", "0"}};
    auto ctx = p->extract(c);
    ASSERT_TRUE(ctx);
    EXPECT_EQ(ctx->trace_id.hex(), "80f198ee56343ba864fe8b2a57d3eff7");
    EXPECT_EQ(ctx->flags, 1);
    // An unusable single header falls back to the multi headers.
    c.headers["b3"] = "0";
    ctx = p->extract(c);
    ASSERT_TRUE(ctx);
    EXPECT_EQ(ctx->trace_id.hex(), "11111111111111111111111111111111");
    EXPECT_EQ(ctx->flags, 0);
  }
}

TEST(B3PropagatorTest, InjectSingle) {
  auto p = makeB3Propagator(false);
  SpanContext ctx;
  ctx.trace_id = TraceId::fromHex(kTrace);
  ctx.span_id = SpanId::fromHex(kSpan);
  ctx.flags = 1;
  MapCarrier c{{"x-b3-traceid", "stale"}, {"x-b3-sampled", "0"}};
  p->inject(ctx, c);
  EXPECT_EQ(c.headers, (std::map<std::string, std::string>{
                           {"b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"}}));
  ctx.flags = 0;
  p->inject(ctx, c);
  EXPECT_EQ(c.headers.at("b3"), "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0");
}

TEST(B3PropagatorTest, InjectMulti) {
  auto p = makeB3Propagator(true);
  SpanContext ctx;
  ctx.trace_id = TraceId::fromHex(kTrace);
  ctx.span_id = SpanId::fromHex(kSpan);
  ctx.flags = 1;
  MapCarrier c{{"b3", "stale-single"}, {"x-b3-parentspanid", "1111111111111111"}};
  p->inject(ctx, c);
  EXPECT_EQ(c.headers,
            (std::map<std::string, std::string>{
                {"x-b3-traceid", kTrace}, {"x-b3-spanid", kSpan}, {"x-b3-sampled", "1"}}));
}

TEST(B3PropagatorTest, DebugFlagExtractedAndInjected) {
  MapCarrier multi{{"x-b3-traceid", kTrace}, {"x-b3-spanid", kSpan}, {"x-b3-flags", "1"}};
  auto ctx = makeB3Propagator(true)->extract(multi);
  ASSERT_TRUE(ctx);
  EXPECT_TRUE(ctx->debug);
  EXPECT_TRUE(ctx->sampled());
  auto single = parseB3Single(std::string(kTrace) + "-" + kSpan + "-d");
  ASSERT_TRUE(single);
  EXPECT_TRUE(single->debug);
  EXPECT_TRUE(single->sampled());
  EXPECT_FALSE(parseB3Single(std::string(kTrace) + "-" + kSpan + "-1")->debug);

  // Debug is sent instead of a sampled state (B3: debug implies the accept decision).
  MapCarrier out_multi{{"x-b3-sampled", "1"}};
  makeB3Propagator(true)->inject(*ctx, out_multi);
  EXPECT_EQ(out_multi.headers,
            (std::map<std::string, std::string>{
                {"x-b3-traceid", kTrace}, {"x-b3-spanid", kSpan}, {"x-b3-flags", "1"}}));
  MapCarrier out_single;
  makeB3Propagator(false)->inject(*ctx, out_single);
  EXPECT_EQ(out_single.headers.at("b3"), std::string(kTrace) + "-" + kSpan + "-d");
  // Without debug, a stale X-B3-Flags from the caller is removed.
  ctx->debug = false;
  makeB3Propagator(true)->inject(*ctx, out_multi);
  EXPECT_EQ(out_multi.headers.count("x-b3-flags"), 0u);
  EXPECT_EQ(out_multi.headers.at("x-b3-sampled"), "1");
}

// ---- baggage ----

TEST(BaggageTest, ValidForms) {
  EXPECT_EQ(sanitizeBaggage("userId=alice,serverNode=DF%2028,isProduction=false"),
            "userId=alice,serverNode=DF%2028,isProduction=false");
  EXPECT_TRUE(sanitizeBaggage("key1 = value1 ; prop1 ; prop2=v2 , key2=v2"));
  EXPECT_TRUE(sanitizeBaggage("k="));  // empty value is allowed by the grammar
}

TEST(BaggageTest, InvalidForms) {
  EXPECT_FALSE(sanitizeBaggage(""));
  EXPECT_FALSE(sanitizeBaggage("novalue"));
  EXPECT_FALSE(sanitizeBaggage("a=1,,b=2"));
  EXPECT_FALSE(sanitizeBaggage("k=v v"));
  EXPECT_FALSE(sanitizeBaggage("k=\"quoted\""));
  EXPECT_FALSE(sanitizeBaggage("k=back\\slash"));
  EXPECT_FALSE(sanitizeBaggage("k(x)=v"));
  EXPECT_FALSE(sanitizeBaggage("=v"));
  EXPECT_FALSE(sanitizeBaggage("k=v;=p"));
}

TEST(BaggageTest, Limits) {
  std::string m180 = members(180);
  std::string m181 = members(181);
  EXPECT_TRUE(sanitizeBaggage(m180));
  EXPECT_FALSE(sanitizeBaggage(m181));
  std::string big = "k=" + std::string(8190, 'v');
  EXPECT_EQ(big.size(), 8192u);
  EXPECT_TRUE(sanitizeBaggage(big));
  EXPECT_FALSE(sanitizeBaggage(big + "v"));
}

// ---- composite ----

TEST(CompositePropagatorTest, FirstValidWinsInConfiguredOrder) {
  MapCarrier c{{"traceparent", kTp}, {"b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0"}};
  EXPECT_EQ(CompositePropagator({"tracecontext", "b3"}).extract(c)->trace_id.hex(), kTrace);
  EXPECT_EQ(CompositePropagator({"b3", "tracecontext"}).extract(c)->trace_id.hex(),
            "80f198ee56343ba864fe8b2a57d3eff7");
}

TEST(CompositePropagatorTest, InvalidTracecontextFallsThroughToB3) {
  MapCarrier c{{"traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
               {"x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"},
               {"x-b3-spanid", "e457b5a2e4d86bd1"},
               {"x-b3-sampled", "1"}};
  auto ctx = CompositePropagator({"tracecontext", "b3multi"}).extract(c);
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx->trace_id.hex(), "80f198ee56343ba864fe8b2a57d3eff7");
  EXPECT_EQ(ctx->tracestate, "");
}

// Found by tests/fuzz/propagator_fuzz.cc (regression input
// findings/propagator/regression-b3-debug): a B3 debug flag injected beside traceparent was lost at
// the next hop, where tracecontext wins and cannot carry it. What the winning format cannot carry
// comes from the others when they describe the same span: B3's debug flag, W3C's tracestate and
// random flag.
TEST(CompositePropagatorTest, KeepsWhatOnlyALaterFormatCarriesForTheSameSpan) {
  SpanContext ctx;
  ctx.trace_id = TraceId::fromHex(kTrace);
  ctx.span_id = SpanId::fromHex(kSpan);
  ctx.flags = kFlagSampled;
  ctx.debug = true;
  MapCarrier c;
  const CompositePropagator both({"tracecontext", "b3multi"});
  both.inject(ctx, c);
  auto back = both.extract(c);
  ASSERT_TRUE(back);
  EXPECT_TRUE(back->debug);
  EXPECT_TRUE(back->sampled());

  MapCarrier w3c{{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"},
                 {"tracestate", "rojo=1"},
                 {"b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"}};
  auto b3_first = CompositePropagator({"b3", "tracecontext"}).extract(w3c);
  ASSERT_TRUE(b3_first);
  EXPECT_EQ(b3_first->tracestate, "rojo=1");
  EXPECT_EQ(b3_first->flags, kFlagSampled | kFlagRandom);

  // Another span in the later format: nothing of it is taken.
  MapCarrier other{{"traceparent", kTp},
                   {"x-b3-traceid", kTrace},
                   {"x-b3-spanid", "1111111111111111"},
                   {"x-b3-flags", "1"}};
  auto first_only = both.extract(other);
  ASSERT_TRUE(first_only);
  EXPECT_FALSE(first_only->debug);
}

TEST(CompositePropagatorTest, InjectsWithAll) {
  SpanContext ctx;
  ctx.trace_id = TraceId::fromHex(kTrace);
  ctx.span_id = SpanId::fromHex(kSpan);
  ctx.flags = 0;
  MapCarrier c;
  CompositePropagator({"tracecontext", "baggage", "b3multi"}).inject(ctx, c);
  EXPECT_EQ(c.headers,
            (std::map<std::string, std::string>{
                {"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"},
                {"x-b3-traceid", kTrace},
                {"x-b3-spanid", kSpan},
                {"x-b3-sampled", "0"}}));
}

TEST(CompositePropagatorTest, NoneAndUnknown) {
  MapCarrier c{{"traceparent", kTp}};
  CompositePropagator none({"none"});
  EXPECT_FALSE(none.extract(c));
  SpanContext ctx = *parseTraceparent(kTp);
  MapCarrier out;
  none.inject(ctx, out);
  EXPECT_TRUE(out.headers.empty());
  EXPECT_THROW(CompositePropagator({"jaeger"}), std::invalid_argument);
}

TEST(CompositePropagatorTest, BaggageLimitsApplyToTheCombinedLines) {
  CompositePropagator with({"tracecontext", "baggage"});
  MapCarrier ok;
  ok.addLine("baggage", "a=1");
  ok.addLine("baggage", "b=2");
  with.sanitize(ok);
  EXPECT_EQ(ok.count("baggage"), 2u);  // valid lines pass on as they came
  MapCarrier bad_second;
  bad_second.addLine("baggage", "a=1");
  bad_second.addLine("baggage", "b c=2");
  with.sanitize(bad_second);
  EXPECT_EQ(bad_second.count("baggage"), 0u);
  MapCarrier too_many;
  too_many.addLine("baggage", members(100));
  too_many.addLine("baggage", members(81));  // 181 members together
  with.sanitize(too_many);
  EXPECT_EQ(too_many.count("baggage"), 0u);
}

TEST(CompositePropagatorTest, SanitizeDropsOnlyInvalidBaggage) {
  MapCarrier good{{"baggage", "a=1"}};
  MapCarrier bad{{"baggage", "a b=1"}};
  CompositePropagator with({"tracecontext", "baggage"});
  with.sanitize(good);
  with.sanitize(bad);
  EXPECT_EQ(good.headers.at("baggage"), "a=1");
  EXPECT_EQ(bad.headers.count("baggage"), 0u);
  MapCarrier untouched{{"baggage", "a b=1"}};
  CompositePropagator({"tracecontext"}).sanitize(untouched);
  EXPECT_EQ(untouched.headers.count("baggage"), 1u);
}

}  // namespace
}  // namespace sidetrace::tracing
