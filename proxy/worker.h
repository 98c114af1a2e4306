#pragma once
// One worker = one thread, one io_context, its own SO_REUSEPORT listening sockets, connection
// pools, tracer, span buffer and filter chain (ARCHITECTURE §1, share nothing). The main thread
// creates workers, then talks to them only by posting to their io_context (drain, reload).

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <thread>
#include <unordered_set>
#include <vector>

#include "config/config.h"
#include "filters/filter.h"
#include "proxy/buffer_pool.h"
#include "proxy/generation.h"
#include "proxy/idle_connections.h"
#include "proxy/request_state.h"
#include "proxy/retry.h"
#include "proxy/stats.h"
#include "proxy/upstream_call.h"
#include "tracing/batch_processor.h"
#include "tracing/tracer.h"
#include "upstream/cluster.h"
#include "upstream/connection_pool.h"

namespace sidetrace::proxy {

class AccessLog;
class DownstreamConnection;
class Http2ClientPool;
class TlsServerContext;

// A generation as one worker uses it: its filter chain (bound to that config) and its connection
// pools (bound to those clusters). Worker thread only; a request holds it until it is done.
struct WorkerGeneration {
  std::shared_ptr<const Generation> gen;
  filters::FilterChain chain;
  std::vector<std::unique_ptr<upstream::ConnectionPool>> pools;  // per gen->clusters
  // Per gen->clusters: the multiplexed pool of a `protocol: http2` cluster (connecting through
  // `pools`), null for http1 clusters. Declared after `pools`, so it goes first.
  std::vector<std::unique_ptr<Http2ClientPool>> h2pools;
  std::vector<ClusterLoad> load;  // per gen->clusters (retry.h)

  WorkerGeneration();
  ~WorkerGeneration();
  const config::Config& config() const { return *gen->config; }
};

class Worker {
 public:
  // `stats_capacity` sizes the counters for every route/cluster slot a reload may add. `tls` holds
  // one entry per listener: its TLS context (owned by the server, outliving the worker), or null
  // for a plain listener. `open_connections` counts the downstream connections of every worker of
  // the process (limits.max_connections bounds it); it outlives the worker.
  Worker(size_t index, std::shared_ptr<const Generation> gen,
         tracing::BatchSpanProcessor* processor, AccessLog* access_log,
         const StatsSlots& stats_capacity, std::vector<TlsServerContext*> tls,
         std::atomic<int64_t>& open_connections);
  ~Worker();

  // Binds this worker's listening sockets (SO_REUSEPORT); throws boost::system::system_error.
  // `ports` holds one port per listener: 0 lets the kernel pick a free one and is replaced with
  // it, so the next worker binds the same port (not a second ephemeral one of its own).
  void bind(std::vector<uint16_t>& ports);
  void start();  // spawns the thread: accept loops, span flush timer
  // Stop accepting, close idle keep-alive connections; in-flight requests finish with
  // Connection: close. Thread-safe (posts).
  void beginDrain();
  // After the drain (or its timeout): closes the connections still open, lets their exchanges end
  // (spans, access log lines and metrics for requests cut by the timeout) for up to kCutGrace,
  // then stops the io_context and joins.
  void stop();
  // Thread-safe (posts): new requests use `gen` and spans go to `processor`; requests in flight
  // finish on the generation they started with. `done` runs on the worker thread once switched.
  void switchTo(std::shared_ptr<const Generation> gen, tracing::BatchSpanProcessor* processor,
                std::function<void()> done);
  // Keeps this worker's most recent sampled spans, up to max_bytes, for the admin /tracez view.
  // Call before start(); without it (or with 0) spans are not kept.
  void keepRecentSpans(size_t max_bytes);
  struct RecentSpansCopy {
    std::string spans;  // a run of encoded spans, oldest first (tracing/recent_spans.h)
    size_t bytes_held = 0;
    size_t bytes_used = 0;
    uint64_t too_large = 0;
  };
  // Thread-safe (posts): fills `out` on the worker thread, then calls done() there.
  void copyRecentSpans(std::shared_ptr<RecentSpansCopy> out, std::function<void()> done);
  int64_t activeConnections() const { return stats_.active_connections.load(); }
  const WorkerStats& stats() const { return stats_; }
  uint64_t spansStarted() const { return span_buffer_.started(); }  // any thread

