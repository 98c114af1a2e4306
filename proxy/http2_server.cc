#include "proxy/http2_server.h"

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <charconv>
#include <deque>
#include <map>

#include <spdlog/spdlog.h>

#include "filters/grpc.h"
#include "proxy/exchange.h"
#include "proxy/http2_transport.h"
#include "proxy/upstream_call.h"
#include "proxy/worker.h"
#include "upstream/cluster.h"
#include "upstream/socket_read.h"

namespace sidetrace::proxy {

namespace asio = boost::asio;
using asio::awaitable;

namespace {

// A client that resets at least this many streams, and at least half of all it opened, before
// their responses finished is abusing resets (Envoy's premature-reset heuristic).
constexpr uint64_t kPrematureResetFloor = 100;
// Response bytes buffered per stream before the exchange waits for nghttp2 to send them.
constexpr size_t kResponseHighWater = 64 * 1024;
// Finished streams a connection keeps for its next ones (their timers, header storage and buffers
// are set up already); a connection that goes idle lets them go.
constexpr size_t kSpareStreams = 16;

// RFC 9113 §5.1.1: a client opens streams in increasing order, and the ids it skips are closed
// for good, so a HEADERS that would open one of them is a connection error (nghttp2 1.52 ignores
// it silently). Ids below the highest opened are otherwise trailers or late frames of streams
// that were open, which nghttp2 handles. Remembers the last kMaxGaps ranges skipped (a client
// that opens 1, 3, 5... skips none); below the oldest, nghttp2's handling applies.
class SkippedStreamIds {
 public:
  // A HEADERS frame on `id`: false when it would open a stream the client skipped.
  bool admit(int32_t id) {
    if ((id & 1) == 0) {
      return true;  // not a client stream: nghttp2's error
    }
    if (id > highest_) {
      if (id > highest_ + 2) {
        gaps_[next_ % kMaxGaps] = {highest_ + 2, id - 2};
        ++next_;
      }
      highest_ = id;
      return true;
    }
    for (size_t i = 0; i < std::min(next_, kMaxGaps); ++i) {
      if (id >= gaps_[i].first && id <= gaps_[i].second) {
        return false;
      }
    }
    return true;
  }

 private:
  static constexpr size_t kMaxGaps = 8;
  int32_t highest_ = -1;  // so that stream 1 skips nothing
  std::array<std::pair<int32_t, int32_t>, kMaxGaps> gaps_{};
  size_t next_ = 0;
};

}  // namespace

// One stream: the request as nghttp2 delivered it, and the response on its way out.
template <class Io>
struct Http2ServerStream final : DownstreamSide {
  Http2ServerStream(Http2ServerConnection<Io>& c, int32_t stream_id, asio::any_io_executor ex)
      : conn(c), id(stream_id), req_wake(ex), resp_wake(ex), exchange_storage(ex) {}

  awaitable<bool> readBody(std::string_view& data, bool& end) override;
  void consumeBody(size_t n) override;
  const filters::HeaderMap* requestTrailers() override {
    return req_trailers.size() > 0 ? &req_trailers : nullptr;
  }
  bool bodyComplete() const override { return req_end; }
  awaitable<bool> sendHead(filters::ResponseHead& head, bool end) override;
  awaitable<bool> sendBody(std::string_view data, bool end) override;
  awaitable<bool> sendTrailers(filters::HeaderMap& trailers) override;
  void reset() override;
  // Wakes the exchange: reads end; a send still goes through when there is room for it (the
  // timeout's 504 must reach the client whole).
  void interrupt() override {
    interrupted = true;
    req_wake.notify();
    resp_wake.notify();
  }
  bool gone() const override { return closed && !resp_done; }
  ExchangeStorage& storage() override { return exchange_storage; }
  // Ready for a new stream `stream_id`, as if just made (but keeping its storage).
  void reuse(int32_t stream_id);

