#include "filters/header_policy_filter.h"

#include <array>

namespace sidetrace::filters {

void removeHopByHop(HeaderMap& headers, bool keep_upgrade) {
  static constexpr std::array<std::string_view, 8> kHopByHop = {
      "connection", "keep-alive",        "proxy-connection",   "te",
      "trailer",    "transfer-encoding", "proxy-authenticate", "proxy-authorization"};
  // Headers named by Connection are hop-by-hop too (rare: only then is a second list built).
  std::vector<std::string> named;
  for (const auto& h : headers) {
    if (!iequals(h.name, "connection")) {
      continue;
    }
    std::string_view v = h.value;
    while (!v.empty()) {
      size_t comma = v.find(',');
      std::string_view item = v.substr(0, comma);
      while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) {
        item.remove_prefix(1);
      }
      while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) {
        item.remove_suffix(1);
      }
      if (!item.empty() && !(keep_upgrade && iequals(item, "upgrade"))) {
        named.emplace_back(item);
      }
      if (comma == std::string_view::npos) {
        break;
      }
      v.remove_prefix(comma + 1);
    }
  }
  // One pass over the headers, whatever the number of names to drop.
  std::erase_if(headers.raw(), [&](const Header& h) {
    for (auto name : kHopByHop) {
      if (iequals(h.name, name)) {
        // "TE: trailers" is the one TE value HTTP/2 allows, and gRPC servers expect it: it
        // passes (as Envoy does); any other TE value is hop-by-hop.
        return !(name == "te" && iequals(h.value, "trailers"));
      }
    }
    if (!keep_upgrade && iequals(h.name, "upgrade")) {
      return true;
    }
    for (const auto& n : named) {
      if (iequals(h.name, n)) {
        return true;
      }
    }
    return false;
  });
  if (keep_upgrade) {
    headers.add("Connection", "upgrade");
  }
}

FilterStatus HeaderPolicyFilter::onRequest(Stream& s) {
  auto& h = s.request.headers;
  bool upgrade = h.hasToken("connection", "upgrade") && h.get("upgrade").has_value();
  removeHopByHop(h, upgrade);
  // Expect is answered by the proxy itself (it sends 100 Continue when it starts reading the body).
  h.remove("expect");
  if (auto xff = h.get("x-forwarded-for")) {
    std::string v(*xff);
    v += ", ";
    v += s.peer_address;
    h.set("x-forwarded-for", v);
  } else {
    h.add("x-forwarded-for", s.peer_address);
  }
  h.set("x-forwarded-proto", s.scheme);
  if (!h.get("x-request-id")) {
    h.add("x-request-id", ids_.traceId().hex());
  }
  return FilterStatus::Continue;
}

void HeaderPolicyFilter::onResponse(Stream& s, ResponseHead& head) {
  removeHopByHop(head.headers, head.status == 101);
  (void)s;
}

}  // namespace sidetrace::filters
