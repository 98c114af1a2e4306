#include "proxy/http1_codec.h"

#include <llhttp.h>

#include <charconv>
#include <cstring>

namespace sidetrace::proxy {

struct Http1Parser::Impl {
  llhttp_t parser;
  static const llhttp_settings_t settings;
  static llhttp_settings_t makeSettings();

  static Http1Parser& self(llhttp_t* p) { return *static_cast<Http1Parser*>(p->data); }

  static int stop(Http1Parser& s, Stop why) {
    s.stop_ = why;
    return HPE_USER;
  }
  static const char* stopReason(Stop why, bool in_trailers, const char* llhttp_reason) {
    switch (why) {
      case Stop::TooLarge:
        return in_trailers ? "trailer section too large" : "header block too large";
      case Stop::TooManyFields:
        return in_trailers ? "too many trailer fields" : "too many header fields";
      case Stop::BadValue:
        return "obs-fold or bare CR/LF in header value";
      case Stop::NoHost:
        return "no Host field in an HTTP/1.1 request";
      case Stop::ManyHosts:
        return "more than one Host field";
      case Stop::BadFraming:
        return "Transfer-Encoding other than one chunked coding, or in an HTTP/1.0 request";
      case Stop::None:
        break;
    }
    return llhttp_reason;
  }
  static int countHead(Http1Parser& s, size_t n) {
    s.head_bytes_ += n;
    return s.head_bytes_ > s.max_head_bytes_ ? stop(s, Stop::TooLarge) : 0;
  }

