#pragma once
// OTLP trace protobuf, encoded straight to wire bytes for the hot path, and decoded with the
// generated classes for everything that only reads (console exporter, tests).
//
// The encoder covers exactly the fields the proxy emits (opentelemetry-proto trace.proto field
// numbers; see tracing/proto/). A span is encoded once, on its worker, as one `ScopeSpans.spans`
// element; a batch is a plain concatenation of such elements, and RequestEncoder frames batches
// as an ExportTraceServiceRequest behind a resource and scope encoded once at startup. Strings
// that may carry client bytes are repaired to valid UTF-8 here (a collector rejects the whole
// request otherwise). Tests decode the output with the generated code and with the official
// opentelemetry-proto schema (tests/integration/node).

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tracing/span_data.h"

namespace sidetrace::tracing {

// Appends one Span.attributes KeyValue (field 9) to out. The key is trusted to be valid UTF-8
// (attribute keys are literals); a string value is checked, repaired and cut to at most
// max_text_bytes at a character boundary.
void appendOtlpAttribute(WireBuffer& out, std::string_view key, const AttributeValueView& value,
                         size_t max_text_bytes = SIZE_MAX);

// Appends one Span.attributes KeyValue whose value is an ArrayValue of strings (each checked,
// repaired and cut like a string value).
void appendOtlpStringArrayAttribute(WireBuffer& out, std::string_view key,
                                    const std::string_view* values, size_t count,
                                    size_t max_text_bytes = SIZE_MAX);

namespace detail {

// Short copies and checks without a library call: a proxy span's ~20 attributes are short keys
// with short values, and the calls into memcpy and the out-of-line encoder cost more than the bytes
// (profile of a traced h2c request: ~150 instructions per attribute, ~35 after). Loads overlap
// rather than loop byte by byte; nothing is read outside [src, src + n).
[[gnu::always_inline]] inline void copyShort(char* dst, const char* src, size_t n) {
  if (n > 32) {
    std::memcpy(dst, src, n);
  } else if (n >= 16) {
    char a[16], b[16];
    std::memcpy(a, src, 16);
    std::memcpy(b, src + n - 16, 16);
    std::memcpy(dst, a, 16);
    std::memcpy(dst + n - 16, b, 16);
  } else if (n >= 8) {
    uint64_t a, b;
    std::memcpy(&a, src, 8);
    std::memcpy(&b, src + n - 8, 8);
    std::memcpy(dst, &a, 8);
    std::memcpy(dst + n - 8, &b, 8);
  } else if (n >= 4) {
    uint32_t a, b;
    std::memcpy(&a, src, 4);
    std::memcpy(&b, src + n - 4, 4);
    std::memcpy(dst, &a, 4);
    std::memcpy(dst + n - 4, &b, 4);
  } else if (n > 0) {
    dst[0] = src[0];
    dst[n / 2] = src[n / 2];
    dst[n - 1] = src[n - 1];
  }
}

// ASCII (so valid UTF-8, and cut anywhere).
[[gnu::always_inline]] inline bool isAscii(const char* p, size_t n) {
  constexpr uint64_t kHigh = 0x8080808080808080ull;
  uint64_t w = 0;
  if (n >= 8) {
    for (size_t i = 0; i + 8 <= n; i += 8) {
      std::memcpy(&w, p + i, 8);
      if ((w & kHigh) != 0) {
        return false;
      }
    }
    std::memcpy(&w, p + n - 8, 8);
    return (w & kHigh) == 0;
  }
  if (n >= 4) {
    uint32_t a, b;
    std::memcpy(&a, p, 4);
    std::memcpy(&b, p + n - 4, 4);
    return ((a | b) & 0x80808080u) == 0;
  }
  for (size_t i = 0; i < n; ++i) {
    w |= static_cast<unsigned char>(p[i]);
  }
  return (w & 0x80) == 0;
}

}  // namespace detail

// appendOtlpAttribute's common case, meant to be inlined where the value's type is known: a short
// key with a short ASCII string or a small non-negative integer, every length one varint byte.
// Returns false, having written nothing, for anything else.
[[gnu::always_inline]] inline bool appendShortOtlpAttribute(WireBuffer& out, std::string_view key,
                                                            const AttributeValueView& value,
                                                            size_t max_text_bytes) {
  constexpr size_t kShort = 100;  // key + value: the KeyValue stays under 128 bytes
  constexpr char kAttributes = (9 << 3) | 2, kKey = (1 << 3) | 2, kValue = (2 << 3) | 2,
                 kString = (1 << 3) | 2, kInt = (3 << 3) | 0;
  if (key.size() > kShort - 20) {
    return false;
  }
  std::string_view text;
  uint64_t number = 0;
  size_t any_size;
  if (const auto* s = std::get_if<std::string_view>(&value)) {
    text = *s;
    if (key.size() + text.size() > kShort || text.size() > max_text_bytes ||
        !detail::isAscii(text.data(), text.size())) {
      return false;
    }
    any_size = 2 + text.size();
  } else if (const auto* i = std::get_if<int64_t>(&value);
             i != nullptr && *i >= 0 && *i < (1 << 28)) {
    number = static_cast<uint64_t>(*i);
    any_size = 1 + (number < (1u << 7) ? 1 : number < (1u << 14) ? 2 : number < (1u << 21) ? 3 : 4);
  } else {
    return false;
  }
  const size_t kv_size = 2 + key.size() + 2 + any_size;
  char* p = out.extend(2 + kv_size);
  p[0] = kAttributes;
  p[1] = static_cast<char>(kv_size);
  p[2] = kKey;
  p[3] = static_cast<char>(key.size());
  detail::copyShort(p + 4, key.data(), key.size());
  p += 4 + key.size();
  p[0] = kValue;
  p[1] = static_cast<char>(any_size);
  if (std::holds_alternative<std::string_view>(value)) {
    p[2] = kString;
    p[3] = static_cast<char>(text.size());
    detail::copyShort(p + 4, text.data(), text.size());
  } else {
    p[2] = kInt;
    p += 3;
    while (number >= 0x80) {
      *p++ = static_cast<char>((number & 0x7f) | 0x80);
      number >>= 7;
    }
    *p = static_cast<char>(number);
  }
  return true;
}

// Appends one Span.links Link (field 13: trace_id, span_id, flags) to out.
void appendOtlpLink(WireBuffer& out, const TraceId& trace_id, const SpanId& span_id, uint8_t flags);

// Appends `span` as one ScopeSpans.spans element (tag, length, Span message) to out.
void appendOtlpSpan(std::string& out, const SpanRecord& span);
void appendOtlpSpan(WireBuffer& out, const SpanRecord& span);

// In a run of ScopeSpans.spans elements: the first spans, at most max_count of them and at most
// max_bytes in all (all of `run` if it holds fewer). Lets a batch be split at a span boundary
// without decoding it. count is 0 when even the first span is larger than max_bytes.
struct SpansPrefix {
  size_t bytes = 0;
  size_t count = 0;
};
SpansPrefix otlpSpansPrefix(std::string_view run, size_t max_count, size_t max_bytes = SIZE_MAX);
inline size_t otlpSpansPrefixBytes(std::string_view run, size_t n) {
  return otlpSpansPrefix(run, n).bytes;
}

// A run of encoded spans (ScopeSpans.spans elements) and how many it holds, in a buffer that is
// immutable once the worker hands it off: the export queue, the export request (as gRPC slices)
// and the /tracez store share it rather than copy it. `owner` keeps the buffer alive; `bytes` may
// be part of it (the queue splits a batch at a span boundary by narrowing the view).
struct SpanBatch {
  std::shared_ptr<const void> owner;
  std::string_view bytes;
  size_t count = 0;
  size_t held = 0;  // memory `owner` keeps alive (the buffer's capacity): what /tracez bounds

