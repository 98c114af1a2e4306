#include "tests/integration/h2_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace sidetrace::it {

namespace {

using Clock = std::chrono::steady_clock;

Millis leftUntil(Clock::time_point deadline) {
  return std::max(Millis(0), std::chrono::duration_cast<Millis>(deadline - Clock::now()));
}

// poll() one fd, retrying on EINTR: >0 ready, 0 timeout, <0 error.
int pollFd(int fd, short events, Millis timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, static_cast<int>(leftUntil(deadline).count()));
    if (rc < 0 && errno == EINTR) {
      continue;
    }
    return rc;
  }
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return s;
}

Headers lowerNames(const Headers& in) {
  Headers out;
  for (const auto& [k, v] : in) {
    out.emplace_back(lower(k), v);
  }
  return out;
}

std::vector<nghttp2_nv> toNv(const Headers& fields) {
  std::vector<nghttp2_nv> nv;
  for (const auto& [k, v] : fields) {
    nv.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(k.data())),
                  reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), k.size(), v.size(),
                  NGHTTP2_NV_FLAG_NONE});
  }
  return nv;
}

std::optional<std::string> find(const Headers& h, std::string_view name) {
  for (const auto& [k, v] : h) {
    if (iequals(k, name)) {
      return v;
    }
  }
  return std::nullopt;
}

std::string openSslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += (out.empty() ? "" : "; ") + std::string(buf);
  }
  return out;
}

void put32(std::string& out, uint32_t v) {
  out += static_cast<char>((v >> 24) & 0xff);
  out += static_cast<char>((v >> 16) & 0xff);
  out += static_cast<char>((v >> 8) & 0xff);
  out += static_cast<char>(v & 0xff);
}

uint32_t get32(std::string_view s, size_t at) {
  auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(s[at + i])); };
  return (b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3);
}

// One request's state: what is left to send and what came back. Owned by Impl::streams, so the
// pointer nghttp2 holds (stream user data, data source) stays valid.
struct StreamState {
  std::string body;
  size_t offset = 0;
  Headers trailers;
  H2Response response;
  bool block_is_trailers = false;  // the header block being received follows a final status
};

const H2Response& emptyResponse() {
  static const H2Response r;
  return r;
}

}  // namespace

std::optional<std::string> H2Response::header(std::string_view name) const {
  return find(headers, name);
}

std::optional<std::string> H2Response::trailer(std::string_view name) const {
  return find(trailers, name);
}

std::string H2Response::describe() const {
  std::string out = "stream " + std::to_string(stream_id) + ": status " + std::to_string(status) +
                    ", " + std::to_string(body.size()) + " body bytes, end_stream " +
                    (end_stream ? "yes" : "no") + ", closed " + (closed ? "yes" : "no");
  if (reset_code) {
    out += ", RST_STREAM " + std::to_string(*reset_code);
  }
  if (close_code != 0) {
    out += ", close code " + std::to_string(close_code);
  }
  return out;
}

struct H2Connection::Impl {
  H2Connection* owner = nullptr;
  TcpSocket sock;
  SSL_CTX* ctx = nullptr;
  SSL* ssl = nullptr;
  nghttp2_session* session = nullptr;
  std::map<int32_t, std::unique_ptr<StreamState>> streams;
  bool broken = false;  // nghttp2 gave up on the connection (our side)

  ~Impl() {
    if (session != nullptr) {
      nghttp2_session_del(session);
    }
    if (ssl != nullptr) {
      SSL_free(ssl);
    }
    if (ctx != nullptr) {
      SSL_CTX_free(ctx);
    }
  }

  static StreamState* stream(nghttp2_session* s, int32_t id) {
    return static_cast<StreamState*>(nghttp2_session_get_stream_user_data(s, id));
  }

