#include "proxy/session.h"

#include <sys/socket.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <cerrno>
#include <charconv>

#include <spdlog/spdlog.h>

#include "proxy/exchange.h"
#include "proxy/http2_server.h"
#include "proxy/original_dst.h"
#include "proxy/retry.h"
#include "proxy/send_now.h"
#include "proxy/tls_context.h"
#include "proxy/upstream_call.h"
#include "proxy/worker.h"
#include "upstream/socket_read.h"

namespace sidetrace::proxy {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using boost::system::error_code;
using filters::UpstreamResult;

namespace {

// How long a plain connection that was just busy waits for its next request with a read posted
// into its buffer (one system call when the request comes) before it gives the buffer back and
// waits on the idle list (a peek and a read when it comes). Keep-alive clients that are busy send
// their next request well within it; an idle connection holds a buffer no longer than this.
constexpr std::chrono::milliseconds kWarmIdle{100};

bool expectsContinue(const filters::RequestHead& req) {
  auto v = req.headers.get("expect");
  return v && filters::iequals(*v, "100-continue");
}

}  // namespace

template <class Stream>
Stream Session<Stream>::makeStream(asio::ip::tcp::socket socket, TlsServerContext* tls) {
  if constexpr (kTls) {
    return Stream(std::move(socket), tls->context());
  } else {
    (void)tls;
    return socket;
  }
}

template <class Stream>
asio::ip::tcp::socket& Session<Stream>::tcp() {
  if constexpr (kTls) {
    return socket_.next_layer();
  } else {
    return socket_;
  }
}

template <class Stream>
Session<Stream>::Session(Worker& worker, asio::ip::tcp::socket socket, size_t listener_index,
                         TlsServerContext* tls)
    : worker_(worker),
      socket_(makeStream(std::move(socket), tls)),
      listener_index_(listener_index),
      in_(worker.current()->config().limits.buffer_bytes, &worker.buffers()) {
  worker_.add(this);
  worker_.mutableStats().active_connections.fetch_add(1, std::memory_order_relaxed);
  worker_.mutableStats().connections_total.fetch_add(1, std::memory_order_relaxed);
}

template <class Stream>
Session<Stream>::~Session() {
  releaseRequestState();
  worker_.remove(this);
  worker_.mutableStats().active_connections.fetch_sub(1, std::memory_order_relaxed);
}

template <class Stream>
RequestState& Session<Stream>::rq() {
  if (!rq_) {
    rq_ = worker_.requests().take(tcp().get_executor(), worker_.current()->config().limits);
    rq_->deadline.watch(&tcp());
  }
  return *rq_;
}

template <class Stream>
void Session<Stream>::releaseRequestState() {
  if (rq_) {
    worker_.requests().give(std::move(rq_));
  }
}

template <class Stream>
void Session<Stream>::start(std::shared_ptr<Session> self) {
  Session* s = self.get();
  asio::co_spawn(
      s->tcp().get_executor(), [self = std::move(self)]() { return self->run(); }, asio::detached);
}

template <class Stream>
void Session<Stream>::idleExpired() {
  idle_expired_ = true;
  error_code ec;
  tcp().cancel(ec);  // the idle wait ends: the connection closes (or, warm, waits cold)
}

template <class Stream>
void Session<Stream>::closeIfIdle() {
  close_after_ = true;
  if (h2_) {
    h2_->drain();  // GOAWAY: streams in flight finish, then the connection closes
    return;
  }
  if (idle_ && in_.size() == 0) {
    error_code ec;
    tcp().cancel(ec);
  }
}

template <class Stream>
void Session<Stream>::closeNow() {
  close_after_ = true;
  error_code ec;
  tcp().close(ec);  // what waits on the client fails now
  if (side_ != nullptr && side_->active_upstream != nullptr) {
    side_->active_upstream->cancel();  // and so does what waits on the upstream
  }
  if (tunnel_up_ != nullptr) {
    tunnel_up_->socket.cancel(ec);  // a tunnel's upstream leg too
  }
}

template <class Stream>
awaitable<void> Session<Stream>::run() {
  error_code ec;
  auto remote = tcp().remote_endpoint(ec);
  auto local = tcp().local_endpoint(ec);
  tcp().set_option(asio::ip::tcp::no_delay(true), ec);
  std::string peer = remote.address().to_string();
  uint16_t peer_port = remote.port();
  uint16_t local_port = local.port();
  if (worker_.current()->config().listeners[listener_index_].egress) {
    original_dst_ = originalDestination(tcp(), local);  // transparent mode (original_dst.h)
  }

  if constexpr (kTls) {
    if (!co_await handshake(peer)) {
      tcp().close(ec);
      co_return;
    }
    const unsigned char* alpn = nullptr;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(socket_.native_handle(), &alpn, &alpn_len);
    if (alpn_len == 2 && alpn[0] == 'h' && alpn[1] == '2') {
      co_await serveHttp2(peer, peer_port, local_port);
      co_await shutdownTls();
      tcp().close(ec);
      co_return;
    }
  }
  bool sniff = !kTls;  // a plain connection's first bytes may be the h2c preface
  for (;;) {
    if (in_.size() == 0) {
      // Idle between requests (or before the first). A plain connection that is new, or whose
      // client kept sending requests in quick succession, first reads for a short while
      // (readWarm): the next request then costs one system call. Otherwise (after the first
      // request, when the client may be done for a while, and on TLS) or when nothing came in
      // time, it waits here, on the worker's idle list (limits.idle_timeout), holding no buffer,
      // no request state, no timer and none of the head reader's coroutine frames. (A warm
      // read keeps the request state of the request before, so a busy client's next request
      // takes none from the pool.)
      error_code wait_ec;
      if (!kTls && !close_after_ && (served_ == 0 || (served_ >= 2 && quick_))) {
        quick_ = co_await readWarm(wait_ec);
        if (quick_ || wait_ec) {
          if (wait_ec) {
            break;
          }
          if (rq_) {  // as if taken from the pool now: under the limits of a reload meanwhile
            const auto& limits = worker_.current()->config().limits;
            rq_->parser.setLimits(limits.max_request_headers_bytes,
                                  limits.max_request_headers_count);
          }
          continue;
        }
      }
      releaseRequestState();
      in_.release();
      if (!close_after_ && !tlsHasPending() && !socketReadable()) {
        const auto since = std::chrono::steady_clock::now();
        worker_.beginIdle(*this);
        co_await tcp().async_wait(asio::ip::tcp::socket::wait_read,
                                  asio::redirect_error(use_awaitable, wait_ec));
        Worker::endIdle(*this);
        quick_ = std::chrono::steady_clock::now() - since < kWarmIdle;
      } else {
        quick_ = true;
      }
      if (wait_ec || close_after_) {
        break;  // idle timeout, drain, or the socket failed
      }
      readable_ = true;
    }
    if (std::exchange(sniff, false)) {
      switch (co_await sniffHttp2()) {
        case Sniffed::Http2:
          co_await serveHttp2(peer, peer_port, local_port);
          tcp().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
          tcp().close(ec);
          co_return;
        case Sniffed::Closed:
          tcp().close(ec);
          co_return;
        case Sniffed::Timeout:
          co_await sendError(408);
          tcp().close(ec);
          co_return;
        case Sniffed::Http1:
          break;
      }
    }
    filters::Stream& stream = rq().stream;
    if (std::exchange(rq().used, true)) {
      stream.reset();  // one taken from the pool was reset when it was given back
    }
    // The connection's own fields: a state this connection kept has its peer and scheme already
    // (compared, not copied, per request).
    const std::string_view scheme = kTls ? "https" : "http";
    if (stream.scheme != scheme) {
      stream.scheme = scheme;
    }
    if (stream.peer_address != peer) {
      stream.peer_address = peer;
    }
    stream.peer_port = peer_port;
    stream.local_port = local_port;
    stream.original_dst = original_dst_;
    FeedResult first;
    std::optional<HeadStatus> buffered = bufferedHead(first);
    HeadStatus hs = buffered ? *buffered : co_await readRequestHead(first);
    if (hs == HeadStatus::Closed) {
      break;
    }
    if (hs == HeadStatus::Timeout) {
      co_await sendError(408);
      break;
    }
    if (hs == HeadStatus::Error) {
      co_await sendError(first.error == ParseError::HeadersTooLarge ? 431 : 400);
      break;
    }
    idle_ = false;
    // The request runs on the generation current now, to its end, whatever a reload does.
    gen_ = worker_.current();
    rq().stream.listener = &gen_->config().listeners[listener_index_];
    rq().stream.listener_index = listener_index_;
    bool keep = co_await handleRequest(first);
    ++served_;
    gen_.reset();
    idle_ = true;
    if (!keep || close_after_ || worker_.draining()) {
      break;
    }
  }
  if constexpr (kTls) {
    co_await shutdownTls();
  }
  tcp().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  tcp().close(ec);
}

template <class Stream>
bool Session<Stream>::tlsHasPending() {
  if constexpr (kTls) {
    // Decrypted bytes, or ciphertext already read off the socket into OpenSSL (the engine's read
    // BIO): the socket may never turn readable again for them.
    SSL* ssl = socket_.native_handle();
    return SSL_has_pending(ssl) == 1 || BIO_ctrl_pending(SSL_get_rbio(ssl)) > 0;
  } else {
    return false;
  }
}

template <class Stream>
bool Session<Stream>::socketReadable() {
  char c;
  const ssize_t n = ::recv(tcp().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
}

template <class Stream>
awaitable<bool> Session<Stream>::readWarm(error_code& ec) {
  // Unlike async_wait, a read is tried at once when the reactor saw the socket readable since
  // the last read drained it, so nothing that arrived meanwhile goes unnoticed without a peek.
  idle_expired_ = false;
  worker_.beginIdle(*this, std::min(kWarmIdle, worker_.current()->config().limits.idle_timeout));
  const size_t n = co_await upstream::asyncReadSome(socket_, in_.prepare(),
                                                    asio::redirect_error(use_awaitable, ec));
  Worker::endIdle(*this);
  if (!ec) {
    in_.commit(n);
    co_return true;
  }
  if (ec == asio::error::operation_aborted && idle_expired_ && !close_after_) {
    ec.clear();  // nothing came: wait cold
  }
  co_return false;
}

template <class Stream>
awaitable<size_t> Session<Stream>::readIdle(error_code& ec) {
  if (in_.size() == 0) {
    in_.release();
    // After the idle wait saw it readable, a peek would only cost a system call.
    if (!std::exchange(readable_, false) && !tlsHasPending() && !socketReadable()) {
      co_await tcp().async_wait(asio::ip::tcp::socket::wait_read,
                                asio::redirect_error(use_awaitable, ec));
      if (ec) {
        co_return 0;
      }
    }
  }
  co_return co_await upstream::asyncReadSome(socket_, in_.prepare(),
                                             asio::redirect_error(use_awaitable, ec));
}

template <class Stream>
awaitable<typename Session<Stream>::Sniffed> Session<Stream>::sniffHttp2() {
  const auto& limits = worker_.current()->config().limits;
  upstream::Deadline& deadline = rq().deadline;
  deadline.arm(limits.idle_timeout);
  bool header_clock = false;
  while (in_.size() < kHttp2Preface.size()) {
    if (!kHttp2Preface.starts_with(std::string_view(in_.data(), in_.size()))) {
      deadline.disarm();
      co_return Sniffed::Http1;
    }
    if (!header_clock && in_.size() > 0) {
      header_clock = true;  // a request has begun: the header timeout applies
      deadline.arm(limits.request_header_timeout);
    }
    if (close_after_ && in_.size() == 0) {
      deadline.disarm();
      co_return Sniffed::Closed;
    }
    error_code ec;
    size_t n = co_await readIdle(ec);
    if (ec) {
      const bool expired = deadline.expired();
      deadline.disarm();
      if (expired && header_clock) {
        worker_.mutableStats().bad_requests.fetch_add(1, std::memory_order_relaxed);
        co_return Sniffed::Timeout;
      }
      co_return Sniffed::Closed;
    }
    in_.commit(n);
  }
  deadline.disarm();
  co_return std::string_view(in_.data(), kHttp2Preface.size()) == kHttp2Preface ? Sniffed::Http2
                                                                                : Sniffed::Http1;
}

template <class Stream>
awaitable<void> Session<Stream>::serveHttp2(const std::string& peer, uint16_t peer_port,
                                            uint16_t local_port) {
  idle_ = false;
  releaseRequestState();  // the HTTP/2 server keeps its own state and timers
  h2_ = std::make_unique<Http2Server<Stream>>(
      worker_, socket_, tcp(),
      DownstreamInfo{listener_index_, peer, peer_port, local_port, kTls, original_dst_});
  if (close_after_ || worker_.draining()) {
    h2_->drain();
  }
  std::string preread(in_.data(), in_.size());
  in_.consume(in_.size());
  in_.release();  // the HTTP/2 transport reads with its own buffer
  co_await h2_->run(preread);
  h2_.reset();
}

template <class Stream>
awaitable<bool> Session<Stream>::handshake(const std::string& peer) {
  if constexpr (kTls) {
    rq().deadline.arm(worker_.current()->config().limits.request_header_timeout);
    error_code ec;
    co_await socket_.async_handshake(asio::ssl::stream_base::server,
                                     asio::redirect_error(use_awaitable, ec));
    const bool expired = rq().deadline.expired();
    rq().deadline.disarm();
    if (!ec) {
      co_return true;
    }
    if (close_after_) {
      co_return false;  // drained before the handshake finished: not the client's fault
    }
    worker_.mutableStats().tls_handshake_failures[listener_index_].fetch_add(
        1, std::memory_order_relaxed);
    // Scanners and broken clients make these common: debug only (STYLE.md 15).
    spdlog::debug("{}: TLS handshake with {} failed: {}",
                  worker_.current()->config().listeners[listener_index_].name, peer,
                  expired ? std::string("timed out") : ec.message());
    co_return false;
  } else {
    (void)peer;
    co_return true;
  }
}

template <class Stream>
awaitable<void> Session<Stream>::shutdownTls() {
  if constexpr (kTls) {
    // Send close_notify without waiting for the peer's (as nginx does): marking the peer's as
    // received makes SSL_shutdown complete once ours is written. Harmless after a fatal error.
    SSL* ssl = socket_.native_handle();
    SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_RECEIVED_SHUTDOWN);
    error_code ec;
    rq().deadline.arm(std::chrono::seconds(5));
    co_await socket_.async_shutdown(asio::redirect_error(use_awaitable, ec));
    rq().deadline.disarm();
  }
  co_return;
}

template <class Stream>
std::optional<typename Session<Stream>::HeadStatus> Session<Stream>::bufferedHead(
    FeedResult& first) {
  if (in_.size() == 0) {
    return std::nullopt;
  }
  rq().parser.feed(in_.data(), in_.size(), first);
  in_.consume(first.consumed);
  if (first.error != ParseError::None) {
    worker_.mutableStats().bad_requests.fetch_add(1, std::memory_order_relaxed);
    return HeadStatus::Error;
  }
  if (first.head_complete) {
    return HeadStatus::Ok;
  }
  return std::nullopt;  // a head in part: readRequestHead() waits for the rest
}

template <class Stream>
awaitable<typename Session<Stream>::HeadStatus> Session<Stream>::readRequestHead(
    FeedResult& first) {
  const auto& limits = worker_.current()->config().limits;
  upstream::Deadline& deadline = rq().deadline;
  bool header_clock = false;
  auto armForState = [&]() {
    if (!header_clock && (in_.size() > 0 || rq().parser.bytesSeen())) {
      header_clock = true;
      deadline.arm(limits.request_header_timeout);
    }
  };
  deadline.arm(limits.idle_timeout);
  armForState();
  for (;;) {
    if (in_.size() > 0) {
      FeedResult r = rq().parser.feed(in_.data(), in_.size());
      in_.consume(r.consumed);
      if (r.error != ParseError::None) {
        deadline.disarm();
        worker_.mutableStats().bad_requests.fetch_add(1, std::memory_order_relaxed);
        first = std::move(r);
        co_return HeadStatus::Error;
      }
      if (r.head_complete) {
        deadline.disarm();
        first = std::move(r);
        co_return HeadStatus::Ok;
      }
      armForState();
    }
    if (close_after_ && !rq().parser.bytesSeen()) {
      deadline.disarm();
      co_return HeadStatus::Closed;
    }
    error_code ec;
    size_t n = co_await readIdle(ec);
    if (ec) {
      bool expired = deadline.expired();
      deadline.disarm();
      if (expired && header_clock) {
        worker_.mutableStats().bad_requests.fetch_add(1, std::memory_order_relaxed);
        co_return HeadStatus::Timeout;
      }
      co_return HeadStatus::Closed;
    }
    in_.commit(n);
  }
}

template <class Stream>
awaitable<void> Session<Stream>::sendError(int status) {
  spdlog::debug("bad request from {}: answered {}", rq().stream.peer_address, status);
  std::string msg = std::string(reasonPhrase(status)) + "\n";
  rq().out.clear();
  rq().out += "HTTP/1.1 ";
  rq().out += std::to_string(status);
  rq().out += ' ';
  rq().out += reasonPhrase(status);
  rq().out += "\r\nContent-Type: text/plain\r\nContent-Length: ";
  rq().out += std::to_string(msg.size());
  rq().out += "\r\nConnection: close\r\n\r\n";
  rq().out += msg;
  error_code ec;
  rq().deadline.arm(std::chrono::seconds(5));
  co_await asio::async_write(socket_, asio::buffer(rq().out),
                             asio::redirect_error(use_awaitable, ec));
  rq().deadline.disarm();
}

// This connection's current request as the exchange sees it. The response head waits for the first
// body bytes and goes out in the same write; every write has limits.idle_timeout to make progress
// (a client that stops reading cannot hold the connection: nginx's send_timeout).
template <class Stream>
struct Session<Stream>::Http1Side final : DownstreamSide {
  Http1Side(Session& session, FeedResult& first, bool client_keep_alive)
      : s(session),
        pieces(std::move(first.body)),
        request_done(first.message_complete),
        expect_continue(expectsContinue(session.rq().stream.request)),
        keep(client_keep_alive) {}

