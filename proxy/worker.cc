#include "proxy/worker.h"

#include <pthread.h>

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include "filters/egress_filter.h"
#include "filters/header_policy_filter.h"
#include "filters/router_filter.h"
#include "filters/tracing_filter.h"
#include "proxy/http2_client.h"
#include "proxy/session.h"
#include "upstream/coarse_clock.h"

namespace sidetrace::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// How long a listener stops accepting after running out of descriptors or kernel memory (nginx
// waits 500 ms): long enough not to burn a core, short enough that service resumes promptly.
constexpr std::chrono::milliseconds kAcceptBackoff(100);

// How long the connections cut at the drain timeout get to end their exchanges (a closed socket
// fails their reads and writes at once; an exchange waiting on its upstream notices the client is
// gone on its next event).
constexpr std::chrono::milliseconds kCutGrace(250);

// Out of file descriptors, accept fails once per connection attempt: log one line a second per
// worker thread (with the count left out) instead of one per attempt.
void warnAcceptFailed(size_t worker, const boost::system::error_code& ec) {
  thread_local std::chrono::steady_clock::time_point last{};
  thread_local uint64_t suppressed = 0;
  const auto now = std::chrono::steady_clock::now();
  if (last != std::chrono::steady_clock::time_point{} && now - last < std::chrono::seconds(1)) {
    ++suppressed;
    return;
  }
  last = now;
  spdlog::warn("worker {}: accept failed: {} ({} similar failure(s) not logged)", worker,
               ec.message(), suppressed);
  suppressed = 0;
}

}  // namespace

Worker::Worker(size_t index, std::shared_ptr<const Generation> gen,
               tracing::BatchSpanProcessor* processor, AccessLog* access_log,
               const StatsSlots& stats_capacity, std::vector<TlsServerContext*> tls,
               std::atomic<int64_t>& open_connections)
    : index_(index),
      access_log_(access_log),
      span_buffer_(processor),
      tracer_(gen->sampler, &span_buffer_),
      stats_(stats_capacity.routeCapacity(), stats_capacity.clusterCapacity(),
             gen->config->listeners.size()),
      open_connections_(open_connections),
      tls_(std::move(tls)),
      flush_timer_(io_),
      idle_timer_(io_) {
  tls_.resize(gen->config->listeners.size(), nullptr);
  tracer_.setSpanLimits(gen->config->tracing.span_limits);
  rng_ =
      0x9E3779B97F4A7C15ULL ^
      (static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) + index);
  current_ = makeWorkerGeneration(std::move(gen));
}

WorkerGeneration::WorkerGeneration() = default;
WorkerGeneration::~WorkerGeneration() = default;

std::shared_ptr<WorkerGeneration> Worker::makeWorkerGeneration(
    std::shared_ptr<const Generation> gen) {
  auto wg = std::make_shared<WorkerGeneration>();
  wg->gen = std::move(gen);
  filters::InflightRegistry* inflight = wg->gen->inflight.get();
  if (inflight != nullptr && wg->config().egress) {
    wg->chain.add(std::make_unique<filters::EgressFilter>(*wg->config().egress, *inflight));
  }
  const bool process_rule = wg->config().egress && wg->config().egress->process;
  wg->chain.add(std::make_unique<filters::TracingFilter>(wg->config().tracing, tracer_, inflight,
                                                         process_rule, &wg->config().listeners));
  wg->chain.add(std::make_unique<filters::HeaderPolicyFilter>());
  wg->chain.add(std::make_unique<filters::RouterFilter>());
  wg->load.resize(wg->gen->clusters.size());
  for (const auto& c : wg->gen->clusters) {
    wg->pools.push_back(std::make_unique<upstream::ConnectionPool>(
        io_.get_executor(), c, upstream::randomLbSeed(), index_));
    // The egress cluster has both: its HTTP/2 pool serves the app's h2c calls (egress_filter.h).
    const bool h2 = c.cfg->protocol == "http2" || c.cfg->egress;
    wg->h2pools.push_back(
        h2 ? std::make_unique<Http2ClientPool>(io_.get_executor(), *wg->pools.back()) : nullptr);
  }
  return wg;
}

