#include "tracing/sampler.h"

#include <gtest/gtest.h>

#include <cmath>

namespace sidetrace::tracing {
namespace {

TraceId idWithLow(uint64_t low) {
  TraceId id;
  id.bytes[0] = 0xff;  // the upper half must not matter
  for (int i = 0; i < 8; ++i) {
    id.bytes[15 - i] = static_cast<uint8_t>(low >> (8 * i));
  }
  return id;
}

SpanContext remoteParent(bool sampled) {
  SpanContext ctx;
  ctx.trace_id = TraceId::fromHex("4bf92f3577b34da6a3ce929d0e0e4736");
  ctx.span_id = SpanId::fromHex("00f067aa0ba902b7");
  ctx.flags = sampled ? kFlagSampled : 0;
  ctx.remote = true;
  return ctx;
}

TEST(SamplerTest, Descriptions) {
  EXPECT_EQ(makeSampler("always_on", 1)->description(), "AlwaysOnSampler");
  EXPECT_EQ(makeSampler("always_off", 1)->description(), "AlwaysOffSampler");
  EXPECT_EQ(makeSampler("traceidratio", 0.1)->description(), "TraceIdRatioBased{0.100000}");
  EXPECT_EQ(makeSampler("parentbased_always_on", 1)->description(),
            "ParentBased{root:AlwaysOnSampler}");
  EXPECT_EQ(makeSampler("parentbased_always_off", 1)->description(),
            "ParentBased{root:AlwaysOffSampler}");
  EXPECT_EQ(makeSampler("parentbased_traceidratio", 0.25)->description(),
            "ParentBased{root:TraceIdRatioBased{0.250000}}");
}

TEST(SamplerTest, InvalidArguments) {
  EXPECT_THROW(makeSampler("sometimes", 0.5), std::invalid_argument);
  EXPECT_THROW(makeSampler("traceidratio", 1.5), std::invalid_argument);
  EXPECT_THROW(makeSampler("traceidratio", -0.1), std::invalid_argument);
  EXPECT_THROW(makeSampler("parentbased_traceidratio", std::nan("")), std::invalid_argument);
}

TEST(SamplerTest, AlwaysOnOffIgnoreParent) {
  auto parent = remoteParent(false);
  EXPECT_TRUE(makeSampler("always_on", 0)->shouldSample(&parent, parent.trace_id));
  parent.flags = 1;
  EXPECT_FALSE(makeSampler("always_off", 0)->shouldSample(&parent, parent.trace_id));
}

TEST(SamplerTest, RatioThresholdIsOnLowerEightBytesBigEndian) {
  auto s = makeSampler("traceidratio", 0.5);
  EXPECT_TRUE(s->shouldSample(nullptr, idWithLow(0)));
  EXPECT_TRUE(s->shouldSample(nullptr, idWithLow(0x7fffffffffffffffULL)));
  EXPECT_FALSE(s->shouldSample(nullptr, idWithLow(0x8000000000000000ULL)));
  EXPECT_FALSE(s->shouldSample(nullptr, idWithLow(~0ULL)));
  // Byte order: 0x80 in byte 8 is the most significant byte of the compared value.
  TraceId id;
  id.bytes[8] = 0x80;
  EXPECT_FALSE(s->shouldSample(nullptr, id));
  TraceId id2;
  id2.bytes[15] = 0x80;
  EXPECT_TRUE(s->shouldSample(nullptr, id2));
}

TEST(SamplerTest, RatioExtremes) {
  auto one = makeSampler("traceidratio", 1.0);
  auto zero = makeSampler("traceidratio", 0.0);
  EXPECT_TRUE(one->shouldSample(nullptr, idWithLow(~0ULL)));
  EXPECT_FALSE(zero->shouldSample(nullptr, idWithLow(0)));
  EXPECT_FALSE(zero->shouldSample(nullptr, idWithLow(1)));
}

TEST(SamplerTest, RatioIsDeterministicAndApproximate) {
  auto s = makeSampler("traceidratio", 0.1);
  IdGenerator gen(7);
  int sampled = 0;
  constexpr int kN = 100000;
  for (int i = 0; i < kN; ++i) {
    TraceId id = gen.traceId();
    bool a = s->shouldSample(nullptr, id);
    EXPECT_EQ(a, s->shouldSample(nullptr, id));
    sampled += a ? 1 : 0;
  }
  EXPECT_NEAR(sampled, kN / 10, kN / 100);  // 10% ± 1%
}

TEST(SamplerTest, ParentBasedFollowsRemoteParent) {
  for (const char* type :
       {"parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"}) {
    auto s = makeSampler(type, 0.0);
    auto yes = remoteParent(true);
    auto no = remoteParent(false);
    EXPECT_TRUE(s->shouldSample(&yes, yes.trace_id)) << type;
    EXPECT_FALSE(s->shouldSample(&no, no.trace_id)) << type;
  }
}

TEST(SamplerTest, ParentBasedRootDelegates) {
  EXPECT_TRUE(makeSampler("parentbased_always_on", 0)->shouldSample(nullptr, idWithLow(5)));
  EXPECT_FALSE(makeSampler("parentbased_always_off", 0)->shouldSample(nullptr, idWithLow(5)));
  auto ratio = makeSampler("parentbased_traceidratio", 0.5);
  EXPECT_TRUE(ratio->shouldSample(nullptr, idWithLow(1)));
  EXPECT_FALSE(ratio->shouldSample(nullptr, idWithLow(~0ULL)));
  SpanContext invalid;  // an invalid parent counts as none
  EXPECT_TRUE(makeSampler("parentbased_always_on", 0)->shouldSample(&invalid, idWithLow(5)));
}

}  // namespace
}  // namespace sidetrace::tracing
