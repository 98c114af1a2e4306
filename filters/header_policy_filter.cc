#include "filters/header_policy_filter.h"

#include <algorithm>
#include <array>
#include <cstdint>

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

// Connection's list in one field value, item by item (OWS trimmed; empty items skipped).
template <class F>
void forEachToken(std::string_view v, F&& f) {
  while (!v.empty()) {
    size_t comma = v.find(',');
    std::string_view item = trimOws(v.substr(0, comma));
    if (!item.empty()) {
      f(item);
    }
    if (comma == std::string_view::npos) {
      break;
    }
    v.remove_prefix(comma + 1);
  }
}

// A list longer than this is sorted and searched by halves; a shorter one (one or two names, in
// practice "close" or "keep-alive") is scanned, at about one length comparison per name.
constexpr size_t kScannedNames = 8;

// Names whose fields go whatever Connection says (TE's fate hangs on its value alone, Upgrade's
// on whether the upgrade is kept: see hopByHopSlow).
bool fixedHopByHop(std::string_view n) {
  static constexpr std::array<std::string_view, 9> kFixed = {"te",
                                                             "trailer",
                                                             "upgrade",
                                                             "connection",
                                                             "keep-alive",
                                                             "proxy-connection",
                                                             "transfer-encoding",
                                                             "proxy-authenticate",
                                                             "proxy-authorization"};
  for (std::string_view f : kFixed) {
    if (iequals(n, f)) {
      return true;
    }
  }
  return false;
}

// Connection's names, ready for isNamed(): without those the fixed rules decide anyway (usually
// the whole list: keep-alive, or close and no field of that name), so that most heads need no
// lookup per field.
void finishTokens(Tokens& out) {
  out.erase(std::remove_if(out.begin(), out.end(), fixedHopByHop), out.end());
  if (out.size() > kScannedNames) {
    std::sort(out.begin(), out.end(), iless);
    out.erase(std::unique(out.begin(), out.end(), iequals), out.end());
  }
}

// The names listed by Connection fields (views into their values), ready for isNamed().
void connectionTokens(const HeaderMap& headers, Tokens& out) {
  for (const auto& h : headers) {
    if (iequals(h.name, "connection")) {
      forEachToken(h.value, [&](std::string_view item) { out.push_back(item); });
    }
  }
  finishTokens(out);
}

bool isNamed(const Tokens& named, std::string_view n) {
  if (named.size() > kScannedNames) {
    return std::binary_search(named.begin(), named.end(), n, iless);
  }
  for (std::string_view t : named) {
    if (iequals(t, n)) {
      return true;
    }
  }
  return false;
}

// Whether a field is hop-by-hop: RFC 9110 §7.6.1's list (with the legacy Keep-Alive,
// Proxy-Connection and the Proxy-Authenticate/-Authorization pair of RFC 2616), Upgrade unless
// the request upgrades, and whatever Connection names. Switched on the name's length first: nearly
// every field differs in length from all of them, so it costs one comparison.
bool hopByHopSlow(const Header& h, bool keep_upgrade, const Tokens& named) {
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
  return !named.empty() && isNamed(named, n);
}

// The lengths of the names above: a field of any other length is hop-by-hop only when Connection
// names it, which a head without such a list (nearly every one) settles with no comparison.
constexpr uint32_t kHopByHopLengths =
    1u << 2 | 1u << 7 | 1u << 10 | 1u << 16 | 1u << 17 | 1u << 18 | 1u << 19;

inline bool hopByHop(const Header& h, bool keep_upgrade, const Tokens& named) {
  const size_t len = h.name.size();
  if ((len >= 32 || ((kHopByHopLengths >> len) & 1) == 0) && named.empty()) {
    return false;
  }
  return hopByHopSlow(h, keep_upgrade, named);
}

}  // namespace

void removeHopByHop(HeaderMap& headers, bool keep_upgrade) {
  // Fields named by Connection are hop-by-hop too. A long list of names is sorted once and each
  // field looked up by binary search: a head that lists thousands of names beside thousands of
  // fields costs (fields + names) · log(names) comparisons, never fields × names.
  Tokens named;
  connectionTokens(headers, named);
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

// In two passes over the fields, whatever their number: the first reads Connection and Upgrade
// (the hop-by-hop set and whether the upgrade is kept), the second drops the hop-by-hop fields
// and Expect, and edits the forwarding fields in place. The result is what removeHopByHop, then
// remove("expect"), then set or add of X-Forwarded-For (the first one's value, the peer
// appended; later ones dropped), X-Forwarded-Proto and X-Request-Id, one after the other, give.
FilterStatus HeaderPolicyFilter::onRequest(Stream& s) {
  auto& h = s.request.headers;
  Tokens named;
  bool upgrade_token = false;
  bool upgrade_field = false;
  for (const auto& f : h) {
    if (f.name.size() == 10 && iequals(f.name, "connection")) {
      forEachToken(f.value, [&](std::string_view item) {
        named.push_back(item);
        upgrade_token = upgrade_token || iequals(item, "upgrade");
      });
    } else if (f.name.size() == 7 && iequals(f.name, "upgrade")) {
      upgrade_field = true;
    }
  }
  const bool upgrade = upgrade_token && upgrade_field;
  finishTokens(named);
  Header* xff = nullptr;
  Header* xfp = nullptr;
  bool request_id = false;
  for (auto& f : h) {
    const std::string_view n = f.name;
    bool drop = hopByHop(f, upgrade, named);
    if (!drop) {
      switch (n.size()) {
        case 6:
          // Expect is answered by the proxy itself (it sends 100 Continue when it starts reading
          // the body).
          drop = iequals(n, "expect");
          break;
        case 12:
          request_id = request_id || iequals(n, "x-request-id");
          break;
        case 15:
          if (iequals(n, "x-forwarded-for")) {
            drop = xff != nullptr;
            xff = xff != nullptr ? xff : &f;
          }
          break;
        case 17:
          if (iequals(n, "x-forwarded-proto")) {
            drop = xfp != nullptr;
            xfp = xfp != nullptr ? xfp : &f;
          }
          break;
        default:
          break;
      }
    }
    if (drop) {
      f.name.clear();
    }
  }
  if (xff != nullptr) {
    xff->value += ", ";
    xff->value += s.peer_address;
  }
  if (xfp != nullptr) {
    xfp->value.assign(s.scheme);
  }
  h.eraseIf([](const Header& f) { return f.name.empty(); });
  if (upgrade) {
    h.add("Connection", "upgrade");
  }
  if (xff == nullptr) {
    h.add("x-forwarded-for", s.peer_address);
  }
  if (xfp == nullptr) {
    h.add("x-forwarded-proto", s.scheme);
  }
  if (!request_id) {
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
