#include "proxy/http2_client.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <charconv>
#include <deque>
#include <map>

#include <spdlog/spdlog.h>

#include "proxy/http2_transport.h"
#include "proxy/upstream_call.h"
#include "upstream/connection_pool.h"

namespace sidetrace::proxy {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using boost::system::error_code;

namespace {

// Request bytes buffered per stream before sendBody waits for nghttp2 to take them.
constexpr size_t kRequestHighWater = 64 * 1024;
// Streams per connection even when the peer allows more (spreads load over a few connections).
constexpr uint32_t kMaxStreamsPerConnection = 256;

}  // namespace

class Http2Call;

class Http2ClientConnection final : public Http2Transport<upstream::UpstreamConnection>,
                                    public std::enable_shared_from_this<Http2ClientConnection> {
  using Base = Http2Transport<upstream::UpstreamConnection>;

 public:
  // `peer_max_hint`: the peer's stream limit as last seen on this endpoint, assumed until its
  // SETTINGS arrive (so a burst does not overrun a peer that allows fewer than the default 100).
  // `breakers`: the cluster's, kept alive while this connection (which holds one of its
  // max_connections) lives, which may be past the generation's end. `header_limits` bound each
  // response head and trailer section; a write the peer takes nothing of for `write_timeout`
  // ends the connection.
  Http2ClientConnection(std::unique_ptr<upstream::UpstreamConnection> conn, bool tls,
                        uint32_t peer_max_hint, std::shared_ptr<upstream::CircuitBreakers> breakers,
                        HeaderBlockLimits header_limits, std::chrono::milliseconds write_timeout)
      : Base(*conn, conn->socket),
        breakers_(std::move(breakers)),
        conn_(std::move(conn)),
        header_limits_(header_limits),
        tls_(tls) {
    write_timeout_ = write_timeout;
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &onBeginHeaders);
    nghttp2_session_callbacks_set_on_header_callback(cb, &onHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &onFrameRecv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &onDataChunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, &onStreamClose);
    nghttp2_option* opt = nullptr;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_peer_max_concurrent_streams(opt, peer_max_hint);
    nghttp2_session_client_new2(&session_, cb, this, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kHttp2StreamWindow)},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, header_limits_.max_bytes},
    };
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, std::size(iv));
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kHttp2ConnectionWindow);
  }

  void start() {
    auto self = shared_from_this();
    asio::co_spawn(
        conn_->socket.get_executor(), [self]() { return self->writeLoop(); }, asio::detached);
    asio::co_spawn(
        conn_->socket.get_executor(),
        [self]() -> awaitable<void> {
          co_await self->readLoop();
          self->onClosed();
        },
        asio::detached);
  }

  // New streams may go here.
  bool usable() const { return !dead_ && !stop_reading_ && !goaway_ && !retired_; }
  uint32_t maxStreams() const {
    return std::min(
        nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS),
        kMaxStreamsPerConnection);
  }
  bool hasRoom() const { return reserved_ < maxStreams(); }
  bool settingsSeen() const { return settings_seen_; }
  void reserveSlot() { ++reserved_; }
  void releaseSlot() {
    if (--reserved_ == 0) {
      idle_since_ = std::chrono::steady_clock::now();
      if (retired_) {
        shutdown();
      }
    }
  }
  // clusters[].max_connection_duration / idle_timeout: an old connection takes no new streams
  // and closes once its last one ends; an idle one closes now.
  void expireIfDue(const config::Cluster& c, std::chrono::steady_clock::time_point now) {
    if (retired_ || dead_) {
      return;
    }
    const bool too_old =
        c.max_connection_duration.count() > 0 && now - created_ >= c.max_connection_duration;
    const bool idle_too_long = reserved_ == 0 && now - idle_since_ >= c.idle_timeout;
    if (too_old || idle_too_long) {
      retired_ = true;
      if (reserved_ == 0) {
        shutdown();
      }
    }
  }
  void shutdown() {
    if (!dead_ && !goaway_) {
      goaway_ = true;
      nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
      flush();
    }
  }
  const std::string& peerAddress() const { return conn_->peer_address; }
  bool tls() const { return tls_; }
  nghttp2_session* session() { return session_; }

  // Stream registry: calls register themselves once submitted, and leave on destruction.
  void attach(int32_t id, Http2Call* call) { streams_[id] = call; }
  void detach(int32_t id) { streams_.erase(id); }

  static ssize_t readRequest(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                             uint32_t* flags, nghttp2_data_source*, void* ud);

 private:
  static Http2ClientConnection& self(void* ud) { return *static_cast<Http2ClientConnection*>(ud); }
  Http2Call* find(int32_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second;
  }
  void onClosed();

  static int onBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* ud);
  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* ud);
  static int onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* ud);
  static int onDataChunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data,
                         size_t len, void* ud);
  static int onStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* ud);

  std::shared_ptr<upstream::CircuitBreakers> breakers_;  // destroyed after conn_ releases its slot
  std::unique_ptr<upstream::UpstreamConnection> conn_;
  std::map<int32_t, Http2Call*> streams_;
  HeaderBlockLimits header_limits_;
  uint32_t reserved_ = 0;
  bool tls_;
  bool goaway_ = false;
  bool retired_ = false;
  std::chrono::steady_clock::time_point created_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point idle_since_ = created_;
  bool settings_seen_ = false;
};

