// The egress listener's target parsers (filters/egress_filter.h): the absolute-form target of a
// forward-proxy request and the authority-form target of a CONNECT, both straight from the app's
// request line. Input: the target, as it would follow the method.
//
// Properties: every view lies inside the target; a host is non-empty and made of the characters
// a name or a bracketed IPv6 address may hold (nothing that could end the authority, no
// userinfo); a port is in 1..65535; the absolute form's authority and rest put back together are
// the target after its scheme, whose case does not matter; the two parsers agree (a CONNECT
// target with a path and the scheme in front is an absolute-form target naming the same host and
// port, and an absolute-form authority with an explicit port is a CONNECT target); a destination
// written back as host:port (brackets around IPv6) parses to itself.

#include <cstdint>
#include <string>
#include <string_view>

#include "filters/egress_filter.h"
#include "tests/fuzz/fuzz_input.h"

using sidetrace::fuzz::check;
using sidetrace::fuzz::FuzzInput;
namespace filters = sidetrace::filters;

namespace {

bool inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

bool hostChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == ':';
}

void checkHost(std::string_view host, std::string_view target) {
  check(!host.empty(), "empty host", target);
  check(inside(host, target), "host outside the target", target);
  for (char c : host) {
    check(hostChar(c), "host character", host, target);
  }
}

// host:port as a client would write it.
std::string authority(std::string_view host, uint16_t port) {
  std::string out;
  if (host.find(':') != std::string_view::npos) {
    out += '[';
    out += host;
    out += ']';
  } else {
    out += host;
  }
  out += ':';
  out += std::to_string(port);
  return out;
}

void checkConnect(std::string_view target) {
  auto t = filters::parseConnectTarget(target);
  if (!t) {
    return;
  }
  checkHost(t->host, target);
  check(t->port != 0, "port 0", target);
  const std::string again = authority(t->host, t->port);
  auto back = filters::parseConnectTarget(again);
  check(back && back->host == t->host && back->port == t->port, "host:port round trip", target,
        again);
  const std::string absolute = "http://" + std::string(target) + "/x";
  auto a = filters::parseAbsoluteTarget(absolute);
  check(a && a->host == t->host && a->port == t->port && a->rest == "/x",
        "CONNECT target as absolute form", target);
}

void checkAbsolute(std::string_view target) {
  auto t = filters::parseAbsoluteTarget(target);
  if (!t) {
    return;
  }
  checkHost(t->host, target);
  check(inside(t->authority, target) && inside(t->rest, target), "views outside the target",
        target);
  check(t->port != 0, "port 0", target);
  check(std::string(t->authority) + std::string(t->rest) == target.substr(7),
        "authority + rest is not the target", target);
  check(t->rest.empty() || t->rest[0] == '/' || t->rest[0] == '?' || t->rest[0] == '#',
        "rest starts the path or query", target);
  std::string upper(target);
  for (size_t i = 0; i < 4; ++i) {
    upper[i] = static_cast<char>(upper[i] >= 'a' ? upper[i] - 'a' + 'A' : upper[i]);
  }
  auto u = filters::parseAbsoluteTarget(upper);
  check(u && u->host == t->host && u->port == t->port && u->rest == t->rest, "scheme case", target);
  const size_t colon = t->authority.rfind(':');
  const bool explicit_port = colon != std::string_view::npos && colon + 1 < t->authority.size() &&
                             t->authority.back() != ']';
  if (explicit_port) {
    auto c = filters::parseConnectTarget(t->authority);
    check(c && c->host == t->host && c->port == t->port, "absolute authority as CONNECT target",
          target);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzInput in(data, size);
  const std::string target(in.rest());
  checkConnect(target);
  checkAbsolute(target);
  return 0;
}