  // Takes the buffer over, no copy.
  static SpanBatch adopt(WireBuffer&& buffer, size_t count);
  // Owns a copy of `bytes` sized to fit.
  static SpanBatch copyOf(std::string_view bytes, size_t count);
};

// Frames runs of encoded spans as one ExportTraceServiceRequest: one ResourceSpans (the resource)
// holding one ScopeSpans (scope "sidetrace", SIDETRACE_VERSION) with every span of every run.
class OtlpRequestEncoder {
 public:
  explicit OtlpRequestEncoder(const Resource& resource);
  // Overwrites out (its capacity is reused).
  void encode(const std::vector<std::string_view>& span_runs, std::string& out) const;
  // The same into a buffer that is not zero-filled as it grows (the export thread's: requests are
  // up to max_export_bytes).
  void encode(const std::vector<std::string_view>& span_runs, WireBuffer& out) const;
  // Only the framing of a request whose runs hold spans_size bytes in all: what goes before them
  // (the request is `out` followed by the runs). Overwrites out.
  void encodeHead(size_t spans_size, WireBuffer& out) const;
  // At most this many bytes of a request are not span bytes (resource, scope, their framing).
  size_t maxFramingBytes() const;

 private:
  template <typename Out>
  void encodeInto(const std::vector<std::string_view>& span_runs, Out& out) const;
  template <typename Out>
  void writeHead(size_t spans_size, Out& out) const;
  std::string resource_field_;  // ResourceSpans.resource, complete with tag and length
  std::string scope_field_;     // ScopeSpans.scope, complete with tag and length
};

// Decodes a serialized ExportTraceServiceRequest (every resource and scope) into spans and, if
// resource is given, the first resource's attributes. False if the bytes are not a valid message.
bool decodeOtlpRequest(std::string_view request, std::vector<SpanData>* spans,
                       Resource* resource = nullptr);

}  // namespace sidetrace::tracing
