#include "filters/http_message.h"

#include <algorithm>
#include <array>

namespace sidetrace::filters {
namespace {

// What a cleared map keeps: this many fields, each with strings of at most this capacity.
constexpr size_t kKeptFields = 32;
constexpr size_t kKeptBytes = 256;

}  // namespace

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

bool allowedInTrailers(std::string_view name) {
  static constexpr std::array<std::string_view, 21> kNotInTrailers = {
      // framing
      "content-length", "transfer-encoding", "trailer",
      // routing
      "host",
      // connection control (hop-by-hop)
      "connection", "keep-alive", "proxy-connection", "te", "upgrade",
      // authentication
      "authorization", "proxy-authorization", "www-authenticate", "proxy-authenticate",
      // request modifiers and response controls
      "expect", "max-forwards", "range", "cache-control", "pragma",
      // content format
      "content-encoding", "content-type", "content-range"};
  for (auto n : kNotInTrailers) {
    if (iequals(name, n)) {
      return false;
    }
  }
  return true;
}

void HeaderMap::clear() {
  if (headers_.size() > kKeptFields) {
    headers_.resize(kKeptFields);
    size_ = std::min(size_, kKeptFields);
  }
  // Only the fields in use can have grown since the last clear().
  for (auto& h : *this) {
    if (h.name.capacity() > kKeptBytes) {
      std::string().swap(h.name);
    }
    if (h.value.capacity() > kKeptBytes) {
      std::string().swap(h.value);
    }
  }
  size_ = 0;
}

std::optional<std::string_view> HeaderMap::get(std::string_view name) const {
  for (const auto& h : *this) {
    if (iequals(h.name, name)) {
      return std::string_view(h.value);
    }
  }
  return std::nullopt;
}

std::optional<std::string_view> HeaderMap::getList(std::string_view name,
                                                   std::string& scratch) const {
  std::optional<std::string_view> first;
  bool combined = false;
  for (const auto& h : *this) {
    if (!iequals(h.name, name)) {
      continue;
    }
    if (!first) {
      first = h.value;
      continue;
    }
    if (!combined) {
      scratch.assign(*first);
      combined = true;
    }
    scratch += ',';
    scratch += h.value;
  }
  if (combined) {
    return std::string_view(scratch);
  }
  return first;
}

void HeaderMap::set(std::string_view name, std::string_view value) {
  auto same = [&](const Header& h) { return iequals(h.name, name); };
  auto first = std::find_if(begin(), end(), same);
  if (first == end()) {
    add(name, value);
    return;
  }
  first->value.assign(value);
  // Repeats go in one pass (erasing them one by one would cost fields × repeats).
  size_ = static_cast<size_t>(std::remove_if(first + 1, end(), same) - begin());
}

void HeaderMap::remove(std::string_view name) {
  eraseIf([&](const Header& h) { return iequals(h.name, name); });
}

size_t HeaderMap::count(std::string_view name) const {
  return static_cast<size_t>(
      std::count_if(begin(), end(), [&](const Header& h) { return iequals(h.name, name); }));
}

void HeaderMap::fold(std::string_view name, std::string_view separator) {
  auto same = [&](const Header& h) { return iequals(h.name, name); };
  auto first = std::find_if(begin(), end(), same);
  if (first == end()) {
    return;
  }
  auto out = first + 1;
  for (auto it = first + 1; it != end(); ++it) {
    if (same(*it)) {
      first->value += separator;
      first->value += it->value;
    } else {
      if (out != it) {
        std::swap(*out, *it);  // the folded field's storage stays as a spare
      }
      ++out;
    }
  }
  size_ = static_cast<size_t>(out - begin());
}

bool HeaderMap::hasToken(std::string_view name, std::string_view token) const {
  for (const auto& h : *this) {
    if (!iequals(h.name, name)) {
      continue;
    }
    std::string_view v = h.value;
    while (!v.empty()) {
      size_t comma = v.find(',');
      std::string_view item = trimOws(v.substr(0, comma));
      if (iequals(item, token)) {
        return true;
      }
      if (comma == std::string_view::npos) {
        break;
      }
      v.remove_prefix(comma + 1);
    }
  }
  return false;
}

RequestHead::Parts RequestHead::pathAndQuery() const {
  const std::string_view t = target;
  const size_t q = t.find('?');
  return {t.substr(0, q), q == std::string_view::npos ? std::string_view() : t.substr(q + 1)};
}

std::string_view RequestHead::path() const {
  return pathAndQuery().path;
}

std::string_view RequestHead::query() const {
  return pathAndQuery().query;
}

namespace {

// host[:port] → the host, lower-cased, and the port (`default_port` when absent or empty).
std::pair<std::string, std::string_view> hostAndPort(std::string_view authority,
                                                     std::string_view default_port) {
  const size_t close = authority.starts_with('[') ? authority.find(']') : 0;
  const size_t colon = authority.find(':', close == std::string_view::npos ? 0 : close);
  std::string host(authority.substr(0, colon));
  for (char& c : host) {
    c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
  }
  std::string_view port = colon == std::string_view::npos ? "" : authority.substr(colon + 1);
  return {std::move(host), port.empty() ? default_port : port};
}

}  // namespace

bool toOriginForm(RequestHead& req) {
  const std::string_view t = req.target;
  const size_t scheme_end = t.find("://");
  if (t.empty() || t[0] == '/' || scheme_end == std::string_view::npos) {
    return true;  // origin-form, or a form the exchange does not rewrite (`*`, authority-form)
  }
  const std::string_view scheme = t.substr(0, scheme_end);
  const std::string_view default_port = iequals(scheme, "https") ? "443" : "80";
  const std::string_view rest = t.substr(scheme_end + 3);
  const size_t end = rest.find_first_of("/?#");
  const std::string_view authority = rest.substr(0, end);
  if (auto host = req.headers.get("host")) {
    if (hostAndPort(authority, default_port) != hostAndPort(trimOws(*host), default_port)) {
      return false;
    }
  } else {
    req.headers.add("Host", authority);
  }
  std::string origin = end == std::string_view::npos || rest[end] != '/' ? "/" : "";
  origin.append(end == std::string_view::npos ? std::string_view() : rest.substr(end));
  origin.resize(
      std::min(origin.size(), origin.find('#')));  // a fragment is not sent (RFC 9110 §4.2.4)
  req.target = std::move(origin);
  return true;
}

std::string_view hostWithoutPort(std::string_view v) {
  if (!v.empty() && v.front() == '[') {  // [v6]:port
    size_t close = v.find(']');
    return close == std::string_view::npos ? v : v.substr(0, close + 1);
  }
  return v.substr(0, v.find(':'));
}

std::string_view RequestHead::host() const {
  auto h = headers.get("host");
  return h ? hostWithoutPort(*h) : std::string_view();
}

void RequestHead::clear() {
  method.clear();
  target.clear();
  version_minor = 1;
  headers.clear();
}

void ResponseHead::clear() {
  status = 0;
  reason.clear();
  version_minor = 1;
  headers.clear();
}

}  // namespace sidetrace::filters
