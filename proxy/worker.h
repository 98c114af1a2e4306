#pragma once
// One worker = one thread, one io_context, its own SO_REUSEPORT listening sockets, connection
// pools, tracer, span buffer and filter chain (ARCHITECTURE §1, share nothing). The main thread
// creates workers, then talks to them only by posting to their io_context.

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <thread>
#include <unordered_set>
#include <vector>

#include "config/config.h"
#include "filters/filter.h"
#include "proxy/stats.h"
#include "tracing/batch_processor.h"
#include "tracing/tracer.h"
#include "upstream/cluster.h"
#include "upstream/connection_pool.h"

namespace sidetrace::proxy {

class AccessLog;
class Session;

struct SharedState {  // built once by the server, read-only for workers
  config::ConfigPtr config;
  std::vector<upstream::ResolvedCluster> clusters;
  std::shared_ptr<const tracing::Sampler> sampler;
  tracing::BatchSpanProcessor* processor = nullptr;  // nullptr: exporter none
  RouteIndex routes;
  std::vector<std::vector<size_t>> route_cluster;  // [listener][route] → cluster index (or npos)
  AccessLog* access_log = nullptr;                 // nullptr: off
};

class Worker {
 public:
  Worker(size_t index, const SharedState& shared);
  ~Worker();

  // Binds this worker's listening sockets (SO_REUSEPORT); throws boost::system::system_error.
  void bind();
  void start();  // spawns the thread: accept loops, span flush timer
  // Stop accepting, close idle keep-alive connections; in-flight requests finish with
  // Connection: close. Thread-safe (posts).
  void beginDrain();
  void stop();  // stops the io_context (after drain or timeout) and joins
  int64_t activeConnections() const { return stats_.active_connections.load(); }
  const WorkerStats& stats() const { return stats_; }

  // Used by sessions (worker thread only).
  boost::asio::io_context& io() { return io_; }
  const SharedState& shared() const { return shared_; }
  const config::Config& config() const { return *shared_.config; }
  filters::FilterChain& chain() { return chain_; }
  tracing::Tracer& tracer() { return tracer_; }
  WorkerStats& mutableStats() { return stats_; }
  upstream::ConnectionPool& pool(size_t cluster) { return *pools_[cluster]; }
  bool draining() const { return draining_; }
  void add(Session* s) { sessions_.insert(s); }
  void remove(Session* s) { sessions_.erase(s); }

 private:
  void acceptLoop(size_t listener);
  void scheduleFlush();

  // Order matters: io_ is destroyed after the I/O objects declared below it, and before what the
  // session frames it destroys still touch (spans → tracer/buffer, stats, the session set).
  size_t index_;
  const SharedState& shared_;
  tracing::WorkerSpanBuffer span_buffer_;
  tracing::Tracer tracer_;
  filters::FilterChain chain_;
  WorkerStats stats_;
  std::unordered_set<Session*> sessions_;
  bool draining_ = false;
  boost::asio::io_context io_{1};
  std::vector<std::unique_ptr<boost::asio::ip::tcp::acceptor>> acceptors_;
  std::vector<std::unique_ptr<upstream::ConnectionPool>> pools_;
  boost::asio::steady_timer flush_timer_;
  std::thread thread_;
};

}  // namespace sidetrace::proxy
