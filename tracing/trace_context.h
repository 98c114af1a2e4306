#pragma once
// Trace and span ids and the context that travels between hops. Value types: parsing bad input
// yields an invalid (all-zero) context, never a throw (nginx-otel trace_context.hpp habit).

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

namespace sidetrace::tracing {

struct TraceId {
  std::array<uint8_t, 16> bytes{};
  bool valid() const;       // not all zero
  std::string hex() const;  // 32 lower-case hex digits
  // Parses exactly 32 lower-case hex digits (16-digit B3 ids are left-padded by the B3 parser).
  static TraceId fromHex(std::string_view hex);
  bool operator==(const TraceId&) const = default;
};

struct SpanId {
  std::array<uint8_t, 8> bytes{};
  bool valid() const;
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

// Random ids from a per-thread generator (one per worker; no locks).
class IdGenerator {
 public:
  IdGenerator();  // seeded from std::random_device
  explicit IdGenerator(uint64_t seed);
  TraceId traceId();
  SpanId spanId();

 private:
  std::mt19937_64 rng_;
};

}  // namespace sidetrace::tracing