void Worker::switchTo(std::shared_ptr<const Generation> gen, tracing::BatchSpanProcessor* processor,
                      std::function<void()> done) {
  asio::post(io_, [this, gen = std::move(gen), processor, done = std::move(done)]() mutable {
    // Built here, on the worker thread, because pools and their sockets belong to this io_context.
    auto next = makeWorkerGeneration(std::move(gen));
    tracer_.setSampler(next->gen->sampler);
    tracer_.setSpanLimits(next->config().tracing.span_limits);
    span_buffer_.setProcessor(processor);
    current_ = std::move(next);  // the old one lives on in the requests still using it
    done();
  });
}

void Worker::keepRecentSpans(size_t max_bytes) {
  if (max_bytes == 0) {
    return;
  }
  recent_spans_ = std::make_unique<tracing::RecentSpans>(max_bytes);
  span_buffer_.setRecent(recent_spans_.get());
}

void Worker::copyRecentSpans(std::shared_ptr<RecentSpansCopy> out, std::function<void()> done) {
  asio::post(io_, [this, out = std::move(out), done = std::move(done)] {
    if (recent_spans_) {
      recent_spans_->copyTo(out->spans);
      span_buffer_.copyPending(out->spans);          // not yet flushed: the newest
      out->bytes_held = recent_spans_->bytesHeld();  // the staging buffer is export's
      out->bytes_used = recent_spans_->bytesUsed() + span_buffer_.pendingBytes();
      out->too_large = recent_spans_->tooLarge();
    }
    done();
  });
}

Worker::~Worker() {
  stop();
  requests_.close();
}

