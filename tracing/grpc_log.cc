#include "tracing/grpc_log.h"

#include <grpc/support/log.h>

#include <cstring>

#include "tracing/log.h"

namespace sidetrace::tracing {

namespace {

// Called on gRPC's own threads; spdlog loggers are thread-safe.
void toSpdlog(gpr_log_func_args* args) {
  spdlog::level::level_enum level = spdlog::level::debug;
  if (args->severity == GPR_LOG_SEVERITY_ERROR) {
    level = spdlog::level::err;
  } else if (args->severity == GPR_LOG_SEVERITY_INFO) {
    level = spdlog::level::info;
  }
  const char* file = args->file != nullptr ? args->file : "";
  const char* base = std::strrchr(file, '/');
  log().log(level, "grpc: {} ({}:{})", args->message != nullptr ? args->message : "",
            base != nullptr ? base + 1 : file, args->line);
}

}  // namespace

void routeGrpcLogsToSpdlog() {
  gpr_set_log_function(toSpdlog);
}

}  // namespace sidetrace::tracing