  Http2ServerConnection<Io>& conn;
  int32_t id;
  filters::Stream fs;
  uint64_t start_ns = 0;
  HeaderBlockBudget header_budget;  // of the block arriving: the head, later the trailers
  bool started = false;             // the exchange coroutine runs
  bool finished = false;            // the exchange is over: request bytes are consumed on arrival
  bool end_sent = false;            // our END_STREAM went out
  bool reset_queued = false;
  // Response bytes moved since the connection's last tick (a finished stream that moves none
  // for a whole tick is stalled: reset).
  bool progressed = true;

  // Request body: one chunk per DATA frame, so a view handed out stays valid while more arrive.
  std::deque<std::string> req_chunks;
  size_t unconsumed = 0;  // received, not yet given back as window credit
  bool req_end = false;
  filters::HeaderMap req_trailers;
  Wakeup req_wake;

  // Response body waiting for nghttp2's data source callback.
  OutgoingBody resp;
  bool resp_done = false;  // END_STREAM queued (nghttp2 read the last byte)
  Wakeup resp_wake;

  bool closed = false;  // nghttp2 closed the stream (done, or reset by either side)
  bool interrupted = false;
  ExchangeStorage exchange_storage;
};

template <class Io>
class Http2ServerConnection final : public Http2Transport<Io>,
                                    public std::enable_shared_from_this<Http2ServerConnection<Io>> {
  using Base = Http2Transport<Io>;
  using Stream = Http2ServerStream<Io>;

 public:
  Http2ServerConnection(Worker& worker, Io& io, asio::ip::tcp::socket& tcp, DownstreamInfo info)
      : Base(io, tcp),
        worker_(worker),
        info_(std::move(info)),
        done_wake_(tcp.get_executor()),
        tick_timer_(tcp.get_executor()),
        header_timer_(tcp.get_executor()) {
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, &onBeginFrame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &onBeginHeaders);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, &onFrameSend);
    nghttp2_session_callbacks_set_on_header_callback(cb, &onHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &onFrameRecv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &onDataChunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, &onStreamClose);
    nghttp2_option* opt = nullptr;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_session_server_new2(&this->session_, cb, this, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);

