#pragma once
// The protocol-neutral request/response heads that codecs produce and filters read and edit.
// Header names keep the case they arrived in; lookups are case-insensitive. Bodies never live
// here: they stream past the filters (see stream.h).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tracing/propagator.h"

namespace sidetrace::filters {

// Eight bytes at once: bit 7 of each byte set exactly where the byte is in 'A'..'Z', every other
// bit clear (the sums cannot carry across bytes: a byte's low seven bits plus 0x3f stay below
// 0x100).
inline uint64_t upperAscii8(uint64_t x) {
  constexpr uint64_t kLow7 = 0x7f7f7f7f7f7f7f7fULL;
  constexpr uint64_t kHigh = 0x8080808080808080ULL;
  const uint64_t low7 = x & kLow7;
  const uint64_t above_z = low7 + 0x2525252525252525ULL;  // bit 7 where the byte > 'Z'
  const uint64_t from_a = low7 + 0x3f3f3f3f3f3f3f3fULL;   // bit 7 where the byte >= 'A'
  return (from_a ^ above_z) & ~x & kHigh;                 // ... and the byte is ASCII
}

// Eight bytes at once with 'A'..'Z' lowered and every other byte (non-ASCII too) unchanged:
// 0x80 >> 2 is the case bit.
inline uint64_t lowerAscii8(uint64_t x) {
  return x | (upperAscii8(x) >> 2);
}

// ASCII case-insensitive equality. Inline: header lookups call it per field, and nearly every
// call ends at the size check; the rest compare eight bytes a step.
inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  size_t i = 0;
  for (; i + 8 <= a.size(); i += 8) {
    uint64_t x;
    uint64_t y;
    std::memcpy(&x, a.data() + i, 8);
    std::memcpy(&y, b.data() + i, 8);
    if (x != y && lowerAscii8(x) != lowerAscii8(y)) {
      return false;
    }
  }
  for (; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x != y) {
      x = (x >= 'A' && x <= 'Z') ? static_cast<char>(x + 32) : x;
      y = (y >= 'A' && y <= 'Z') ? static_cast<char>(y + 32) : y;
      if (x != y) {
        return false;
      }
    }
  }
  return true;
}
// Without the spaces and tabs around a field value or list item (RFC 9110's OWS).
std::string_view trimOws(std::string_view s);
// Whether a field may be forwarded in a trailer section. RFC 9110 §6.5.1: fields that frame the
// message, route it, control the connection, authenticate, modify the request or describe the
// content must be known before the content, and a recipient that merged such a trailer into the
// head (as many do) would be misled: a Transfer-Encoding or Content-Length there could reframe
// the message for the next hop. The same set Go's net/http refuses as trailers. Every path that
// writes a trailer section (HTTP/1 last chunk, HTTP/2 trailing HEADERS) applies this one rule.
bool allowedInTrailers(std::string_view name);

struct Header {
  std::string name;
  std::string value;
};

// The fields of one head, in order. A map lives as long as what reuses it (an HTTP/1 connection's
// request state, a pooled HTTP/2 stream), and clear() keeps the fields' strings: the next head's
// fields are copied into storage that is already there, so a head of usual size allocates nothing.
// Fields past size() are that spare storage.
class HeaderMap : public tracing::HeaderCarrier {
 public:
  HeaderMap() = default;
  HeaderMap(const HeaderMap& o) : headers_(o.begin(), o.end()), size_(o.size_) {}
  HeaderMap(HeaderMap&& o) noexcept : headers_(std::move(o.headers_)), size_(o.size_) {
    o.size_ = 0;
  }
  HeaderMap& operator=(const HeaderMap& o) {
    if (this != &o) {
      clear();
      for (const auto& h : o) {
        add(h.name, h.value);
      }
    }
    return *this;
  }
  HeaderMap& operator=(HeaderMap&& o) noexcept {
    headers_ = std::move(o.headers_);
    size_ = std::exchange(o.size_, 0);
    return *this;
  }
  ~HeaderMap() override = default;

