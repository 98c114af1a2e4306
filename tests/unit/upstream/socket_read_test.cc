// asyncReadSome: a read that tells the reactor after a short read that the socket is drained.
// What must hold is that nothing is ever lost or left waiting by it: data that arrives after a
// short read — before the next read starts, while the reactor has no read queued, or while one
// waits — is delivered; end of stream, errors, cancellation and close complete the read as
// async_read_some does. Real loopback TCP sockets and a real io_context.
#include "upstream/socket_read.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <optional>
#include <string>

namespace sidetrace::upstream {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

class SocketReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tcp::acceptor acceptor(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    client_.connect(acceptor.local_endpoint());
    acceptor.accept(server_);
  }

  struct Result {
    boost::system::error_code ec;
    size_t n = 0;
  };

  // Starts a read into buf_ (capacity `size`); the result lands in `out`.
  void startRead(std::optional<Result>& out, size_t size = 64) {
    out.reset();
    asyncReadSome(server_, asio::buffer(buf_, size),
                  [&out](boost::system::error_code ec, size_t n) {
                    out = Result{ec, n};
                  });
  }

  // Runs the loop until `out` is set or `limit` passes.
  void runUntil(const std::optional<Result>& out, std::chrono::milliseconds limit = 2000ms) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!out && std::chrono::steady_clock::now() < end) {
      io_.run_for(5ms);
      io_.restart();
    }
  }

  // One read into a buffer of `size`, run to completion: the bytes read, or a note of what came.
  std::string readOnce(size_t size = 64) {
    std::optional<Result> r;
    startRead(r, size);
    runUntil(r);
    if (!r) {
      return "<nothing within 2 s>";
    }
    return r->ec ? "<" + r->ec.message() + ">" : got(*r);
  }

  void send(const std::string& s) { asio::write(client_, asio::buffer(s)); }
  std::string got(const Result& r) const { return std::string(buf_, r.n); }

  asio::io_context io_;
  tcp::socket client_{io_};
  tcp::socket server_{io_};
  char buf_[64] = {};
};

TEST_F(SocketReadTest, ReadsWhatIsThereAndWaitsForWhatIsNot) {
  std::optional<Result> r;
  send("hello");
  EXPECT_EQ(readOnce(), "hello");

  startRead(r);  // drained: this one waits for the readiness event
  io_.poll();
  io_.restart();
  EXPECT_FALSE(r);
  send("world");
  runUntil(r);
  ASSERT_TRUE(r);
  EXPECT_EQ(got(*r), "world");
}

// The case a wrong "drained" flag would lose: data arrives after a short read and the reactor
// sees its readiness event while no read is queued; the read started afterwards must get it.
TEST_F(SocketReadTest, DataWhoseEventCameWhileNoReadWasQueuedIsDelivered) {
  std::optional<Result> r;
  send("a");
  EXPECT_EQ(readOnce(), "a");

  send("b");
  // Let the reactor harvest the edge-triggered event with no read queued.
  asio::steady_timer t(io_, 20ms);
  t.async_wait([](auto) {});
  io_.run();
  io_.restart();

  startRead(r);
  runUntil(r, 500ms);
  ASSERT_TRUE(r) << "the byte that arrived between the reads was never delivered";
  EXPECT_EQ(got(*r), "b");
}

// A full buffer is not a drained socket: the rest is read at once by the next read.
TEST_F(SocketReadTest, AFullBufferLeavesTheRestForTheNextRead) {
  send("0123456789");  // on loopback, in the receive queue once send returns
  EXPECT_EQ(readOnce(4), "0123");
  EXPECT_EQ(readOnce(4), "4567");
  EXPECT_EQ(readOnce(4), "89");
}

TEST_F(SocketReadTest, EndOfStreamAfterAShortReadIsReported) {
  std::optional<Result> r;
  send("last");
  EXPECT_EQ(readOnce(), "last");
  startRead(r);
  client_.shutdown(tcp::socket::shutdown_send);
  runUntil(r);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->ec, asio::error::eof);
  EXPECT_EQ(r->n, 0u);
}

TEST_F(SocketReadTest, AResetIsReportedAndSeenAgainByTheNextRead) {
  std::optional<Result> r;
  send("x");
  EXPECT_EQ(readOnce(), "x");
  const linger hard{1, 0};
  ASSERT_EQ(::setsockopt(client_.native_handle(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard), 0);
  client_.close();  // RST
  startRead(r);
  runUntil(r);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->ec, asio::error::connection_reset);
  startRead(r);
  runUntil(r, 500ms);
  ASSERT_TRUE(r) << "a read after the error must not wait for an event that will not come";
  EXPECT_TRUE(r->ec);
}

TEST_F(SocketReadTest, CancelAndCloseCompleteAWaitingRead) {
  std::optional<Result> r;
  send("y");
  EXPECT_EQ(readOnce(), "y");
  startRead(r);
  io_.poll();
  io_.restart();
  ASSERT_FALSE(r);
  server_.cancel();
  runUntil(r);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->ec, asio::error::operation_aborted);

  startRead(r);
  io_.poll();
  io_.restart();
  ASSERT_FALSE(r);
  server_.close();
  runUntil(r);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->ec, asio::error::operation_aborted);
}

TEST_F(SocketReadTest, AnEmptyBufferCompletesAtOnceWithNothing) {
  std::optional<Result> r;
  startRead(r, 0);
  runUntil(r);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->ec);
  EXPECT_EQ(r->n, 0u);
}

}  // namespace
}  // namespace sidetrace::upstream