  bool writeAll(const uint8_t* data, size_t len) {
    if (ssl == nullptr) {
      return sock.sendAll(std::string_view(reinterpret_cast<const char*>(data), len));
    }
    while (len > 0) {
      int n = SSL_write(ssl, data, static_cast<int>(len));
      if (n > 0) {
        data += n;
        len -= static_cast<size_t>(n);
        continue;
      }
      int err = SSL_get_error(ssl, n);
      if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
        if (pollFd(sock.fd(), err == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN, Millis(10000)) <= 0) {
          return false;
        }
        continue;
      }
      ERR_clear_error();
      return false;
    }
    return true;
  }

  TcpSocket::ReadResult readSome(std::string& out, Millis timeout) {
    if (ssl == nullptr) {
      return sock.recvSome(out, timeout);
    }
    auto deadline = Clock::now() + timeout;
    for (;;) {
      char buf[16384];
      int n = SSL_read(ssl, buf, sizeof buf);
      if (n > 0) {
        out.append(buf, static_cast<size_t>(n));
        return TcpSocket::ReadResult::Data;
      }
      int err = SSL_get_error(ssl, n);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        int rc =
            pollFd(sock.fd(), err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, leftUntil(deadline));
        if (rc == 0) {
          return TcpSocket::ReadResult::Timeout;
        }
        if (rc < 0) {
          return TcpSocket::ReadResult::Error;
        }
        continue;
      }
      ERR_clear_error();
      return TcpSocket::ReadResult::Closed;  // close_notify, EOF, reset or alert
    }
  }

  // --- nghttp2 callbacks (user_data is the Impl) ---

  static int onBeginHeaders(nghttp2_session* s, const nghttp2_frame* frame, void*) {
    if (frame->hd.type == NGHTTP2_HEADERS) {
      if (StreamState* st = stream(s, frame->hd.stream_id)) {
        st->block_is_trailers = st->response.status >= 200;
      }
    }
    return 0;
  }

  static int onHeader(nghttp2_session* s, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void*) {
    if (frame->hd.type != NGHTTP2_HEADERS) {
      return 0;
    }
    StreamState* st = stream(s, frame->hd.stream_id);
    if (st == nullptr) {
      return 0;
    }
    std::string k(reinterpret_cast<const char*>(name), namelen);
    std::string v(reinterpret_cast<const char*>(value), valuelen);
    if (st->block_is_trailers) {
      st->response.trailers.emplace_back(std::move(k), std::move(v));
    } else if (k == ":status") {
      int status = std::atoi(v.c_str());
      if (status >= 200) {
        st->response.status = status;
        st->response.headers.clear();
      }
    } else if (st->response.status >= 200) {
      st->response.headers.emplace_back(std::move(k), std::move(v));
    }
    return 0;
  }

  static int onDataChunk(nghttp2_session* s, uint8_t, int32_t stream_id, const uint8_t* data,
                         size_t len, void*) {
    if (StreamState* st = stream(s, stream_id)) {
      st->response.body.append(reinterpret_cast<const char*>(data), len);
    }
    return 0;
  }

  static int onFrameRecv(nghttp2_session* s, const nghttp2_frame* frame, void* user_data) {
    auto* self = static_cast<Impl*>(user_data);
    H2Connection& c = *self->owner;
    StreamState* st = frame->hd.stream_id != 0 ? stream(s, frame->hd.stream_id) : nullptr;
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS:
      case NGHTTP2_DATA:
        if (st != nullptr && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
          st->response.end_stream = true;
        }
        break;
      case NGHTTP2_RST_STREAM:
        if (st != nullptr) {
          st->response.reset_code = frame->rst_stream.error_code;
        }
        break;
      case NGHTTP2_GOAWAY:
        c.goaway_.received = true;
        ++c.goaway_.count;
        c.goaway_.last_stream_id = frame->goaway.last_stream_id;
        c.goaway_.error_code = frame->goaway.error_code;
        c.goaway_.debug_data.assign(reinterpret_cast<const char*>(frame->goaway.opaque_data),
                                    frame->goaway.opaque_data_len);
        break;
      case NGHTTP2_SETTINGS:
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) {
          ++c.peer_settings_frames_;
          for (size_t i = 0; i < frame->settings.niv; ++i) {
            c.peer_settings_[static_cast<uint16_t>(frame->settings.iv[i].settings_id)] =
                frame->settings.iv[i].value;
          }
        }
        break;
      default:
        break;
    }
    return 0;
  }

  static int onStreamClose(nghttp2_session* s, int32_t stream_id, uint32_t error_code, void*) {
    if (StreamState* st = stream(s, stream_id)) {
      st->response.closed = true;
      st->response.close_code = error_code;
    }
    return 0;
  }

  static int onError(nghttp2_session*, int, const char* msg, size_t len, void* user_data) {
    auto* self = static_cast<Impl*>(user_data);
    self->owner->error_ = "nghttp2: " + std::string(msg, len);
    return 0;
  }

  static ssize_t readBody(nghttp2_session* s, int32_t stream_id, uint8_t* buf, size_t length,
                          uint32_t* data_flags, nghttp2_data_source* source, void*) {
    auto* st = static_cast<StreamState*>(source->ptr);
    size_t n = std::min(length, st->body.size() - st->offset);
    std::memcpy(buf, st->body.data() + st->offset, n);
    st->offset += n;
    if (st->offset == st->body.size()) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!st->trailers.empty()) {
        *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        auto nv = toNv(st->trailers);
        if (nghttp2_submit_trailer(s, stream_id, nv.data(), nv.size()) != 0) {
          return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
      }
    }
    return static_cast<ssize_t>(n);
  }
};

