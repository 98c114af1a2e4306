#pragma once
// Blocking HTTP/2 test peers on nghttp2 (client side), for integration tests:
//  - H2Connection: one connection, h2c by prior knowledge or TLS with ALPN; many requests in
//    flight at once; reports per stream what came back (status, headers, body, trailers, a
//    RST_STREAM) and what the connection saw (GOAWAY, the peer's SETTINGS, close).
//  - H2RawConnection and the frame builders: arbitrary bytes and frames out, frames in, for abuse
//    tests a well-behaved library would refuse to produce (rapid reset, floods, garbage).
// Single-threaded: nothing happens on the wire except inside the calls below. nghttp2.h and
// OpenSSL stay in the .cc.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/integration/http_client.h"
#include "tests/integration/net.h"

namespace sidetrace::it {

// RFC 9113 §7 error codes and §6 frame types / settings the tests name.
namespace h2 {
constexpr uint32_t kNoError = 0x0;
constexpr uint32_t kProtocolError = 0x1;
constexpr uint32_t kInternalError = 0x2;
constexpr uint32_t kRefusedStream = 0x7;
constexpr uint32_t kCancel = 0x8;
constexpr uint32_t kEnhanceYourCalm = 0xb;

constexpr uint8_t kData = 0x0;
constexpr uint8_t kHeaders = 0x1;
constexpr uint8_t kRstStream = 0x3;
constexpr uint8_t kSettings = 0x4;
constexpr uint8_t kPing = 0x6;
constexpr uint8_t kGoaway = 0x7;
constexpr uint8_t kWindowUpdate = 0x8;
constexpr uint8_t kContinuation = 0x9;

constexpr uint8_t kFlagEndStream = 0x1;
constexpr uint8_t kFlagAck = 0x1;
constexpr uint8_t kFlagEndHeaders = 0x4;

constexpr uint16_t kSettingsMaxConcurrentStreams = 0x3;
constexpr uint16_t kSettingsInitialWindowSize = 0x4;
constexpr uint16_t kSettingsMaxHeaderListSize = 0x6;
}  // namespace h2

struct H2Request {
  std::string method = "GET";
  std::string path = "/";  // "" with method CONNECT: a plain CONNECT (no :scheme, no :path)
  std::string authority = "127.0.0.1";
  std::string scheme = "http";
  Headers headers;  // regular fields; names are lower-cased when sent
  std::string body;
  Headers trailers;  // sent in a HEADERS frame after the body when not empty
};

struct H2Response {
  int32_t stream_id = 0;
  int status = 0;   // final :status (1xx responses are skipped); 0 if none arrived
  Headers headers;  // the final header block without :status
  std::string body;
  Headers trailers;         // a header block after the final one
  bool end_stream = false;  // the peer ended the stream (END_STREAM on HEADERS or DATA)
  bool closed = false;      // the stream is closed, whichever way
  // Error code of a RST_STREAM the peer sent on this stream.
  std::optional<uint32_t> reset_code;
  // nghttp2's close code: 0 for a clean close, else the reset's code (ours or the peer's), or
  // REFUSED_STREAM for a stream above a GOAWAY's last stream id.
  uint32_t close_code = 0;

  std::optional<std::string> header(std::string_view name) const;
  std::optional<std::string> trailer(std::string_view name) const;
  // Complete: a final status, and the peer ended the stream without resetting it.
  bool ok() const { return status != 0 && end_stream && !reset_code; }
  std::string describe() const;  // one line for failure messages
};

struct H2Goaway {
  bool received = false;
  int count = 0;               // a graceful shutdown may send two
  int32_t last_stream_id = 0;  // of the latest one
  uint32_t error_code = 0;
  std::string debug_data;
};

struct H2ClientOptions {
  bool tls = false;
  std::string sni;      // TLS: "" sends none
  std::string ca_file;  // TLS: verify the chain (not the name) against it; "" = no check
  std::vector<std::string> alpn = {"h2"};  // TLS: protocols offered, in order
  // Our SETTINGS_INITIAL_WINDOW_SIZE and connection window: large, so big bodies arrive without
  // the test pumping in small steps.
  uint32_t window = 16 * 1024 * 1024;
};

class H2Connection {
 public:
  // Connects to 127.0.0.1:port, handshakes TLS if asked, and sends the connection preface and
  // SETTINGS. Check connected() (and error()).
  explicit H2Connection(uint16_t port, const H2ClientOptions& options = {});
  ~H2Connection();
  H2Connection(const H2Connection&) = delete;
  H2Connection& operator=(const H2Connection&) = delete;

  bool connected() const;
  const std::string& error() const { return error_; }
  std::string alpn() const;  // TLS: the negotiated protocol, "" if none

  // Queues a request and writes what can be written now; returns its stream id, or -1.
  int32_t submit(const H2Request& request);
  // Sends RST_STREAM with `code` on a stream we opened.
  bool reset(int32_t stream_id, uint32_t code = h2::kCancel);
  bool ping();

  // Reads and writes until every submitted stream closed (true), the connection ended, or the
  // timeout passed (false in both cases).
  bool run(Millis timeout = Millis(10000));
  // Reads and writes until done() holds (true), the connection ended, or the timeout passed.
  bool runUntil(const std::function<bool()>& done, Millis timeout);
  // Reads and writes for `d` (e.g. to give the peer a chance to answer something).
  void runFor(Millis d);

  // The stream's state so far (an empty response for an unknown id).
  const H2Response& response(int32_t stream_id) const;
  // submit() + run() for one request; nullopt if it did not close in time.
  std::optional<H2Response> request(const H2Request& request, Millis timeout = Millis(10000));
  // submit() all, run(), responses in the order of `requests`.
  std::vector<H2Response> requestAll(const std::vector<H2Request>& requests,
                                     Millis timeout = Millis(20000));

