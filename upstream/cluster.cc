#include "upstream/cluster.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <stdexcept>

#include "upstream/tls_client_context.h"

namespace sidetrace::upstream {

void nameEndpoint(Endpoint& ep, const config::Cluster& c) {
  boost::system::error_code ec;
  const auto ip = boost::asio::ip::make_address(ep.host, ec);
  const bool is_ip = !ec;
  if (c.tls) {
    ep.tls_sni = !c.tls->sni.empty() ? c.tls->sni : is_ip ? "" : ep.host;
    ep.tls_name = !c.tls->sni.empty() ? c.tls->sni : ep.host;
    ep.tls_name_is_ip = c.tls->sni.empty() && is_ip;
  }
  const bool named_by_sni = c.tls && !c.tls->sni.empty();
  ep.authority = named_by_sni ? c.tls->sni : is_ip && ip.is_v6() ? "[" + ep.host + "]" : ep.host;
  if (ep.port != (c.tls ? 443 : 80)) {
    ep.authority += ":" + std::to_string(ep.port);
  }
}

std::vector<ResolvedCluster> resolveClusters(const config::Config& cfg) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::resolver resolver(io);
  std::vector<ResolvedCluster> out;
  for (size_t i = 0; i < cfg.clusters.size(); ++i) {
    const config::Cluster& c = cfg.clusters[i];
    ResolvedCluster rc{
        &c, {}, nullptr, std::make_shared<CircuitBreakers>(c.circuit_breakers), nullptr};
    if (c.tls) {
      rc.tls = std::make_shared<TlsClientContext>(*c.tls, c.protocol,
                                                  "clusters[" + std::to_string(i) + "].tls");
    }
    for (const auto& hp : c.endpoints) {
      Endpoint ep{hp.host, hp.port, {}, {}, {}, {}, false, hp.weight};
      nameEndpoint(ep, c);
      boost::system::error_code ec;
      auto results = resolver.resolve(hp.host, std::to_string(hp.port), ec);
      if (ec) {
        throw std::runtime_error("cluster '" + c.name + "': cannot resolve " + hp.str() + ": " +
                                 ec.message());
      }
      for (const auto& r : results) {
        ep.addresses.push_back(r.endpoint());
      }
      rc.endpoints.push_back(std::move(ep));
    }
    if (c.health_check) {
      rc.health = std::make_shared<EndpointHealth>(rc.endpoints.size());
    }
    out.push_back(std::move(rc));
  }
  return out;
}

}  // namespace sidetrace::upstream