  static int onMessageBegin(llhttp_t* p) {
    auto& s = self(p);
    if (s.kind_ == Kind::Request) {  // the other head is never filled
      s.request_.clear();
    } else {
      s.response_.clear();
    }
    s.trailers_.clear();
    s.field_open_ = false;
    s.head_done_ = false;
    s.in_message_ = true;
    s.stop_ = Stop::None;
    s.fields_ = 0;
    s.hosts_ = 0;
    s.te_chunked_ = false;
    s.te_fields_ = 0;
    s.te_only_chunked_ = false;
    s.head_bytes_ = 1;  // nonzero from the first byte of a message
    s.content_length_.reset();
    return 0;
  }
  static int onUrl(llhttp_t* p, const char* at, size_t n) {
    auto& s = self(p);
    s.request_.target.append(at, n);
    return countHead(s, n);
  }
  static int onStatus(llhttp_t* p, const char* at, size_t n) {
    auto& s = self(p);
    // llhttp 8.1 takes any byte but CR/LF in the reason phrase; RFC 9112 §4 allows HTAB, SP,
    // VCHAR and obs-text. appendResponseHead passes it on, so a NUL or other control byte would
    // reach the client.
    for (size_t i = 0; i < n; ++i) {
      const auto c = static_cast<unsigned char>(at[i]);
      if ((c < 0x20 && c != '\t') || c == 0x7f) {
        return stop(s, Stop::BadValue);
      }
    }
    s.response_.reason.append(at, n);
    return countHead(s, n);
  }
  // Header and trailer fields take the same path; head_done_ tells them apart. A field is written
  // straight into its map, as the last entry, while its bytes arrive (field_open_).
  static filters::HeaderMap& fieldMap(Http1Parser& s) {
    return s.head_done_               ? s.trailers_
           : s.kind_ == Kind::Request ? s.request_.headers
                                      : s.response_.headers;
  }
  static filters::Header& openField(Http1Parser& s) {
    if (!s.field_open_) {
      s.field_open_ = true;
      return fieldMap(s).addEmpty();
    }
    return fieldMap(s).back();
  }
  static int onHeaderField(llhttp_t* p, const char* at, size_t n) {
    auto& s = self(p);
    openField(s).name.append(at, n);
    return countHead(s, n);
  }
  static int onHeaderValue(llhttp_t* p, const char* at, size_t n) {
    auto& s = self(p);
    // llhttp accepts obs-fold (CRLF then SP/HTAB continuing a value) even in strict mode, and
    // reports the continuation as another value span with the CRLF dropped. A value span can only
    // follow a line feed when it is such a continuation. RFC 9112 §5.2 lets a proxy reject it, and
    // we do: peers disagree on what a folded header means.
    // (llhttp also emits empty spans at buffer starts: only a non-empty span that starts with
    // SP/HTAB right after a line feed is a fold.)
    char before = at > s.feed_begin_ ? at[-1] : s.prev_last_byte_;
    if (before == '\n' && n > 0 && (at[0] == ' ' || at[0] == '\t')) {
      return stop(s, Stop::BadValue);
    }
    if (std::memchr(at, '\r', n) != nullptr || std::memchr(at, '\n', n) != nullptr) {
      return stop(s, Stop::BadValue);
    }
    openField(s).value.append(at, n);
    return countHead(s, n);
  }
  static int onHeaderValueComplete(llhttp_t* p) {
    auto& s = self(p);
    filters::Header& field = openField(s);
    s.field_open_ = false;
    // llhttp 8.1 accepts a field line with an empty name (": v"), which would be forwarded as is.
    if (field.name.empty()) {
      return stop(s, Stop::BadValue);
    }
    std::string& value = field.value;
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
      value.pop_back();
    }
    if (++s.fields_ > s.max_fields_) {
      return stop(s, Stop::TooManyFields);
    }
    if (!s.head_done_) {
      noteFraming(s, field);
    }
    return countHead(s, 4);  // ": " and CRLF, once per field however the bytes arrived
  }
  // What the head's framing fields say (Host count, Content-Length, chunked), as the head is
  // forwarded. Switched on the name's length: most fields are none of them.
  static void noteFraming(Http1Parser& s, const filters::Header& field) {
    const std::string_view name = field.name;
    const std::string_view value = field.value;
    switch (name.size()) {
      case 4:
        if (s.kind_ == Kind::Request && filters::iequals(name, "host")) {
          ++s.hosts_;
        }
        break;
      case 14:
        if (filters::iequals(name, "content-length")) {
          uint64_t v = 0;
          auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
          if (ec == std::errc() && ptr == value.data() + value.size()) {
            s.content_length_ = v;
          }
        }
        break;
      case 17:
        if (filters::iequals(name, "transfer-encoding")) {
          const size_t comma = value.rfind(',');
          s.te_chunked_ = filters::iequals(
              filters::trimOws(comma == std::string_view::npos ? value : value.substr(comma + 1)),
              "chunked");
          s.te_only_chunked_ =
              ++s.te_fields_ == 1 && comma == std::string_view::npos && s.te_chunked_;
        }
        break;
      default:
        break;
    }
  }
  static int onHeadersComplete(llhttp_t* p) {
    auto& s = self(p);
    s.head_done_ = true;
    s.head_flags_ = p->flags;  // what the accessors read from now on (even if this head fails)
    s.head_bytes_ = 1;         // a trailer section gets a budget of its own, the head's limits
    s.fields_ = 0;
    if (s.kind_ == Kind::Request) {
      s.request_.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
      s.request_.version_minor = p->http_minor;
      if (p->http_major != 1) {
        return -1;
      }
      if (s.hosts_ > 1 || (s.hosts_ == 0 && p->http_minor != 0)) {
        return stop(s, s.hosts_ == 0 ? Stop::NoHost : Stop::ManyHosts);
      }
      // A request whose Transfer-Encoding does not end in chunked has no reliable length (RFC
      // 9112 §6.3), nor does an HTTP/1.0 one with any (§6.1): 400 and close. llhttp 8.1 checks
      // the first only when it goes on to read a body, so an Upgrade request carried one through.
      // Nor is any other request coding taken: a coding before chunked (even "xchunked" in a
      // field of its own) is one the upstream may read otherwise, and a server need not accept
      // codings it does not know (§6.1: 501); nginx and HAProxy refuse them too. So a request's
      // Transfer-Encoding is one field saying "chunked", or the request is refused.
      if ((p->flags & F_TRANSFER_ENCODING) != 0 && (p->http_minor == 0 || !s.te_only_chunked_)) {
        return stop(s, Stop::BadFraming);
      }
    } else {
      // llhttp 8.1 takes a missing status code ("HTTP/1.1  OK") as 0, which would be forwarded.
      if (p->status_code < 100 || p->status_code > 999) {
        return stop(s, Stop::BadValue);
      }
      s.response_.status = p->status_code;
      s.response_.version_minor = p->http_minor;
    }
    // llhttp 8.1 does not take "chunked" followed by whitespace ("chunked\t") as the chunked
    // coding and frames the message another way (a response: until the connection closes), while
    // the field as forwarded, OWS trimmed, says chunked. Two readings of one message: reject it.
    if (s.te_chunked_ && (p->flags & F_CHUNKED) == 0) {
      return stop(s, Stop::BadValue);
    }
    s.current_->head_complete = true;
    // An interim (1xx) response never has a body (RFC 9110 §15.2), whatever its framing fields
    // say: llhttp 8.1 reads a Content-Length body after a 103, swallowing the next response's
    // first bytes.
    // (A 101 that upgrades is over at its head either way; one without Upgrade is no exception.)
    const bool interim = s.kind_ == Kind::Response && p->status_code >= 100 && p->status_code < 200;
    // Nor do 204 and 304 (RFC 9112 §6.3), which llhttp 8.1 lets a Transfer-Encoding give one.
    const bool bodiless =
        s.kind_ == Kind::Response && (interim || p->status_code == 204 || p->status_code == 304);
    if (s.kind_ == Kind::Response && (s.no_body_ || bodiless)) {
      p->flags |= F_SKIPBODY;  // what returning 1 would do; the pause below takes the return value
    }
    s.head_flags_ = p->flags;  // with F_SKIPBODY
    // Pausing is how the position of the head's end reaches feed(), which checks its line ending.
    s.section_ended_ = true;
    return HPE_PAUSED;
  }
  static int onBody(llhttp_t* p, const char* at, size_t n) {
    self(p).current_->body.emplace_back(at, n);
    return 0;
  }
  static int onMessageComplete(llhttp_t* p) {
    auto& s = self(p);
    // After a chunked body the pause lands right after the trailer section's final LF.
    s.section_ended_ = (p->flags & F_TRAILING) != 0;
    // llhttp runs trailer fields through its header rules: a trailer Transfer-Encoding,
    // Content-Length or Connection rewrites the head's framing flags, and llhttp would decide
    // from them whether the connection goes on (a trailer "Connection: close" failing the next
    // pipelined request; read sizes deciding which). The head alone frames a message (RFC 9110
    // §6.5.1): its flags come back before llhttp looks at them again. (The accessors below read
    // the head's flags all along: framedByTheHead.)
    if (s.section_ended_) {
      p->flags = static_cast<uint16_t>(s.head_flags_ | F_TRAILING);
    }
    s.in_message_ = false;
    s.head_bytes_ = 0;
    s.current_->message_complete = true;
    return HPE_PAUSED;
  }
};