H2Connection::H2Connection(uint16_t port, const H2ClientOptions& o)
    : impl_(std::make_unique<Impl>()) {
  ::signal(SIGPIPE, SIG_IGN);
  impl_->owner = this;
  if (!impl_->sock.connect(port)) {
    error_ = "connect failed";
    return;
  }
  if (o.tls) {
    // Handshake blocking (with timeouts), as tls_client.cc does; the session runs non-blocking.
    int fd = impl_->sock.fd();
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ERR_clear_error();
    impl_->ctx = SSL_CTX_new(TLS_client_method());
    if (!o.ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(impl_->ctx, o.ca_file.c_str(), nullptr) != 1) {
        error_ = "loading the CA file failed: " + openSslErrors();
        impl_->sock.close();
        return;
      }
      SSL_CTX_set_verify(impl_->ctx, SSL_VERIFY_PEER, nullptr);
    }
    std::string protos;
    for (const auto& p : o.alpn) {
      protos += static_cast<char>(p.size());
      protos += p;
    }
    if (!protos.empty()) {
      SSL_CTX_set_alpn_protos(impl_->ctx, reinterpret_cast<const unsigned char*>(protos.data()),
                              static_cast<unsigned>(protos.size()));
    }
    impl_->ssl = SSL_new(impl_->ctx);
    SSL_set_fd(impl_->ssl, fd);
    if (!o.sni.empty()) {
      SSL_set_tlsext_host_name(impl_->ssl, o.sni.c_str());
    }
    if (SSL_connect(impl_->ssl) != 1) {
      error_ = "TLS handshake failed: " + openSslErrors();
      impl_->sock.close();
      return;
    }
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }

  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &Impl::onBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs, &Impl::onHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &Impl::onDataChunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Impl::onFrameRecv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &Impl::onStreamClose);
  nghttp2_session_callbacks_set_error_callback2(cbs, &Impl::onError);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  // Tests send oversized header lists on purpose; the peer is the one to refuse them.
  nghttp2_option_set_max_send_header_block_length(opt, 1024 * 1024);
  nghttp2_session_client_new2(&impl_->session, cbs, impl_.get(), opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);

  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                 {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000},
                                 {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, o.window}};
  nghttp2_submit_settings(impl_->session, NGHTTP2_FLAG_NONE, iv, 3);
  nghttp2_session_set_local_window_size(impl_->session, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(o.window));
  if (!flush()) {
    error_ = "sending the connection preface failed";
  }
}

H2Connection::~H2Connection() = default;

