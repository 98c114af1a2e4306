#include "upstream/cluster.h"

#include <boost/asio/io_context.hpp>
#include <stdexcept>

namespace sidetrace::upstream {

std::vector<ResolvedCluster> resolveClusters(const config::Config& cfg) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::resolver resolver(io);
  std::vector<ResolvedCluster> out;
  for (const auto& c : cfg.clusters) {
    ResolvedCluster rc{&c, {}};
    for (const auto& hp : c.endpoints) {
      Endpoint ep{hp.host, hp.port, {}};
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
    out.push_back(std::move(rc));
  }
  return out;
}

}  // namespace sidetrace::upstream
