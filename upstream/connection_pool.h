#pragma once
// Per-worker, per-cluster HTTP/1 keep-alive pool with round-robin endpoint choice. Single-threaded:
// owned and used by one worker's io_context, so no locks. A connection is either checked out by
// exactly one stream or idle here; idle ones that the peer closed are discarded on checkout.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "upstream/cluster.h"

namespace sidetrace::upstream {

struct UpstreamConnection {
  explicit UpstreamConnection(boost::asio::any_io_executor ex) : socket(ex) {}
  boost::asio::ip::tcp::socket socket;
  const Endpoint* endpoint = nullptr;
  std::string peer_address;  // the address connected to, as text (for spans; computed once)
  uint32_t requests = 0;     // requests sent on it so far
};

enum class ConnectError { None, Refused, Timeout };

class ConnectionPool {
 public:
  ConnectionPool(boost::asio::any_io_executor ex, const ResolvedCluster& cluster);

  const ResolvedCluster& cluster() const { return cluster_; }
  // Round-robin pick (per worker, lock-free).
  const Endpoint& pick();
  // A live idle connection to ep, or nullptr.
  std::unique_ptr<UpstreamConnection> takeIdle(const Endpoint& ep);
  // New connection to ep within the cluster's connect timeout.
  boost::asio::awaitable<std::unique_ptr<UpstreamConnection>> connect(const Endpoint& ep,
                                                                      ConnectError& err);
  // Return a connection whose last exchange ended cleanly; kept if the pool has room.
  void release(std::unique_ptr<UpstreamConnection> conn);
  size_t idleCount() const;

 private:
  struct PerEndpoint {
    const Endpoint* endpoint;
    std::vector<std::unique_ptr<UpstreamConnection>> idle;  // LIFO: warmest first
  };
  PerEndpoint& slot(const Endpoint& ep);

  boost::asio::any_io_executor ex_;
  const ResolvedCluster& cluster_;
  std::vector<PerEndpoint> slots_;
  size_t next_ = 0;
};

}  // namespace sidetrace::upstream
