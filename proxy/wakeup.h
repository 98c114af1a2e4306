#pragma once
// A one-waiter wake-up for coroutines on one strand (Boost 1.74 has no asio channels): a steady
// timer parked at "never" that notify() cancels. A notify() with nobody waiting is remembered, so
// a wake-up between checking a condition and waiting is not lost. Waiters re-check their condition
// after every wake-up: a wake-up means "look again", not "it happened".

#include <utility>  // before asio (DEPENDENCIES.md 1)

#include <boost/asio/awaitable.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace sidetrace::proxy {

class Wakeup {
 public:
  explicit Wakeup(boost::asio::any_io_executor ex)
      : timer_(ex, boost::asio::steady_timer::time_point::max()) {}
  void notify() {
    pending_ = true;
    timer_.cancel();
  }
  // Forgets a notify() nobody waited for (an object reused for new work).
  void reset() { pending_ = false; }
  boost::asio::awaitable<void> wait() {
    if (!pending_) {
      boost::system::error_code ec;
      co_await timer_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    }
    pending_ = false;
  }

 private:
  boost::asio::steady_timer timer_;
  bool pending_ = false;
};

}  // namespace sidetrace::proxy
