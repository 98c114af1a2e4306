#include "tracing/exporter.h"

#include <cstring>
#include <stdexcept>

namespace sidetrace::tracing {

ExportResult SpanExporter::exportFramed(const FramedSpans& request) {
  joined_.clear();
  size_t size = request.head.size();
  for (const SpanBatch& b : request.batches) {
    size += b.bytes.size();
  }
  char* p = joined_.extend(size);
  auto append = [&p](std::string_view piece) {
    if (!piece.empty()) {  // memcpy from an empty view's nullptr is undefined, even for 0 bytes
      std::memcpy(p, piece.data(), piece.size());
      p += piece.size();
    }
  };
  append(request.head);
  for (const SpanBatch& b : request.batches) {
    append(b.bytes);
  }
  return exportSpans(joined_.view(), request.span_count);
}

std::unique_ptr<SpanExporter> makeExporter(const config::ExporterConfig& cfg,
                                           const HttpTransportFactory& http_transport) {
  if (cfg.protocol == "grpc") {
    return makeOtlpGrpcExporter(cfg);
  }
  if (cfg.protocol == "http/protobuf" || cfg.protocol == "http/json") {
    if (!http_transport) {
      throw std::invalid_argument("exporter protocol " + cfg.protocol + " needs an HTTP transport");
    }
    return makeOtlpHttpExporter(cfg, http_transport(cfg));
  }
  if (cfg.protocol == "console") {
    return makeConsoleExporter();
  }
  if (cfg.protocol == "none") {
    return nullptr;
  }
  throw std::invalid_argument("unknown exporter protocol: " + cfg.protocol);
}

}  // namespace sidetrace::tracing
