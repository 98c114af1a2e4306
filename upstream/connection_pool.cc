#include "upstream/connection_pool.h"

#include <sys/socket.h>

#include <algorithm>
#include <cassert>

#include <boost/asio/connect.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

#include "upstream/coarse_clock.h"
#include "upstream/deadline.h"

namespace sidetrace::upstream {

namespace asio = boost::asio;

UpstreamConnection::~UpstreamConnection() {
  if (tls) {
    // Closed without close_notify: the HTTP framing has ended the exchange. Marking it shut down
    // keeps OpenSSL from flagging its session (which the pool may hold for resumption) as not
    // resumable when the SSL object is freed.
    SSL_set_shutdown(tls->native_handle(), SSL_SENT_SHUTDOWN);
  }
}

namespace {

// The next seed from the last (an LCG step): rebuilt balancers keep a reproducible sequence.
uint64_t nextSeed(uint64_t seed) {
  return seed * 6364136223846793005ULL + 1442695040888963407ULL;
}

}  // namespace

ConnectionPool::ConnectionPool(asio::any_io_executor ex, const ResolvedCluster& cluster,
                               uint64_t lb_seed, size_t worker)
    : ex_(std::move(ex)),
      cluster_(cluster),
      table_(*cluster.endpoints),
      worker_(worker),
      active_(table_.capacity(), 0),
      count_connections_(cluster.cfg->protocol != "http2"),
      seen_version_(table_.version()),
      lb_seed_(lb_seed),
      lb_(LbPolicy::RoundRobin, {1}, 0),
      sweep_timer_(ex_) {
  assert(worker_ < table_.workers() && "the table has no pick counters for this worker");
  slots_.reserve(table_.capacity());
  for (size_t i = 0; i < table_.capacity(); ++i) {
    slots_.push_back({table_.data() + i, {}, {}});
  }
  syncEndpoints();
}

void ConnectionPool::syncEndpoints() {
  seen_version_ = table_.version();
  std::vector<uint32_t> weights;
  std::vector<size_t> ids;
  for (size_t i = 0, n = table_.size(); i < n; ++i) {
    if (table_.present(i)) {
      ids.push_back(i);
      weights.push_back(table_[i].weight);
      continue;
    }
    slots_[i].idle.clear();  // gone from DNS: no new requests on its connections
  }
  if (ids.empty()) {  // DNS refresh never removes the last address; a hand-built table might
    ids.push_back(0);
    weights.push_back(table_.size() > 0 ? table_[0].weight : 1);
  }
  members_ = ids.size();
  lb_ = LoadBalancer(lbPolicy(cluster_.cfg->lb), std::move(weights), lb_seed_, std::move(ids));
  lb_seed_ = nextSeed(lb_seed_);
}

bool ConnectionPool::noneHealthy() const {
  if (!cluster_.health || cluster_.cfg->health_check->panic) {
    return false;
  }
  for (size_t i = 0, n = table_.size(); i < n; ++i) {
    if (table_.present(i) && cluster_.health->healthy(i)) {
      return false;
    }
  }
  return true;
}

size_t ConnectionPool::pickAroundEjected(size_t first) {
  // The balancer picks again while the pick is ejected or unhealthy (bounded: a few picks find
  // one in rotation when any is).
  if (cluster_.outliers && cluster_.outliers->ejectedCount() > 0) {
    const auto now = std::chrono::steady_clock::now();
    for (size_t n = 0, end = table_.size(); n < end; ++n) {
      cluster_.outliers->ejected(n, now);  // every ejected endpoint gets its chance to come back
    }
  }
  auto out = [&](size_t k) {
    return (cluster_.health && !cluster_.health->healthy(k)) ||
           (cluster_.outliers && cluster_.outliers->ejected(k));
  };
  size_t i = first;
  for (size_t tries = 0; tries < 2 * members_ && out(i); ++tries) {
    i = lb_.pick(active_);
  }
  return i;  // when every pick was out (a one-endpoint cluster, panic mode), use it anyway
}

bool ConnectionPool::reportOutcome(const Endpoint& ep, bool failed, bool connect_refused) {
  if (!cluster_.outliers) {
    return false;
  }
  using Outcome = OutlierDetector::Outcome;
  const Outcome outcome = !failed           ? Outcome::Success
                          : connect_refused ? Outcome::ConnectRefused
                                            : Outcome::Failure;
  if (!cluster_.outliers->report(index(ep), outcome, members_)) {
    return false;
  }
  table_.countEjection(index(ep));
  return true;
}

namespace {

// An idle keep-alive connection the peer has closed reads as EOF (or has stray bytes, which is a
// protocol error for an idle HTTP/1 connection): either way it must not be reused. With TLS the
// peer's close_notify may already sit, unprocessed, in the TLS stream's buffer.
// `peek`: also ask the socket (a system call); else only what is known without one.
bool stillUsable(UpstreamConnection& conn, bool peek) {
  if (conn.tls) {
    SSL* ssl = conn.tls->native_handle();
    if (SSL_pending(ssl) != 0 || BIO_pending(SSL_get_rbio(ssl)) != 0) {
      return false;
    }
  }
  if (!peek) {
    return true;
  }
  char c;
  ssize_t n = ::recv(conn.socket.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

bool ConnectionPool::expired(const UpstreamConnection& c,
                             std::chrono::steady_clock::time_point now) const {
  const auto& cfg = *cluster_.cfg;
  return now - c.idle_since >= cfg.idle_timeout || (cfg.max_connection_duration.count() > 0 &&
                                                    now - c.created >= cfg.max_connection_duration);
}

void ConnectionPool::sweepLater() {
  if (sweeping_) {
    return;
  }
  sweeping_ = true;
  sweep_timer_.expires_after(std::max<std::chrono::milliseconds>(cluster_.cfg->idle_timeout / 2,
                                                                 std::chrono::milliseconds(50)));
  sweep_timer_.async_wait([this, alive = alive_](boost::system::error_code ec) {
    if (ec || !*alive) {
      return;  // the pool is going away: do not touch it
    }
    sweeping_ = false;
    const auto now = std::chrono::steady_clock::now();
    bool any = false;
    for (auto& s : slots_) {
      // Oldest first (LIFO), so expired ones are a prefix.
      auto keep = std::find_if(s.idle.begin(), s.idle.end(),
                               [&](const auto& c) { return !expired(*c, now); });
      s.idle.erase(s.idle.begin(), keep);
      any = any || !s.idle.empty();
    }
    if (any) {
      sweepLater();
    }
  });
}

std::unique_ptr<UpstreamConnection> ConnectionPool::takeIdle(const Endpoint& ep, IdleCheck check) {
  auto& idle = slot(ep).idle;
  if (!table_.present(index(ep))) {
    idle.clear();
    return nullptr;
  }
  const auto now = coarseNow();
  while (!idle.empty()) {
    auto conn = std::move(idle.back());
    idle.pop_back();
    const bool peek = check == IdleCheck::Always || now - conn->idle_since >= kUncheckedIdle;
    if (!expired(*conn, now) && stillUsable(*conn, peek)) {
      if (count_connections_) {
        conn->active = track(ep);
      }
      return conn;
    }
  }
  return nullptr;
}

asio::awaitable<std::unique_ptr<UpstreamConnection>> ConnectionPool::connect(const Endpoint& ep,
                                                                             ConnectError& err) {
  // Circuit breakers first: a refused connect costs nothing. (A cluster built by hand, as in
  // unit tests, may have none.)
  auto conn = std::make_unique<UpstreamConnection>(ex_);
  BreakerSlot pending;
  if (auto* b = cluster_.breakers.get()) {
    pending = CircuitBreakers::take(b->pending);
    if (!pending) {
      err = ConnectError::OverflowPending;
      co_return nullptr;
    }
    conn->open_slot = CircuitBreakers::take(b->connections);
    if (!conn->open_slot) {
      err = ConnectError::OverflowConnections;
      co_return nullptr;
    }
  }
  conn->endpoint = &ep;
  if (count_connections_) {
    conn->active = track(ep);  // from the start: a slow connect is load too
  }
  Deadline deadline(ex_);
  deadline.watch(&conn->socket);
  boost::system::error_code ec;
  deadline.arm(cluster_.cfg->connect_timeout);
  co_await conn->socket.async_connect(ep.address, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    deadline.disarm();
    err = deadline.expired() ? ConnectError::Timeout : ConnectError::Refused;
    co_return nullptr;
  }
  conn->socket.set_option(asio::ip::tcp::no_delay(true), ec);
  conn->peer_address = ep.address.address().to_string();
  conn->local = conn->socket.local_endpoint(ec);
  bool ok = true;
  if (cluster_.tls) {
    ok = co_await handshake(*conn, slot(ep));
  }
  deadline.disarm();
  if (!ok) {
    err = deadline.expired() ? ConnectError::Timeout : ConnectError::TlsHandshake;
    co_return nullptr;
  }
  err = ConnectError::None;
  conn->created = std::chrono::steady_clock::now();
  co_return conn;
}

asio::awaitable<bool> ConnectionPool::handshake(UpstreamConnection& conn, PerEndpoint& slot) {
  TlsClientContext& tls = *cluster_.tls;
  conn.tls.emplace(conn.socket, tls.context());
  SSL* ssl = conn.tls->native_handle();
  tls.prepare(ssl, *slot.endpoint, slot.tls_session);
  boost::system::error_code ec;
  co_await conn.tls->async_handshake(asio::ssl::stream_base::client,
                                     asio::redirect_error(asio::use_awaitable, ec));
  if (!ec) {
    const unsigned char* proto = nullptr;
    unsigned len = 0;
    SSL_get0_alpn_selected(ssl, &proto, &len);
    if (proto != nullptr) {
      conn.alpn.assign(reinterpret_cast<const char*>(proto), len);
    }
    co_return true;
  }
  slot.tls_session.session.reset();  // in case the offered session was what the server refused
  std::string reason = ec.message();
  if (const long v = SSL_get_verify_result(ssl); v != X509_V_OK) {
    reason += std::string(" (") + X509_verify_cert_error_string(v) + ")";
  }
  // Per connection, and a misconfigured cluster repeats it per request: debug only (STYLE.md 15);
  // sidetrace_upstream_tls_handshake_failures_total counts them.
  spdlog::debug("cluster '{}': TLS handshake with {} ({}:{}) failed: {}", cluster_.cfg->name,
                conn.peer_address, slot.endpoint->host, slot.endpoint->port, reason);
  conn.tls.reset();
  co_return false;
}

void ConnectionPool::release(std::unique_ptr<UpstreamConnection> conn) {
  conn->active.end();
  auto& idle = slot(*conn->endpoint).idle;
  conn->idle_since = coarseNow();
  if (idle.size() < cluster_.cfg->max_idle_connections && !expired(*conn, conn->idle_since) &&
      table_.present(index(*conn->endpoint))) {
    idle.push_back(std::move(conn));
    sweepLater();
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