llhttp_settings_t Http1Parser::Impl::makeSettings() {
  llhttp_settings_t st;
  llhttp_settings_init(&st);
  using I = Http1Parser::Impl;
  st.on_message_begin = I::onMessageBegin;
  st.on_url = I::onUrl;
  st.on_status = I::onStatus;
  st.on_header_field = I::onHeaderField;
  st.on_header_value = I::onHeaderValue;
  st.on_header_value_complete = I::onHeaderValueComplete;
  st.on_headers_complete = I::onHeadersComplete;
  st.on_body = I::onBody;
  st.on_message_complete = I::onMessageComplete;
  return st;
}

const llhttp_settings_t Http1Parser::Impl::settings = makeSettings();

Http1Parser::Http1Parser(Kind kind, uint32_t max_head_bytes, uint32_t max_fields)
    : impl_(std::make_unique<Impl>()),
      kind_(kind),
      max_head_bytes_(max_head_bytes),
      max_fields_(max_fields) {
  llhttp_init(&impl_->parser, kind == Kind::Request ? HTTP_REQUEST : HTTP_RESPONSE,
              &Impl::settings);
  impl_->parser.data = this;
}

Http1Parser::~Http1Parser() = default;

FeedResult Http1Parser::feed(const char* data, size_t len) {
  FeedResult r;
  feed(data, len, r);
  return r;
}

void Http1Parser::feed(const char* data, size_t len, FeedResult& r) {
  r.consumed = 0;
  r.head_complete = false;
  r.body.clear();
  r.message_complete = false;
  r.upgrade = false;
  r.error = ParseError::None;
  r.error_reason.clear();
  current_ = &r;
  feed_begin_ = data;
  llhttp_errno_t err = llhttp_execute(&impl_->parser, data, len);
  while (err == HPE_PAUSED && section_ended_) {
    // llhttp 8.1 accepts "\n" alone as the empty line ending a head or trailer section (it has no
    // flag against it) while rejecting bare LF everywhere else. Reject it too: a peer that ends
    // the section elsewhere would frame the message differently.
    section_ended_ = false;
    const char* end = llhttp_get_error_pos(&impl_->parser);  // just after that line's LF
    const char before_lf = end - data >= 2 ? end[-2] : prev_last_byte_;
    if (before_lf != '\r') {
      impl_->parser.error = HPE_CR_EXPECTED;  // sticky, as llhttp's own errors are
      llhttp_set_error_reason(&impl_->parser, "bare LF ending the header or trailer section");
      err = HPE_CR_EXPECTED;
      break;
    }
    if (r.message_complete) {
      break;  // the message-end pause: reported below like any other
    }
    llhttp_resume(&impl_->parser);
    err = llhttp_execute(&impl_->parser, end, len - static_cast<size_t>(end - data));
  }
  current_ = nullptr;
  switch (err) {
    case HPE_OK:
      r.consumed = len;
      break;
    case HPE_PAUSED:
      r.consumed = static_cast<size_t>(llhttp_get_error_pos(&impl_->parser) - data);
      llhttp_resume(&impl_->parser);
      break;
    case HPE_PAUSED_UPGRADE:
      r.consumed = static_cast<size_t>(llhttp_get_error_pos(&impl_->parser) - data);
      r.upgrade = true;
      r.message_complete = true;
      break;
    default:
      r.consumed = len;
      r.error = stop_ == Stop::TooLarge || stop_ == Stop::TooManyFields
                    ? ParseError::HeadersTooLarge
                    : ParseError::BadRequest;
      r.error_reason = Impl::stopReason(stop_, head_done_, llhttp_get_error_reason(&impl_->parser));
      break;
  }
  if (r.consumed > 0) {
    prev_last_byte_ = data[r.consumed - 1];  // unconsumed bytes come back in the next feed()
  }
  // A paused message-complete may be followed by the upgrade pause on the next call; llhttp reports
  // upgrade only through HPE_PAUSED_UPGRADE, so check the flag too.
  if (r.message_complete && !r.upgrade && impl_->parser.upgrade == 1) {
    r.upgrade = true;
  }
}

