#include "tracing/exporter.h"

#include <stdexcept>

#include "tracing/log.h"

namespace sidetrace::tracing {

std::unique_ptr<SpanExporter> makeExporter(const config::ExporterConfig& cfg) {
  if (cfg.protocol == "grpc") {
    return makeOtlpGrpcExporter(cfg);
  }
  if (cfg.protocol == "console") {
    return makeConsoleExporter();
  }
  if (cfg.protocol == "none") {
    return nullptr;
  }
  // Config validation rejects these up front; reaching here is a startup-time error, not data path.
  if (cfg.protocol == "http/protobuf" || cfg.protocol == "http/json") {
    log().error("exporter protocol {} is not implemented yet", cfg.protocol);
    throw std::invalid_argument("exporter protocol " + cfg.protocol + " is not implemented yet");
  }
  throw std::invalid_argument("unknown exporter protocol: " + cfg.protocol);
}

}  // namespace sidetrace::tracing