  // Used by sessions (worker thread only).
  boost::asio::io_context& io() { return io_; }
  const std::shared_ptr<WorkerGeneration>& current() const { return current_; }
  AccessLog* accessLog() const { return access_log_; }
  tracing::Tracer& tracer() { return tracer_; }
  WorkerStats& mutableStats() { return stats_; }
  // A fast per-worker pseudo-random number (xorshift64*), e.g. for retry jitter.
  uint64_t random() {
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    return rng_ * 0x2545F4914F6CDD1DULL;
  }
  bool draining() const { return draining_; }
  // A session registers on construction (for drain) and unregisters on destruction, which also
  // gives back its slot in the process-wide connection count that onAccepted() took.
  void add(DownstreamConnection* s);
  void remove(DownstreamConnection* s);
  // An HTTP/1 connection waits for its next request: idleExpired() is called limits.idle_timeout
  // from now unless it leaves the wait first (endIdle). One timer serves every idle connection.
  void beginIdle(IdleEntry& c) { beginIdle(c, current_->config().limits.idle_timeout); }
  // The same after `timeout` (the short warm wait of a connection that was just busy).
  void beginIdle(IdleEntry& c, std::chrono::milliseconds timeout);
  static void endIdle(IdleEntry& c) { IdleConnections::remove(c); }
  BufferPool& buffers() { return buffers_; }
  RequestStatePool& requests() { return requests_; }
  Http1CallPool& http1Calls() { return http1_calls_; }

 private:
  std::shared_ptr<WorkerGeneration> makeWorkerGeneration(std::shared_ptr<const Generation> gen);
  void acceptLoop(size_t listener);
  void onAccepted(size_t listener, boost::asio::ip::tcp::socket s);
  // Out of descriptors (EMFILE/ENFILE) or kernel memory: the pending connection stays queued and
  // accept would fail again at once, so the listener waits a moment instead of spinning.
  void backOffAccept(size_t listener);
  void scheduleFlush();
  void stopWhenCut(std::chrono::steady_clock::time_point deadline);
  void armIdleTimer(std::chrono::steady_clock::time_point due);

  // Order matters: io_ is destroyed after the I/O objects declared below it, and before what the
  // session frames it destroys still touch (spans → tracer/buffer, stats, the session set).
  size_t index_;
  AccessLog* access_log_;
  std::unique_ptr<tracing::RecentSpans> recent_spans_;  // /tracez; span_buffer_ points to it
  tracing::WorkerSpanBuffer span_buffer_;
  tracing::Tracer tracer_;
  WorkerStats stats_;
  std::unordered_set<DownstreamConnection*> sessions_;
  IdleConnections idle_;  // sessions unlink themselves, also while io_ destroys them
  std::atomic<int64_t>& open_connections_;
  BufferPool buffers_;         // sessions' read buffers: outlives the session frames io_ destroys
  RequestStatePool requests_;  // likewise (closed before io_ goes: it holds timers)
  // Likewise. Room for the calls a burst keeps in flight (the bench's 16 h2c clients x 10
  // streams): past the pool's cap every call is built and freed again, its parser's and head's
  // strings with it (~1,000 instructions a request). A kept call holds no read buffer.
  Http1CallPool http1_calls_{buffers_, 256};
  std::vector<TlsServerContext*> tls_;  // per listener; null: plain TCP
  bool draining_ = false;
  uint64_t rng_;
  // Every socket and acceptor of this context is used on the worker's thread only (other threads
  // post to it), so the reactor needs no lock per descriptor operation (UNSAFE_IO); posting and
  // descriptor registration stay thread-safe.
  boost::asio::io_context io_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  std::vector<std::unique_ptr<boost::asio::ip::tcp::acceptor>> acceptors_;
  std::vector<std::unique_ptr<boost::asio::steady_timer>> accept_backoff_;  // per listener
  std::shared_ptr<WorkerGeneration> current_;  // holds pools: destroyed before io_
  boost::asio::steady_timer flush_timer_;
  boost::asio::steady_timer idle_timer_;  // at the earliest due of idle_
  // The expiry of idle_timer_'s wait in flight; max() when none.
  std::chrono::steady_clock::time_point idle_timer_due_ =
      std::chrono::steady_clock::time_point::max();
  std::thread thread_;
};

}  // namespace sidetrace::proxy
