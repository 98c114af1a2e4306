#include "tracing/otlp_encode.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "tracing/utf8.h"

namespace sidetrace::tracing {

namespace {

// Protobuf wire types and the tags used below ((field << 3) | wire type).
constexpr uint8_t kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5;
constexpr uint32_t tag(uint32_t field, uint8_t wire_type) {
  return (field << 3) | wire_type;
}

inline size_t varintSize(uint64_t v) {
  if (v < 0x80) {
    return 1;
  }
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

// Space for exactly n more bytes at the end of out, written through a pointer: sizes are
// computed first, then the bytes stored. (Appending piece by piece cost ~50 instructions each.)
char* extend(std::string& out, size_t n) {
  const size_t old = out.size();
  out.resize(old + n);
  return out.data() + old;
}

char* extend(WireBuffer& out, size_t n) {
  return out.extend(n);
}

class Writer {
 public:
  explicit Writer(char* p) : p_(p) {}
  void varint(uint64_t v) {
    while (v >= 0x80) {
      *p_++ = static_cast<char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    *p_++ = static_cast<char>(v);
  }
  void fixed(uint64_t v, int bytes) {  // little-endian, independent of the host's byte order
    for (int i = 0; i < bytes; ++i) {
      *p_++ = static_cast<char>(v & 0xff);
      v >>= 8;
    }
  }
  void raw(std::string_view bytes) {
    if (!bytes.empty()) {  // memcpy from an empty view's nullptr is undefined, even for 0 bytes
      std::memcpy(p_, bytes.data(), bytes.size());
      p_ += bytes.size();
    }
  }
  // A length-delimited field: tag, length, bytes.
  void field(uint32_t field_tag, std::string_view bytes) {
    varint(field_tag);
    varint(bytes.size());
    raw(bytes);
  }

 private:
  char* p_;
};

size_t bytesFieldSize(uint32_t field_tag, size_t len) {
  return varintSize(field_tag) + varintSize(len) + len;
}

void putField(std::string& out, uint32_t field_tag, std::string_view bytes) {
  Writer(extend(out, bytesFieldSize(field_tag, bytes.size()))).field(field_tag, bytes);
}

// Client bytes may be invalid UTF-8: repaired into scratch (rare) so the length is known up front.
std::string_view validUtf8(std::string_view s, std::string& scratch) {
  if (isValidUtf8(s)) {
    return s;
  }
  scratch.clear();
  appendValidUtf8(s, scratch);
  return scratch;
}

// AnyValue (common.proto): string_value = 1, bool_value = 2, int_value = 3, double_value = 4.
// Members of a oneof are written even when they hold the default value.
struct EncodedValue {
  uint32_t tag = 0;
  std::string_view text;  // string_value
  uint64_t number = 0;    // varint or fixed64 payload
  size_t size() const {
    switch (tag & 7) {
      case kLen:
        return bytesFieldSize(tag, text.size());
      case kFixed64:
        return 1 + 8;
      default:
        return 1 + varintSize(number);
    }
  }
};

EncodedValue encodeValue(const AttributeValueView& value, size_t max_text_bytes,
                         std::string& scratch) {
  EncodedValue v;
  if (const auto* s = std::get_if<std::string_view>(&value)) {
    v.tag = tag(1, kLen);
    // Cut before repairing (a long value is not scanned past the limit), and again after: each
    // repaired byte grows to three.
    v.text = truncateUtf8(validUtf8(truncateUtf8(*s, max_text_bytes), scratch), max_text_bytes);
  } else if (const auto* b = std::get_if<bool>(&value)) {
    v.tag = tag(2, kVarint);
    v.number = *b ? 1 : 0;
  } else if (const auto* i = std::get_if<int64_t>(&value)) {
    v.tag = tag(3, kVarint);
    v.number = static_cast<uint64_t>(*i);  // negative int64 is a 10-byte varint, as protobuf does
  } else {
    double d = std::get<double>(value);
    v.tag = tag(4, kFixed64);
    std::memcpy(&v.number, &d, sizeof d);
  }
  return v;
}

// KeyValue { key = 1; value = 2 } as field `field_tag` of the enclosing message.
template <typename Out>
void putKeyValue(Out& out, uint32_t field_tag, std::string_view key,
                 const AttributeValueView& value, size_t max_text_bytes = SIZE_MAX) {
  std::string value_scratch;
  EncodedValue v = encodeValue(value, max_text_bytes, value_scratch);
  const size_t any_size = v.size();
  const size_t kv_size =
      bytesFieldSize(tag(1, kLen), key.size()) + 1 + varintSize(any_size) + any_size;
  Writer w(extend(out, varintSize(field_tag) + varintSize(kv_size) + kv_size));
  w.varint(field_tag);
  w.varint(kv_size);
  w.field(tag(1, kLen), key);
  w.varint(tag(2, kLen));
  w.varint(any_size);
  switch (v.tag & 7) {
    case kLen:
      w.field(v.tag, v.text);
      break;
    case kFixed64:
      w.varint(v.tag);
      w.fixed(v.number, 8);
      break;
    default:
      w.varint(v.tag);
      w.varint(v.number);
  }
}

// KeyValue { key = 1; value = 2: AnyValue { array_value = 5: ArrayValue { values = 1: AnyValue {
// string_value = 1 } ... } } } as field `field_tag` of the enclosing message.
template <typename Out>
void putStringArrayKeyValue(Out& out, uint32_t field_tag, std::string_view key,
                            const std::string_view* values, size_t count, size_t max_text_bytes) {
  constexpr uint32_t kString = tag(1, kLen), kArrayValues = tag(1, kLen), kAnyArray = tag(5, kLen);
  std::vector<std::string> scratch(count);
  std::vector<std::string_view> texts(count);
  size_t array_size = 0;
  for (size_t i = 0; i < count; ++i) {
    texts[i] = truncateUtf8(validUtf8(truncateUtf8(values[i], max_text_bytes), scratch[i]),
                            max_text_bytes);
    array_size += bytesFieldSize(kArrayValues, bytesFieldSize(kString, texts[i].size()));
  }
  const size_t any_size = bytesFieldSize(kAnyArray, array_size);
  const size_t kv_size =
      bytesFieldSize(tag(1, kLen), key.size()) + bytesFieldSize(tag(2, kLen), any_size);
  Writer w(extend(out, varintSize(field_tag) + varintSize(kv_size) + kv_size));
  w.varint(field_tag);
  w.varint(kv_size);
  w.field(tag(1, kLen), key);
  w.varint(tag(2, kLen));
  w.varint(any_size);
  w.varint(kAnyArray);
  w.varint(array_size);
  for (std::string_view text : texts) {
    w.varint(kArrayValues);
    w.varint(bytesFieldSize(kString, text.size()));
    w.field(kString, text);
  }
}

// A resource attribute (from config) onto the KeyValue encoders.
template <typename Out>
void putAttribute(Out& out, uint32_t field_tag, std::string_view key, const AttributeValue& value) {
  if (const auto* array = std::get_if<std::vector<std::string>>(&value)) {
    std::vector<std::string_view> views(array->begin(), array->end());
    putStringArrayKeyValue(out, field_tag, key, views.data(), views.size(), SIZE_MAX);
    return;
  }
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (!std::is_same_v<T, std::vector<std::string>>) {
          putKeyValue(out, field_tag, key, AttributeValueView(v));
        }
      },
      value);
}

// Span fields (trace.proto).
constexpr uint32_t kSpanTraceId = tag(1, kLen), kSpanSpanId = tag(2, kLen),
                   kSpanTraceState = tag(3, kLen), kSpanParentSpanId = tag(4, kLen),
                   kSpanName = tag(5, kLen), kSpanKind = tag(6, kVarint),
                   kSpanStart = tag(7, kFixed64), kSpanEnd = tag(8, kFixed64),
                   kSpanStatus = tag(15, kLen), kSpanFlags = tag(16, kFixed32),
                   kSpanDroppedAttributes = tag(10, kVarint);
constexpr uint32_t kStatusMessage = tag(2, kLen), kStatusCode = tag(3, kVarint);
constexpr uint32_t kAttributes = tag(9, kLen);  // Span.attributes
constexpr uint32_t kLinks = tag(13, kLen);      // Span.links
constexpr uint32_t kLinkTraceId = tag(1, kLen), kLinkSpanId = tag(2, kLen),
                   kLinkFlags = tag(6, kFixed32);
constexpr uint32_t kScopeSpansSpans = tag(2, kLen);  // ScopeSpans.spans

}  // namespace

void appendOtlpAttribute(WireBuffer& out, std::string_view key, const AttributeValueView& value,
                         size_t max_text_bytes) {
  if (!appendShortOtlpAttribute(out, key, value, max_text_bytes)) {
    putKeyValue(out, kAttributes, key, value, max_text_bytes);
  }
}

void appendOtlpStringArrayAttribute(WireBuffer& out, std::string_view key,
                                    const std::string_view* values, size_t count,
                                    size_t max_text_bytes) {
  putStringArrayKeyValue(out, kAttributes, key, values, count, max_text_bytes);
}

void appendOtlpLink(WireBuffer& out, const TraceId& trace_id, const SpanId& span_id,
                    uint8_t flags) {
  const size_t size = bytesFieldSize(kLinkTraceId, 16) + bytesFieldSize(kLinkSpanId, 8) +
                      (flags != 0 ? 1 + 4 : 0);  // proto3 leaves out a zero
  Writer w(extend(out, varintSize(kLinks) + varintSize(size) + size));
  w.varint(kLinks);
  w.varint(size);
  w.field(kLinkTraceId, {reinterpret_cast<const char*>(trace_id.bytes.data()), 16});
  w.field(kLinkSpanId, {reinterpret_cast<const char*>(span_id.bytes.data()), 8});
  if (flags != 0) {
    w.varint(kLinkFlags);
    w.fixed(flags, 4);
  }
}

namespace {

template <typename Out>
void putSpan(Out& out, const SpanRecord& span) {
  std::string name_scratch, message_scratch;
  // Most names are ASCII (a method and a route, a gRPC method): told inline, no call.
  const std::string_view name = detail::isAscii(span.name.data(), span.name.size())
                                    ? std::string_view(span.name)
                                    : validUtf8(span.name, name_scratch);
  const bool has_parent = span.parent_span_id.valid();
  size_t status_size = 0;
  std::string_view message;
  if (span.status != StatusCode::Unset) {
    message = validUtf8(span.status_message, message_scratch);
    status_size = (message.empty() ? 0 : bytesFieldSize(kStatusMessage, message.size())) + 1 +
                  varintSize(static_cast<uint64_t>(span.status));
  }
  size_t size =
      bytesFieldSize(kSpanTraceId, 16) + bytesFieldSize(kSpanSpanId, 8) +
      (span.tracestate.empty() ? 0 : bytesFieldSize(kSpanTraceState, span.tracestate.size())) +
      (has_parent ? bytesFieldSize(kSpanParentSpanId, 8) : 0) +
      bytesFieldSize(kSpanName, name.size()) + 1 + varintSize(static_cast<uint64_t>(span.kind)) +
      2 * (1 + 8) + span.attributes.size() + span.links.size() +
      (span.dropped_attributes_count != 0 ? 1 + varintSize(span.dropped_attributes_count) : 0) +
      (span.status != StatusCode::Unset ? bytesFieldSize(kSpanStatus, status_size) : 0) +
      (span.flags != 0 ? 2 + 4 : 0);
  Writer w(extend(out, varintSize(kScopeSpansSpans) + varintSize(size) + size));
  w.varint(kScopeSpansSpans);
  w.varint(size);
  const auto* tid = reinterpret_cast<const char*>(span.trace_id.bytes.data());
  w.field(kSpanTraceId, {tid, span.trace_id.bytes.size()});
  const auto* sid = reinterpret_cast<const char*>(span.span_id.bytes.data());
  w.field(kSpanSpanId, {sid, span.span_id.bytes.size()});
  if (!span.tracestate.empty()) {
    w.field(kSpanTraceState, span.tracestate);  // validated W3C tracestate: ASCII
  }
  if (has_parent) {
    const auto* pid = reinterpret_cast<const char*>(span.parent_span_id.bytes.data());
    w.field(kSpanParentSpanId, {pid, span.parent_span_id.bytes.size()});
  }
  w.field(kSpanName, name);
  w.varint(kSpanKind);
  w.varint(static_cast<uint64_t>(span.kind));
  w.varint(kSpanStart);
  w.fixed(span.start_unix_nanos, 8);
  w.varint(kSpanEnd);
  w.fixed(span.end_unix_nanos, 8);
  w.raw(span.attributes.view());
  if (span.dropped_attributes_count != 0) {
    w.varint(kSpanDroppedAttributes);
    w.varint(span.dropped_attributes_count);
  }
  w.raw(span.links.view());  // field 13 after 10: protobuf parsers take fields in any order
  if (span.status != StatusCode::Unset) {
    w.varint(kSpanStatus);
    w.varint(status_size);
    if (!message.empty()) {
      w.field(kStatusMessage, message);
    }
    w.varint(kStatusCode);
    w.varint(static_cast<uint64_t>(span.status));
  }
  if (span.flags != 0) {
    w.varint(kSpanFlags);
    w.fixed(span.flags, 4);
  }
}

}  // namespace

void appendOtlpSpan(std::string& out, const SpanRecord& span) {
  putSpan(out, span);
}

void appendOtlpSpan(WireBuffer& out, const SpanRecord& span) {
  putSpan(out, span);
}

SpansPrefix otlpSpansPrefix(std::string_view run, size_t max_count, size_t max_bytes) {
  SpansPrefix prefix;
  size_t pos = 0;
  while (prefix.count < max_count && pos < run.size()) {
    ++pos;  // the tag (kScopeSpansSpans, one byte)
    uint64_t len = 0;
    for (int shift = 0; pos < run.size(); shift += 7) {
      auto b = static_cast<uint8_t>(run[pos++]);
      len |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) {
        break;
      }
    }
    pos = static_cast<size_t>(std::min<uint64_t>(pos + len, run.size()));
    if (pos > max_bytes) {
      break;
    }
    prefix.bytes = pos;
    ++prefix.count;
  }
  return prefix;
}