  awaitable<bool> readBody(std::string_view& data, bool& end) override {
    for (;;) {
      if (interrupted || gone()) {
        co_return false;
      }
      if (piece < pieces.size()) {
        data = pieces[piece++];
        end = request_done && piece == pieces.size();
        co_return true;
      }
      if (request_done) {
        data = {};
        end = true;
        co_return true;
      }
      error_code ec;
      if (expect_continue) {
        expect_continue = false;
        static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
        co_await asio::async_write(s.socket_, asio::buffer(k100),
                                   asio::redirect_error(use_awaitable, ec));
      }
      size_t n = 0;
      if (!ec) {
        n = co_await upstream::asyncReadSome(s.socket_, s.in_.prepare(),
                                             asio::redirect_error(use_awaitable, ec));
      }
      if (ec) {
        failed = !interrupted;  // the exchange's own cancel is not the client's doing
        co_return false;
      }
      s.in_.commit(n);
      FeedResult r = s.rq().parser.feed(s.in_.data(), s.in_.size());
      s.in_.consume(r.consumed);
      if (r.error != ParseError::None) {
        bad_status = r.error == ParseError::HeadersTooLarge ? 431 : 400;
        co_return false;
      }
      request_done = r.message_complete;
      pieces = std::move(r.body);
      piece = 0;
    }
  }
  void consumeBody(size_t) override {}  // TCP is the flow control
  // A chunked request's trailers, once it ended.
  const filters::HeaderMap* requestTrailers() override {
    if (!request_done || s.rq().parser.trailers().size() == 0) {
      return nullptr;
    }
    return &s.rq().parser.trailers();
  }
  bool bodyComplete() const override { return request_done; }

