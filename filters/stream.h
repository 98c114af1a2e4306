#pragma once
// Per-request state that the filters share: the request head, what the connection knows about the
// peer, the router's decision, the spans, and how the exchange ended. One Stream per request; the
// proxy owns it and fills the connection and outcome fields; each filter reads and writes its own
// part. Bodies are not here: the proxy streams them between the two sockets with back-pressure.

#include <cstdint>
#include <optional>
#include <string>

#include "config/config.h"
#include "filters/http_message.h"
#include "filters/inflight_registry.h"
#include "tracing/tracer.h"

namespace sidetrace::filters {

struct LocalReply {
  int status = 0;
  std::string body;
};

// How one upstream attempt ended, as the proxy saw it.
struct UpstreamResult {
  // Overflow: a circuit breaker refused it (503 at once, never retried).
  enum class Error {
    None,
    ConnectFailure,
    // The connection (TLS handshake included) was not up within connect_timeout: nothing was
    // sent. Timeout is the request's own deadline (route or egress timeout, per-try timeout).
    ConnectTimeout,
    Timeout,
    Reset,
    ProtocolError,
    Overflow,
    Unresolved,  // egress: the destination's name did not resolve (no attempt was made)
  } error = Error::None;
  int status = 0;                // response status when a head arrived
  std::string endpoint_address;  // peer IP
  uint16_t endpoint_port = 0;
  std::string endpoint_host;  // as configured (IP or DNS name)
  bool http2 = false;         // the attempt spoke HTTP/2
  bool tls = false;           // over TLS (https)
  uint32_t resend_count = 0;  // retries before this attempt (http.request.resend_count)
  int grpc_status = -1;       // gRPC calls: grpc-status from the upstream's trailers (or head)
};

const char* errorTypeName(UpstreamResult::Error e);

// Where a connection on the egress listener was headed before an iptables REDIRECT sent it there
// (SO_ORIGINAL_DST): the app's own destination in transparent mode. port 0: not redirected.
struct OriginalDestination {
  std::string address;  // IP literal, IPv6 without brackets
  uint16_t port = 0;
  // It is an address of this host on the egress listener's port: forwarding would come back here.
  bool is_listener = false;
};

struct Stream {
  // Set by the proxy before the filters run.
  const config::Listener* listener = nullptr;
  size_t listener_index = 0;
  std::string peer_address;
  uint16_t peer_port = 0;
  uint16_t local_port = 0;
  OriginalDestination original_dst;  // egress listener only
  std::string scheme = "http";
  bool http2 = false;  // the downstream connection speaks HTTP/2
  RequestHead request;
  // Clock readings the proxy takes anyway (the tracer's clock, unix ns; 0: not taken), so spans
  // that start or end at the same instant reuse them instead of reading the clock again: the
  // request's arrival (its head began), the current attempt's start, the exchange's end (set just
  // before the last attempt's result and onComplete).
  uint64_t start_ns = 0;
  uint64_t attempt_start_ns = 0;
  uint64_t end_ns = 0;
  // gRPC call (content-type application/grpc*): spans are named and attributed as RPCs. The
  // status is what the client got, from the upstream's trailers or the proxy's own answer.
  bool grpc = false;
  int grpc_status = -1;

  // Router decision.
  const config::Route* route = nullptr;
  size_t route_index = 0;  // index inside listener->routes
  std::optional<LocalReply> local_reply;

  // Egress listener: the destination named by the absolute-form target (egress filter), whose
  // target is then reduced to origin-form.
  std::string egress_host;  // lower-case; IPv6 without brackets
  uint16_t egress_port = 0;
  // Egress CONNECT: the exchange opens a TCP tunnel to the destination instead of sending the
  // request; request/response_body_bytes count the bytes each way through it.
  bool tunnel = false;
  // Transparent mode (a redirected connection): the address to connect to, the original
  // destination's IP (no name lookup); egress_host is then the Host header's name. "" otherwise.
  std::string egress_address;

  // Tracing state (tracing filter).
  bool traced = false;
  // The request head holds no trace-context field (none came, or they were removed) and none has
  // been injected yet: the first attempt's injection need not look for one. No other filter adds
  // one (header_policy adds only forwarding fields); a retry reuses the head the first attempt
  // injected into, so the flag is cleared by the injection.
  bool trace_fields_absent = false;
  // The caller's context as extracted, between onRequest and onRouted (where the SERVER span
  // starts, once the route is known): its parent, or under `trace_context: restart` its link.
  std::optional<tracing::SpanContext> remote_context;
  tracing::Span server_span;
  tracing::Span client_span;
  // Ingress with an egress listener configured: this request's entry in the in-flight registry
  // while its attempt runs (0: none).
  uint64_t inflight_token = 0;
  // Its connection to the app, for the egress process rule (set before the first byte goes out).
  HopSocket hop_socket;
  // Egress: the outbound CLIENT span's inferred parent (no SERVER span on this side).
  ParentInference egress_parent;

  // Outcome, set by the proxy.
  int response_status = 0;  // what the client got; 0 if nothing was sent
  UpstreamResult upstream;  // last attempt
  bool upstream_attempted = false;
  std::string error_type;  // why the exchange failed ("timeout", ...), "" if it did not
  uint64_t request_body_bytes = 0;
  uint64_t response_body_bytes = 0;
  uint64_t upstream_latency_nanos = 0;  // attempt start → upstream response head; 0 if none

  void reset();
};

}  // namespace sidetrace::filters
