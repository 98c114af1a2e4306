#pragma once
// Upstream HTTP/2 (clusters with `protocol: http2`): per worker and cluster, a few multiplexed
// connections per endpoint, h2c by prior knowledge (ALPN h2 once the connection is TLS). A call
// takes a stream slot on a live connection that has one below the peer's
// SETTINGS_MAX_CONCURRENT_STREAMS, else opens another connection; concurrent callers share one
// connect in progress. A connection that got GOAWAY takes no new streams and is replaced; one that
// died fails its streams (the exchange answers 502 / gRPC UNAVAILABLE).

#include <utility>  // before asio (DEPENDENCIES.md 1)

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <memory>
#include <vector>

#include "filters/stream.h"
#include "upstream/connection_pool.h"

namespace sidetrace::proxy {

class Http2ClientConnection;

class Http2ClientPool {
 public:
  // `tcp_pool` connects (the cluster's endpoints, connect timeout, TLS); it outlives this pool.
  // Response heads and trailer sections are bounded (upstreamHeaderBlockLimits(): over it, the
  // stream is reset and the exchange fails with a protocol error); a connection whose peer takes
  // no bytes for the cluster's idle_timeout is closed.
  Http2ClientPool(boost::asio::any_io_executor ex, upstream::ConnectionPool& tcp_pool);
  ~Http2ClientPool();  // GOAWAY and close every connection
  Http2ClientPool(const Http2ClientPool&) = delete;
  Http2ClientPool& operator=(const Http2ClientPool&) = delete;

  // A connection to `ep` with a stream slot reserved for the caller (release it with
  // Http2ClientConnection::releaseSlot), or null with `err` set and `cerr` saying why the connect
  // failed (TlsHandshake also when ALPN did not settle on h2).
  boost::asio::awaitable<std::shared_ptr<Http2ClientConnection>> acquire(
      const upstream::Endpoint& ep, filters::UpstreamResult::Error& err,
      upstream::ConnectError& cerr);
  size_t connectionCount() const;
  const boost::asio::any_io_executor& executor() const { return ex_; }
  upstream::ConnectionPool& tcpPool() { return tcp_pool_; }

 private:
  struct Connecting;
  boost::asio::any_io_executor ex_;
  upstream::ConnectionPool& tcp_pool_;
  std::vector<std::shared_ptr<Connecting>> connecting_;  // per endpoint: a connect in progress
  std::vector<uint32_t> peer_max_;  // per endpoint: the peer's stream limit, last seen
  std::vector<std::vector<std::shared_ptr<Http2ClientConnection>>> conns_;  // per endpoint
};

}  // namespace sidetrace::proxy