  const H2Goaway& goaway() const { return goaway_; }
  // SETTINGS the peer sent (id → latest value); an id it never sent is absent.
  const std::map<uint16_t, uint32_t>& peerSettings() const { return peer_settings_; }
  bool peerSettingsReceived() const { return peer_settings_frames_ > 0; }
  // The peer closed the TCP connection (or it failed).
  bool closedByPeer() const { return eof_; }
  // Waits until the peer closes the connection (answering its frames meanwhile).
  bool waitClosed(Millis timeout = Millis(3000));

 private:
  struct Impl;  // the socket, TLS and nghttp2 session; its callbacks fill the fields below
  bool flush();
  bool readOnce(Millis timeout);

  std::unique_ptr<Impl> impl_;
  std::string error_;
  H2Goaway goaway_;
  std::map<uint16_t, uint32_t> peer_settings_;
  int peer_settings_frames_ = 0;
  bool eof_ = false;
};

// One frame as read off the wire.
struct H2Frame {
  uint8_t type = 0;
  uint8_t flags = 0;
  int32_t stream_id = 0;
  std::string payload;

  // GOAWAY: last stream id and error code; RST_STREAM: error code.
  int32_t goawayLastStreamId() const;
  uint32_t errorCode() const;
  // SETTINGS: (id, value) pairs.
  std::vector<std::pair<uint16_t, uint32_t>> settings() const;
  std::string describe() const;
};

// Frame builders (RFC 9113 §4.1 layout) for H2RawConnection::send.
namespace h2frame {
std::string preface();  // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
std::string frame(uint8_t type, uint8_t flags, int32_t stream_id, std::string_view payload);
std::string settings(const std::vector<std::pair<uint16_t, uint32_t>>& values = {});
std::string settingsAck();
std::string ping(uint64_t opaque = 0, bool ack = false);
std::string windowUpdate(int32_t stream_id, uint32_t increment);
std::string rstStream(int32_t stream_id, uint32_t code);
std::string data(int32_t stream_id, std::string_view bytes, bool end_stream);
// A header block as HEADERS plus as many CONTINUATION frames as it takes at `frame_size` bytes
// each (END_HEADERS on the last; none at all when `end_headers` is false, so the block stays
// open).
std::string headerBlock(int32_t stream_id, std::string_view block, bool end_stream,
                        size_t frame_size = 16384, bool end_headers = true);
}  // namespace h2frame

// An HPACK encoder (nghttp2's deflater) keeping its dynamic table across the frames it builds,
// as one connection's encoder must.
class HpackEncoder {
 public:
  HpackEncoder();
  ~HpackEncoder();
  HpackEncoder(const HpackEncoder&) = delete;
  HpackEncoder& operator=(const HpackEncoder&) = delete;
  std::string encode(const Headers& fields);  // names as given (pseudo-headers first)
  // A complete HEADERS frame (END_HEADERS; END_STREAM if asked) for a request.
  std::string headersFrame(int32_t stream_id, const Headers& fields, bool end_stream);
  // GET `path` with :method, :scheme, :authority, :path.
  std::string requestFrame(int32_t stream_id, const std::string& path, bool end_stream = true,
                           const Headers& extra = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// An HPACK decoder (nghttp2's inflater) for the header blocks a peer sends on one connection, in
// the order they arrive.
class HpackDecoder {
 public:
  HpackDecoder();
  ~HpackDecoder();
  HpackDecoder(const HpackDecoder&) = delete;
  HpackDecoder& operator=(const HpackDecoder&) = delete;
  // The fields of one complete block; nullopt if it does not decode.
  std::optional<Headers> decode(std::string_view block);
  // The block of a HEADERS frame (padding and priority fields removed).
  static std::string_view blockOf(const H2Frame& headers_frame);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A plain TCP connection that speaks whatever bytes the test writes, and parses frames back.
class H2RawConnection {
 public:
  // recv_buffer > 0 sets SO_RCVBUF before connecting: a small one makes the proxy's writes to us
  // back up quickly when we stop reading (flood tests).
  explicit H2RawConnection(uint16_t port, int recv_buffer = 0);
  bool connected() const { return sock_.valid(); }

  // Sends everything; false if the peer closed or stopped reading for `stall` (then some bytes
  // may have been sent: see lastSent()).
  bool send(std::string_view bytes, Millis stall = Millis(5000));
  size_t lastSent() const { return last_sent_; }
  // preface() + settings(values).
  bool sendPreface(const std::vector<std::pair<uint16_t, uint32_t>>& values = {});

  // The next complete frame; nullopt on close (closed() turns true) or timeout.
  std::optional<H2Frame> readFrame(Millis timeout);
  // Reads frames until a GOAWAY arrives (returned) or the connection closes or the timeout
  // passes (nullopt). Every frame read is kept in frames().
  std::optional<H2Frame> readUntilGoaway(Millis timeout);
  // Reads frames until one matches; nullopt on close or timeout.
  std::optional<H2Frame> readUntil(const std::function<bool(const H2Frame&)>& match,
                                   Millis timeout);
  const std::vector<H2Frame>& frames() const { return frames_; }
  bool closed() const { return closed_; }
  TcpSocket& socket() { return sock_; }

 private:
  TcpSocket sock_;
  std::string buf_;
  std::vector<H2Frame> frames_;
  bool closed_ = false;
  size_t last_sent_ = 0;
};

}  // namespace sidetrace::it
