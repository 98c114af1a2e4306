#include "upstream/connection_pool.h"

#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "upstream/deadline.h"

namespace sidetrace::upstream {

namespace asio = boost::asio;

ConnectionPool::ConnectionPool(asio::any_io_executor ex, const ResolvedCluster& cluster)
    : ex_(std::move(ex)), cluster_(cluster) {
  for (const auto& ep : cluster_.endpoints) {
    slots_.push_back({&ep, {}});
  }
}

const Endpoint& ConnectionPool::pick() {
  const Endpoint& ep = cluster_.endpoints[next_ % cluster_.endpoints.size()];
  ++next_;
  return ep;
}

ConnectionPool::PerEndpoint& ConnectionPool::slot(const Endpoint& ep) {
  return slots_[static_cast<size_t>(&ep - cluster_.endpoints.data())];
}

namespace {

// An idle keep-alive connection the peer has closed reads as EOF (or has stray bytes, which is a
// protocol error for an idle HTTP/1 connection): either way it must not be reused.
bool stillUsable(asio::ip::tcp::socket& s) {
  char c;
  ssize_t n = ::recv(s.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

std::unique_ptr<UpstreamConnection> ConnectionPool::takeIdle(const Endpoint& ep) {
  auto& idle = slot(ep).idle;
  while (!idle.empty()) {
    auto conn = std::move(idle.back());
    idle.pop_back();
    if (stillUsable(conn->socket)) {
      return conn;
    }
  }
  return nullptr;
}

asio::awaitable<std::unique_ptr<UpstreamConnection>> ConnectionPool::connect(const Endpoint& ep,
                                                                             ConnectError& err) {
  auto conn = std::make_unique<UpstreamConnection>(ex_);
  conn->endpoint = &ep;
  Deadline deadline(ex_);
  deadline.watch(&conn->socket);
  err = ConnectError::Refused;
  for (const auto& addr : ep.addresses) {
    boost::system::error_code ec;
    conn->socket = asio::ip::tcp::socket(ex_);
    deadline.arm(cluster_.cfg->connect_timeout);
    co_await conn->socket.async_connect(addr, asio::redirect_error(asio::use_awaitable, ec));
    deadline.disarm();
    if (!ec) {
      conn->socket.set_option(asio::ip::tcp::no_delay(true), ec);
      conn->peer_address = addr.address().to_string();
      err = ConnectError::None;
      co_return conn;
    }
    if (deadline.expired()) {
      err = ConnectError::Timeout;
    }
  }
  co_return nullptr;
}

void ConnectionPool::release(std::unique_ptr<UpstreamConnection> conn) {
  auto& idle = slot(*conn->endpoint).idle;
  if (idle.size() < cluster_.cfg->max_idle_connections) {
    idle.push_back(std::move(conn));
  }
}

size_t ConnectionPool::idleCount() const {
  size_t n = 0;
  for (const auto& s : slots_) {
    n += s.idle.size();
  }
  return n;
}

}  // namespace sidetrace::upstream
