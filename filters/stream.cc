#include "filters/stream.h"

namespace sidetrace::filters {

const char* errorTypeName(UpstreamResult::Error e) {
  switch (e) {
    case UpstreamResult::Error::None:
      return "";
    case UpstreamResult::Error::ConnectFailure:
      return "connect_failure";
    case UpstreamResult::Error::Timeout:
      return "timeout";
    case UpstreamResult::Error::Reset:
      return "reset";
    case UpstreamResult::Error::ProtocolError:
      return "protocol_error";
    case UpstreamResult::Error::Overflow:
      return "overflow";
  }
  return "";
}

void Stream::reset() {
  request.clear();
  grpc = false;
  grpc_status = -1;
  route = nullptr;
  route_index = 0;
  local_reply.reset();
  traced = false;
  server_span = tracing::Span();
  client_span = tracing::Span();
  response_status = 0;
  upstream = UpstreamResult();
  upstream_attempted = false;
  error_type.clear();
  request_body_bytes = 0;
  response_body_bytes = 0;
  upstream_latency_nanos = 0;
}

}  // namespace sidetrace::filters
