#pragma once
// Trace and span ids and the context that travels between hops. Value types: parsing bad input
// yields an invalid (all-zero) context, never a throw (nginx-otel trace_context.hpp habit).

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace sidetrace::tracing {

// Writes 2 * n lower-case hex digits for `bytes` to out (no terminator); returns the end. One table
// load per byte: every traced request formats a traceparent (24 bytes of ids).
char* writeHex(const uint8_t* bytes, size_t n, char* out);

struct TraceId {
  std::array<uint8_t, 16> bytes{};
  bool valid() const {  // not all zero
    uint64_t a, b;
    std::memcpy(&a, bytes.data(), 8);
    std::memcpy(&b, bytes.data() + 8, 8);
    return (a | b) != 0;
  }
  std::string hex() const;  // 32 lower-case hex digits
  // Parses exactly 32 lower-case hex digits (16-digit B3 ids are left-padded by the B3 parser).
  static TraceId fromHex(std::string_view hex);
  bool operator==(const TraceId&) const = default;
};

struct SpanId {
  std::array<uint8_t, 8> bytes{};
  bool valid() const {
    uint64_t a;
    std::memcpy(&a, bytes.data(), 8);
    return a != 0;
  }
  std::string hex() const;  // 16 lower-case hex digits
  static SpanId fromHex(std::string_view hex);
  bool operator==(const SpanId&) const = default;
};

inline constexpr uint8_t kFlagSampled = 0x01;
// W3C Trace Context level 2: the trace id's right 7 bytes are random. It describes the trace id,
// so a hop that keeps the id keeps the flag.
inline constexpr uint8_t kFlagRandom = 0x02;

struct SpanContext {
  TraceId trace_id;
  SpanId span_id;
  uint8_t flags = 0;       // W3C trace flags: kFlagSampled | kFlagRandom
  bool debug = false;      // B3 debug (force trace): implies sampled, passed on to the next hop
  std::string tracestate;  // W3C tracestate, already validated; "" when absent
  bool remote = false;     // extracted from a caller
  bool valid() const { return trace_id.valid() && span_id.valid(); }
  bool sampled() const { return (flags & kFlagSampled) != 0; }
};

// Random ids from a per-thread generator (one per worker; no locks). xoshiro256** (Blackman and
// Vigna): 256 bits of state, period 2^256 - 1, statistically strong in every output bit, and a
// few instructions per 64-bit draw (std::mt19937_64 cost ~60 per draw and ~20 more per id in byte
// shuffling). Ids need to be unique and unpredictable enough to never collide, not secret. The
// state is filled with splitmix64 from the seed, as the authors recommend (never all zero).
class IdGenerator {
 public:
  IdGenerator();                        // seeded from std::random_device (256 bits)
  explicit IdGenerator(uint64_t seed);  // deterministic, for tests
  TraceId traceId();
  SpanId spanId();
  uint64_t next();  // one 64-bit draw

 private:
  void seedWith(uint64_t seed);
  uint64_t s_[4];
};

}  // namespace sidetrace::tracing
