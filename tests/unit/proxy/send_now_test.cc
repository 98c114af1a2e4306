// sendNow: what a plain socket takes at once goes out, what it does not stays in the list for the
// async_write that follows, and a failed connection is reported, not waited on.
#include "proxy/send_now.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace sidetrace::proxy {
namespace {

using Buffers = std::vector<boost::asio::const_buffer>;

struct SocketPair {
  SocketPair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0); }
  ~SocketPair() {
    for (int f : fd) {
      if (f >= 0) {
        ::close(f);
      }
    }
  }
  std::string readAll(size_t n) {
    std::string got(n, '\0');
    size_t at = 0;
    while (at < n) {
      const ssize_t r = ::recv(fd[1], got.data() + at, n - at, 0);
      if (r <= 0) {
        break;
      }
      at += static_cast<size_t>(r);
    }
    got.resize(at);
    return got;
  }
  int fd[2] = {-1, -1};
};

std::string joined(const Buffers& bufs) {
  std::string s;
  for (const auto& b : bufs) {
    s.append(static_cast<const char*>(b.data()), b.size());
  }
  return s;
}

TEST(DropSent, DropsWholeBuffersThenTheFrontOfTheOneCutThrough) {
  const std::string a = "head", b = "body", c = "tail";
  Buffers bufs{boost::asio::buffer(a), boost::asio::buffer(b), boost::asio::buffer(c)};
  dropSent(bufs, 0);
  EXPECT_EQ(joined(bufs), "headbodytail");
  dropSent(bufs, 6);
  EXPECT_EQ(joined(bufs), "dytail");
  ASSERT_EQ(bufs.size(), 2u);
  dropSent(bufs, 2);  // exactly one buffer's end: no empty buffer left in front
  ASSERT_EQ(bufs.size(), 1u);
  EXPECT_EQ(joined(bufs), "tail");
  dropSent(bufs, 4);
  EXPECT_TRUE(bufs.empty());
}

TEST(SendNow, SendsEveryBufferInOrderAtOnce) {
  SocketPair p;
  const std::string head = "HTTP/1.1 200 OK\r\n\r\n", body = "ok";
  Buffers bufs{boost::asio::buffer(head), boost::asio::buffer(body)};
  boost::system::error_code ec;
  EXPECT_TRUE(sendNow(p.fd[0], bufs, ec));
  EXPECT_FALSE(ec);
  EXPECT_TRUE(bufs.empty());
  EXPECT_EQ(p.readAll(head.size() + body.size()), head + body);
}

TEST(SendNow, LeavesWhatTheSocketDoesNotTakeForTheAsyncWrite) {
  SocketPair p;
  const int small = 4096;
  ASSERT_EQ(::setsockopt(p.fd[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  std::string big(4 << 20, 'x');
  for (size_t i = 0; i < big.size(); ++i) {
    big[i] = static_cast<char>('a' + i % 26);
  }
  const std::string head = "head:";
  Buffers bufs{boost::asio::buffer(head), boost::asio::buffer(big)};
  boost::system::error_code ec;
  EXPECT_FALSE(sendNow(p.fd[0], bufs, ec));
  EXPECT_FALSE(ec);
  ASSERT_FALSE(bufs.empty());
  const std::string rest = joined(bufs);
  const std::string all = head + big;
  ASSERT_LT(rest.size(), all.size());
  // Compared as booleans: a failure would print megabytes.
  EXPECT_TRUE(rest == all.substr(all.size() - rest.size()));  // the unsent tail, nothing else
  // Still full: nothing taken, the list unchanged.
  EXPECT_FALSE(sendNow(p.fd[0], bufs, ec));
  EXPECT_FALSE(ec);
  EXPECT_TRUE(joined(bufs) == rest);
  EXPECT_TRUE(p.readAll(all.size() - rest.size()) == all.substr(0, all.size() - rest.size()));
}

TEST(SendNow, AFailedConnectionIsReportedWithoutASignal) {
  SocketPair p;
  ::close(p.fd[1]);
  p.fd[1] = -1;
  const std::string data = "GET / HTTP/1.1\r\n\r\n";
  Buffers bufs{boost::asio::buffer(data)};
  boost::system::error_code ec;
  EXPECT_TRUE(sendNow(p.fd[0], bufs, ec));  // nothing left to wait for: the connection failed
  EXPECT_EQ(ec.value(), EPIPE);
}

TEST(SendNow, NothingToSendIsDone) {
  SocketPair p;
  Buffers bufs;
  boost::system::error_code ec;
  EXPECT_TRUE(sendNow(p.fd[0], bufs, ec));
  EXPECT_FALSE(ec);
}

}  // namespace
}  // namespace sidetrace::proxy