bool H2Connection::connected() const {
  return impl_->sock.valid() && impl_->session != nullptr;
}

std::string H2Connection::alpn() const {
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  if (impl_->ssl != nullptr) {
    SSL_get0_alpn_selected(impl_->ssl, &p, &len);
  }
  return p == nullptr ? "" : std::string(reinterpret_cast<const char*>(p), len);
}

bool H2Connection::flush() {
  if (!connected() || eof_) {
    return false;
  }
  for (;;) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(impl_->session, &data);
    if (n < 0) {
      error_ = std::string("nghttp2_session_mem_send: ") + nghttp2_strerror(static_cast<int>(n));
      impl_->broken = true;
      return false;
    }
    if (n == 0) {
      return true;
    }
    if (!impl_->writeAll(data, static_cast<size_t>(n))) {
      eof_ = true;
      return false;
    }
  }
}

int32_t H2Connection::submit(const H2Request& r) {
  if (!connected()) {
    return -1;
  }
  Headers fields = {
      {":method", r.method}, {":scheme", r.scheme}, {":authority", r.authority}, {":path", r.path}};
  if (r.authority.empty()) {
    fields.erase(fields.begin() + 2);
  }
  if (r.method == "CONNECT" && r.path.empty()) {  // RFC 9113 §8.5: :method and :authority only
    fields = {{":method", r.method}, {":authority", r.authority}};
  }
  for (auto& f : lowerNames(r.headers)) {
    fields.push_back(std::move(f));
  }
  auto nv = toNv(fields);
  auto st = std::make_unique<StreamState>();
  st->body = r.body;
  st->trailers = lowerNames(r.trailers);
  nghttp2_data_provider provider{};
  provider.source.ptr = st.get();
  provider.read_callback = &Impl::readBody;
  bool has_data = !r.body.empty() || !r.trailers.empty();
  int32_t id = nghttp2_submit_request(impl_->session, nullptr, nv.data(), nv.size(),
                                      has_data ? &provider : nullptr, st.get());
  if (id < 0) {
    error_ = std::string("nghttp2_submit_request: ") + nghttp2_strerror(id);
    return -1;
  }
  st->response.stream_id = id;
  impl_->streams[id] = std::move(st);
  flush();
  return id;
}

bool H2Connection::reset(int32_t stream_id, uint32_t code) {
  if (!connected() ||
      nghttp2_submit_rst_stream(impl_->session, NGHTTP2_FLAG_NONE, stream_id, code) != 0) {
    return false;
  }
  return flush();
}

bool H2Connection::ping() {
  if (!connected() || nghttp2_submit_ping(impl_->session, NGHTTP2_FLAG_NONE, nullptr) != 0) {
    return false;
  }
  return flush();
}

bool H2Connection::readOnce(Millis timeout) {
  std::string in;
  auto r = impl_->readSome(in, timeout);
  if (r == TcpSocket::ReadResult::Closed || r == TcpSocket::ReadResult::Error) {
    eof_ = true;
  }
  if (!in.empty()) {
    ssize_t n = nghttp2_session_mem_recv(impl_->session,
                                         reinterpret_cast<const uint8_t*>(in.data()), in.size());
    if (n < 0) {
      error_ = std::string("nghttp2_session_mem_recv: ") + nghttp2_strerror(static_cast<int>(n));
      impl_->broken = true;
    }
  }
  if (!eof_ && !impl_->broken) {
    flush();
  }
  return r == TcpSocket::ReadResult::Data;
}

bool H2Connection::runUntil(const std::function<bool()>& done, Millis timeout) {
  if (!connected()) {
    return false;
  }
  auto deadline = Clock::now() + timeout;
  flush();
  while (!done()) {
    if (eof_ || impl_->broken ||
        (nghttp2_session_want_read(impl_->session) == 0 &&
         nghttp2_session_want_write(impl_->session) == 0)) {
      return done();
    }
    if (Clock::now() >= deadline) {
      return false;
    }
    readOnce(leftUntil(deadline));
  }
  return true;
}

