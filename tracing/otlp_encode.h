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
#include <string>
#include <string_view>
#include <vector>

#include "tracing/span_data.h"

namespace sidetrace::tracing {

// Appends one Span.attributes KeyValue (field 9) to out. The key is trusted to be valid UTF-8
// (attribute keys are literals); a string value is checked, repaired and cut to at most
// max_text_bytes at a character boundary.
void appendOtlpAttribute(WireBuffer& out, std::string_view key, const AttributeValueView& value,
                         size_t max_text_bytes = SIZE_MAX);

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
  // At most this many bytes of a request are not span bytes (resource, scope, their framing).
  size_t maxFramingBytes() const;

 private:
  template <typename Out>
  void encodeInto(const std::vector<std::string_view>& span_runs, Out& out) const;
  std::string resource_field_;  // ResourceSpans.resource, complete with tag and length
  std::string scope_field_;     // ScopeSpans.scope, complete with tag and length
};

// Decodes a serialized ExportTraceServiceRequest (every resource and scope) into spans and, if
// resource is given, the first resource's attributes. False if the bytes are not a valid message.
bool decodeOtlpRequest(std::string_view request, std::vector<SpanData>* spans,
                       Resource* resource = nullptr);

}  // namespace sidetrace::tracing
