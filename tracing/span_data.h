#pragma once
// The finished-span record handed from a worker to the batch processor: plain data, moved, never
// shared. Attribute values cover the OTLP AnyValue cases the proxy emits.

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "tracing/trace_context.h"

namespace sidetrace::tracing {

using AttributeValue = std::variant<std::string, int64_t, double, bool>;

struct Attribute {
  std::string key;
  AttributeValue value;
};

// Numbering matches OTLP's Span.SpanKind and Status.StatusCode.
enum class SpanKind : int { Internal = 1, Server = 2, Client = 3, Producer = 4, Consumer = 5 };
enum class StatusCode : int { Unset = 0, Ok = 1, Error = 2 };

struct SpanData {
  TraceId trace_id;
  SpanId span_id;
  SpanId parent_span_id;  // all zero for a root span
  std::string tracestate;
  uint8_t flags = 0;
  std::string name;
  SpanKind kind = SpanKind::Internal;
  uint64_t start_unix_nanos = 0;
  uint64_t end_unix_nanos = 0;
  std::vector<Attribute> attributes;
  StatusCode status = StatusCode::Unset;
  std::string status_message;
};

struct Resource {
  std::vector<Attribute>
      attributes;  // service.name, host.name, telemetry.sdk.*, OTEL_RESOURCE_ATTRIBUTES
};

}  // namespace sidetrace::tracing
