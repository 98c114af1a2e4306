#pragma once
// The protocol-neutral request/response heads that codecs produce and filters read and edit.
// Header names keep the case they arrived in; lookups are case-insensitive. Bodies never live
// here: they stream past the filters (see stream.h).

#include <string>
#include <string_view>
#include <vector>

#include "tracing/propagator.h"

namespace sidetrace::filters {

bool iequals(std::string_view a, std::string_view b);
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

class HeaderMap : public tracing::HeaderCarrier {
 public:
  std::optional<std::string_view> get(std::string_view name) const override;
  size_t count(std::string_view name) const override;
  std::optional<std::string_view> getList(std::string_view name,
                                          std::string& scratch) const override;
  void set(std::string_view name, std::string_view value) override;
  void remove(std::string_view name) override;
  void add(std::string name, std::string value) {
    headers_.push_back({std::move(name), std::move(value)});
  }
  // True when a comma-separated header (e.g. Connection) lists `token`, case-insensitively.
  bool hasToken(std::string_view name, std::string_view token) const;
  // Every `name` field folded into the first, values joined by `separator`, in order (HTTP/2's
  // cookie crumbs become one HTTP/1 Cookie line this way). One pass; no change with fewer than two.
  void fold(std::string_view name, std::string_view separator);

  auto begin() const { return headers_.begin(); }
  auto end() const { return headers_.end(); }
  size_t size() const { return headers_.size(); }
  void clear() { headers_.clear(); }
  std::vector<Header>& raw() { return headers_; }

 private:
  std::vector<Header> headers_;
};

struct RequestHead {
  std::string method;     // upper-case token, as received
  std::string target;     // origin-form "/path?query" (absolute-form is reduced by the codec)
  int version_minor = 1;  // HTTP/1.x minor; 1 for HTTP/1.1
  HeaderMap headers;

  std::string_view path() const;   // target without query
  std::string_view query() const;  // after '?', without it; "" when none
  // Host without port, lower-case as received ("" if absent).
  std::string_view host() const;
  void clear();
};

struct ResponseHead {
  int status = 0;
  std::string reason;
  int version_minor = 1;
  HeaderMap headers;
  void clear();
};

}  // namespace sidetrace::filters
