#pragma once
// One active health-check probe (clusters[].health_check) of one endpoint, as the monitor thread
// runs them: a fresh connection per probe, one request, then close; the whole probe — connect, TLS
// handshake, request and answer — within health_check.timeout.
//   tcp:  the connect alone (no TLS handshake on TLS clusters, as Envoy does).
//   http: HTTP/1.1 GET health_check.path; passes on an expected status. On TLS clusters over the
//         cluster's own TLS settings, the peer verified exactly as for proxied requests.
//   grpc: grpc.health.v1.Health/Check for health_check.service_name over HTTP/2 (h2c by prior
//         knowledge, or TLS with ALPN h2); passes on HTTP 200, grpc-status 0 and SERVING.
// Probes are the proxy's own requests: no filter chain, so no trace context, span or access log.

#include <boost/asio/awaitable.hpp>

namespace sidetrace::upstream {

struct Endpoint;
struct ResolvedCluster;

// True when `ep` (one of cluster.endpoints) passed cluster.cfg->health_check, which must be set.
// Runs on any single-threaded executor; cluster and ep must outlive the returned awaitable.
boost::asio::awaitable<bool> probeEndpoint(const ResolvedCluster& cluster, const Endpoint& ep);

}  // namespace sidetrace::upstream