OtlpRequestEncoder::OtlpRequestEncoder(const Resource& resource) {
  std::string body, key_scratch;
  for (const Attribute& attr : resource.attributes) {  // keys from config: check them too
    putAttribute(body, tag(1, kLen), validUtf8(attr.key, key_scratch), attr.value);
  }
  putField(resource_field_, tag(1, kLen), body);  // ResourceSpans.resource = 1
  std::string scope;
  putField(scope, tag(1, kLen), "sidetrace");        // InstrumentationScope.name = 1
  putField(scope, tag(2, kLen), SIDETRACE_VERSION);  // InstrumentationScope.version = 2
  putField(scope_field_, tag(1, kLen), scope);       // ScopeSpans.scope = 1
}

size_t OtlpRequestEncoder::maxFramingBytes() const {
  // Two tags and two length varints (at most 5 bytes each for a request under 4 GiB).
  return resource_field_.size() + scope_field_.size() + 2 * (1 + 5);
}

void OtlpRequestEncoder::encode(const std::vector<std::string_view>& span_runs,
                                std::string& out) const {
  encodeInto(span_runs, out);
}

void OtlpRequestEncoder::encode(const std::vector<std::string_view>& span_runs,
                                WireBuffer& out) const {
  encodeInto(span_runs, out);
}