// One stream on an upstream HTTP/2 connection.
class Http2Call final : public UpstreamCall {
 public:
  Http2Call(Http2ClientPool& pool, const upstream::Endpoint& ep, asio::any_io_executor ex)
      : pool_(pool), ep_(ep), active_(pool.tcpPool().track(ep)), resp_wake_(ex), send_wake_(ex) {}

  ~Http2Call() override {
    if (!conn_) {
      return;
    }
    if (id_ > 0) {
      if (!closed_) {
        nghttp2_submit_rst_stream(conn_->session(), NGHTTP2_FLAG_NONE, id_, NGHTTP2_CANCEL);
        conn_->flush();
      }
      // Credit for bytes received but never read.
      if (unconsumed_ > 0 && !closed_) {
        nghttp2_session_consume(conn_->session(), id_, unconsumed_);
      }
      conn_->detach(id_);
    }
    conn_->releaseSlot();
  }

  awaitable<UpstreamError> start(filters::RequestHead& head, bool end_stream) override {
    UpstreamError err = UpstreamError::None;
    conn_ = co_await pool_.acquire(ep_, err, connect_error);
    if (!conn_) {
      co_return err;
    }
    if (cancelled_) {
      co_return UpstreamError::Reset;
    }
    peer_address = conn_->peerAddress();
    std::string authority;
    if (auto h = head.headers.get("host")) {
      authority = *h;
    } else {
      authority = ep_.authority;
    }
    NvList& nv = conn_->scratchNv();
    nv.clear();
    nv.add(":method", head.method);
    nv.add(":scheme", conn_->tls() ? "https" : "http");
    nv.add(":authority", authority);
    nv.add(":path", head.target);
    nv.append(head.headers);
    send_.end = end_stream;
    nghttp2_data_provider prd{};
    prd.read_callback = &Http2ClientConnection::readRequest;
    id_ = nghttp2_submit_request(conn_->session(), nullptr, nv.data(), nv.size(),
                                 end_stream ? nullptr : &prd, this);
    if (id_ < 0) {
      co_return UpstreamError::Reset;
    }
    conn_->attach(id_, this);
    conn_->flush();
    co_return UpstreamError::None;
  }

  awaitable<bool> sendBody(std::string_view data, bool end) override {
    while (!failed() && send_.pending() >= kRequestHighWater) {
      co_await send_wake_.wait();
    }
    if (failed()) {
      co_return false;
    }
    send_.buf.append(data);
    send_.end = end;
    resume();
    co_return true;
  }

  awaitable<bool> sendTrailers(const filters::HeaderMap& trailers) override {
    if (failed()) {
      co_return false;
    }
    send_.trailers.buildTrailers(trailers);
    send_.end = true;
    resume();
    co_return true;
  }

