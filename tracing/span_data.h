#pragma once
// Span records in the two shapes the pipeline needs.
//
// SpanRecord is the open span on a worker: ids, times and name as fields, attributes already in
// OTLP wire format. Writing an attribute is one append to a string whose capacity is reused (the
// tracer pools records), so a sampled request costs no allocation and no per-attribute object.
// When the span ends it is encoded once, on the worker, into its batch; the export thread only
// concatenates batches behind a precomputed resource header. (Building protobuf objects cost
// ~13k instructions per span on the export thread; this path costs well under 1k.)
//
// SpanData is the decoded, readable form: what the console exporter prints and what tests assert
// on. It is produced by decoding the wire bytes with the generated OTLP classes, so tests check
// the bytes a collector receives, not an intermediate structure.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "tracing/trace_context.h"

namespace sidetrace::tracing {

// Owned attribute values (resource, decoded spans); the vector is a string array (header values).
using AttributeValue = std::variant<std::string, int64_t, double, bool, std::vector<std::string>>;
// What Span::setAttribute takes: strings by view, copied straight into the encoded record.
using AttributeValueView = std::variant<std::string_view, int64_t, double, bool>;

struct Attribute {
  std::string key;
  AttributeValue value;
};

// Numbering matches OTLP's Span.SpanKind and Status.StatusCode.
enum class SpanKind : int { Internal = 1, Server = 2, Client = 3, Producer = 4, Consumer = 5 };
enum class StatusCode : int { Unset = 0, Ok = 1, Error = 2 };
// "SERVER", "CLIENT", ... and "OK", "ERROR", "UNSET": how the console exporter and /tracez show
// them.
const char* spanKindName(SpanKind kind);
const char* statusCodeName(StatusCode code);

// A growable byte buffer that hands out uninitialised space (std::string::resize would zero it
// first, and append is an out-of-line call per piece): attributes are written through a pointer.
class WireBuffer {
 public:
  WireBuffer() = default;
  // A moved-from buffer is empty, with no capacity (a defaulted move would leave it claiming the
  // capacity it gave away).
  WireBuffer(WireBuffer&& other) noexcept
      : data_(std::move(other.data_)),
        size_(std::exchange(other.size_, 0)),
        capacity_(std::exchange(other.capacity_, 0)) {}
  WireBuffer& operator=(WireBuffer&& other) noexcept {
    data_ = std::move(other.data_);
    size_ = std::exchange(other.size_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
    return *this;
  }

  // Grows by n bytes and returns where they start; the caller writes all n of them.
  char* extend(size_t n) {
    if (capacity_ - size_ < n) {
      grow(n);
    }
    char* p = data_.get() + size_;
    size_ += n;
    return p;
  }
  void clear() { size_ = 0; }  // keeps the capacity
  // Makes room for n bytes in all without growing again (the contents are kept).
  void reserve(size_t n) {
    if (n > capacity_) {
      reallocate(n);
    }
  }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  std::string_view view() const { return {data_.get(), size_}; }

 private:
  void grow(size_t n) { reallocate(std::max(capacity_ * 2, std::max<size_t>(size_ + n, 512))); }
  void reallocate(size_t capacity) {
    auto data = std::make_unique_for_overwrite<char[]>(capacity);
    if (size_ > 0) {
      std::memcpy(data.get(), data_.get(), size_);
    }
    data_ = std::move(data);
    capacity_ = capacity;
  }

  std::unique_ptr<char[]> data_;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

// What both shapes share: everything but the attributes.
struct SpanFields {
  TraceId trace_id;
  SpanId span_id;
  SpanId parent_span_id;  // all zero for a root span
  std::string tracestate;
  uint8_t flags = 0;
  std::string name;
  SpanKind kind = SpanKind::Internal;
  uint64_t start_unix_nanos = 0;
  uint64_t end_unix_nanos = 0;
  StatusCode status = StatusCode::Unset;
  std::string status_message;
  uint32_t dropped_attributes_count = 0;  // past the span limits' attribute_count
};

struct SpanRecord : SpanFields {
  WireBuffer attributes;         // OTLP wire bytes: a run of Span.attributes (field 9) KeyValues
  uint32_t attribute_count = 0;  // KeyValues in `attributes`
  WireBuffer links;              // OTLP wire bytes: a run of Span.links (field 13) Links
};

// A span link as decoded: the span it points to (in this trace or another).
struct SpanLink {
  TraceId trace_id;
  SpanId span_id;
};

struct SpanData : SpanFields {
  std::vector<Attribute> attributes;
  std::vector<SpanLink> links;

  // The attribute named key, or nullptr.
  const AttributeValue* attribute(std::string_view key) const;
};

struct Resource {
  std::vector<Attribute>
      attributes;  // service.name, host.name, telemetry.sdk.*, OTEL_RESOURCE_ATTRIBUTES
};

}  // namespace sidetrace::tracing