  std::optional<bool> sendHeadNow(filters::ResponseHead& head, bool end) override {
    const auto& req = s.rq().stream.request;
    // A 101, or a 2xx to CONNECT (RFC 9110 §9.3.6): no framing, the connection is a tunnel now.
    const bool switching =
        head.status == 101 || (req.method == "CONNECT" && head.status >= 200 && head.status < 300);
    head_only = req.method == "HEAD";
    const bool no_body_status = head.status == 204 || head.status == 304;
    const bool no_body = end || head_only || no_body_status || switching;
    const bool has_length = head.headers.get("content-length").has_value();
    // A request whose body is still arriving may never be read to its end; an upgrade (accepted:
    // the connection is the tunnel's; declined: the request parser is in tunnel mode) ends it.
    keep = keep && request_done && !upgrade && !s.worker_.draining() && !s.close_after_;
    chunk_out = !no_body && !has_length && req.version_minor >= 1;
    if (!no_body && !has_length && !chunk_out) {
      keep = false;  // HTTP/1.0 client: the body ends with the connection
    }
    // A 101 keeps Connection: upgrade and Upgrade as removeHopByHop left them; neither it nor a
    // CONNECT's 2xx has framing.
    if (!switching) {
      if (chunk_out) {
        head.headers.add("Transfer-Encoding", "chunked");
      } else if (end && !has_length && !head_only && !no_body_status) {
        head.headers.add("Content-Length", "0");
      }
      if (!keep) {
        head.headers.set("Connection", "close");
      } else if (req.version_minor == 0) {
        head.headers.set("Connection", "keep-alive");
      }
    }
    s.rq().out.clear();
    appendResponseHead(s.rq().out, head);
    s.rq().out += "\r\n";
    head_pending = true;
    if (!no_body) {
      return !failed;  // out with the first body bytes
    }
    s.rq().gather.build(takeHead(), {}, false, false);
    return writeOrBegin();
  }