  awaitable<UpstreamError> readHead(filters::ResponseHead& head, bool& end) override {
    while (!got_head_ && !closed_ && !cancelled_) {
      co_await resp_wake_.wait();
    }
    if (!got_head_) {
      co_return header_budget_.over() ? UpstreamError::ProtocolError : UpstreamError::Reset;
    }
    swap(head, head_);
    end = resp_end_ && chunks_.empty();
    co_return UpstreamError::None;
  }

  awaitable<UpstreamError> readBody(std::string_view& data, bool& end) override {
    if (handed_out_) {  // the previous piece was passed on: give its window back
      handed_out_ = false;
      const size_t n = chunks_.front().size();
      chunks_.pop_front();
      unconsumed_ -= n;
      if (!closed_) {
        nghttp2_session_consume(conn_->session(), id_, n);
        conn_->flush();
      }
    }
    while (chunks_.empty() && !resp_end_ && !closed_ && !cancelled_) {
      co_await resp_wake_.wait();
    }
    if (cancelled_ || (chunks_.empty() && !resp_end_)) {
      co_return header_budget_.over() ? UpstreamError::ProtocolError : UpstreamError::Reset;
    }
    if (chunks_.empty()) {
      data = {};
      end = true;
      co_return UpstreamError::None;
    }
    data = chunks_.front();
    handed_out_ = true;
    end = resp_end_ && chunks_.size() == 1;
    co_return UpstreamError::None;
  }

  const filters::HeaderMap* trailers() const override {
    return trailers_.size() > 0 ? &trailers_ : nullptr;
  }

  void cancel() override {
    cancelled_ = true;
    if (conn_ && id_ > 0 && !closed_) {
      nghttp2_submit_rst_stream(conn_->session(), NGHTTP2_FLAG_NONE, id_, NGHTTP2_CANCEL);
      conn_->flush();
    }
    resp_wake_.notify();
    send_wake_.notify();
  }

  bool http2() const override { return true; }

 private:
  friend class Http2ClientConnection;

  bool failed() const { return cancelled_ || closed_ || !conn_; }
  void resume() {
    if (send_.takeDeferred()) {
      nghttp2_session_resume_data(conn_->session(), id_);
    }
    conn_->flush();
  }

  // nghttp2 callbacks, routed here by the connection. False: the block went over the limits
  // (nghttp2 then resets the stream and decodes the rest without calling back).
  bool onHeader(const nghttp2_frame* frame, std::string_view name, std::string_view value,
                const HeaderBlockLimits& limits) {
    if (!header_budget_.admit(name.size(), value.size(), limits)) {
      return false;
    }
    if (got_head_ && frame->headers.cat == NGHTTP2_HCAT_HEADERS) {
      trailers_.add(name, value);
      return true;
    }
    if (name == ":status") {
      int st = 0;
      std::from_chars(value.data(), value.data() + value.size(), st);
      pending_.status = st;
    } else if (!name.empty() && name.front() != ':') {
      pending_.headers.add(name, value);
    }
    return true;
  }
  void onHeadersEnd(bool end_stream) {
    if (!got_head_) {
      if (pending_.status >= 100 && pending_.status < 200) {
        pending_.clear();  // interim: the final head follows
        return;
      }
      swap(head_, pending_);
      got_head_ = true;
    }
    if (end_stream) {
      resp_end_ = true;
    }
    resp_wake_.notify();
  }
  void onData(const uint8_t* data, size_t len) {
    chunks_.emplace_back(reinterpret_cast<const char*>(data), len);
    unconsumed_ += len;
    resp_wake_.notify();
  }
  void onClose() {
    closed_ = true;
    resp_wake_.notify();
    send_wake_.notify();
  }

  Http2ClientPool& pool_;
  const upstream::Endpoint& ep_;
  upstream::ActiveRequest active_;  // this stream, for least_request
  std::shared_ptr<Http2ClientConnection> conn_;
  int32_t id_ = 0;

  OutgoingBody send_;

  HeaderBlockBudget header_budget_;  // of the block arriving: a head, or the trailers
  filters::ResponseHead pending_;
  filters::ResponseHead head_;
  bool got_head_ = false;
  std::deque<std::string> chunks_;
  bool handed_out_ = false;
  size_t unconsumed_ = 0;
  bool resp_end_ = false;
  filters::HeaderMap trailers_;