bool H2Connection::run(Millis timeout) {
  return runUntil(
      [this] {
        for (const auto& [id, st] : impl_->streams) {
          if (!st->response.closed) {
            return false;
          }
        }
        return true;
      },
      timeout);
}

void H2Connection::runFor(Millis d) {
  runUntil([] { return false; }, d);
}

bool H2Connection::waitClosed(Millis timeout) {
  auto deadline = Clock::now() + timeout;
  while (connected() && !eof_ && Clock::now() < deadline) {
    readOnce(leftUntil(deadline));
  }
  return eof_;
}

const H2Response& H2Connection::response(int32_t stream_id) const {
  auto it = impl_->streams.find(stream_id);
  return it == impl_->streams.end() ? emptyResponse() : it->second->response;
}

std::optional<H2Response> H2Connection::request(const H2Request& r, Millis timeout) {
  int32_t id = submit(r);
  if (id < 0) {
    return std::nullopt;
  }
  if (!runUntil([&] { return response(id).closed; }, timeout)) {
    return std::nullopt;
  }
  return response(id);
}

std::vector<H2Response> H2Connection::requestAll(const std::vector<H2Request>& requests,
                                                 Millis timeout) {
  std::vector<int32_t> ids;
  for (const auto& r : requests) {
    ids.push_back(submit(r));
  }
  run(timeout);
  std::vector<H2Response> out;
  for (int32_t id : ids) {
    out.push_back(response(id));
  }
  return out;
}

// --- frames ---

int32_t H2Frame::goawayLastStreamId() const {
  return payload.size() >= 4 ? static_cast<int32_t>(get32(payload, 0) & 0x7fffffffu) : -1;
}

uint32_t H2Frame::errorCode() const {
  if (type == h2::kGoaway && payload.size() >= 8) {
    return get32(payload, 4);
  }
  if (type == h2::kRstStream && payload.size() >= 4) {
    return get32(payload, 0);
  }
  return 0xffffffffu;
}

std::vector<std::pair<uint16_t, uint32_t>> H2Frame::settings() const {
  std::vector<std::pair<uint16_t, uint32_t>> out;
  for (size_t i = 0; i + 6 <= payload.size(); i += 6) {
    uint16_t id = static_cast<uint16_t>((static_cast<unsigned char>(payload[i]) << 8) |
                                        static_cast<unsigned char>(payload[i + 1]));
    out.emplace_back(id, get32(payload, i + 2));
  }
  return out;
}

std::string H2Frame::describe() const {
  static const char* kNames[] = {"DATA",          "HEADERS",      "PRIORITY", "RST_STREAM",
                                 "SETTINGS",      "PUSH_PROMISE", "PING",     "GOAWAY",
                                 "WINDOW_UPDATE", "CONTINUATION"};
  std::string out = type < 10 ? kNames[type] : "type " + std::to_string(type);
  out += " stream " + std::to_string(stream_id) + " flags " + std::to_string(flags) + " len " +
         std::to_string(payload.size());
  if (type == h2::kGoaway || type == h2::kRstStream) {
    out += " error " + std::to_string(errorCode());
  }
  return out;
}