  awaitable<bool> sendHead(filters::ResponseHead& head, bool end) override {
    if (!write_begun) {
      if (auto done = sendHeadNow(head, end)) {
        co_return *done;
      }
    }
    write_begun = false;
    co_return afterWrite(co_await write());
  }

  std::optional<bool> sendBodyNow(std::string_view data, bool end) override {
    if (head_only) {
      return !failed;
    }
    s.rq().gather.build(takeHead(), std::span(&data, 1), chunk_out, end);
    if (s.rq().gather.bufs.empty()) {
      return !failed;
    }
    return writeOrBegin();
  }

  awaitable<bool> sendBody(std::string_view data, bool end) override {
    if (!write_begun) {
      if (auto done = sendBodyNow(data, end)) {
        co_return *done;
      }
    }
    write_begun = false;
    co_return afterWrite(co_await write());
  }

  awaitable<bool> sendTrailers(filters::HeaderMap& trailers) override {
    s.rq().gather.build(takeHead(), {}, chunk_out && !head_only, true, &trailers);
    if (s.rq().gather.bufs.empty()) {
      co_return !failed;
    }
    if (failed || writeNow()) {
      co_return !failed;
    }
    co_return afterWrite(co_await write());
  }

  void reset() override {
    keep = false;  // a cut-short response: closing the connection is how HTTP/1 says so
  }
  void interrupt() override {
    interrupted = true;
    error_code ec;
    s.tcp().cancel(ec);
  }
  bool gone() const override { return failed || bad_status != 0; }
  int requestError() const override { return bad_status; }
  ExchangeStorage& storage() override { return s.rq().exchange; }

