#pragma once
// Drives proxy::Http1Parser the way the proxy does: bytes land in a FlatBuffer of the configured
// capacity, arriving in reads of any size; after each read the parser is fed the whole readable
// window and the consumed bytes are dropped (proxy/session.cc for requests,
// proxy/http1_upstream_call.cc for responses). What the parser reported is logged as messages,
// so that two runs over the same bytes with different read sizes can be compared, and each
// message can be serialized again and re-parsed (what the proxy forwards must parse to the same
// message).

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "proxy/flat_buffer.h"
#include "proxy/http1_codec.h"
#include "tests/fuzz/fuzz_input.h"

namespace sidetrace::fuzz {

struct Http1Message {
  std::string head;  // start line and fields as parsed, one per line
  filters::RequestHead request;
  filters::ResponseHead response;
  std::string body;  // de-chunked, concatenated over every piece
  filters::HeaderMap trailers;
  bool chunked = false;
  bool keep_alive = false;  // what the head says of the connection (keepAlive())
  bool until_eof = false;   // a response framed by the connection's end
  bool complete = false;
  bool upgrade = false;
  proxy::ParseError error = proxy::ParseError::None;

  std::string summary() const {
    std::string s = head + "body[" + std::to_string(body.size()) + "]:" + body + "\ntrailers:";
    for (const auto& t : trailers) {
      s += t.name + ": " + t.value + "|";
    }
    s += complete ? " complete" : " open";
    s += upgrade ? " upgrade" : "";
    s += " error=" + std::to_string(static_cast<int>(error)) + "\n";
    return s;
  }
};

inline std::string describeHead(const filters::HeaderMap& headers, std::string start) {
  start += '\n';
  for (const auto& h : headers) {
    start += h.name + ": " + h.value + '\n';
  }
  return start;
}

inline bool isCtlOrSpace(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u <= 0x20 || u == 0x7f;
}

// Fields the proxy writes out verbatim must not be able to end a line or a string early.
inline void checkFieldBytes(const filters::HeaderMap& headers) {
  for (const auto& h : headers) {
    check(!h.name.empty(), "empty field name");
    for (char c : h.name) {
      check(!isCtlOrSpace(c) && c != ':', "control, space or colon in a field name", h.name);
    }
    for (char c : h.value) {
      check(c != '\r' && c != '\n' && c != '\0', "CR, LF or NUL in a field value", h.value);
    }
    check(h.value.empty() || (h.value.back() != ' ' && h.value.back() != '\t'),
          "trailing whitespace kept in a field value", h.value);
  }
}

class Http1Driver {
 public:
  Http1Driver(proxy::Http1Parser::Kind kind, size_t capacity, uint32_t max_head_bytes,
              uint32_t max_fields = proxy::Http1Parser::kNoFieldLimit)
      : kind_(kind), parser_(kind, max_head_bytes, max_fields), in_(capacity) {}

  // An upstream call reads one response: interim (1xx) heads, then the final one; what follows
  // belongs to no call.
  void stopAfterFinalResponse() { stop_after_final_ = true; }

  proxy::Http1Parser& parser() { return parser_; }
  std::vector<Http1Message>& messages() { return messages_; }
  bool stopped() const { return stopped_; }

  // Bytes from the peer, in reads of the sizes `next_read` gives (each >= 1), bounded by the room
  // the buffer has, as a socket read is.
  template <class NextRead>
  void receive(std::string_view bytes, NextRead next_read) {
    while (!bytes.empty() && !stopped_) {
      auto room = in_.prepare();
      check(room.size() > 0, "buffer full and the parser takes nothing: the connection stalls");
      const size_t n = std::min({bytes.size(), room.size(), static_cast<size_t>(next_read())});
      std::memcpy(room.data(), bytes.data(), n);
      in_.commit(n);
      bytes.remove_prefix(n);
      drain();
    }
  }

  // The peer closed: a close-delimited response body ends here.
  void eof() {
    if (!stopped_ && open_ && parser_.bodyUntilEof() && parser_.finishOnEof()) {
      messages_.back().complete = true;
    }
  }