  bool closed_ = false;
  bool cancelled_ = false;
  Wakeup resp_wake_;
  Wakeup send_wake_;
};

// ---- connection callbacks ----

ssize_t Http2ClientConnection::readRequest(nghttp2_session* session, int32_t stream_id,
                                           uint8_t* buf, size_t length, uint32_t* flags,
                                           nghttp2_data_source*, void* ud) {
  Http2Call* call = self(ud).find(stream_id);
  if (call == nullptr) {
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  const ssize_t n = call->send_.read(session, stream_id, buf, length, flags);
  if (n > 0) {
    call->send_wake_.notify();  // room again
  }
  return n;
}

int Http2ClientConnection::onBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
  if (Http2Call* call = self(ud).find(frame->hd.stream_id)) {
    call->header_budget_.reset();  // each head (interim ones too) and the trailers on its own
  }
  return 0;
}

int Http2ClientConnection::onHeader(nghttp2_session*, const nghttp2_frame* frame,
                                    const uint8_t* name, size_t namelen, const uint8_t* value,
                                    size_t valuelen, uint8_t, void* ud) {
  auto& c = self(ud);
  Http2Call* call = c.find(frame->hd.stream_id);
  if (call != nullptr &&
      !call->onHeader(frame, {reinterpret_cast<const char*>(name), namelen},
                      {reinterpret_cast<const char*>(value), valuelen}, c.header_limits_)) {
    spdlog::debug("{}: HTTP/2 header block over {} bytes on stream {}: reset", c.peerAddress(),
                  c.header_limits_.max_bytes, frame->hd.stream_id);
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  return 0;
}

int Http2ClientConnection::onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
  auto& c = self(ud);
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    c.goaway_ = true;  // streams above last_stream_id are closed by nghttp2 (REFUSED_STREAM)
    return 0;
  }
  if (frame->hd.type == NGHTTP2_SETTINGS && (frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) {
    c.settings_seen_ = true;
    return 0;
  }
  Http2Call* call = c.find(frame->hd.stream_id);
  if (call == nullptr) {
    return 0;
  }
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS) {
    call->onHeadersEnd(end_stream);
  } else if (frame->hd.type == NGHTTP2_DATA && end_stream) {
    call->resp_end_ = true;
    call->resp_wake_.notify();
  }
  return 0;
}

int Http2ClientConnection::onDataChunk(nghttp2_session* session, uint8_t, int32_t stream_id,
                                       const uint8_t* data, size_t len, void* ud) {
  if (Http2Call* call = self(ud).find(stream_id)) {
    call->onData(data, len);
  } else {
    nghttp2_session_consume(session, stream_id, len);
  }
  return 0;
}

int Http2ClientConnection::onStreamClose(nghttp2_session* session, int32_t stream_id, uint32_t,
                                         void* ud) {
  auto& c = self(ud);
  if (Http2Call* call = c.find(stream_id)) {
    if (call->unconsumed_ > 0) {
      nghttp2_session_consume_connection(session, call->unconsumed_);
      call->unconsumed_ = 0;
    }
    call->onClose();
  }
  return 0;
}

void Http2ClientConnection::onClosed() {
  dead_ = true;
  flush();
  for (auto& [id, call] : streams_) {
    call->onClose();
  }
}

// ---- pool ----

Http2ClientPool::Http2ClientPool(asio::any_io_executor ex, upstream::ConnectionPool& tcp_pool)
    : ex_(std::move(ex)), tcp_pool_(tcp_pool) {
  conns_.resize(tcp_pool.cluster().endpoints->capacity());
  connecting_.resize(conns_.size());
  peer_max_.resize(conns_.size(), 100);  // nghttp2's own assumption before SETTINGS
}

Http2ClientPool::~Http2ClientPool() {
  for (auto& per : conns_) {
    for (auto& c : per) {
      c->shutdown();
    }
  }
}

