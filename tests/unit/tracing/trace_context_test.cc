#include "tracing/trace_context.h"

#include <gtest/gtest.h>

#include <set>

namespace sidetrace::tracing {
namespace {

TEST(TraceIdTest, HexRoundTrip) {
  auto id = TraceId::fromHex("4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_TRUE(id.valid());
  EXPECT_EQ(id.bytes[0], 0x4b);
  EXPECT_EQ(id.bytes[15], 0x36);
  EXPECT_EQ(id.hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
}

TEST(TraceIdTest, RejectsUpperCaseWrongLengthAndNonHex) {
  EXPECT_FALSE(TraceId::fromHex("4BF92F3577B34DA6A3CE929D0E0E4736").valid());
  EXPECT_FALSE(TraceId::fromHex("4bf92f3577b34da6a3ce929d0e0e473").valid());
  EXPECT_FALSE(TraceId::fromHex("4bf92f3577b34da6a3ce929d0e0e47366").valid());
  EXPECT_FALSE(TraceId::fromHex("4bf92f3577b34da6a3ce929d0e0e473g").valid());
  EXPECT_FALSE(TraceId::fromHex("00000000000000000000000000000000").valid());
  EXPECT_EQ(TraceId::fromHex("xyz").hex(), std::string(32, '0'));
}

TEST(SpanIdTest, HexRoundTrip) {
  auto id = SpanId::fromHex("00f067aa0ba902b7");
  EXPECT_TRUE(id.valid());
  EXPECT_EQ(id.hex(), "00f067aa0ba902b7");
  EXPECT_FALSE(SpanId::fromHex("00F067AA0BA902B7").valid());
  EXPECT_FALSE(SpanId::fromHex("0000000000000000").valid());
  EXPECT_FALSE(SpanId::fromHex("00f067aa0ba902b").valid());
}

TEST(IdGeneratorTest, SeededIsDeterministicAndValid) {
  IdGenerator a(42);
  IdGenerator b(42);
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    TraceId t = a.traceId();
    EXPECT_EQ(t, b.traceId());
    EXPECT_TRUE(t.valid());
    SpanId s = a.spanId();
    EXPECT_EQ(s, b.spanId());
    EXPECT_TRUE(s.valid());
    seen.insert(t.hex());
  }
  EXPECT_EQ(seen.size(), 1000u);
  IdGenerator c;
  EXPECT_NE(c.traceId(), IdGenerator(42).traceId());
}

}  // namespace
}  // namespace sidetrace::tracing
