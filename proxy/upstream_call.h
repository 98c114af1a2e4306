#pragma once
// One upstream attempt as runExchange (exchange.h) drives it, over either protocol: an HTTP/1
// request on a pooled keep-alive connection, or a stream on a multiplexed HTTP/2 connection. The
// exchange sends the head, streams the request body while it reads the response, and may cancel
// at any time (deadline, client reset): every pending or later call then fails fast.

#include <utility>  // before asio (DEPENDENCIES.md 1)

#include <boost/asio/awaitable.hpp>
#include <memory>
#include <string>
#include <string_view>

#include "filters/stream.h"
#include "upstream/connection_pool.h"

namespace sidetrace::proxy {

class BufferPool;
class Http2ClientPool;
using UpstreamError = filters::UpstreamResult::Error;

class UpstreamCall {
 public:
  virtual ~UpstreamCall() = default;
  // Connects (or takes a pooled connection / a stream slot) and sends the head. `end_stream`: no
  // body follows. The head's Host header names the authority.
  virtual boost::asio::awaitable<UpstreamError> start(filters::RequestHead& head,
                                                      bool end_stream) = 0;
  virtual boost::asio::awaitable<bool> sendBody(std::string_view data, bool end) = 0;
  // Ends the request with trailers (HTTP/1: dropped unless chunked, where they are sent).
  virtual boost::asio::awaitable<bool> sendTrailers(const filters::HeaderMap& trailers) = 0;
  // The final response head (interim 1xx skipped); `end` when no body follows.
  virtual boost::asio::awaitable<UpstreamError> readHead(filters::ResponseHead& head,
                                                         bool& end) = 0;
  // The next piece of the response body; valid until the next call. `end` with the last piece.
  virtual boost::asio::awaitable<UpstreamError> readBody(std::string_view& data, bool& end) = 0;
  // Response trailers once the body ended (null when none).
  virtual const filters::HeaderMap* trailers() const = 0;
  // Abandon the attempt: pending and later operations fail; the connection is not reused.
  virtual void cancel() = 0;
  virtual bool http2() const = 0;

  std::string peer_address;  // the address connected to, once started
  // Why start() could not connect, when it could not (TLS handshake failures and circuit breaker
  // trips are counted apart).
  upstream::ConnectError connect_error = upstream::ConnectError::None;
};

// `head_request`: the response to a HEAD has no body whatever its framing says. The response is
// read through a `buffer_bytes` buffer taken from `buffers` (the worker's) when it is needed.
std::unique_ptr<UpstreamCall> makeHttp1Call(upstream::ConnectionPool& pool,
                                            const upstream::Endpoint& ep, bool head_request,
                                            uint32_t buffer_bytes, BufferPool& buffers);
std::unique_ptr<UpstreamCall> makeHttp2Call(Http2ClientPool& pool, const upstream::Endpoint& ep);

}  // namespace sidetrace::proxy
