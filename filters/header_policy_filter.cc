#include "filters/header_policy_filter.h"

#include <algorithm>

#include <boost/container/small_vector.hpp>

namespace sidetrace::filters {

namespace {

// The names listed by Connection (views into its values). A response names one or two: they stay
// inline, so the common case allocates nothing.
using Tokens = boost::container::small_vector<std::string_view, 8>;

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

bool iless(std::string_view a, std::string_view b) {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(),
                                      [](char x, char y) { return lower(x) < lower(y); });
}

// The names listed by Connection fields, sorted and without repeats (views into their values).
void connectionTokens(const HeaderMap& headers, bool keep_upgrade, Tokens& out) {
  for (const auto& h : headers) {
    if (!iequals(h.name, "connection")) {
      continue;
    }
    std::string_view v = h.value;
    while (!v.empty()) {
      size_t comma = v.find(',');
      std::string_view item = trimOws(v.substr(0, comma));
      if (!item.empty() && !(keep_upgrade && iequals(item, "upgrade"))) {
        out.push_back(item);
      }
      if (comma == std::string_view::npos) {
        break;
      }
      v.remove_prefix(comma + 1);
    }
  }
  std::sort(out.begin(), out.end(), iless);
  out.erase(std::unique(out.begin(), out.end(), iequals), out.end());
}

// Whether a field is hop-by-hop: RFC 9110 §7.6.1's list (with the legacy Keep-Alive,
// Proxy-Connection and the Proxy-Authenticate/-Authorization pair of RFC 2616), Upgrade unless
// the request upgrades, and whatever Connection names. Switched on the name's length first: nearly
// every field differs in length from all of them, so it costs one comparison.
bool hopByHop(const Header& h, bool keep_upgrade, const Tokens& named) {
  const std::string_view n = h.name;
  switch (n.size()) {
    case 2:
      if (iequals(n, "te")) {
        // "TE: trailers" is the one TE value HTTP/2 allows, and gRPC servers expect it: it
        // passes (as Envoy does), even when Connection names TE; any other TE value is hop-by-hop.
        return !iequals(h.value, "trailers");
      }
      break;
    case 7:
      if (iequals(n, "trailer") || (!keep_upgrade && iequals(n, "upgrade"))) {
        return true;
      }
      break;
    case 10:
      if (iequals(n, "connection") || iequals(n, "keep-alive")) {
        return true;
      }
      break;
    case 16:
      if (iequals(n, "proxy-connection")) {
        return true;
      }
      break;
    case 17:
      if (iequals(n, "transfer-encoding")) {
        return true;
      }
      break;
    case 18:
      if (iequals(n, "proxy-authenticate")) {
        return true;
      }
      break;
    case 19:
      if (iequals(n, "proxy-authorization")) {
        return true;
      }
      break;
    default:
      break;
  }
  return !named.empty() && std::binary_search(named.begin(), named.end(), n, iless);
}

}  // namespace

void removeHopByHop(HeaderMap& headers, bool keep_upgrade) {
  // Fields named by Connection are hop-by-hop too. Their names are sorted once and each field is
  // looked up by binary search: a head that lists thousands of names beside thousands of fields
  // costs (fields + names) · log(names) comparisons, never fields × names. Rare, so the list is
  // only built when Connection names something.
  Tokens named;
  connectionTokens(headers, keep_upgrade, named);
  // The views in `named` point into Connection values, which must stay put while they are used:
  // fields to drop are first marked (an empty name, which no codec produces), then erased at once.
  for (auto& h : headers) {
    if (hopByHop(h, keep_upgrade, named)) {
      h.name.clear();
    }
  }
  headers.eraseIf([](const Header& h) { return h.name.empty(); });
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
    // Formatted on the stack: 32 digits would not fit a std::string's inline buffer.
    const tracing::TraceId id = ids_.traceId();
    char hex[2 * sizeof id.bytes];
    tracing::writeHex(id.bytes.data(), id.bytes.size(), hex);
    h.add("x-request-id", std::string_view(hex, sizeof hex));
  }
  return FilterStatus::Continue;
}

void HeaderPolicyFilter::onResponse(Stream& s, ResponseHead& head) {
  removeHopByHop(head.headers, head.status == 101);
  (void)s;
}

}  // namespace sidetrace::filters