  awaitable<void> tunnel(UpstreamCall& up) override {
    FlatBuffer* pending = nullptr;
    if (upstream::UpstreamConnection* conn = up.upgraded(pending)) {
      co_await s.tunnel(*conn, *pending);
    }
  }
  awaitable<TunnelStats> connectTunnel(upstream::UpstreamConnection& conn) override {
    FlatBuffer from_upstream(s.gen_->config().limits.buffer_bytes, &s.worker_.buffers());
    co_return co_await s.tunnel(conn, from_upstream);
  }

  // Whether the connection can carry the next request.
  bool reusable() const { return keep && !failed && !interrupted && request_done; }

 private:
  std::string_view takeHead() {
    return std::exchange(head_pending, false) ? std::string_view(s.rq().out) : std::string_view();
  }

  // gather.bufs out at once (writeNow()): the result; else nullopt with write_begun set, and the
  // rest for the coroutine's write().
  std::optional<bool> writeOrBegin() {
    if (failed || writeNow()) {
      return !failed;
    }
    write_begun = true;
    return std::nullopt;
  }
  // Writes gather.bufs at once if the socket takes them whole (send_now.h). True when nothing is
  // left to write: all went out, or the connection failed (`failed` set); false: the rest is for
  // `afterWrite(co_await write())`.
  bool writeNow() {
    if constexpr (kTls) {
      return false;
    } else {
      if (!sendNow(s.socket_.native_handle(), s.rq().gather.bufs, write_ec)) {
        return false;
      }
      failed = static_cast<bool>(write_ec);
      return true;
    }
  }
  // Writes gather.bufs, after writeNow() left some: `afterWrite(co_await write())`. Not a
  // coroutine of its own: on the path of every response, a frame per write would cost an
  // allocation.
  awaitable<size_t> write() {
    s.rq().deadline.arm(s.gen_->config().limits.idle_timeout);
    return asio::async_write(s.socket_, s.rq().gather.bufs,
                             asio::redirect_error(use_awaitable, write_ec));
  }
  bool afterWrite(size_t) {
    s.rq().deadline.disarm();
    failed = static_cast<bool>(write_ec);
    return !failed;
  }