namespace h2frame {

std::string preface() {
  return std::string(NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN);
}

std::string frame(uint8_t type, uint8_t flags, int32_t stream_id, std::string_view payload) {
  std::string out;
  size_t len = payload.size();
  out += static_cast<char>((len >> 16) & 0xff);
  out += static_cast<char>((len >> 8) & 0xff);
  out += static_cast<char>(len & 0xff);
  out += static_cast<char>(type);
  out += static_cast<char>(flags);
  put32(out, static_cast<uint32_t>(stream_id) & 0x7fffffffu);
  out.append(payload);
  return out;
}

std::string settings(const std::vector<std::pair<uint16_t, uint32_t>>& values) {
  std::string p;
  for (const auto& [id, v] : values) {
    p += static_cast<char>(id >> 8);
    p += static_cast<char>(id & 0xff);
    put32(p, v);
  }
  return frame(h2::kSettings, 0, 0, p);
}

std::string settingsAck() {
  return frame(h2::kSettings, h2::kFlagAck, 0, "");
}

std::string ping(uint64_t opaque, bool ack) {
  std::string p;
  put32(p, static_cast<uint32_t>(opaque >> 32));
  put32(p, static_cast<uint32_t>(opaque));
  return frame(h2::kPing, ack ? h2::kFlagAck : 0, 0, p);
}

std::string windowUpdate(int32_t stream_id, uint32_t increment) {
  std::string p;
  put32(p, increment & 0x7fffffffu);
  return frame(h2::kWindowUpdate, 0, stream_id, p);
}

std::string rstStream(int32_t stream_id, uint32_t code) {
  std::string p;
  put32(p, code);
  return frame(h2::kRstStream, 0, stream_id, p);
}

std::string data(int32_t stream_id, std::string_view bytes, bool end_stream) {
  return frame(h2::kData, end_stream ? h2::kFlagEndStream : 0, stream_id, bytes);
}

std::string headerBlock(int32_t stream_id, std::string_view block, bool end_stream,
                        size_t frame_size, bool end_headers) {
  std::string out;
  size_t off = 0;
  do {
    const size_t n = std::min(frame_size, block.size() - off);
    const bool last = off + n == block.size();
    uint8_t flags = last && end_headers ? h2::kFlagEndHeaders : 0;
    if (off == 0 && end_stream) {
      flags |= h2::kFlagEndStream;
    }
    out +=
        frame(off == 0 ? h2::kHeaders : h2::kContinuation, flags, stream_id, block.substr(off, n));
    off += n;
  } while (off < block.size());
  return out;
}

}  // namespace h2frame

struct HpackEncoder::Impl {
  nghttp2_hd_deflater* deflater = nullptr;
};

HpackEncoder::HpackEncoder() : impl_(std::make_unique<Impl>()) {
  nghttp2_hd_deflate_new(&impl_->deflater, 4096);
}

HpackEncoder::~HpackEncoder() {
  nghttp2_hd_deflate_del(impl_->deflater);
}

std::string HpackEncoder::encode(const Headers& fields) {
  auto nv = toNv(fields);
  std::string out(nghttp2_hd_deflate_bound(impl_->deflater, nv.data(), nv.size()), '\0');
  ssize_t n = nghttp2_hd_deflate_hd(impl_->deflater, reinterpret_cast<uint8_t*>(out.data()),
                                    out.size(), nv.data(), nv.size());
  out.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return out;
}

std::string HpackEncoder::headersFrame(int32_t stream_id, const Headers& fields, bool end_stream) {
  uint8_t flags = h2::kFlagEndHeaders | (end_stream ? h2::kFlagEndStream : 0);
  return h2frame::frame(h2::kHeaders, flags, stream_id, encode(fields));
}

std::string HpackEncoder::requestFrame(int32_t stream_id, const std::string& path, bool end_stream,
                                       const Headers& extra) {
  Headers fields = {
      {":method", "GET"}, {":scheme", "http"}, {":authority", "127.0.0.1"}, {":path", path}};
  fields.insert(fields.end(), extra.begin(), extra.end());
  return headersFrame(stream_id, fields, end_stream);
}

struct HpackDecoder::Impl {
  nghttp2_hd_inflater* inflater = nullptr;
};

HpackDecoder::HpackDecoder() : impl_(std::make_unique<Impl>()) {
  nghttp2_hd_inflate_new(&impl_->inflater);
}

HpackDecoder::~HpackDecoder() {
  nghttp2_hd_inflate_del(impl_->inflater);
}

