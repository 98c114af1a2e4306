#pragma once
// gRPC's own log lines (connection and TLS handshake errors to the collector) go to the "tracing"
// spdlog logger instead of straight to stderr, so they take the configured log format and level
// (nginx-otel routes gRPC's logs into nginx's the same way). gRPC still decides what it emits:
// errors only unless GRPC_VERBOSITY says otherwise.

namespace sidetrace::tracing {

// Idempotent; call once the "tracing" logger is registered (proxy/self_log.h), before any channel
// is created.
void routeGrpcLogsToSpdlog();

}  // namespace sidetrace::tracing
