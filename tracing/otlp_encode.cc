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

}  // namespace

void encodeOtlp(const std::vector<SpanData>& spans, const Resource& resource,
                opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest* out) {
  out->Clear();
  otlp::ResourceSpans* rs = out->add_resource_spans();
  for (const Attribute& attr : resource.attributes) {
    setAttribute(attr, rs->mutable_resource()->add_attributes());
  }
  otlp::ScopeSpans* ss = rs->add_scope_spans();
  ss->mutable_scope()->set_name("sidetrace");
  ss->mutable_scope()->set_version(SIDETRACE_VERSION);
  ss->mutable_spans()->Reserve(static_cast<int>(spans.size()));
  for (const SpanData& span : spans) {
    otlp::Span* s = ss->add_spans();
    setBytes(span.trace_id.bytes, s->mutable_trace_id());
    setBytes(span.span_id.bytes, s->mutable_span_id());
    if (span.parent_span_id.valid()) {
      setBytes(span.parent_span_id.bytes, s->mutable_parent_span_id());
    }
    s->set_trace_state(span.tracestate);  // validated W3C tracestate: ASCII
    s->set_flags(span.flags);
    setString(span.name, s->mutable_name());
    s->set_kind(static_cast<otlp::Span::SpanKind>(span.kind));
    s->set_start_time_unix_nano(span.start_unix_nanos);
    s->set_end_time_unix_nano(span.end_unix_nanos);
    for (const Attribute& attr : span.attributes) {
      setAttribute(attr, s->add_attributes());
    }
    if (span.status != StatusCode::Unset) {
      s->mutable_status()->set_code(static_cast<otlp::Status::StatusCode>(span.status));
      setString(span.status_message, s->mutable_status()->mutable_message());
    }
  }
}

}  // namespace sidetrace::tracing
