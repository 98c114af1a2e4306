#pragma once
// A cancellable deadline for coroutine I/O on Boost 1.74 (no awaitable operators): arm() before an
// await, and if the time passes first the watched sockets are cancelled, so the pending operation
// completes with operation_aborted and expired() tells why. Beast's tcp_stream expires_after idea.

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>

namespace sidetrace::upstream {

class Deadline {
 public:
  explicit Deadline(boost::asio::any_io_executor ex) : timer_(ex) {}
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;
  ~Deadline() { timer_.cancel(); }

  void watch(boost::asio::ip::tcp::socket* a, boost::asio::ip::tcp::socket* b = nullptr) {
    a_ = a;
    b_ = b;
  }
  void arm(std::chrono::milliseconds d) {
    expired_ = false;
    timer_.expires_after(d);
    timer_.async_wait([this, gen = ++gen_](const boost::system::error_code& ec) {
      if (ec || gen != gen_) {
        return;  // cancelled or re-armed; `this` may be gone when ec is set, so check it first
      }
      expired_ = true;
      boost::system::error_code ignored;
      if (a_ != nullptr) {
        a_->cancel(ignored);
      }
      if (b_ != nullptr) {
        b_->cancel(ignored);
      }
    });
  }
  void disarm() {
    ++gen_;
    timer_.cancel();
  }
  bool expired() const { return expired_; }

 private:
  boost::asio::steady_timer timer_;
  boost::asio::ip::tcp::socket* a_ = nullptr;
  boost::asio::ip::tcp::socket* b_ = nullptr;
  uint64_t gen_ = 0;
  bool expired_ = false;
};

}  // namespace sidetrace::upstream
