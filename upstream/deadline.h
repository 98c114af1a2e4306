#pragma once
// A cancellable deadline for coroutine I/O on Boost 1.74 (no awaitable operators): arm() before an
// await, and if the time passes first the watched sockets are cancelled, so the pending operation
// completes with operation_aborted and expired() tells why. Beast's tcp_stream expires_after idea.
//
// Why the handler reaches its state through a shared_ptr rather than `this`: when the timer
// expires in the same loop turn as the awaited operation completes, its handler is already queued
// with success; cancel() cannot take it back, and the coroutine that resumes first may disarm and
// destroy the Deadline (and the sockets it watches, and the whole Session around them) before the
// handler runs. The handler then finds the state switched off and touches nothing else — the
// pattern proxy/exchange.cc uses for its deadlines.

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>

namespace sidetrace::upstream {

class Deadline {
 public:
  explicit Deadline(boost::asio::any_io_executor ex)
      : timer_(std::move(ex)), state_(std::make_shared<State>()) {}
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;
  ~Deadline() {
    state_->a = nullptr;  // a handler still queued must not reach the sockets
    state_->b = nullptr;
    ++state_->gen;
    timer_.cancel();
  }

  void watch(boost::asio::ip::tcp::socket* a, boost::asio::ip::tcp::socket* b = nullptr) {
    state_->a = a;
    state_->b = b;
  }
  void arm(std::chrono::milliseconds d) {
    state_->expired = false;
    timer_.expires_after(d);
    timer_.async_wait([st = state_, gen = ++state_->gen](const boost::system::error_code& ec) {
      if (ec || gen != st->gen) {
        return;  // cancelled, re-armed, disarmed or destroyed since
      }
      st->expired = true;
      boost::system::error_code ignored;
      if (st->a != nullptr) {
        st->a->cancel(ignored);
      }
      if (st->b != nullptr) {
        st->b->cancel(ignored);
      }
    });
  }
  void disarm() {
    ++state_->gen;
    timer_.cancel();
  }
  bool expired() const { return state_->expired; }

 private:
  // What the timer's handler may touch; outlives the Deadline while a handler is queued.
  struct State {
    boost::asio::ip::tcp::socket* a = nullptr;
    boost::asio::ip::tcp::socket* b = nullptr;
    uint64_t gen = 0;  // bumped by every arm, disarm and the destructor: older handlers do nothing
    bool expired = false;
  };
  boost::asio::steady_timer timer_;
  std::shared_ptr<State> state_;
};

}  // namespace sidetrace::upstream
