#pragma once
// Processor/exporter seam (opentelemetry-cpp exporter.h, trimmed). An exporter is owned by the
// batch processor and only ever called from the processor's thread, never concurrently.

#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "tracing/http_transport.h"
#include "tracing/otlp_encode.h"
#include "tracing/span_data.h"

namespace sidetrace::tracing {

enum class ExportResult { Success, Failure };

// A request in pieces: the processor's framing (`head`: the request, resource and scope up to the
// spans), then the spans of each batch as the workers encoded them. Sent as they are, the span
// bytes are never copied on their way to the socket.
struct FramedSpans {
  std::string_view head;
  std::span<const SpanBatch> batches;
  size_t span_count = 0;
};

class SpanExporter {
 public:
  virtual ~SpanExporter() = default;
  // `request` is a serialized OTLP ExportTraceServiceRequest holding span_count spans (framed by
  // the processor, resource included). Blocks for at most the configured timeout, retries
  // included.
  virtual ExportResult exportSpans(std::string_view request, size_t span_count) = 0;
  // The same request in pieces (what the processor calls). Exporters that can send pieces as
  // they are override it (gRPC: one slice each); the default joins them, in a buffer kept for
  // the next request, and calls exportSpans.
  virtual ExportResult exportFramed(const FramedSpans& request);
  virtual void shutdown() {}
  // The latest instant the next calls may end at, retries included, however long their own timeout
  // would let them run: the processor's shutdown deadline (none until shutdown). Without it, a
  // round begun before shutdown went on exporting the whole queue, a full timeout per request
  // while the collector was down: a 65,536-span queue kept the process alive for ~25 minutes.
  void setDeadline(std::chrono::steady_clock::time_point deadline) { deadline_ = deadline; }
  // Spans a collector accepted the request for but reported as rejected (OTLP partial success),
  // summed over all exports so far. Read by the processor after each export.
  uint64_t rejectedSpans() const { return rejected_spans_; }

 protected:
  uint64_t rejected_spans_ = 0;
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();

 private:
  WireBuffer joined_;  // exportFramed's request, capacity reused
};

// Human-readable JSON lines (one per span) on stdout; the zero-config default.
std::unique_ptr<SpanExporter> makeConsoleExporter();
// One console line for a span: a JSON object and '\n' (the format scripts parse; exposed for
// tests).
std::string formatConsoleSpan(const SpanData& span, const Resource& resource);
// OTLP/gRPC TraceService/Export via grpc++; retries UNAVAILABLE etc. with back-off.
std::unique_ptr<SpanExporter> makeOtlpGrpcExporter(const config::ExporterConfig& cfg);

// The retry loop's clock and sleep. Empty members mean steady_clock and sleep_for; tests inject
// a virtual clock so back-off and Retry-After cost no real time.
struct ExportClock {
  std::function<std::chrono::steady_clock::time_point()> now;
  std::function<void(std::chrono::milliseconds)> sleep;
};

// OTLP/HTTP: POSTs http/protobuf or http/json (by cfg.protocol) through `transport`, gzip when
// cfg.compression is gzip, with cfg.headers. Retries 429/502/503/504 and failed exchanges with the
// gRPC exporter's back-off, honouring Retry-After, within cfg.timeout; counts partial success.
std::unique_ptr<SpanExporter> makeOtlpHttpExporter(const config::ExporterConfig& cfg,
                                                   std::unique_ptr<HttpTransport> transport,
                                                   ExportClock clock = {});

// Picks by cfg.protocol; returns nullptr for "none". `http_transport` builds the transport for
// http/protobuf and http/json (the proxy passes its asio client: proxy/otlp_http_client.h).
std::unique_ptr<SpanExporter> makeExporter(const config::ExporterConfig& cfg,
                                           const HttpTransportFactory& http_transport);

}  // namespace sidetrace::tracing
