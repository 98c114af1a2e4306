#pragma once
// Clusters as the workers see them: endpoints resolved once at start (DNS re-resolution belongs to
// the resilience work), shared read-only by all workers.

#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"

namespace sidetrace::upstream {

struct Endpoint {
  std::string host;  // as configured
  uint16_t port = 0;
  std::vector<boost::asio::ip::tcp::endpoint> addresses;  // tried in order on connect
};

struct ResolvedCluster {
  const config::Cluster* cfg = nullptr;
  std::vector<Endpoint> endpoints;
};

// Resolves every endpoint of every cluster (blocking; call at start). Throws std::runtime_error
// naming the cluster and endpoint that failed to resolve.
std::vector<ResolvedCluster> resolveClusters(const config::Config& cfg);

}  // namespace sidetrace::upstream
