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
#include "proxy/retry.h"
#include "proxy/tls_context.h"
#include "proxy/worker.h"

namespace sidetrace::proxy {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using boost::system::error_code;
using filters::UpstreamResult;

namespace {

bool expectsContinue(const filters::RequestHead& req) {
  auto v = req.headers.get("expect");
  return v && filters::iequals(*v, "100-continue");
}

// Reduce an absolute-form target (proxy-style "http://host/path") to origin-form.
void toOriginForm(filters::RequestHead& req) {
  std::string_view t = req.target;
  if (t.starts_with("http://") || t.starts_with("https://")) {
    size_t start = t.find("://") + 3;
    size_t slash = t.find('/', start);
    if (!req.headers.get("host")) {
      req.headers.add("Host", std::string(t.substr(start, slash - start)));
    }
    req.target = slash == std::string_view::npos ? "/" : std::string(t.substr(slash));
  }
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
      deadline_(tcp().get_executor()),
      in_(worker.current()->config().limits.buffer_bytes, &worker.buffers()) {
  deadline_.watch(&tcp());
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
awaitable<void> Session<Stream>::run() {
  error_code ec;
  auto remote = tcp().remote_endpoint(ec);
  auto local = tcp().local_endpoint(ec);
  tcp().set_option(asio::ip::tcp::no_delay(true), ec);
  std::string peer = remote.address().to_string();
  uint16_t peer_port = remote.port();
  uint16_t local_port = local.port();

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
  } else {
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
  for (;;) {
    if (in_.size() == 0) {
      // Idle between requests: wait here, holding no buffer, no request state and none of the
      // head reader's coroutine frames (an idle keep-alive connection is this frame, a socket and
      // a timer).
      releaseRequestState();
      in_.release();
      error_code wait_ec;
      deadline_.arm(worker_.current()->config().limits.idle_timeout);
      if (!close_after_ && !tlsHasPending() && !socketReadable()) {
        co_await tcp().async_wait(asio::ip::tcp::socket::wait_read,
                                  asio::redirect_error(use_awaitable, wait_ec));
      }
      deadline_.disarm();
      if (wait_ec || close_after_) {
        break;  // idle timeout, drain, or the socket failed
      }
      readable_ = true;
    }
    filters::Stream& stream = rq().stream;
    stream.reset();
    stream.scheme = kTls ? "https" : "http";
    stream.peer_address = peer;
    stream.peer_port = peer_port;
    stream.local_port = local_port;
    FeedResult first;
    HeadStatus hs = co_await readRequestHead(first);
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
    gen_.reset();
    idle_ = true;
    // Whatever a dropped upstream connection left unread is of no use now.
    rq().upbuf.consume(rq().upbuf.size());
    rq().upbuf.release();
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
  co_return co_await socket_.async_read_some(in_.prepare(),
                                             asio::redirect_error(use_awaitable, ec));
}

template <class Stream>
awaitable<typename Session<Stream>::Sniffed> Session<Stream>::sniffHttp2() {
  const auto& limits = worker_.current()->config().limits;
  deadline_.arm(limits.idle_timeout);
  bool header_clock = false;
  while (in_.size() < kHttp2Preface.size()) {
    if (!kHttp2Preface.starts_with(std::string_view(in_.data(), in_.size()))) {
      deadline_.disarm();
      co_return Sniffed::Http1;
    }
    if (!header_clock && in_.size() > 0) {
      header_clock = true;  // a request has begun: the header timeout applies
      deadline_.arm(limits.request_header_timeout);
    }
    if (close_after_ && in_.size() == 0) {
      deadline_.disarm();
      co_return Sniffed::Closed;
    }
    error_code ec;
    size_t n = co_await readIdle(ec);
    if (ec) {
      const bool expired = deadline_.expired();
      deadline_.disarm();
      if (expired && header_clock) {
        worker_.mutableStats().bad_requests.fetch_add(1, std::memory_order_relaxed);
        co_return Sniffed::Timeout;
      }
      co_return Sniffed::Closed;
    }
    in_.commit(n);
  }
  deadline_.disarm();
  co_return std::string_view(in_.data(), kHttp2Preface.size()) == kHttp2Preface ? Sniffed::Http2
                                                                                : Sniffed::Http1;
}

template <class Stream>
awaitable<void> Session<Stream>::serveHttp2(const std::string& peer, uint16_t peer_port,
                                            uint16_t local_port) {
  idle_ = false;
  h2_ = std::make_unique<Http2Server<Stream>>(
      worker_, socket_, tcp(), DownstreamInfo{listener_index_, peer, peer_port, local_port, kTls});
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
    deadline_.arm(worker_.current()->config().limits.request_header_timeout);
    error_code ec;
    co_await socket_.async_handshake(asio::ssl::stream_base::server,
                                     asio::redirect_error(use_awaitable, ec));
    const bool expired = deadline_.expired();
    deadline_.disarm();
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
    deadline_.arm(std::chrono::seconds(5));
    co_await socket_.async_shutdown(asio::redirect_error(use_awaitable, ec));
    deadline_.disarm();
  }
  co_return;
}

template <class Stream>
awaitable<typename Session<Stream>::HeadStatus> Session<Stream>::readRequestHead(
    FeedResult& first) {
  const auto& limits = worker_.current()->config().limits;
  bool header_clock = false;
  auto armForState = [&]() {
    if (!header_clock && (in_.size() > 0 || rq().parser.bytesSeen())) {
      header_clock = true;
      deadline_.arm(limits.request_header_timeout);
    }
  };
  deadline_.arm(limits.idle_timeout);
  armForState();
  for (;;) {
    if (in_.size() > 0) {
      FeedResult r = rq().parser.feed(in_.data(), in_.size());
      in_.consume(r.consumed);
      if (r.error != ParseError::None) {
        deadline_.disarm();
        worker_.mutableStats().bad_requests.fetch_add(1, std::memory_order_relaxed);
        first = std::move(r);
        co_return HeadStatus::Error;
      }
      if (r.head_complete) {
        deadline_.disarm();
        first = std::move(r);
        co_return HeadStatus::Ok;
      }
      armForState();
    }
    if (close_after_ && !rq().parser.bytesSeen()) {
      deadline_.disarm();
      co_return HeadStatus::Closed;
    }
    error_code ec;
    size_t n = co_await readIdle(ec);
    if (ec) {
      bool expired = deadline_.expired();
      deadline_.disarm();
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
  deadline_.arm(std::chrono::seconds(5));
  co_await asio::async_write(socket_, asio::buffer(rq().out),
                             asio::redirect_error(use_awaitable, ec));
  deadline_.disarm();
}

template <class Stream>
awaitable<bool> Session<Stream>::sendLocalReply(int status, std::string_view body, bool close) {
  filters::ResponseHead head;
  head.status = status;
  head.headers.add("Content-Type", "text/plain");
  gen_->chain.onResponse(rq().stream, head);
  head.headers.set("Content-Length", std::to_string(body.size()));
  if (close) {
    head.headers.set("Connection", "close");
  }
  rq().out.clear();
  appendResponseHead(rq().out, head);
  rq().out += "\r\n";
  if (rq().stream.request.method != "HEAD") {
    rq().out.append(body);
  }
  rq().stream.response_status = status;
  // A client that does not read its reply (a body bigger than the socket buffers) would hold the
  // connection forever: the write gets limits.idle_timeout, as an idle connection does.
  error_code ec;
  deadline_.arm(gen_->config().limits.idle_timeout);
  co_await asio::async_write(socket_, asio::buffer(rq().out),
                             asio::redirect_error(use_awaitable, ec));
  deadline_.disarm();
  co_return !ec && !close;
}

template <class Stream>
void Session<Stream>::finishStream(uint64_t start_ns) {
  finishRequest(worker_, *gen_, rq().stream, start_ns);
}

template <class Stream>
struct Session<Stream>::Http1Side final : DownstreamSide {
  Http1Side(Session& session, FeedResult& first, bool done, bool expect, bool client_keep_alive)
      : s(session),
        pieces(std::move(first.body)),
        request_done(done),
        expect_continue(expect),
        keep(client_keep_alive) {}

  awaitable<bool> readBody(std::string_view& data, bool& end) override {
    for (;;) {
      if (interrupted || failed) {
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
        n = co_await s.socket_.async_read_some(s.in_.prepare(),
                                               asio::redirect_error(use_awaitable, ec));
      }
      if (ec) {
        failed = true;
        co_return false;
      }
      s.in_.commit(n);
      FeedResult r = s.rq().parser.feed(s.in_.data(), s.in_.size());
      s.in_.consume(r.consumed);
      if (r.error != ParseError::None) {
        failed = true;
        co_return false;
      }
      request_done = r.message_complete;
      pieces = std::move(r.body);
      piece = 0;
    }
  }
  void consumeBody(size_t) override {}  // TCP is the flow control
  // A chunked request's trailers, once it ended (for an HTTP/2 upstream; the h1 -> h1 path writes
  // them itself).
  const filters::HeaderMap* requestTrailers() override {
    if (!request_done || s.rq().parser.trailers().size() == 0) {
      return nullptr;
    }
    trailers_out = forwardableTrailers(s.rq().parser.trailers());
    return trailers_out.size() > 0 ? &trailers_out : nullptr;
  }
  bool bodyComplete() const override { return request_done; }

  awaitable<bool> sendHead(filters::ResponseHead& head, bool end) override {
    const auto& req = s.rq().stream.request;
    head_only = req.method == "HEAD";
    const bool no_body_status = head.status == 204 || head.status == 304;
    const bool no_body = end || head_only || no_body_status;
    const bool has_length = head.headers.get("content-length").has_value();
    keep = keep && !s.worker_.draining() && !s.close_after_;
    chunk_out = !no_body && !has_length && req.version_minor >= 1;
    if (!no_body && !has_length && !chunk_out) {
      keep = false;  // HTTP/1.0 client: the body ends with the connection
    }
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
    s.rq().out.clear();
    appendResponseHead(s.rq().out, head);
    s.rq().out += "\r\n";
    co_return co_await write(asio::buffer(s.rq().out));
  }

  awaitable<bool> sendBody(std::string_view data, bool end) override {
    if (head_only) {
      co_return !failed;
    }
    one_piece.assign(1, data);
    s.rq().gather.build({}, one_piece, chunk_out, end);
    if (s.rq().gather.bufs.empty()) {
      co_return !failed;
    }
    co_return co_await write(s.rq().gather.bufs);
  }

  awaitable<bool> sendTrailers(filters::HeaderMap& trailers) override {
    if (!chunk_out || head_only) {
      co_return co_await sendBody({}, true);
    }
    trailer_block.clear();
    appendLastChunk(trailer_block, trailers);
    co_return co_await write(asio::buffer(trailer_block));
  }

  void reset() override {
    keep = false;  // a cut-short response: closing the connection is how HTTP/1 says so
  }
  void interrupt() override {
    interrupted = true;
    error_code ec;
    s.tcp().cancel(ec);
  }
  bool gone() const override { return failed; }  // a read or write failed, or the body was bad

  template <class Buffers>
  awaitable<bool> write(const Buffers& bufs) {
    if (failed) {
      co_return false;
    }
    error_code ec;
    co_await asio::async_write(s.socket_, bufs, asio::redirect_error(use_awaitable, ec));
    if (ec) {
      failed = true;
    }
    co_return !failed;
  }

  Session& s;
  std::vector<std::string_view> pieces;
  size_t piece = 0;
  std::vector<std::string_view> one_piece;
  std::string trailer_block;
  filters::HeaderMap trailers_out;  // requestTrailers(): what of the parsed ones may travel
  bool request_done;
  bool expect_continue;
  bool keep;
  bool chunk_out = false;
  bool head_only = false;
  bool failed = false;
  bool interrupted = false;
};

template <class Stream>
awaitable<bool> Session<Stream>::handleRequest(FeedResult& first) {
  const uint64_t start_ns = worker_.tracer().now();
  auto& chain = gen_->chain;
  auto& req = rq().stream.request;
  std::swap(req, rq().parser.request());
  toOriginForm(req);
  const bool client_keep_alive = rq().parser.keepAlive();
  const bool expect_continue = expectsContinue(req);
  const bool req_chunked = rq().parser.chunked();
  const auto req_length = rq().parser.contentLength();
  const bool is_head = req.method == "HEAD";
  bool request_done = first.message_complete;
  const bool upgrade_request = first.upgrade || (req.headers.hasToken("connection", "upgrade") &&
                                                 req.headers.get("upgrade").has_value());

  if (chain.onRequest(rq().stream) == filters::FilterStatus::StopIteration) {
    auto reply = std::move(*rq().stream.local_reply);
    // A body we have not read would be parsed as the next request: close instead.
    bool close = !request_done || !client_keep_alive || worker_.draining() || first.upgrade;
    bool keep = co_await sendLocalReply(reply.status, reply.body, close);
    finishStream(start_ns);
    co_return keep;
  }

  const size_t cluster_index = gen_->gen->route_cluster[listener_index_][rq().stream.route_index];
  if (cluster_index == kNoCluster) {  // validated at load; defensive
    bool keep = co_await sendLocalReply(500, "route has no cluster\n", true);
    finishStream(start_ns);
    co_return keep;
  }
  if (gen_->h2pools[cluster_index] && !upgrade_request) {
    const bool no_body = request_done && first.body.empty();
    Http1Side side(*this, first, request_done, expect_continue, client_keep_alive);
    co_await forwardUpstream(worker_, *gen_, rq().stream, side, no_body, start_ns);
    co_return side.keep && !side.failed && !side.interrupted && side.request_done;
  }
  auto& pool = *gen_->pools[cluster_index];
  const size_t cluster_slot = gen_->gen->cluster_slots[cluster_index];
  const auto& route = *rq().stream.route;
  upstream::BreakerSlot request_slot =
      upstream::CircuitBreakers::take(pool.cluster().breakers->requests);
  if (!request_slot) {
    worker_.mutableStats().countTrip(cluster_slot, WorkerStats::kBreakerRequests);
    rq().stream.error_type = "overflow";
    bool keep =
        co_await sendLocalReply(503, "upstream overflow\n", !request_done || !client_keep_alive);
    finishStream(start_ns);
    co_return keep;
  }
  if (pool.noneHealthy()) {  // health checks say every endpoint is down: fail fast
    rq().stream.error_type = "no_healthy_upstream";
    bool keep =
        co_await sendLocalReply(503, "no healthy upstream\n", !request_done || !client_keep_alive);
    finishStream(start_ns);
    co_return keep;
  }
  RetryAttempts attempts(gen_->load[cluster_index], pool.cluster(), worker_.mutableStats(),
                         cluster_slot);

  // Upstream request head: filters have edited the headers; framing is ours to write.
  req.headers.remove("content-length");
  req.headers.remove("te");  // the header policy lets "TE: trailers" through for HTTP/2 only
  if (req_chunked) {
    req.headers.add("Transfer-Encoding", "chunked");
  } else if (req_length) {
    req.headers.add("Content-Length", std::to_string(*req_length));
  }
  rq().stream.upstream_attempted = true;
  // The session's own (a request would otherwise allocate their shared state); nothing watched
  // from an earlier request's connections.
  upstream::Deadline& route_deadline = rq().route_deadline;
  upstream::Deadline& per_try = rq().per_try;
  route_deadline.watch(&tcp());
  per_try.watch(nullptr);
  const auto route_deadline_at = std::chrono::steady_clock::now() + route.timeout;
  // Retries need the whole request in hand (it went out with the head) and no protocol switch.
  const config::RetryPolicy* retry =
      route.retry_policy && request_done && !upgrade_request ? &*route.retry_policy : nullptr;
  const bool idempotent = idempotentMethod(req.method);
  error_code ec;

  auto fail = [&](UpstreamResult::Error e, int status) -> awaitable<bool> {
    rq().stream.upstream.error = e;
    rq().stream.error_type = filters::errorTypeName(e);
    chain.onUpstreamResult(rq().stream);
    bool keep = co_await sendLocalReply(status, std::string(reasonPhrase(status)) + "\n",
                                        !request_done || !client_keep_alive);
    finishStream(start_ns);
    co_return keep;
  };

  // One attempt: connect (or reuse), send the head (and the body as it arrives), read the response
  // head. On return either `error` is set (nothing was sent downstream) or `conn` and `rr` hold
  // the response; `downstream_gone` when the client left mid-body.
  struct Attempt {
    UpstreamResult::Error error = UpstreamResult::Error::None;
    int fail_status = 0;
    bool per_try_expired = false;
    bool downstream_gone = false;
    bool client_fault = false;     // the client's body was malformed: not the endpoint's failure
    bool connect_refused = false;  // a ConnectFailure that was neither a timeout nor TLS
    std::unique_ptr<upstream::UpstreamConnection> conn;
    FeedResult rr;
  };
  auto attemptOnce = [&](const upstream::Endpoint& endpoint, Attempt& a) -> awaitable<void> {
    auto failWith = [&](UpstreamResult::Error e, int status) {
      a.error = e;
      a.fail_status = status;
      a.per_try_expired = per_try.expired();
      a.conn.reset();
      route_deadline.watch(&tcp());  // not the socket just freed (the next connect is unwatched)
      per_try.watch(nullptr);
    };
    // A reused connection that turns out dead before any response byte is tried once more on a
    // fresh one, when the request had no body to replay.
    a.conn = pool.takeIdle(endpoint);
    bool reused = a.conn != nullptr;
    const bool replayable =
        request_done && first.body.empty() && !req_chunked && !req_length.value_or(0);
    for (int attempt = 0;; ++attempt) {
      if (!a.conn) {
        upstream::ConnectError cerr;
        a.conn = co_await pool.connect(endpoint, cerr);
        reused = false;
        if (!a.conn) {
          auto& st = worker_.mutableStats();
          if (cerr == upstream::ConnectError::Timeout) {
            st.upstream_timeouts[cluster_slot].fetch_add(1, std::memory_order_relaxed);
            failWith(UpstreamResult::Error::Timeout, 504);
            a.per_try_expired = true;  // the connect timeout is per attempt
            co_return;
          }
          if (cerr == upstream::ConnectError::OverflowConnections ||
              cerr == upstream::ConnectError::OverflowPending) {
            st.countTrip(cluster_slot, cerr == upstream::ConnectError::OverflowPending
                                           ? WorkerStats::kBreakerPending
                                           : WorkerStats::kBreakerConnections);
            failWith(UpstreamResult::Error::Overflow, 503);
            co_return;
          }
          st.connect_failures[cluster_slot].fetch_add(1, std::memory_order_relaxed);
          if (cerr == upstream::ConnectError::TlsHandshake) {
            st.upstream_tls_handshake_failures[cluster_slot].fetch_add(1,
                                                                       std::memory_order_relaxed);
          }
          failWith(UpstreamResult::Error::ConnectFailure, 502);
          a.connect_refused = cerr == upstream::ConnectError::Refused;
          co_return;
        }
      }
      rq().stream.upstream.endpoint_address = a.conn->peer_address;
      route_deadline.watch(&tcp(), &a.conn->socket);
      per_try.watch(&a.conn->socket);

      rq().out.clear();
      appendRequestHead(rq().out, req);
      rq().out += "\r\n";
      rq().gather.build(rq().out, first.body, req_chunked, request_done, &rq().parser.trailers());
      co_await asio::async_write(*a.conn, rq().gather.bufs,
                                 asio::redirect_error(use_awaitable, ec));
      if (!ec) {
        break;
      }
      if (route_deadline.expired() || per_try.expired()) {
        failWith(UpstreamResult::Error::Timeout, 504);
        co_return;
      }
      if (reused && replayable && attempt == 0) {
        a.conn.reset();
        route_deadline.watch(&tcp());
        per_try.watch(nullptr);
        continue;
      }
      failWith(UpstreamResult::Error::Reset, 502);
      co_return;
    }
    a.conn->requests++;
    rq().stream.request_body_bytes = rq().gather.bytes;

    // Stream the rest of the request body downstream → upstream (never on a retried request).
    if (!request_done && expect_continue) {
      static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
      co_await asio::async_write(socket_, asio::buffer(k100),
                                 asio::redirect_error(use_awaitable, ec));
      if (ec) {
        a.downstream_gone = true;
        co_return;
      }
    }
    while (!request_done) {
      size_t n =
          co_await socket_.async_read_some(in_.prepare(), asio::redirect_error(use_awaitable, ec));
      if (ec) {  // client went away (or the route timed out) mid-body
        if (route_deadline.expired()) {
          failWith(UpstreamResult::Error::Timeout, 504);
          co_return;
        }
        a.downstream_gone = true;
        co_return;
      }
      in_.commit(n);
      FeedResult r = rq().parser.feed(in_.data(), in_.size());
      in_.consume(r.consumed);
      if (r.error != ParseError::None) {
        failWith(UpstreamResult::Error::ProtocolError,
                 r.error == ParseError::HeadersTooLarge ? 431 : 400);
        a.client_fault = true;
        co_return;
      }
      request_done = r.message_complete;
      rq().gather.build({}, r.body, req_chunked, request_done, &rq().parser.trailers());
      if (!rq().gather.bufs.empty()) {
        co_await asio::async_write(*a.conn, rq().gather.bufs,
                                   asio::redirect_error(use_awaitable, ec));
        if (ec) {
          const bool expired = route_deadline.expired() || per_try.expired();
          failWith(expired ? UpstreamResult::Error::Timeout : UpstreamResult::Error::Reset,
                   expired ? 504 : 502);
          co_return;
        }
        rq().stream.request_body_bytes += rq().gather.bytes;
      }
    }

    // Response head from upstream (skipping interim 1xx other than 101).
    rq().up_parser.reset();
    rq().up_parser.setNoBody(is_head);
    for (;;) {
      if (rq().upbuf.size() > 0) {
        a.rr = rq().up_parser.feed(rq().upbuf.data(), rq().upbuf.size());
        rq().upbuf.consume(a.rr.consumed);
        if (a.rr.error != ParseError::None) {
          failWith(UpstreamResult::Error::ProtocolError, 502);
          co_return;
        }
        if (a.rr.head_complete) {
          int st = rq().up_parser.response().status;
          if (st >= 100 && st < 200 && st != 101) {
            continue;  // interim response: the next head follows
          }
          break;
        }
      }
      size_t n = co_await a.conn->async_read_some(rq().upbuf.prepare(),
                                                  asio::redirect_error(use_awaitable, ec));
      if (ec) {
        if (route_deadline.expired() || per_try.expired()) {
          worker_.mutableStats().upstream_timeouts[cluster_slot].fetch_add(
              1, std::memory_order_relaxed);
          failWith(UpstreamResult::Error::Timeout, 504);
          co_return;
        }
        failWith(UpstreamResult::Error::Reset, 502);
        co_return;
      }
      rq().upbuf.commit(n);
    }
  };

  Attempt a;
  TriedEndpoints tried;
  route_deadline.arm(route.timeout);
  for (;;) {
    const auto& endpoint = pickForAttempt(pool, tried);
    rq().stream.upstream = UpstreamResult();
    rq().stream.upstream.endpoint_host = endpoint.host;
    rq().stream.upstream.endpoint_port = endpoint.port;
    rq().stream.upstream.tls = pool.cluster().tls != nullptr;
    rq().stream.upstream.resend_count = attempts.count();
    if (!req.headers.get("host")) {
      req.headers.add("Host", endpoint.authority);
    }
    chain.onUpstreamRequest(rq().stream, req);  // a CLIENT span per attempt
    const uint64_t attempt_start_ns = worker_.tracer().now();
    if (retry != nullptr && retry->per_try_timeout.count() > 0) {
      per_try.arm(retry->per_try_timeout);
    }
    a = Attempt();
    rq().upbuf.consume(rq().upbuf.size());  // whatever a dropped connection left unread
    co_await attemptOnce(endpoint, a);
    per_try.disarm();
    if (a.error == UpstreamResult::Error::None && !a.downstream_gone) {
      rq().stream.upstream.status = rq().up_parser.response().status;
      rq().stream.upstream_latency_nanos = worker_.tracer().now() - attempt_start_ns;
    }
    const AttemptEnd end{a.error,
                         rq().stream.upstream.status,
                         a.per_try_expired,
                         route_deadline.expired(),
                         a.downstream_gone || a.client_fault,
                         a.connect_refused};
    const AttemptVerdict verdict = judgeAttempt(end);
    if (verdict.report && pool.reportOutcome(endpoint, verdict.failed, a.connect_refused)) {
      worker_.mutableStats().countEjection(cluster_slot, endpoint.label);
    }
    if (a.downstream_gone) {
      route_deadline.disarm();
      rq().stream.upstream.error = UpstreamResult::Error::Reset;
      rq().stream.error_type = "downstream_reset";
      chain.onUpstreamResult(rq().stream);
      finishStream(start_ns);
      co_return false;
    }
    if (retry == nullptr || !verdict.may_retry) {
      break;
    }
    const bool retriable =
        a.error != UpstreamResult::Error::None
            ? retriableFailure(*retry, a.error, a.per_try_expired) &&
                  (idempotent || a.error == UpstreamResult::Error::ConnectFailure)
            : idempotent && retriableResponse(*retry, rq().stream.upstream.status, -1);
    const bool free = retryIsFree(end, pool, tried);
    const auto wait = retriable ? attempts.admit(*retry, worker_.random(), route_deadline_at, free)
                                : std::nullopt;
    if (!wait) {
      break;
    }
    // This attempt ends here: its CLIENT span records why, and its connection is dropped.
    if (a.error != UpstreamResult::Error::None) {
      rq().stream.upstream.error = a.error;
    }
    chain.onUpstreamResult(rq().stream);
    a.conn.reset();
    route_deadline.watch(&tcp());
    per_try.watch(nullptr);
    attempts.begin(free);
    if (wait->count() > 0) {
      asio::steady_timer t(tcp().get_executor());
      t.expires_after(*wait);
      co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
    }
  }
  attempts.finish(a.error != UpstreamResult::Error::None || rq().stream.upstream.status >= 500);
  if (a.error != UpstreamResult::Error::None) {
    route_deadline.disarm();
    co_return co_await fail(a.error, a.fail_status);
  }
  auto conn = std::move(a.conn);
  FeedResult& rr = a.rr;

  auto& resp = rq().up_parser.response();
  const int status = resp.status;
  const bool is_upgrade = status == 101 && upgrade_request;
  const bool resp_no_body = is_head || status == 204 || status == 304 || is_upgrade;
  const auto resp_length = rq().up_parser.contentLength();
  const bool resp_chunked_in = rq().up_parser.chunked();
  const bool until_eof = !resp_no_body && !resp_chunked_in && !resp_length;
  // An upgrade the upstream declined leaves llhttp in tunnel mode on our side: close after.
  bool keep_client = client_keep_alive && !worker_.draining() && !close_after_ &&
                     !(upgrade_request && !is_upgrade);
  // Re-frame: chunked towards HTTP/1.1 clients whenever the length is not known up front.
  bool chunk_out = !resp_no_body && !resp_length && req.version_minor >= 1;
  if (!resp_no_body && !resp_length && !chunk_out) {
    keep_client = false;  // HTTP/1.0 client: the body ends with the connection
  }

  chain.onResponse(rq().stream, resp);
  resp.headers.remove("content-length");
  if (resp_length && !(status == 204 || status == 304)) {
    resp.headers.add("Content-Length", std::to_string(*resp_length));
  } else if (chunk_out) {
    resp.headers.add("Transfer-Encoding", "chunked");
  }
  if (is_upgrade) {
    // removeHopByHop kept "Connection: upgrade" and Upgrade for the 101.
  } else if (!keep_client) {
    resp.headers.set("Connection", "close");
  } else if (req.version_minor == 0) {
    resp.headers.set("Connection", "keep-alive");
  }
  rq().stream.response_status = status;

  rq().out.clear();
  appendResponseHead(rq().out, resp);
  rq().out += "\r\n";
  bool resp_done = rr.message_complete;
  rq().gather.build(rq().out, rr.body, chunk_out, resp_done, &rq().up_parser.trailers());
  co_await asio::async_write(socket_, rq().gather.bufs, asio::redirect_error(use_awaitable, ec));
  rq().stream.response_body_bytes += rq().gather.bytes;
  bool broken = static_cast<bool>(ec);

  if (is_upgrade && !broken) {
    route_deadline.disarm();
    chain.onUpstreamResult(rq().stream);
    finishStream(start_ns);
    co_await tunnel(*conn, rq().upbuf);
    co_return false;
  }

  // Stream the response body upstream → downstream.
  while (!resp_done && !broken) {
    size_t n = co_await conn->async_read_some(rq().upbuf.prepare(),
                                              asio::redirect_error(use_awaitable, ec));
    if (ec) {
      if (until_eof && ec == asio::error::eof && rq().up_parser.finishOnEof()) {
        resp_done = true;
        rq().gather.build({}, {}, chunk_out, true);
        if (!rq().gather.bufs.empty()) {
          co_await asio::async_write(socket_, rq().gather.bufs,
                                     asio::redirect_error(use_awaitable, ec));
        }
        conn.reset();  // closed by the peer
        break;
      }
      rq().stream.upstream.error =
          route_deadline.expired() ? UpstreamResult::Error::Timeout : UpstreamResult::Error::Reset;
      rq().stream.error_type = filters::errorTypeName(rq().stream.upstream.error);
      broken = true;
      break;
    }
    rq().upbuf.commit(n);
    FeedResult r = rq().up_parser.feed(rq().upbuf.data(), rq().upbuf.size());
    rq().upbuf.consume(r.consumed);
    if (r.error != ParseError::None) {
      rq().stream.upstream.error = UpstreamResult::Error::ProtocolError;
      rq().stream.error_type = "upstream_protocol_error";
      broken = true;
      break;
    }
    resp_done = r.message_complete;
    rq().gather.build({}, r.body, chunk_out, resp_done, &rq().up_parser.trailers());
    if (!rq().gather.bufs.empty()) {
      co_await asio::async_write(socket_, rq().gather.bufs,
                                 asio::redirect_error(use_awaitable, ec));
      if (ec) {
        broken = true;  // client went away
        rq().stream.error_type = "downstream_reset";
        break;
      }
      rq().stream.response_body_bytes += rq().gather.bytes;
    }
  }
  route_deadline.disarm();

  if (conn && resp_done && !broken && rq().up_parser.keepAlive() && rq().upbuf.size() == 0) {
    pool.release(std::move(conn));
  }
  chain.onUpstreamResult(rq().stream);
  finishStream(start_ns);
  co_return keep_client && !broken;
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
};

template <class Stream>
awaitable<void> Session<Stream>::tunnel(upstream::UpstreamConnection& up, FlatBuffer& upbuf) {
  // Bytes already read past the heads belong to the tunnel.
  error_code ec;
  if (in_.size() > 0) {
    co_await asio::async_write(up, asio::buffer(in_.data(), in_.size()),
                               asio::redirect_error(use_awaitable, ec));
    in_.consume(in_.size());
  }
  if (upbuf.size() > 0) {
    co_await asio::async_write(socket_, asio::buffer(upbuf.data(), upbuf.size()),
                               asio::redirect_error(use_awaitable, ec));
    upbuf.consume(upbuf.size());
  }
  if (ec) {
    co_return;
  }
  auto idle = std::make_shared<TunnelIdle>(tcp().get_executor());
  auto pump = [](auto& from, auto& to, FlatBuffer& buf, TunnelIdle& clock,
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
    }
    // A TCP half-close; towards a TLS client that ends the TLS stream without close_notify, which
    // the connection's own end follows anyway.
    to.lowest_layer().shutdown(asio::ip::tcp::socket::shutdown_send, e);
  };
  // Upstream → downstream runs detached; it shares this frame's lifetime through `self`, and the
  // tunnel's upstream connection outlives it because the up→down pump is awaited last below.
  auto self = this->shared_from_this();
  bool other_done = false;
  asio::co_spawn(
      tcp().get_executor(),
      [&, self]() -> awaitable<void> {
        co_await pump(up, socket_, upbuf, *idle, self);
        other_done = true;
      },
      asio::detached);
  asio::co_spawn(tcp().get_executor(),
                 watchTunnel(idle, gen_->config().limits.idle_timeout, &up.socket), asio::detached);
  co_await pump(socket_, up, in_, *idle, self);
  // Give the other direction a moment to finish after our half-close, then cut it.
  asio::steady_timer t(tcp().get_executor());
  for (int i = 0; !other_done && !idle->expired && i < 250; ++i) {
    t.expires_after(std::chrono::milliseconds(20));
    co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
  }
  idle->over = true;
  idle->timer.cancel();
  up.socket.close(ec);
  while (!other_done) {
    t.expires_after(std::chrono::milliseconds(5));
    co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
  }
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
