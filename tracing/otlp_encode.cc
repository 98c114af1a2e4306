#include "tracing/otlp_encode.h"

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "tracing/utf8.h"

namespace sidetrace::tracing {

namespace {

namespace common = opentelemetry::proto::common::v1;
namespace otlp = opentelemetry::proto::trace::v1;

void setString(std::string_view value, std::string* out) {
  if (isValidUtf8(value)) {
    out->assign(value.data(), value.size());
  } else {
    out->clear();
    appendValidUtf8(value, *out);
  }
}

// Overwrites kv in place. Setting a oneof member of the kind it already holds reuses its storage,
// so a reused request makes no allocation for attributes of the same shape as last time.
void setAttribute(const Attribute& attr, common::KeyValue* kv) {
  setString(attr.key, kv->mutable_key());
  common::AnyValue* value = kv->mutable_value();
  std::visit(
      [value](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          setString(v, value->mutable_string_value());
        } else if constexpr (std::is_same_v<T, bool>) {
          value->set_bool_value(v);
        } else if constexpr (std::is_same_v<T, double>) {
          value->set_double_value(v);
        } else {
          value->set_int_value(v);
        }
      },
      attr.value);
}

template <size_t N>
void setBytes(const std::array<uint8_t, N>& bytes, std::string* out) {
  out->assign(reinterpret_cast<const char*>(bytes.data()), N);
}

// Element i of a repeated message field, reusing an existing one (cleared elements stay allocated
// inside RepeatedPtrField, so add() after RemoveLast() hands them back).
template <typename Repeated>
auto* element(Repeated* field, int i) {
  return i < field->size() ? field->Mutable(i) : field->Add();
}

template <typename Repeated>
void truncate(Repeated* field, int n) {
  while (field->size() > n) {
    field->RemoveLast();
  }
}

void encodeSpan(const SpanData& span, otlp::Span* s) {
  setBytes(span.trace_id.bytes, s->mutable_trace_id());
  setBytes(span.span_id.bytes, s->mutable_span_id());
  if (span.parent_span_id.valid()) {
    setBytes(span.parent_span_id.bytes, s->mutable_parent_span_id());
  } else {
    s->clear_parent_span_id();
  }
  s->set_trace_state(span.tracestate);  // validated W3C tracestate: ASCII
  s->set_flags(span.flags);
  setString(span.name, s->mutable_name());
  s->set_kind(static_cast<otlp::Span::SpanKind>(span.kind));
  s->set_start_time_unix_nano(span.start_unix_nanos);
  s->set_end_time_unix_nano(span.end_unix_nanos);
  auto* attrs = s->mutable_attributes();
  int n = 0;
  for (const Attribute& attr : span.attributes) {
    setAttribute(attr, element(attrs, n++));
  }
  truncate(attrs, n);
  if (span.status != StatusCode::Unset) {
    s->mutable_status()->set_code(static_cast<otlp::Status::StatusCode>(span.status));
    setString(span.status_message, s->mutable_status()->mutable_message());
  } else {
    s->clear_status();
  }
}

}  // namespace

void encodeOtlp(const std::vector<SpanData>& spans, const Resource& resource,
                opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest* out) {
  // One ResourceSpans with one ScopeSpans; everything below is overwritten in place rather than
  // cleared, so a request object reused across exports stops allocating once warm.
  truncate(out->mutable_resource_spans(), 1);
  otlp::ResourceSpans* rs = element(out->mutable_resource_spans(), 0);
  auto* rattrs = rs->mutable_resource()->mutable_attributes();
  int n = 0;
  for (const Attribute& attr : resource.attributes) {
    setAttribute(attr, element(rattrs, n++));
  }
  truncate(rattrs, n);
  truncate(rs->mutable_scope_spans(), 1);
  otlp::ScopeSpans* ss = element(rs->mutable_scope_spans(), 0);
  ss->mutable_scope()->set_name("sidetrace");
  ss->mutable_scope()->set_version(SIDETRACE_VERSION);
  auto* out_spans = ss->mutable_spans();
  int i = 0;
  for (const SpanData& span : spans) {
    encodeSpan(span, element(out_spans, i++));
  }
  truncate(out_spans, i);
}

}  // namespace sidetrace::tracing
