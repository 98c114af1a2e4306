#pragma once
// Processor/exporter seam (opentelemetry-cpp exporter.h, trimmed). An exporter is owned by the
// batch processor and only ever called from the processor's thread, never concurrently.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "tracing/span_data.h"

namespace sidetrace::tracing {

enum class ExportResult { Success, Failure };

class SpanExporter {
 public:
  virtual ~SpanExporter() = default;
  // `request` is a serialized OTLP ExportTraceServiceRequest holding span_count spans (framed by
  // the processor, resource included). Blocks for at most the configured timeout, retries
  // included.
  virtual ExportResult exportSpans(std::string_view request, size_t span_count) = 0;
  virtual void shutdown() {}
  // Spans a collector accepted the request for but reported as rejected (OTLP partial success),
  // summed over all exports so far. Read by the processor after each export.
  uint64_t rejectedSpans() const { return rejected_spans_; }

 protected:
  uint64_t rejected_spans_ = 0;
};

// Human-readable JSON lines (one per span) on stdout; the zero-config default.
std::unique_ptr<SpanExporter> makeConsoleExporter();
// One console line for a span: a JSON object and '\n' (the format scripts parse; exposed for
// tests).
std::string formatConsoleSpan(const SpanData& span, const Resource& resource);
// OTLP/gRPC TraceService/Export via grpc++; retries UNAVAILABLE etc. with back-off.
std::unique_ptr<SpanExporter> makeOtlpGrpcExporter(const config::ExporterConfig& cfg);
// Picks by cfg.protocol; returns nullptr for "none".
std::unique_ptr<SpanExporter> makeExporter(const config::ExporterConfig& cfg);

}  // namespace sidetrace::tracing
