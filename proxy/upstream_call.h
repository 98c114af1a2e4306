#pragma once
// One upstream attempt as runExchange (exchange.h) drives it, over either protocol: an HTTP/1
// request on a pooled keep-alive connection, or a stream on a multiplexed HTTP/2 connection. The
// exchange sends the head, streams the request body while it reads the response, and may cancel
// at any time (deadline, client reset): every pending or later call then fails fast.

#include <utility>  // before asio (DEPENDENCIES.md 1)

#include <boost/asio/awaitable.hpp>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "filters/stream.h"
#include "upstream/connection_pool.h"

namespace sidetrace::proxy {

class BufferPool;
class FlatBuffer;
class Http2ClientPool;
using UpstreamError = filters::UpstreamResult::Error;

// What an attempt reports for a connection the pool could not open (`e` is not None).
inline UpstreamError connectFailure(upstream::ConnectError e) {
  switch (e) {
    case upstream::ConnectError::Timeout:
      return UpstreamError::ConnectTimeout;
    case upstream::ConnectError::OverflowConnections:
    case upstream::ConnectError::OverflowPending:
      return UpstreamError::Overflow;
    case upstream::ConnectError::None:
    case upstream::ConnectError::Refused:
    case upstream::ConnectError::TlsHandshake:
      break;
  }
  return UpstreamError::ConnectFailure;
}

class UpstreamCall {
 public:
  virtual ~UpstreamCall() = default;
  // The attempt is over (UpstreamCallPtr's deleter): an HTTP/1 call hands its connection back to
  // the pool if both messages ended cleanly and goes back to its worker's Http1CallPool; others
  // are deleted.
  virtual void recycle() { delete this; }
  // Connects (or takes a pooled connection / a stream slot) and sends the head. `end_stream`: no
  // body follows. The head's Host header names the authority.
  virtual boost::asio::awaitable<UpstreamError> start(filters::RequestHead& head,
                                                      bool end_stream) = 0;
  // start() without a coroutine when nothing has to wait (a pooled connection whose socket takes
  // the head at once): the result. nullopt: the caller co_awaits start() with the same
  // arguments, which finishes what was begun (connects, writes the rest, retries).
  virtual std::optional<UpstreamError> startNow(filters::RequestHead& head, bool end_stream) {
    (void)head;
    (void)end_stream;
    return std::nullopt;
  }
  virtual boost::asio::awaitable<bool> sendBody(std::string_view data, bool end) = 0;
  // Ends the request with trailers (HTTP/1: dropped unless chunked, where they are sent).
  virtual boost::asio::awaitable<bool> sendTrailers(const filters::HeaderMap& trailers) = 0;
  // The final response head (interim 1xx skipped); `end` when no body follows.
  virtual boost::asio::awaitable<UpstreamError> readHead(filters::ResponseHead& head,
                                                         bool& end) = 0;
  // The next piece of the response body; valid until the next call. `end` with the last piece.
  virtual boost::asio::awaitable<UpstreamError> readBody(std::string_view& data, bool& end) = 0;
  // readBody() without a coroutine when the piece is at hand (already read and parsed); nullopt
  // when it is not, and the caller co_awaits readBody() instead.
  virtual std::optional<UpstreamError> readBodyNow(std::string_view& data, bool& end) {
    (void)data;
    (void)end;
    return std::nullopt;
  }
  // Response trailers as received, once the body ended (null when none); filtered where they
  // are written (filters::allowedInTrailers).
  virtual const filters::HeaderMap* trailers() const = 0;
  // Abandon the attempt: pending and later operations fail; the connection is not reused.
  virtual void cancel() = 0;
  virtual bool http2() const = 0;
  // After a 101 answered an upgrade request (HTTP/1 only): the connection, now the tunnel's
  // upstream leg, and in `pending` the bytes already read past the 101. Null otherwise.
  virtual upstream::UpstreamConnection* upgraded(FlatBuffer*& pending) {
    (void)pending;
    return nullptr;
  }

  std::string peer_address;  // the address connected to, once started
  // An inbound request's hop (the egress process rule): the call records its connection here
  // before the request's first byte goes out. Null otherwise; set after take(), before start().
  filters::HopSocket* hop_socket = nullptr;
  // Why start() could not connect, when it could not (TLS handshake failures and circuit breaker
  // trips are counted apart).
  upstream::ConnectError connect_error = upstream::ConnectError::None;
};

struct UpstreamCallDeleter {
  void operator()(UpstreamCall* c) const { c->recycle(); }
};
using UpstreamCallPtr = std::unique_ptr<UpstreamCall, UpstreamCallDeleter>;

struct Http1CallOptions {
  bool head_request = false;  // the response to a HEAD has no body whatever its framing says
  bool upgrade = false;       // a 101 is the final response, and the connection a tunnel after it
  uint32_t buffer_bytes = 0;  // the response is read through a buffer this big from the pool
};

// A worker's HTTP/1 calls, kept between attempts so that the response parser, the header vectors
// and the write scratch keep their capacity instead of being allocated for every request. Worker
// thread only. Outlives the exchanges io_context destruction frees (declared before it in Worker).
class Http1CallPool {
 public:
  explicit Http1CallPool(BufferPool& buffers, size_t max_free = 64)
      : buffers_(buffers), max_free_(max_free) {}
  Http1CallPool(const Http1CallPool&) = delete;
  Http1CallPool& operator=(const Http1CallPool&) = delete;
  ~Http1CallPool();

  UpstreamCallPtr take(upstream::ConnectionPool& pool, const upstream::Endpoint& ep,
                       const Http1CallOptions& options);
  // A finished call (its connection already released or dropped): kept, or freed.
  void give(UpstreamCall* call);
  size_t freeCount() const { return free_.size(); }

 private:
  BufferPool& buffers_;
  size_t max_free_;
  std::vector<UpstreamCall*> free_;
};

UpstreamCallPtr makeHttp2Call(Http2ClientPool& pool, const upstream::Endpoint& ep);

}  // namespace sidetrace::proxy
