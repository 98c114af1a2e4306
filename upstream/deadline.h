#pragma once
// A cancellable deadline for coroutine I/O on Boost 1.74 (no awaitable operators): arm() before an
// await, and if the time passes first the watched sockets are cancelled, so the pending operation
// completes with operation_aborted and expired() tells why. Beast's tcp_stream expires_after idea.
//
// Why arm() and disarm() never cancel the timer: a request arms and disarms several deadlines
// (idle, header, route, per try), and every cancel queues a completion the loop must run. Instead
// the timer stays waiting at the earliest due time it was set to, and arm()/disarm() only move
// `due`; when the timer fires it compares: disarmed → nothing, due later → wait again for the
// rest, due now → expire. A disarmed deadline costs one spurious wake-up at most, after the time it
// had been armed for. Only arming to an earlier time than the one waited for resets the timer.
//
// Why the timer and everything its handler touches live in a shared State rather than in `this`:
// when the timer expires in the same loop turn as the awaited operation completes, its handler is
// already queued; the coroutine that resumes first may destroy the Deadline (and the sockets it
// watches, and the whole Session around them) before the handler runs. The handler then finds the
// state closed and touches nothing else.
//
// Besides sockets, a deadline may call a function on expiry (onExpire): what an exchange that does
// not own the sockets wants (cancel the upstream call, wake the downstream side). The function
// runs only while armed, so an owner that disarms before its context goes away is safe.

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>

namespace sidetrace::upstream {

class Deadline {
 public:
  explicit Deadline(boost::asio::any_io_executor ex) : state_(std::make_shared<State>(ex)) {}
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;
  ~Deadline() {
    state_->closed = true;  // a handler still queued must not reach the sockets
    state_->a = nullptr;
    state_->b = nullptr;
    state_->timer.cancel();  // frees the waiting handler (and with it the state) now
  }

  void watch(boost::asio::ip::tcp::socket* a, boost::asio::ip::tcp::socket* b = nullptr) {
    state_->a = a;
    state_->b = b;
  }
  // Called (on the timer's executor) when an armed deadline expires, after the sockets are
  // cancelled. `ctx` must stay valid while the deadline is armed; nullptr clears.
  void onExpire(void (*fn)(void*), void* ctx) {
    state_->on_expire = fn;
    state_->ctx = ctx;
  }
  // Returns the due time (now + d), for an owner that keeps it too.
  std::chrono::steady_clock::time_point arm(std::chrono::milliseconds d) {
    State& st = *state_;
    st.expired = false;
    st.due = Clock::now() + d;
    if (st.waiting && st.timer.expiry() <= st.due) {
      return st.due;  // the wait in flight ends first and waits again for the rest
    }
    st.timer.expires_at(st.due);  // cancels a later wait in flight (its handler is stale)
    wait(state_);
    return st.due;
  }
  void disarm() { state_->due = Clock::time_point::max(); }
  bool expired() const { return state_->expired; }

 private:
  using Clock = std::chrono::steady_clock;
  // What the timer's handler may touch; outlives the Deadline while a handler is queued.
  struct State {
    explicit State(const boost::asio::any_io_executor& ex) : timer(ex) {}
    boost::asio::steady_timer timer;
    boost::asio::ip::tcp::socket* a = nullptr;
    boost::asio::ip::tcp::socket* b = nullptr;
    void (*on_expire)(void*) = nullptr;
    void* ctx = nullptr;
    Clock::time_point due = Clock::time_point::max();  // max: disarmed
    uint64_t wait_gen = 0;  // of the newest wait: a handler of an older one does nothing
    bool waiting = false;   // a wait is in flight (its expiry is timer.expiry())
    bool expired = false;
    bool closed = false;  // the Deadline is gone
  };

  static void wait(const std::shared_ptr<State>& st) {
    st->waiting = true;
    st->timer.async_wait([st, gen = ++st->wait_gen](const boost::system::error_code&) {
      if (gen != st->wait_gen || st->closed) {
        return;  // superseded by an earlier-due wait, or the Deadline is gone
      }
      st->waiting = false;
      if (st->due == Clock::time_point::max()) {
        return;  // disarmed since
      }
      if (Clock::now() < st->due) {
        st->timer.expires_at(st->due);  // re-armed later since: wait for the rest
        wait(st);
        return;
      }
      st->due = Clock::time_point::max();
      st->expired = true;
      boost::system::error_code ignored;
      if (st->a != nullptr) {
        st->a->cancel(ignored);
      }
      if (st->b != nullptr) {
        st->b->cancel(ignored);
      }
      if (st->on_expire != nullptr) {
        st->on_expire(st->ctx);
      }
    });
  }

  std::shared_ptr<State> state_;
};

}  // namespace sidetrace::upstream