void OtlpRequestEncoder::encodeHead(size_t spans_size, WireBuffer& out) const {
  out.clear();
  writeHead(spans_size, out);
}

// Appends the framing of a request whose spans come to spans_size bytes.
template <typename Out>
void OtlpRequestEncoder::writeHead(size_t spans_size, Out& out) const {
  const size_t scope_spans_size = scope_field_.size() + spans_size;
  const size_t resource_spans_size =
      resource_field_.size() + bytesFieldSize(tag(2, kLen), scope_spans_size);
  const size_t head_size = bytesFieldSize(tag(1, kLen), resource_spans_size) - spans_size;
  Writer w(extend(out, head_size));
  w.varint(tag(1, kLen));  // ExportTraceServiceRequest.resource_spans = 1
  w.varint(resource_spans_size);
  w.raw(resource_field_);
  w.varint(tag(2, kLen));  // ResourceSpans.scope_spans = 2
  w.varint(scope_spans_size);
  w.raw(scope_field_);
}

template <typename Out>
void OtlpRequestEncoder::encodeInto(const std::vector<std::string_view>& span_runs,
                                    Out& out) const {
  size_t spans_size = 0;
  for (std::string_view run : span_runs) {
    spans_size += run.size();
  }
  out.clear();
  writeHead(spans_size, out);
  Writer w(extend(out, spans_size));
  for (std::string_view run : span_runs) {
    w.raw(run);
  }
}

