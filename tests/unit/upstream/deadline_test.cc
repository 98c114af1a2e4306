// Deadline (upstream/deadline.h): an armed deadline cancels the sockets it watches when its time
// passes, and a timer handler already queued when its owner goes away touches nothing of it.
// The second test is the lifetime case; a build with -DSIDETRACE_SANITIZE=address,undefined
// shows a handler that reads the freed Deadline as a heap-use-after-free.

#include <utility>  // before asio (Boost 1.74 with C++20)

#include "upstream/deadline.h"

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <memory>
#include <thread>

namespace sidetrace::upstream {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using std::chrono::milliseconds;

// What a Session is to its deadline: the sockets it watches and the Deadline, freed together.
struct Owner {
  explicit Owner(asio::any_io_executor ex) : socket(ex), deadline(ex) {
    socket.open(tcp::v4());
    deadline.watch(&socket);
  }
  tcp::socket socket;
  Deadline deadline;
};

TEST(DeadlineTest, ExpiryCancelsTheWatchedSocket) {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  Owner owner(io.get_executor());
  owner.socket.connect(acceptor.local_endpoint());
  char byte;
  boost::system::error_code read_ec;
  owner.socket.async_read_some(asio::buffer(&byte, 1),
                               [&](boost::system::error_code ec, size_t) { read_ec = ec; });
  owner.deadline.arm(milliseconds(10));
  io.run();
  EXPECT_TRUE(owner.deadline.expired());
  EXPECT_EQ(read_ec, asio::error::operation_aborted);
}

// The timer expires in the same loop turn as the work it guards completes, and that completion
// runs first and frees the owner (a request that ends frees its Session). The timer's handler is
// queued by then with success, which cancel() cannot take back; it must find its state switched
// off rather than read the freed Deadline or cancel the freed socket.
TEST(DeadlineTest, HandlerQueuedWhenTheOwnerIsFreedTouchesNothing) {
  for (const bool disarm_first : {false, true}) {
    asio::io_context io;
    auto owner = std::make_unique<Owner>(io.get_executor());
    owner->deadline.arm(milliseconds(1));
    std::this_thread::sleep_for(milliseconds(20));  // expired: the next turn queues its handler
    // Queued ahead of the reactor's next harvest, so it runs first in the turn that also queues
    // the timer's handler.
    asio::post(io, [&] {
      if (disarm_first) {
        owner->deadline.disarm();
      }
      owner.reset();
    });
    EXPECT_GE(io.run(), 2u) << "the timer's handler ran after the owner was freed";
    EXPECT_EQ(owner, nullptr);
  }
}

// Runs `io` until `done` or `limit` passes; returns the time it took.
template <class Pred>
milliseconds runUntil(asio::io_context& io, Pred done, milliseconds limit) {
  const auto start = std::chrono::steady_clock::now();
  while (!done() && std::chrono::steady_clock::now() - start < limit) {
    io.restart();  // run_for() stops the context when it runs out of work
    io.run_for(milliseconds(5));
  }
  return std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
}

// arm() and disarm() move the due time without resetting the timer (the wait in flight re-waits for
// the rest), so what must hold is the outcome: the latest arm() decides, disarm() wins.
TEST(DeadlineTest, LatestArmDecidesAndDisarmWins) {
  asio::io_context io;
  Owner owner(io.get_executor());
  // Re-armed later before the first due time: does not expire at the first one.
  owner.deadline.arm(milliseconds(30));
  owner.deadline.arm(milliseconds(1500));
  runUntil(
      io, [&] { return owner.deadline.expired(); }, milliseconds(300));
  EXPECT_FALSE(owner.deadline.expired()) << "expired at the superseded due time";
  runUntil(
      io, [&] { return owner.deadline.expired(); }, milliseconds(10000));
  EXPECT_TRUE(owner.deadline.expired()) << "the later due time never came";

  // Re-armed earlier than the wait in flight: expires at the earlier time.
  owner.deadline.arm(milliseconds(10000));
  owner.deadline.arm(milliseconds(20));
  const auto took = runUntil(
      io, [&] { return owner.deadline.expired(); }, milliseconds(5000));
  EXPECT_TRUE(owner.deadline.expired());
  EXPECT_LT(took, milliseconds(5000));

  // Disarmed: never expires, though its timer still fires once.
  owner.deadline.arm(milliseconds(10));
  owner.deadline.disarm();
  runUntil(
      io, [] { return false; }, milliseconds(100));
  EXPECT_FALSE(owner.deadline.expired());

  // Armed again after a disarm: expires.
  owner.deadline.arm(milliseconds(10));
  runUntil(
      io, [&] { return owner.deadline.expired(); }, milliseconds(5000));
  EXPECT_TRUE(owner.deadline.expired());
}

}  // namespace
}  // namespace sidetrace::upstream