void Http1Parser::reset() {
  llhttp_reset(&impl_->parser);
  in_message_ = false;
  head_done_ = false;
  field_open_ = false;
  head_bytes_ = 0;
  no_body_ = false;
  section_ended_ = false;
  prev_last_byte_ = 0;
}

bool Http1Parser::finishOnEof() {
  // llhttp_finish runs on_message_complete for a close-delimited body; give it a result to write.
  FeedResult r;
  current_ = &r;
  llhttp_errno_t err = llhttp_finish(&impl_->parser);
  current_ = nullptr;
  return (err == HPE_OK || err == HPE_PAUSED) && r.message_complete;
}

namespace {

// The parser as its message's head left it. While a trailer section is parsed (its end may lie
// beyond the feed() that reported the head), llhttp's flags follow the trailer fields;
// onMessageComplete puts the head's back, but a caller may ask before that.
llhttp_t framedByTheHead(const llhttp_t& parser, bool head_done, uint16_t head_flags) {
  llhttp_t p = parser;
  if (head_done) {
    p.flags = head_flags;
  }
  return p;
}

}  // namespace

bool Http1Parser::chunked() const {
  return (framedByTheHead(impl_->parser, head_done_, head_flags_).flags & F_CHUNKED) != 0;
}

std::optional<uint64_t> Http1Parser::contentLength() const {
  if (chunked()) {
    return std::nullopt;
  }
  return content_length_;
}

bool Http1Parser::keepAlive() const {
  const llhttp_t p = framedByTheHead(impl_->parser, head_done_, head_flags_);
  return llhttp_should_keep_alive(&p) != 0;
}

bool Http1Parser::bodyUntilEof() const {
  const llhttp_t p = framedByTheHead(impl_->parser, head_done_, head_flags_);
  return llhttp_message_needs_eof(&p) != 0;
}

namespace {

// Sized once, then copied: one capacity check per head instead of four per field.
void appendHeaders(std::string& out, const filters::HeaderMap& headers) {
  size_t bytes = 0;
  for (const auto& h : headers) {
    bytes += h.name.size() + h.value.size() + 4;
  }
  const size_t at = out.size();
  out.resize(at + bytes);
  char* p = out.data() + at;
  for (const auto& h : headers) {
    std::memcpy(p, h.name.data(), h.name.size());
    p += h.name.size();
    *p++ = ':';
    *p++ = ' ';
    std::memcpy(p, h.value.data(), h.value.size());
    p += h.value.size();
    *p++ = '\r';
    *p++ = '\n';
  }
}

}  // namespace

void appendRequestHead(std::string& out, const filters::RequestHead& head) {
  out.append(head.method);
  out.push_back(' ');
  out.append(head.target);
  out.append(" HTTP/1.1\r\n");
  appendHeaders(out, head.headers);
}

void appendResponseHead(std::string& out, const filters::ResponseHead& head) {
  out.append("HTTP/1.1 ");
  char code[8];
  auto [end, ec] = std::to_chars(code, code + sizeof code, head.status);
  (void)ec;
  out.append(code, end);
  out.push_back(' ');
  out.append(head.reason.empty() ? reasonPhrase(head.status) : head.reason);
  out.append("\r\n");
  appendHeaders(out, head.headers);
}

void appendLastChunk(std::string& out, const filters::HeaderMap& trailers) {
  out.append("0\r\n");
  for (const auto& t : trailers) {
    if (filters::allowedInTrailers(t.name)) {
      out.append(t.name);
      out.append(": ");
      out.append(t.value);
      out.append("\r\n");
    }
  }
  out.append("\r\n");
}

const char* reasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Unknown";
  }
}

}  // namespace sidetrace::proxy