std::optional<Headers> HpackDecoder::decode(std::string_view block) {
  Headers out;
  auto* in = reinterpret_cast<const uint8_t*>(block.data());
  size_t left = block.size();
  for (;;) {
    nghttp2_nv nv;
    int flags = 0;
    ssize_t n = nghttp2_hd_inflate_hd2(impl_->inflater, &nv, &flags, in, left, 1);
    if (n < 0) {
      return std::nullopt;
    }
    in += n;
    left -= static_cast<size_t>(n);
    if ((flags & NGHTTP2_HD_INFLATE_EMIT) != 0) {
      out.emplace_back(std::string(reinterpret_cast<const char*>(nv.name), nv.namelen),
                       std::string(reinterpret_cast<const char*>(nv.value), nv.valuelen));
    }
    if ((flags & NGHTTP2_HD_INFLATE_FINAL) != 0) {
      nghttp2_hd_inflate_end_headers(impl_->inflater);
      return out;
    }
    if (n == 0 && left == 0) {
      return std::nullopt;  // truncated
    }
  }
}

std::string_view HpackDecoder::blockOf(const H2Frame& f) {
  std::string_view p = f.payload;
  size_t pad = 0;
  if ((f.flags & 0x8) != 0 && !p.empty()) {  // PADDED
    pad = static_cast<unsigned char>(p[0]);
    p.remove_prefix(1);
  }
  if ((f.flags & 0x20) != 0 && p.size() >= 5) {  // PRIORITY
    p.remove_prefix(5);
  }
  return p.substr(0, p.size() >= pad ? p.size() - pad : 0);
}

// --- raw connection ---

H2RawConnection::H2RawConnection(uint16_t port, int recv_buffer) {
  ::signal(SIGPIPE, SIG_IGN);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return;
  }
  if (recv_buffer > 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &recv_buffer, sizeof recv_buffer);
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return;
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  sock_ = TcpSocket(fd);
}

bool H2RawConnection::send(std::string_view bytes, Millis stall) {
  last_sent_ = 0;
  while (last_sent_ < bytes.size()) {
    ssize_t n = ::send(sock_.fd(), bytes.data() + last_sent_, bytes.size() - last_sent_,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      last_sent_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (pollFd(sock_.fd(), POLLOUT, stall) <= 0) {
        return false;  // the peer stopped reading
      }
      continue;
    }
    return false;  // closed or reset
  }
  return true;
}

bool H2RawConnection::sendPreface(const std::vector<std::pair<uint16_t, uint32_t>>& values) {
  return send(h2frame::preface() + h2frame::settings(values));
}

std::optional<H2Frame> H2RawConnection::readFrame(Millis timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (buf_.size() >= 9) {
      size_t len = (static_cast<size_t>(static_cast<unsigned char>(buf_[0])) << 16) |
                   (static_cast<size_t>(static_cast<unsigned char>(buf_[1])) << 8) |
                   static_cast<unsigned char>(buf_[2]);
      if (buf_.size() >= 9 + len) {
        H2Frame f;
        f.type = static_cast<uint8_t>(buf_[3]);
        f.flags = static_cast<uint8_t>(buf_[4]);
        f.stream_id = static_cast<int32_t>(get32(buf_, 5) & 0x7fffffffu);
        f.payload = buf_.substr(9, len);
        buf_.erase(0, 9 + len);
        frames_.push_back(f);
        return f;
      }
    }
    if (closed_ || !sock_.valid()) {
      return std::nullopt;
    }
    Millis left = leftUntil(deadline);
    if (left.count() == 0) {
      return std::nullopt;
    }
    auto r = sock_.recvSome(buf_, left);
    if (r == TcpSocket::ReadResult::Closed || r == TcpSocket::ReadResult::Error) {
      closed_ = true;
    }
  }
}

std::optional<H2Frame> H2RawConnection::readUntil(const std::function<bool(const H2Frame&)>& match,
                                                  Millis timeout) {
  auto deadline = Clock::now() + timeout;
  while (auto f = readFrame(leftUntil(deadline))) {
    if (match(*f)) {
      return f;
    }
  }
  return std::nullopt;
}

std::optional<H2Frame> H2RawConnection::readUntilGoaway(Millis timeout) {
  return readUntil([](const H2Frame& f) { return f.type == h2::kGoaway; }, timeout);
}

}  // namespace sidetrace::it