    const auto& limits = worker_.current()->config().limits;
    header_limits_ = headerBlockLimits(limits);
    idle_timeout_ = limits.idle_timeout;
    header_timeout_ = limits.request_header_timeout;
    this->write_timeout_ = limits.idle_timeout;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kHttp2StreamWindow)},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, limits.max_request_headers_bytes},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    nghttp2_submit_settings(this->session_, NGHTTP2_FLAG_NONE, iv, std::size(iv));
    nghttp2_session_set_local_window_size(this->session_, NGHTTP2_FLAG_NONE, 0,
                                          kHttp2ConnectionWindow);
  }

  awaitable<void> run(std::string_view preread) {
    auto self = this->shared_from_this();
    armTick();
    bool writer_done = false;
    asio::co_spawn(
        this->tcp_.get_executor(),
        [self, &writer_done]() -> awaitable<void> {
          co_await self->writeLoop();
          writer_done = true;
          self->done_wake_.notify();
        },
        asio::detached);
    if (preread.empty() ||
        this->feed(reinterpret_cast<const uint8_t*>(preread.data()), preread.size())) {
      co_await this->readLoop();
    }
    // The connection is over (or winding down after GOAWAY): streams still running lose their
    // client; wake them so they end, then wait for them and the writer.
    while (!writer_done) {
      co_await done_wake_.wait();
    }
    this->dead_ = true;
    for (auto& [sid, st] : streams_) {
      st->closed = true;
      if (st->active_upstream != nullptr) {
        cancelUpstream(*st);
      }
      st->interrupt();
    }
    while (running_ > 0) {
      co_await done_wake_.wait();
    }
    streams_.clear();
    spare_.clear();
    tick_timer_.cancel();
    header_timer_.cancel();
  }

  void drain() {
    if (this->dead_ || draining_) {
      return;
    }
    draining_ = true;
    nghttp2_submit_goaway(this->session_, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(this->session_), NGHTTP2_NO_ERROR,
                          nullptr, 0);
    this->flush();
  }

  nghttp2_session* session() { return this->session_; }

 private:
  friend struct Http2ServerStream<Io>;

  static Http2ServerConnection& self(void* user_data) {
    return *static_cast<Http2ServerConnection*>(user_data);
  }
  Stream* find(int32_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
  }
  void cancelUpstream(Stream& st);

  // Every limits.idle_timeout: GOAWAY when no stream was open for a whole tick (idle), and
  // RST_STREAM for each stream whose exchange is over but whose response moved no byte for a
  // whole tick (a client that opens no flow-control window). Streams whose exchange runs are
  // bounded by its deadline (the route timeout).
  void armTick() {
    tick_timer_.expires_after(idle_timeout_);
    tick_timer_.async_wait([self = this->shared_from_this()](boost::system::error_code ec) {
      if (ec || self->dead_) {
        return;
      }
      self->tick();
      self->armTick();
    });
  }

  void tick() {
    if (streams_.empty() && running_ == 0 && !busy_since_tick_) {
      drain();
    }
    busy_since_tick_ = !streams_.empty() || running_ > 0;
    if (!busy_since_tick_) {
      spare_.clear();
    }
    for (auto& [sid, st] : streams_) {
      if (st->finished && !st->progressed && !st->closed) {
        spdlog::debug("{}: HTTP/2 stream {} of {} took no response bytes in {} ms: reset",
                      listenerName(), sid, info_.peer_address, idle_timeout_.count());
        resetStream(*st, NGHTTP2_CANCEL);
      }
      st->progressed = false;
    }
  }

  // A header block (HEADERS and its CONTINUATIONs) must be complete within
  // limits.request_header_timeout, as an HTTP/1 head must: until it is, no other frame may come
  // (RFC 9113 §6.10), so a client that stops mid-block stalls the whole connection. GOAWAY
  // (NO_ERROR, last stream id below the unfinished one, so the client may retry it) and close.
  void headerBlock(bool open) {
    if (open && !header_block_open_) {
      header_timer_.expires_after(header_timeout_);
      header_timer_.async_wait([self = this->shared_from_this()](boost::system::error_code ec) {
        if (ec || self->dead_ || !self->header_block_open_) {
          return;
        }
        spdlog::debug("{}: HTTP/2 client {} did not finish a header block in {} ms: GOAWAY",
                      self->listenerName(), self->info_.peer_address,
                      self->header_timeout_.count());
        self->worker_.mutableStats().bad_requests.fetch_add(1, std::memory_order_relaxed);
        nghttp2_session_terminate_session2(self->session_, self->last_started_, NGHTTP2_NO_ERROR);
        self->stopReading();
      });
    } else if (!open && header_block_open_) {
      header_timer_.cancel();
    }
    header_block_open_ = open;
  }

  // After a terminating GOAWAY was queued: read nothing more; the writer sends it and closes.
  void stopReading() {
    this->stop_reading_ = true;
    this->flush();
  }

  const std::string& listenerName() const {
    return worker_.current()->config().listeners[info_.listener_index].name;
  }

  static int onBeginFrame(nghttp2_session* session, const nghttp2_frame_hd* hd, void* ud) {
    auto& c = self(ud);
    if (hd->type == NGHTTP2_HEADERS && !c.stream_ids_.admit(hd->stream_id)) {
      spdlog::debug("{}: HTTP/2 client {} sent HEADERS on skipped stream {}: GOAWAY",
                    c.listenerName(), c.info_.peer_address, hd->stream_id);
      nghttp2_session_terminate_session(session, NGHTTP2_PROTOCOL_ERROR);
      c.stopReading();
      return 0;
    }
    // Frames of a block are contiguous: any other frame means the block ended (nghttp2 does not
    // report the CONTINUATIONs of a block it ignores).
    const bool block = hd->type == NGHTTP2_HEADERS || hd->type == NGHTTP2_CONTINUATION;
    c.headerBlock(block && (hd->flags & NGHTTP2_FLAG_END_HEADERS) == 0);
    return 0;
  }

  static int onBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
    auto& c = self(ud);
    if (c.stop_reading_ || frame->hd.type != NGHTTP2_HEADERS) {
      return 0;
    }
    if (frame->headers.cat == NGHTTP2_HCAT_HEADERS) {  // trailers: a budget of their own
      if (Stream* st = c.find(frame->hd.stream_id)) {
        st->header_budget.reset();
      }
      return 0;
    }
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
      return 0;
    }
    c.busy_since_tick_ = true;
    auto st = c.newStream(frame->hd.stream_id);
    st->start_ns = c.worker_.tracer().now();
    c.streams_.emplace(frame->hd.stream_id, std::move(st));
    ++c.streams_total_;
    return 0;
  }

  // Fields over limits.max_request_headers_bytes are not stored: a head over it is answered 431,
  // a trailer section over it resets the stream (onFrameRecv).
  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name_p,
                      size_t namelen, const uint8_t* value_p, size_t valuelen, uint8_t, void* ud) {
    auto& c = self(ud);
    Stream* st = c.find(frame->hd.stream_id);
    if (st == nullptr || !st->header_budget.admit(namelen, valuelen, c.header_limits_)) {
      return 0;
    }
    std::string_view name(reinterpret_cast<const char*>(name_p), namelen);
    std::string_view value(reinterpret_cast<const char*>(value_p), valuelen);
    if (frame->headers.cat == NGHTTP2_HCAT_HEADERS) {  // trailers (nghttp2 checked the order)
      st->req_trailers.add(name, value);
      return 0;
    }
    auto& req = st->fs.request;
    if (name == ":method") {
      req.method = value;
    } else if (name == ":path") {
      req.target = value;
    } else if (name == ":authority") {
      req.headers.set("host", value);  // :authority wins over a Host header (RFC 9113 8.3.1)
    } else if (name == ":scheme" || name == ":protocol") {
      // the listener knows its scheme; extended CONNECT is not enabled
    } else if (name == "host") {
      if (!req.headers.get("host")) {
        req.headers.add(name, value);
      }
    } else {
      req.headers.add(name, value);
    }
    return 0;
  }

  static int onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
    auto& c = self(ud);
    Stream* st = c.find(frame->hd.stream_id);
    if (st == nullptr) {
      return 0;
    }
    const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      st->req_end = end_stream;
      c.startStream(c.streams_.at(frame->hd.stream_id));
    } else if (frame->hd.type == NGHTTP2_HEADERS && st->header_budget.over()) {
      spdlog::debug("{}: HTTP/2 client {} sent trailers over {} bytes on stream {}: reset",
                    c.listenerName(), c.info_.peer_address, c.header_limits_.max_bytes, st->id);
      c.worker_.mutableStats().bad_requests.fetch_add(1, std::memory_order_relaxed);
      st->req_trailers.clear();
      c.resetStream(*st, NGHTTP2_ENHANCE_YOUR_CALM);
    } else if (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) {
      if (end_stream) {
        st->req_end = true;
        st->req_wake.notify();
      }
    }
    return 0;
  }

  // Our END_STREAM went out: a request the client is still sending is cut short with
  // RST_STREAM NO_ERROR once the exchange is over (RFC 9113 §8.1), rather than holding the stream
  // open on the client's word.
  static int onFrameSend(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
    auto& c = self(ud);
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
      return 0;
    }
    if (Stream* st = c.find(frame->hd.stream_id)) {
      st->end_sent = true;
      c.endIfAnswered(*st);
    }
    return 0;
  }

  void endIfAnswered(Stream& st) {
    if (st.finished && st.end_sent && !st.req_end) {
      resetStream(st, NGHTTP2_NO_ERROR);
    }
  }

  void resetStream(Stream& st, uint32_t code) {
    if (!st.closed && !st.reset_queued) {
      st.reset_queued = true;
      nghttp2_submit_rst_stream(this->session_, NGHTTP2_FLAG_NONE, st.id, code);
      this->flush();
    }
  }

  static int onDataChunk(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data,
                         size_t len, void* ud) {
    auto& c = self(ud);
    Stream* st = c.find(stream_id);
    if (st == nullptr || st->finished || !st->started) {
      nghttp2_session_consume(session, stream_id, len);  // nobody will read it
      return 0;
    }
    st->req_chunks.emplace_back(reinterpret_cast<const char*>(data), len);
    st->unconsumed += len;
    st->req_wake.notify();
    return 0;
  }

  static int onStreamClose(nghttp2_session* session, int32_t stream_id, uint32_t error_code,
                           void* ud) {
    auto& c = self(ud);
    auto it = c.streams_.find(stream_id);
    if (it == c.streams_.end()) {
      return 0;
    }
    auto st = std::move(it->second);
    c.streams_.erase(it);
    // The exchange may still run (it holds the stream); the last holder recycles it.
    RecycleWhenLast recycle{c, st};
    st->closed = true;
    if (st->unconsumed > 0) {
      nghttp2_session_consume_connection(session, st->unconsumed);
      st->unconsumed = 0;
    }
    if (!st->resp_done) {
      if (error_code != NGHTTP2_NO_ERROR) {
        ++c.premature_resets_;
      }
      if (st->active_upstream != nullptr) {
        c.cancelUpstream(*st);
      }
    }
    st->interrupt();
    return 0;
  }

  // The data source of every response: copies what the exchange buffered.
  static ssize_t readResponse(nghttp2_session* session, int32_t stream_id, uint8_t* buf,
                              size_t length, uint32_t* flags, nghttp2_data_source*, void* ud) {
    auto& c = self(ud);
    Stream* st = c.find(stream_id);
    if (st == nullptr) {
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    const ssize_t n = st->resp.read(session, stream_id, buf, length, flags);
    if (n > 0) {
      st->progressed = true;
      st->resp_wake.notify();  // room again
    }
    if ((*flags & NGHTTP2_DATA_FLAG_EOF) != 0) {
      st->resp_done = true;
    }
    return n;
  }

  void afterFeed() override {
    if (premature_resets_ >= kPrematureResetFloor && premature_resets_ * 2 >= streams_total_ &&
        !calmed_) {
      calmed_ = true;
      spdlog::debug("{}: HTTP/2 client {} reset {} of {} streams early: GOAWAY", listenerName(),
                    info_.peer_address, premature_resets_, streams_total_);
      nghttp2_session_terminate_session(this->session_, NGHTTP2_ENHANCE_YOUR_CALM);
      this->stop_reading_ = true;
    }
  }

  void startStream(const std::shared_ptr<Stream>& st) {
    last_started_ = std::max(last_started_, st->id);
    if (st->header_budget.over()) {
      // Answer on this stream only; the connection (and its HPACK state) stays good.
      static const std::string_view kBody = "Request Header Fields Too Large\n";
      worker_.mutableStats().bad_requests.fetch_add(1, std::memory_order_relaxed);
      st->resp.buf.assign(kBody);
      st->resp.end = true;
      filters::HeaderMap h;
      h.add("content-type", "text/plain");
      NvList& nv = this->scratchNv();
      nv.build(h, 431);
      nghttp2_data_provider prd{};
      prd.read_callback = &readResponse;
      nghttp2_submit_response(this->session_, st->id, nv.data(), nv.size(), &prd);
      st->finished = true;
      st->header_budget.reset();  // trailers may follow and get a budget of their own
      return;
    }
    st->started = true;
    ++running_;
    asio::co_spawn(
        this->tcp_.get_executor(),
        [self = this->shared_from_this(), st]() mutable { return self->runStream(std::move(st)); },
        asio::detached);
  }

  awaitable<void> runStream(std::shared_ptr<Stream> st) {
    auto gen = worker_.current();  // the stream keeps the generation it started on
    auto& fs = st->fs;
    fs.listener = &gen->config().listeners[info_.listener_index];
    fs.listener_index = info_.listener_index;
    fs.peer_address = info_.peer_address;
    fs.peer_port = info_.peer_port;
    fs.local_port = info_.local_port;
    fs.original_dst = info_.original_dst;
    fs.scheme = info_.tls ? "https" : "http";
    fs.http2 = true;
    fs.grpc = filters::isGrpcRequest(fs.request);
    // DATA may have arrived (even all of it) before this coroutine ran: "no body" only when the
    // request ended with nothing buffered.
    const bool no_body = st->req_end && st->req_chunks.empty();
    co_await runExchange(worker_, *gen, fs, *st, no_body, st->start_ns);
    st->finished = true;
    if (st->unconsumed > 0 && !st->closed) {
      nghttp2_session_consume(this->session_, st->id, st->unconsumed);
      st->unconsumed = 0;
    }
    st->req_chunks.clear();
    if (!st->resp.end) {
      resetStream(*st, NGHTTP2_INTERNAL_ERROR);  // the exchange gave up mid-response
    } else {
      endIfAnswered(*st);
    }
    this->flush();
    if (--running_ == 0) {
      done_wake_.notify();
    }
    recycle(std::move(st));
  }

  std::shared_ptr<Stream> newStream(int32_t id) {
    if (spare_.empty()) {
      return std::make_shared<Stream>(*this, id, this->tcp_.get_executor());
    }
    auto st = std::move(spare_.back());
    spare_.pop_back();
    st->reuse(id);
    return st;
  }
  // Keeps a stream nobody else holds any more (closed by nghttp2, exchange over) for the next one.
  void recycle(std::shared_ptr<Stream> st) {
    if (st.use_count() == 1 && st->closed && spare_.size() < kSpareStreams && !this->dead_) {
      spare_.push_back(std::move(st));
    }
  }
  struct RecycleWhenLast {
    Http2ServerConnection& c;
    std::shared_ptr<Stream>& st;
    ~RecycleWhenLast() { c.recycle(std::move(st)); }
  };

  Worker& worker_;
  DownstreamInfo info_;
  std::map<int32_t, std::shared_ptr<Stream>> streams_;
  std::vector<std::shared_ptr<Stream>> spare_;
  Wakeup done_wake_;  // the writer ended, or the last stream did
  asio::steady_timer tick_timer_;
  asio::steady_timer header_timer_;
  std::chrono::milliseconds idle_timeout_{0};
  std::chrono::milliseconds header_timeout_{0};
  bool busy_since_tick_ = false;  // a stream was open at some point since the last tick
  bool header_block_open_ = false;
  size_t running_ = 0;
  int32_t last_started_ = 0;  // the highest stream whose head arrived whole
  HeaderBlockLimits header_limits_;
  SkippedStreamIds stream_ids_;
  uint64_t streams_total_ = 0;
  uint64_t premature_resets_ = 0;
  bool calmed_ = false;
  bool draining_ = false;
};