SpanBatch SpanBatch::adopt(WireBuffer&& buffer, size_t count) {
  auto owner = std::make_shared<const WireBuffer>(std::move(buffer));
  const std::string_view bytes = owner->view();
  const size_t held = owner->capacity();
  return SpanBatch{std::move(owner), bytes, count, held};
}

SpanBatch SpanBatch::copyOf(std::string_view bytes, size_t count) {
  WireBuffer buffer;
  buffer.reserve(bytes.size());
  if (!bytes.empty()) {
    std::memcpy(buffer.extend(bytes.size()), bytes.data(), bytes.size());
  }
  return adopt(std::move(buffer), count);
}

namespace {

namespace common = opentelemetry::proto::common::v1;
namespace collector = opentelemetry::proto::collector::trace::v1;
namespace otlp = opentelemetry::proto::trace::v1;

template <size_t N>
void copyId(const std::string& from, std::array<uint8_t, N>& to) {
  if (from.size() == N) {
    std::memcpy(to.data(), from.data(), N);
  }
}

AttributeValue decodeValue(const common::AnyValue& v) {
  switch (v.value_case()) {
    case common::AnyValue::kBoolValue:
      return v.bool_value();
    case common::AnyValue::kIntValue:
      return v.int_value();
    case common::AnyValue::kDoubleValue:
      return v.double_value();
    case common::AnyValue::kArrayValue: {
      std::vector<std::string> strings;
      for (const auto& item : v.array_value().values()) {
        strings.push_back(item.string_value());
      }
      return strings;
    }
    default:
      return v.string_value();
  }
}

}  // namespace

