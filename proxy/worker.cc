#include "proxy/worker.h"

#include <pthread.h>

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include "filters/header_policy_filter.h"
#include "filters/router_filter.h"
#include "filters/tracing_filter.h"
#include "proxy/session.h"

namespace sidetrace::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;

Worker::Worker(size_t index, const SharedState& shared)
    : index_(index),
      shared_(shared),
      span_buffer_(shared.processor),
      tracer_(shared.sampler, &span_buffer_),
      stats_(shared.routes.slots(), shared.clusters.size()),
      flush_timer_(io_) {
  const auto& cfg = *shared_.config;
  chain_.add(std::make_unique<filters::TracingFilter>(cfg.tracing, tracer_));
  chain_.add(std::make_unique<filters::HeaderPolicyFilter>());
  chain_.add(std::make_unique<filters::RouterFilter>());
  for (const auto& c : shared_.clusters) {
    pools_.push_back(std::make_unique<upstream::ConnectionPool>(io_.get_executor(), c));
  }
}

Worker::~Worker() {
  stop();
}

void Worker::bind() {
  const auto& cfg = *shared_.config;
  for (const auto& l : cfg.listeners) {
    tcp::endpoint ep(asio::ip::make_address(l.address.host), l.address.port);
    auto acc = std::make_unique<tcp::acceptor>(io_);
    acc->open(ep.protocol());
    acc->set_option(tcp::acceptor::reuse_address(true));
    int one = 1;
    ::setsockopt(acc->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    acc->bind(ep);
    acc->listen(asio::socket_base::max_listen_connections);
    acceptors_.push_back(std::move(acc));
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
      spdlog::warn("worker {}: accept failed: {}", index_, ec.message());
    } else {
      Session::start(std::make_shared<Session>(*this, std::move(s), listener));
    }
    if (!draining_) {
      acceptLoop(listener);
    }
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
    std::vector<Session*> snapshot(sessions_.begin(), sessions_.end());
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
    span_buffer_.flush();
    flush_timer_.cancel();
    io_.stop();
  });
  thread_.join();
}

}  // namespace sidetrace::proxy