 private:
  void drain() {
    while (in_.size() > 0 && !stopped_) {
      proxy::FeedResult r = parser_.feed(in_.data(), in_.size());
      check(r.consumed <= in_.size(), "consumed more than it was given");
      record(r);  // body views point into the buffer: copied before it moves
      in_.consume(r.consumed);
      check(r.consumed > 0 || r.head_complete || r.message_complete ||
                r.error != proxy::ParseError::None,
            "feed() made no progress on a non-empty buffer");
    }
  }

  void record(proxy::FeedResult& r) {
    if (!open_ && (r.consumed > 0 || r.head_complete)) {
      messages_.emplace_back();
      open_ = true;
    }
    if (!open_) {
      return;
    }
    Http1Message& m = messages_.back();
    if (r.head_complete) {
      if (kind_ == proxy::Http1Parser::Kind::Request) {
        const auto& q = parser_.request();
        m.request = q;
        m.head = describeHead(q.headers,
                              q.method + ' ' + q.target + " 1." + std::to_string(q.version_minor));
        check(!q.method.empty() && !q.target.empty(), "request head without method or target");
        checkFieldBytes(q.headers);
        for (char c : q.target) {
          check(!isCtlOrSpace(c), "control or space in the request target", q.target);
        }
      } else {
        const auto& s = parser_.response();
        m.response = s;
        m.head = describeHead(s.headers, std::to_string(s.status) + ' ' + s.reason + " 1." +
                                             std::to_string(s.version_minor));
        check(s.status >= 100 && s.status <= 999, "status outside 100..999", m.head);
        checkFieldBytes(s.headers);
        for (char c : s.reason) {
          check(c != '\r' && c != '\n' && c != '\0', "CR, LF or NUL in the reason phrase");
        }
      }
      m.chunked = parser_.chunked();
      m.keep_alive = parser_.keepAlive();
      m.until_eof = kind_ == proxy::Http1Parser::Kind::Response && parser_.bodyUntilEof();
      check(!(m.chunked && parser_.contentLength()), "both chunked and Content-Length framing",
            m.head);
    }
    for (auto piece : r.body) {
      check(!m.head.empty(), "body bytes before the head");
      m.body.append(piece);
    }
    if (r.error != proxy::ParseError::None) {
      m.error = r.error;
      stopped_ = true;
      return;
    }
    if (r.message_complete) {
      m.complete = true;
      m.trailers = parser_.trailers();
      checkFieldBytes(m.trailers);
      // The head frames the message and says what becomes of the connection; a trailer section
      // (which llhttp parses with the head's rules) must change neither.
      check(parser_.chunked() == m.chunked && parser_.keepAlive() == m.keep_alive,
            "the trailer section changed the message's framing or connection state", m.head,
            m.summary());
      open_ = false;
      if (stop_after_final_ && m.response.status >= 200) {
        stopped_ = true;
      }
      if (r.upgrade) {
        m.upgrade = true;
        stopped_ = true;  // the rest of the connection is raw bytes
      }
    }
  }

  proxy::Http1Parser::Kind kind_;
  proxy::Http1Parser parser_;
  proxy::FlatBuffer in_;
  std::vector<Http1Message> messages_;
  bool open_ = false;
  bool stopped_ = false;
  bool stop_after_final_ = false;
};

inline std::string summarize(const std::vector<Http1Message>& ms) {
  std::string s;
  for (const auto& m : ms) {
    s += m.summary();
  }
  return s;
}

// The trailer fields the proxy passes on (filters::allowedInTrailers decides, wherever a trailer
// section is written).
inline filters::HeaderMap forwardedTrailers(const filters::HeaderMap& trailers) {
  filters::HeaderMap out;
  for (const auto& t : trailers) {
    if (filters::allowedInTrailers(t.name)) {
      out.add(t.name, t.value);
    }
  }
  return out;
}

inline bool sameFields(const filters::HeaderMap& a, const filters::HeaderMap& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const auto& x, const auto& y) {
    return x.name == y.name && x.value == y.value;
  });
}

// The body framed for forwarding: chunked (with the trailers the proxy passes on) or as is.
inline void appendForwardedBody(std::string& out, const Http1Message& m) {
  if (!m.chunked) {
    out += m.body;
    return;
  }
  if (!m.body.empty()) {
    char size[24];
    std::snprintf(size, sizeof size, "%zx\r\n", m.body.size());
    out += size;
    out += m.body;
    out += "\r\n";
  }
  proxy::appendLastChunk(out, m.trailers);
}

}  // namespace sidetrace::fuzz
