#pragma once
// The byte side shared by both HTTP/2 codecs. nghttp2 does the protocol (framing, HPACK, flow
// control, SETTINGS, stream states, most abuse limits); this class owns the socket: one reader
// coroutine feeding nghttp2_session_mem_recv, one writer coroutine draining
// nghttp2_session_mem_send whenever something was submitted (flush()). Both run on the worker
// thread, so nghttp2 is never entered concurrently.
//
// Flow control is manual (NO_AUTO_WINDOW_UPDATE): window credit goes back only when a stream's
// bytes were passed on, so a slow peer on the other side holds the sender back (back-pressure),
// and memory per stream stays bounded by its window. A write the peer does not take within
// write_timeout_ ends the connection.

#include <utility>  // before asio (DEPENDENCIES.md 1)

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "filters/http_message.h"
#include "proxy/header_block_limits.h"
#include "proxy/wakeup.h"
#include "upstream/deadline.h"
#include "upstream/socket_read.h"

namespace sidetrace::proxy {

// Windows we advertise (both directions, both codecs): enough for line rate on loopback while
// bounding buffered bytes per stream and per connection.
inline constexpr int32_t kHttp2StreamWindow = 256 * 1024;
inline constexpr int32_t kHttp2ConnectionWindow = 1024 * 1024;

// A header block for one nghttp2 submit: lower-case names (HTTP/2 requires them), without the
// fields HTTP/2 forbids (connection-specific ones, Host, pseudo-headers from the other side; TE
// unless "trailers"). nghttp2 copies the block when it is submitted, so entries point straight at
// the strings of the HeaderMap (which must live until then); only a name with upper-case letters
// gets a lowered copy. A trailer section is submitted later, from a data source callback, after
// the map it came from is gone: buildTrailers() copies every byte. One list is reused from submit
// to submit, so a usual head allocates nothing.
class NvList {
 public:
  // `status` != 0 puts ":status" first (a response head).
  void build(const filters::HeaderMap& headers, int status = 0) {
    clear();
    if (status != 0) {
      status_[0] = static_cast<char>('0' + status / 100 % 10);
      status_[1] = static_cast<char>('0' + status / 10 % 10);
      status_[2] = static_cast<char>('0' + status % 10);
      add(":status", std::string_view(status_, 3));
    }
    append(headers);
  }
  // A trailer section: also without what no trailer section may carry (allowedInTrailers).
  void buildTrailers(const filters::HeaderMap& trailers) {
    clear();
    append(trailers, true);
  }
  // Adds the allowed fields of `headers` after what is there (e.g. a request's pseudo-headers).
  // `trailers`: a trailer section, which is also copied.
  void append(const filters::HeaderMap& headers, bool trailers = false) {
    for (const auto& h : headers) {
      if (trailers && !filters::allowedInTrailers(h.name)) {
        continue;
      }
      std::string_view name = h.name;
      const bool upper = hasUpper(name);
      if (upper) {
        const size_t off = keep(name);
        for (size_t i = off; i < off + name.size(); ++i) {
          char& c = arena_[i];
          c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
        }
        name = std::string_view(arena_).substr(off, name.size());
      }
      if (forbidden(name, h.value)) {
        continue;
      }
      if (trailers) {
        push(upper ? Place::Kept : Place::Keep, name, Place::Keep, h.value);
      } else {
        push(upper ? Place::Kept : Place::Outside, name, Place::Outside, h.value);
      }
    }
  }
  // `name` and `value` must live until the block is submitted.
  void add(std::string_view name, std::string_view value) {
    push(Place::Outside, name, Place::Outside, value);
  }
  void clear() {
    arena_.clear();
    nv_.clear();
    kept_.clear();
  }
  // Pointers into the arena are taken here, once it stopped growing.
  const nghttp2_nv* data() {
    for (const auto& k : kept_) {
      auto* base = reinterpret_cast<uint8_t*>(arena_.data());
      if (k.name) {
        nv_[k.index].name = base + reinterpret_cast<uintptr_t>(nv_[k.index].name);
      }
      if (k.value) {
        nv_[k.index].value = base + reinterpret_cast<uintptr_t>(nv_[k.index].value);
      }
    }
    kept_.clear();
    return nv_.data();
  }
  size_t size() const { return nv_.size(); }
  bool empty() const { return nv_.empty(); }

