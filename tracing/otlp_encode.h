#pragma once
// SpanData → OTLP ExportTraceServiceRequest, separate from the gRPC transport so tests (and a
// future OTLP/HTTP exporter) can use it. The message is only forward-declared: protobuf headers
// stay out of this header; callers that fill or read the message include the generated .pb.h
// themselves.

#include <vector>

#include "tracing/span_data.h"

namespace opentelemetry::proto::collector::trace::v1 {
class ExportTraceServiceRequest;
}  // namespace opentelemetry::proto::collector::trace::v1

namespace sidetrace::tracing {

// Clears *out and fills it with one ResourceSpans (the resource) holding one ScopeSpans (scope
// "sidetrace", SIDETRACE_VERSION) with the spans. Clearing keeps protobuf's allocated elements, so
// reusing one request across exports avoids re-allocating per span. Invalid UTF-8 in strings is
// replaced with U+FFFD (a collector rejects the whole request otherwise).
void encodeOtlp(const std::vector<SpanData>& spans, const Resource& resource,
                opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest* out);

}  // namespace sidetrace::tracing
