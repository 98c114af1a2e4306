#include "tracing/exporter.h"

#include <stdexcept>

namespace sidetrace::tracing {

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