template <class Io>
void Http2ServerConnection<Io>::cancelUpstream(Stream& st) {
  st.active_upstream->cancel();
}

// ---- the stream as the exchange sees it ----

template <class Io>
void Http2ServerStream<Io>::reuse(int32_t stream_id) {
  id = stream_id;
  fs.reset();
  start_ns = 0;
  header_budget.reset();
  started = false;
  finished = false;
  end_sent = false;
  reset_queued = false;
  progressed = true;
  req_chunks.clear();
  unconsumed = 0;
  req_end = false;
  req_trailers.clear();
  req_wake.reset();
  resp.reset();
  resp_done = false;
  resp_wake.reset();
  closed = false;
  interrupted = false;
  exchange_storage.response.clear();
  active_upstream = nullptr;
  upgrade = false;
}

template <class Io>
awaitable<bool> Http2ServerStream<Io>::readBody(std::string_view& data, bool& end) {
  for (;;) {
    if (interrupted || (closed && !req_end)) {
      co_return false;
    }
    if (!req_chunks.empty()) {
      data = req_chunks.front();
      end = req_end && req_chunks.size() == 1;
      co_return true;
    }
    if (req_end) {
      data = {};
      end = true;
      co_return true;
    }
    co_await req_wake.wait();
  }
}

template <class Io>
void Http2ServerStream<Io>::consumeBody(size_t n) {
  if (n == 0 || req_chunks.empty()) {
    return;
  }
  req_chunks.pop_front();  // readBody hands out one whole chunk at a time
  unconsumed -= std::min(unconsumed, n);
  if (!closed) {
    nghttp2_session_consume(conn.session(), id, n);
    conn.flush();
  }
}

