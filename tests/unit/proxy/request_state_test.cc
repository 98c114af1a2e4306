// RequestStatePool: a worker's HTTP/1 connections borrow their per-request state and give it back
// when idle. What must hold: a reused state starts clean (no request, span or buffered upstream
// bytes of the previous user), takes the limits of the config current at take(), and the pool
// keeps a bounded number.

#include <utility>  // before asio (Boost 1.74 with C++20)

#include "proxy/request_state.h"

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>

#include <cstring>
#include <string>

namespace sidetrace::proxy {
namespace {

// Feeds a request head with one header of `pad` bytes; returns the parse error.
ParseError feedHead(Http1Parser& p, size_t pad) {
  const std::string req =
      "GET /a HTTP/1.1\r\nHost: h\r\nX-Pad: " + std::string(pad, 'p') + "\r\n\r\n";
  return p.feed(req.data(), req.size()).error;
}

TEST(RequestStatePool, ReusedStateStartsCleanUnderTheCurrentLimits) {
  boost::asio::io_context io;
  RequestStatePool pool;
  config::Limits small;
  small.max_request_headers_bytes = 1024;
  config::Limits big;
  big.max_request_headers_bytes = 8192;

  auto s = pool.take(io.get_executor(), small);
  RequestState* first = s.get();
  EXPECT_EQ(feedHead(s->parser, 2000), ParseError::HeadersTooLarge);
  s->stream.request.target = "/previous";
  s->stream.response_status = 200;
  pool.give(std::move(s));
  EXPECT_EQ(pool.freeCount(), 1u);

  auto again = pool.take(io.get_executor(), big);
  EXPECT_EQ(again.get(), first) << "the kept state was not reused";
  EXPECT_EQ(again->stream.request.target, "");
  EXPECT_EQ(again->stream.response_status, 0);
  EXPECT_EQ(feedHead(again->parser, 2000), ParseError::None)
      << "the parser kept the old header limit or its failed state";
  EXPECT_TRUE(again->parser.request().headers.get("x-pad").has_value());
}

TEST(RequestStatePool, KeepsABoundedNumberAndNoneOnceClosed) {
  boost::asio::io_context io;
  RequestStatePool pool(2);
  config::Limits limits;
  auto a = pool.take(io.get_executor(), limits);
  auto b = pool.take(io.get_executor(), limits);
  auto c = pool.take(io.get_executor(), limits);
  pool.give(std::move(a));
  pool.give(std::move(b));
  pool.give(std::move(c));
  EXPECT_EQ(pool.freeCount(), 2u);
  pool.close();
  EXPECT_EQ(pool.freeCount(), 0u);
  pool.give(pool.take(io.get_executor(), limits));
  EXPECT_EQ(pool.freeCount(), 0u);
}

}  // namespace
}  // namespace sidetrace::proxy
