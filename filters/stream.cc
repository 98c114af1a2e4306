#include "filters/stream.h"

namespace sidetrace::filters {

const char* errorTypeName(UpstreamResult::Error e) {
  switch (e) {
    case UpstreamResult::Error::None:
      return "";
    case UpstreamResult::Error::ConnectFailure:
      return "connect_failure";
    case UpstreamResult::Error::ConnectTimeout:
      return "connect_timeout";
    case UpstreamResult::Error::Timeout:
      return "timeout";
    case UpstreamResult::Error::Reset:
      return "reset";
    case UpstreamResult::Error::ProtocolError:
      return "protocol_error";
    case UpstreamResult::Error::Overflow:
      return "overflow";
    case UpstreamResult::Error::Unresolved:
      return "dns_failure";
  }
  return "";
}

void Stream::reset() {
  request.clear();
  start_ns = 0;
  attempt_start_ns = 0;
  end_ns = 0;
  grpc = false;
  grpc_status = -1;
  route = nullptr;
  route_index = 0;
  local_reply.reset();
  egress_host.clear();
  egress_port = 0;
  tunnel = false;
  egress_address.clear();
  traced = false;
  trace_fields_absent = false;
  remote_context.reset();
  inflight_token = 0;
  hop_socket.clear();
  if (egress_parent.source != ParentSource::None || egress_parent.link_count != 0) {
    egress_parent = ParentInference();  // egress streams only: ingress pays one branch
  }
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