  Session& s;
  std::vector<std::string_view> pieces;  // request body bytes parsed, not yet handed out
  size_t piece = 0;
  int bad_status = 0;  // the body did not parse: 400 or 431
  bool request_done;
  bool expect_continue;
  bool keep;
  bool chunk_out = false;
  bool head_only = false;
  bool head_pending = false;  // rq().out holds a head that has not been written
  // sendHeadNow() / sendBodyNow() left part of gather.bufs for sendHead() / sendBody() to write.
  bool write_begun = false;
  bool failed = false;  // a read or write on the client's connection failed
  bool interrupted = false;
  error_code write_ec;
};

template <class Stream>
awaitable<bool> Session<Stream>::handleRequest(FeedResult& first) {
  const uint64_t start_ns = worker_.tracer().now();
  auto& req = rq().stream.request;
  swap(req, rq().parser.request());
  // The egress filter reads the absolute form itself.
  if (!rq().stream.listener->egress && !filters::toOriginForm(req)) {
    co_await sendError(400);
    co_return false;
  }
  const bool no_body = first.message_complete && first.body.empty();
  Http1Side side(*this, first, rq().parser.keepAlive());
  side.upgrade = first.upgrade || (req.headers.hasToken("connection", "upgrade") &&
                                   req.headers.get("upgrade").has_value());
  side_ = &side;
  co_await runExchange(worker_, *gen_, rq().stream, side, no_body, start_ns);
  side_ = nullptr;
  co_return side.reusable();
}

// An upgraded connection's idle clock (limits.idle_timeout): both pumps stamp it, a watchdog
// closes the tunnel once it is that old. Shared with the detached watchdog, which may wake after
// the tunnel ended (`over`: touch nothing).
struct TunnelIdle {
  explicit TunnelIdle(const asio::any_io_executor& ex) : timer(ex) {}
  asio::steady_timer timer;
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
  bool over = false;
  bool expired = false;
  bool one_done = false;  // one direction ended
  bool failed = false;    // the first direction to end did so with a failed read or write
};

template <class Stream>
awaitable<TunnelStats> Session<Stream>::tunnel(upstream::UpstreamConnection& up,
                                               FlatBuffer& upbuf) {
  // Bytes already read past the heads belong to the tunnel.
  TunnelStats stats;
  error_code ec;
  if (in_.size() > 0) {
    co_await asio::async_write(up, asio::buffer(in_.data(), in_.size()),
                               asio::redirect_error(use_awaitable, ec));
    stats.to_upstream += ec ? 0 : in_.size();
    in_.consume(in_.size());
  }
  if (!ec && upbuf.size() > 0) {
    co_await asio::async_write(socket_, asio::buffer(upbuf.data(), upbuf.size()),
                               asio::redirect_error(use_awaitable, ec));
    stats.to_downstream += ec ? 0 : upbuf.size();
    upbuf.consume(upbuf.size());
  }
  if (ec) {
    stats.error = UpstreamResult::Error::Reset;
    co_return stats;
  }
  auto idle = std::make_shared<TunnelIdle>(tcp().get_executor());
  auto pump = [](auto& from, auto& to, FlatBuffer& buf, TunnelIdle& clock, uint64_t& moved,
                 std::shared_ptr<Session> keep) -> awaitable<void> {
    (void)keep;
    error_code e;
    for (;;) {
      size_t n =
          co_await from.async_read_some(buf.prepare(), asio::redirect_error(use_awaitable, e));
      if (e) {
        break;
      }
      clock.last = std::chrono::steady_clock::now();
      buf.commit(n);
      co_await asio::async_write(to, asio::buffer(buf.data(), buf.size()),
                                 asio::redirect_error(use_awaitable, e));
      buf.consume(buf.size());
      if (e) {
        break;
      }
      moved += n;
    }
    // A close is the end of a tunnel, and so is whatever fails once one direction ended (a peer
    // that closed with bytes unread resets; a write to it then fails); cancels are ours (the
    // idle clock, the other direction's end). A tunnel fails when its first end is an error.
    if (e != asio::error::eof && e != asio::error::operation_aborted && !clock.over &&
        !clock.one_done) {
      clock.failed = true;
    }
    clock.one_done = true;
    // A TCP half-close; towards a TLS client that ends the TLS stream without close_notify, which
    // the connection's own end follows anyway.
    to.lowest_layer().shutdown(asio::ip::tcp::socket::shutdown_send, e);
  };
  // Upstream → downstream runs detached; it shares this frame's lifetime through `self`, and the
  // tunnel's upstream connection outlives it because the up→down pump is awaited last below.
  auto self = this->shared_from_this();
  tunnel_up_ = &up;
  bool other_done = false;
  asio::co_spawn(
      tcp().get_executor(),
      [&, self]() -> awaitable<void> {
        co_await pump(up, socket_, upbuf, *idle, stats.to_downstream, self);
        other_done = true;
      },
      asio::detached);
  asio::co_spawn(tcp().get_executor(),
                 watchTunnel(idle, gen_->config().limits.idle_timeout, &up.socket), asio::detached);
  co_await pump(socket_, up, in_, *idle, stats.to_upstream, self);
  // Give the other direction a moment to finish after our half-close, then cut it.
  asio::steady_timer t(tcp().get_executor());
  for (int i = 0; !other_done && !idle->expired && i < 250; ++i) {
    t.expires_after(std::chrono::milliseconds(20));
    co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
  }
  idle->over = true;
  idle->timer.cancel();
  tunnel_up_ = nullptr;
  up.socket.close(ec);
  while (!other_done) {
    t.expires_after(std::chrono::milliseconds(5));
    co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
  }
  stats.error = idle->expired  ? UpstreamResult::Error::Timeout
                : idle->failed ? UpstreamResult::Error::Reset
                               : UpstreamResult::Error::None;
  co_return stats;
}

template <class Stream>
awaitable<void> Session<Stream>::watchTunnel(std::shared_ptr<TunnelIdle> idle,
                                             std::chrono::milliseconds timeout,
                                             asio::ip::tcp::socket* upstream) {
  auto self = this->shared_from_this();
  error_code ec;
  while (!idle->over) {
    idle->timer.expires_at(idle->last + timeout);
    co_await idle->timer.async_wait(asio::redirect_error(use_awaitable, ec));
    if (idle->over) {
      co_return;
    }
    if (std::chrono::steady_clock::now() - idle->last >= timeout) {
      // Both pumps end: their reads (and any write parked on a peer that does not read) abort.
      idle->expired = true;
      tcp().cancel(ec);
      upstream->cancel(ec);
      co_return;
    }
  }
}

template class Session<PlainStream>;
template class Session<TlsStream>;

}  // namespace sidetrace::proxy