  // By length first: every field of every head asks.
  static bool forbidden(std::string_view lower_name, std::string_view value) {
    switch (lower_name.size()) {
      case 0:
        return true;
      case 2:
        return lower_name == "te" && value != "trailers";
      case 4:
        return lower_name == "host";
      case 7:
        return lower_name == "upgrade";
      case 10:
        return lower_name == "connection" || lower_name == "keep-alive";
      case 16:
        return lower_name == "proxy-connection";
      case 17:
        return lower_name == "transfer-encoding";
      default:
        return lower_name.front() == ':';
    }
  }
  // Whether `name` has an ASCII upper-case letter, eight bytes at a time (filters::upperAscii8).
  static bool hasUpper(std::string_view name) {
    uint64_t found = 0;
    size_t i = 0;
    for (; i + 8 <= name.size(); i += 8) {
      uint64_t w;
      std::memcpy(&w, name.data() + i, 8);
      found |= filters::upperAscii8(w);
    }
    if (i < name.size()) {
      uint64_t w = 0;  // zero bytes past the end are not letters
      std::memcpy(&w, name.data() + i, name.size() - i);
      found |= filters::upperAscii8(w);
    }
    return found != 0;
  }

 private:
  // Where an entry's bytes are: outside (the caller's), already in the arena, or to be copied.
  enum class Place { Outside, Kept, Keep };
  struct KeptEntry {
    size_t index;
    bool name;
    bool value;
  };

  size_t keep(std::string_view bytes) {
    const size_t off = arena_.size();
    arena_.append(bytes);
    return off;
  }
  // Arena entries hold their offset until data() turns it into a pointer.
  uint8_t* place(Place where, std::string_view bytes) {
    if (where == Place::Outside) {
      return reinterpret_cast<uint8_t*>(const_cast<char*>(bytes.data()));
    }
    const size_t off =
        where == Place::Keep ? keep(bytes) : static_cast<size_t>(bytes.data() - arena_.data());
    return reinterpret_cast<uint8_t*>(off);
  }
  // Fields whose value is new on every message (the trace context sidetrace injects, request
  // ids): indexing them would cost both ends an insertion into the HPACK dynamic table (hashing,
  // an allocation) and evict entries that do repeat, for a value never sent again. Lower-case.
  static bool uniquePerMessage(std::string_view name) {
    switch (name.size()) {
      case 2:
        return name == "b3";
      case 11:
        return name == "traceparent" || name == "x-b3-spanid";
      case 12:
        return name == "x-request-id" || name == "x-b3-traceid";
      case 17:
        return name == "x-b3-parentspanid";
      default:
        return false;
    }
  }
  void push(Place name_at, std::string_view name, Place value_at, std::string_view value) {
    nghttp2_nv nv{
        place(name_at, name), place(value_at, value), name.size(), value.size(),
        uniquePerMessage(name) ? uint8_t{NGHTTP2_NV_FLAG_NO_INDEX} : uint8_t{NGHTTP2_NV_FLAG_NONE}};
    if (name_at != Place::Outside || value_at != Place::Outside) {
      kept_.push_back({nv_.size(), name_at != Place::Outside, value_at != Place::Outside});
    }
    nv_.push_back(nv);
  }

  std::string arena_;
  std::vector<nghttp2_nv> nv_;
  std::vector<KeptEntry> kept_;
  char status_[3] = {};
};

// A body on its way out through an nghttp2 data source (a response downstream, a request
// upstream): the codec appends, nghttp2's read callback takes, and an empty queue defers the
// stream until the next append resumes it. Trailers, when set, follow the last byte.
struct OutgoingBody {
  std::string buf;
  size_t off = 0;
  bool end = false;       // nothing more will be appended
  bool deferred = false;  // nghttp2 was told "nothing yet"
  NvList trailers;

  size_t pending() const { return buf.size() - off; }
  void reset() {
    buf.clear();
    off = 0;
    end = false;
    deferred = false;
    trailers.clear();
  }
  // The data source callback's work: copies up to `length` bytes into `out`; at the end sets
  // EOF (and submits the trailers); with nothing to give, defers.
  ssize_t read(nghttp2_session* session, int32_t stream_id, uint8_t* out, size_t length,
               uint32_t* flags) {
    const size_t avail = pending();
    const size_t n = std::min(avail, length);
    if (n > 0) {
      std::memcpy(out, buf.data() + off, n);
      off += n;
      if (off == buf.size()) {
        buf.clear();
        off = 0;
      }
    }
    if (n == avail && end) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!trailers.empty()) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_submit_trailer(session, stream_id, trailers.data(), trailers.size());
      }
      return static_cast<ssize_t>(n);
    }
    if (n == 0) {
      deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    return static_cast<ssize_t>(n);
  }
  // After an append: true when nghttp2 must be told to ask again (nghttp2_session_resume_data).
  bool takeDeferred() { return std::exchange(deferred, false); }
};

