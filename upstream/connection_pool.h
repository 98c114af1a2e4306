#pragma once
// Per-worker, per-cluster HTTP/1 keep-alive pool and the cluster's load balancer (clusters[].lb).
// Single-threaded: owned and used by one worker's io_context, so no locks or atomics. A connection
// is either checked out by exactly one stream or idle here; idle ones that the peer closed are
// discarded on checkout. Connections must not outlive their pool (they point into its cluster and
// per-endpoint state, including the active-request counts below).

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "upstream/cluster.h"
#include "upstream/load_balancer.h"
#include "upstream/socket_read.h"
#include "upstream/tls_client_context.h"

namespace sidetrace::upstream {

// One active request on an endpoint, counted for least_request while this is held (ends on
// end(), on destruction, or when another is moved in). Move-only; must not outlive its pool.
class ActiveRequest {
 public:
  ActiveRequest() = default;
  explicit ActiveRequest(uint32_t& count) : count_(&count) { ++count; }
  ActiveRequest(ActiveRequest&& o) noexcept : count_(std::exchange(o.count_, nullptr)) {}
  ActiveRequest& operator=(ActiveRequest&& o) noexcept {
    if (this != &o) {
      end();
      count_ = std::exchange(o.count_, nullptr);
    }
    return *this;
  }
  ~ActiveRequest() { end(); }

  void end() {
    if (count_ != nullptr) {
      --*count_;
      count_ = nullptr;
    }
  }
  bool counting() const { return count_ != nullptr; }

 private:
  uint32_t* count_ = nullptr;
};

// One upstream connection, plain or TLS, usable as an asio stream either way
// (asio::async_write(*conn, ...), conn->async_read_some(...)). Each call picks the TLS stream or
// the socket with one branch and returns the underlying operation's own result, so a plain
// connection pays no allocation, virtual call or coroutine frame for being able to do TLS.
// `socket` is always the TCP layer: cancel or close it to end whatever is in flight.
struct UpstreamConnection {
  using executor_type = boost::asio::any_io_executor;
  using lowest_layer_type = boost::asio::ip::tcp::socket;
  using TlsStream = boost::asio::ssl::stream<DrainAwareSocket&>;

  explicit UpstreamConnection(executor_type ex) : socket(std::move(ex)) {}
  ~UpstreamConnection();
  UpstreamConnection(const UpstreamConnection&) = delete;  // `tls` refers to `socket`
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  executor_type get_executor() { return socket.get_executor(); }
  lowest_layer_type& lowest_layer() { return socket; }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    if (tls) {
      return tls->async_read_some(buffers, std::forward<Token>(token));
    }
    return socket.async_read_some(buffers, std::forward<Token>(token));
  }
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    if (tls) {
      return tls->async_write_some(buffers, std::forward<Token>(token));
    }
    return socket.async_write_some(buffers, std::forward<Token>(token));
  }

  DrainAwareSocket socket;
  std::optional<TlsStream> tls;  // engaged for TLS clusters, after a successful handshake
  const Endpoint* endpoint = nullptr;
  std::string peer_address;  // the address connected to, as text (for spans; computed once)
  std::string alpn;          // the protocol the TLS handshake negotiated ("" if none or plain)
  uint32_t requests = 0;     // requests sent on it so far
  // The proxy's end (the egress process rule looks for the app's end of the connection), and
  // the bytes read on it so far (more received than read means the peer has begun to answer).
  boost::asio::ip::tcp::endpoint local;
  uint64_t bytes_read = 0;
  // Counts as one active request on `endpoint` while checked out of an http1 cluster's pool.
  ActiveRequest active;
  BreakerSlot open_slot;  // one of the cluster's max_connections, while this connection exists
  std::chrono::steady_clock::time_point created;     // connected at
  std::chrono::steady_clock::time_point idle_since;  // put back in the pool at
};

// TlsHandshake: connected, but the TLS handshake failed (certificate refused, name mismatch, no
// common protocol, not a TLS server); a handshake that runs past connect_timeout is Timeout.
// Overflow: a circuit breaker (max_connections or max_pending_requests) refused the connect.
enum class ConnectError {
  None,
  Refused,
  Timeout,
  TlsHandshake,
  OverflowConnections,
  OverflowPending
};

class ConnectionPool {
 public:
  // `lb_seed`: the random policies' generator (fixed in tests for reproducible picks). `worker`:
  // this pool's worker, whose shard of the endpoints' pick counters it writes.
  ConnectionPool(boost::asio::any_io_executor ex, const ResolvedCluster& cluster,
                 uint64_t lb_seed = randomLbSeed(), size_t worker = 0);
  ~ConnectionPool() { *alive_ = false; }

  const ResolvedCluster& cluster() const { return cluster_; }
  // The endpoint for the next request, by the cluster's lb policy (per worker, lock-free), among
  // the endpoints DNS currently returns, skipping those outlier detection has ejected or health
  // checks failed (while any is).
  const Endpoint& pick() {
    if (table_.version() != seen_version_) {
      syncEndpoints();
    }
    size_t i = lb_.pick(active_);
    if (cluster_.health || (cluster_.outliers && cluster_.outliers->ejectedCount() > 0)) {
      i = pickAroundEjected(i);
    }
    return table_[i];
  }
  // Counts the endpoint a request attempt went to (sidetrace_upstream_lb_picks_total).
  void countPick(const Endpoint& ep) { table_.countPick(worker_, index(ep)); }
  // Endpoints the balancer chooses among (present in DNS), as of the last pick.
  size_t endpointCount() const { return members_; }
  // Active health checks say no endpoint is in rotation (and the cluster is not in panic mode):
  // the request should get 503 at once rather than an endpoint known to be down.
  bool noneHealthy() const;