template <class Io>
awaitable<bool> Http2ServerStream<Io>::sendHead(filters::ResponseHead& head, bool end) {
  if (closed) {
    co_return false;
  }
  NvList& nv = conn.scratchNv();
  nv.build(head.headers, head.status);
  if (end) {
    resp.end = true;
    resp_done = true;
    nghttp2_submit_response(conn.session(), id, nv.data(), nv.size(), nullptr);
  } else {
    nghttp2_data_provider prd{};
    prd.read_callback = &Http2ServerConnection<Io>::readResponse;
    nghttp2_submit_response(conn.session(), id, nv.data(), nv.size(), &prd);
  }
  conn.flush();
  co_return true;
}

template <class Io>
awaitable<bool> Http2ServerStream<Io>::sendBody(std::string_view data, bool end) {
  while (!closed && !interrupted && resp.pending() >= kResponseHighWater) {
    co_await resp_wake.wait();
  }
  if (closed || resp.pending() >= kResponseHighWater) {
    co_return false;  // gone, or interrupted while the client took nothing
  }
  resp.buf.append(data);
  resp.end = end;
  if (resp.takeDeferred()) {
    nghttp2_session_resume_data(conn.session(), id);
  }
  conn.flush();
  co_return true;
}

template <class Io>
awaitable<bool> Http2ServerStream<Io>::sendTrailers(filters::HeaderMap& trailers) {
  if (closed) {
    co_return false;
  }
  resp.trailers.buildTrailers(trailers);
  resp.end = true;
  if (resp.takeDeferred()) {
    nghttp2_session_resume_data(conn.session(), id);
  }
  conn.flush();
  co_return true;
}

template <class Io>
void Http2ServerStream<Io>::reset() {
  conn.resetStream(*this, NGHTTP2_INTERNAL_ERROR);
}

// ---- Http2Server ----

template <class Io>
Http2Server<Io>::Http2Server(Worker& worker, Io& io, asio::ip::tcp::socket& tcp,
                             DownstreamInfo info)
    : conn_(std::make_shared<Http2ServerConnection<Io>>(worker, io, tcp, std::move(info))) {}

template <class Io>
Http2Server<Io>::~Http2Server() = default;

template <class Io>
awaitable<void> Http2Server<Io>::run(std::string_view preread) {
  co_await conn_->run(preread);
}

template <class Io>
void Http2Server<Io>::drain() {
  conn_->drain();
}

template class Http2Server<asio::ip::tcp::socket>;
template class Http2Server<asio::ssl::stream<upstream::DrainAwareSocket>>;

}  // namespace sidetrace::proxy