void Worker::bind(std::vector<uint16_t>& ports) {
  const auto& cfg = current_->config();
  for (size_t i = 0; i < cfg.listeners.size(); ++i) {
    tcp::endpoint ep(asio::ip::make_address(cfg.listeners[i].address.host), ports[i]);
    auto acc = std::make_unique<tcp::acceptor>(io_);
    acc->open(ep.protocol());
    acc->set_option(tcp::acceptor::reuse_address(true));
    int one = 1;
    ::setsockopt(acc->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    acc->bind(ep);
    acc->listen(asio::socket_base::max_listen_connections);
    ports[i] = acc->local_endpoint().port();
    acceptors_.push_back(std::move(acc));
    accept_backoff_.push_back(std::make_unique<asio::steady_timer>(io_));
  }
}

void Worker::start() {
  for (size_t i = 0; i < acceptors_.size(); ++i) {
    acceptLoop(i);
  }
  scheduleFlush();
  thread_ = std::thread([this] {
    std::string name = "st-worker-" + std::to_string(index_);  // for top -H / perf
    pthread_setname_np(pthread_self(), name.c_str());
    io_.run();
    span_buffer_.flush();
  });
}

void Worker::acceptLoop(size_t listener) {
  acceptors_[listener]->async_accept([this, listener](boost::system::error_code ec, tcp::socket s) {
    if (ec) {
      if (ec == asio::error::operation_aborted || draining_) {
        return;
      }
      stats_.accept_failures.fetch_add(1, std::memory_order_relaxed);
      warnAcceptFailed(index_, ec);
      namespace errc = boost::system::errc;
      if (ec == errc::too_many_files_open || ec == errc::too_many_files_open_in_system ||
          ec == errc::no_buffer_space || ec == errc::not_enough_memory) {
        backOffAccept(listener);
        return;
      }
    } else {
      onAccepted(listener, std::move(s));
    }
    if (!draining_) {
      acceptLoop(listener);
    }
  });
}

void Worker::onAccepted(size_t listener, tcp::socket s) {
  // limits.max_connections: over it, the connection is closed at once (Envoy's overload
  // behaviour) rather than left in the backlog, so the client learns now and can go elsewhere.
  const uint32_t max = current_->config().limits.max_connections;
  if (open_connections_.fetch_add(1, std::memory_order_relaxed) >= static_cast<int64_t>(max) &&
      max > 0) {
    open_connections_.fetch_sub(1, std::memory_order_relaxed);
    stats_.connections_overflow.fetch_add(1, std::memory_order_relaxed);
    boost::system::error_code ignored;
    s.close(ignored);
    return;
  }
  if (TlsServerContext* tls = tls_[listener]) {
    Session<TlsStream>::start(
        std::make_shared<Session<TlsStream>>(*this, std::move(s), listener, tls));
  } else {
    Session<PlainStream>::start(
        std::make_shared<Session<PlainStream>>(*this, std::move(s), listener, nullptr));
  }
}

void Worker::backOffAccept(size_t listener) {
  auto& timer = *accept_backoff_[listener];
  timer.expires_after(kAcceptBackoff);
  timer.async_wait([this, listener](boost::system::error_code ec) {
    if (!ec && !draining_) {
      acceptLoop(listener);
    }
  });
}

void Worker::add(DownstreamConnection* s) {
  sessions_.insert(s);
}

void Worker::remove(DownstreamConnection* s) {
  sessions_.erase(s);
  open_connections_.fetch_sub(1, std::memory_order_relaxed);
}

void Worker::beginIdle(IdleEntry& c, std::chrono::milliseconds timeout) {
  if (idle_.add(c, timeout, upstream::coarseNow())) {
    armIdleTimer(idle_.nextDue());
  }
}

void Worker::armIdleTimer(std::chrono::steady_clock::time_point due) {
  // A wait in flight that ends no later stays: when it fires it re-arms for what is left (the
  // idle list's head moves later as connections leave it, never earlier without add() saying so).
  if (due == std::chrono::steady_clock::time_point::max() || idle_timer_due_ <= due) {
    return;
  }
  idle_timer_due_ = due;
  idle_timer_.expires_at(due);  // cancels a later wait in flight
  idle_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec == asio::error::operation_aborted) {
      return;  // superseded by an earlier due (which set idle_timer_due_), or stopping
    }
    idle_timer_due_ = std::chrono::steady_clock::time_point::max();
    idle_.expire(std::chrono::steady_clock::now());
    armIdleTimer(idle_.nextDue());
  });
}

void Worker::scheduleFlush() {
  // Hand staged spans to the processor a few times a second, so the lock is taken per batch.
  flush_timer_.expires_after(std::chrono::milliseconds(50));
  flush_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) {
      return;
    }
    span_buffer_.flush();
    scheduleFlush();
  });
}

void Worker::beginDrain() {
  asio::post(io_, [this] {
    draining_ = true;
    for (auto& a : acceptors_) {
      boost::system::error_code ec;
      a->close(ec);
    }
    for (auto& t : accept_backoff_) {
      t->cancel();
    }
    std::vector<DownstreamConnection*> snapshot(sessions_.begin(), sessions_.end());
    for (auto* s : snapshot) {
      s->closeIfIdle();
    }
  });
}

void Worker::stop() {
  if (!thread_.joinable()) {
    return;
  }
  asio::post(io_, [this] {
    std::vector<DownstreamConnection*> snapshot(sessions_.begin(), sessions_.end());
    for (auto* s : snapshot) {
      s->closeNow();
    }
    stopWhenCut(std::chrono::steady_clock::now() + kCutGrace);
  });
  thread_.join();
}

void Worker::stopWhenCut(std::chrono::steady_clock::time_point deadline) {
  if (!sessions_.empty() && std::chrono::steady_clock::now() < deadline) {
    flush_timer_.expires_after(std::chrono::milliseconds(5));
    flush_timer_.async_wait([this, deadline](boost::system::error_code) { stopWhenCut(deadline); });
    return;
  }
  span_buffer_.flush();
  flush_timer_.cancel();
  io_.stop();  // a session still here is destroyed with the context, without its span
}

}  // namespace sidetrace::proxy
