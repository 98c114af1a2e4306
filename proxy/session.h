#pragma once
// One downstream connection. HTTP/2 ones (ALPN h2, or the h2c preface on a plain listener) are
// handed to Http2Server; the rest of this comment is about HTTP/1.x.
//
// One downstream HTTP/1.x connection: a coroutine that reads a request head and hands the request
// to the exchange (exchange.h: filters, attempts, both bodies streamed with back-pressure) as an
// Http1Side, which frames what the exchange sends and reads; then loops for keep-alive and
// pipelining, one request at a time in order. A 101 to an upgrade request ends in tunnel().
//
// Limits applied here: header block size (431), header timeout (408), idle timeout, and
// limits.idle_timeout for every response write to make progress. Chunked trailers pass through
// when the message is chunked on both hops (the codec bounds them like a head; appendLastChunk()
// leaves out the fields no trailer may carry); an HTTP/1.0 client gets none.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "filters/stream.h"
#include "proxy/exchange.h"
#include "proxy/flat_buffer.h"
#include "proxy/http1_codec.h"
#include "proxy/http2_server.h"
#include "proxy/idle_connections.h"
#include "proxy/request_state.h"
#include "upstream/connection_pool.h"
#include "upstream/socket_read.h"

namespace sidetrace::proxy {

class Worker;
class TlsServerContext;
struct WorkerGeneration;
struct TunnelIdle;  // session.cc: an upgraded connection's idle clock

using PlainStream = boost::asio::ip::tcp::socket;
using TlsStream = boost::asio::ssl::stream<upstream::DrainAwareSocket>;

// What a worker knows of each of its downstream connections: enough to drain it, and to close it
// once it has been idle for limits.idle_timeout (the worker's idle list).
class DownstreamConnection : public IdleEntry {
 public:
  virtual ~DownstreamConnection() = default;
  // Drain: close now if idle between requests, else close after the current response.
  virtual void closeIfIdle() = 0;
  // Drain timeout: close the connection now, whatever is in flight. Its exchanges see the socket
  // fail and end the usual way (spans, access log, metrics), so nothing is lost but the request.
  virtual void closeNow() = 0;
};

// One template for both stream types (explicitly instantiated in session.cc for PlainStream and
// TlsStream), so the per-read path has no virtual call. A TLS session handshakes first, bounded by
// limits.request_header_timeout; a failed handshake is logged at debug, counted per listener, and
// the connection closed.
template <class Stream>
class Session final : public DownstreamConnection,
                      public std::enable_shared_from_this<Session<Stream>> {
 public:
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

  // `tls` is the listener's context for a TlsStream session, null for a plain one.
  Session(Worker& worker, boost::asio::ip::tcp::socket socket, size_t listener_index,
          TlsServerContext* tls);
  ~Session() override;
  static void start(std::shared_ptr<Session> self);
  void closeIfIdle() override;
  void closeNow() override;

 private:
  enum class HeadStatus { Ok, Closed, Error, Timeout };
  enum class Sniffed { Http1, Http2, Closed, Timeout };
  static Stream makeStream(boost::asio::ip::tcp::socket socket, TlsServerContext* tls);
  void idleExpired() override;
  boost::asio::ip::tcp::socket& tcp();  // the TCP socket under the stream
  boost::asio::awaitable<void> run();
  boost::asio::awaitable<bool> handshake(const std::string& peer);
  boost::asio::awaitable<void> shutdownTls();
  // Plain listeners: reads until the first bytes are the HTTP/2 preface or cannot be (h2c by
  // prior knowledge next to HTTP/1.1 on one port).
  boost::asio::awaitable<Sniffed> sniffHttp2();
  boost::asio::awaitable<void> serveHttp2(const std::string& peer, uint16_t peer_port,
                                          uint16_t local_port);
  // The head from what is buffered, when it is there whole (the usual case: the read that woke
  // the connection brought it), with no deadline armed and no coroutine frame; nullopt when
  // readRequestHead() must wait for more (the bytes parsed so far stay parsed).
  std::optional<HeadStatus> bufferedHead(FeedResult& first);
  boost::asio::awaitable<HeadStatus> readRequestHead(FeedResult& first);
  // Reads into in_ (caller commits). With nothing buffered it first waits for the socket to turn
  // readable holding no buffer, then takes one from the worker's pool: between requests a
  // keep-alive connection holds none (BufferPool).
  boost::asio::awaitable<size_t> readIdle(boost::system::error_code& ec);
  // Between requests on a plain connection that was just busy: a read into in_ for at most
  // kWarmIdle. Its bytes are committed; false when the wait cooled down (nothing came), with
  // `ec` set when the connection failed or is to close.
  boost::asio::awaitable<bool> readWarm(boost::system::error_code& ec);
  bool tlsHasPending();
  // Bytes, EOF or an error wait on the socket now. Asked before an async_wait, which the
  // edge-triggered reactor never tries at once: readiness that came earlier would go unnoticed.
  bool socketReadable();
  boost::asio::awaitable<bool> handleRequest(FeedResult& first);
  boost::asio::awaitable<void> sendError(int status);
  // Carries bytes both ways between the client and `up` (first what each side sent past the
  // heads: in_, and `upbuf`, which then serves the upstream → client direction) until either side
  // closes; a 101 upgrade's tunnel and an egress CONNECT's.
  boost::asio::awaitable<TunnelStats> tunnel(upstream::UpstreamConnection& up, FlatBuffer& upbuf);
  // Ends a tunnel that moved no byte for `timeout` (limits.idle_timeout) by cancelling both legs.
  boost::asio::awaitable<void> watchTunnel(std::shared_ptr<TunnelIdle> idle,
                                           std::chrono::milliseconds timeout,
                                           boost::asio::ip::tcp::socket* upstream);
  // The current request's state, taken from the worker's pool on first use. Its deadline bounds
  // this connection's waits and writes while it is not idle.
  RequestState& rq();
  void releaseRequestState();
  // This connection's current request as runExchange's DownstreamSide (framing here, policy in
  // the exchange).
  struct Http1Side;
  struct Http1Side* side_ = nullptr;  // the request's side while its exchange runs (closeNow)
  upstream::UpstreamConnection* tunnel_up_ = nullptr;  // the upstream leg while tunnel() runs

  Worker& worker_;
  std::shared_ptr<WorkerGeneration> gen_;  // while a request runs: the generation it started on
  Stream socket_;
  size_t listener_index_;
  filters::OriginalDestination original_dst_;  // egress listener: where a redirect was headed
  FlatBuffer in_;
  std::unique_ptr<RequestState> rq_;  // while a request is in the connection (rq())
  bool readable_ = false;             // the idle wait just saw the socket readable
  bool idle_expired_ = false;         // the idle list ended the wait (idleExpired())
  uint64_t served_ = 0;               // requests answered on this connection
  bool quick_ = false;                // the last request came within kWarmIdle of the one before
  bool idle_ = true;
  bool close_after_ = false;
  std::unique_ptr<Http2Server<Stream>> h2_;  // while the connection speaks HTTP/2
};

extern template class Session<PlainStream>;
extern template class Session<TlsStream>;

}  // namespace sidetrace::proxy
