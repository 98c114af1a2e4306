#pragma once
// The bounds on one received HTTP/2 header block (a request or response head, or a trailer
// section), as configured in limits. nghttp2 decodes HPACK without a size limit of its own (a
// 16 KiB block of one-byte references to a 4 KiB table entry expands to hundreds of MiB of
// fields), so each codec checks every field against these as nghttp2 hands it over, before
// storing it.

#include <cstddef>
#include <cstdint>

#include "config/config.h"

namespace sidetrace::proxy {

struct HeaderBlockLimits {
  uint32_t max_bytes = 0;           // RFC 9113 §6.5.2's size: each field's name + value + 32
  uint32_t max_count = UINT32_MAX;  // fields, pseudo-headers included
};

// Request heads and trailer sections, from the client.
inline HeaderBlockLimits headerBlockLimits(const config::Limits& limits) {
  return {limits.max_request_headers_bytes, limits.max_request_headers_count};
}

// Response heads and trailer sections, from an upstream: 1 MiB each, what the HTTP/1 upstream
// parser allows (an upstream is trusted more than a client, but not with unbounded memory).
inline constexpr uint32_t kMaxUpstreamHeaderBlockBytes = 1024 * 1024;
inline HeaderBlockLimits upstreamHeaderBlockLimits() {
  return {kMaxUpstreamHeaderBlockBytes};
}

// What one header block has cost so far. Once over a limit it stays over: the rest of the block
// is still decoded (the HPACK state must stay in step) but nothing more of it is stored.
class HeaderBlockBudget {
 public:
  // Counts one field; false once the block is over a limit (for this field and every later one).
  bool admit(size_t name_len, size_t value_len, const HeaderBlockLimits& limits) {
    bytes_ += name_len + value_len + 32;
    ++count_;
    over_ = over_ || bytes_ > limits.max_bytes || count_ > limits.max_count;
    return !over_;
  }
  bool over() const { return over_; }
  void reset() {
    bytes_ = 0;
    count_ = 0;
    over_ = false;
  }

 private:
  uint64_t bytes_ = 0;
  uint32_t count_ = 0;
  bool over_ = false;
};

}  // namespace sidetrace::proxy
