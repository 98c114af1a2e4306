#pragma once
// The egress cluster's endpoints: one per destination (host, port, address) the app has called,
// added on first use to the cluster's append-only EndpointTable (cluster.h), so the workers'
// keep-alive pools, connect timeouts and breakers serve egress exactly as they serve a
// configured cluster. Shared by the workers of a generation; a lock per lookup, on the egress
// path only.
//
// Names are resolved by the caller (the exchange, asynchronously on its worker) when lookup()
// has no fresh answer: an answer is reused for kEgressDnsTtl, then resolved again, and a new
// address becomes a new endpoint. The table is bounded (kEgressCapacity endpoints per
// generation); past it new destinations fail until the next reload.

#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "upstream/cluster.h"

namespace sidetrace::upstream {

inline constexpr size_t kEgressCapacity = 1024;
inline constexpr std::chrono::seconds kEgressDnsTtl{5};

class EgressDestinations {
 public:
  // `cluster`: the egress cluster (config::Cluster::egress), whose table has kEgressCapacity room.
  explicit EgressDestinations(const ResolvedCluster& cluster) : cluster_(cluster) {}

  // The endpoint host:port resolved to less than kEgressDnsTtl ago, or nullptr.
  const Endpoint* lookup(std::string_view host, uint16_t port,
                         std::chrono::steady_clock::time_point now);
  // Records that host:port resolved to `address` at `now`; returns its endpoint (an existing one
  // when the address is unchanged), or nullptr when the table is full.
  const Endpoint* record(std::string_view host, uint16_t port,
                         const boost::asio::ip::tcp::endpoint& address,
                         std::chrono::steady_clock::time_point now);
  // Transparent mode: the endpoint for a connection to `address` that the app opened itself
  // (no name to resolve: `host`, from its Host header, only names the endpoint). Added on first
  // use; nullptr when the table is full.
  const Endpoint* direct(std::string_view host, const boost::asio::ip::tcp::endpoint& address);

 private:
  struct Answer {
    size_t index = 0;
    std::chrono::steady_clock::time_point at;
  };
  static std::string key(std::string_view host, uint16_t port);

  const ResolvedCluster& cluster_;
  std::mutex mu_;
  std::map<std::string, Answer, std::less<>> answers_;  // "host:port" → latest endpoint
  std::map<std::string, size_t, std::less<>> direct_;   // "host ip:port" → endpoint
};

}  // namespace sidetrace::upstream