// `Io` is a tcp::socket, an ssl::stream<tcp::socket>, or anything with the same async_read_some /
// async_write_some; `tcp` is its lowest layer (cancelled to stop the loops).
template <class Io>
class Http2Transport {
 public:
  Http2Transport(Io& io, boost::asio::ip::tcp::socket& tcp)
      : io_(io), tcp_(tcp), write_wake_(tcp.get_executor()), write_deadline_(tcp.get_executor()) {
    write_deadline_.watch(&tcp_);
  }
  virtual ~Http2Transport() {
    if (session_ != nullptr) {
      nghttp2_session_del(session_);
    }
  }
  Http2Transport(const Http2Transport&) = delete;
  Http2Transport& operator=(const Http2Transport&) = delete;

  // Something was submitted (or window credit given back): let the writer send it.
  void flush() { write_wake_.notify(); }
  bool dead() const { return dead_; }
  // For a head submitted at once (nghttp2 copies it): one list reused by every stream.
  NvList& scratchNv() { return scratch_nv_; }
  // Stop both loops now (peer gone, fatal error, shutdown).
  void kill() {
    dead_ = true;
    boost::system::error_code ec;
    tcp_.cancel(ec);
    flush();
  }

 protected:
  // Feeds bytes already read (e.g. the h2c preface the HTTP/1 sniffing read). False on a fatal
  // protocol error: nghttp2 has queued GOAWAY, and reading stops.
  bool feed(const uint8_t* data, size_t len) {
    ssize_t rv = nghttp2_session_mem_recv(session_, data, len);
    flush();
    if (rv < 0) {
      stop_reading_ = true;
      return false;
    }
    afterFeed();
    return !stop_reading_;
  }
  virtual void afterFeed() {}

  // Until EOF, an error, or neither side wants more.
  boost::asio::awaitable<void> readLoop() {
    if (!rbuf_) {
      // Not zero-filled: only the pages reads land in become resident.
      rbuf_ = std::make_unique_for_overwrite<uint8_t[]>(kReadBytes);
    }
    while (!dead_ && !stop_reading_ && wantsIo()) {
      boost::system::error_code ec;
      size_t n = co_await upstream::asyncReadSome(
          io_, boost::asio::buffer(rbuf_.get(), kReadBytes),
          boost::asio::redirect_error(boost::asio::use_awaitable, ec));
      if (ec) {
        if (!stop_reading_) {
          dead_ = true;  // EOF or reset: nothing more can be sent either
        }
        break;
      }
      if (!feed(rbuf_.get(), n)) {
        break;
      }
    }
    stop_reading_ = true;
    flush();
  }

  // Sends whatever nghttp2 has queued; ends when reading stopped and nothing is left to send.
  boost::asio::awaitable<void> writeLoop() {
    while (!dead_) {
      if (nghttp2_session_want_write(session_) != 0) {
        wbuf_.clear();
        while (wbuf_.size() < 64 * 1024) {
          const uint8_t* data = nullptr;
          ssize_t n = nghttp2_session_mem_send(session_, &data);
          if (n < 0) {
            dead_ = true;
            break;
          }
          if (n == 0) {
            break;
          }
          wbuf_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
        }
        if (!wbuf_.empty()) {
          boost::system::error_code ec;
          if (write_timeout_.count() > 0) {
            write_deadline_.arm(write_timeout_);
          }
          co_await boost::asio::async_write(
              io_, boost::asio::buffer(wbuf_),
              boost::asio::redirect_error(boost::asio::use_awaitable, ec));
          write_deadline_.disarm();
          if (ec) {
            dead_ = true;  // also a peer that took nothing for write_timeout_
          }
        }
        continue;
      }
      if (stop_reading_ || !wantsIo()) {
        break;
      }
      co_await write_wake_.wait();
    }
    // The reader may be parked on a read that no longer matters.
    stop_reading_ = true;
    boost::system::error_code ec;
    tcp_.cancel(ec);
  }

  bool wantsIo() const {
    return nghttp2_session_want_read(session_) != 0 || nghttp2_session_want_write(session_) != 0;
  }

  nghttp2_session* session_ = nullptr;
  // A write the peer does not take within this long ends the connection (0: no limit). Without
  // it a peer that stops reading holds the connection, and every stream on it, forever.
  std::chrono::milliseconds write_timeout_{0};
  Io& io_;
  boost::asio::ip::tcp::socket& tcp_;
  bool dead_ = false;
  bool stop_reading_ = false;

 private:
  static constexpr size_t kReadBytes = 16 * 1024;
  Wakeup write_wake_;
  upstream::Deadline write_deadline_;
  std::unique_ptr<uint8_t[]> rbuf_;
  std::string wbuf_;
  NvList scratch_nv_;
};

}  // namespace sidetrace::proxy
