#pragma once
// Downstream HTTP/2: h2 chosen by ALPN on a TLS listener, or h2c by prior knowledge on a plain one
// (the session sniffs the connection preface, so HTTP/1.1 keeps working on the same port). Each
// stream becomes a filters::Stream run by runExchange (exchange.h), the same filter chain and
// router as HTTP/1; streams of one connection run concurrently, up to
// limits.max_concurrent_streams.
//
// Limits and abuse: SETTINGS advertise max concurrent streams and the header list size
// (limits.max_request_headers_bytes, counted as fields are decoded: a bigger head is answered 431
// on that stream, bigger trailers reset it). nghttp2 itself bounds SETTINGS/PING floods (GOAWAY on
// too many queued ACKs), CONTINUATION floods and malformed frames; a client that resets most of
// the streams it opens (rapid reset, CVE-2023-44487) gets GOAWAY ENHANCE_YOUR_CALM, one that opens
// a stream it skipped (RFC 9113 §5.1.1) GOAWAY PROTOCOL_ERROR. Drain sends GOAWAY and lets the
// streams in flight finish.
//
// Time limits, as for HTTP/1: a header block must complete within limits.request_header_timeout
// (else GOAWAY); each exchange runs under its route timeout and always ends its stream (a request
// body still arriving is then cut with RST_STREAM NO_ERROR); a finished stream whose response
// moves no byte for limits.idle_timeout is reset; a connection without streams for
// limits.idle_timeout gets GOAWAY; a write the client takes nothing of for limits.idle_timeout
// closes the connection.

#include <utility>  // before asio (DEPENDENCIES.md 1)

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <string>
#include <string_view>

#include "filters/stream.h"

namespace sidetrace::proxy {

class Worker;

struct DownstreamInfo {
  size_t listener_index = 0;
  std::string peer_address;
  uint16_t peer_port = 0;
  uint16_t local_port = 0;
  bool tls = false;
  filters::OriginalDestination original_dst;  // egress listener: where a redirect was headed
};

// One HTTP/2 connection; `Io` is the session's stream (tcp::socket or ssl::stream). Owned by the
// session through a shared_ptr, which every stream's coroutine also holds.
template <class Io>
class Http2ServerConnection;

template <class Io>
class Http2Server {
 public:
  Http2Server(Worker& worker, Io& io, boost::asio::ip::tcp::socket& tcp, DownstreamInfo info);
  ~Http2Server();
  // Serves until the connection closes; `preread` are bytes already read (the preface, maybe
  // more). Returns once every stream has finished.
  boost::asio::awaitable<void> run(std::string_view preread);
  // Drain: GOAWAY now; streams in flight finish, then the connection closes.
  void drain();

 private:
  std::shared_ptr<Http2ServerConnection<Io>> conn_;
};

// The 24-byte HTTP/2 client connection preface.
inline constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

}  // namespace sidetrace::proxy
