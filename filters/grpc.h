#pragma once
// gRPC over HTTP/2 as a proxy sees it (grpc/doc/PROTOCOL-HTTP2.md): which requests are gRPC, the
// grpc-timeout header, the status codes the proxy answers with itself, and how an HTTP status maps
// onto one (grpc/doc/http-grpc-status-mapping.md). No grpc++ here: the proxy never decodes
// messages, it only frames, times and names calls.

#include <chrono>
#include <optional>
#include <string_view>

#include "filters/http_message.h"

namespace sidetrace::filters {

enum GrpcStatus : int {
  kGrpcOk = 0,
  kGrpcCancelled = 1,
  kGrpcUnknown = 2,
  kGrpcInternal = 13,
  kGrpcDeadlineExceeded = 4,
  kGrpcUnimplemented = 12,
  kGrpcUnavailable = 14,
};

// content-type application/grpc, application/grpc+proto, application/grpc;... (not grpc-web).
bool isGrpcRequest(const RequestHead& req);
// "package.Service/Method" when `path` is "/package.Service/Method" (dotted identifiers, then an
// identifier); nullopt for any other path. Only such a path may name spans: any client can send
// content-type application/grpc, and a name per path would be unbounded cardinality.
std::optional<std::string_view> grpcMethodPath(std::string_view path);
// "100m", "5S", "1H": at most 8 digits and one unit (H M S m u n). nullopt when absent or malformed
// (a malformed value is ignored, as gRPC servers do, rather than failing the call).
std::optional<std::chrono::milliseconds> parseGrpcTimeout(std::string_view value);
// The code a gRPC client should see for an HTTP status the proxy or a non-gRPC upstream produced.
int grpcStatusForHttp(int http_status);
// grpc-status's value as an int, or -1 when absent or not a number.
int parseGrpcStatus(const HeaderMap& headers);
// SERVER spans are errors only for codes that mean the server failed (OpenTelemetry gRPC
// conventions); CLIENT spans for any code other than OK.
bool grpcServerError(int code);

}  // namespace sidetrace::filters
