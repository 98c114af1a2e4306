#pragma once
// Clusters as the workers see them: endpoints resolved once per generation (DNS re-resolution
// belongs to the resilience work), and each TLS cluster's client context, shared read-only by all
// workers.

#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "upstream/circuit_breakers.h"
#include "upstream/health_checker.h"

namespace sidetrace::upstream {

class TlsClientContext;

struct Endpoint {
  std::string host;  // as configured
  uint16_t port = 0;
  std::vector<boost::asio::ip::tcp::endpoint> addresses;  // tried in order on connect
  // The Host header for a request that arrived without one: the cluster's TLS sni when set, else
  // host (IPv6 in brackets); ":port" unless it is the scheme's default (80, or 443 with TLS).
  std::string authority;
  // TLS clusters only. tls_sni: the SNI sent ("" for an IP endpoint without sni:). tls_name: what
  // the certificate must name, a DNS name or, when tls_name_is_ip, an IP address.
  std::string tls_sni;
  std::string tls_name;
  bool tls_name_is_ip = false;
  uint32_t weight = 1;  // its share of the load balancer's picks (clusters[].endpoints[].weight)
};

struct ResolvedCluster {
  const config::Cluster* cfg = nullptr;
  std::vector<Endpoint> endpoints;
  std::shared_ptr<TlsClientContext> tls;      // null: plain TCP
  std::shared_ptr<CircuitBreakers> breakers;  // shared by the workers; never null
  std::shared_ptr<EndpointHealth> health;     // clusters with a health_check; else null
};

// Fills ep's authority and TLS names (above) from its host and port and the cluster's settings.
void nameEndpoint(Endpoint& ep, const config::Cluster& c);

// Resolves every endpoint of every cluster (blocking; call at start and on reload) and builds
// each TLS cluster's client context. Throws std::runtime_error naming the cluster and endpoint
// that failed to resolve, or the TLS key whose file is bad (TlsClientContext).
std::vector<ResolvedCluster> resolveClusters(const config::Config& cfg);

}  // namespace sidetrace::upstream
