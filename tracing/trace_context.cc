#include "tracing/trace_context.h"

#include <algorithm>

namespace sidetrace::tracing {

namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

// Lower-case only: W3C Trace Context forbids upper-case hex, and B3 ids are lower-case too.
int hexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  return -1;
}

template <size_t N>
std::string toHex(const std::array<uint8_t, N>& bytes) {
  std::string out(N * 2, '0');
  for (size_t i = 0; i < N; ++i) {
    out[2 * i] = kHexDigits[bytes[i] >> 4];
    out[2 * i + 1] = kHexDigits[bytes[i] & 0x0f];
  }
  return out;
}

// All-or-nothing: a partially parsed id would be a different (wrong) id, so any error yields zero.
template <size_t N>
std::array<uint8_t, N> fromHexBytes(std::string_view hex) {
  std::array<uint8_t, N> out{};
  if (hex.size() != N * 2) {
    return out;
  }
  for (size_t i = 0; i < N; ++i) {
    int hi = hexValue(hex[2 * i]);
    int lo = hexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return std::array<uint8_t, N>{};
    }
    out[i] = static_cast<uint8_t>((hi << 4) | lo);
  }
  return out;
}

template <size_t N>
bool anyNonZero(const std::array<uint8_t, N>& bytes) {
  return std::any_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b != 0; });
}

void fillBytes(std::mt19937_64& rng, uint8_t* out, size_t n) {
  while (n > 0) {
    uint64_t r = rng();
    for (int i = 0; i < 8 && n > 0; ++i, --n) {
      *out++ = static_cast<uint8_t>(r >> (8 * i));
    }
  }
}

}  // namespace

bool TraceId::valid() const {
  return anyNonZero(bytes);
}
std::string TraceId::hex() const {
  return toHex(bytes);
}
TraceId TraceId::fromHex(std::string_view hex) {
  return TraceId{fromHexBytes<16>(hex)};
}

bool SpanId::valid() const {
  return anyNonZero(bytes);
}
std::string SpanId::hex() const {
  return toHex(bytes);
}
SpanId SpanId::fromHex(std::string_view hex) {
  return SpanId{fromHexBytes<8>(hex)};
}

IdGenerator::IdGenerator() : rng_(std::random_device{}()) {
  // One 32-bit draw is a thin seed for a 64-bit engine; mix in a second one.
  std::random_device rd;
  rng_.seed((static_cast<uint64_t>(rd()) << 32) ^ rd() ^ rng_());
}

IdGenerator::IdGenerator(uint64_t seed) : rng_(seed) {}

TraceId IdGenerator::traceId() {
  TraceId id;
  do {
    fillBytes(rng_, id.bytes.data(), id.bytes.size());
  } while (!id.valid());
  return id;
}

SpanId IdGenerator::spanId() {
  SpanId id;
  do {
    fillBytes(rng_, id.bytes.data(), id.bytes.size());
  } while (!id.valid());
  return id;
}

}  // namespace sidetrace::tracing