bool decodeOtlpRequest(std::string_view request, std::vector<SpanData>* spans, Resource* resource) {
  collector::ExportTraceServiceRequest req;
  if (!req.ParseFromArray(request.data(), static_cast<int>(request.size()))) {
    return false;
  }
  if (resource != nullptr && req.resource_spans_size() > 0) {
    for (const auto& kv : req.resource_spans(0).resource().attributes()) {
      resource->attributes.push_back(Attribute{kv.key(), decodeValue(kv.value())});
    }
  }
  for (const auto& rs : req.resource_spans()) {
    for (const auto& ss : rs.scope_spans()) {
      for (const otlp::Span& s : ss.spans()) {
        SpanData d;
        copyId(s.trace_id(), d.trace_id.bytes);
        copyId(s.span_id(), d.span_id.bytes);
        copyId(s.parent_span_id(), d.parent_span_id.bytes);
        d.tracestate = s.trace_state();
        d.flags = static_cast<uint8_t>(s.flags() & 0xff);
        d.name = s.name();
        d.kind = static_cast<SpanKind>(s.kind());
        d.start_unix_nanos = s.start_time_unix_nano();
        d.end_unix_nanos = s.end_time_unix_nano();
        for (const auto& kv : s.attributes()) {
          d.attributes.push_back(Attribute{kv.key(), decodeValue(kv.value())});
        }
        d.status = static_cast<StatusCode>(s.status().code());
        d.status_message = s.status().message();
        d.dropped_attributes_count = s.dropped_attributes_count();
        for (const auto& l : s.links()) {
          SpanLink link;
          copyId(l.trace_id(), link.trace_id.bytes);
          copyId(l.span_id(), link.span_id.bytes);
          d.links.push_back(link);
        }
        spans->push_back(std::move(d));
      }
    }
  }
  return true;
}

const AttributeValue* SpanData::attribute(std::string_view key) const {
  for (const auto& attr : attributes) {
    if (attr.key == key) {
      return &attr.value;
    }
  }
  return nullptr;
}

}  // namespace sidetrace::tracing