  // Outlier detection (clusters[].outlier_detection): the outcome of one attempt on `ep`
  // (failed: 5xx response, connect failure, reset or timeout; `connect_refused`: a failure to
  // connect that was not a timeout or TLS handshake). True when this report ejected it.
  bool reportOutcome(const Endpoint& ep, bool failed, bool connect_refused = false);
  // Outlier state is the cluster's (OutlierDetector, shared by the workers); these read it.
  bool ejected(const Endpoint& ep) const {
    return cluster_.outliers && cluster_.outliers->ejected(index(ep));
  }
  std::chrono::steady_clock::time_point ejectedUntil(const Endpoint& ep) const {
    return cluster_.outliers->ejectedUntil(index(ep));
  }
  void endEjectionForTest(const Endpoint& ep) { cluster_.outliers->clear(index(ep)); }
  size_t ejectedCount() const { return cluster_.outliers ? cluster_.outliers->ejectedCount() : 0; }

  // Active requests per endpoint on this worker, which least_request compares. An http1 cluster's
  // connection counts one from takeIdle()/connect() until release() or its destruction. An http2
  // cluster's connections carry many streams and never count: its multiplexing pool counts each
  // stream instead, with track() (RAII) or beginRequest()/endRequest() (paired, same endpoint).
  ActiveRequest track(const Endpoint& ep) { return ActiveRequest(active_[index(ep)]); }
  void beginRequest(const Endpoint& ep) { ++active_[index(ep)]; }
  void endRequest(const Endpoint& ep) { --active_[index(ep)]; }
  uint32_t activeRequests(const Endpoint& ep) const { return active_[index(ep)]; }

  // How an idle connection is checked for a close by the peer before it is reused.
  //   Always: a peek at the socket (a system call) finds a FIN or stray bytes that arrived.
  //   Lazily: only a connection idle for kUncheckedIdle or longer is peeked at. A younger one is
  //     handed out as it is, and the caller must be ready for it to be closed: Http1Call sends an
  //     idempotent request without a body once more on a fresh connection when the reused one
  //     ends before any response byte (as nginx does with its cached connections). Servers close
  //     idle keep-alive connections after seconds, so a connection reused within a second of its
  //     last response is nearly always open, and the peek would cost every request a system call.
  enum class IdleCheck { Always, Lazily };
  static constexpr std::chrono::milliseconds kUncheckedIdle{1000};
  // A live idle connection to ep, or nullptr.
  std::unique_ptr<UpstreamConnection> takeIdle(const Endpoint& ep,
                                               IdleCheck check = IdleCheck::Always);
  // New connection to ep: TCP connect and, for TLS clusters, the handshake, together within the
  // cluster's connect timeout.
  boost::asio::awaitable<std::unique_ptr<UpstreamConnection>> connect(const Endpoint& ep,
                                                                      ConnectError& err);
  // Return a connection whose last exchange ended cleanly; kept if the pool has room.
  void release(std::unique_ptr<UpstreamConnection> conn);
  size_t idleCount() const;

 private:
  struct PerEndpoint {
    const Endpoint* endpoint;
    std::vector<std::unique_ptr<UpstreamConnection>> idle;  // LIFO: warmest first
    TlsSessionSlot tls_session;                             // TLS clusters: offered on connect
  };
  size_t index(const Endpoint& ep) const { return table_.indexOf(ep); }
  PerEndpoint& slot(const Endpoint& ep) { return slots_[index(ep)]; }
  boost::asio::awaitable<bool> handshake(UpstreamConnection& conn, PerEndpoint& slot);
  size_t pickAroundEjected(size_t first);
  // Rebuilds the balancer over the endpoints now present; closes idle connections to the rest.
  void syncEndpoints();
  // Idle past clusters[].idle_timeout, or older than max_connection_duration.
  bool expired(const UpstreamConnection& c, std::chrono::steady_clock::time_point now) const;
  // Closes expired idle connections in a while (one timer per pool, armed while any are idle).
  void sweepLater();

  boost::asio::any_io_executor ex_;
  const ResolvedCluster& cluster_;
  const EndpointTable& table_;  // *cluster_.endpoints
  const size_t worker_;
  // Per-endpoint state, sized to the table's capacity up front so that it never moves.
  std::vector<PerEndpoint> slots_;  // TLS sessions point into it
  std::vector<uint32_t> active_;    // ActiveRequest points into it
  const bool count_connections_;    // http1 clusters: a checked-out connection is a request
  uint64_t seen_version_;           // the table's version lb_ was built for
  uint64_t lb_seed_;
  size_t members_ = 0;  // endpoints lb_ chooses among
  LoadBalancer lb_;
  boost::asio::steady_timer sweep_timer_;
  bool sweeping_ = false;
  // False once the pool is gone: a sweep already queued when it went must not touch it.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace sidetrace::upstream