  std::optional<std::string_view> get(std::string_view name) const override;
  size_t count(std::string_view name) const override;
  std::optional<std::string_view> getList(std::string_view name,
                                          std::string& scratch) const override;
  void set(std::string_view name, std::string_view value) override;
  void remove(std::string_view name) override;
  void add(std::string_view name, std::string_view value) {
    if (size_ < headers_.size()) {
      // clear() and append(): into the spare storage without assign()'s overlap handling.
      Header& h = headers_[size_];
      h.name.clear();
      h.name.append(name);
      h.value.clear();
      h.value.append(value);
    } else {
      headers_.push_back({std::string(name), std::string(value)});
    }
    ++size_;
  }
  // A new last field with an empty name and value, for a codec to fill in place as the bytes
  // arrive (the strings of a reused map keep their storage: no copy through a scratch string).
  Header& addEmpty() {
    if (size_ < headers_.size()) {
      Header& h = headers_[size_++];
      h.name.clear();
      h.value.clear();
      return h;
    }
    ++size_;
    return headers_.emplace_back();
  }
  Header& back() { return headers_[size_ - 1]; }
  // True when a comma-separated header (e.g. Connection) lists `token`, case-insensitively.
  bool hasToken(std::string_view name, std::string_view token) const;
  // Every `name` field folded into the first, values joined by `separator`, in order (HTTP/2's
  // cookie crumbs become one HTTP/1 Cookie line this way). One pass; no change with fewer than two.
  void fold(std::string_view name, std::string_view separator);
  // Drops every field `drop` says yes to, keeping the order of the rest (one pass).
  template <class Pred>
  void eraseIf(Pred drop) {
    auto end = std::remove_if(headers_.begin(), this->end(), drop);
    size_ = static_cast<size_t>(end - headers_.begin());
  }

  using iterator = std::vector<Header>::iterator;
  using const_iterator = std::vector<Header>::const_iterator;
  iterator begin() { return headers_.begin(); }
  iterator end() { return headers_.begin() + static_cast<std::ptrdiff_t>(size_); }
  const_iterator begin() const { return headers_.begin(); }
  const_iterator end() const { return headers_.begin() + static_cast<std::ptrdiff_t>(size_); }
  size_t size() const { return size_; }
  friend void swap(HeaderMap& a, HeaderMap& b) noexcept {
    a.headers_.swap(b.headers_);
    std::swap(a.size_, b.size_);
  }
  // Keeps the storage of the usual fields; lets go of what an unusual head left behind (a huge
  // value, thousands of fields), so a reused map stays small.
  void clear();

 private:
  std::vector<Header> headers_;
  size_t size_ = 0;
};

// A Host value without its port ("[v6]:port" keeps the brackets).
std::string_view hostWithoutPort(std::string_view host);

struct RequestHead {
  std::string method;     // upper-case token, as received
  std::string target;     // origin-form "/path?query" (absolute-form is reduced by the codec)
  int version_minor = 1;  // HTTP/1.x minor; 1 for HTTP/1.1
  HeaderMap headers;

  std::string_view path() const;   // target without query
  std::string_view query() const;  // after '?', without it; "" when none
  // Both, finding the '?' once (a traced request wants both several times).
  struct Parts {
    std::string_view path;
    std::string_view query;
  };
  Parts pathAndQuery() const;
  // Host without port, lower-case as received ("" if absent).
  std::string_view host() const;
  void clear();
  // Member by member (a codec hands its parsed head over this way, each side keeping storage).
  friend void swap(RequestHead& a, RequestHead& b) noexcept {
    a.method.swap(b.method);
    a.target.swap(b.target);
    std::swap(a.version_minor, b.version_minor);
    swap(a.headers, b.headers);
  }
};

// Reduces an absolute-form target (`http://host[:port]/path`, as clients send to a proxy) to
// origin-form, the authority becoming Host when there is none. False, for a 400, when a Host field
// names another host than the authority: RFC 9112 §3.2.2 makes the authority the request's host,
// and refusing the mismatch, as HAProxy does, means routing by Host can never disagree with where
// the origin thinks the request went (found by tests/fuzz/differential.py). Ports compare with the
// scheme's default filled in (`http://a:80/` and `Host: a` agree). Ingress listeners only: the
// egress listener reads the absolute form itself and replaces Host (egress_filter.h).
bool toOriginForm(RequestHead& req);

struct ResponseHead {
  int status = 0;
  std::string reason;
  int version_minor = 1;
  HeaderMap headers;
  void clear();
  friend void swap(ResponseHead& a, ResponseHead& b) noexcept {
    std::swap(a.status, b.status);
    a.reason.swap(b.reason);
    std::swap(a.version_minor, b.version_minor);
    swap(a.headers, b.headers);
  }
};

}  // namespace sidetrace::filters