size_t Http2ClientPool::connectionCount() const {
  size_t n = 0;
  for (const auto& per : conns_) {
    n += per.size();
  }
  return n;
}

// Callers that find no connection with room while one is being opened wait for it (up to its
// stream limit), so a burst of first requests makes one connect, not one each.
struct Http2ClientPool::Connecting {
  explicit Connecting(asio::any_io_executor ex) : done(ex, asio::steady_timer::time_point::max()) {}
  asio::steady_timer done;  // cancelled when the connect finished: wakes every waiter
  bool finished = false;
  uint32_t waiters = 0;
  std::shared_ptr<Http2ClientConnection> conn;
  filters::UpstreamResult::Error err = filters::UpstreamResult::Error::None;
  upstream::ConnectError cerr = upstream::ConnectError::None;
};

awaitable<std::shared_ptr<Http2ClientConnection>> Http2ClientPool::acquire(
    const upstream::Endpoint& ep, filters::UpstreamResult::Error& err,
    upstream::ConnectError& cerr_out) {
  const size_t idx = tcp_pool_.cluster().endpoints->indexOf(ep);
  auto& per = conns_[idx];
  std::erase_if(per, [](const auto& c) { return c->dead(); });
  const auto now = std::chrono::steady_clock::now();
  for (auto& c : per) {
    c->expireIfDue(*tcp_pool_.cluster().cfg, now);
    if (c->settingsSeen()) {
      peer_max_[idx] = c->maxStreams();
    }
  }
  for (auto& c : per) {
    if (c->usable() && c->hasRoom()) {
      c->reserveSlot();
      co_return c;
    }
  }
  if (auto pending = connecting_[idx]; pending && pending->waiters + 1 < peer_max_[idx]) {
    ++pending->waiters;
    while (!pending->finished) {
      error_code ec;
      co_await pending->done.async_wait(asio::redirect_error(use_awaitable, ec));
    }
    if (pending->conn && pending->conn->usable()) {
      pending->conn->reserveSlot();
      co_return pending->conn;
    }
    err = pending->err;
    cerr_out = pending->cerr;
    co_return nullptr;
  }
  auto pending = std::make_shared<Connecting>(ex_);
  connecting_[idx] = pending;
  upstream::ConnectError cerr;
  auto tcp = co_await tcp_pool_.connect(ep, cerr);
  if (tcp) {
    // An http1 pool (the egress cluster's, whose h2c destinations share it) counts a connection
    // as one active request; an HTTP/2 connection carries many, counted per stream. The count
    // also lives in the pool, which this connection may outlive at shutdown.
    tcp->active.end();
  }
  const bool tls = tcp_pool_.cluster().tls != nullptr;
  if (tcp && tls && tcp->alpn != "h2") {
    // The peer did not agree to HTTP/2: a configuration mismatch, reported like a failed
    // handshake rather than sent HTTP/2 frames it will not understand.
    spdlog::debug("{}: {} did not negotiate h2 (ALPN '{}')", tcp_pool_.cluster().cfg->name, ep.host,
                  tcp->alpn);
    tcp.reset();
    cerr = upstream::ConnectError::TlsHandshake;
  }
  if (tcp) {
    pending->conn = std::make_shared<Http2ClientConnection>(
        std::move(tcp), tls, peer_max_[idx], tcp_pool_.cluster().breakers,
        upstreamHeaderBlockLimits(), tcp_pool_.cluster().cfg->idle_timeout);
    pending->conn->start();
    pending->conn->reserveSlot();
    conns_[idx].push_back(pending->conn);
  } else {
    pending->cerr = cerr;
    pending->err = connectFailure(cerr);  // the mapping every attempt uses (upstream_call.h)
  }
  pending->finished = true;
  pending->done.cancel();
  if (connecting_[idx] == pending) {
    connecting_[idx].reset();
  }
  err = pending->err;
  cerr_out = pending->cerr;
  co_return pending->conn;
}

UpstreamCallPtr makeHttp2Call(Http2ClientPool& pool, const upstream::Endpoint& ep) {
  return UpstreamCallPtr(new Http2Call(pool, ep, pool.executor()));
}

}  // namespace sidetrace::proxy
