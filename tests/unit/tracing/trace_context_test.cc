#include "tracing/trace_context.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>

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

TEST(WriteHexTest, EveryByteValueAndLength) {
  std::array<uint8_t, 256> all{};
  std::string want;
  for (size_t b = 0; b < all.size(); ++b) {
    all[b] = static_cast<uint8_t>(b);
    char two[3];
    std::snprintf(two, sizeof two, "%02x", static_cast<unsigned>(b));
    want += two;
  }
  std::string out(2 * all.size() + 1, '#');
  char* end = writeHex(all.data(), all.size(), out.data());
  EXPECT_EQ(end, out.data() + 2 * all.size());
  EXPECT_EQ(out.substr(0, 2 * all.size()), want);
  EXPECT_EQ(out.back(), '#');  // nothing written past the digits
  EXPECT_EQ(writeHex(all.data(), 0, out.data()), out.data());
  // Every length and alignment: whole words and the bytes after them.
  for (size_t offset = 0; offset < 4; ++offset) {
    for (size_t n = 0; n <= 27; ++n) {
      const uint8_t* in = all.data() + 0xe0 + offset;  // letters in both nibbles
      std::string got(2 * n, '#');
      writeHex(in, n, got.data());
      EXPECT_EQ(got, want.substr(2 * (0xe0 + offset), 2 * n)) << offset << " " << n;
    }
  }
}

// Ids are never zero (invalid on the wire), even from a state that would draw zero words.
TEST(IdGeneratorTest, IdsAreValidAndDistinct) {
  IdGenerator gen;
  std::set<TraceId, bool (*)(const TraceId&, const TraceId&)> traces(
      [](const TraceId& a, const TraceId& b) { return a.bytes < b.bytes; });
  std::set<uint64_t> spans;
  for (int i = 0; i < 10000; ++i) {
    TraceId t = gen.traceId();
    SpanId s = gen.spanId();
    ASSERT_TRUE(t.valid());
    ASSERT_TRUE(s.valid());
    traces.insert(t);
    uint64_t v;
    std::memcpy(&v, s.bytes.data(), 8);
    spans.insert(v);
  }
  EXPECT_EQ(traces.size(), 10000u);
  EXPECT_EQ(spans.size(), 10000u);
}

// Every bit of an id is random: over many draws each bit is set about half the time (a generator
// that left bytes zero, or repeated a word across the id's halves, would fail this).
TEST(IdGeneratorTest, EveryBitVaries) {
  IdGenerator gen(1);
  constexpr int kN = 20000;
  std::array<int, 128> ones{};
  for (int i = 0; i < kN; ++i) {
    TraceId t = gen.traceId();
    for (size_t bit = 0; bit < 128; ++bit) {
      ones[bit] += (t.bytes[bit / 8] >> (bit % 8)) & 1;
    }
  }
  for (size_t bit = 0; bit < 128; ++bit) {
    EXPECT_NEAR(ones[bit], kN / 2, kN / 20) << "bit " << bit;
  }
}

TEST(IdGeneratorTest, ValidChecksEveryByte) {
  for (size_t i = 0; i < 16; ++i) {
    TraceId t;
    t.bytes[i] = 1;
    EXPECT_TRUE(t.valid()) << i;
  }
  for (size_t i = 0; i < 8; ++i) {
    SpanId s;
    s.bytes[i] = 0x80;
    EXPECT_TRUE(s.valid()) << i;
  }
  EXPECT_FALSE(TraceId{}.valid());
  EXPECT_FALSE(SpanId{}.valid());
}

}  // namespace
}  // namespace sidetrace::tracing
