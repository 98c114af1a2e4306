#include "tracing/otlp_json.h"

#include <google/protobuf/stubs/strutil.h>

#include <charconv>
#include <cmath>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "tracing/utf8.h"

namespace sidetrace::tracing {

namespace {

namespace collector = opentelemetry::proto::collector::trace::v1;
namespace common = opentelemetry::proto::common::v1;
namespace trace = opentelemetry::proto::trace::v1;

// Writes `"key":` after a comma unless it is the object's first member.
class Object {
 public:
  explicit Object(std::string& out) : out_(out) { out_ += '{'; }
  ~Object() { out_ += '}'; }
  Object(const Object&) = delete;
  Object& operator=(const Object&) = delete;

  std::string& key(std::string_view name) {
    if (!first_) {
      out_ += ',';
    }
    first_ = false;
    out_ += '"';
    out_ += name;  // field names are ASCII literals
    out_ += "\":";
    return out_;
  }

 private:
  std::string& out_;
  bool first_ = true;
};

template <typename T>
void appendNumber(std::string& out, T v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;  // 32 bytes hold any 64-bit integer or shortest double
  out.append(buf, end);
}

// proto3 JSON: 64-bit integers are strings (JavaScript numbers lose precision above 2^53).
template <typename T>
void appendQuotedNumber(std::string& out, T v) {
  out += '"';
  appendNumber(out, v);
  out += '"';
}

void appendDouble(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "\"NaN\"";
  } else if (std::isinf(v)) {
    out += v > 0 ? "\"Infinity\"" : "\"-Infinity\"";
  } else {
    appendNumber(out, v);
  }
}

// OTLP's deviation from proto3 JSON: trace and span ids are hex, not base64.
void appendHexId(std::string& out, const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  out += '"';
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  out += '"';
}

void appendBase64(std::string& out, const std::string& bytes) {
  std::string encoded;
  google::protobuf::Base64Escape(bytes, &encoded);
  out += '"';
  out += encoded;
  out += '"';
}

void appendKeyValues(std::string& out,
                     const google::protobuf::RepeatedPtrField<common::KeyValue>& kvs);

void appendAnyValue(std::string& out, const common::AnyValue& v) {
  Object o(out);
  switch (v.value_case()) {
    case common::AnyValue::kStringValue:
      appendJsonString(o.key("stringValue"), v.string_value());
      break;
    case common::AnyValue::kBoolValue:
      o.key("boolValue") += v.bool_value() ? "true" : "false";
      break;
    case common::AnyValue::kIntValue:
      appendQuotedNumber(o.key("intValue"), v.int_value());
      break;
    case common::AnyValue::kDoubleValue:
      appendDouble(o.key("doubleValue"), v.double_value());
      break;
    case common::AnyValue::kArrayValue: {
      Object array(o.key("arrayValue"));
      std::string& values = array.key("values");
      values += '[';
      for (int i = 0; i < v.array_value().values_size(); ++i) {
        if (i > 0) {
          values += ',';
        }
        appendAnyValue(values, v.array_value().values(i));
      }
      values += ']';
      break;
    }
    case common::AnyValue::kKvlistValue: {
      Object list(o.key("kvlistValue"));
      appendKeyValues(list.key("values"), v.kvlist_value().values());
      break;
    }
    case common::AnyValue::kBytesValue:
      appendBase64(o.key("bytesValue"), v.bytes_value());
      break;
    case common::AnyValue::VALUE_NOT_SET:
      break;
  }
}

void appendKeyValues(std::string& out,
                     const google::protobuf::RepeatedPtrField<common::KeyValue>& kvs) {
  out += '[';
  bool first = true;
  for (const auto& kv : kvs) {
    if (!first) {
      out += ',';
    }
    first = false;
    Object o(out);
    appendJsonString(o.key("key"), kv.key());
    appendAnyValue(o.key("value"), kv.value());
  }
  out += ']';
}

// The "attributes" member and its dropped count, both omitted when zero.
template <typename M>
void appendAttributes(Object& o, const M& m) {
  if (m.attributes_size() > 0) {
    appendKeyValues(o.key("attributes"), m.attributes());
  }
  if (m.dropped_attributes_count() != 0) {
    appendNumber(o.key("droppedAttributesCount"), m.dropped_attributes_count());
  }
}

void appendString(Object& o, std::string_view key, const std::string& value) {
  if (!value.empty()) {
    appendJsonString(o.key(key), value);
  }
}

void appendHexId(Object& o, std::string_view key, const std::string& id) {
  if (!id.empty()) {
    appendHexId(o.key(key), id);
  }
}

void appendTime(Object& o, std::string_view key, uint64_t unix_nanos) {
  if (unix_nanos != 0) {
    appendQuotedNumber(o.key(key), unix_nanos);
  }
}

template <typename T, typename F>
void appendArray(Object& o, std::string_view key,
                 const google::protobuf::RepeatedPtrField<T>& items, F&& append_item) {
  if (items.empty()) {
    return;
  }
  std::string& out = o.key(key);
  out += '[';
  bool first = true;
  for (const T& item : items) {
    if (!first) {
      out += ',';
    }
    first = false;
    append_item(out, item);
  }
  out += ']';
}

void appendSpan(std::string& out, const trace::Span& s) {
  Object o(out);
  appendHexId(o, "traceId", s.trace_id());
  appendHexId(o, "spanId", s.span_id());
  appendString(o, "traceState", s.trace_state());
  appendHexId(o, "parentSpanId", s.parent_span_id());
  if (s.flags() != 0) {
    appendNumber(o.key("flags"), s.flags());
  }
  appendString(o, "name", s.name());
  if (s.kind() != 0) {
    appendNumber(o.key("kind"), static_cast<int>(s.kind()));
  }
  appendTime(o, "startTimeUnixNano", s.start_time_unix_nano());
  appendTime(o, "endTimeUnixNano", s.end_time_unix_nano());
  appendAttributes(o, s);
  appendArray(o, "events", s.events(), [](std::string& out, const trace::Span::Event& e) {
    Object eo(out);
    appendTime(eo, "timeUnixNano", e.time_unix_nano());
    appendString(eo, "name", e.name());
    appendAttributes(eo, e);
  });
  if (s.dropped_events_count() != 0) {
    appendNumber(o.key("droppedEventsCount"), s.dropped_events_count());
  }
  appendArray(o, "links", s.links(), [](std::string& out, const trace::Span::Link& l) {
    Object lo(out);
    appendHexId(lo, "traceId", l.trace_id());
    appendHexId(lo, "spanId", l.span_id());
    appendString(lo, "traceState", l.trace_state());
    appendAttributes(lo, l);
    if (l.flags() != 0) {
      appendNumber(lo.key("flags"), l.flags());
    }
  });
  if (s.dropped_links_count() != 0) {
    appendNumber(o.key("droppedLinksCount"), s.dropped_links_count());
  }
  if (s.has_status()) {
    Object status(o.key("status"));
    appendString(status, "message", s.status().message());
    if (s.status().code() != 0) {
      appendNumber(status.key("code"), static_cast<int>(s.status().code()));
    }
  }
}

void appendScopeSpans(std::string& out, const trace::ScopeSpans& ss) {
  Object o(out);
  if (ss.has_scope()) {
    Object scope(o.key("scope"));
    appendString(scope, "name", ss.scope().name());
    appendString(scope, "version", ss.scope().version());
    appendAttributes(scope, ss.scope());
  }
  appendArray(o, "spans", ss.spans(), appendSpan);
  appendString(o, "schemaUrl", ss.schema_url());
}

void appendResourceSpans(std::string& out, const trace::ResourceSpans& rs) {
  Object o(out);
  if (rs.has_resource()) {
    Object resource(o.key("resource"));
    appendAttributes(resource, rs.resource());
  }
  appendArray(o, "scopeSpans", rs.scope_spans(), appendScopeSpans);
  appendString(o, "schemaUrl", rs.schema_url());
}

}  // namespace

struct OtlpJsonEncoder::Impl {
  collector::ExportTraceServiceRequest request;
};

OtlpJsonEncoder::OtlpJsonEncoder() : impl_(std::make_unique<Impl>()) {}
OtlpJsonEncoder::~OtlpJsonEncoder() = default;

bool OtlpJsonEncoder::encode(std::string_view request, std::string& out) {
  out.clear();
  collector::ExportTraceServiceRequest& msg = impl_->request;
  if (!msg.ParseFromArray(request.data(), static_cast<int>(request.size()))) {
    msg.Clear();
    return false;
  }
  {
    Object o(out);
    appendArray(o, "resourceSpans", msg.resource_spans(), appendResourceSpans);
  }
  msg.Clear();  // keeps the allocated sub-messages for the next batch
  return true;
}

}  // namespace sidetrace::tracing
