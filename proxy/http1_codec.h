#pragma once
// HTTP/1.x codec over llhttp. It does no I/O: bytes go in through feed(), and what they meant comes
// back as one FeedResult (head complete, body pieces, message complete, upgrade, error). The same
// class parses requests (downstream) and responses (upstream). llhttp stays out of this header.
//
// Contract of feed(): consumes bytes up to the end of the input or the end of the current message,
// whichever comes first (it pauses at each message end so pipelined requests are handled one at a
// time). Body pieces point into the caller's input and stay valid until the caller changes it.
//
// Strictness beyond llhttp's strict mode: obs-fold, and a bare LF as the empty line that ends the
// head or a chunked trailer section (llhttp 8.1 accepts that one line ending), are errors; so is a
// request without exactly one Host field (RFC 9112 §3.2: none is allowed only in HTTP/1.0), and a
// request whose Transfer-Encoding does not end in chunked or that is HTTP/1.0 with one (RFC 9112
// §6.1, §6.3).
// Trailers of a chunked message are parsed into trailers(), bounded by the same limits as the head
// (bytes and number of fields, each checked as the fields arrive: a head over either is never
// held whole). The head alone frames a message: framing or connection fields in a trailer
// section change neither chunked() nor keepAlive() nor what llhttp expects next.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "filters/http_message.h"

namespace sidetrace::proxy {

enum class ParseError {
  None,
  BadRequest,       // any grammar or framing violation (incl. smuggling shapes) → 400
  HeadersTooLarge,  // head, or chunked trailer section, over the byte or field limit → 431
};

struct FeedResult {
  size_t consumed = 0;
  bool head_complete = false;          // the head (request or response line + headers) finished now
  std::vector<std::string_view> body;  // body bytes decoded from this input, de-chunked
  bool message_complete = false;
  bool upgrade = false;  // the message ended and the connection switches protocol; rest is raw
  ParseError error = ParseError::None;
  std::string error_reason;
};

class Http1Parser {
 public:
  enum class Kind { Request, Response };
  static constexpr uint32_t kNoFieldLimit = UINT32_MAX;
  Http1Parser(Kind kind, uint32_t max_head_bytes, uint32_t max_fields = kNoFieldLimit);
  ~Http1Parser();
  Http1Parser(const Http1Parser&) = delete;
  Http1Parser& operator=(const Http1Parser&) = delete;

  FeedResult feed(const char* data, size_t len);
  // The same into `into`, which is overwritten; its body list keeps its capacity (a caller that
  // feeds every response of a connection allocates none per message).
  void feed(const char* data, size_t len, FeedResult& into);
  // After a 101 or CONNECT, or when the caller saw the end of the stream (EOF).
  // Returns true when EOF legitimately ends a close-delimited message.
  bool finishOnEof();

  // Valid after head_complete.
  filters::RequestHead& request() { return request_; }
  filters::ResponseHead& response() { return response_; }
  bool chunked() const;                           // Transfer-Encoding: chunked
  std::optional<uint64_t> contentLength() const;  // when framed by Content-Length
  bool keepAlive() const;     // llhttp_should_keep_alive for the current message
  bool bodyUntilEof() const;  // response framed by connection close
  bool inMessage() const { return in_message_; }
  // The trailer fields of a chunked message, as received, once message_complete was reported
  // (empty when none); cleared when the next message begins. appendLastChunk() decides which may
  // be forwarded.
  const filters::HeaderMap& trailers() const { return trailers_; }
  bool bytesSeen() const { return head_bytes_ > 0; }

  // Response parsers must know when the request was HEAD (no body follows the head).
  void setNoBody(bool v) { no_body_ = v; }
  // Back to the start state for a fresh connection (keeps allocations).
  void reset();
  // A pooled parser taken for a connection under a reloaded config (between messages).
  void setLimits(uint32_t max_head_bytes, uint32_t max_fields) {
    max_head_bytes_ = max_head_bytes;
    max_fields_ = max_fields;
  }

 private:
  struct Impl;
  friend struct Impl;
  // Why a callback stopped llhttp: it reports every callback error under one code (or one per
  // callback), so the reason is kept here for feed() to map onto a ParseError.
  enum class Stop : uint8_t {
    None,
    TooLarge,
    TooManyFields,
    BadValue,
    NoHost,
    ManyHosts,
    BadFraming
  };
  std::unique_ptr<Impl> impl_;
  Kind kind_;
  uint32_t max_head_bytes_;
  uint32_t max_fields_;
  filters::RequestHead request_;
  filters::ResponseHead response_;
  filters::HeaderMap trailers_;
  bool field_open_ = false;  // the last field of the map being filled is still arriving
  bool head_done_ = false;
  bool in_message_ = false;
  bool no_body_ = false;
  Stop stop_ = Stop::None;
  uint32_t fields_ = 0;      // in the head or trailer section being parsed
  uint32_t hosts_ = 0;       // Host fields in the request head
  bool te_chunked_ = false;  // the head's last Transfer-Encoding ends in "chunked" (OWS trimmed)
  uint32_t te_fields_ = 0;   // Transfer-Encoding fields in the head
  bool te_only_chunked_ = false;  // one Transfer-Encoding field, its one coding "chunked"
  uint16_t head_flags_ = 0;       // llhttp's flags as the head left them: the message's framing
  // llhttp paused right after the LF that ended a head or trailer section; feed() checks the CR.
  bool section_ended_ = false;
  uint64_t head_bytes_ = 0;
  std::optional<uint64_t> content_length_;
  FeedResult* current_ = nullptr;
  const char* feed_begin_ = nullptr;  // input of the feed() in progress (obs-fold detection)
  char prev_last_byte_ = 0;           // last byte of the previous feed()
};

// Serializers append to `out`. Framing headers (Content-Length / Transfer-Encoding / Connection)
// are written by the caller as needed.
void appendRequestHead(std::string& out, const filters::RequestHead& head);
void appendResponseHead(std::string& out, const filters::ResponseHead& head);
// The end of a chunked body: the last chunk, the trailer section and its empty line. Fields that
// must not travel in a trailer section (filters::allowedInTrailers: framing, routing,
// hop-by-hop, ...) are left out: a recipient that merged them into its head would be misled.
void appendLastChunk(std::string& out, const filters::HeaderMap& trailers);
const char* reasonPhrase(int status);

}  // namespace sidetrace::proxy
